"""Data-parallel training and evaluation (pyrosequence.training.distributed) on CPU with gloo.

The multi-process tests start two processes themselves, the way torchrun does (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR=127.0.0.1, a free MASTER_PORT), or through torchrun itself, and compare
with one process computing the same global batches:

* a model that draws nothing (FRNN, with truncated backpropagation so windows and empty shards
  occur) trains to the same weights as a plain one-process ``train()``;
* models that draw (VRNN with the ELBO, IWAE and FIVO) reach the weights of one process that
  computes every global batch's loss, normalised as ``train_epoch`` does, with shard r's noise
  drawn from process r's stream;
* sharded evaluation gives the one-process seeded evaluation's figure;
* a run whose second process is killed resumes (same number of processes) to the uninterrupted
  run's weights exactly;
* bad launches fail at once in one line.

The data are a tiny ragged piano-roll set (11 training sequences of 2-12 steps, batches of 5:
the last batch has one sequence, so the second process's shard of it is empty).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pyro

from pyrosequence.training.checkpoint import load_checkpoint
from pyrosequence.training.config import TrainConfig
from pyrosequence.data.registry import load_split
from pyrosequence.training.distributed import (
    DataParallel,
    Launch,
    detect_launch,
    process_device,
    rank_seed,
    setup,
)
from pyrosequence.inference.evaluate import evaluate, make_bound, score_blocks
from pyrosequence.inference.objectives import make_objective
from pyrosequence.training.rundir import build_model, load_run
from pyrosequence.training.distributed import evaluate_sharded
from pyrosequence.training.loop import train

REPO = Path(__file__).resolve().parents[2]
TRAIN_LENGTHS = [5, 9, 3, 12, 7, 4, 10, 6, 8, 11, 2]
EVAL_LENGTHS = [6, 3, 9, 4, 7, 5, 2]
SMALL = ["--z-dim", "2", "--hidden-dim", "8", "--batch-size", "5", "--lr", "1e-3", "--eval-particles", "2", "--no-progress"]


def _rolls(lengths, rng):
    return [[sorted(int(n) for n in rng.choice(np.arange(21, 109), size=3, replace=False)) for _ in range(t)] for t in lengths]


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("music")
    rng = np.random.default_rng(7)
    splits = {"train": _rolls(TRAIN_LENGTHS, rng), "valid": _rolls(EVAL_LENGTHS, rng), "test": _rolls(EVAL_LENGTHS, rng)}
    (root / "jsb-chorales-quarter.json").write_text(json.dumps(splits))
    return root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def _launch(argv: list[str], tmp_path: Path, world: int = 2, env: dict | None = None, timeout: float = 300,
            stop_on_failure: bool = True) -> list[tuple[int, str, str]]:
    """Run ``python -m pyrosequence ARGV`` as ``world`` processes, as torchrun would; when one fails
    the others are stopped (as torchrun does, unless ``stop_on_failure`` is false). Returns
    ``[(returncode, stdout, stderr)]`` by rank."""
    base = _env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world), **(env or {}))
    procs, files = [], []
    for rank in range(world):
        out, err = open(tmp_path / f"rank{rank}.out", "w+"), open(tmp_path / f"rank{rank}.err", "w+")
        files.append((out, err))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pyrosequence", *argv],
            env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}, stdout=out, stderr=err, cwd=REPO,
        ))
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        failed = stop_on_failure and any(p.poll() not in (None, 0) for p in procs)
        if failed or time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.05)
    results = []
    for p, (out, err) in zip(procs, files):
        out.seek(0), err.seek(0)
        results.append((p.returncode, out.read(), err.read()))
        out.close(), err.close()
    return results


def _ok(results) -> None:
    for rank, (code, out, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}:\n{out}\n{err}"


def _weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


# ------------------------------------------------------------------------------------ launch checks


def test_launch_detection_and_its_one_line_errors():
    full = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert detect_launch({}) is None
    assert detect_launch({"MASTER_ADDR": "x"}) is None  # a stray variable alone is no launch
    assert detect_launch({**full, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None  # torchrun with one process
    assert detect_launch(full) == Launch(1, 2, 1, "127.0.0.1", 29500)
    with pytest.raises(ValueError, match=r"MASTER_PORT not set .*torchrun") as error:
        detect_launch({k: v for k, v in full.items() if k != "MASTER_PORT"})
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"RANK=2 must lie in \[0, WORLD_SIZE=2\)"):
        detect_launch({**full, "RANK": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        detect_launch({**full, "WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="MASTER_PORT=70000 is not a port"):
        detect_launch({**full, "MASTER_PORT": "70000"})
    # checked before any rendezvous: more processes than sequences in a batch
    with pytest.raises(ValueError, match="2 processes cannot share batches of 1 sequences"):
        setup(torch.device("cpu"), batch_size=1, env=full)
    with pytest.raises(ValueError, match="2 processes cannot share batches of 1 sequences"):
        setup(torch.device("cpu"), batch_size=32, num_sequences=1, env=full)
    # each process owns one GPU: an explicit index is refused before CUDA is touched
    with pytest.raises(ValueError, match="each process takes cuda:LOCAL_RANK"):
        process_device(torch.device("cuda", 1), detect_launch(full))
    group, device = setup(torch.device("cpu"), batch_size=4, env={})
    assert not group.active and group.world_size == 1 and group.is_main and device == torch.device("cpu")


def test_bad_launches_fail_in_one_line(tmp_path, music):
    # a missing rendezvous variable: the command fails at once, one line on stderr
    env = _env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0")
    run = subprocess.run(
        [sys.executable, "-m", "pyrosequence", "train", "--data", "jsb", "--data-root", str(music), "--out", str(tmp_path / "a"), *SMALL],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0
    assert "MASTER_ADDR, MASTER_PORT not set" in run.stderr and "torchrun" in run.stderr
    assert not (tmp_path / "a").exists()
    # more processes than sequences in a batch: every process fails alike, nothing is written
    results = _launch(["train", "--data", "jsb", "--data-root", str(music), "--out", str(tmp_path / "b"), *SMALL, "--batch-size", "1"], tmp_path,
                      stop_on_failure=False)
    for code, _, err in results:
        assert code == 1 and err.strip().count("\n") == 0, err
        assert "2 processes cannot share batches of 1 sequences" in err
    assert not (tmp_path / "b").exists()
    # an error on process 0 alone (its run directory is someone's folder) reaches every process:
    # none waits for the others, process 0 prints the one line, the rest exit quietly
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    results = _launch(["train", "--data", "jsb", "--data-root", str(music), "--out", str(precious), *SMALL], tmp_path,
                      stop_on_failure=False, timeout=120)
    assert [code for code, _, _ in results] == [1, 1]
    assert results[0][2].strip().count("\n") == 0 and "--resume" in results[0][2] and results[1][2] == ""
    assert [f.name for f in precious.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------------------------ training


def test_a_model_that_draws_nothing_trains_to_the_one_process_weights(tmp_path, music):
    """FRNN draws no random numbers, so two processes must reproduce plain train() itself: the
    batch order (length buckets included), the shards (padded to the batch's length), the
    sum-based loss divided by the global batch's steps, truncated-backpropagation windows in which
    one shard is already empty, the validation, keep-best selection and the test evaluation."""
    args = ["--model", "frnn", "--hidden-dim", "8", "--batch-size", "5", "--tbptt", "4", "--epochs", "2",
            "--lr", "1e-3", "--eval-particles", "2", "--length-buckets", "2", "--keep-best", "--no-progress"]
    _ok(_launch(["train", "--data", "jsb", "--data-root", str(music), "--out", str(tmp_path / "two"), *args], tmp_path))
    config = TrainConfig(model="frnn", data="jsb", data_root=str(music), model_options={"hidden_dim": 8}, batch_size=5,
                         tbptt=4, epochs=2, lr=1e-3, eval_particles=2, length_buckets=2, keep_best=True)
    one = train(config, out=tmp_path / "one", progress=False, log=lambda s: None)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)
    best_one, best_two = (load_checkpoint(d / "best.pt", required=("model", "epoch")) for d in (tmp_path / "one", tmp_path / "two"))
    assert best_two["epoch"] == best_one["epoch"]
    two_history = load_checkpoint(tmp_path / "two" / "checkpoint.pt")["history"]
    for r1, r2 in zip(one.history, two_history):
        assert r2["train_loss_per_step"] == pytest.approx(r1["train_loss_per_step"], rel=1e-5)
        assert r2["valid_elbo_per_step"] == pytest.approx(r1["valid_elbo_per_step"], rel=1e-5)
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["per_timestep"] == pytest.approx(one.test["per_timestep"], rel=1e-5)
    assert results["selected_epoch"] == one.test["selected_epoch"]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    assert json.loads((tmp_path / "one" / "config.json").read_text())["world_size"] == 1


def _reference_weights(config: TrainConfig, world: int, epochs: int) -> tuple[dict, dict]:
    """One process computing the gradient of every global batch's loss as train_epoch normalises it
    (ELBO, IWAE: summed over sequences, divided by the batch's steps; FIVO: the mean over the
    batch of bound / length), with the noise of shard r drawn from process r's stream."""
    data = load_split(config.data, "train", config.data_root)
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    model = build_model(config, data.x_dim)
    model.init_from_data(data.x, data.lengths, center=config.center_inputs)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    streams = []
    for rank in range(world):
        pyro.set_rng_seed(rank_seed(config.seed, rank))
        streams.append(torch.get_rng_state())
    objective = make_objective(config.objective, config.particles)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for epoch in range(epochs):
        order = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)  # train._shuffle_generator
        for index in data.index_batches(config.batch_size, shuffle=True, generator=order):
            lengths = data.lengths[index]
            x = data.x[index, : int(lengths.max())]
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            for rank, rows in enumerate(torch.tensor_split(torch.arange(len(index)), world)):
                torch.set_rng_state(streams[rank])
                if len(rows) and config.objective == "fivo":  # the batch mean of bound / length
                    shard = objective.differentiable_loss(model.model, model.guide, x[rows], lengths[rows])
                    loss = loss + shard * len(rows) / len(index)
                elif len(rows):  # sums over sequences: the shards' gradients accumulate
                    objective.loss_and_grads(model.model, model.guide, x[rows], lengths[rows])
                streams[rank] = torch.get_rng_state()
            if config.objective == "fivo":
                loss.backward()
            else:
                for p in params:
                    p.grad.div_(int(lengths.sum()))
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
    return initial, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("objective", ["elbo", "iwae", "fivo"])
