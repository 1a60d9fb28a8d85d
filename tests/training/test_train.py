"""The training loop: learning happens, checkpoints are atomic and resume exactly, runs are safe."""

import json

import pytest
import torch

from pyrosequence.training.checkpoint import load_checkpoint, save_checkpoint
from pyrosequence.training.config import TrainConfig
from pyrosequence.training.loop import train

FAST = dict(z_dim=4, batch_size=64, eval_particles=2, lr=3e-3)


def test_vrnn_loss_falls_on_synthetic_data(tmp_path):
    result = train(TrainConfig(epochs=3, **FAST), out=tmp_path / "run", progress=False, log=lambda s: None)
    losses = [r["train_loss_per_step"] for r in result.history]
    valid = [r["valid_elbo_per_step"] for r in result.history]
    assert losses[-1] < losses[0] and valid[-1] > valid[0]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["per_timestep"] == pytest.approx(result.test["per_timestep"]) and saved["particles"] == 2
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    full = train(TrainConfig(epochs=2, kl_anneal=True, **FAST), out=tmp_path / "full", **quiet)
    train(TrainConfig(epochs=1, kl_anneal=True, **FAST), out=tmp_path / "split", **quiet)
    resumed = train(TrainConfig(epochs=2, kl_anneal=True, **FAST), out=tmp_path / "split", resume=True, **quiet)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert resumed.test["per_timestep"] == full.test["per_timestep"]
    assert [r["train_loss_per_step"] for r in resumed.history] == [r["train_loss_per_step"] for r in full.history]


def test_resume_refuses_a_changed_configuration(tmp_path):
    train(TrainConfig(epochs=1, **FAST), out=tmp_path / "run", progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="differs from the checkpoint's in batch_size"):
        train(TrainConfig(epochs=2, **{**FAST, "batch_size": 3}), out=tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ValueError, match="differs from the checkpoint's in optimizer"):
        train(TrainConfig(epochs=2, **{**FAST, "optimizer": "sgd"}), out=tmp_path / "run", resume=True, progress=False)


def test_existing_non_empty_run_directory_is_left_alone(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--resume.*--force"):
        train(TrainConfig(epochs=1, **FAST), out=out, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(TrainConfig(epochs=1, **FAST), out=out, resume=True, progress=False)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown model 'rnn'"):
        TrainConfig(model="rnn")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        TrainConfig(data="mnist")
    with pytest.raises(ValueError, match="unknown objective"):
        TrainConfig(objective="vi")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="does not take option.*hidden_dim"):
        TrainConfig(model="lgssm", model_options={"hidden_dim": 3})
    assert TrainConfig().model_options["likelihood"] == "gaussian"


def test_checkpoints_are_atomic_and_checked(tmp_path):
    path = tmp_path / "ck.pt"
    good = {"model": {"w": torch.ones(2)}, "optimizer": {}, "epoch": 1, "step": 2, "rng": {"torch": torch.get_rng_state()}}
    save_checkpoint(path, good)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary left behind

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(Exception):
        save_checkpoint(path, {**good, "epoch": Boom()})
    assert load_checkpoint(path)["epoch"] == 1  # the previous checkpoint survived the failed write
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)
    torch.save({"something": 1}, path)
    with pytest.raises(ValueError, match="not a pyrosequence checkpoint"):
        load_checkpoint(path)


def test_keep_best_scores_the_best_validation_epoch(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    # a learning rate this large makes validation worse after the first epochs
    config = TrainConfig(epochs=4, keep_best=True, **{**FAST, "lr": 0.3})
    result = train(config, out=tmp_path / "run", **quiet)
    valid = [r["valid_elbo_per_step"] for r in result.history]
    best_epoch = max(range(len(valid)), key=valid.__getitem__) + 1
    best = load_checkpoint(tmp_path / "run" / "best.pt", required=("model", "epoch"))
    assert best["epoch"] == best_epoch == result.test["selected_epoch"]
    assert best["valid_elbo_per_step"] == valid[best_epoch - 1]
    # evaluate() of load_run's model reproduces the test figure: it loads best.pt, not the last epoch
    from pyrosequence.inference import evaluate, make_bound
    from pyrosequence.training.rundir import load_run
    import pyro

    _, model, data, checkpoint = load_run(tmp_path / "run", "test")
    assert checkpoint["epoch"] == best_epoch
    pyro.set_rng_seed(1)
    a = evaluate(model, data.x, data.lengths, make_bound("elbo"), 1).per_timestep
    last = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    if best_epoch != 4:
        assert any(not torch.equal(last["model"][k], best["model"][k]) for k in best["model"])
    model.load_state_dict(best["model"])
    pyro.set_rng_seed(1)
    assert evaluate(model, data.x, data.lengths, make_bound("elbo"), 1).per_timestep == a


def test_keep_best_resumes_with_the_best_so_far(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    config = dict(keep_best=True, **{**FAST, "lr": 0.3})
    full = train(TrainConfig(epochs=3, **config), out=tmp_path / "full", **quiet)
    train(TrainConfig(epochs=1, **config), out=tmp_path / "split", **quiet)
    resumed = train(TrainConfig(epochs=3, **config), out=tmp_path / "split", resume=True, **quiet)
    assert resumed.test == full.test
    a = load_checkpoint(tmp_path / "full" / "best.pt", required=("model",))
    b = load_checkpoint(tmp_path / "split" / "best.pt", required=("model",))
    assert a["epoch"] == b["epoch"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
