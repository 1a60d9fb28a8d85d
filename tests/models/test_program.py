"""PyroProgram: plain Pyro model/guide pairs get the importance bounds, PSIS, InferenceData,
training and the CLI, and one clear error wherever per-step pieces are needed."""

import math

import pytest
import torch
from torch.distributions import constraints

import pyro
import pyro.distributions as dist
from pyro import poutine

from pyrosequence import LinearGaussianSSM, PiecesRequiredError, PyroProgram, register_model
from pyrosequence.inference import evaluate
from pyrosequence.inference.evaluate import log_importance_weights
from pyrosequence.inference.fivo import FIVO

# The linear-Gaussian state-space model, written the ordinary Pyro way (known parameters):
#   z_0 ~ N(0, I),  z_t ~ N(A z_{t-1}, q^2 I),  x_t ~ N(C z_t, r^2 I)
A = torch.tensor([[0.9, 0.1], [-0.2, 0.7]])
C = torch.tensor([[1.0, 0.5], [0.0, 1.0], [0.3, -0.4]])
Q, R = 0.6, 0.8


def lg_model(x, lengths):
    a = pyro.param("A", A.clone())
    c = pyro.param("C", C.clone())
    q = pyro.param("q", torch.tensor(Q), constraint=constraints.positive)
    r = pyro.param("r", torch.tensor(R), constraint=constraints.positive)
    z = None
    with pyro.plate("sequences", x.shape[0], dim=-1):
        for t in pyro.markov(range(x.shape[1])):
            loc = x.new_zeros(x.shape[0], 2) if z is None else z @ a.T
            with poutine.mask(mask=t < lengths):
                z = pyro.sample(f"z_{t}", dist.Normal(loc, 1.0 if z is None else q).to_event(1))
                pyro.sample(f"x_{t}", dist.Normal(z @ c.T, r).to_event(1), obs=x[:, t])


def lg_guide(x, lengths):
    """The one-step-optimal proposal p(z_t | z_{t-1}, x_t) of the model above (known parameters);
    a learnable shift ``b`` (zero at the start) lets training change the guide."""
    b = pyro.param("b", torch.zeros(2))
    z = None
    with pyro.plate("sequences", x.shape[0], dim=-1):
        for t in pyro.markov(range(x.shape[1])):
            var = 1.0 if z is None else Q**2
            cov = torch.linalg.inv(torch.eye(2) / var + C.T @ C / R**2)
            prior_loc = x.new_zeros(x.shape[0], 2) if z is None else z @ A.T
            loc = (prior_loc / var + x[:, t] @ C / R**2) @ cov + b
            with poutine.mask(mask=t < lengths):
                z = pyro.sample(f"z_{t}", dist.MultivariateNormal(loc, covariance_matrix=cov))


class LGProgram(PyroProgram):
    """The program above as a registrable model (x_dim must be 3)."""

    def __init__(self, x_dim, z_dim=2):
        super().__init__(lg_model, lg_guide, x_dim=x_dim)


def oracle() -> LinearGaussianSSM:
    """The same model as a LinearGaussianSSM, whose exact_log_prob is a Kalman filter (GaussianHMM)."""
    m = LinearGaussianSSM(3, 2)
    with torch.no_grad():
        m.transition_matrix.copy_(A)
        m.observation_matrix.copy_(C)
        m.log_transition_scale.fill_(math.log(Q))
        m.log_observation_scale.fill_(math.log(R))
        m.log_initial_scale.fill_(0.0)
    return m


@pytest.fixture
def data():
    pyro.set_rng_seed(0)
    x = oracle().sample(4, 6)
    return x, torch.tensor([6, 4, 2, 5])


