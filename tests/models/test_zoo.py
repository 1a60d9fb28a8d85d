"""Model-zoo matrix: every model x every objective gives a finite loss and a gradient step."""

import math

import pytest
import torch

import pyro
from pyro.infer import SVI

from pyrosequence import VHRNN, VRNN, HyperLSTM, LinearGaussianSSM
from pyrosequence.inference import OBJECTIVES, make_objective
from pyrosequence.models.autoregressive_rnn import FRNN, RNNHier
from pyrosequence.models.delta_rnn import DeltaRNN, DeltaRNNRandom
from pyrosequence.models.flat_rnn import RNNFlat
from pyrosequence.models.srnn_variants import SRNNFlat, SRNNHier
from pyrosequence.models.simplified_srnn import SimplifiedSRNN
from pyrosequence.models.srnn import SRNN
from pyrosequence.models.storn import STORN
from pyrosequence.models.zforcing import ZForcing
from pyrosequence.models.linear_vae import LinearVAE
from pyrosequence.models.multi_rate import multi_rate
from pyrosequence.models.dmm import DMM

MODELS = {
    # the SRNN family
    "storn-bernoulli": (lambda: STORN(5, 3, hidden_dim=4), True),
    "storn-lagged-gaussian": (lambda: STORN(5, 3, hidden_dim=4, likelihood="gaussian", posterior="lagged"), False),
    "srnn-bernoulli": (lambda: SRNN(5, 3, hidden_dim=4), True),
    "srnn-hier-made": (lambda: SRNN(5, 3, hidden_dim=4, output="hier-made"), True),
    "zforcing-aux": (lambda: ZForcing(5, 3, hidden_dim=4, aux_alpha=0.5, aux_beta=0.5), True),
    "zforcing-gaussian-no-aux": (lambda: ZForcing(5, 3, hidden_dim=4, likelihood="gaussian", aux_alpha=0, aux_beta=0), False),
    "srnn-simple-fast": (lambda: SimplifiedSRNN(5, 3, hidden_dim=4), True),
    "srnn-simple-per-step": (lambda: SimplifiedSRNN(5, 3, hidden_dim=4, likelihood="gaussian", fast_path=False), False),
    "vrnn-bernoulli": (lambda: VRNN(5, 3, likelihood="bernoulli"), True),
    # the Multi-Rate VAE paper's linear VAE and multi-rate versions (beta-gated layers, beta = 1 here)
    "linear-vae": (lambda: LinearVAE(5, 3), False),
    "vrnn-multi-rate": (lambda: multi_rate(VRNN(5, 3, likelihood="gaussian")), False),
    "vhrnn-gru-multi-rate": (lambda: multi_rate(VHRNN(5, 3, likelihood="bernoulli", cell="gru", omega_dim=4), (0.1, 3.0)), True),
    "vrnn-gaussian-gru": (lambda: VRNN(5, 3, likelihood="gaussian", cell="gru"), False),
    "lgssm-learned": (lambda: LinearGaussianSSM(5, 3), False),
    "lgssm-prior": (lambda: LinearGaussianSSM(5, 3, proposal="prior"), False),
    "vhrnn-lstm": (lambda: VHRNN(5, 3, likelihood="bernoulli", omega_dim=4), True),
    # the FIVO code's reading (VHRNN paper's parameter counts): smoothing and residual proposals
    "vrnn-fivo-smoothing": (lambda: VRNN(5, 3, likelihood="bernoulli", architecture="fivo"), True),
    "vhrnn-fivo-smoothing": (lambda: VHRNN(5, 3, likelihood="bernoulli", omega_dim=4, architecture="fivo"), True),
    "vhrnn-fivo-multi-rate": (lambda: multi_rate(VHRNN(5, 3, likelihood="bernoulli", omega_dim=4, architecture="fivo")), True),
    "vhrnn-fivo-latent-filtering": (
        lambda: VHRNN(5, 3, likelihood="gaussian", omega_dim=4, architecture="fivo", proposal="filtering", hyper_input="latent"),
        False,
    ),
    "vhrnn-gru-mlp-latent": (lambda: VHRNN(5, 3, cell="gru", hyper_net="mlp", hyper_input="latent", omega_dim=4), False),
    "hyperlstm-mixture": (lambda: HyperLSTM(5, 4, likelihood="mixture", components=2), False),
    # Dai et al. 2019: deterministic baselines and autoregressive outputs
    "frnn-dim-mixture": (lambda: FRNN(5, 4, likelihood="dim-mixture", components=2), False),
    "rnn-hier-bernoulli": (lambda: RNNHier(5, 4, low_hidden=4), True),
    "rnn-hier-made-gaussian": (lambda: RNNHier(5, 4, likelihood="gaussian", output="hier-made", order="random", low_hidden=4), False),
    "rnn-flat-bernoulli": (lambda: RNNFlat(5, 4), True),
    "delta-rnn-stride": (lambda: DeltaRNN(5, 4, leak=2), True),
    "delta-rnn-random-gaussian": (lambda: DeltaRNNRandom(5, 4, leak=3, likelihood="gaussian"), False),
    "vrnn-hier-rnn": (lambda: VRNN(5, 3, output="hier-rnn"), True),
    "vhrnn-hier-made": (lambda: VHRNN(5, 3, likelihood="bernoulli", omega_dim=4, output="hier-made"), True),
    "hyperlstm-hier-rnn-mixture": (lambda: HyperLSTM(5, 4, likelihood="mixture", components=2, output="hier-rnn"), False),
    "srnn-hier-dai": (lambda: SRNNHier(5, 3, hidden_dim=4), True),
    "srnn-flat-u1": (lambda: SRNNFlat(5, 3, hidden_dim=4), True),
    "srnn-flat-u5-gaussian": (lambda: SRNNFlat(5, 3, group=5, hidden_dim=4, likelihood="gaussian"), False),
    # Krishnan et al. 2017: the Deep Markov Model, plain and with an IAF in the guide
    "dmm-bernoulli": (lambda: DMM(5, 3, hidden_dim=4), True),
    "dmm-iaf-gaussian": (lambda: DMM(5, 3, hidden_dim=4, likelihood="gaussian", iafs=1), False),
}


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_objective_matrix(name, objective, vectorize):
    build, binary = MODELS[name]
    model = build()
    x = (torch.rand(4, 6, 5) < 0.3).float() if binary else torch.randn(4, 6, 5)
    lengths = torch.tensor([6, 4, 1, 5])
    before = [p.detach().clone() for p in model.parameters()]
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.01}), make_objective(objective, 3, vectorize))
    loss = svi.step(x, lengths)
    assert math.isfinite(loss)
    moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert any(moved)


