"""A JSB preset on one device: updates per second of train(), and FIVO(K) of the JSB test split.

Part 1, for each ``--batches`` size B: ``train()`` of the preset (default ``vrnn-jsb-z32``: VRNN,
z = h = 32, FIVO(4), Adam) with ``batch_size=B`` on ``--device``, over the first
``min(B * --updates, n)`` training sequences (JSB has 229, so batch 64 gives 4 updates an epoch,
the last one of 37 sequences), for one warm-up epoch and ``--epochs`` timed ones. An epoch's
``seconds`` (the run's history) covers its updates and one validation pass; the validation pass
(the preset's bound on the validation split) is timed apart with the run's model (median of 3,
warm) and subtracted: ``updates_per_second = updates / (epoch seconds - validation seconds)``;
``updates_per_second_with_validation`` is the plain ratio. The run's final test evaluation is cut
to ``--test-particles`` particles (it is not timed).

Part 2: the pretrained run (``--pretrained``, default ``pretrained/vrnn-jsb-z32``) scored with
FIVO(``--eval-particles``, default 1024) on the JSB test split, seeded as ``pyrosequence evaluate``
seeds it (seed 0): seconds and, on a GPU, peak GPU memory. With ``--check-particles K`` (default
128) also FIVO(K), seeded the same way (the figure `pyrosequence evaluate` prints), set beside
the CPU's figure of the same model in the run's ``verification.json`` (mean and standard
deviation over 8 seeds): another device draws other noise, so the two agree in distribution,
within Monte Carlo error (``within_4_sd``), not number for number.

    python benchmarks/bench_preset.py --data-root ../shared/data [--device cuda] [--batches 4 64]
        [--updates 20] [--epochs 2] [--compile] [--eval-particles 1024] [--check-particles 128] [--skip-updates]

``--compile`` trains part 1 with the compiled per-step engine (``compile=True``, Inductor); its
first (compiling) epoch is the untimed warm-up. ``--eval-particles 0`` skips part 2;
``--skip-updates`` skips part 1.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import pyro

from pyrosequence.data import load_split
from pyrosequence.inference import evaluate
from pyrosequence.training.presets import preset_config
from pyrosequence.training.rundir import load_run
from pyrosequence.training.loop import train

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    value = fn()
    _sync(device)
    return time.perf_counter() - start, value


def updates_per_second(args, device: torch.device, batch: int, out: Path) -> dict:
    probe = preset_config(args.preset, data_root=args.data_root)
    available = len(load_split(probe.data, "train", probe.data_root))
    subset = min(batch * args.updates, available)
    config = preset_config(
        args.preset, data_root=args.data_root, device=str(device), batch_size=batch, train_subset=subset,
        epochs=1 + args.epochs, eval_particles=args.test_particles, patience=None, max_updates=None, time_limit=None,
        compile=args.compile,
    )
    run_dir = out / f"{args.preset}-b{batch}"
    result = train(config, out=run_dir, progress=False, log=lambda s: None)
    timed = result.history[1:]
    updates = sum(b["step"] - a["step"] for a, b in zip(result.history, timed))
    _, model, valid, _ = load_run(run_dir, "valid", device=str(device), data_root=args.data_root)
    with torch.no_grad(), pyro.validation_enabled(False):
        evaluate(model, valid.x, valid.lengths, config.valid_bound, config.valid_particles)  # warm
        valid_s = statistics.median(
            _timed(device, lambda: evaluate(model, valid.x, valid.lengths, config.valid_bound, config.valid_particles))[0]
            for _ in range(3)
        )
    epoch_s = [r["seconds"] for r in timed]
    update_s = sum(epoch_s) - len(epoch_s) * valid_s
    return {
        "batch": batch,
        "compiled": config.compile,
        "train_sequences": subset,
        "updates_timed": updates,
        "epoch_seconds": epoch_s,
        "warmup_epoch_seconds": result.history[0]["seconds"],
        "validation_seconds": round(valid_s, 3),
        "updates_per_second": round(updates / update_s, 2) if update_s > 0 else None,
        "updates_per_second_with_validation": round(updates / sum(epoch_s), 2),
        "train_loss_per_step": [r["train_loss_per_step"] for r in result.history],
    }


def pretrained_evaluation(args, device: torch.device) -> dict:
    run_dir = Path(args.pretrained)
    config, model, test, _ = load_run(run_dir, "test", device=str(device), data_root=args.data_root)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = {"run": str(run_dir), "sequences": len(test), "steps": int(test.lengths.sum())}
    with torch.no_grad(), pyro.validation_enabled(False):
        pyro.set_rng_seed(0)  # as `pyrosequence evaluate` (its default --seed 0) draws
        seconds, result = _timed(device, lambda: evaluate(model, test.x, test.lengths, "fivo", args.eval_particles))
        out.update(bound="fivo", particles=args.eval_particles, seed=0, seconds=round(seconds, 2),
                   per_timestep=round(result.per_timestep, 4))
        if device.type == "cuda":
            out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        verification = run_dir / "verification.json"
        if args.check_particles and verification.is_file():
            cpu = json.loads(verification.read_text())
            k = args.check_particles
            pyro.set_rng_seed(0)
            seconds, check = _timed(device, lambda: evaluate(model, test.x, test.lengths, "fivo", k))
            row = {"particles": k, "seed": 0, "seconds": round(seconds, 2), "per_timestep": round(check.per_timestep, 4)}
            if int(cpu.get("particles", -1)) == k:
                mean, sd = cpu["spread_mean"], cpu["spread_sd"]
                row.update(cpu_seed0=cpu["per_timestep"], cpu_spread_mean=mean, cpu_spread_sd=sd,
                           cpu_machine=f"{cpu.get('machine')}, torch {cpu.get('torch')}",
                           within_4_sd=bool(abs(check.per_timestep - mean) <= 4 * sd))
            out["check"] = row
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vrnn-jsb-z32")
    parser.add_argument("--data-root", default=None, help="folder holding the data (e.g. ../shared/data)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 64])
    parser.add_argument("--updates", type=int, default=20, help="updates per epoch (fewer when the split runs out)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up epoch")
    parser.add_argument("--compile", action="store_true", help="train with the compiled per-step engine")
    parser.add_argument("--test-particles", type=int, default=4, help="particles of train()'s final test evaluation")
    parser.add_argument("--pretrained", default=str(REPO / "pretrained" / "vrnn-jsb-z32"))
    parser.add_argument("--eval-particles", type=int, default=1024, help="0: skip the evaluation of the pretrained run")
    parser.add_argument("--check-particles", type=int, default=128, help="0: skip the comparison with the CPU's figure")
    parser.add_argument("--skip-updates", action="store_true")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary folder)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, {device}"
    if device.type == "cuda":
        machine += f" ({torch.cuda.get_device_name(device)})"
    result = {"machine": machine, "torch": torch.__version__, "pyro": pyro.__version__, "preset": args.preset}
    if not args.skip_updates:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out) if args.out else Path(tmp)
            result["updates"] = [updates_per_second(args, device, b, out) for b in args.batches]
    if args.eval_particles:
        result["evaluation"] = pretrained_evaluation(args, device)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
