"""``pyrosequence sample RUN_DIR --out DIR``: forecasts and unconditional samples of a trained run.

With ``--prefix-len N > 0`` the particle filter conditions on the first ``N`` steps of the chosen
sequence(s) of ``--split`` and ``--num`` continuations of ``--steps`` steps are drawn
(:func:`pyrosequence.diagnostics.forecast.forecast`); with ``--prefix-len 0`` the model draws
``--num`` sequences from scratch (:func:`~pyrosequence.diagnostics.forecast.sample_sequences`).

Written into ``--out``:

``samples.npz``
    ``samples`` ``(num, B, steps, D)`` forecasts (``B`` = number of ``--index`` values) or
    ``(num, steps, D)`` unconditional draws; for forecasts also ``prefix`` ``(B, N, D)``,
    ``mean`` ``(B, steps, D)``, ``truth`` ``(B, steps, D)`` (the data's continuation, zero past
    its end), ``truth_steps`` ``(B,)`` (how many of those steps the data has) and ``index``.
    When the prefix has missing values (NaN, kept as NaN in ``prefix``) also ``filled_prefix``
    ``(num, B, N, D)``: the prefix with every gap filled by a posterior predictive draw, draw
    ``s`` from the filter given the steps before and the step's observed values
    (:attr:`pyrosequence.diagnostics.forecast.Forecast.filled_prefix`).
``sample.json``
    the options, the run and its checkpoint's epoch.
For a run on standardised data (``--standardize``) every array is in the data's own units (the
recorded scaling undone).
For a model with covariates (known inputs, ``covariate_columns``) the draws condition on the data's
covariates: those after the prefix for a forecast, those of the first ``--index`` sequence for
unconditional draws; asking for more steps than the data has covariates for is refused, naming
how many are missing. The arrays hold the observation columns only.
For piano-roll models (88-dimensional binary data): ``*.mid`` files (prefix + continuation for a
forecast; ``..._truth.mid`` is the real sequence) at ``--step-quarters`` quarter notes per step
and ``--tempo`` beats per minute, and a piano-roll PNG per conditioning sequence (or one for the
unconditional draws). An existing non-empty ``--out`` is never written into without ``--force``.
"""

from __future__ import annotations

from pyrosequence.atomic import atomic_path, atomic_write, strict_json

from pathlib import Path

import numpy as np
import torch

import pyro

from pyrosequence.data.music import NUM_KEYS
from pyrosequence.training.output_dir import check_output_dir

SAMPLES_FILE = "samples.npz"
INFO_FILE = "sample.json"
PLOTTED_DRAWS = 4  # draws shown per piano-roll PNG


def add_parser(sub) -> None:
    """Register the ``sample`` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "sample",
        help="forecast from a prefix, or sample from scratch; MIDI and piano rolls for music",
        description="Draw forecasts of a trained run after the first --prefix-len steps of sequence(s) of a "
        "split (particle filter, then the generative model forward), or unconditional samples with "
        "--prefix-len 0. Writes samples.npz and sample.json, and for piano-roll data MIDI files and PNGs.",
    )
    p.add_argument("run_dir", help="a run directory written by `pyrosequence train`")
    p.add_argument("--out", required=True, help="folder to write into (must be empty or new unless --force)")
    p.add_argument("--prefix-len", dest="prefix_len", type=int, default=0,
                   help="condition on the first N steps of each chosen sequence (0 = unconditional samples)")
    p.add_argument("--num", type=int, default=8, help="draws per conditioning sequence (or unconditional draws)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps to draw (default: the rest of the sequence for a forecast, 64 unconditionally)")
    p.add_argument("--split", default="test", help="data split the prefixes come from")
    p.add_argument("--data-root", dest="data_root", help="read the data from this folder instead of the one the run recorded (a run on your own data: this file or folder instead of its recorded path)")
    p.add_argument("--index", type=int, nargs="+", default=[0], help="which sequence(s) of the split to continue")
    p.add_argument("--particles", type=int, default=100, help="particles of the filter conditioning on the prefix")
    p.add_argument("--step-quarters", dest="step_quarters", type=float, default=None,
                   help="MIDI: quarter notes per step (default 1.0, a quarter note)")
    p.add_argument("--tempo", type=float, default=None, help="MIDI: quarter notes per minute (default 120)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the draws")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing its files")
    p.add_argument("--accept-data-change", dest="accept_data_change", action="store_true",
                   help="use data whose fingerprint differs from the run's (sample.json says so)")
    p.set_defaults(command=run_sample)


def _positive(value, flag: str) -> int:
    if value is None or value < 1:
        raise ValueError(f"{flag} must be at least 1, got {value}")
    return value


def _is_pianoroll(model, data) -> bool:
    """88 keys and 0/1 data: the music sets' piano rolls."""
    if model.x_dim != NUM_KEYS:
        return False
    return bool(((data.x == 0) | (data.x == 1)).all())


