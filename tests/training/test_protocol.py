"""The training protocol in tiny runs: schedules (and clipped Adam's lrd) survive kill-and-resume bit
for bit; patience, --max-updates and --time-limit stop where they should (the time limit resumably);
a resume may change the learning rate (applied, recorded in history.jsonl) but not the architecture;
loss_reduction="sum" scales the gradients by the batch's steps; the CLI flags reach config.json and
bad values are refused in one line."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

import pyro
import pyrosequence.training.loop as train_module
from pyrosequence.training.checkpoint import load_checkpoint
from pyrosequence.cli import main
from pyrosequence.training.config import TrainConfig
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.training.distributed import evaluation_seed
from pyrosequence.inference.objectives import make_objective
from pyrosequence.inference.scaling import ConstantBeta
from pyrosequence.training.rundir import build_model
from pyrosequence.training.loop import train, train_epoch

TINY = dict(z_dim=2, batch_size=8, train_subset=16, eval_particles=2, valid_particles=1, model_options={"hidden_dim": 8})
TINY_FLAGS = ["--z-dim", "2", "--batch-size", "8", "--train-subset", "16", "--eval-particles", "2", "--hidden-dim", "8",
              "--no-progress"]
QUIET = dict(progress=False, log=lambda s: None)
_SPLITS = {}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny models on a shared 2-core machine run several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def tiny_data(monkeypatch):
    """Every split of the synthetic data cut to 16 (train) or 8 sequences of 12 steps: two updates
    and a validation of a fraction of a second per epoch."""
    real = train_module.load_split

    def tiny(name, split, root=None, options=None):
        key = (name, split, root)
        if key not in _SPLITS:
            data = real(name, split, root, options)
            n = 16 if split == "train" else 8
            lengths = data.lengths[:n].clamp(max=12)
            x = data.x[:n, :12] * (torch.arange(12)[None, :, None] < lengths[:, None, None])
            _SPLITS[key] = SequenceDataset(x, lengths, data.name)
        return _SPLITS[key]

    monkeypatch.setattr(train_module, "load_split", tiny)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def assert_same_run(a, b):
    """Two run directories hold the same weights, optimizer state, RNG state, schedule state and metrics."""
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert ca["epoch"] == cb["epoch"] and ca["step"] == cb["step"]
    for key in ca["model"]:
        assert torch.equal(ca["model"][key], cb["model"][key]), key
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        for key in sa:
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), key
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])
    assert ca["schedule"] == cb["schedule"]
    assert without_seconds(lines(a / "metrics.jsonl")) == without_seconds(lines(b / "metrics.jsonl"))


PROTOCOLS = {
    # warm-up, cosine and a plateau that cuts after every epoch but the first (no epoch beats the best by 1e6)
    "adam-warmup-cosine-plateau": dict(schedule=["warmup:steps=3", "cosine:steps=8,floor=1e-4",
                                                 "plateau:factor=0.5,patience=0,threshold=1e6"]),
    # Pyro's DMM protocol: clipped Adam with a per-update decay, L2 weight decay, summed loss, and a step schedule
    "clipped-adam-lrd": dict(optimizer="clipped-adam", grad_clip=None, loss_reduction="sum", schedule=["step:every=1,gamma=0.5"],
                             optimizer_options={"betas": [0.96, 0.999], "clip_norm": 5.0, "lrd": 0.9, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_schedule_survives_kill_and_resume_bit_for_bit(tmp_path, protocol):
    settings = {**TINY, **PROTOCOLS[protocol]}
    full = train(TrainConfig(epochs=4, **settings), out=tmp_path / "full", **QUIET)
    first = train(TrainConfig(epochs=2, **settings), out=tmp_path / "split", **QUIET)
    assert first.stopped == "epochs" and first.epochs_completed == 2
    resumed = train(TrainConfig(epochs=4, **settings), out=tmp_path / "split", resume=True, **QUIET)
    assert_same_run(tmp_path / "full", tmp_path / "split")
    assert resumed.test == full.test and resumed.steps == full.steps == 8
    lr = [r["lr"] for r in full.history]  # the rate of each epoch's last update
    if protocol == "clipped-adam-lrd":  # lr * lrd**(updates so far) * 0.5**(epochs before)
        assert lr == pytest.approx([3e-3 * 0.9 ** (2 * e) * 0.5 ** (e - 1) for e in range(1, 5)], rel=1e-12)
    else:
        cosine = [1e-4 / 3e-3 + (1 - 1e-4 / 3e-3) * 0.5 * (1 + math.cos(math.pi * u / 8)) for u in (1, 3, 5, 7)]
        warmup = [2 / 3, 1, 1, 1]
        plateau = [1, 1, 0.5, 0.25]  # cut at the end of epochs 2, 3 (and 4)
        assert lr == pytest.approx([3e-3 * w * c * p for w, c, p in zip(warmup, cosine, plateau)], rel=1e-12)
        assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["schedule"]["plateau"]["scale"] == 0.5**3
    history = lines(tmp_path / "split" / "history.jsonl")
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["changes"] == {"epochs": [2, 4]} and "schedule_restarted" not in history[1]
    assert (history[1]["epoch"], history[1]["step"]) == (2, 4)


VALID = [-5.0, -4.0, -4.5, -3.0, -3.0, -3.2, -3.1, -2.0, -1.0]


def fake_validation(monkeypatch, seed=0):
    """Validation bound of epoch e (1-based) = VALID[e - 1]; the test evaluation stays real."""
    real = train_module._evaluate
    by_seed = {evaluation_seed(seed, e): v for e, v in enumerate(VALID)}

    def evaluate(group, model, data, bound, particles, eval_seed):
        if eval_seed in by_seed:
            return SimpleNamespace(per_timestep=by_seed[eval_seed], total=by_seed[eval_seed] * data.total_steps)
        return real(group, model, data, bound, particles, eval_seed)

    monkeypatch.setattr(train_module, "_evaluate", evaluate)


def test_patience_stops_at_the_right_epoch(tmp_path, monkeypatch):
    fake_validation(monkeypatch)
    # best at epoch 4 (-3.0); epoch 5 only ties it, 6 and 7 are worse: three epochs without a better bound
    result = train(TrainConfig(epochs=20, patience=3, **TINY), out=tmp_path / "run", **QUIET)
    assert result.stopped == "patience" and result.epochs_completed == 7 and len(result.history) == 7
    assert [r["valid_elbo_per_step"] for r in result.history] == VALID[:7]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stopped"] == "patience" and results["epochs"] == 7
    # a longer patience on resume continues the run, and the change is recorded
    resumed = train(TrainConfig(epochs=9, patience=5, **TINY), out=tmp_path / "run", resume=True, **QUIET)
    assert resumed.stopped == "epochs" and resumed.epochs_completed == 9
    event = lines(tmp_path / "run" / "history.jsonl")[-1]
    assert event["changes"] == {"epochs": [20, 9], "patience": [3, 5]} and "schedule_restarted" not in event


def test_cli_flags_reach_the_config_and_max_updates_stops(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *TINY_FLAGS, "--epochs", "10", "--lr", "1e-3", "--optimizer", "clipped-adam", "--betas", "0.96", "0.999",
            "--clip-norm", "10", "--lrd", "0.9999", "--weight-decay", "2.0", "--grad-clip", "0",
            "--schedule", "warmup:steps=2", "--schedule", "plateau:factor=0.5,patience=1", "--init", "fivo",
            "--loss-reduction", "sum", "--kl-anneal", "--anneal-start", "0.2", "--anneal-increment", "0.01",
            "--patience", "5", "--max-updates", "5", "--time-limit", "1h30m", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["optimizer"] == "clipped-adam"
    assert config["optimizer_options"] == {"betas": [0.96, 0.999], "eps": 1e-8, "weight_decay": 2.0, "clip_norm": 10.0,
                                           "lrd": 0.9999}
    assert config["schedule"] == [{"name": "warmup", "steps": 2},
                                  {"name": "plateau", "factor": 0.5, "patience": 1, "threshold": 0.0, "cooldown": 0, "min_lr": 0.0}]
    assert (config["init"], config["loss_reduction"], config["grad_clip"]) == ("fivo", "sum", None)
    assert (config["kl_anneal"], config["anneal_start"], config["anneal_increment"]) == (True, 0.2, 0.01)
    assert (config["patience"], config["max_updates"], config["time_limit"], config["lr"]) == (5, 5, 5400.0, 1e-3)
    # two updates per epoch: the epoch that reaches 5 updates is the third
    results = json.loads((out / "results.json").read_text())
    assert results["stopped"] == "max_updates" and results["epochs"] == 3
    metrics = lines(out / "metrics.jsonl")
    assert [r["step"] for r in metrics] == [2, 4, 6]
    assert metrics[-1]["beta"] == pytest.approx(0.2 + 0.01 * 6)
    assert metrics[0]["lr"] == pytest.approx(1e-3 * 0.9999**2)  # warmed up at the second update, decayed by lrd twice
    assert "stopped after epoch 3: 6 updates reached (max_updates 5)" in capsys.readouterr().out


@pytest.mark.parametrize("text,seconds", [("45m", 2700.0), ("1h30m", 5400.0), ("90", 90.0), ("2h", 7200.0), ("45s", 45.0),
                                          ("0", None)])
def test_time_limit_durations(text, seconds, tmp_path, monkeypatch):
    import pyrosequence.cli.train as cli_train

    seen = {}
    monkeypatch.setattr(cli_train, "train", lambda config, **kwargs: seen.setdefault("config", config) and
                        SimpleNamespace(run_dir=kwargs["out"], stopped="epochs"))
    assert main(["train", "--time-limit", text, "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert seen["config"].time_limit == seconds


def test_time_limit_exits_with_a_resumable_checkpoint(tmp_path, capsys):
    straight = train(TrainConfig(epochs=3, **TINY), out=tmp_path / "straight", **QUIET)
    split = tmp_path / "split"
    first = train(TrainConfig(epochs=3, time_limit=1e-3, **TINY), out=split, **QUIET)
    # a budget of a millisecond: one epoch, then the next would end past it
    assert first.stopped == "time_limit" and first.epochs_completed == 1 and first.test == {}
    assert not (split / "results.json").exists() and load_checkpoint(split / "checkpoint.pt")["epoch"] == 1
    # the same command again, with --resume: the budget is per invocation, so one more epoch
    assert main(["train", "--out", str(split), "--resume", "--no-progress"]) == 0
    assert f"stopped at the time limit; continue with: pyrosequence train --out {split} --resume" in capsys.readouterr().out
    assert not (split / "results.json").exists() and load_checkpoint(split / "checkpoint.pt")["epoch"] == 2
    assert main(["train", "--out", str(split), "--resume", "--time-limit", "0", "--no-progress"]) == 0
    assert f"results written to {split}" in capsys.readouterr().out
    results = json.loads((split / "results.json").read_text())
    assert results["stopped"] == "epochs" and results["per_timestep"] == straight.test["per_timestep"]
    assert_same_run(tmp_path / "straight", split)
    history = lines(split / "history.jsonl")
    assert [h.get("changes") for h in history] == [None, {}, {"time_limit": [0.001, None]}]


def test_an_lr_change_on_resume_is_applied_and_recorded_an_architecture_change_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_FLAGS, "--epochs", "2", "--lr", "3e-3", "--out", str(out)]) == 0
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--lr", "1e-3", "--no-progress"]) == 0
    assert [r["lr"] for r in lines(out / "metrics.jsonl")] == [3e-3, 3e-3, 1e-3]
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-3
    event = lines(out / "history.jsonl")[-1]
    assert event["event"] == "resume" and event["changes"] == {"epochs": [2, 3], "lr": [3e-3, 1e-3]}
    assert event["schedule_restarted"] is True and (event["epoch"], event["step"]) == (2, 4)
    # a schedule given on resume starts at the resume: epoch 4's last update is its second
    assert main(["train", "--out", str(out), "--resume", "--epochs", "4", "--schedule", "exponential:gamma=0.5", "--no-progress"]) == 0
    assert lines(out / "metrics.jsonl")[-1]["lr"] == pytest.approx(1e-3 * 0.5**2, rel=1e-12)
    assert lines(out / "history.jsonl")[-1]["changes"]["schedule"] == [[], [{"name": "exponential", "gamma": 0.5}]]
    capsys.readouterr()
    for flags, name in [(["--z-dim", "3"], "z_dim"), (["--hidden-dim", "16"], "hidden_dim"), (["--optimizer", "sgd"], "optimizer"),
                        (["--init", "xavier"], "init"), (["--loss-reduction", "sum"], "loss_reduction")]:
        assert main(["train", "--out", str(out), "--resume", "--epochs", "5", *flags, "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("pyrosequence: error: a resumed run keeps its model, data and objective")
        assert err.rstrip().endswith(f"(got {name})"), err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 4 and len(lines(out / "history.jsonl")) == 3
    # from Python the refusal names the setting too
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in z_dim$"):
        train(TrainConfig(epochs=5, **{**TINY, "z_dim": 3, "lr": 1e-3}), out=out, resume=True, **QUIET)


def test_loss_reduction_sum_scales_the_gradients_by_the_batchs_steps():
    lengths = torch.tensor([12, 7, 9, 3, 12, 5, 10, 8])
    x = torch.randn(8, 12, 2) * (torch.arange(12)[None, :, None] < lengths[:, None, None])
    data = SequenceDataset(x, lengths)

    def gradients(reduction):
        config = TrainConfig(loss_reduction=reduction, grad_clip=None, **{**TINY, "train_subset": None})
        pyro.set_rng_seed(0)
        model = build_model(config, 2)
        seen = []

        class Spy(torch.optim.SGD):
            def step(self, closure=None):
                seen.append([p.grad.clone() for p in model.parameters()])

        pyro.set_rng_seed(1)
        train_epoch(model, data, config, Spy(model.parameters(), lr=0.0), make_objective("elbo", 1), ConstantBeta(1.0), 0, 0)
        return seen

    (mean,), (summed,) = gradients("mean-step"), gradients("sum")
    assert data.total_steps == 66
    for m, s in zip(mean, summed):
        assert torch.allclose(s, 66 * m, rtol=1e-5, atol=1e-6)
    assert max(m.abs().max() for m in mean) > 1e-3


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'; choose one of: adam, adamw, clipped-adam, sgd"),
        (["--schedule", "linear:steps=3"], "unknown schedule 'linear'"),
        (["--schedule", "exponential:gamma=-0.5"], "schedule 'exponential': gamma must be in (0, 1] (a decay), got -0.5"),
        (["--schedule", "cosine:floor=1e-6"], "schedule 'cosine' needs steps"),
        (["--schedule", "cosine:steps"], "--schedule takes NAME:key=value,key=value, got 'cosine:steps'"),
        (["--optimizer", "clipped-adam", "--lrd", "-0.9"], "clipped-adam: lrd (the per-update decay factor) must be in (0, 1], got -0.9"),
        (["--lrd", "0.99"], "optimizer 'adam' does not take lrd"),
        (["--optimizer", "sgd", "--betas", "0.9", "0.99"], "optimizer 'sgd' does not take betas"),
        (["--betas", "0.9", "1.5"], "adam: betas must be two numbers in [0, 1), got [0.9, 1.5]"),
        (["--weight-decay", "-1"], "adam: weight_decay must be a non-negative number, got -1.0"),
        (["--init", "orthogonal"], "unknown initialisation 'orthogonal'"),
        (["--loss-reduction", "mean"], "loss_reduction must be 'mean-step' or 'sum', got 'mean'"),
        (["--loss-reduction", "sum", "--objective", "fivo"], "loss_reduction 'sum' does not apply to objective 'fivo', which "
         "normalises its loss itself"),
        (["--patience", "-2"], "patience must be a positive integer, got -2"),
        (["--max-updates", "-1"], "max_updates must be a positive integer, got -1"),
        (["--time-limit", "soon"], "argument --time-limit: invalid duration value: 'soon'"),
        (["--time-limit=-5m"], "argument --time-limit: invalid duration value: '-5m'"),
    ],
)
def test_bad_values_are_refused_by_the_cli_in_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["train", *argv])
    except SystemExit as exit:  # argparse's own errors (a value its type function refuses)
        code = exit.code
    assert code != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()
