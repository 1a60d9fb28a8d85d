"""Scoring rules of pyrosequence.diagnostics.forecast_scores: CRPS against the Gaussian closed form,
coverage and the errors of the median exact on hand-made forecasts."""

import math

import pytest
import torch

from pyrosequence.diagnostics.forecast_scores import (
    coverage_name,
    covered,
    crps,
    crps_gaussian,
    interval,
    median,
    pointwise_scores,
    score_by_step,
)

CASES = [  # (mu, sigma, y)
    (0.0, 1.0, 0.0),
    (1.0, 2.0, -1.5),
    (-3.0, 0.5, -2.2),
    (0.0, 1.0, 4.0),
]


def test_crps_gaussian_is_the_integral_of_the_squared_cdf_difference():
    """The closed form equals the definition CRPS = int (F(x) - 1{x >= y})^2 dx (trapezoid rule
    on fine grids below and above y over mu +- 12 sigma, float64)."""
    for mu, sigma, y in CASES:
        normal = torch.distributions.Normal(torch.tensor(mu, dtype=torch.float64), sigma)
        below = torch.linspace(min(mu - 12 * sigma, y - 1), y, 200_001, dtype=torch.float64)  # split at y: no jump inside
        above = torch.linspace(y, max(mu + 12 * sigma, y + 1), 200_001, dtype=torch.float64)
        integral = torch.trapezoid(normal.cdf(below) ** 2, below) + torch.trapezoid((1 - normal.cdf(above)) ** 2, above)
        closed = crps_gaussian(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64),
                               torch.tensor(y, dtype=torch.float64))
        assert closed.item() == pytest.approx(integral.item(), abs=1e-6)
    # known value: y = mu gives sigma (sqrt(2) - 1) / sqrt(pi)
    assert crps_gaussian(0.0, 2.0, 0.0).item() == pytest.approx(2 * (math.sqrt(2) - 1) / math.sqrt(math.pi), rel=1e-6)
    # std 0 is the point forecast: the absolute error
    assert crps_gaussian(1.0, 0.0, 3.5).item() == pytest.approx(2.5)


def test_crps_of_many_gaussian_draws_matches_the_closed_form_within_its_monte_carlo_error():
    """``crps_empirical`` on S draws of N(mu, sigma) estimates E|X - y| - E|X - X'| / 2 with the
    empirical distribution, so its mean is CRPS + E|X - X'| / (2 S) = CRPS + sigma / (S sqrt(pi))
    (the i = j pairs of the V-statistic are zero). Its standard deviation is at most
    sd(A) + sd(B) with A = mean_i |X_i - y|, sd(A) <= sqrt((sigma^2 + (mu - y)^2) / S), and
    B = half the V-statistic of |X - X'|, whose U-statistic variance is 4 (S - 2) zeta_1 / (S (S - 1))
    + 2 zeta_2 / (S (S - 1)) with zeta_1 = Var E[|X - X'| | X] <= Var X = sigma^2 (a 1-Lipschitz
    function of X) and zeta_2 = Var|X - X'| <= 2 sigma^2, so sd(B) <= sigma sqrt((1 + 1 / (S - 1)) / S).
    The estimate must lie within 5 of those bounds of the biased mean (and the bias is checked to
    matter less than the tolerance, so the test also holds without it)."""
    S = 200_000
    generator = torch.Generator().manual_seed(0)
    for mu, sigma, y in CASES:
        draws = mu + sigma * torch.randn(S, generator=generator, dtype=torch.float64)
        estimate = crps(draws.unsqueeze(-1), torch.tensor([y], dtype=torch.float64)).item()
        exact = crps_gaussian(mu, sigma, y).item()
        bias = sigma / (S * math.sqrt(math.pi))
        sd = math.sqrt((sigma ** 2 + (mu - y) ** 2) / S) + sigma * math.sqrt((1 + 1 / (S - 1)) / S)
        assert abs(estimate - (exact + bias)) <= 5 * sd, (mu, sigma, y, estimate, exact, sd)
        assert bias < 0.01 * sd


def test_crps_exact_on_a_small_set_of_draws():
    draws = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64).reshape(5, 1)
    # E|X - 1| = 7/5; E|X - X'| over the 25 ordered pairs = 40/25; CRPS = 1.4 - 0.8
    assert crps(draws, torch.tensor([1.0], dtype=torch.float64)).item() == pytest.approx(0.6)
    # one draw: the absolute error
    assert crps(torch.tensor([[2.0]]), torch.tensor([5.0])).item() == pytest.approx(3.0)


