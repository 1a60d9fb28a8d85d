"""Flattened (the flat construction around any model) and SRNN-flat / SRNN-hier."""

import pytest
import torch

import pyro.poutine as poutine

from pyrosequence.training.config import TrainConfig
from pyrosequence.inference import evaluate
from pyrosequence.models import MODELS
from pyrosequence.models.autoregressive_rnn import FRNN
from pyrosequence.models.flattened import Flattened
from pyrosequence.models.srnn_variants import SRNNFlat, SRNNHier


def test_flattened_deterministic_model_is_exact_per_original_sequence_and_step():
    inner = FRNN(2, 5)
    model = Flattened(inner, 6)
    x = (torch.rand(4, 5, 6) < 0.4).float()
    lengths = torch.tensor([5, 2, 1, 4])
    with torch.no_grad():
        exact = evaluate(inner, x.reshape(4, 15, 2), lengths * 3, bound="elbo").log_likelihood
        for bound in ("elbo", "iwae", "fivo"):
            result = evaluate(model, x, lengths, bound=bound, num_particles=2)
            torch.testing.assert_close(result.log_likelihood, exact)
            assert result.num_steps.tolist() == [5, 2, 1, 4]  # per original step


def test_srnn_flat_sites_and_bounds():
    model = SRNNFlat(6, 2, group=2, hidden_dim=4)
    x = (torch.rand(3, 4, 6) < 0.4).float()
    lengths = torch.tensor([4, 2, 3])
    guide = poutine.trace(model.guide).get_trace(x, lengths)
    latents = [n for n, s in guide.nodes.items() if s["type"] == "sample" and n.startswith("z_")]
    assert latents == [f"z_{j}" for j in range(12)]  # one latent per group of 2 elements
    trace = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x, lengths)
    assert trace.nodes["x"]["fn"].event_shape == (12, 2)
    assert model.final_state is not None and model.final_state is model.inner.final_state
    with torch.no_grad():
        for bound in ("elbo", "iwae", "fivo"):
            result = evaluate(model, x, lengths, bound=bound, num_particles=3)
            assert result.log_likelihood.shape == (3,) and torch.isfinite(result.log_likelihood).all()


def test_srnn_hier_has_an_autoregressive_output():
    model = SRNNHier(4, 2, hidden_dim=4)
    assert model.output == "hier-rnn" and type(model.decoder_head).__name__ == "AutoregressiveHead"


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="multiple of the inner model's x_dim = 4"):
        Flattened(FRNN(4), 6)
    with pytest.raises(ValueError, match="group \\(U\\) must be an integer between 1 and x_dim = 6, got 7"):
        SRNNFlat(6, 2, group=7)
    with pytest.raises(ValueError, match="group \\(U\\)"):
        SRNNFlat(6, 2, group=0)
    with pytest.raises(TypeError, match="wraps a SequenceModel"):
        Flattened(torch.nn.Linear(2, 2), 4)
    with pytest.raises(ValueError, match="binary"):
        SRNNFlat(4, 2).prepare(torch.full((1, 2, 4), 0.5))


@pytest.mark.parametrize("name", ["srnn-hier", "srnn-flat"])
def test_registered_and_configurable(name):
    assert name in MODELS
    config = TrainConfig(model=name, data="synthetic", z_dim=2, model_options={"hidden_dim": 4})
    assert config.model_options["likelihood"] == "gaussian"


def test_windows_continue_the_inner_state():
    """Truncated backpropagation: window 1 then window 2 from its final state = the whole sequence."""
    model = Flattened(FRNN(3, 5), 6)
    x = (torch.rand(2, 6, 6) < 0.5).float()

    def log_p(*args, **kwargs):
        return poutine.trace(model.model).get_trace(*args, **kwargs).log_prob_sum()

    with torch.no_grad():
        whole = log_p(x)
        first = log_p(x[:, :4])
        state = model.final_state
        assert model.initial_state(torch.Size([2]), x)[0].shape == state[0].shape
        second = log_p(x[:, 4:], initial=state, start=4)
    torch.testing.assert_close(first + second, whole)
