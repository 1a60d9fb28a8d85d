"""Per-step dynamics, the dynamics plot, and the `pyrosequence plot` command."""

import pytest
import torch
from torch.distributions import kl_divergence

import pyro
import pyro.poutine as poutine

from pyrosequence import VHRNN, HyperLSTM, LinearGaussianSSM
from pyrosequence.cli import main
from pyrosequence.data.synthetic import regime_changes
from pyrosequence.diagnostics import plot_dynamics, step_dynamics


def test_step_dynamics_matches_a_direct_computation():
    m = LinearGaussianSSM(2, 2)
    x = m.sample(1, 6)[0]
    pyro.set_rng_seed(3)
    dyn = step_dynamics(m, x, num_samples=1)
    pyro.set_rng_seed(3)
    with pyro.plate("samples", 1, dim=-2):
        guide_trace = poutine.trace(m.guide).get_trace(x[None])
    z = torch.stack([guide_trace.nodes[f"z_{t}"]["value"][0, 0] for t in range(6)])
    with torch.no_grad():
        assert torch.allclose(dyn.mean, z @ m.observation_matrix.T, atol=1e-5)
        expected_var = (2 * m.log_observation_scale).exp().log().expand(6, 2)
        assert torch.allclose(dyn.log_variance, expected_var, atol=1e-5)
        kl0 = kl_divergence(m.proposal(torch.zeros(1, 2), 0, x[:1]), m.transition(torch.zeros(1, 2), 0))
    assert torch.allclose(dyn.kl[0], kl0[0], atol=1e-5)
    assert torch.allclose(dyn.l2, (dyn.mean - x).norm(dim=-1))
    assert (dyn.kl >= 0).all()


def test_deterministic_model_has_zero_kl_and_bad_input():
    dyn = step_dynamics(HyperLSTM(2, 4, likelihood="gaussian"), torch.randn(5, 2))
    assert torch.all(dyn.kl == 0) and dyn.mean.shape == (5, 2)
    with pytest.raises(ValueError, match="one sequence"):
        step_dynamics(HyperLSTM(2, 4), torch.randn(1, 5, 2))


def test_autoregressive_outputs_get_monte_carlo_moments():
    """An autoregressive output has no closed-form mean: step_dynamics estimates it by sampling
    (16 guide draws x 16 emission draws per step). With one element per step the exact mean is
    the Bernoulli probability, computed here by running the model's pieces by hand."""
    from pyrosequence import RNNHier

    model = RNNHier(1, hidden_dim=3)
    x = (torch.rand(7, 1) < 0.5).float()
    pyro.set_rng_seed(0)
    result = step_dynamics(model, x)
    state, exact = model.initial_state(torch.Size([1]), x), []
    with torch.no_grad():
        for t in range(7):
            exact.append(model.emission(state, None).log_prob(torch.ones(1, 1)).exp())
            state = model.update(state, None, x[t : t + 1], t)
    exact = torch.cat(exact)
    tolerance = 5 * (exact * (1 - exact) / 256).sqrt() + 1e-6
    assert bool(((result.mean[:, 0] - exact).abs() <= tolerance).all()), (result.mean[:, 0], exact)
    assert bool(torch.isfinite(result.log_variance).all())


def test_plot_dynamics_writes_a_png(tmp_path):
    x = torch.randn(12, 2)
    curves = {"VHRNN": step_dynamics(VHRNN(2, 3, omega_dim=4), x), "HyperLSTM": step_dynamics(HyperLSTM(2, 3, likelihood="gaussian"), x)}
    path = plot_dynamics(curves, tmp_path / "d.png", "title", change_points=[4, 8])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_regime_changes_of_the_synthetic_data():
    assert regime_changes("switch", 0) == [33, 66]
    assert len(regime_changes("train", 5)) == 2
    assert regime_changes("noiseless", 0) == []
    with pytest.raises(ValueError, match="out of range"):
        regime_changes("test", 100)


def test_plot_command(tmp_path, capsys):
    runs = []
    for model, extra in (("vrnn", []), ("vhrnn", ["--omega-dim", "4"])):
        out = tmp_path / model
        assert main(["train", "--model", model, "--z-dim", "3", *extra, "--epochs", "1", "--train-subset", "32",
                     "--eval-particles", "2", "--no-progress", "--out", str(out)]) == 0
        runs.append(str(out))
    png = tmp_path / "switch.png"
    assert main(["plot", *runs, "--kind", "dynamics", "--setting", "switch", "--index", "2", "--samples", "2",
                 "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000
    capsys.readouterr()
    assert main(["plot", runs[0], "--out", str(png)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["plot", runs[0], "--index", "1000", "--out", str(tmp_path / "x.png")]) == 1
    assert "out of range" in capsys.readouterr().err
    assert main(["plot", runs[0], "--kind", "violin", "--out", str(tmp_path / "y.png")]) == 1
    assert "unknown plot kind 'violin'" in capsys.readouterr().err
