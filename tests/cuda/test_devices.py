"""The CPU-runnable side of the CUDA tests (tests/cuda/test_cuda.py):

* data on another device than the model is refused in one line naming both devices, checked
  here with PyTorch's ``meta`` device (no memory, no values) standing in for a GPU;
* :class:`cpu_draws.DrawsOnCpu`, the tool that gives a GPU run the CPU's draws, redirects every
  draw of the particle filter and the bounds and changes nothing else: with the CPU as its target
  a run equals a plain run number for number, and with a device nothing lives on it stays out of
  the way.
"""

from __future__ import annotations

import pytest
import torch

import pyro

from cpu_draws import DrawsOnCpu
from pyrosequence import VRNN
from pyrosequence.inference import FIVO, evaluate, make_objective


def _data():
    x = (torch.rand(3, 5, 4) < 0.4).float()
    return x, torch.tensor([5, 2, 4])


@pytest.mark.parametrize("where", ["model-elsewhere", "data-elsewhere"])
def test_data_on_another_device_than_the_model_is_refused_in_one_line(where):
    model = VRNN(4, 3)
    x, lengths = _data()
    if where == "model-elsewhere":
        model = model.to("meta")
        pattern = r"^x is on device cpu but VRNN is on meta: move the data with x.to\('meta'\) \(or the model with model.to\('cpu'\)\)"
    else:
        x = x.to("meta")
        pattern = r"^x is on device meta but VRNN is on cpu: move the data with x.to\('cpu'\)"
    for call, one_line in (
        (lambda: model.prepare(x, lengths), True),
        (lambda: evaluate(model, x, lengths, "fivo", 2), True),
        (lambda: FIVO(2).loss(model.model, model.guide, x, lengths), True),
        # Pyro's traces append the trace's shapes to any error raised inside a model
        (lambda: make_objective("elbo").loss(model.model, model.guide, x, lengths), False),
    ):
        with pytest.raises(ValueError, match=pattern) as error:
            call()
        assert "\n" not in str(error.value) or not one_line


def test_lengths_may_stay_on_the_cpu():
    """Only x must be on the model's device; lengths are moved to it (as before)."""
    model = VRNN(4, 3)
    x, lengths = _data()
    seqs = model.prepare(x, lengths)
    assert seqs.lengths.device == x.device


def _run(model, x, lengths):
    pyro.set_rng_seed(3)
    result = FIVO(3, ess_threshold=0.8).filter(model.model, model.guide, x, lengths)
    iwae = evaluate(model, x, lengths, "iwae", 4).log_likelihood
    seeded = evaluate(model, x, lengths, "fivo", 4, seed=5).log_likelihood
    loss = make_objective("iwae", 3).loss(model.model, model.guide, x, lengths)
    extra = (torch.empty(2, 3).normal_(), torch.rand(4), torch.bernoulli(torch.full((3,), 0.5)),
             torch.multinomial(torch.ones(5), 3, replacement=True))
    return (result.log_z, result.resampled, iwae, seeded, torch.tensor(loss), *extra)


@pytest.mark.parametrize("target", ["cpu", "meta"])
def test_cpu_draws_redirect_every_draw_and_change_nothing_else(target):
    model = VRNN(4, 3, architecture="fivo")
    x, lengths = _data()
    plain = _run(model, x, lengths)
    assert bool(plain[1].any())  # the filter resampled: multinomial draws were made too
    with DrawsOnCpu(target) as draws:
        redirected = _run(model, x, lengths)
    for a, b in zip(plain, redirected):
        assert a.device == b.device and torch.equal(a, b)
    if target == "cpu":
        # FIVO: 5 proposal draws and the resampling draws; the bounds, IWAE and the 4 extra draws
        assert draws.count >= 5 + 5 + 5 + 5 + 4
    else:
        assert draws.count == 0  # nothing lives on the meta device: every draw ran unchanged
