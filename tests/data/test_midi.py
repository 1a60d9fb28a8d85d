"""Piano rolls to MIDI and back: the same notes (pitches, onsets, durations)."""

import numpy as np
import pytest

from pyrosequence.data.midi import (
    check_pianoroll,
    pianoroll_notes,
    read_midi,
    write_midi,
)
from pyrosequence.diagnostics.pianoroll import plot_pianorolls

music21 = pytest.importorskip("music21", reason="MIDI needs music21 (pip install -e '.[music]')")


def _roll(seed=0, steps=40):
    roll = (np.random.default_rng(seed).random((steps, 88)) < 0.05).astype(np.float32)
    roll[0:10, 39] = 1  # a long held note from the first step
    roll[5:7, 0] = 1  # the lowest key (MIDI 21)
    roll[-3:, 87] = 1  # the highest key (MIDI 108) up to the last step
    return roll


def test_pianoroll_notes_merge_runs():
    roll = np.zeros((6, 88))
    roll[1:4, 39] = 1
    roll[5, 39] = 1
    roll[0, 0] = 1
    assert pianoroll_notes(roll) == [(21, 0, 1), (60, 1, 3), (60, 5, 1)]


@pytest.mark.parametrize("step", [1.0, 0.5, 0.25, 1 / 3])
def test_write_then_read_gives_the_same_notes(tmp_path, step):
    roll = _roll()
    path = write_midi(roll, tmp_path / "a.mid", step_quarters=step, tempo_bpm=90)
    back = read_midi(path, step_quarters=step)
    assert back.shape == roll.shape and np.array_equal(back, roll)
    assert pianoroll_notes(back) == pianoroll_notes(roll)


def test_music21_reads_the_same_notes_and_tempo(tmp_path):
    """An independent reader (music21's score parser, which splits held notes at bar lines into
    tied pieces) hears the same keys at the same steps, and the tempo."""
    roll = _roll(1)
    path = write_midi(roll, tmp_path / "b.mid", step_quarters=0.5, tempo_bpm=90)
    score = music21.converter.parse(str(path), quantizePost=False)
    heard = np.zeros_like(roll)
    for n in score.flatten().notes:
        onset, length = round(float(n.offset) / 0.5), round(float(n.quarterLength) / 0.5)
        for p in n.pitches:
            heard[onset : onset + length, p.midi - 21] = 1
    assert np.array_equal(heard, roll)
    assert score.metronomeMarkBoundaries()[0][2].number == pytest.approx(90, abs=0.5)


def test_trailing_silence_and_num_steps(tmp_path):
    roll = np.zeros((8, 88), dtype=np.float32)
    roll[2:4, 40] = 1
    path = write_midi(roll, tmp_path / "c.mid")
    assert read_midi(path).shape == (4, 88)  # ends at the last release
    assert np.array_equal(read_midi(path, num_steps=8), roll)
    empty = write_midi(np.zeros((3, 88)), tmp_path / "empty.mid")
    assert read_midi(empty).shape == (0, 88)


def test_bad_input_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(time, 88\)"):
        write_midi(np.zeros((4, 87)), tmp_path / "x.mid")
    with pytest.raises(ValueError, match="only 0 and 1"):
        write_midi(np.full((4, 88), 0.5), tmp_path / "x.mid")
    with pytest.raises(ValueError, match="step_quarters"):
        write_midi(np.zeros((4, 88)), tmp_path / "x.mid", step_quarters=0)
    with pytest.raises(ValueError, match="whole number of MIDI ticks"):
        write_midi(np.zeros((4, 88)), tmp_path / "x.mid", step_quarters=1 / 7)
    with pytest.raises(ValueError, match="no time steps"):
        check_pianoroll(np.zeros((0, 88)))
    with pytest.raises(FileNotFoundError):
        read_midi(tmp_path / "missing.mid")
    (tmp_path / "junk.mid").write_bytes(b"not a midi file")
    with pytest.raises(ValueError, match="not a readable MIDI file"):
        read_midi(tmp_path / "junk.mid")


def test_pianoroll_png(tmp_path):
    roll = _roll()
    path = plot_pianorolls({"data": roll, "forecast": roll[::-1]}, tmp_path / "r.png", prefix_len=10, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="shape"):
        plot_pianorolls({"bad": np.zeros((3, 5))}, tmp_path / "s.png")
    with pytest.raises(ValueError, match="at least one"):
        plot_pianorolls({}, tmp_path / "s.png")
