"""Dropout on the feature extractors of VRNN and VHRNN (the regulariser of Dai et al. 2019): it acts
in training mode only, adds no parameters, and leaves every reported bound to the full network."""

import math

import pytest
import torch

import pyro

from pyrosequence import VHRNN, VRNN
from pyrosequence.training.config import TrainConfig
from pyrosequence.training.rundir import load_run
from pyrosequence.training.loop import train
from pyrosequence.inference import evaluate


def _data():
    torch.manual_seed(0)
    x = (torch.rand(3, 6, 5) < 0.4).float()
    return x, torch.tensor([6, 3, 5])


@pytest.mark.parametrize("cls", [VRNN, VHRNN])
def test_no_rate_no_dropout_layers_and_no_new_parameters(cls):
    plain = cls(5, 4, likelihood="bernoulli", architecture="fivo")
    dropped = cls(5, 4, likelihood="bernoulli", architecture="fivo", dropout=0.3)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    rates = [m.p for m in dropped.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates == [0.3, 0.3]  # one hidden layer in each of phi_x and phi_z
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in dropped.named_parameters()]
    dropped.load_state_dict(plain.state_dict())  # the same weights fit either


@pytest.mark.parametrize("cls", [VRNN, VHRNN])
def test_evaluation_reads_the_full_network(cls):
    """Under evaluate (eval mode) a model with dropout scores exactly as the same weights without."""
    x, lengths = _data()
    plain = cls(5, 4, likelihood="bernoulli")
    dropped = cls(5, 4, likelihood="bernoulli", dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    for bound in ("fivo", "iwae"):
        pyro.set_rng_seed(1)
        a = evaluate(plain, x, lengths, bound, 4)
        pyro.set_rng_seed(1)
        b = evaluate(dropped, x, lengths, bound, 4)
        assert torch.equal(a.log_likelihood, b.log_likelihood)
    assert dropped.training  # evaluate restores the mode it found


def test_training_mode_drops_hidden_units_and_rescales_the_rest():
    """compact features are the hidden layer itself: each unit is 0 or its full value / (1 - p)."""
    x, _ = _data()
    model = VRNN(5, 8, likelihood="bernoulli", dropout=0.25)
    model.eval()
    full = model.phi_x(x)
    model.train()
    torch.manual_seed(2)
    dropped = model.phi_x(x)
    on = full != 0
    ratio = dropped[on] / full[on]
    kept = torch.isclose(ratio, torch.tensor(1 / 0.75))
    assert bool((kept | (ratio == 0)).all())
    # the share dropped is p within a binomial tolerance (4 standard deviations)
    n = int(on.sum())
    share = 1 - float(kept.float().mean())
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)


@pytest.mark.parametrize("rate", [1.0, -0.1, True, "0.2"])
def test_bad_rates_are_refused_naming_dropout(rate):
    with pytest.raises(ValueError, match="dropout must be a rate in \\[0, 1\\)"):
        VRNN(5, 4, dropout=rate)


@pytest.mark.parametrize("compile", [False, True])
def test_train_with_dropout_through_model_options(tmp_path, compile):
    config = TrainConfig(epochs=1, z_dim=4, batch_size=64, eval_particles=2, lr=3e-3, objective="fivo", particles=2,
                         model_options={"architecture": "fivo", "dropout": 0.2}, compile=compile)
    result = train(config, out=tmp_path / "run", progress=False, log=lambda s: None)
    assert math.isfinite(result.test["per_timestep"])
    model = load_run(result.run_dir, "test")[1]  # rebuilt from config.json with its dropout, in eval mode
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.2, 0.2]
    assert not model.training
