"""The elbo, iwae and mean-field objectives computed by the per-step engine
(:mod:`pyrosequence.inference.engine_objectives`) against Pyro's estimators on the model/guide
pair, under the same random draws: loss and gradients to 1e-5, KL weighting (beta, annealing,
per-sequence and multi-rate), continuation from a state, and the fallback for models without
pieces.

Tests marked ``compile`` run ``torch.compile``; the others run the engine's step eagerly, which is
the function the compiled step computes. Models and data are float64 (see the fixture).
"""

import warnings

import pytest
import torch

import pyro

from pyrosequence import DMM, SRNN, VRNN, ZForcing
from pyrosequence.inference import make_objective, scale_latents
from pyrosequence.inference.engine import CompileOptions
from pyrosequence.inference.engine_objectives import EngineELBO, EngineIWAE, EngineMeanFieldELBO, EngineObjective
from pyrosequence.inference.scaling import KLAnnealing
from pyrosequence.models.multi_rate import multi_rate

OBJECTIVES = ("elbo", "iwae", "mean-field")
ENGINE_CLASSES = {"elbo": EngineELBO, "iwae": EngineIWAE, "mean-field": EngineMeanFieldELBO}
MODELS = {
    "vrnn": lambda: VRNN(4, 3),
    "srnn": lambda: SRNN(4, 3, hidden_dim=4),
    "dmm-iaf": lambda: DMM(4, 3, hidden_dim=5, transition_dim=6, emission_dim=6, iafs=1),  # no closed-form KL
}


def _data(batch=3, steps=5, x_dim=4):
    x = (torch.rand(batch, steps, x_dim) < 0.4).to(torch.get_default_dtype())
    return x, torch.tensor([steps, 2, steps - 1][:batch])


def _engine(name, k, compile=None):
    """The engine objective for ``name`` (eager step when ``compile`` is None)."""
    reference = make_objective(name, k)
    return ENGINE_CLASSES[name](k, reference, compile)


def _loss_and_grads(objective, model, fn_model, fn_guide, x, lengths, seed, **kwargs):
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    pyro.set_rng_seed(seed)
    loss = objective.loss_and_grads(fn_model, fn_guide, x, lengths, **kwargs)
    return loss, [None if p.grad is None else p.grad.clone() for p in params]


def _assert_same(first, second, tol=1e-5):
    (loss1, grads1), (loss2, grads2) = first, second
    assert loss1 == pytest.approx(loss2, rel=tol, abs=tol)
    assert any(g is not None for g in grads1)
    for a, b in zip(grads1, grads2):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()


