"""to_inference_data: groups, dims, shapes, masking, per-step bounds, and ArviZ on the result."""

import math

import matplotlib

matplotlib.use("Agg")

import arviz as az
import numpy as np
import pytest
import torch

import pyro

from pyrosequence import HyperLSTM, LinearGaussianSSM
from pyrosequence.diagnostics import to_inference_data
from pyrosequence.diagnostics.step_bounds import step_log_likelihood, step_log_weights
from pyrosequence.inference.evaluate import log_importance_weights

LENGTHS = torch.tensor([7, 5, 3, 7])


@pytest.fixture
def lgssm_data():
    model = LinearGaussianSSM(2, 3)
    return model, model.sample(4, 7), LENGTHS


def test_groups_dims_and_shapes(lgssm_data):
    model, x, lengths = lgssm_data
    idata = to_inference_data(model, x, lengths, num_samples=6, num_particles=8, prefix_len=4, horizon=3,
                              feature_names=["a", "b"])
    assert set(idata.groups()) == {"posterior", "posterior_predictive", "log_likelihood", "observed_data",
                                   "constant_data", "filter_stats"}
    expected = {
        ("posterior", "z"): (("chain", "draw", "sequence", "time", "latent"), (1, 6, 4, 7, 3)),
        ("posterior_predictive", "x"): (("chain", "draw", "sequence", "time", "feature"), (1, 6, 4, 7, 2)),
        ("posterior_predictive", "x_forecast"): (("chain", "draw", "sequence", "horizon", "feature"), (1, 6, 4, 3, 2)),
        ("log_likelihood", "x"): (("chain", "draw", "sequence", "time"), (1, 1, 4, 7)),
        ("log_likelihood", "x_sequence"): (("chain", "draw", "sequence"), (1, 1, 4)),
        ("observed_data", "x"): (("sequence", "time", "feature"), (4, 7, 2)),
        ("constant_data", "lengths"): (("sequence",), (4,)),
        ("constant_data", "prefix_lengths"): (("sequence",), (4,)),
        ("filter_stats", "ess"): (("sequence", "time"), (4, 7)),
        ("filter_stats", "resampled"): (("sequence", "time"), (4, 7)),
        ("filter_stats", "predictive_mean"): (("sequence", "time", "feature"), (4, 7, 2)),
        ("filter_stats", "predictive_variance"): (("sequence", "time", "feature"), (4, 7, 2)),
    }
    for (group, name), (dims, shape) in expected.items():
        value = idata[group][name]
        assert value.dims == dims and value.shape == shape, (group, name)
    assert list(idata.observed_data.feature.values) == ["a", "b"]
    assert idata.constant_data.prefix_lengths.values.tolist() == [4, 4, 3, 4]
    assert idata.filter_stats.attrs["bound"] == "fivo" and idata.filter_stats.attrs["num_particles"] == 8
    # NaN exactly beyond each sequence's length, finite within it
    valid = (np.arange(7)[None] < lengths.numpy()[:, None])
    for group, name in (("posterior", "z"), ("posterior_predictive", "x"), ("observed_data", "x"),
                        ("log_likelihood", "x"), ("filter_stats", "ess"), ("filter_stats", "predictive_variance")):
        values = idata[group][name].transpose("sequence", "time", ...).values
        assert np.all(np.isnan(values[~valid])) and np.all(np.isfinite(values[valid])), (group, name)
    np.testing.assert_allclose(idata.observed_data.x.values[valid], x.numpy()[valid], rtol=1e-6)
    np.testing.assert_allclose(idata.log_likelihood.x_sequence.values[0, 0],
                               np.nansum(idata.log_likelihood.x.values[0, 0], -1))


def test_fivo_log_likelihood_approaches_the_exact_one():
    model = LinearGaussianSSM(1, 1, proposal="prior")
    x = model.sample(3, 6)
    pyro.set_rng_seed(1)
    idata = to_inference_data(model, x, num_samples=2, num_particles=3000)
    exact = model.exact_log_prob(x).detach().numpy()
    np.testing.assert_allclose(idata.log_likelihood.x_sequence.values[0, 0], exact, atol=0.1)