def test_iwae_matches_the_exact_log_likelihood(data):
    x, lengths = data
    exact = oracle().exact_log_prob(x, lengths).detach()
    program = LGProgram(3)
    pyro.set_rng_seed(1)
    k = 20000
    with torch.no_grad():
        log_w = log_importance_weights(program, program.prepare(x, lengths), k)  # (K, B)
    assert log_w.shape == (k, 4)
    iwae = log_w.logsumexp(0) - math.log(k)
    # delta method: sd(log mean w) ~ sd(w) / (sqrt(K) mean(w)), from the empirical weights
    relative = (log_w - log_w.logsumexp(0)).exp() * k
    standard_error = relative.std(0) / math.sqrt(k)
    assert torch.all(standard_error < 0.05)  # the test is sharp: the weights are well behaved
    assert torch.all((iwae - exact).abs() < 5 * standard_error + 1e-3), (iwae, exact, standard_error)
    # elbo <= iwae on the same weights (Jensen), and the gap to the exact answer is far beyond the error
    elbo = log_w.mean(0)
    assert torch.all(elbo < iwae)
    assert torch.all(exact - elbo > 10 * (log_w.std(0) / math.sqrt(k)))

    # evaluate() reports the same thing, per sequence and per time step
    result = evaluate(program, x, lengths, bound="iwae", num_particles=4000, particle_chunk=1000)
    assert result.bound == "iwae" and result.log_likelihood.shape == (4,)
    assert torch.equal(result.num_steps, lengths)
    assert torch.all((result.log_likelihood - exact).abs() < 5 * standard_error * math.sqrt(k / 4000) + 1e-3)
    assert result.per_timestep == pytest.approx(float(result.log_likelihood.sum() / lengths.sum()))
    elbo_result = evaluate(program, x, lengths, bound="elbo", num_particles=2000)
    elbo_error = log_w.std(0) / math.sqrt(2000)
    assert torch.all((elbo_result.log_likelihood - elbo).abs() < 5 * elbo_error)


def test_loop_over_particles_agrees_with_the_vectorized_weights(data):
    x, lengths = data
    looped = PyroProgram(lg_model, lg_guide, x_dim=3, vectorize_particles=False)
    vectorized = PyroProgram(lg_model, lg_guide, x_dim=3, vectorize_particles=True)
    pyro.set_rng_seed(3)
    w_loop = log_importance_weights(looped, looped.prepare(x, lengths), 300).detach()
    w_vec = log_importance_weights(vectorized, vectorized.prepare(x, lengths), 300).detach()
    assert w_loop.shape == w_vec.shape == (300, 4)
    # same distribution: means within Monte Carlo error
    se = (w_loop.var(0) / 300 + w_vec.var(0) / 300).sqrt()
    assert torch.all((w_loop.mean(0) - w_vec.mean(0)).abs() < 5 * se)


def test_a_program_that_cannot_be_vectorized_falls_back_to_the_loop(data):
    x, lengths = data

    def flat_guide(x, lengths):  # reshapes with the batch size: breaks under a particle plate
        with pyro.plate("sequences", x.shape[0], dim=-1):
            for t in pyro.markov(range(x.shape[1])):
                with poutine.mask(mask=t < lengths):
                    z = pyro.sample(f"z_{t}", dist.Normal(x[:, t, :2], 1.0).to_event(1))
                    z.reshape(x.shape[0], 2)

    program = PyroProgram(lg_model, flat_guide, x_dim=3)
    with pytest.warns(RuntimeWarning, match="one particle at a time"):
        result = evaluate(program, x, lengths, bound="iwae", num_particles=8)
    assert program.vectorize_particles is False
    assert torch.isfinite(result.log_likelihood).all()


def test_ragged_lengths_are_masked(data):
    x, lengths = data
    program = LGProgram(3)
    exact = oracle().exact_log_prob(x, lengths).detach()
    noisy = x.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[b, n:] = float("nan")  # padding may hold anything, NaN included
    pyro.set_rng_seed(5)
    w_noisy = log_importance_weights(program, program.prepare(noisy, lengths), 2000)
    pyro.set_rng_seed(5)
    w_clean = log_importance_weights(program, program.prepare(x, lengths), 2000)
    assert torch.allclose(w_noisy, w_clean)
    # a sequence alone, cut to its length, has the same weights' distribution
    b = 2
    single = evaluate(program, x[b : b + 1, : lengths[b]], None, bound="iwae", num_particles=4000).log_likelihood
    assert float((single - exact[b]).abs()) < 0.05


