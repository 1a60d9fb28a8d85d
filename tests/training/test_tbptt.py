"""Truncated backpropagation through time: windows that continue a sequence from a carried state."""

import pytest
import torch

import pyro
import pyro.poutine as poutine

from pyrosequence import VRNN, VHRNN, LinearGaussianSSM
from pyrosequence.training.config import TrainConfig
from pyrosequence.inference import FIVO, log_importance_weights
from pyrosequence.training.loop import _windows, train


@pytest.mark.parametrize("make", [lambda: LinearGaussianSSM(2, 2), lambda: VRNN(2, 3, likelihood="gaussian"),
                                  lambda: VHRNN(2, 3, omega_dim=4)])
def test_two_windows_with_the_carried_state_equal_the_whole_sequence(make):
    """Same draws, same joint density: the windows' log-weights add up to the whole sequence's."""
    m = make()
    x = torch.randn(3, 8, 2)
    with torch.no_grad():
        pyro.set_rng_seed(0)
        whole = log_importance_weights(m, m.prepare(x), 1)
        pyro.set_rng_seed(0)
        first = log_importance_weights(m, m.prepare(x[:, :5]), 1)
        carried = m.final_state
        second_seqs = m.prepare(x[:, 5:])
        # continue from the carried state (the model's own programs take initial/start)
        with pyro.plate("particles", 1, dim=-2):
            guide_trace = poutine.trace(m.guide).get_trace(second_seqs.x, None, carried, 5)
            model_trace = poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(
                second_seqs.x, None, carried, 5
            )
        second = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
    assert torch.allclose(first.sum() + second, whole.sum(), rtol=1e-5)


def test_fivo_windows_start_from_the_carried_particle():
    m = VRNN(2, 3, likelihood="gaussian")
    x = torch.randn(4, 6, 2)
    fivo = FIVO(5)
    fivo.loss(m.model, m.guide, x)
    state = m.final_state
    assert state[0].shape == (4, m.hidden_dim)
    loss = fivo.loss(m.model, m.guide, x, None, state, 6)
    assert torch.isfinite(torch.tensor(loss))


def test_the_filter_result_carries_the_state_a_next_window_starts_from():
    """FilterResult.final_state: one particle per sequence, the state the model is left with; a
    second window started from it scores the same as one started from the model's attribute."""
    from pyrosequence.inference import particle_filter
    from pyrosequence.inference.resamplers import get_resampler

    m = VRNN(2, 3, likelihood="gaussian")
    x = torch.randn(4, 6, 2)
    pyro.set_rng_seed(0)
    result = particle_filter(m, m.prepare(x[:, :3]), 5, get_resampler("multinomial"), 0.5)
    assert result.final_state is m.final_state and result.final_state[0].shape == (4, m.hidden_dim)
    pyro.set_rng_seed(1)
    again = particle_filter(m, m.prepare(x[:, 3:]), 5, get_resampler("multinomial"), 0.5,
                            initial=result.final_state, start=3)
    assert again.log_z.shape == (4,) and torch.isfinite(again.log_z).all()


def test_windows_cover_every_step_once():
    x = torch.arange(5 * 7).reshape(5, 7, 1).float()
    lengths = torch.tensor([7, 3, 5, 1, 6])
    seen = torch.zeros(5, 7)
    alive = torch.arange(5)
    for start, rows, x_w, l_w in _windows(x, lengths, 3):
        alive = alive if rows is None else alive[rows]
        for i, b in enumerate(alive.tolist()):
            seen[b, start : start + int(l_w[i])] += 1
            assert torch.equal(x_w[i, : int(l_w[i]), 0], x[b, start : start + int(l_w[i]), 0])
    assert torch.equal(seen, (torch.arange(7) < lengths[:, None]).float())


@pytest.mark.parametrize("objective", ["elbo", "fivo"])
def test_training_with_tbptt(tmp_path, objective):
    config = TrainConfig(z_dim=3, epochs=2, batch_size=64, tbptt=30, objective=objective, particles=2,
                         eval_particles=2, train_subset=128)
    result = train(config, out=tmp_path / "run", progress=False, log=lambda s: None)
    # 2 batches x 4 windows (100 steps in windows of 30) per epoch
    assert result.steps == 2 * 2 * 4
    assert result.history[-1]["train_loss_per_step"] < result.history[0]["train_loss_per_step"]


def test_a_window_longer_than_the_sequences_is_the_plain_run(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    plain = train(TrainConfig(z_dim=3, epochs=1, train_subset=64, eval_particles=2), out=tmp_path / "a", **quiet)
    windowed = train(TrainConfig(z_dim=3, epochs=1, train_subset=64, eval_particles=2, tbptt=500), out=tmp_path / "b", **quiet)
    assert plain.history[0]["train_loss_per_step"] == windowed.history[0]["train_loss_per_step"]
    with pytest.raises(ValueError, match="tbptt must be a positive integer"):
        TrainConfig(tbptt=0)