def run_sample(args) -> int:
    from pyrosequence.diagnostics.forecast import forecast, sample_sequences
    from pyrosequence.training.rundir import load_run

    out = check_output_dir(args.out, args.force)
    _positive(args.num, "--num")
    _positive(args.particles, "--particles")
    if args.prefix_len < 0:
        raise ValueError(f"--prefix-len must be 0 (unconditional) or positive, got {args.prefix_len}")
    if args.steps is not None:
        _positive(args.steps, "--steps")
    if args.tempo is not None and not args.tempo > 0:
        raise ValueError(f"--tempo must be positive, got {args.tempo}")
    if args.step_quarters is not None:
        from pyrosequence.data.midi import check_step

        check_step(args.step_quarters)
    config, model, data, checkpoint = load_run(args.run_dir, args.split, args.device, args.data_root,
                                               accept_data_change=args.accept_data_change)
    pyro.set_rng_seed(args.seed)
    arrays: dict[str, np.ndarray] = {}
    info = {
        "run_dir": str(Path(args.run_dir).resolve()),
        "model": config.model,
        "data": config.data,
        "epoch": int(checkpoint["epoch"]),
        **({"data_changed_from": checkpoint["data_change"]["recorded"]} if checkpoint["data_change"] else {}),
        **{k: getattr(args, k) for k in ("split", "prefix_len", "num", "particles", "seed")},
    }
    if args.prefix_len:
        index = list(dict.fromkeys(args.index))
        for i in index:
            if not 0 <= i < len(data):
                raise ValueError(f"{config.data}/{args.split} has {len(data)} sequences; --index {i} is out of range")
            length = int(data.lengths[i])
            if args.prefix_len > length:
                raise ValueError(f"--prefix-len {args.prefix_len} is longer than sequence {i} ({length} steps)")
        lengths = data.lengths[index]
        rest = int((lengths - args.prefix_len).min())
        steps = args.steps if args.steps is not None else rest
        if steps < 1:
            raise ValueError("a prefix covers a whole sequence: pass --steps to say how far to forecast")
        prefix = data.observations[index, : args.prefix_len]
        future = None
        if data.covariate_dim:  # known only as far as the shortest chosen sequence goes
            future = data.covariates[index, args.prefix_len : args.prefix_len + min(rest, steps)]
        fc = forecast(model, data.x[index, : args.prefix_len], horizon=steps, num_samples=args.num,
                      num_particles=args.particles, future_covariates=future)
        truth = data.x.new_zeros(len(index), steps, model.x_dim)
        available = (lengths - args.prefix_len).clamp(max=steps)
        for row, i in enumerate(index):
            n = int(available[row])
            truth[row, :n] = data.observations[i, args.prefix_len : args.prefix_len + n]
        arrays = {
            "samples": fc.samples, "mean": fc.mean, "prefix": prefix, "truth": truth,
            "truth_steps": available, "index": torch.tensor(index),
        }
        if fc.filled_prefix is not None:  # the prefix's gaps, filled by posterior predictive draws
            arrays["filled_prefix"] = fc.filled_prefix
            info["prefix_missing_values"] = int(torch.isnan(prefix).sum())
        info.update(index=index, steps=steps)
    else:
        covariates = None
        if data.covariate_dim:  # the known inputs of the first chosen sequence, for every draw
            i = args.index[0]
            if not 0 <= i < len(data):
                raise ValueError(f"{config.data}/{args.split} has {len(data)} sequences; --index {i} is out of range")
            length = int(data.lengths[i])
            steps = args.steps if args.steps is not None else length
            covariates = data.covariates[i : i + 1, : min(steps, length)].expand(args.num, -1, -1)
            info.update(covariates_of_index=i)
        else:
            steps = args.steps if args.steps is not None else 64
        arrays = {"samples": sample_sequences(model, args.num, steps, covariates)}
        info.update(steps=steps)
    if config.data_options.get("scaling"):  # standardised data (--standardize): written in the data's units
        from pyrosequence.data.from_path import unstandardize

        for key in ("samples", "mean", "prefix", "truth", "filled_prefix"):
            if key in arrays:
                arrays[key] = unstandardize(arrays[key], config.data_options)
        if "truth" in arrays:  # zero past the data's end, as without scaling
            steps_seen = torch.arange(arrays["truth"].shape[1], device=arrays["truth"].device)
            arrays["truth"] = arrays["truth"] * (steps_seen[None, :] < arrays["truth_steps"][:, None].to(steps_seen.device))[..., None]
        info["units"] = "the data's (standardisation undone)"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / SAMPLES_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{k: v.detach().cpu().numpy() for k, v in arrays.items()})
    written = [SAMPLES_FILE]
    if _is_pianoroll(model, data) and bool(((arrays["samples"] == 0) | (arrays["samples"] == 1)).all()):
        written += _write_music(arrays, out, args)
        info.update(step_quarters=args.step_quarters or 1.0, tempo=args.tempo or 120.0)
    atomic_write(out / INFO_FILE, strict_json(info, indent=2) + "\n")
    written.append(INFO_FILE)
    what = f"{args.num} forecasts of {steps} steps after {args.prefix_len}" if args.prefix_len else f"{args.num} samples of {steps} steps"
    print(f"{what}: wrote {len(written)} files to {out} ({', '.join(written[:4])}{', ...' if len(written) > 4 else ''})")
    return 0


