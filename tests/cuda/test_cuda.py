"""The CUDA path: what a researcher with a GPU runs first, checked on a GPU (issue 28).

Every test here is marked ``cuda`` and skipped, with the reason, on a machine without CUDA; on
a GPU machine ``pytest -m cuda tests/`` runs them (``benchmarks/gpu_check.sh`` does, with the
GPU benchmarks). What each group establishes, and how:

* **The zoo on CUDA**: every model of ``tests/models/test_zoo.py`` x every objective takes one
  SVI step with model and data on the GPU (finite loss, parameters moved and still on the GPU).
* **FIVO, IWAE and evaluate equal to the CPU under the same draws.** The two devices' random
  generators differ, so the GPU run's draws are made on the CPU (:class:`cpu_draws.DrawsOnCpu`:
  every random ATen op on the GPU runs on the CPU's generator and is copied over): started from
  the same seed, both runs see the same noise and the bounds, resampling decisions and gradients
  must agree to float rounding. TF32 is switched off for these tests (it is off for matmuls by
  default; cuDNN's default allows it). The one residual difference: resampling's multinomial
  draws from probabilities computed on each device, which could pick another ancestor if a
  uniform variate fell within rounding of a boundary (chance ~1e-7 per draw).
* **The compiled engine equal to eager on CUDA**, with ``compile=True`` (Inductor's Triton
  kernels) and ``compile="reduce-overhead"`` (CUDA graphs), through the CPU tests' helpers in
  ``tests/inference/test_engine.py`` (same seed, ``fallback_random`` so compiled code calls
  eager's random kernels). CUDA graphs are recorded on the second compiled run and replayed from
  the third, so the reduce-overhead tests warm up twice before comparing, and they fail if
  Inductor skipped CUDA graphs (it falls back to plain kernels silently otherwise).
* **Checkpoints cross devices**: a run trained on the GPU resumes on the CPU and then on the GPU.
* **The command line**: ``pyrosequence train --device cuda`` then ``evaluate --device cuda``
  through :func:`pyrosequence.cli.main`.
* **torchrun**: ``torchrun --nproc_per_node=1 -m pyrosequence train --device cuda`` (one process
  joins no process group, so it trains as a plain run); and, since one GPU cannot host two NCCL
  ranks, a script under ``torchrun --nproc_per_node=1`` that joins an NCCL group of one and drives
  every collective of :class:`~pyrosequence.training.distributed.DataParallel` on GPU tensors.
* **Mixed devices**: a model on the GPU given data on the CPU (and the reverse) is refused in one
  line naming both devices (``SequenceModel.prepare``); ``tests/cuda/test_devices.py`` checks the
  same message on a CPU machine with the ``meta`` device.
* ``train(config, model=instance)`` with an instance already on the GPU (``train`` hands
  ``init_from_data`` the training data on the model's device).
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

import pyro
from pyro.infer import SVI

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
for folder in (HERE, TESTS / "models", TESTS / "inference", TESTS / "training", TESTS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import test_engine  # noqa: E402  (the compiled-engine equality helpers)
import test_train  # noqa: E402  (its small training configuration)
from cpu_draws import DrawsOnCpu  # noqa: E402
from test_zoo import MODELS  # noqa: E402  (the model zoo, enumerated once)

from pyrosequence import VHRNN, VRNN  # noqa: E402
from pyrosequence.training.checkpoint import load_checkpoint  # noqa: E402
from pyrosequence.training.config import TrainConfig  # noqa: E402
from pyrosequence.inference import FIVO, OBJECTIVES, evaluate, make_objective  # noqa: E402
from pyrosequence.inference.engine import CompileOptions  # noqa: E402
from pyrosequence.training.loop import train  # noqa: E402

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA device: torch.cuda.is_available() is False (run on a GPU machine: benchmarks/gpu_check.sh)",
    ),
]

CUDA = torch.device("cuda")
QUIET = dict(progress=False, log=lambda s: None)


@pytest.fixture
def no_tf32(monkeypatch):
    """Full float32 matmuls and cuDNN kernels, so the GPU rounds like the CPU (to ~1e-6)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def _on_cuda(model):
    """A copy of ``model`` on the GPU with its own Pyro name (its parameters stay apart in the
    param store from the CPU original's)."""
    moved = copy.deepcopy(model).to(CUDA)
    moved.pyro_name = model.pyro_name + "_cuda"
    return moved


