"""Copy a trained run into ``pretrained/NAME`` and record how to verify it.

    python experiments/ship_pretrained.py RUN_DIR NAME --preset PRESET --data-root ../shared/data

What lands in ``pretrained/NAME``: the run's ``config.json`` (its data folder rewritten to
``../shared/data``, relative to the repository root, so the README's command works from a fresh
clone), ``best.pt`` (the weights that are scored), ``checkpoint.pt`` (the last epoch, so
``--resume`` continues the run), ``metrics.jsonl`` (the learning curve), ``results.json``, and
``verification.json``: the test-split bound that ``pyrosequence evaluate pretrained/NAME
--bound B --particles K --weights W --split test`` prints with its default seed 0, plus the same
estimate under ``--seeds`` further evaluation seeds, their mean and standard deviation (the spread
the CI test's tolerance is derived from). The bound is the one the preset's paper reports (FIVO
for the VHRNN paper's rows, the ELBO for Pyro's DMM), with ``--particles`` particles (default 128
for FIVO and IWAE, 1 for the ELBO); the weights are the best validation epoch's for a keep-best
run unless ``--weights last`` (the figure a paper that does no model selection reports).

Data the loader standardised (stock): the record also holds the figure in the data's own units
(``per_timestep_data_units``, the Jacobian of the standardisation added: ``data_units_offset``),
which is what a preset with ``units="data"`` compares with the paper. ``--ci-particles K``: when the
headline bound is too slow for CI (FIVO(1024) on stock), the record adds ``ci_check``, the same
bound and weights at K particles with its own spread over 4 seeds, which the CI test re-evaluates
instead.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch

from pyrosequence.inference import evaluate, make_bound
from pyrosequence.inference.evaluate import log_jacobian
from pyrosequence.training.presets import get_preset
from pyrosequence.training.rundir import load_run

SHIPPED = ("config.json", "best.pt", "checkpoint.pt", "metrics.jsonl", "results.json")


#: The bounds a shipped figure can be, in the order a preset's reported figures are looked up.
BOUNDS = ("fivo", "iwae", "elbo")


def estimates(run_dir: Path, data_root: str, bound_name: str, particles: int, weights: str | None,
              seeds) -> tuple[list[float], dict]:
    """The test bound of the run's ``weights`` (``None``: the run's default) under each evaluation
    seed, as ``pyrosequence evaluate --seed`` computes it; and the scored checkpoint."""
    config, model, data, checkpoint = load_run(run_dir, "test", data_root=data_root, weights=weights)
    bound = make_bound(bound_name, config.resampler, config.ess_threshold)
    values = []
    for seed in seeds:
        pyro.set_rng_seed(seed)  # as `pyrosequence evaluate --seed` does, after the model is built
        values.append(evaluate(model, data.x, data.lengths, bound=bound, num_particles=particles).per_timestep)
    return values, checkpoint


def data_units_offset(run_dir: Path, data_root: str) -> float | None:
    """What a bound per step on the run's test split gains in the data's own units (the Jacobian
    of the loader's standardisation); ``None`` when the data were not standardised."""
    _, _, data, _ = load_run(run_dir, "test", data_root=data_root)
    if data.scale is None:
        return None
    return float(log_jacobian(data.observations, data.lengths, data.scale).sum() / data.lengths.sum())


def spread(values: list[float]) -> dict:
    """The seed-0 figure and the spread of the others, as verification.json records them."""
    rest = values[1:]
    return {"per_timestep": values[0], "spread_seeds": list(range(1, len(values))), "spread_values": rest,
            "spread_mean": statistics.mean(rest) if rest else None,
            "spread_sd": statistics.stdev(rest) if len(rest) > 1 else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("name")
    p.add_argument("--preset", required=True, help="the preset the run was trained from (its paper figure)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--bound", choices=BOUNDS, help="the test bound to record (default: the one the preset's paper reports)")
    p.add_argument("--particles", type=int, help="particles of that bound (default: 128, or 1 for the ELBO)")
    p.add_argument("--weights", choices=("best", "last"),
                   help="weights scored (default: best for a keep-best run, else last)")
    p.add_argument("--seeds", type=int, default=8, help="evaluation seeds beyond seed 0 for the spread")
    p.add_argument("--ci-particles", type=int, dest="ci_particles",
                   help="also record the bound at this many particles (--ci-seeds seeds) for CI to re-evaluate instead")
    p.add_argument("--ci-seeds", type=int, default=4, dest="ci_seeds",
                   help="evaluation seeds beyond seed 0 for the spread of that cheaper check (more where the "
                        "estimates are heavy-tailed, as FIVO's on stock are)")
    p.add_argument("--out", default="pretrained")
    p.add_argument("--wall-time", help="training wall time to record, e.g. '2 h 31 min (3 runs on 2 cores)'")
    p.add_argument("--command", dest="train_command", help="the command that trained the run")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)

    src, dest = Path(args.run_dir), Path(args.out) / args.name
    if dest.exists() and not args.force:
        print(f"ship_pretrained: {dest} exists; pass --force to replace it", file=sys.stderr)
        return 1
    missing = [f for f in SHIPPED if not (src / f).is_file()]
    if missing:
        print(f"ship_pretrained: {src} lacks {', '.join(missing)} (train it to the end with keep_best)", file=sys.stderr)
        return 1
    preset = get_preset(args.preset)
    bound_name = args.bound or next((b for b in BOUNDS if b in preset.reported), "fivo")
    particles = args.particles or (1 if bound_name == "elbo" else 128)
    dest.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        shutil.copy2(src / name, dest / name)
    config = json.loads((dest / "config.json").read_text())
    if config.get("data_root") is not None:  # a named data set (data read from a path keeps its path)
        config["data_root"] = "../shared/data"
    (dest / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))

    # the weights must still mean what they meant in training: re-evaluate the best epoch's
    # validation bound and compare it with the one recorded then (a changed model definition
    # would show here, not only as a strange test figure). The recorded figure is the largest of
    # one noisy draw per epoch, so it is optimistic by up to about sqrt(2 ln epochs) standard
    # deviations of the validation estimate (the expected maximum of that many normal draws): the
    # tolerance is 0.05 plus that, with the deviation measured over four evaluation seeds.
    config, model, valid, best = load_run(dest, "valid", data_root=args.data_root)
    key = f"valid_{config.valid_bound}_per_step"
    if key in best:
        bound = make_bound(config.valid_bound, config.resampler, config.ess_threshold)
        again = []
        for seed in range(4):
            pyro.set_rng_seed(seed)
            again.append(evaluate(model, valid.x, valid.lengths, bound=bound,
                                  num_particles=config.valid_particles).per_timestep)
        epochs = max(int(best["epoch"]), 2)
        tolerance = 0.05 + math.sqrt(2 * math.log(epochs)) * statistics.stdev(again)
        if abs(again[0] - best[key]) > tolerance:
            shutil.rmtree(dest)
            print(f"ship_pretrained: the best epoch's {key} was {best[key]:.4f} in training but is {again[0]:.4f} now "
                  f"(tolerance {tolerance:.4f}): the model's definition changed since; not shipped", file=sys.stderr)
            return 1
        print(f"{args.name}: {key} recorded {best[key]:.4f}, re-evaluated {again[0]:.4f} "
              f"(sd over 4 seeds {statistics.stdev(again):.4f}, tolerance {tolerance:.4f})")
    start = time.perf_counter()
    values, scored = estimates(dest, args.data_root, bound_name, particles, args.weights, range(args.seeds + 1))
    seconds = (time.perf_counter() - start) / len(values)
    weights = scored["scored_weights"]
    history = [json.loads(line) for line in (dest / "metrics.jsonl").read_text().splitlines() if line]
    record = {
        "name": args.name,
        "preset": preset.name,
        "paper": preset.paper,
        "paper_value": preset.reported.get(bound_name),
        "paper_parameters": preset.reported.get("parameters"),
        "parameters": model.num_parameters(),
        "bound": bound_name,
        "particles": particles,
        "weights": weights,
        "split": "test",
        "seed": 0,
        **spread(values),
        "selected_epoch": int(best["epoch"]),
        "scored_epoch": int(scored["epoch"]),
        "epochs": history[-1]["epoch"] if history else 0,
        "updates": history[-1]["step"] if history else 0,
        "selected_updates": int(best["step"]),
        "train_wall_time": args.wall_time,
        "train_seconds": round(sum(r["seconds"] for r in history), 1),
        "train_command": args.train_command,
        "seconds_per_evaluation": round(seconds, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
    }
    offset = data_units_offset(dest, args.data_root)
    if offset is not None:
        record.update(paper_units=preset.units, data_units_offset=offset, per_timestep_data_units=values[0] + offset)
    if args.ci_particles and args.ci_particles != particles:
        cheap, _ = estimates(dest, args.data_root, bound_name, args.ci_particles, args.weights, range(args.ci_seeds + 1))
        record["ci_check"] = {"bound": bound_name, "particles": args.ci_particles, **spread(cheap)}
    (dest / "verification.json").write_text(json.dumps(record, indent=2))
    sd = record["spread_sd"]
    print(f"{args.name}: test {bound_name}({particles}) with the {weights} weights, seed 0 {values[0]:.4f}; over {args.seeds} more seeds "
          f"mean {record['spread_mean']:.4f} sd {sd if sd is None else round(sd, 4)}; {seconds:.1f} s per evaluation")
    write_table(Path(args.out))
    return 0


def scored_as(record: dict) -> str:
    """How a shipped figure was measured, e.g. "fivo(128), best weights"."""
    return f"{record['bound']}({record['particles']}), {record.get('weights', 'best')} weights"


def write_table(folder: Path) -> Path:
    """Rewrite the table of ``folder/README.md`` (between its markers) from every shipped run's
    ``verification.json``."""
    rows = [
        "| name | paper | paper's figure | ours: test bound, seed 0 | sd over seeds | parameters (paper) | updates (selected) | training time | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("*/verification.json")):
        r = json.loads(path.read_text())
        paper_params = f"{r['paper_parameters']:,}" if r["paper_parameters"] else "not given"
        ours = f"**{r['per_timestep']:.3f}** {scored_as(r)}"
        if "per_timestep_data_units" in r:
            ours += f"; {r['per_timestep_data_units']:.3f} in the raw data's units"
        rows.append(
            f"| `{r['name']}` | {r['paper']} | {r['paper_value']} | {ours} | {r['spread_sd']:.4f} | "
            f"{r['parameters']:,} ({paper_params}) | {r['updates']:,} ({r['selected_updates']:,}, epoch {r['selected_epoch']}) | "
            f"{r['train_wall_time'] or str(round(r['train_seconds'] / 60)) + ' min'} | `{r['train_command']}` |"
        )
    readme = folder / "README.md"
    begin, end = "<!-- table: written by experiments/ship_pretrained.py -->", "<!-- end of table -->"
    text = readme.read_text() if readme.is_file() else f"# Pretrained models\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip() + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + begin + "\n" + "\n".join(rows) + "\n" + end + tail)
    return readme


if __name__ == "__main__":
    sys.exit(main())
