"""Sweeps on Optuna (pyrosequence sweep): the space language, trials as run directories, pruning,
failures, restarts, workers sharing a study, and the report. Tiny trials (8 sequences, 2 epochs)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
torch = pytest.importorskip("torch")

from optuna.trial import TrialState  # noqa: E402

from pyrosequence.cli import build_parser, main  # noqa: E402
from pyrosequence.cli.train import config_from_args  # noqa: E402
from pyrosequence.training.config import TrainConfig  # noqa: E402
from pyrosequence.sweep import study as study_module  # noqa: E402
from pyrosequence.sweep.report import train_command  # noqa: E402
from pyrosequence.sweep.space import SearchSpace, parse_space  # noqa: E402

TINY = ["--epochs", "2", "--train-subset", "8", "--batch-size", "8", "--z-dim", "2", "--hidden-dim", "4",
        "--eval-particles", "2", "--eval-bound", "elbo"]
BASE = TrainConfig(epochs=2, train_subset=8, batch_size=8, z_dim=2, model_options={"hidden_dim": 4}, eval_particles=2,
                   eval_bound="elbo")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny models on a shared 2-core machine run several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    torch.set_num_threads(threads)


def sweep(out, *extra, trials=3):
    return main(["sweep", *TINY, "--out", str(out), "--trials", str(trials), *extra])


def states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


def parse_train(command: str) -> TrainConfig:
    import shlex

    argv = shlex.split(command)
    assert argv[:2] == ["pyrosequence", "train"]
    return config_from_args(build_parser().parse_args(argv[1:]))


# -- the space language (no training) --------------------------------------------------------------

def test_space_values_reach_the_configuration():
    space = parse_space(["lr=log:1e-5:1e-3", "init=choice:default,fivo", "batch_size=int:4:32", "weight_decay=float:0:1e-3",
                         "hidden_dim=intlog:4:64", "beta1=float:0.8:0.99", "grad_clip=choice:0,10",
                         "schedule=choice:constant|cosine:steps=200,floor=1e-6|warmup:steps=5*cosine:steps=100"])
    space.check(BASE)
    config = space.config(BASE, {"lr": 1e-4, "init": "fivo", "batch_size": 5, "weight_decay": 1e-4, "hidden_dim": 9,
                                 "beta1": 0.95, "grad_clip": 0, "schedule": "warmup:steps=5*cosine:steps=100"})
    assert (config.lr, config.init, config.batch_size, config.grad_clip) == (1e-4, "fivo", 5, None)
    assert config.optimizer_options["weight_decay"] == 1e-4 and config.optimizer_options["betas"] == [0.95, 0.999]
    assert config.model_options["hidden_dim"] == 9
    assert [f["name"] for f in config.schedule] == ["warmup", "cosine"]
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))).to_dict() == space.to_dict()
    # another optimizer takes what it takes; options it does not take are left out of its trials
    both = parse_space(["optimizer=choice:adam,sgd", "momentum=float:0:0.9"])
    both.check(BASE)
    assert both.config(BASE, {"optimizer": "adam", "momentum": 0.5}).optimizer_options.get("momentum") is None
    assert both.config(BASE, {"optimizer": "sgd", "momentum": 0.5}).optimizer_options["momentum"] == 0.5


def test_space_file_yaml_and_json(tmp_path):
    (tmp_path / "space.yaml").write_text("lr: {type: log, low: 1e-5, high: 1e-3}\ninit: [default, fivo]\n"
                                         "layers: int:1:3\nbetas: [[0.9, 0.999], [0.96, 0.999]]\n")
    (tmp_path / "space.json").write_text(json.dumps({"lr": {"type": "log", "low": 1e-5, "high": 1e-3}, "init": ["default", "fivo"],
                                                     "layers": "int:1:3", "betas": [[0.9, 0.999], [0.96, 0.999]]}))
    yaml_space, json_space = parse_space(file=tmp_path / "space.yaml"), parse_space(file=tmp_path / "space.json")
    assert yaml_space.to_dict() == json_space.to_dict()
    yaml_space.check(BASE)
    assert yaml_space["betas"].labels() == ["[0.9, 0.999]", "[0.96, 0.999]"]  # Optuna sees text, the config a pair
    assert yaml_space.config(BASE, {"betas": [0.96, 0.999]}).optimizer_options["betas"] == [0.96, 0.999]


@pytest.mark.parametrize("space,message", [
    (["foo=log:1:2", "bar=int:1:3"], "unknown space name(s) foo, bar:"),
    (["lr=log:0:1e-3"], "space lr: a log range needs low > 0"),
    (["lr=uniform:1:2"], "space lr: unknown kind 'uniform'"),
    (["lr=log:1e-3"], "space lr: log takes log:LOW:HIGH"),
    (["batch_size=int:4:x"], "space batch_size: 'x' is not a number"),
    (["lr=log:1e-3:1e-5"], "space lr: low 0.001 is above high 1e-05"),
    (["init=choice:default,bogus"], "space init=choice:default,bogus: init = 'bogus' is refused: unknown initialisation 'bogus'"),
    (["batch_size=float:4:32"], "batch_size = 4.0 is refused: batch_size must be a positive integer"),
    (["momentum=float:0:0.9"], "optimizer 'adam' does not take momentum"),
    (["schedule=choice:cosine:steps=x"], "schedule = 'cosine:steps=x' is refused"),
    (["lr"], "space entry 'lr' is not NAME=KIND:ARGS"),
    (["lr=log:1:2", "lr=log:1:3"], "space: lr given more than once"),
])
def test_malformed_space_refused_in_one_line(space, message, tmp_path, capsys):
    assert main(["sweep", *TINY, "--out", str(tmp_path / "s"), "--space", *space]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyrosequence: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "s" / "study.db").exists()  # refused before any study is made


def test_several_malformed_entries_named_together(tmp_path, capsys):
    assert main(["sweep", *TINY, "--out", str(tmp_path / "s"), "--space", "lr=log:0:1", "init=choice:"]) == 1
    err = capsys.readouterr().err
    assert "space lr:" in err and "space init:" in err and err.count("\n") == 1


def test_best_command_reads_back_as_the_trial_configuration():
    space = parse_space(["lr=log:1e-5:1e-3", "init=choice:default,fivo", "weight_decay=float:0:1e-3", "cell=choice:lstm,gru",
                         "schedule=choice:constant|warmup:steps=5*cosine:steps=100,floor=1e-6", "grad_clip=choice:0,5",
                         "keep_best=choice:true,false", "optimizer=choice:adam,clipped-adam", "lrd=float:0.999:1"])
    values = {"lr": 3.3e-4, "init": "fivo", "weight_decay": 2.5e-4, "cell": "gru", "grad_clip": 0, "keep_best": True,
              "schedule": "warmup:steps=5*cosine:steps=100,floor=1e-6", "optimizer": "clipped-adam", "lrd": 0.9995}
    config = space.config(BASE, values)
    assert parse_train(train_command(config)) == config
    preset = "vrnn-synthetic-z8"
    from pyrosequence.training.presets import get_preset

    config = space.config(get_preset(preset).config(epochs=3), values)
    command = train_command(config, preset)
    assert command.startswith("pyrosequence train --preset vrnn-synthetic-z8 ") and parse_train(command) == config


def test_sweep_without_optuna_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    assert main(["sweep", *TINY, "--out", str(tmp_path / "s"), "--space", "lr=log:1e-4:1e-2"]) == 1
    err = capsys.readouterr().err
    assert err == 'pyrosequence: error: sweeps need Optuna: install with pip install -e ".[sweep]"\n'


def test_importing_pyrosequence_does_not_import_optuna():
    code = "import sys, pyrosequence, pyrosequence.cli, pyrosequence.sweep; assert 'optuna' not in sys.modules, 'optuna imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- sweeps ------------------------------------------------------------------------------------------

def test_three_trials_table_best_command_report_and_plain_optuna(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep(out, "--space", "lr=log:1e-3:1e-2", "init=choice:default,fivo", "--pruner", "none") == 0
    printed = capsys.readouterr().out
    for column in ("trial", "state", "lr", "init", "best valid", "updates", "wall s"):
        assert column in printed.splitlines()[printed.splitlines().index(next(l for l in printed.splitlines() if l.startswith("trial  state")))]
    assert printed.count("COMPLETE") == 3
    command = next(l for l in printed.splitlines() if l.startswith("best configuration: ")).split(": ", 1)[1]
    # the SQLite study is plain Optuna's
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert states(study) == [TrialState.COMPLETE] * 3
    best = study.best_trial
    assert best.value == max(t.value for t in study.trials)
    run_dir = Path(best.user_attrs["run_dir"])
    assert run_dir == (out / f"trial-{best.number:04d}").resolve()
    history = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert best.value == max(r["valid_elbo_per_step"] for r in history)  # the objective: the run's best epoch
    assert best.user_attrs["updates"] == history[-1]["step"] and best.user_attrs["stopped"] == "epochs"
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "results.json").exists()  # never scored on test
    # the best command is the best trial's configuration
    assert parse_train(command) == TrainConfig.load(run_dir / "config.json")
    for name in ("results.md", "results.csv", "study.png"):
        assert (out / name).is_file(), name
    assert command in (out / "results.md").read_text()
    # --report on the existing sweep prints the same table and runs nothing
    (out / "results.md").unlink()
    assert main(["sweep", "--out", str(out), "--report"]) == 0
    again = capsys.readouterr().out
    assert again.count("COMPLETE") == 3 and f"best configuration: {command}" in again and (out / "results.md").is_file()
    assert len(optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}").trials) == 3
    # the same folder with another base configuration is refused in one line
    assert sweep(out, "--space", "lr=log:1e-3:1e-2", "init=choice:default,fivo", "--lr", "0.1") == 1
    err = capsys.readouterr().err
    assert "was started with another sweep (it differs in lr)" in err and err.count("\n") == 1


def test_bad_trial_is_pruned_and_a_diverging_one_fails(tmp_path, capsys):
    out = tmp_path / "sweep"
    space = ["--space", "lr=choice:0.003,3.0,1e20"]
    # the order is fixed: a good trial, one that diverges, a terrible one (pruned at its first epoch)
    out.mkdir()
    study = optuna.create_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}", direction="maximize")
    for lr in (0.003, 1e20, 3.0):
        study.enqueue_trial({"lr": lr})
    assert sweep(out, *space, "--pruner-startup", "1", "--pruner-warmup", "0", trials=2) == 0
    printed = capsys.readouterr().out
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    # --trials counts complete and pruned trials: the failed one does not count
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]
    failed, pruned = trials[1], trials[2]
    assert list(pruned.intermediate_values) == [1] and pruned.user_attrs["stopped"] == "pruned"
    assert pruned.intermediate_values[1] < trials[0].intermediate_values[1] - 1000  # far worse
    assert "trial 2: pruned after epoch 1" in printed
    assert failed.user_attrs["stopped"] == "failed" and "nan" in failed.user_attrs["error"]
    assert "trial 1: failed:" in printed
    # the pruned trial's run directory stays resumable: its checkpoint of epoch 1 is there
    assert (Path(pruned.user_attrs["run_dir"]) / "checkpoint.pt").is_file()


def test_killed_sweep_resumes_and_continues_the_dead_trial(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    space = ["--space", "lr=log:1e-3:1e-2", "--pruner", "none"]
    assert sweep(out, *space, trials=1) == 0
    real_train = study_module.train

    def killed_after_one_epoch(config, on_epoch=None, **kwargs):
        def hook(record):
            on_epoch(record)
            raise SystemExit("killed")  # nothing below it runs: the trial stays RUNNING, as after a SIGKILL

        return real_train(config, on_epoch=hook, **kwargs)

    monkeypatch.setattr(study_module, "train", killed_after_one_epoch)
    with pytest.raises(SystemExit):
        sweep(out, *space, trials=3)
    monkeypatch.setattr(study_module, "train", real_train)
    storage = f"sqlite:///{out / 'study.db'}"
    assert states(optuna.load_study(study_name="sweep", storage=storage)) == [TrialState.COMPLETE, TrialState.RUNNING]
    capsys.readouterr()
    assert sweep(out, *space, trials=3) == 0  # the same command again
    printed = capsys.readouterr().out
    trials = optuna.load_study(study_name="sweep", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    dead, retry = trials[1], trials[2]
    assert "trial 1: its process" in printed and "marked failed" in printed
    assert retry.params == dead.params and retry.user_attrs["retry_of"] == 1
    assert retry.user_attrs["run_dir"] == dead.user_attrs["run_dir"]  # continued where it died
    events = [json.loads(l)["event"] for l in (Path(dead.user_attrs["run_dir"]) / "history.jsonl").read_text().splitlines()]
    assert events == ["start", "resume"]
    assert retry.intermediate_values.keys() == {1, 2}  # epoch 1 reported before the kill, epoch 2 after
    run_dirs = sorted(p.name for p in out.glob("trial-*"))
    assert run_dirs == ["trial-0000", "trial-0001", "trial-0003"]


def test_ctrl_c_then_the_same_command_continues_the_interrupted_trial(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    space = ["--space", "lr=log:1e-3:1e-2", "--pruner", "none"]
    real_train = study_module.train

    def interrupted_after_one_epoch(config, on_epoch=None, **kwargs):
        def hook(record):
            on_epoch(record)
            raise KeyboardInterrupt

        return real_train(config, on_epoch=hook, **kwargs)

    monkeypatch.setattr(study_module, "train", interrupted_after_one_epoch)
    assert sweep(out, *space, trials=1) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setattr(study_module, "train", real_train)
    assert sweep(out, *space, trials=1) == 0
    trials = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["stopped"] == "interrupted" and trials[1].user_attrs["retry_of"] == 0
    assert trials[1].user_attrs["run_dir"] == trials[0].user_attrs["run_dir"] and trials[1].user_attrs["epochs"] == 2
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-0000"]


def test_two_workers_share_the_study_without_duplicates(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep(out, "--space", "lr=log:1e-3:1e-2", "--pruner", "none", "--workers", "2", trials=3) == 0
    assert (out / "journal.log").is_file() and not (out / "study.db").exists()
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="sweep", storage=JournalStorage(JournalFileBackend(str(out / "journal.log"))))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3  # exactly the requested number
    assert sorted(t.number for t in trials) == [0, 1, 2]
    run_dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(run_dirs)) == 3 and all((Path(d) / "checkpoint.pt").is_file() for d in run_dirs)
    assert "best configuration: pyrosequence train" in capsys.readouterr().out
