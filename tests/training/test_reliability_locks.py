"""Reliability, round two (issue 25): the run directory as a contract.

* one ``train`` at a time per run directory (an OS file lock, named in the refusal; a stale lock
  of a killed process is taken over with a message); concurrent ``evaluate`` commands each keep
  their record; ``evaluate --no-record``;
* data identity: the resolved data root and a fingerprint of every split are recorded, and data
  that differs (a decoy from another folder) is refused unless accepted on purpose;
* a keep-best run without ``best.pt`` is refused unless ``--weights last``;
* a full disk is named as such, with the file; a new run whose first update fails leaves nothing;
  a resume never runs backwards (``--epochs``) nor under another ``--preset``; ``plot`` and
  ``report`` check ``--out`` before computing.

Every test here failed before its fix.
"""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pyrosequence.training.checkpoint import load_checkpoint
from pyrosequence.cli import main
from pyrosequence.training.runlock import LOCK_FILE
from test_reliability import TINY, _one_line_error, _strict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished two-epoch keep-best run (tests work on copies of it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *TINY, "--epochs", "2", "--keep-best", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _wait_for(predicate, what: str, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _pyrosequence_in_background(command: list[str]) -> subprocess.Popen:
    """``python -m pyrosequence COMMAND...`` as a child process, one thread, output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "pyrosequence", *command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ------------------------------------------------------------------------------------ defect 1
def test_a_second_trainer_is_refused_naming_the_first_and_nothing_of_the_first_is_lost(tmp_path, capsys):
    out = tmp_path / "run"
    command = ["train", *TINY, "--epochs", "3", "--out", str(out)]
    first = _pyrosequence_in_background(command)
    try:
        _wait_for(lambda: (out / "config.json").is_file() or first.poll() is not None, "the first trainer to start")
        first.send_signal(signal.SIGSTOP)  # it holds the run directory for as long as the others try
        try:
            assert first.poll() is None, first.communicate()
            capsys.readouterr()
            for extra in (["--force"], []):  # a --force that would delete its files, and the same command again
                line = _one_line_error([*command, *extra], capsys, f"process {first.pid}")
                assert "in use by" in line and "train" in line
        finally:
            first.send_signal(signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    # the first run is whole: its configuration, every epoch once, its checkpoint and its results
    assert [r["epoch"] for r in _strict(out / "metrics.jsonl")] == [1, 2, 3]
    assert json.loads((out / "config.json").read_text())["epochs"] == 3
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 3
    assert _strict(out / "results.json")["epochs"] == 3
    assert [e["event"] for e in _strict(out / "history.jsonl")] == ["start"]
    assert not (out / LOCK_FILE).exists()  # released at the end


def test_sigterm_stops_a_trainer_cleanly_and_resume_continues(tmp_path):
    """A scheduler's SIGTERM unwinds like Ctrl-C: one line, exit 143, the lock released (no stale
    lock for the next command to take over), no temporary file, and --resume continues the run."""
    out = tmp_path / "run"
    trainer = _pyrosequence_in_background(["train", *TINY, "--epochs", "200", "--out", str(out)])
    try:
        _wait_for(lambda: (out / "checkpoint.pt").is_file() or trainer.poll() is not None, "the first checkpoint")
        assert trainer.poll() is None, trainer.communicate()
        trainer.send_signal(signal.SIGTERM)
        _, stderr = trainer.communicate(timeout=120)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 143, stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        "pyrosequence: terminated (SIGTERM); the last completed epoch's checkpoint is kept"]
    assert not (out / LOCK_FILE).exists() and not list(out.glob(".*.tmp"))
    done = len(_strict(out / "metrics.jsonl"))
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == done >= 1
    assert main(["train", "--out", str(out), "--resume", "--epochs", str(done + 1)]) == 0
    assert [r["epoch"] for r in _strict(out / "metrics.jsonl")] == list(range(1, done + 2))


def test_a_held_lock_is_named_and_a_stale_one_is_taken_over(run, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pyrosequence.training.runlock import run_lock\n"
         "lock = run_lock(sys.argv[1], 'train')\nlock.__enter__()\nprint('held', flush=True)\ntime.sleep(600)", str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        _one_line_error(["train", "--out", str(run), "--resume", "--epochs", "3"], capsys, f"process {holder.pid}")
        line = _one_line_error(["evaluate", str(run)], capsys, f"process {holder.pid}")
        assert "--no-record" in line
        assert main(["evaluate", str(run), "--no-record"]) == 0  # prints, writes nothing
        assert "test elbo(1) per time step" in capsys.readouterr().out
        assert not (run / "evaluations.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # killed: the OS freed its lock, its record stays behind; the next command takes it over and says so
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == holder.pid
    assert main(["evaluate", str(run)]) == 0
    printed = capsys.readouterr().out
    assert f"took over the stale lock of {run} left by process {holder.pid}" in printed and "no longer running" in printed
    assert len(_strict(run / "evaluations.jsonl")) == 1
    assert not (run / LOCK_FILE).exists()


# ------------------------------------------------------------------------------------ defect 2
BARRIER_DRIVER = """
import os, sys, time
from pathlib import Path
import pyrosequence.atomic as atomic

barrier, count = Path(sys.argv[1]), int(sys.argv[2])
real_write = atomic.atomic_write

def write_together(path, data):
    # every evaluation reaches its write of evaluations.jsonl at once (or after 8 s alone)
    if Path(path).name == "evaluations.jsonl":
        (barrier / str(os.getpid())).touch()
        end = time.monotonic() + 8
        while len(list(barrier.iterdir())) < count and time.monotonic() < end:
            time.sleep(0.02)
    return real_write(path, data)

atomic.atomic_write = write_together
from pyrosequence.cli import main
sys.exit(main(sys.argv[3:]))
"""


def test_concurrent_evaluations_each_keep_their_record(run, tmp_path):
    count = 3
    driver, barrier = tmp_path / "driver.py", tmp_path / "barrier"
    driver.write_text(BARRIER_DRIVER)
    barrier.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    processes = [
        subprocess.Popen([sys.executable, str(driver), str(barrier), str(count), "evaluate", str(run), "--seed", str(seed)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in range(count)
    ]
    outcomes = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0] * count, [err for _, err in outcomes]
    records = _strict(run / "evaluations.jsonl")
    assert sorted(r["seed"] for r in records) == list(range(count))


def test_an_evaluation_starting_while_another_records_waits_for_it(run, capsys):
    """The probe before evaluating waits through another evaluation's brief hold (it was refused at
    once, a race CI hit with three evaluations starting together); a trainer is still refused at once."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pyrosequence.training.runlock import run_lock\n"
         "with run_lock(sys.argv[1], 'evaluate'):\n    print('held', flush=True)\n    time.sleep(2)\n"
         "print('released', flush=True)", str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["evaluate", str(run)]) == 0
        assert holder.stdout.readline().strip() == "released"  # it did wait: the holder let go first
    finally:
        holder.kill()
        holder.wait()
    assert len(_strict(run / "evaluations.jsonl")) == 1
    assert "in use" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------ defect 4
