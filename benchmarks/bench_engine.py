"""The compiled per-step engine against the eager filter, IWAE and a hand-written loop.

Part 1 (training updates, Adam, K = 4, 100 steps, Bernoulli emissions, x_dim 88) for each
configuration: the VRNN with z = h = 32 at batch 4 and batch 32, and the VHRNN with z = 14,
h = 28 at batch 4. Runners, timed in alternating rounds in one process (ratios of medians):

- ``fivo_eager``: ``FIVO(4)`` with the eager step (the reference; the filter without host syncs);
- ``fivo_compiled``: ``FIVO(4, compile=True)`` (Inductor), after a warm-up reported separately;
- ``fivo_cuda_graphs`` (with ``--cuda-graphs``): ``FIVO(4, compile="reduce-overhead")``, the
  compiled step replayed as CUDA graphs (on a CPU the mode has no CUDA-graph effect);
- ``iwae``: ``RenyiELBO(alpha=0, num_particles=4)`` over the model's Pyro model/guide (vectorized);
- ``plain`` (VRNN, compact architecture only): ``plain_vrnn.plain_vrnn_loss`` over the batch
  repeated K times: the hand-written eager PyTorch loop doing the same network work per step
  as K particles (without resampling).

Part 1b (objectives, issue 26): training updates of the VRNN (z = h = 32) on the first
``--objective-batch`` (4) sequences of the JSB Chorales training split, K = 4, alternating: each of
the elbo (one particle) and iwae (K) objectives of :func:`make_objective` eager (Pyro's
``Trace_ELBO`` / ``RenyiELBO(alpha=0)``) and compiled (``compile=...``: the per-step engine), and
``FIVO(4, compile=...)``. Reports compiled / eager for elbo and iwae and compiled FIVO / compiled
IWAE; the first (compiling) updates apart. With ``--estimators``, also the lower-variance
gradient estimators eager and compiled: iwae-dreg (K) and elbo-stl (one particle), reported as
compiled / eager. Needs ``--data-root`` with JSB (fails in one line otherwise);
``--skip-objectives`` leaves it out.

Part 2 (evaluation): FIVO(128) of the JSB Chorales test split with the VRNN, eager against
compiled (and CUDA graphs with ``--cuda-graphs``), alternating; the compiled runs' first calls
(which compile) reported separately.

    python benchmarks/bench_engine.py [--rounds 5] [--steps 3] [--configs vrnn-b4 vrnn-b32 vhrnn-b4]
        [--eval-rounds 2] [--eval-sequences N] [--data-root /work/shared/data] [--skip-eval]
        [--skip-objectives] [--objective-rounds 5] [--objective-batch 4] [--objective-steps N]
        [--estimators] [--device cpu|cuda] [--cuda-graphs]

``--rounds 0`` runs the evaluation part only.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import pyro
from pyro.infer import RenyiELBO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_vrnn import plain_vrnn_loss  # noqa: E402

from pyrosequence.inference import FIVO, evaluate, make_bound, make_objective  # noqa: E402
from pyrosequence.inference.engine import CompileOptions  # noqa: E402
from pyrosequence.models import VHRNN, VRNN  # noqa: E402

CONFIGS = {
    "vrnn-b4": ("vrnn", 4),
    "vrnn-b32": ("vrnn", 32),
    "vhrnn-b4": ("vhrnn", 4),
}


def _model(kind: str, args):
    if kind == "vrnn":
        return VRNN(args.x_dim, args.vrnn_dim, args.vrnn_dim, architecture=args.architecture)
    return VHRNN(args.x_dim, args.vhrnn_z, hidden_dim=args.vhrnn_h, likelihood="bernoulli",
                 architecture=args.architecture, omega_dim=args.omega_dim)


_DEVICE = torch.device("cpu")  # set by main (--device)


def _sync() -> None:
    if _DEVICE.type == "cuda":
        torch.cuda.synchronize(_DEVICE)


def _timed(fn) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def training_ratios(name: str, args) -> dict:
    kind, batch = CONFIGS[name]
    batch = args.batch or batch
    torch._dynamo.reset()  # static shapes for this configuration's graphs
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model = _model(kind, args).to(_DEVICE)
    x = (torch.rand(batch, args.time, args.x_dim) < 0.1).float().to(_DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    k = args.particles

    def update(objective):
        def run():
            optimizer.zero_grad()
            objective.loss_and_grads(model.model, model.guide, x)
            optimizer.step()

        return run

    runners = {
        "fivo_eager": update(FIVO(k)),
        "fivo_compiled": update(FIVO(k, compile=CompileOptions(backend=args.backend))),
        "iwae": update(RenyiELBO(alpha=0.0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)),
    }
    if args.cuda_graphs:
        runners["fivo_cuda_graphs"] = update(FIVO(k, compile=CompileOptions(backend=args.backend, mode="reduce-overhead")))
    if kind == "vrnn" and args.architecture == "compact":
        repeated = x.repeat(k, 1, 1)

        def plain():
            optimizer.zero_grad()
            plain_vrnn_loss(model, repeated).backward()
            optimizer.step()

        runners["plain"] = plain
    warmup = {"fivo_compiled_first_update_s": round(_timed(runners["fivo_compiled"]), 1),
              "fivo_compiled_second_update_s": round(_timed(runners["fivo_compiled"]), 2)}
    if args.cuda_graphs:  # CUDA graphs are recorded on the second compiled run, replayed from the third
        warmup["fivo_cuda_graphs_first_update_s"] = round(_timed(runners["fivo_cuda_graphs"]), 1)
        warmup["fivo_cuda_graphs_second_update_s"] = round(_timed(runners["fivo_cuda_graphs"]), 2)
    for name_, run in runners.items():
        if not name_.startswith(("fivo_compiled", "fivo_cuda_graphs")):
            run()
    times = {name_: [] for name_ in runners}
    for _ in range(args.rounds):
        for name_, run in runners.items():
            times[name_].append(_timed(lambda: [run() for _ in range(args.steps)]) / args.steps)
    ms = {name_: statistics.median(t) * 1000 for name_, t in times.items()}
    out = {
        "batch": batch,
        "ms_per_update": {key: round(v, 1) for key, v in ms.items()},
        "warmup": warmup,
        "ratio_compiled_vs_eager": round(ms["fivo_compiled"] / ms["fivo_eager"], 3),
        "ratio_compiled_fivo_vs_iwae": round(ms["fivo_compiled"] / ms["iwae"], 3),
        "ratio_eager_fivo_vs_iwae": round(ms["fivo_eager"] / ms["iwae"], 3),
    }
    if "fivo_cuda_graphs" in ms:
        out["ratio_cuda_graphs_vs_eager"] = round(ms["fivo_cuda_graphs"] / ms["fivo_eager"], 3)
        out["ratio_cuda_graphs_vs_compiled"] = round(ms["fivo_cuda_graphs"] / ms["fivo_compiled"], 3)
    if "plain" in ms:
        out["ratio_compiled_vs_plain"] = round(ms["fivo_compiled"] / ms["plain"], 3)
        out["ratio_eager_vs_plain"] = round(ms["fivo_eager"] / ms["plain"], 3)
    return out


def jsb_batch(args, split: str = "train", count: int | None = None):
    """The first ``count`` sequences of a JSB split (cut to ``--objective-steps``), or a one-line
    ``SystemExit`` when the data is not under ``--data-root``."""
    from pyrosequence.data import load_split

    try:
        data = load_split("jsb", split, args.data_root)
    except (FileNotFoundError, OSError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(f"bench_engine: the JSB Chorales data is needed (--data-root): {message}") from None
    x, lengths = data.x[:count], data.lengths[:count]
    steps = int(lengths.max()) if args.objective_steps is None else min(args.objective_steps, int(lengths.max()))
    return x[:, :steps].contiguous().to(_DEVICE), lengths.clamp(max=steps)


def objective_ratios(args) -> dict:
    """Part 1b: the elbo and iwae objectives eager and compiled, and compiled FIVO, on JSB (and
    with ``--estimators`` iwae-dreg and elbo-stl eager and compiled)."""
    x, lengths = jsb_batch(args, "train", args.objective_batch)
    torch._dynamo.reset()
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model = VRNN(args.x_dim, args.vrnn_dim, args.vrnn_dim, architecture=args.architecture).to(_DEVICE)
    model.init_from_data(x, lengths)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    k = args.particles
    options = CompileOptions(backend=args.backend)

    def update(objective):
        def run():
            optimizer.zero_grad()
            objective.loss_and_grads(model.model, model.guide, x, lengths)
            optimizer.step()

        return run

    runners = {
        "elbo_eager": update(make_objective("elbo", 1)),
        "elbo_compiled": update(make_objective("elbo", 1, compile=options)),
        "iwae_eager": update(make_objective("iwae", k)),
        "iwae_compiled": update(make_objective("iwae", k, compile=options)),
        "fivo_compiled": update(FIVO(k, compile=options)),
    }
    estimators = {"iwae_dreg": ("iwae-dreg", k), "elbo_stl": ("elbo-stl", 1)} if args.estimators else {}
    # Static shapes for the held-fixed graphs: after the runners above compiled the step at two
    # particle counts, Dynamo marks the particle dimension dynamic, and the held-fixed state's
    # fresh size symbol then fails the recurrent cell's shape check (the step would fall back
    # to eager for this model, every runner included).
    static = CompileOptions(backend=args.backend, dynamic=False)
    for key, (name, particles) in estimators.items():
        runners[f"{key}_eager"] = update(make_objective(name, particles))
        runners[f"{key}_compiled"] = update(make_objective(name, particles, compile=static))
    warmup = {}
    for name, run in runners.items():
        if name.endswith("_compiled"):
            warmup[f"{name}_first_update_s"] = round(_timed(run), 1)
        run()
    times = {name: [] for name in runners}
    for _ in range(args.objective_rounds):
        for name, run in runners.items():
            times[name].append(_timed(lambda: [run() for _ in range(args.steps)]) / args.steps)
    ms = {name: statistics.median(t) * 1000 for name, t in times.items()}
    return {
        "batch": int(len(lengths)),
        "steps": int(x.shape[1]),
        "lengths": [int(n) for n in lengths],
        "particles": k,
        "ms_per_update": {key: round(v, 1) for key, v in ms.items()},
        "warmup": warmup,
        "ratio_elbo_compiled_vs_eager": round(ms["elbo_compiled"] / ms["elbo_eager"], 3),
        "ratio_iwae_compiled_vs_eager": round(ms["iwae_compiled"] / ms["iwae_eager"], 3),
        "ratio_fivo_compiled_vs_iwae_compiled": round(ms["fivo_compiled"] / ms["iwae_compiled"], 3),
        **{f"ratio_{key}_compiled_vs_eager": round(ms[f"{key}_compiled"] / ms[f"{key}_eager"], 3) for key in estimators},
    }


def evaluation_ratio(args) -> dict:
    from pyrosequence.data import load_split

    torch._dynamo.reset()
    torch.manual_seed(0)
    data = load_split("jsb", "test", args.data_root).to(_DEVICE)
    x, lengths = data.x, data.lengths
    if args.eval_sequences:
        x, lengths = x[: args.eval_sequences], lengths[: args.eval_sequences]
        x = x[:, : int(lengths.max())]
    model = VRNN(args.x_dim, args.vrnn_dim, args.vrnn_dim, architecture=args.architecture).to(_DEVICE)
    k = args.eval_particles
    rules = {"eager": make_bound("fivo"), "compiled": make_bound("fivo", compile=CompileOptions(backend=args.backend))}
    if args.cuda_graphs:
        rules["cuda_graphs"] = make_bound("fivo", compile=CompileOptions(backend=args.backend, mode="reduce-overhead"))
    first = _timed(lambda: evaluate(model, x, lengths, rules["compiled"], k))
    firsts = {}
    if args.cuda_graphs:  # recorded on the second run, replayed from the third
        firsts["cuda_graphs_first_call_s"] = round(_timed(lambda: evaluate(model, x, lengths, rules["cuda_graphs"], k)), 1)
        firsts["cuda_graphs_second_call_s"] = round(_timed(lambda: evaluate(model, x, lengths, rules["cuda_graphs"], k)), 2)
    values = {}
    times = {name: [] for name in rules}
    for _ in range(args.eval_rounds):
        for name, rule in rules.items():
            times[name].append(_timed(lambda: values.__setitem__(name, evaluate(model, x, lengths, rule, k).per_timestep)))
    s = {name: statistics.median(t) for name, t in times.items()}
    out = {
        "sequences": int(len(lengths)),
        "steps": int(lengths.sum()),
        "particles": k,
        "seconds": {key: round(v, 2) for key, v in s.items()},
        "compiled_first_call_s": round(first, 1),
        **firsts,
        "per_timestep": {key: round(v, 3) for key, v in values.items()},
        "ratio_compiled_vs_eager": round(s["compiled"] / s["eager"], 3),
    }
    if "cuda_graphs" in s:
        out["ratio_cuda_graphs_vs_eager"] = round(s["cuda_graphs"] / s["eager"], 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (0: skip part 1)")
    parser.add_argument("--steps", type=int, default=3, help="updates per round and runner")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=None, help="override every configuration's batch size")
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--x-dim", type=int, default=88)
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--vrnn-dim", type=int, default=32, help="VRNN z and h")
    parser.add_argument("--vhrnn-z", type=int, default=14)
    parser.add_argument("--vhrnn-h", type=int, default=28)
    parser.add_argument("--omega-dim", type=int, default=64)
    parser.add_argument("--architecture", default="compact", choices=["compact", "fivo"],
                        help="the models' reading (the hand-written loop exists for 'compact' only)")
    parser.add_argument("--eval-particles", type=int, default=128)
    parser.add_argument("--eval-rounds", type=int, default=2)
    parser.add_argument("--eval-sequences", type=int, default=None, help="the first N test sequences only")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--skip-objectives", action="store_true", help="leave out part 1b (needs JSB)")
    parser.add_argument("--objective-rounds", type=int, default=5, help="alternating rounds of part 1b")
    parser.add_argument("--objective-batch", type=int, default=4, help="JSB training sequences per update (part 1b)")
    parser.add_argument("--objective-steps", type=int, default=None,
                        help="cut the part 1b batch to its first N steps (default: the batch's longest sequence)")
    parser.add_argument("--estimators", action="store_true",
                        help="part 1b also times iwae-dreg (K) and elbo-stl (1 particle), eager and compiled")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend of the compiled runners")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help='also time compile="reduce-overhead" (CUDA graphs on a CUDA device)')
    args = parser.parse_args(argv)
    global _DEVICE
    _DEVICE = torch.device(args.device)
    pyro.enable_validation(False)  # as pyrosequence train runs its updates
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, {_DEVICE}"
    if _DEVICE.type == "cuda":
        machine += f" ({torch.cuda.get_device_name(_DEVICE)})"
    result = {
        "machine": machine,
        "device": str(_DEVICE),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "architecture": args.architecture,
        "backend": args.backend,
        "training": {name: training_ratios(name, args) for name in args.configs} if args.rounds else {},
    }
    if not args.skip_objectives:
        result["objectives"] = objective_ratios(args)
    if not args.skip_eval:
        result["evaluation"] = evaluation_ratio(args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