def _close(actual, expected, rtol=1e-4, atol=1e-4, what=""):
    torch.testing.assert_close(actual.detach().cpu(), expected.detach().cpu(), rtol=rtol, atol=atol, msg=what or None)


# ------------------------------------------------------------------------------------ the zoo


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_step_on_cuda(name, objective):
    """Every model x objective of the CPU zoo (vectorized particles: the path train uses) takes
    an SVI step with model and data on the GPU."""
    build, binary = MODELS[name]
    model = build().to(CUDA)
    x = ((torch.rand(4, 6, 5) < 0.3).float() if binary else torch.randn(4, 6, 5)).to(CUDA)
    lengths = torch.tensor([6, 4, 1, 5], device=CUDA)
    before = [p.detach().clone() for p in model.parameters()]
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.01}), make_objective(objective, 3, True))
    loss = svi.step(x, lengths)
    assert math.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert all(p.device.type == CUDA.type for p in model.parameters())


# ------------------------------------------------------------------------------------ CUDA = CPU under the same draws


def _fivo_run(model, x, lengths, seed):
    pyro.set_rng_seed(seed)
    result = FIVO(4, ess_threshold=0.8).filter(model.model, model.guide, x, lengths)
    loss = -(result.log_z / lengths).mean()
    params = [p for p in model.parameters() if p.requires_grad]
    return result, loss, torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("build", [
    lambda: VRNN(4, 3, architecture="fivo"),
    lambda: VHRNN(4, 3, likelihood="bernoulli", omega_dim=4, architecture="fivo"),
], ids=["vrnn", "vhrnn"])
def test_fivo_on_cuda_equals_cpu_under_the_same_draws(build, no_tf32):
    model = build()
    x, lengths = test_engine._data()
    on_cpu = _fivo_run(model, x, lengths, 7)
    gpu = _on_cuda(model)
    with DrawsOnCpu(CUDA) as draws:
        on_gpu = _fivo_run(gpu, x.to(CUDA), lengths.to(CUDA), 7)
    assert draws.count > 0
    (r1, loss1, g1), (r2, loss2, g2) = on_cpu, on_gpu
    assert torch.equal(r1.resampled, r2.resampled.cpu()) and bool(r1.resampled.any())
    _close(r2.log_z, r1.log_z, what="log Z")
    _close(loss2, loss1, what="loss")
    for i, (a, b) in enumerate(zip(g1, g2)):
        assert (a is None) == (b is None)
        if a is not None:
            _close(b, a, rtol=1e-3, atol=1e-4, what=f"gradient {i}")


def test_iwae_objective_on_cuda_equals_cpu_under_the_same_draws(no_tf32):
    """RenyiELBO(alpha=0) through Pyro's traces: loss and every gradient."""
    model = VRNN(4, 3)
    x, lengths = test_engine._data()

    def run(m, x, lengths):
        pyro.clear_param_store()
        pyro.set_rng_seed(5)
        for p in m.parameters():
            p.grad = None
        loss = make_objective("iwae", 4).loss_and_grads(m.model, m.guide, x, lengths)
        return loss, [p.grad for p in m.parameters()]

    loss1, g1 = run(model, x, lengths)
    gpu = _on_cuda(model)
    with DrawsOnCpu(CUDA) as draws:
        loss2, g2 = run(gpu, x.to(CUDA), lengths.to(CUDA))
    assert draws.count > 0
    assert loss2 == pytest.approx(loss1, rel=1e-4, abs=1e-4)
    for i, (a, b) in enumerate(zip(g1, g2)):
        assert (a is None) == (b is None)
        if a is not None:
            _close(b, a, rtol=1e-3, atol=1e-4, what=f"gradient {i}")