JSB = ["--data", "jsb", "--z-dim", "2", "--hidden-dim", "3", "--batch-size", "8", "--eval-particles", "2",
       "--epochs", "1", "--no-progress"]


def _music(folder, seed: int) -> None:
    """A tiny JSB-like set as the JSON variant of the chorales (same file name in every folder)."""
    rng = random.Random(seed)

    def sequence():
        return [sorted({rng.randrange(21, 109) for _ in range(rng.randrange(1, 4))}) for _ in range(rng.randrange(6, 12))]

    folder.mkdir(parents=True)
    data = {split: [sequence() for _ in range(n)] for split, n in (("train", 8), ("valid", 4), ("test", 4))}
    (folder / "jsb-chorales-quarter.json").write_text(json.dumps(data))


def test_a_decoy_data_set_in_another_folder_is_refused(tmp_path, monkeypatch, capsys):
    home, elsewhere, out = tmp_path / "home", tmp_path / "elsewhere", tmp_path / "run"
    _music(home / "data", 0)
    _music(elsewhere / "data", 1)  # a decoy: the same relative path, other contents
    monkeypatch.chdir(home)
    assert main(["train", *JSB, "--data-root", "data", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data_root"] == str((home / "data").resolve())  # resolved when recorded
    recorded = _strict(out / "data.json")
    assert recorded["root"] == config["data_root"] and sorted(recorded["splits"]) == ["test", "train", "valid"]
    assert recorded["splits"]["test"]["shape"][0] == 4 and len(recorded["splits"]["test"]["sha256"]) == 64
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    at_home = capsys.readouterr().out
    # from the other folder the run still reads its own data: the same figure
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(out)]) == 0
    assert capsys.readouterr().out == at_home
    # pointed at the decoy: refused, naming the split and both fingerprints
    line = _one_line_error(["evaluate", str(out), "--data-root", "data"], capsys, "jsb/test")
    decoy = str((elsewhere / "data").resolve())
    assert recorded["splits"]["test"]["sha256"][:16] in line and decoy in line and "--accept-data-change" in line
    _one_line_error(["sample", str(out), "--out", str(tmp_path / "samples"), "--data-root", "data"], capsys, "jsb/test")
    _one_line_error(["plot", str(out), "--out", str(tmp_path / "p.png"), "--data-root", "data"], capsys, "jsb/test")
    _one_line_error(["train", "--out", str(out), "--resume", "--epochs", "2", "--data-root", "data"], capsys, "jsb/train")
    assert len(_strict(out / "evaluations.jsonl")) == 2 and len(_strict(out / "metrics.jsonl")) == 1
    # on purpose: accepted, and recorded as such
    assert main(["evaluate", str(out), "--data-root", "data", "--accept-data-change"]) == 0
    last = _strict(out / "evaluations.jsonl")[-1]
    assert last["data_changed_from"] == recorded["splits"]["test"] and last["data"] != recorded["splits"]["test"]
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--data-root", "data", "--accept-data-change"]) == 0
    assert _strict(out / "history.jsonl")[-1]["data_changed"] == ["train", "valid"]
    now = _strict(out / "data.json")
    assert now["root"] == decoy and [c["split"] for c in now["accepted_changes"]] == ["train", "valid", "test"]