def test_two_processes_compute_the_global_batch_update(tmp_path, music, objective):
    epochs = 2  # 3 updates per epoch; the last batch has one sequence (process 1's shard is empty)
    argv = ["train", "--model", "vrnn", "--data", "jsb", "--data-root", str(music), "--objective", objective,
            "--particles", "3", "--epochs", str(epochs), "--out", str(tmp_path / "run"), *SMALL]
    _ok(_launch(argv, tmp_path))
    config = TrainConfig(model="vrnn", data="jsb", data_root=str(music), z_dim=2, model_options={"hidden_dim": 8},
                         objective=objective, particles=3, batch_size=5, lr=1e-3, epochs=epochs)
    initial, expected = _reference_weights(config, world=2, epochs=epochs)
    got = _weights(tmp_path / "run")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-5, msg=key)
    # the comparison is not vacuous: the weights moved by far more than the tolerance
    assert max(float((expected[k] - initial[k]).abs().max()) for k in expected) > 1e-3
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    ranks = checkpoint["rng"]["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])


# ------------------------------------------------------------------------------------ evaluation


class _Shard(DataParallel):
    """Process ``rank`` of ``world`` without communication: ``sum`` returns its own part."""

    def __init__(self, rank: int, world: int):
        super().__init__(Launch(rank, world, rank, "127.0.0.1", 1))

    def sum(self, tensor):
        return tensor


@pytest.mark.parametrize("bound,particles", [("iwae", 3), ("fivo", 4)])
def test_sharded_blocks_add_up_to_the_seeded_one_process_evaluation(music, bound, particles):
    """In one process: the parts three processes would score (each block with its own seeded
    stream) add up to ``evaluate(seed=...)`` number for number, whoever scores a block."""
    data = load_split("jsb", "test", str(music))
    pyro.set_rng_seed(0)
    model = build_model(TrainConfig(model="vrnn", data="jsb", z_dim=2, model_options={"hidden_dim": 8}), data.x_dim)
    rule = make_bound(bound)
    whole = evaluate(model, data.x, data.lengths, rule, particles, batch_size=2, seed=11)
    before = torch.get_rng_state()
    parts = []
    for rank in range(3):
        seqs = model.prepare(data.x, data.lengths)
        scores = score_blocks(model, seqs, rule, particles, 2, seed=11, blocks=range(rank, 4, 3))
        parts.append(scores)
    assert torch.equal(torch.get_rng_state(), before)  # seeded blocks leave the global stream alone
    joined = torch.cat([next(p[j] for p in parts if j in p) for j in range(4)])
    assert torch.equal(joined, whole.log_likelihood)
    # a different block size draws differently (the figure depends on (seed, block size))
    other = evaluate(model, data.x, data.lengths, rule, particles, batch_size=3, seed=11)
    assert not torch.equal(other.log_likelihood, whole.log_likelihood)
    # the default block of N processes leaves every process some work
    assert evaluate(model, data.x, data.lengths, rule, particles, seed=11, group=_Shard(0, 3)).block_size == math.ceil(len(data) / 3)
    # a shared evaluation needs its seed; the old entry point still works, with a warning
    with pytest.raises(ValueError, match="needs an integer seed"):
        evaluate(model, data.x, data.lengths, rule, particles, group=_Shard(0, 3))
    with pytest.warns(DeprecationWarning, match="evaluate_sharded is deprecated"):
        _, block = evaluate_sharded(_Shard(0, 3), model, data.x, data.lengths, rule, particles, seed=11)
    assert block == math.ceil(len(data) / 3)


def test_sharded_evaluate_command_equals_one_process(tmp_path, music):
    run = tmp_path / "run"
    train(TrainConfig(model="vrnn", data="jsb", data_root=str(music), z_dim=2, model_options={"hidden_dim": 8},
                      batch_size=5, epochs=1, eval_particles=2), out=run, progress=False, log=lambda s: None)
    results = _launch(["evaluate", str(run), "--bound", "fivo", "--particles", "4", "--seed", "5"], tmp_path)
    _ok(results)
    assert results[0][1].startswith("test fivo(4) per time step:") and results[1][1] == ""  # process 0 alone prints
    record = json.loads((run / "evaluations.jsonl").read_text())
    assert record["world_size"] == 2 and record["block"] == math.ceil(len(EVAL_LENGTHS) / 2)
    _, model, data, _ = load_run(run, "test")
    one = evaluate(model, data.x, data.lengths, make_bound("fivo"), 4, batch_size=record["block"], seed=5)
    assert record["per_timestep"] == pytest.approx(one.per_timestep, rel=1e-6, abs=0)
    assert record["total"] == pytest.approx(one.total, rel=1e-6, abs=0)


# ------------------------------------------------------------------------------------ kill and resume


def _rank_pids(parent: int) -> dict[int, int]:
    """{RANK: pid} of the worker processes torchrun ``parent`` started (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            env = dict(v.split("=", 1) for v in (entry / "environ").read_bytes().decode(errors="replace").split("\0") if "=" in v)
        except (OSError, ValueError, IndexError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


def test_killed_rank_resumes_exactly_through_torchrun(tmp_path, music):
    epochs = 6
    argv = ["train", "--model", "vrnn", "--data", "jsb", "--data-root", str(music), "--objective", "fivo",
            "--particles", "2", "--epochs", str(epochs), *SMALL]
    _ok(_launch([*argv, "--out", str(tmp_path / "full")], tmp_path))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pyrosequence"]
    killed = tmp_path / "killed"
    log = open(tmp_path / "torchrun.log", "w")
    proc = subprocess.Popen([*torchrun, *argv, "--out", str(killed)], env=_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = killed / "metrics.jsonl"
        if metrics.is_file() and metrics.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    pids = _rank_pids(proc.pid)
    assert proc.poll() is None and 1 in pids, "the run ended before its second process could be killed"
    os.kill(pids[1], signal.SIGKILL)
    assert proc.wait(timeout=120) != 0  # torchrun stops the survivor and reports the failure
    log.close()
    done = load_checkpoint(killed / "checkpoint.pt")["epoch"]
    assert 1 <= done < epochs
    # another number of processes cannot continue it exactly: refused in one line, nothing touched
    own = ("config.json", "checkpoint.pt", "metrics.jsonl")
    before = {name: (killed / name).read_bytes() for name in own}
    config = TrainConfig.load(killed / "config.json")
    with pytest.raises(ValueError, match="trained by 2 processes and this launch has 1.*--nproc_per_node=2") as error:
        train(config, out=killed, resume=True, progress=False, log=lambda s: None)
    assert "\n" not in str(error.value)
    assert {name: (killed / name).read_bytes() for name in own} == before
    resumed = subprocess.run([*torchrun, *argv, "--out", str(killed), "--resume"], env=_env(), cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a, b = load_checkpoint(tmp_path / "full" / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for r1, r2 in zip(a["rng"]["ranks"], b["rng"]["ranks"]):
        assert torch.equal(r1["torch"], r2["torch"])
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    full, again = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "full", killed))
    assert again["per_timestep"] == full["per_timestep"]


def test_benchmark_runs_with_tiny_sizes(capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_distributed

    result = bench_distributed.main(["--procs", "2", "--train-subset", "4", "--batch", "2", "--epochs", "1", "--z-dim", "2",
                                     "--hidden-dim", "4", "--eval-particles", "2", "--eval-sequences", "4"])
    (row,) = result["rows"]
    assert row["processes"] == 2 and row["updates"] == 2 and row["eval_block"] == 2
    assert row["updates_per_second"] > 0 and row["eval_seconds"] > 0 and row["eval_per_timestep"] < 0


def test_process_zero_leaves_last_through_the_store():
    """Process 0 serves the rendezvous store, so after the group is destroyed it waits until every
    other process has reported that it left (and gives up after the timeout rather than hang)."""
    import torch.distributed as dist

    from pyrosequence.training.distributed import _leave_in_order

    store = dist.HashStore()
    start = time.monotonic()
    _leave_in_order(store, rank=0, world_size=3, timeout=0.3)  # nobody reported: waits out the timeout
    assert time.monotonic() - start >= 0.3
    store = dist.HashStore()
    _leave_in_order(store, rank=1, world_size=3)
    _leave_in_order(store, rank=2, world_size=3)
    assert store.add("pyrosequence/left", 0) == 2
    start = time.monotonic()
    _leave_in_order(store, rank=0, world_size=3, timeout=30)  # both reported: returns at once
    assert time.monotonic() - start < 5