@pytest.mark.parametrize("bound", ["fivo", "iwae", "elbo"])
def test_evaluate_on_cuda_equals_cpu_under_the_same_draws(bound, no_tf32):
    """Per-sequence bounds, from the global stream and from evaluate's own seeded blocks."""
    model = VRNN(4, 3)
    x, lengths = test_engine._data(batch=3, steps=8)
    gpu = _on_cuda(model)
    for seed_arg in (None, 11):
        pyro.set_rng_seed(2)
        cpu = evaluate(model, x, lengths, bound, 16, seed=seed_arg)
        pyro.set_rng_seed(2)
        with DrawsOnCpu(CUDA) as draws:
            cuda = evaluate(gpu, x.to(CUDA), lengths.to(CUDA), bound, 16, seed=seed_arg)
        assert draws.count > 0
        _close(cuda.log_likelihood, cpu.log_likelihood, what=f"{bound}, seed={seed_arg}")
        assert cuda.per_timestep == pytest.approx(cpu.per_timestep, rel=1e-5, abs=1e-5)


# ------------------------------------------------------------------------------------ compiled = eager on CUDA


def _cuda_data():
    x, lengths = test_engine._data()
    return x.to(CUDA), lengths.to(CUDA)


def _assert_cuda_graphs_used():
    """Inductor skips CUDA graphs (and runs its kernels plainly) when a graph has CPU tensors,
    mutated inputs and the like; it counts each skip. None may have happened."""
    skips = counters["inductor"]["cudagraph_skips"]
    assert skips == 0, f"Inductor skipped CUDA graphs {skips} time(s) (TORCH_LOGS=perf_hints says why)"


@pytest.mark.compile
def test_compiled_step_equals_eager_on_cuda():
    """compile=True: Inductor's Triton kernels for the VRNN's step, forward and backward."""
    torch._dynamo.reset()
    model = VRNN(**test_engine.TINY, architecture="fivo").to(CUDA)
    test_engine._assert_compiled_equals_eager(model, CompileOptions(), *_cuda_data())


@pytest.mark.compile
def test_cuda_graphs_step_equals_eager():
    """compile="reduce-overhead": the step is recorded as a CUDA graph on the second compiled
    filter run and replayed from the third; the compared run (the helper's second) replays."""
    torch._dynamo.reset()
    counters.clear()
    model = VRNN(**test_engine.TINY, architecture="fivo").to(CUDA)
    options = CompileOptions(mode="reduce-overhead")
    assert options.uses_cuda_graphs
    x, lengths = _cuda_data()
    with torch._inductor.config.patch(fallback_random=True), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for seed in (1, 2):  # warm-up and recording runs
            test_engine._grads(model, FIVO(3, ess_threshold=0.8, compile=options), x, lengths, seed)
    test_engine._assert_compiled_equals_eager(model, options, x, lengths)
    _assert_cuda_graphs_used()


