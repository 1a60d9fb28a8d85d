"""88-key piano rolls to and from MIDI files (with ``music21``).

A piano roll is a ``(T, 88)`` 0/1 array in the music data sets' convention
(:mod:`pyrosequence.data.music`): column ``k`` is MIDI note ``21 + k`` (A0 .. C8), 1 when the note
sounds at step ``t``. Every step lasts ``step_quarters`` quarter notes (default 1.0, a quarter
note, at 120 quarter notes per minute: half a second per step). JSB Chorales and the built-in
Bach set are sampled at quarter notes; the other sets of Boulanger-Lewandowski et al. (2012) do
not record their step as a note value, so for them the default is a listening choice, not the
data's own timing.
A run of consecutive active steps of one key becomes one held note, so two repeated notes with no
gap between them read back as one long note: a binary piano roll cannot tell them apart.

Needs ``music21`` (``pip install -e ".[music]"``), imported only when a function is called.
"""

from __future__ import annotations

from pyrosequence.atomic import atomic_path

import warnings
from pathlib import Path

import numpy as np

from pyrosequence.data.limits import Limits, resolve
from pyrosequence.data.music import MIDI_HIGH, MIDI_LOW, NUM_KEYS

DEFAULT_STEP_QUARTERS = 1.0
DEFAULT_TEMPO_BPM = 120.0
VELOCITY = 80
TICKS_PER_QUARTER = 960  # divisible by 2..6, 8, 10, 12, 16, 32, 64: every usual grid is whole ticks


def _music21():
    try:
        import music21
    except ImportError:
        raise ImportError('reading and writing MIDI needs music21: pip install -e ".[music]"') from None
    return music21


def check_step(step_quarters: float) -> float:
    """Return the step length in quarter notes after checking it is positive and whole MIDI ticks."""
    if isinstance(step_quarters, bool) or not isinstance(step_quarters, (int, float)) or not step_quarters > 0:
        raise ValueError(f"step_quarters (the length of one step in quarter notes) must be positive, got {step_quarters!r}")
    ticks = step_quarters * TICKS_PER_QUARTER
    if abs(ticks - round(ticks)) > 1e-9:
        raise ValueError(f"step_quarters={step_quarters} is not a whole number of MIDI ticks (1/{TICKS_PER_QUARTER} quarter)")
    return float(step_quarters)


def check_pianoroll(roll, name: str = "piano roll") -> np.ndarray:
    """Return ``roll`` as a ``(T, 88)`` bool array after checking its shape and 0/1 values."""
    if hasattr(roll, "detach"):  # a torch tensor
        roll = roll.detach().cpu().numpy()
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != NUM_KEYS:
        raise ValueError(f"a {name} must have shape (time, {NUM_KEYS}) (MIDI notes {MIDI_LOW}..{MIDI_HIGH}), got {roll.shape}")
    if roll.shape[0] == 0:
        raise ValueError(f"the {name} has no time steps")
    if not np.isin(roll, (0, 1)).all():
        raise ValueError(f"a {name} must hold only 0 and 1 (is a note sounding at that step?)")
    return roll.astype(bool)


def pianoroll_notes(roll) -> list[tuple[int, int, int]]:
    """The notes of a piano roll as sorted ``(midi_pitch, onset_step, duration_steps)``: one note
    per maximal run of consecutive active steps of a key."""
    roll = check_pianoroll(roll)
    padded = np.zeros((roll.shape[0] + 2, NUM_KEYS), dtype=np.int8)
    padded[1:-1] = roll
    change = np.diff(padded, axis=0)  # +1 at an onset, -1 one step after the release
    notes = []
    for key in range(NUM_KEYS):
        onsets = np.flatnonzero(change[:, key] == 1)
        releases = np.flatnonzero(change[:, key] == -1)
        notes += [(MIDI_LOW + key, int(a), int(b - a)) for a, b in zip(onsets, releases)]
    return sorted(notes, key=lambda n: (n[1], n[0]))