@pytest.fixture(autouse=True)
def _no_validation_in_float64():
    """Validation off, as pyrosequence train runs its updates; float64, so that the two paths'
    different order of summation stays far below the 1e-5 tolerance (float32 rounding alone
    reaches a few 1e-6 relative on gradients of size 10)."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pyro.validation_enabled(False):
            yield
    finally:
        torch.set_default_dtype(saved)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("name", OBJECTIVES)
def test_engine_equals_pyro_under_the_same_draws(name, model_name, k):
    """The engine draws z_t as the vectorised guide does: the same loss and gradients as
    Trace_ELBO / RenyiELBO(0) / TraceMeanField_ELBO on ragged sequences."""
    torch.manual_seed(0)
    m = MODELS[model_name]()
    x, lengths = _data()
    pyro_result = _loss_and_grads(make_objective(name, k), m, m.model, m.guide, x, lengths, seed=3)
    engine_result = _loss_and_grads(_engine(name, k), m, m.model, m.guide, x, lengths, seed=3)
    _assert_same(pyro_result, engine_result)


def test_the_objectives_differ_from_each_other():
    """The equality above is not vacuous: on the same draws the three estimates differ."""
    torch.manual_seed(0)
    m = VRNN(4, 3)
    x, lengths = _data()
    losses = {name: _loss_and_grads(_engine(name, 3), m, m.model, m.guide, x, lengths, seed=3)[0] for name in OBJECTIVES}
    assert losses["iwae"] < losses["elbo"]  # log-mean-exp >= mean, per sequence
    assert len({round(v, 3) for v in losses.values()}) == 3


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("scale", ["annealed", "beta", "per-sequence"])
def test_kl_weighting_is_the_same_on_both_paths(name, scale):
    """scale_latents on model and guide (a KL-annealing weight, a beta > 1, one beta per
    sequence) multiplies the same latent terms in the engine as in Pyro's estimators."""
    torch.manual_seed(1)
    m = VRNN(4, 3)
    x, lengths = _data()
    beta = {"annealed": KLAnnealing()(100), "beta": 4.0, "per-sequence": torch.tensor([0.5, 1.0, 3.0])}[scale]
    fn_model, fn_guide = scale_latents(m.model, beta), scale_latents(m.guide, beta)
    pyro_result = _loss_and_grads(make_objective(name, 2), m, fn_model, fn_guide, x, lengths, seed=5)
    engine_result = _loss_and_grads(_engine(name, 2), m, fn_model, fn_guide, x, lengths, seed=5)
    _assert_same(pyro_result, engine_result)
    unscaled = _loss_and_grads(_engine(name, 2), m, m.model, m.guide, x, lengths, seed=5)
    assert unscaled[0] != pytest.approx(engine_result[0], rel=1e-3)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_multi_rate_models_are_trained_alike(name):
    """A multi-rate VRNN whose gates read beta, trained at that beta: same loss and gradients."""
    torch.manual_seed(2)
    m = multi_rate(VRNN(4, 3))
    m.beta_conditioner.set_beta(0.3)
    x, lengths = _data()
    fn_model, fn_guide = scale_latents(m.model, 0.3), scale_latents(m.guide, 0.3)
    pyro_result = _loss_and_grads(make_objective(name, 2), m, fn_model, fn_guide, x, lengths, seed=6)
    engine_result = _loss_and_grads(_engine(name, 2), m, fn_model, fn_guide, x, lengths, seed=6)
    _assert_same(pyro_result, engine_result)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_a_continued_window_is_the_same_and_leaves_the_particles_state(name):
    """initial/start (truncated backpropagation through time): same loss and gradients, and
    final_state holds the particles' states as the model's own model() leaves them."""
    torch.manual_seed(3)
    m = VRNN(4, 3)
    x, lengths = _data()
    initial = tuple(s.detach() + 0.1 for s in m.initial_state(torch.Size([3]), x))
    window = dict(initial=initial, start=5)
    pyro_result = _loss_and_grads(make_objective(name, 2), m, m.model, m.guide, x, lengths, seed=7, **window)
    pyro_final = m.final_state
    engine_result = _loss_and_grads(_engine(name, 2), m, m.model, m.guide, x, lengths, seed=7, **window)
    _assert_same(pyro_result, engine_result)
    for a, b in zip(pyro_final, m.final_state):
        assert a.shape == b.shape == (2, 3, a.shape[-1])
        assert torch.allclose(a, b, atol=1e-6)


def test_make_objective_builds_the_engine_only_when_compiling():
    for name, cls in ENGINE_CLASSES.items():
        assert not isinstance(make_objective(name, 2), EngineObjective)
        compiled = make_objective(name, 2, compile=True)
        assert type(compiled) is cls and compiled.compile == CompileOptions() and compiled.num_particles == 2
    assert make_objective("iwae", 4, compile="reduce-overhead").compile.uses_cuda_graphs
    with pytest.raises(ValueError, match="unknown compile mode"):
        make_objective("elbo", compile="fastest")
    with pytest.raises(ValueError, match="at least 1"):
        EngineIWAE(0, make_objective("iwae"), None)


def test_a_plain_pyro_program_trains_with_the_pyro_estimator_and_a_warning():
    from pyrosequence.models import PyroProgram

    def model(x, lengths=None):
        loc = pyro.param("loc", torch.zeros(4))
        with pyro.plate("sequences", x.shape[0], dim=-1):
            z = pyro.sample("z", pyro.distributions.Normal(loc, 1.0).to_event(1))
            pyro.sample("x", pyro.distributions.Bernoulli(logits=z).to_event(1), obs=x[:, 0])

    def guide(x, lengths=None):
        scale = pyro.param("scale", torch.ones(4), constraint=torch.distributions.constraints.positive)
        with pyro.plate("sequences", x.shape[0], dim=-1):
            pyro.sample("z", pyro.distributions.Normal(torch.zeros(4), scale).to_event(1))

    program = PyroProgram(model, guide, x_dim=4)
    x, lengths = _data()
    program.prepare(x, lengths)
    pyro_result = _loss_and_grads(make_objective("iwae", 2), program, program.model, program.guide, x, lengths, seed=8)
    engine = make_objective("iwae", 2, compile=CompileOptions(backend="aot_eager"))
    with pytest.warns(RuntimeWarning, match="EngineIWAE trains with RenyiELBO.*not a SequenceModel"):
        engine_result = _loss_and_grads(engine, program, program.model, program.guide, x, lengths, seed=8)
    _assert_same(pyro_result, engine_result)


