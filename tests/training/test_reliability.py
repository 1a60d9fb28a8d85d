"""Crashes, divergence and bad files: what the library guarantees (README, "Crashes and bad files").

* a run killed with SIGKILL at any moment, inside any file write included, resumes to exactly the
  parameters and results of the uninterrupted run;
* a diverged run stops with a non-zero exit naming the epoch, keeps the last good checkpoint and
  leaves strict JSON;
* ``--force`` removes the previous run's own files before writing, so ``evaluate`` can never score
  another configuration's weights;
* damaged checkpoints, odd dtypes, unwritable folders and option typos fail in one line.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from pyrosequence import VRNN
from pyrosequence.atomic import KILL_ENV, atomic_write, strict_json
from pyrosequence.training.checkpoint import load_checkpoint, save_checkpoint
from pyrosequence.cli import main
from pyrosequence.training.config import TrainConfig
from pyrosequence.inference import evaluate
from pyrosequence.training.loop import train

TINY = ["--z-dim", "2", "--hidden-dim", "3", "--batch-size", "200", "--train-subset", "400", "--eval-particles", "2",
        "--no-progress", "--seed", "3"]


def _strict(path):
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}: not strict JSON")

    text = path.read_text()
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines() if line] if path.suffix == ".jsonl" \
        else json.loads(text, parse_constant=refuse)


def _cli(args, env=None, timeout=300):
    environment = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    environment.update({"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})})
    return subprocess.run([sys.executable, "-m", "pyrosequence", *args], env=environment, capture_output=True,
                          text=True, timeout=timeout)


def _finish(out, command):
    """Bring a killed run to its end the way a user would: the same command with --resume, or with
    --force when it died before its first checkpoint."""
    for _ in range(3):
        flag = "--resume" if (out / "checkpoint.pt").is_file() else "--force"
        done = _cli([*command, flag])
        if done.returncode == 0:
            return done
    raise AssertionError(f"could not finish {out}: {done.stderr}")


def _same_run(a, b):
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    for key in ca["model"]:
        assert torch.equal(ca["model"][key], cb["model"][key]), key
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])
    assert _strict(a / "results.json") == _strict(b / "results.json")
    assert _strict(a / "metrics.jsonl") == [
        {**r, "seconds": s["seconds"]} for r, s in zip(_strict(b / "metrics.jsonl"), _strict(a / "metrics.jsonl"))
    ]
    assert not list(b.glob(".*.tmp")), "an interrupted write left a temporary file behind"


@pytest.mark.parametrize("seed", [0])
def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_run(tmp_path, seed):
    command = lambda out: ["train", *TINY, "--epochs", "3", "--keep-best", "--out", str(out)]  # noqa: E731
    reference = tmp_path / "reference"
    assert _cli(command(reference)).returncode == 0
    # inside each file write (after the temporary file is complete, before the rename) ...
    kills = [f"{name}:{n}" for name, n in [("config.json", 1), ("metrics.jsonl", 3), ("checkpoint.pt", 2),
                                            ("best.pt", 1), ("results.json", 1)]]
    for i, spec in enumerate(kills):
        out = tmp_path / f"killed-{i}"
        killed = _cli(command(out), env={KILL_ENV: spec})
        assert killed.returncode == -signal.SIGKILL, (spec, killed.returncode, killed.stderr[-300:])
        _finish(out, command(out))
        _same_run(reference, out)
    # ... and at random moments
    rng = random.Random(seed)
    for i in range(1):
        out = tmp_path / f"random-{i}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        process = subprocess.Popen([sys.executable, "-m", "pyrosequence", *command(out)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 6.0))  # the run takes about 5-8 s with its start-up
        process.send_signal(signal.SIGKILL)
        process.wait()
        _finish(out, command(out))
        _same_run(reference, out)


def test_force_over_a_finished_run_then_a_crash_never_scores_the_old_weights(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(["train", *TINY, "--epochs", "1", "--out", str(out)]).returncode == 0
    (out / "notes.txt").write_text("mine")
    crashed = _cli(["train", *TINY, "--epochs", "1", "--lr", "0.01", "--out", str(out), "--force"],
                   env={KILL_ENV: "checkpoint.pt:1"})
    assert crashed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["config.json", "data.json", "history.jsonl", "metrics.jsonl", "notes.txt"]
    assert main(["evaluate", str(out)]) == 1
    assert "no checkpoint" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"  # --force never touches other files


def test_force_says_what_it_removed(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--force"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("--force"))
    assert "config.json" in line and "checkpoint.pt" in line and "results.json" in line


def test_divergence_stops_keeps_the_last_good_checkpoint_and_writes_strict_json(tmp_path, monkeypatch):
    import pyrosequence.training.loop as training

    out = tmp_path / "run"
    config = TrainConfig(epochs=1, z_dim=2, batch_size=200, train_subset=400, eval_particles=2)
    train(config, out=out, progress=False, log=lambda s: None)
    good = load_checkpoint(out / "checkpoint.pt")
    real_epoch = training.train_epoch

    def poisoned(model, *args, **kwargs):  # the second epoch ends with a NaN weight
        loss, step = real_epoch(model, *args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
        return loss, step

    monkeypatch.setattr(training, "train_epoch", poisoned)
    with pytest.raises(FloatingPointError, match="diverged in epoch 2: the weights .* the checkpoint of epoch 1 is kept"):
        train(TrainConfig(**{**config.__dict__, "epochs": 3}), out=out, resume=True, progress=False, log=lambda s: None)
    kept = load_checkpoint(out / "checkpoint.pt")
    assert kept["epoch"] == 1 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])
    assert len(_strict(out / "metrics.jsonl")) == 1
    _strict(out / "results.json")


def test_a_huge_learning_rate_exits_non_zero_without_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "2", "--lr", "1e6", "--grad-clip", "0", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0]
    assert not (out / "results.json").exists()
    assert not out.exists()  # it diverged before its first checkpoint: a new run then leaves nothing behind


def test_non_finite_bounds_raise_instead_of_being_reported():
    model = VRNN(3, 2, likelihood="gaussian")
    x = torch.full((2, 4, 3), 1e20)
    for bound in ("elbo", "iwae"):
        with pytest.raises(ValueError, match=rf"the {bound}\(\d+\) bound of sequence 0 is"):
            evaluate(model, x, bound=bound, num_particles=2)
    with pytest.raises(ValueError, match="refusing to write non-finite number at a.b"):
        strict_json({"a": {"b": float("nan")}})


def test_float16_and_float64_data_are_converted_to_the_models_precision():
    model = VRNN(3, 2, likelihood="gaussian")
    x = torch.randn(2, 5, 3)
    for data, same_as in ((x.double(), x), (x.half(), x.half().float())):
        torch.manual_seed(0)
        value = evaluate(model, data, bound="elbo").log_likelihood
        torch.manual_seed(0)
        assert value.dtype == torch.float32 and torch.equal(value, evaluate(model, same_as, bound="elbo").log_likelihood)
    with pytest.raises(ValueError, match="inf"):
        model.prepare(torch.full((1, 2, 3), 1e300, dtype=torch.float64))


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out


def _one_line_error(argv, capsys, match):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and match in err[0], err
    return err[0]


def test_damaged_checkpoints_fail_in_one_line(finished_run, capsys):
    checkpoint = finished_run / "checkpoint.pt"
    payload = load_checkpoint(checkpoint)
    checkpoint.write_bytes(b"")
    _one_line_error(["evaluate", str(finished_run)], capsys, "corrupt or unreadable")
    save_checkpoint(checkpoint, {**payload, "rng": {"cuda": 1}})
    _one_line_error(["train", "--out", str(finished_run), "--resume", "--epochs", "2"], capsys, "random-number state")
    weights = {k: v.clone() for k, v in payload["model"].items()}
    next(v for v in weights.values() if v.is_floating_point()).fill_(float("nan"))
    save_checkpoint(checkpoint, {**payload, "model": weights})
    _one_line_error(["evaluate", str(finished_run), "--bound", "fivo"], capsys, "non-finite weights")


def test_an_unwritable_run_folder_is_evaluated_without_recording(finished_run, capsys, monkeypatch):
    import pyrosequence.atomic as atomic

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    assert main(["evaluate", str(finished_run)]) == 0  # read-only storage (or pretrained/): printed, with a note
    captured = capsys.readouterr()
    assert "test elbo(1) per time step:" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "cannot write into" in err[0] and "not recorded" in err[0], err
    assert not (finished_run / "evaluations.jsonl").exists()


def test_option_surprises(finished_run, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:  # no abbreviations: --epoch is not --epochs
        main(["train", "--epoch", "2", "--out", str(tmp_path / "a")])
    assert stop.value.code == 2
    assert "unrecognized arguments: --epoch" in capsys.readouterr().err
    _one_line_error(["train", "--hidden-dim", "0", "--out", str(tmp_path / "b")], capsys, "hidden_dim must be a positive integer, got 0")
    _one_line_error(["train", "--seed", "-1", "--out", str(tmp_path / "c")], capsys, "seed must be an integer")
    # the same command again, plus --resume, continues the run; a changed flag is refused by name
    assert main(["train", *TINY, "--epochs", "2", "--out", str(finished_run), "--resume"]) == 0
    # the data may move: --data-root is one of the changes a resumed run accepts
    assert main(["train", "--out", str(finished_run), "--resume", "--epochs", "2", "--data-root", str(tmp_path)]) == 0
    _one_line_error(["train", *TINY, "--epochs", "3", "--batch-size", "5", "--out", str(finished_run), "--resume"], capsys, "(got batch_size)")


def test_atomic_write_survives_a_failed_write(tmp_path):
    path = tmp_path / "file.json"
    atomic_write(path, "old")

    class Boom(Exception):
        pass

    from pyrosequence.atomic import atomic_path

    with pytest.raises(Boom):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise Boom
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["file.json"]
    # files get the mode a plain open() would give them (not the temporary file's 0o600)
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask
    os.chmod(path, 0o640)
    atomic_write(path, "new")
    assert (path.stat().st_mode & 0o777) == 0o640