@pytest.mark.compile
def test_compiled_evaluation_traced_without_codegen_equals_eager_on_cuda():
    """evaluate(compile=...) of FIVO without gradients (its own graph), traced and run by eager
    kernels (aot_eager): the same draws in the same order, so the eager values on the GPU
    (measured equal to the last digit on an H200, 2026-12-04)."""
    torch._dynamo.reset()
    model = VRNN(**test_engine.TINY).to(CUDA)
    x, lengths = _cuda_data()
    options = CompileOptions(backend="aot_eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        evaluate(model, x, lengths, "fivo", 5, compile=options)
        pyro.set_rng_seed(3)
        compiled = evaluate(model, x, lengths, "fivo", 5, compile=options).log_likelihood
    pyro.set_rng_seed(3)
    eager = evaluate(model, x, lengths, "fivo", 5).log_likelihood
    _close(compiled, eager, rtol=1e-5, atol=1e-4)


@pytest.mark.compile
@pytest.mark.parametrize("mode", [None, "reduce-overhead"], ids=["inductor", "cuda-graphs"])
def test_compiled_evaluation_agrees_with_eager_in_distribution_on_cuda(mode):
    """Inductor's FIVO evaluation on the GPU: the same estimator as eager, not the same numbers.

    On an H200 (2026-12-04) Inductor's CUDA graphs of the evaluation filter consumed the random
    stream in another order than eager mode even with ``fallback_random`` (the draws that do not
    depend on one another, the next step's proposal noise and the resampler's uniforms, may run in
    any order): from one seed the two gave per-sequence bounds up to 2.2 nats apart, while a filter
    that never resamples agreed to 4e-6. So the two are compared as estimators: over ``n`` seeds the
    mean of ``compiled - eager`` (two draws of one estimator, hence zero in expectation) lies within
    4 standard errors of zero, and both are finite lower bounds of similar spread.
    """
    torch._dynamo.reset()
    counters.clear()
    model = VRNN(**test_engine.TINY).to(CUDA)
    x, lengths = _cuda_data()
    options = CompileOptions(mode=mode)
    n = 200
    with torch._inductor.config.patch(fallback_random=True), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        compiled = []
        for seed in range(n):
            pyro.set_rng_seed(seed)
            compiled.append(evaluate(model, x, lengths, "fivo", 5, compile=options).log_likelihood.sum())
    eager = []
    for seed in range(n):
        pyro.set_rng_seed(seed)
        eager.append(evaluate(model, x, lengths, "fivo", 5).log_likelihood.sum())
    compiled, eager = torch.stack(compiled).cpu().double(), torch.stack(eager).cpu().double()
    assert torch.isfinite(compiled).all() and torch.isfinite(eager).all()
    difference = compiled - eager
    standard_error = difference.std() / math.sqrt(n)
    assert abs(float(difference.mean())) <= 4 * float(standard_error) + 1e-4, (difference.mean(), standard_error)
    assert 0.5 <= float(compiled.std() + 1e-6) / float(eager.std() + 1e-6) <= 2.0  # the same estimator's spread
    if options.uses_cuda_graphs:
        _assert_cuda_graphs_used()


# ------------------------------------------------------------------------------------ checkpoints across devices


def test_a_gpu_checkpoint_resumes_on_the_cpu_and_back(tmp_path):
    out = tmp_path / "run"
    fast = dict(test_train.FAST, train_subset=128)
    first = train(TrainConfig(epochs=1, device="cuda", **fast), out=out, **QUIET)
    saved = load_checkpoint(out / "checkpoint.pt")  # read onto the CPU
    assert "cuda" in saved["rng"] and all(t.device.type == "cpu" for t in saved["model"].values())
    second = train(TrainConfig(epochs=2, device="cpu", **fast), out=out, resume=True, **QUIET)
    after_cpu = load_checkpoint(out / "checkpoint.pt")
    # the CPU epoch started from the GPU weights: its first update moved them, nothing was reset
    assert after_cpu["epoch"] == 2 and after_cpu["step"] == 2 * saved["step"]
    third = train(TrainConfig(epochs=3, device="cuda", **fast), out=out, resume=True, **QUIET)
    final = load_checkpoint(out / "checkpoint.pt")
    assert final["epoch"] == 3 and "cuda" in final["rng"]
    history = [r["train_loss_per_step"] for r in third.history]
    assert len(history) == 3 and all(math.isfinite(v) for v in history)
    assert history[:1] == [r["train_loss_per_step"] for r in first.history]
    assert history[:2] == [r["train_loss_per_step"] for r in second.history]
    assert math.isfinite(third.test["per_timestep"])
    events = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "resume", "resume"]
    assert json.loads((out / "config.json").read_text())["device"] == "cuda"


def test_train_takes_a_model_instance_already_on_the_gpu(tmp_path):
    model = VRNN(2, 4, likelihood="gaussian").to(CUDA)
    result = train(TrainConfig(epochs=1, device="cuda", **test_train.FAST), out=tmp_path / "run", model=model, **QUIET)
    assert math.isfinite(result.test["per_timestep"])


# ------------------------------------------------------------------------------------ the command line