def test_zforcing_with_its_auxiliary_factor_trains_with_pyro_and_a_warning():
    """The pieces leave Z-Forcing's training-only auxiliary factor out: the engine does not drop
    it silently; in evaluation mode (factor off) the engine runs its pieces."""
    torch.manual_seed(4)
    m = ZForcing(4, 3, likelihood="bernoulli")
    x, lengths = _data()
    pyro_result = _loss_and_grads(make_objective("elbo", 2), m, m.model, m.guide, x, lengths, seed=9)
    with pytest.warns(RuntimeWarning, match="EngineELBO trains with Trace_ELBO.*training-only terms"):
        engine_result = _loss_and_grads(_engine("elbo", 2), m, m.model, m.guide, x, lengths, seed=9)
    _assert_same(pyro_result, engine_result)
    m.eval()
    assert m.pieces_match_training()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _assert_same(_loss_and_grads(make_objective("elbo", 2), m, m.model, m.guide, x, lengths, seed=9),
                     _loss_and_grads(_engine("elbo", 2), m, m.model, m.guide, x, lengths, seed=9))


@pytest.mark.compile
@pytest.mark.parametrize("name", OBJECTIVES)
def test_compiled_objective_equals_pyro(name):
    """The compiled step (aot_eager: Dynamo's capture and AOTAutograd's graphs, no code
    generation) over 2-step calls: Pyro's loss and gradients under the same draws."""
    torch.manual_seed(5)
    m = VRNN(4, 3)
    x, lengths = _data()
    compiled = make_objective(name, 3, compile=CompileOptions(backend="aot_eager", unroll=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager step
        _loss_and_grads(compiled, m, m.model, m.guide, x, lengths, seed=0)  # compiles
        engine_result = _loss_and_grads(compiled, m, m.model, m.guide, x, lengths, seed=10)
    pyro_result = _loss_and_grads(make_objective(name, 3), m, m.model, m.guide, x, lengths, seed=10)
    _assert_same(pyro_result, engine_result)


@pytest.mark.compile
def test_compiled_objective_of_a_model_without_latents_equals_pyro():
    """The HyperLSTM (no latents: its ELBO is the exact log-likelihood) takes the compiled step too
    (it declares time-invariant pieces), with Pyro's loss and gradients."""
    from pyrosequence.models import HyperLSTM

    torch.manual_seed(6)
    m = HyperLSTM(4, hidden_dim=3, likelihood="mixture", components=2)
    x, lengths = torch.randn(3, 5, 4), torch.tensor([5, 2, 4])
    compiled = make_objective("elbo", 1, compile=CompileOptions(backend="aot_eager", unroll=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager step
        _loss_and_grads(compiled, m, m.model, m.guide, x, lengths, seed=0)  # compiles
        engine_result = _loss_and_grads(compiled, m, m.model, m.guide, x, lengths, seed=10)
    _assert_same(_loss_and_grads(make_objective("elbo", 1), m, m.model, m.guide, x, lengths, seed=10), engine_result)


@pytest.mark.parametrize("name", ["elbo", "iwae", "iwae-dreg", "elbo-stl"])
def test_train_with_compile_gives_the_eager_run(tmp_path, name):
    """TrainConfig(compile=True) with an elbo/iwae/mean-field (or iwae-dreg/elbo-stl) objective
    trains through the engine (the LGSSM's step runs eagerly: it does not declare time-invariant
    pieces), on the same draws as the eager estimators: the same losses over an epoch of
    updates, with KL annealing on."""
    from pyrosequence.training.config import TrainConfig
    from pyrosequence.inference.engine_objectives import EngineDReGIWAE, EngineSTLELBO
    from pyrosequence.inference import objectives
    from pyrosequence.training.loop import train

    options = dict(model="lgssm", z_dim=2, objective=name, particles=2, epochs=1, batch_size=8, train_subset=32,
                   valid_bound="elbo", valid_particles=2, eval_bound="iwae", eval_particles=2, kl_anneal=True)
    quiet = dict(progress=False, log=lambda s: None)
    eager = train(TrainConfig(**options), out=tmp_path / "eager", **quiet)
    built = []
    original = objectives.make_objective

    def recording(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    with pytest.MonkeyPatch.context() as patch, pytest.warns(RuntimeWarning, match="LinearGaussianSSM runs eagerly"):
        patch.setattr("pyrosequence.training.loop.make_objective", recording)
        compiled = train(TrainConfig(compile=True, **options), out=tmp_path / "compiled", **quiet)
    assert type(built[0]) is {**ENGINE_CLASSES, "iwae-dreg": EngineDReGIWAE, "elbo-stl": EngineSTLELBO}[name]
    # one epoch (4 updates): the compiled run's validation draws differently afterwards (the
    # engine's evaluation draws one final particle per sequence)
    assert compiled.history[0]["train_loss_per_step"] == pytest.approx(eager.history[0]["train_loss_per_step"], rel=1e-5)