def write_midi(
    roll,
    path: str | Path,
    step_quarters: float = DEFAULT_STEP_QUARTERS,
    tempo_bpm: float = DEFAULT_TEMPO_BPM,
) -> Path:
    """Write a ``(T, 88)`` 0/1 piano roll to a one-track MIDI file at ``path`` and return the path.

    Each step lasts ``step_quarters`` quarter notes at ``tempo_bpm`` quarter notes per minute; a
    run of active steps of a key is one note held for the run (channel 1, piano, velocity 80).
    The file is built from MIDI events directly (``music21.midi``), with no notation step that
    could split or shift notes.
    """
    m21 = _music21()
    step = check_step(step_quarters)
    if isinstance(tempo_bpm, bool) or not (isinstance(tempo_bpm, (int, float)) and tempo_bpm > 0):
        raise ValueError(f"tempo_bpm must be positive, got {tempo_bpm!r}")
    midi = m21.midi
    ticks_per_step = round(step * TICKS_PER_QUARTER)
    # (tick, 0 = off / 1 = on, pitch): offs sort before ons at the same tick
    events = []
    for pitch, onset, length in pianoroll_notes(roll):
        events += [(onset * ticks_per_step, 1, pitch), ((onset + length) * ticks_per_step, 0, pitch)]
    events.sort()
    track = midi.MidiTrack(index=1)

    def add(event, tick, now):
        delta = midi.DeltaTime(track, time=tick - now)
        track.events += [delta, event]
        return tick

    tempo = midi.MidiEvent(track, type=midi.MetaEvents.SET_TEMPO)
    tempo.data = round(60_000_000 / tempo_bpm).to_bytes(3, "big")
    now = add(tempo, 0, 0)
    program = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.PROGRAM_CHANGE, channel=1)
    program.data = 0  # acoustic grand piano
    now = add(program, 0, now)
    for tick, on, pitch in events:
        kind = midi.ChannelVoiceMessages.NOTE_ON if on else midi.ChannelVoiceMessages.NOTE_OFF
        event = midi.MidiEvent(track, type=kind, channel=1)
        event.pitch, event.velocity = pitch, VELOCITY if on else 0
        now = add(event, tick, now)
    end = midi.MidiEvent(track, type=midi.MetaEvents.END_OF_TRACK)
    end.data = b""
    add(end, max(now, check_pianoroll(roll).shape[0] * ticks_per_step), now)
    midi_file = midi.MidiFile()
    midi_file.ticksPerQuarterNote = TICKS_PER_QUARTER
    midi_file.tracks.append(track)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        midi_file.open(str(tmp), "wb")
        try:
            midi_file.write()
        finally:
            midi_file.close()
    return path


def read_midi(path: str | Path, step_quarters: float = DEFAULT_STEP_QUARTERS, num_steps: int | None = None,
              limits: Limits | None = None) -> np.ndarray:
    """Read a MIDI file into a ``(T, 88)`` float32 0/1 piano roll sampled every ``step_quarters``.

    Every note of every track marks the steps from its onset to its release (both rounded to the
    nearest step; a note shorter than a step still marks one). ``T`` is ``num_steps`` if given
    (later notes are cut), else the step of the last release (trailing silence is not kept).
    Percussion (MIDI channel 10) is skipped; notes outside MIDI 21..108 do not fit 88 keys and
    are dropped with a warning saying how many.

    ``limits`` (default: the environment's, see :mod:`pyrosequence.data.limits`): the file must fit
    ``max_file_bytes``, and without ``num_steps`` the roll the notes' times call for must fit
    ``max_steps`` (a few bytes of delta time can place a note hours later); both are checked
    before anything is allocated for them.
    """
    m21 = _music21()
    step = check_step(step_quarters)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no MIDI file at {path}")
    limits = resolve(limits)
    limits.check_file(path)
    midi_file = m21.midi.MidiFile()
    try:
        midi_file.open(str(path), "rb")
        try:
            midi_file.read()
        finally:
            midi_file.close()
    except Exception as error:  # noqa: BLE001 - music21 raises several kinds on a malformed file
        raise ValueError(f"{path} is not a readable MIDI file: {error}") from None
    per_quarter = midi_file.ticksPerQuarterNote
    if not isinstance(per_quarter, int) or per_quarter <= 0:
        raise ValueError(f"{path} uses SMPTE time division, which has no quarter notes to sample on")
    notes, dropped = [], 0
    for track in midi_file.tracks:
        tick, sounding = 0, {}
        for event in track.events:
            if event.isDeltaTime():
                tick += event.time
            elif event.isNoteOn() or event.isNoteOff():
                if event.channel == 10:
                    continue
                key = (event.channel, event.pitch)
                if event.isNoteOn():
                    sounding.setdefault(key, []).append(tick)
                elif sounding.get(key):
                    notes.append((event.pitch, sounding[key].pop(0), tick))
        notes += [(pitch, start, tick) for (_, pitch), starts in sounding.items() for start in starts]
    events = []
    for pitch, start, stop in notes:
        if not MIDI_LOW <= pitch <= MIDI_HIGH:
            dropped += 1
            continue
        onset = round(start / per_quarter / step)
        release = max(onset + 1, round(stop / per_quarter / step))
        events.append((pitch - MIDI_LOW, onset, release))
    if dropped:
        warnings.warn(f"{path}: {dropped} notes outside MIDI {MIDI_LOW}..{MIDI_HIGH} were dropped", stacklevel=2)
    if num_steps is None:
        steps = max((release for _, _, release in events), default=0)
        limits.check(path, "max_steps", steps, f"the last note ends at step {steps:,} (steps of {step} quarter notes)")
    else:
        steps = int(num_steps)
    roll = np.zeros((steps, NUM_KEYS), dtype=np.float32)
    for key, onset, release in events:
        roll[onset:release, key] = 1.0
    return roll