def test_importance_bounds_split_by_step_sum_to_the_bound(lgssm_data):
    model, x, lengths = lgssm_data
    seqs = model.prepare(x, lengths)
    pyro.set_rng_seed(5)
    per_step = step_log_weights(model, seqs, 6)
    pyro.set_rng_seed(5)
    whole = log_importance_weights(model, seqs, 6)
    assert torch.allclose(per_step.sum(-1), whole, atol=1e-4)
    assert torch.all(per_step[:, ~seqs.mask] == 0)
    pyro.set_rng_seed(5)
    iwae = step_log_likelihood(model, seqs, "iwae", 6)
    assert torch.allclose(iwae.sum(-1), whole.logsumexp(0) - math.log(6), atol=1e-4)
    pyro.set_rng_seed(5)
    elbo = step_log_likelihood(model, seqs, "elbo", 6)
    assert torch.allclose(elbo.sum(-1), whole.mean(0), atol=1e-4)
    with pytest.raises(ValueError, match="unknown importance bound"):
        step_log_likelihood(model, seqs, "fivo", 6)


def test_deterministic_model_every_bound_is_the_exact_likelihood():
    model = HyperLSTM(2, 4, likelihood="gaussian")
    x = torch.randn(3, 5, 2)
    lengths = torch.tensor([5, 2, 4])
    per_bound = {}
    for bound in ("fivo", "iwae", "elbo"):
        idata = to_inference_data(model, x, lengths, num_samples=4, num_particles=3, bound=bound)
        assert "posterior" not in idata.groups()
        per_bound[bound] = idata.log_likelihood.x.values
    np.testing.assert_allclose(per_bound["fivo"], per_bound["iwae"], rtol=1e-5)
    np.testing.assert_allclose(per_bound["fivo"], per_bound["elbo"], rtol=1e-5)
    with torch.no_grad():  # the exact log-likelihood of each sequence from the model's own trace
        trace = pyro.poutine.trace(model.model).get_trace(x, lengths)
        exact = trace.nodes["x"]["fn"].log_prob(model.prepare(x, lengths).x)
    np.testing.assert_allclose(np.nansum(per_bound["elbo"][0, 0], -1), exact.numpy(), rtol=1e-4)


def test_latents_from_the_filter_and_arviz_runs_on_it(lgssm_data):
    model, x, lengths = lgssm_data
    idata = to_inference_data(model, x, lengths, num_samples=5, num_particles=4, bound="iwae", latents="filter")
    assert idata.posterior.z.shape == (1, 5, 4, 7, 3)
    summary = az.summary(idata, var_names=["z"], kind="stats")
    assert len(summary) == 4 * 7 * 3 and np.isfinite(summary["mean"].values).sum() == int(lengths.sum()) * 3
    axes = az.plot_ppc(idata, var_names=["x"], num_pp_samples=3, random_seed=0)
    assert np.size(axes) >= 1
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(bound="renyi"), "unknown bound 'renyi'"),
        (dict(latents="smoother"), "unknown latent source 'smoother'"),
        (dict(prefix_len=3), "both prefix_len and horizon"),
        (dict(prefix_len=9, horizon=2), r"prefix_len must be an integer in \[1, 7\]"),
        (dict(num_samples=0), "num_samples must be a positive integer"),
        (dict(feature_names=["a"]), "feature_names has 1 names for 2 features"),
    ],
)
def test_bad_options_are_rejected(lgssm_data, kwargs, message):
    model, x, lengths = lgssm_data
    with pytest.raises(ValueError, match=message):
        to_inference_data(model, x, lengths, **{"num_samples": 2, "num_particles": 2, **kwargs})


def test_missing_arviz_names_the_extra(monkeypatch, lgssm_data):
    import sys

    model, x, lengths = lgssm_data
    monkeypatch.setitem(sys.modules, "arviz", None)  # makes `import arviz` raise ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[diagnostics\]"'):
        to_inference_data(model, x, lengths, num_samples=2, num_particles=2)