def test_inputs_are_validated(data):
    x, lengths = data
    program = LGProgram(3)
    bad = x.clone()
    bad[1, 0, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN at sequence 1, step 0, dimension 2 .*plain Pyro program"):
        evaluate(program, bad, lengths, bound="elbo")
    with pytest.raises(ValueError, match="x_dim 2 but the model expects x_dim 3"):
        evaluate(program, x[..., :2], lengths)
    with pytest.raises(ValueError, match="lengths must lie in"):
        evaluate(program, x, torch.tensor([7, 1, 1, 1]))


def test_structure_errors_name_the_site(data):
    x, lengths = data

    def global_latent(x, lengths):
        s = pyro.sample("s", dist.Normal(0.0, 1.0))
        with pyro.plate("sequences", x.shape[0]):
            pyro.sample("x", dist.Normal(s, 1.0).expand([x.shape[0], x.shape[1], 3]).to_event(2), obs=x)

    def global_guide(x, lengths):
        pyro.sample("s", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'s' of the model is not inside pyro.plate"):
        PyroProgram(global_latent, global_guide).prepare(x, lengths)
    with pytest.raises(ValueError, match="guide does not sample the model's latent site"):
        PyroProgram(lg_model, lambda x, lengths: None).prepare(x, lengths)


def test_the_one_error_for_per_step_pieces(data):
    x, lengths = data
    from pyrosequence.diagnostics import filter_health, one_step_predictive, step_curves, to_inference_data
    from pyrosequence.diagnostics.forecast import forecast

    program = LGProgram(3)
    calls = {
        "the fivo bound": lambda: evaluate(program, x, lengths, bound="fivo", num_particles=4),
        "FIVO": lambda: FIVO(4).loss(program.model, program.guide, x, lengths),
        "forecasting": lambda: forecast(program, x, lengths, horizon=2),
        "predictive draws": lambda: one_step_predictive(program, x, lengths),
        "step curves": lambda: step_curves(program, x, lengths),
        "latents='filter'": lambda: to_inference_data(program, x, lengths, latents="filter"),
        "truncated backpropagation": lambda: program.initial_state(torch.Size([1]), x),
    }
    for what, call in calls.items():
        with pytest.raises(PiecesRequiredError, match="needs a model's per-step pieces") as info:
            call()
        assert isinstance(info.value, TypeError)
        assert what in str(info.value) and "LGProgram is a plain Pyro program" in str(info.value)
        assert "Write the model as a pyrosequence SequenceModel with per-step pieces" in str(info.value)
    idata = to_inference_data(program, x, lengths, num_samples=3, num_particles=5)
    with pytest.raises(PiecesRequiredError, match="filter health needs a model's per-step pieces"):
        filter_health(idata)


def test_a_sequence_model_overriding_model_gets_the_same_error(data):
    x, lengths = data

    class Custom(LinearGaussianSSM):
        def model(self, x, lengths=None):
            return super().model(x, lengths)

    custom = Custom(3, 2)
    for call in (
        lambda: evaluate(custom, x, lengths, bound="fivo", num_particles=4),
        lambda: FIVO(4).loss(custom.model, custom.guide, x, lengths),
    ):
        with pytest.raises(PiecesRequiredError, match="Custom overrides model\\(\\) or guide\\(\\)"):
            call()
    assert torch.isfinite(evaluate(custom, x, lengths, bound="iwae", num_particles=4).log_likelihood).all()


def test_psis_and_inference_data(data):
    pytest.importorskip("arviz")
    from pyrosequence.diagnostics import psis_khat, to_inference_data

    x, lengths = data
    program = LGProgram(3)
    pyro.set_rng_seed(2)
    psis = psis_khat(program, x, lengths, num_particles=300)
    assert psis.khat.shape == (4,) and psis.num_particles == 300
    assert (psis.khat < 0.7).all()  # the near-optimal proposal of a short sequence has light-tailed weights

    idata = to_inference_data(program, x, lengths, num_samples=5, num_particles=50)
    assert set(idata.groups()) == {"posterior", "posterior_predictive", "log_likelihood", "observed_data", "constant_data"}
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "sequence", "time", "z_dim_0") and z.shape == (1, 5, 4, 6, 2)
    pp = idata.posterior_predictive["x"]
    assert pp.dims == ("chain", "draw", "sequence", "time", "x_dim_0") and pp.shape == (1, 5, 4, 6, 3)
    for b, n in enumerate(lengths.tolist()):  # NaN exactly beyond each length
        assert torch.isfinite(torch.as_tensor(z.values[0, :, b, :n])).all()
        assert torch.isnan(torch.as_tensor(pp.values[0, :, b, n:])).all()
    assert idata.posterior_predictive.attrs["program"] == "LGProgram"
    assert idata.log_likelihood["x_sequence"].shape == (1, 1, 4)
    exact = oracle().exact_log_prob(x, lengths).detach().numpy()
    assert (abs(idata.log_likelihood["x_sequence"].values[0, 0] - exact) < 0.6).all()  # IWAE(50), near optimal guide
    assert (idata.constant_data["lengths"].values == lengths.numpy()).all()
    # the predictive draws are draws of x given the guide's z: x_t - C z_t has the noise sd r
    zv = torch.as_tensor(z.values[0, :, 0])  # (S, T, 2) of the full-length sequence
    noise = torch.as_tensor(pp.values[0, :, 0]) - zv @ C.double().T
    assert 0.5 < float(noise.std()) < 1.2


def test_data_on_another_device_than_the_program_is_refused_in_one_line(data):
    """Once a program's parameters exist, data elsewhere (the meta device standing in for a GPU) is
    refused naming both devices, as for a SequenceModel; before that there is nothing to compare."""
    x, lengths = data
    program = LGProgram(3)
    program.prepare(x, lengths)  # creates the parameters on the CPU
    with pytest.raises(ValueError, match=r"^x is on device meta but LGProgram is on cpu: move the data with x.to\('cpu'\)") as error:
        program.prepare(x.to("meta"), lengths)
    assert "\n" not in str(error.value)


def test_parameters_belong_to_the_instance_and_round_trip(data):
    x, lengths = data
    first, second = LGProgram(3), LGProgram(3)
    first.prepare(x, lengths)
    second.prepare(x, lengths)
    names = {name for name, _ in first.named_parameters()}
    assert names == {"param:A", "param:C", "param:q", "param:r", "param:b"}
    with torch.no_grad():
        first.get_parameter("param:b").fill_(1.0)
    assert float(second.get_parameter("param:b").detach().abs().sum()) == 0.0  # not shared through the global store
    pyro.clear_param_store()
    assert first.get_parameter("param:b") is dict(first.named_parameters())["param:b"]
    # positive-constrained parameters are stored unconstrained
    assert float(first.get_parameter("param:q").detach()) == pytest.approx(math.log(Q))
    # a fresh instance loads a state dict before its program has run
    third = LGProgram(3)
    third.load_state_dict(first.state_dict())
    pyro.set_rng_seed(0)
    a = log_importance_weights(first, first.prepare(x, lengths), 3)
    pyro.set_rng_seed(0)
    b = log_importance_weights(third, third.prepare(x, lengths), 3)
    assert torch.allclose(a, b)


def test_training_changes_the_parameters_and_lowers_the_loss(data):
    x, lengths = data
    from pyro.infer import Trace_ELBO

    program = LGProgram(3)
    program.init_from_data(x, lengths)
    before = {k: v.detach().clone() for k, v in program.named_parameters()}
    optimizer = torch.optim.Adam(program.parameters(), lr=0.05)
    elbo = Trace_ELBO(num_particles=32, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(0)
    with torch.no_grad():
        start = sum(elbo.loss(program.model, program.guide, x, lengths) for _ in range(5)) / 5
    with torch.no_grad():
        program.get_parameter("param:b").fill_(1.5)  # a poor guide shift that training must undo
    with torch.no_grad():
        poor = sum(elbo.loss(program.model, program.guide, x, lengths) for _ in range(5)) / 5
    for _ in range(60):
        optimizer.zero_grad()
        elbo.loss_and_grads(program.model, program.guide, x, lengths)
        optimizer.step()
    with torch.no_grad():
        after = sum(elbo.loss(program.model, program.guide, x, lengths) for _ in range(5)) / 5
    assert poor > start + 5  # the shift costs
    assert after < poor - 5  # and training recovers most of it
    changed = [k for k, v in program.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert set(changed) >= {"param:b", "param:A", "param:C"}


def test_center_inputs_is_refused(data):
    x, lengths = data
    with pytest.raises(ValueError, match="centre the data inside the program"):
        LGProgram(3).init_from_data(x, lengths, center=True)


def walk_model(x, lengths):
    """A random walk seen through a learned linear map (any x_dim)."""
    d = x.shape[-1]
    w = pyro.param("w", lambda: torch.eye(d, 2) + 0.1)
    r = pyro.param("r", torch.tensor(1.0), constraint=constraints.positive)
    z = x.new_zeros(x.shape[0], 2)
    with pyro.plate("sequences", x.shape[0]):
        for t in pyro.markov(range(x.shape[1])):
            with poutine.mask(mask=t < lengths):
                z = pyro.sample(f"z_{t}", dist.Normal(0.9 * z, 1.0).to_event(1))
                pyro.sample(f"x_{t}", dist.Normal(z @ w.T, r).to_event(1), obs=x[:, t])


def walk_guide(x, lengths):
    d = x.shape[-1]
    g = pyro.param("g", lambda: torch.zeros(d, 2))
    s = pyro.param("s", torch.tensor(0.5), constraint=constraints.positive)
    with pyro.plate("sequences", x.shape[0]):
        for t in pyro.markov(range(x.shape[1])):
            with poutine.mask(mask=t < lengths):
                pyro.sample(f"z_{t}", dist.Normal(x[:, t] @ g, s).to_event(1))


class WalkProgram(PyroProgram):
    """A registrable plain Pyro program: the constructor train() and the CLI call."""

    def __init__(self, x_dim, z_dim=2):
        super().__init__(walk_model, walk_guide, x_dim=x_dim)


def test_registration_and_the_cli(tmp_path, capsys):
    import json

    from pyrosequence.cli import main
    from pyrosequence.training.config import TrainConfig
    from pyrosequence.models import REGISTRY

    register_model("walk-program", WalkProgram, replace=True)
    try:
        run = tmp_path / "run"
        common = ["--data", "synthetic", "--batch-size", "8", "--train-subset", "16", "--eval-particles", "2", "--lr", "0.05"]
        assert main(["train", "--model", "walk-program", "--epochs", "1", "--out", str(run), *common]) == 0
        config = json.loads((run / "config.json").read_text())
        assert config["model"].endswith(":WalkProgram")  # recorded by import path, reopened by it
        first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        # --resume continues it: the program's parameters come back from the checkpoint
        assert main(["train", "--epochs", "3", "--out", str(run), "--resume"]) == 0
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert len(history) == 3 and history[-1]["train_loss_per_step"] < first["train_loss_per_step"]
        capsys.readouterr()
        assert main(["evaluate", str(run), "--bound", "iwae", "--particles", "4"]) == 0
        out = capsys.readouterr().out
        assert "iwae" in out
        assert main(["evaluate", str(run), "--bound", "fivo", "--particles", "4"]) == 1
        assert "needs a model's per-step pieces" in capsys.readouterr().err
        with pytest.raises(PiecesRequiredError):
            from pyrosequence.training.loop import train

            train(TrainConfig(model="walk-program", objective="fivo", particles=2, epochs=1, train_subset=8, batch_size=8),
                  out=tmp_path / "fivo", progress=False, log=lambda message: None)
    finally:
        REGISTRY.unregister("walk-program")


def test_pyro_modules_and_pyro_module_nets_are_trained_and_saved():
    from pyro.nn import PyroModule, PyroParam
    from pyro.infer import Trace_ELBO
    from torch import nn

    class Decoder(PyroModule):
        def __init__(self):
            super().__init__()
            self.emit = nn.Linear(2, 3)
            self.scale = PyroParam(torch.tensor(1.0), constraint=constraints.positive)

        def forward(self, x, lengths):
            z = x.new_zeros(x.shape[0], 2)
            with pyro.plate("sequences", x.shape[0]):
                for t in pyro.markov(range(x.shape[1])):
                    with poutine.mask(mask=t < lengths):
                        z = pyro.sample(f"z_{t}", dist.Normal(0.8 * z, 1.0).to_event(1))
                        pyro.sample(f"x_{t}", dist.Normal(self.emit(z), self.scale).to_event(1), obs=x[:, t])

    nets = {"encoder": nn.Linear(3, 2)}

    def guide(x, lengths):  # the ordinary pyro.module route, with a net the program closes over
        encoder = pyro.module("encoder", nets["encoder"])
        with pyro.plate("sequences", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                with poutine.mask(mask=t < lengths):
                    pyro.sample(f"z_{t}", dist.Normal(encoder(x[:, t]), 0.7).to_event(1))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x, lengths = torch.randn(5, 4, 3), torch.tensor([4, 2, 3, 1, 4])
    program = PyroProgram(Decoder(), guide, x_dim=3)
    program.init_from_data(x, lengths)
    params = dict(program.named_parameters())
    assert params["param:encoder$$$weight"] is nets["encoder"].weight  # adopted by reference
    assert {"program_model.scale_unconstrained", "program_model.emit.weight"} <= set(params)
    before = {k: v.detach().clone() for k, v in params.items()}
    optimizer = torch.optim.Adam(program.parameters(), lr=0.05)
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        losses.append(elbo.loss_and_grads(program.model, program.guide, x, lengths))
        optimizer.step()
    assert sum(losses[-5:]) < sum(losses[:5])
    assert all(not torch.equal(v.detach(), before[k]) for k, v in program.named_parameters())
    # a new process builds a new net: the loaded values reach it on the program's first run
    state = program.state_dict()
    nets["encoder"] = nn.Linear(3, 2)
    fresh = PyroProgram(Decoder(), guide, x_dim=3)
    fresh.load_state_dict(state)
    fresh.prepare(x, lengths)
    assert torch.equal(nets["encoder"].weight, state["param:encoder$$$weight"])
    assert fresh.get_parameter("param:encoder$$$weight") is nets["encoder"].weight
    pyro.clear_param_store()


def test_the_other_commands_on_a_program_run(tmp_path, capsys):
    """rd-curve reads rate and distortion from traces, so a program's run gives its point (rate > 0,
    D + R = the ELBO's negative); the commands that need per-step pieces (sample, report, plot of
    step curves) fail in one line with the one PiecesRequiredError message, writing nothing."""
    from pyrosequence.cli import main
    from pyrosequence.models import REGISTRY

    register_model("walk-program", WalkProgram, replace=True)
    try:
        run = tmp_path / "run"
        common = ["--data", "synthetic", "--batch-size", "8", "--train-subset", "16", "--eval-particles", "2", "--no-progress"]
        assert main(["train", "--model", "walk-program", "--epochs", "1", "--out", str(run), *common]) == 0
        capsys.readouterr()
        assert main(["rd-curve", str(run), "--out", str(tmp_path / "rd")]) == 0
        import json

        (point,) = json.loads((tmp_path / "rd" / "rd_curve.json").read_text())
        assert point["rate"] > 0 and point["distortion"] > 0
        for argv in (["sample", str(run), "--out", str(tmp_path / "s")], ["report", str(run), "--out", str(tmp_path / "r")],
                     ["plot", str(run), "--kind", "kl", "--out", str(tmp_path / "k.png")]):
            capsys.readouterr()
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "needs a model's per-step pieces" in err
        assert not (tmp_path / "s").exists() and not (tmp_path / "k.png").exists()
    finally:
        REGISTRY.unregister("walk-program")