@pytest.mark.parametrize("objective", ["elbo", "iwae", "mean-field"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_engine_objectives_give_pyros_loss_on_every_model(name, objective):
    """The per-step engine's elbo/iwae/mean-field (run eagerly: the function the compiled step
    computes) equal Pyro's on the same draws, for every model of the zoo (float64); a model
    whose training program the pieces do not describe trains with Pyro's estimator, warning."""
    import warnings

    from pyrosequence.inference.engine_objectives import engine_target

    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        build, binary = MODELS[name]
        model = build()
        x = (torch.rand(4, 6, 5) < 0.3).double() if binary else torch.randn(4, 6, 5)
        lengths = torch.tensor([6, 4, 1, 5])
        engine = make_objective(objective, 3, compile=True)
        engine.compile = None  # the eager step: same function, no compilation in this matrix
        losses = []
        for estimator in (make_objective(objective, 3), engine):
            pyro.set_rng_seed(0)
            with pyro.validation_enabled(False), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                losses.append(estimator.loss(model.model, model.guide, x, lengths))
        drivable = engine_target(model.model, model.guide)[0] is not None
        assert drivable == (not any("trains with" in str(w.message) for w in caught))
        assert losses[0] == pytest.approx(losses[1], rel=1e-6, abs=1e-6)
    finally:
        torch.set_default_dtype(saved)


@pytest.mark.parametrize("objective", ["elbo", "iwae", "iwae-dreg", "elbo-stl"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_engine_objectives_give_the_eager_gradients_on_every_model(name, objective):
    """The engine's objectives (run eagerly, as above) with gradients on (elbo and iwae score the
    emissions in one batched call after the loop; iwae-dreg and elbo-stl run the held-fixed pass)
    give the eager estimators' loss and gradients on the same draws for every model of the zoo
    (float64), or train with the eager estimator, warning, where the engine cannot drive the
    model."""
    import warnings

    from pyrosequence.inference.engine_objectives import engine_target

    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        build, binary = MODELS[name]
        model = build()
        x = (torch.rand(4, 6, 5) < 0.3).double() if binary else torch.randn(4, 6, 5)
        lengths = torch.tensor([6, 4, 1, 5])
        engine = make_objective(objective, 3, compile=True)
        engine.compile = None
        results = []
        for estimator in (make_objective(objective, 3), engine):
            model.zero_grad(set_to_none=True)
            pyro.set_rng_seed(0)
            with pyro.validation_enabled(False), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                loss = estimator.loss_and_grads(model.model, model.guide, x, lengths)
            results.append((loss, [None if p.grad is None else p.grad.clone() for p in model.parameters()]))
        drivable = engine_target(model.model, model.guide)[0] is not None
        assert drivable == (not any("trains with" in str(w.message) for w in caught))
        (eager_loss, eager_grads), (engine_loss, engine_grads) = results
        assert eager_loss == pytest.approx(engine_loss, rel=1e-6, abs=1e-6)
        assert any(g is not None for g in eager_grads)
        for a, b in zip(eager_grads, engine_grads):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()
    finally:
        torch.set_default_dtype(saved)


def test_the_zoo_covers_every_registered_model():
    """Every built-in model of the registry (pyrosequence.models.MODELS) is in the matrix above,
    so a newly registered model cannot skip it."""
    from pyrosequence.models import MODELS as REGISTERED

    covered = {type(build()) for build, _ in MODELS.values()}
    missing = sorted(name for name, cls in REGISTERED.items() if cls not in covered)
    assert not missing, f"models registered but not in the zoo matrix: {missing}"
