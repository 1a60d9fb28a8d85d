"""Resamplers: unbiased ancestor counts (histogram test with variance-derived tolerance) and edge cases."""

import pytest
import torch

from pyrosequence.inference import RESAMPLERS, get_resampler

NAMES = sorted(RESAMPLERS)


def _counts(ancestors: torch.Tensor, k: int) -> torch.Tensor:
    return torch.zeros(ancestors.shape[:-1] + (k,)).scatter_add_(-1, ancestors, torch.ones(ancestors.shape))


@pytest.mark.parametrize("name", NAMES)
def test_ancestor_counts_average_k_times_the_weights(name):
    torch.manual_seed(0)
    k, reps = 6, 4000
    probs = torch.tensor([[0.02, 0.08, 0.1, 0.2, 0.25, 0.35], [0.5, 0.3, 0.1, 0.05, 0.04, 0.01]])
    log_w = probs.log().expand(reps, 2, k)  # 4000 independent draws for each of two filters at once
    counts = _counts(get_resampler(name)(log_w), k)  # (reps, 2, k)
    assert torch.all(counts.sum(-1) == k)
    mean, se = counts.mean(0), counts.std(0) / reps**0.5
    # systematic/residual have near-zero variance on some particles; keep a floor on the tolerance
    assert torch.all((mean - k * probs).abs() <= 5 * se + 1e-3), (mean, k * probs, se)


@pytest.mark.parametrize("name", NAMES)
def test_one_particle_carrying_all_the_mass(name):
    log_w = torch.full((3, 5), -float("inf"))
    log_w[:, 2] = 0.0
    assert torch.all(get_resampler(name)(log_w) == 2)


@pytest.mark.parametrize("name", ["systematic", "stratified", "residual"])
def test_equal_weights_keep_every_particle_once_for_low_variance_schemes(name):
    log_w = torch.zeros(4, 7)
    counts = _counts(get_resampler(name)(log_w), 7)
    assert torch.all(counts == 1)


def test_equal_weights_multinomial_is_uniform():
    torch.manual_seed(1)
    counts = _counts(get_resampler("multinomial")(torch.zeros(5000, 4)), 4)
    assert torch.all((counts.mean(0) - 1).abs() < 5 * counts.std(0) / 5000**0.5)


@pytest.mark.parametrize("name", NAMES)
def test_float32_weights_with_large_magnitudes(name):
    """Log-weights around -1e4 in float32 (typical of long sequences) resample like their softmax."""
    torch.manual_seed(2)
    log_w = torch.tensor([-1e4, -1e4 + 1.0, -1e4 + 2.0], dtype=torch.float32).expand(3000, 3)
    ancestors = get_resampler(name)(log_w)
    assert ancestors.dtype == torch.long and ancestors.shape == (3000, 3)
    assert ancestors.min() >= 0 and ancestors.max() <= 2
    counts = _counts(ancestors, 3)
    expected = 3 * torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    assert torch.all((counts.mean(0) - expected).abs() < 5 * counts.std(0) / 3000**0.5 + 1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_are_kept_and_no_gradient_flows(name):
    log_w = torch.randn(2, 3, 4, requires_grad=True)
    ancestors = get_resampler(name)(log_w)
    assert ancestors.shape == (2, 3, 4) and not ancestors.requires_grad


def test_residual_keeps_the_deterministic_copies():
    log_w = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log()  # K w = (2, 1, 0.5, 0.5)
    for _ in range(50):
        counts = _counts(get_resampler("residual")(log_w), 4)[0]
        assert counts[0] >= 2 and counts[1] >= 1 and counts.sum() == 4


def test_unknown_resampler_and_custom_function():
    with pytest.raises(ValueError, match="unknown resampler 'bootstrap'.*multinomial, residual, stratified, systematic"):
        get_resampler("bootstrap")

    def keep(log_weights):
        return torch.arange(log_weights.shape[-1]).expand(log_weights.shape)

    assert get_resampler(keep) is keep
    with pytest.raises(ValueError, match="K >= 1"):
        get_resampler("multinomial")(torch.zeros(3, 0))