def test_cli_train_and_evaluate_on_cuda(tmp_path, capsys):
    from pyrosequence.cli import main

    out = tmp_path / "run"
    fast = ["--epochs", "1", "--z-dim", "4", "--batch-size", "64", "--train-subset", "128", "--eval-particles", "2",
            "--no-progress"]
    assert main(["train", *fast, "--device", "cuda", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "on cuda" in printed and "test iwae(2) per time step:" in printed
    assert json.loads((out / "config.json").read_text())["device"] == "cuda"
    assert main(["evaluate", str(out), "--bound", "fivo", "--particles", "8", "--device", "cuda"]) == 0
    assert "fivo(8) per time step:" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ torchrun and NCCL


def _env() -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    path = [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": ":".join(path)}


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]


def test_torchrun_one_process_trains_on_cuda(tmp_path):
    out = tmp_path / "run"
    run = subprocess.run(
        [*TORCHRUN, "-m", "pyrosequence", "train", "--device", "cuda", "--objective", "fivo", "--particles", "2",
         "--epochs", "1", "--z-dim", "4", "--batch-size", "64", "--train-subset", "128", "--eval-particles", "2",
         "--no-progress", "--out", str(out)],
        env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads((out / "config.json").read_text())["world_size"] == 1
    assert math.isfinite(json.loads((out / "results.json").read_text())["per_timestep"])


NCCL_SCRIPT = r'''
import os, sys
import torch, torch.distributed as dist
import pyro
from pyrosequence import VRNN
from pyrosequence.training.distributed import DataParallel, Launch
from pyrosequence.inference import FIVO, evaluate

device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
torch.cuda.set_device(device)
dist.init_process_group("nccl", init_method="env://")
launch = Launch(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]),
                os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
group = DataParallel(launch, device, owns_group=True)
assert group.active and dist.get_backend() == "nccl", dist.get_backend()

pyro.set_rng_seed(0)
model = VRNN(4, 3).to(device)
x = (torch.rand(5, 6, 4, device=device) < 0.4).float()
lengths = torch.tensor([6, 3, 5, 2, 6], device=device)
params = [p for p in model.parameters() if p.requires_grad]
loss = FIVO(3).loss_and_grads(model.model, model.guide, x, lengths)
before = [None if p.grad is None else p.grad.clone() for p in params]
total = group.sum_gradients(params, loss, weight=0.5)  # one process: every gradient halved
assert abs(total - 0.5 * loss) < 1e-4 * max(1.0, abs(loss)), (total, loss)
for p, g in zip(params, before):
    assert (p.grad is None) == (g is None)
    if g is not None:
        assert p.grad.device == device and torch.allclose(p.grad, 0.5 * g), p.shape
assert group.broadcast_object({"a": 1}) == {"a": 1}
assert group.on_main(lambda: "main") == "main"
assert group.all_gather_object(3) == [3]
total = group.sum(torch.arange(4.0, device=device))
assert total.device == device and torch.equal(total, torch.arange(4.0, device=device))
state = {k: v.clone() for k, v in model.state_dict().items()}
group.broadcast_module(model)
assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
sharded = evaluate(model, x, lengths, "fivo", 4, seed=3, group=group)
alone = evaluate(model, x, lengths, "fivo", 4, seed=3, batch_size=sharded.block_size)
assert torch.allclose(sharded.log_likelihood.cpu(), alone.log_likelihood.cpu(), atol=1e-5)
group.close(synchronise=True)
print("NCCL OK")
'''


def test_dataparallel_collectives_on_an_nccl_group_under_torchrun(tmp_path):
    """torchrun --nproc_per_node=1 and a process group of one on NCCL (two ranks on one GPU are
    refused by NCCL): gradient sums, broadcasts, gathers and sharded evaluation on GPU tensors."""
    script = tmp_path / "nccl_check.py"
    script.write_text(NCCL_SCRIPT)
    run = subprocess.run([*TORCHRUN, str(script)], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "NCCL OK" in run.stdout, run.stdout + run.stderr


# ------------------------------------------------------------------------------------ mixed devices


@pytest.mark.parametrize("where", ["model-on-gpu", "data-on-gpu"])
def test_mixed_devices_are_refused_in_one_line(where):
    """Refused before any computation, naming both devices; Pyro's ELBOs add their trace's
    shapes below the line, as for every error raised inside a traced model."""
    model = VRNN(4, 3)
    x, lengths = test_engine._data()
    if where == "model-on-gpu":
        model = model.to(CUDA)
        pattern = r"^x is on device cpu but VRNN is on cuda:\d: move the data with x.to\('cuda:\d'\)"
    else:
        x = x.to(CUDA)
        pattern = r"^x is on device cuda:\d but VRNN is on cpu: "
    for call, one_line in (
        (lambda: model.prepare(x, lengths), True),
        (lambda: evaluate(model, x, lengths, "fivo", 2), True),
        (lambda: FIVO(2).loss(model.model, model.guide, x, lengths), True),
        (lambda: make_objective("elbo").loss(model.model, model.guide, x, lengths), False),
    ):
        with pytest.raises(ValueError, match=pattern) as error:
            call()
        assert "\n" not in str(error.value) or not one_line