def _write_music(arrays: dict, out: Path, args) -> list[str]:
    from pyrosequence.data.midi import (
        DEFAULT_STEP_QUARTERS,
        DEFAULT_TEMPO_BPM,
        write_midi,
    )
    from pyrosequence.diagnostics.pianoroll import plot_pianorolls

    step = args.step_quarters or DEFAULT_STEP_QUARTERS
    tempo = args.tempo or DEFAULT_TEMPO_BPM
    written = []

    def midi(roll, name):
        write_midi(roll, out / name, step_quarters=step, tempo_bpm=tempo)
        written.append(name)

    samples = arrays["samples"].cpu().numpy()
    if "prefix" not in arrays:
        for j, roll in enumerate(samples):
            midi(roll, f"sample{j}.mid")
        panels = {f"sample {j}": roll for j, roll in enumerate(samples[:PLOTTED_DRAWS])}
        plot_pianorolls(panels, out / "pianoroll.png", title=f"{len(samples)} unconditional samples")
        return written + ["pianoroll.png"]
    prefix = (arrays["filled_prefix"][0] if "filled_prefix" in arrays else arrays["prefix"]).cpu().numpy()  # gaps filled
    truth = arrays["truth"].cpu().numpy()
    for row, i in enumerate(arrays["index"].tolist()):
        n = int(arrays["truth_steps"][row])
        real = np.concatenate([prefix[row], truth[row, :n]])
        midi(real, f"seq{i}_truth.mid")
        continued = [np.concatenate([prefix[row], draw]) for draw in samples[:, row]]
        for j, roll in enumerate(continued):
            midi(roll, f"seq{i}_sample{j}.mid")
        panels = {f"sequence {i} (data)": real}
        panels.update({f"forecast {j}": roll for j, roll in enumerate(continued[:PLOTTED_DRAWS])})
        name = f"seq{i}_pianoroll.png"
        plot_pianorolls(panels, out / name, prefix_len=prefix.shape[1],
                        title=f"sequence {i}: forecasts after {prefix.shape[1]} steps (red line)")
        written.append(name)
    return written