def test_median_interval_and_coverage_exact_on_hand_made_draws():
    draws = torch.tensor([4.0, 0.0, 3.0, 1.0, 2.0], dtype=torch.float64).reshape(5, 1)
    assert median(draws).item() == 2.0
    assert median(torch.tensor([[0.0], [1.0], [5.0], [7.0]])).item() == 3.0  # mean of the middle two
    # linear quantiles of 0..4: q -> 4 q
    for level, (lo, hi) in {0.5: (1.0, 3.0), 0.8: (0.4, 3.6), 0.95: (0.1, 3.9)}.items():
        a, b = interval(draws, level)
        assert (a.item(), b.item()) == pytest.approx((lo, hi))
    truth = torch.tensor
    assert covered(draws, truth([1.0], dtype=torch.float64), 0.5).item()          # an end is inside
    assert not covered(draws, truth([3.7], dtype=torch.float64), 0.8).item()
    assert covered(draws, truth([3.7], dtype=torch.float64), 0.95).item()
    assert not covered(draws, truth([0.05], dtype=torch.float64), 0.95).item()


def test_score_by_step_exact_on_hand_made_forecasts():
    """Two windows, three horizon steps, one feature; the draws of every value are 0..4 shifted by
    a known amount, so the median, the intervals and the hits are known."""
    base = torch.arange(5, dtype=torch.float64)  # median 2, 50 % [1, 3], 80 % [0.4, 3.6], 95 % [0.1, 3.9]
    shift = torch.tensor([[0.0, 10.0, -5.0], [1.0, 0.0, 2.0]], dtype=torch.float64)      # (W, H)
    samples = (base.reshape(5, 1, 1) + shift).unsqueeze(-1)                                  # (S, W, H, D=1)
    offset = torch.tensor([[1.0, 0.0, 3.7], [-2.5, 0.5, 1.9]], dtype=torch.float64)         # truth - shift
    truth = (shift + offset).unsqueeze(-1)
    out = score_by_step(samples, truth)
    err = (2.0 - offset)  # median - truth, relative to the shift
    assert out["mae"].tolist() == pytest.approx(err.abs().mean(0).tolist() + [err.abs().mean().item()])
    assert out["rmse"].tolist() == pytest.approx((err ** 2).mean(0).sqrt().tolist() + [(err ** 2).mean().sqrt().item()])
    # hits: 50 % [1, 3]: offsets 1 (yes), 0 (no), 3.7 (no), -2.5 (no), 0.5 (no), 1.9 (yes)
    assert out["coverage_50"].tolist() == pytest.approx([0.5, 0.0, 0.5, 2 / 6])
    # 80 % [0.4, 3.6]: yes, no, no, no, yes, yes
    assert out["coverage_80"].tolist() == pytest.approx([0.5, 0.5, 0.5, 3 / 6])
    # 95 % [0.1, 3.9]: yes, no, yes, no, yes, yes
    assert out["coverage_95"].tolist() == pytest.approx([0.5, 0.5, 1.0, 4 / 6])
    exact = [[crps(base.reshape(5, 1), torch.tensor([o], dtype=torch.float64)).item() for o in row] for row in offset.tolist()]
    per_step = torch.tensor(exact).mean(0)
    assert out["crps"].tolist() == pytest.approx(per_step.tolist() + [torch.tensor(exact).mean().item()])
    assert out["count"].tolist() == [2, 2, 2, 6]
    # a missing truth (NaN) is left out: the scores are those of the observed values alone
    gappy = truth.clone()
    gappy[1, 0, 0] = float("nan")
    part = score_by_step(samples, gappy)
    assert part["count"].tolist() == [1, 2, 2, 5]
    assert part["crps"][0].item() == pytest.approx(exact[0][0])
    assert part["crps"][-1].item() == pytest.approx((torch.tensor(exact).sum() - exact[1][0]).item() / 5)
    assert part["coverage_50"].tolist() == pytest.approx([1.0, 0.0, 0.5, 2 / 5])


def test_pointwise_scores_names_and_bad_shapes():
    samples, truth = torch.zeros(3, 2, 4, 1), torch.zeros(2, 4, 1)
    assert set(pointwise_scores(samples, truth)) == {"crps", "abs_error", "sq_error", "coverage_50", "coverage_80", "coverage_95"}
    assert coverage_name(0.975) == "coverage_97.5"
    with pytest.raises(ValueError, match="samples must be"):
        score_by_step(torch.zeros(3, 2, 5, 1), truth)
    with pytest.raises(ValueError, match="levels"):
        pointwise_scores(samples, truth, levels=[1.5])