def test_a_run_recording_a_relative_root_needs_data_root(tmp_path, monkeypatch, capsys):
    """Runs from before roots were resolved (the shipped ones record ../shared/data) keep working with --data-root."""
    _music(tmp_path / "data", 0)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["train", *JSB, "--data-root", "data", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "data_root": "data"}))  # as an older version wrote it
    (out / "data.json").unlink()  # ... without fingerprints
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    line = _one_line_error(["evaluate", str(out)], capsys, "relative data root 'data'")
    assert "--data-root" in line
    assert main(["evaluate", str(out), "--data-root", str(tmp_path / "data")]) == 0


# ------------------------------------------------------------------------------------ defect 5
def test_a_keep_best_run_without_best_pt_is_refused_unless_last_is_asked_for(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    best_epoch = load_checkpoint(run / "best.pt", required=("format", "version", "model", "epoch"))["epoch"]
    assert f"(the best weights, epoch {best_epoch})" in capsys.readouterr().out
    (run / "best.pt").unlink()
    line = _one_line_error(["evaluate", str(run)], capsys, "best.pt is missing")
    assert "--weights last" in line
    _one_line_error(["train", "--out", str(run), "--resume", "--epochs", "3"], capsys, "best.pt is missing")
    assert main(["evaluate", str(run), "--weights", "last"]) == 0
    assert "(the last weights, epoch 2)" in capsys.readouterr().out
    assert [r["weights"] for r in _strict(run / "evaluations.jsonl")] == ["best", "last"]


# ------------------------------------------------------------------------------------ defect 8
FULL_DISK_SCRIPT = """
set -u
mount -t tmpfs -o size=72k tmpfs "$DISK" || exit 77
"$PY" -m pyrosequence train $ARGS --out "$DISK/run" > /dev/null 2> "$WORK/full.err"; echo $? > "$WORK/full.rc"
ls -a "$DISK/run" > "$WORK/full.ls"
mount -o remount,size=8m "$DISK"
"$PY" -m pyrosequence train $ARGS --out "$DISK/run" --resume > /dev/null 2> "$WORK/resume.err"; echo $? > "$WORK/resume.rc"
cp "$DISK/run/metrics.jsonl" "$WORK/metrics.jsonl"
"""


def _tmpfs_prefix(folder) -> list[str] | None:
    """A command prefix that runs a shell in a private mount namespace where it may mount a tmpfs
    (as root, or as a user with user namespaces); None where neither works."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return None
    for prefix in (["unshare", "-m"], ["unshare", "-r", "-m"]):
        probe = subprocess.run([*prefix, "sh", "-c", 'mount -t tmpfs -o size=8k tmpfs "$1"', "sh", str(folder)],
                               capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


def test_a_full_disk_is_named_with_the_file_and_resume_repairs_the_run(tmp_path, capsys, monkeypatch):
    args = [*TINY, "--epochs", "2"]
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = _tmpfs_prefix(disk)
    if prefix is not None:  # a real full disk: a 72 KiB tmpfs holds the first checkpoint, not the second
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "DISK": str(disk), "WORK": str(tmp_path),
               "PY": sys.executable, "ARGS": " ".join(args)}
        env.pop("PYROSEQUENCE_KILL_IN_WRITE", None)
        done = subprocess.run([*prefix, "sh", "-c", FULL_DISK_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "full.rc").read_text().strip() == "1"
        err = (tmp_path / "full.err").read_text().strip().splitlines()
        assert len(err) == 1 and "disk full" in err[0] and str(disk / "run" / "checkpoint.pt") in err[0], err
        assert not [name for name in (tmp_path / "full.ls").read_text().split() if name.endswith(".tmp")]
        assert (tmp_path / "resume.rc").read_text().strip() == "0", (tmp_path / "resume.err").read_text()
        assert [r["epoch"] for r in _strict(tmp_path / "metrics.jsonl")] == [1, 2]
        return
    # no tmpfs here: the checkpoint's write fails as a full disk fails it
    import pyrosequence.training.checkpoint as checkpoint_module

    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    real_save = checkpoint_module.torch.save

    def full(payload, handle, *a, **k):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    capsys.readouterr()
    line = _one_line_error(["train", *args, "--out", str(out), "--resume"], capsys, "disk full")
    assert str(out / "checkpoint.pt") in line
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1 and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    assert main(["train", *args, "--out", str(out), "--resume"]) == 0


# ------------------------------------------------------------------------------------ defect 10
def test_resume_refuses_another_preset(tmp_path, capsys):
    out = tmp_path / "run"
    preset = ["--preset", "vrnn-synthetic-z4", "--train-subset", "50", "--batch-size", "50", "--epochs", "1",
              "--valid-particles", "2", "--eval-particles", "2", "--particles", "2", "--no-progress"]
    assert main(["train", *preset, "--out", str(out)]) == 0
    capsys.readouterr()
    other = [p if p != "vrnn-synthetic-z4" else "vhrnn-synthetic-z4" for p in preset]
    line = _one_line_error(["train", *other, "--out", str(out), "--resume"], capsys, "--preset vhrnn-synthetic-z4")
    assert "model" in line
    assert json.loads((out / "config.json").read_text())["model"] == "vrnn"
    assert main(["train", *preset, "--out", str(out), "--resume"]) == 0  # its own preset: the same command again


# ------------------------------------------------------------------------------------ smaller ones
def test_a_first_update_that_fails_leaves_nothing_behind(tmp_path, capsys):
    out = tmp_path / "run"
    _one_line_error(["train", *TINY, "--epochs", "1", "--lr", "1e6", "--grad-clip", "0", "--out", str(out)], capsys, "diverged")
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()  # a folder of the user's, empty: it stays, empty
    _one_line_error(["train", *TINY, "--epochs", "1", "--lr", "1e6", "--grad-clip", "0", "--out", str(mine)], capsys, "diverged")
    assert mine.is_dir() and not list(mine.iterdir())
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0  # the corrected command, without --force


def test_resume_never_runs_a_run_backwards(run, capsys):
    before = (run / "config.json").read_text()
    _one_line_error(["train", "--out", str(run), "--resume", "--epochs", "1"], capsys, "has completed 2 epochs")
    assert (run / "config.json").read_text() == before


def test_plot_and_report_check_out_before_computing(run, tmp_path, capsys, monkeypatch):
    import pyrosequence.cli.plot as cli_plot
    import pyrosequence.training.rundir as rundir

    def never(*args, **kwargs):
        raise AssertionError("computed before checking --out")

    monkeypatch.setattr(rundir, "load_run", never)
    monkeypatch.setattr(cli_plot, "load_run", never)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(["plot", str(run), "--out", str(tmp_path / "missing" / "x.png")], capsys, "cannot write into")
    _one_line_error(["plot", str(run), "--kind", "kl", "--out", str(blocker / "x.png")], capsys, "cannot write into")
    _one_line_error(["report", str(run), "--out", str(blocker / "report")], capsys, "cannot write into")


def test_a_stale_lock_file_alone_does_not_make_a_folder_a_run(tmp_path, capsys):
    """A lock file left by a command killed before it wrote anything: the folder is still empty."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / LOCK_FILE).write_text(json.dumps({"pid": 999999999, "host": "elsewhere", "command": "train"}))
    assert main(["train", *TINY, "--epochs", "1", "--out", str(fresh)]) == 0
    printed = capsys.readouterr().out
    assert "took over the stale lock" in printed and "on another machine" in printed
