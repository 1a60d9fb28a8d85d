"""iwae-dreg (DReG) and elbo-stl (STL) computed by the per-step engine
(:class:`~pyrosequence.inference.engine_objectives.EngineDReGIWAE`, :class:`~.EngineSTLELBO`)
against the eager estimators of :mod:`pyrosequence.inference.gradient_estimators` (Pyro traces)
under the same random draws: loss and gradients to 1e-5 in float64, with KL weighting and
continuation from a state; the fallback for models the engine cannot drive; the refusal of
non-reparameterised proposals; and, through the engine, the properties the eager estimators are
tested for (zero guide gradient at the exact posterior, lower guide variance at K = 16).

The engine draws ``z_t`` exactly as the vectorised guide does, and the held-fixed pass draws
nothing, so one seed gives both paths the same particles. Tests marked ``compile`` run
``torch.compile`` (with the ``aot_eager`` backend: no code generation); the others run the
engine's step eagerly, the function the compiled step computes.
"""

import re
import warnings

import pytest
import torch

import pyro
import pyro.distributions as dist

from pyrosequence import DMM, SRNN, VRNN, LinearGaussianSSM
from pyrosequence.inference import make_objective, scale_latents
from pyrosequence.inference.engine import CompileOptions
from pyrosequence.inference.engine_objectives import EngineDReGIWAE, EngineSTLELBO
from pyrosequence.inference.gradient_estimators import DReGIWAE, STLELBO
from pyrosequence.inference.scaling import KLAnnealing
from lgssm_posterior import exact_posterior_lgssm  # tests/inference/lgssm_posterior.py

ESTIMATORS = ("iwae-dreg", "elbo-stl")
ENGINE_CLASSES = {"iwae-dreg": EngineDReGIWAE, "elbo-stl": EngineSTLELBO}
STANDARD = {"iwae-dreg": "iwae", "elbo-stl": "elbo"}
MODELS = {
    "vrnn": lambda: VRNN(4, 3),
    "srnn": lambda: SRNN(4, 3, hidden_dim=4),
    "dmm": lambda: DMM(4, 3, hidden_dim=5, transition_dim=6, emission_dim=6),
    "dmm-iaf": lambda: DMM(4, 3, hidden_dim=5, transition_dim=6, emission_dim=6, iafs=1),
    "lgssm": lambda: LinearGaussianSSM(4, 3),
}


@pytest.fixture(autouse=True)
def _float64_without_validation():
    """Validation off, as pyrosequence train runs its updates; float64, so that the two paths'
    different order of summation stays far below the 1e-5 tolerance."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pyro.validation_enabled(False):
            yield
    finally:
        torch.set_default_dtype(saved)


def _data(batch=3, steps=5, x_dim=4):
    x = (torch.rand(batch, steps, x_dim) < 0.4).to(torch.get_default_dtype())
    return x, torch.tensor([steps, 2, steps - 1][:batch])


def _engine(name, k, compile=None):
    """The engine estimator for ``name`` (its step run eagerly when ``compile`` is None)."""
    return ENGINE_CLASSES[name](k, make_objective(name, k), compile)


def _loss_and_grads(objective, model, fn_model, fn_guide, x, lengths, seed, **kwargs):
    for p in model.parameters():
        p.grad = None
    pyro.set_rng_seed(seed)
    loss = objective.loss_and_grads(fn_model, fn_guide, x, lengths, **kwargs)
    return loss, [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def _assert_same(first, second, tol=1e-5):
    (loss1, grads1), (loss2, grads2) = first, second
    assert loss1 == pytest.approx(loss2, rel=tol, abs=tol)
    assert any(g is not None for g in grads1)
    for a, b in zip(grads1, grads2):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()


def _flat(grads):
    return torch.cat([g.flatten() for g in grads if g is not None])


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("name", ESTIMATORS)
def test_engine_equals_the_eager_estimator_under_the_same_draws(name, model_name, k):
    """Same loss and gradients as DReGIWAE / STLELBO on ragged sequences, and not those of the
    standard estimator (the equality is not vacuous)."""
    torch.manual_seed(0)
    m = MODELS[model_name]()
    x, lengths = _data()
    eager = _loss_and_grads(make_objective(name, k), m, m.model, m.guide, x, lengths, seed=3)
    engine = _loss_and_grads(_engine(name, k), m, m.model, m.guide, x, lengths, seed=3)
    _assert_same(eager, engine)
    standard = _loss_and_grads(make_objective(STANDARD[name], k), m, m.model, m.guide, x, lengths, seed=3)
    assert standard[0] == pytest.approx(engine[0], rel=1e-10)
    assert (_flat(standard[1]) - _flat(engine[1])).abs().max() > 1e-3


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("scale", ["annealed", "beta", "per-sequence"])
def test_kl_weighting_is_the_same_on_both_paths(name, scale):
    """scale_latents (KL annealing, beta > 1, one beta per sequence): the engine scales the
    held-fixed latent terms and weights DReG's path term by beta as the eager estimator does."""
    torch.manual_seed(1)
    m = VRNN(4, 3)
    x, lengths = _data()
    beta = {"annealed": KLAnnealing()(100), "beta": 4.0, "per-sequence": torch.tensor([0.5, 1.0, 3.0])}[scale]
    fn_model, fn_guide = scale_latents(m.model, beta), scale_latents(m.guide, beta)
    eager = _loss_and_grads(make_objective(name, 2), m, fn_model, fn_guide, x, lengths, seed=5)
    engine = _loss_and_grads(_engine(name, 2), m, fn_model, fn_guide, x, lengths, seed=5)
    _assert_same(eager, engine)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_a_continued_window_is_the_same(name):
    """initial/start (truncated backpropagation through time): same loss and gradients."""
    torch.manual_seed(3)
    m = VRNN(4, 3)
    x, lengths = _data()
    initial = tuple(s.detach() + 0.1 for s in m.initial_state(torch.Size([3]), x))
    window = dict(initial=initial, start=5)
    eager = _loss_and_grads(make_objective(name, 2), m, m.model, m.guide, x, lengths, seed=7, **window)
    engine = _loss_and_grads(_engine(name, 2), m, m.model, m.guide, x, lengths, seed=7, **window)
    _assert_same(eager, engine)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_loss_without_gradients_is_the_bound(name):
    """loss() (no held-fixed pass) and loss_and_grads() give the same bound on the same draws."""
    torch.manual_seed(4)
    m = VRNN(4, 3)
    x, lengths = _data()
    engine = _engine(name, 3)
    pyro.set_rng_seed(2)
    value = engine.loss(m.model, m.guide, x, lengths)
    pyro.set_rng_seed(2)
    assert value == pytest.approx(make_objective(name, 3).loss(m.model, m.guide, x, lengths), rel=1e-10)
    assert value == pytest.approx(_loss_and_grads(engine, m, m.model, m.guide, x, lengths, seed=2)[0], rel=1e-10)


def test_make_objective_builds_the_engine_estimators_only_when_compiling():
    for name, cls in ENGINE_CLASSES.items():
        eager = make_objective(name, 2)
        assert type(eager) is {"iwae-dreg": DReGIWAE, "elbo-stl": STLELBO}[name]
        compiled = make_objective(name, 2, compile=True)
        assert type(compiled) is cls and compiled.compile == CompileOptions() and compiled.num_particles == 2
        assert type(compiled.reference) is type(eager)


class _NormalWithoutRsample(dist.Normal):
    has_rsample = False


class _ScoreFunctionVRNN(VRNN):
    """A VRNN whose proposal has no rsample (the same Normal, marked not reparameterisable)."""

    def proposal(self, state, t, proposal_context_t):
        q = super().proposal(state, t, proposal_context_t)
        return _NormalWithoutRsample(q.base_dist.loc, q.base_dist.scale).to_event(q.reinterpreted_batch_ndims)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_refuses_a_proposal_without_rsample_in_one_line_as_the_eager_estimator(name):
    m = _ScoreFunctionVRNN(4, 3)
    x, lengths = _data()
    message = f"{name} needs reparameterised latents, but guide site 'z_0' (Independent) has no rsample"
    for objective in (make_objective(name, 2), _engine(name, 2)):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            objective.loss_and_grads(m.model, m.guide, x, lengths)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_a_plain_pyro_program_trains_with_the_eager_estimator_and_a_warning(name):
    from pyrosequence.models import PyroProgram

    def model(x, lengths=None):
        loc = pyro.param("loc", torch.zeros(4))
        with pyro.plate("sequences", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z).to_event(1), obs=x[:, 0])

    def guide(x, lengths=None):
        scale = pyro.param("scale", torch.ones(4), constraint=dist.constraints.positive)
        with pyro.plate("sequences", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(torch.zeros(4), scale).to_event(1))

    pyro.clear_param_store()
    program = PyroProgram(model, guide, x_dim=4)
    x, lengths = _data()
    program.prepare(x, lengths)
    eager = _loss_and_grads(make_objective(name, 2), program, program.model, program.guide, x, lengths, seed=8)
    engine = make_objective(name, 2, compile=CompileOptions(backend="aot_eager"))
    reference = type(engine.reference).__name__
    with pytest.warns(RuntimeWarning, match=f"{type(engine).__name__} trains with {reference}.*not a SequenceModel"):
        fallback = _loss_and_grads(engine, program, program.model, program.guide, x, lengths, seed=8)
    _assert_same(eager, fallback)


def _guide_gradients(m, objective, x, seeds):
    names = [n for n, _ in m.named_parameters()]
    draws = []
    for seed in seeds:
        grads = _loss_and_grads(objective, m, m.model, m.guide, x, None, seed)[1]
        draws.append(torch.cat([g.flatten() for n, g in zip(names, grads) if n.startswith("q_") and g is not None]))
    return torch.stack(draws)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_through_the_engine_the_guide_gradient_is_zero_at_the_exact_posterior(name):
    m, x = exact_posterior_lgssm()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the LGSSM's step runs eagerly
        ours = _guide_gradients(m, _engine(name, 4), x, range(3))
        standard = _guide_gradients(m, make_objective(STANDARD[name], 4), x, range(3))
    assert ours.abs().max() < 1e-8
    assert standard.abs().max() > 1e-2


@pytest.mark.parametrize("name", ESTIMATORS)
def test_through_the_engine_the_guide_variance_is_lower_at_16_particles(name):
    m, x = exact_posterior_lgssm(perturb=0.15)
    seeds = range(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = _guide_gradients(m, _engine(name, 16), x, seeds)
        standard = _guide_gradients(m, make_objective(STANDARD[name], 16), x, seeds)
    assert ours.var(0).sum() < 0.5 * standard.var(0).sum()


@pytest.mark.compile
@pytest.mark.parametrize("name", ESTIMATORS)
def test_compiled_estimator_equals_the_eager_one(name):
    """The compiled step (aot_eager: Dynamo's capture and AOTAutograd's graphs, no code
    generation) over 2-step calls, with the held-fixed pass in the graph: the eager
    estimator's loss and gradients under the same draws, without falling back."""
    torch.manual_seed(5)
    m = VRNN(4, 3)
    x, lengths = _data()
    compiled = make_objective(name, 3, compile=CompileOptions(backend="aot_eager", unroll=2))
    assert type(compiled) is ENGINE_CLASSES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager step
        _loss_and_grads(compiled, m, m.model, m.guide, x, lengths, seed=0)  # compiles
        engine = _loss_and_grads(compiled, m, m.model, m.guide, x, lengths, seed=10)
    eager = _loss_and_grads(make_objective(name, 3), m, m.model, m.guide, x, lengths, seed=10)
    _assert_same(eager, engine)


@pytest.mark.parametrize("name", ["elbo", "iwae", "iwae-dreg", "elbo-stl"])
def test_data_with_gaps_give_the_pyro_estimators_on_the_engine(name):
    """Missing values through the engine: the deferred batched scoring (elbo, iwae) and the
    held-fixed pass (iwae-dreg, elbo-stl) mask the emission per element exactly as the Pyro
    model/guide pair does; the same loss and gradients under the same draws."""
    from pyrosequence.inference.engine_objectives import EngineELBO, EngineIWAE

    torch.manual_seed(0)
    model = VRNN(3, 2, likelihood="gaussian", mask_inputs=True)
    x = torch.randn(3, 5, 3)
    x[0, 1, 2] = float("nan")
    x[1, 2] = float("nan")  # a whole step
    x[2, 3, :2] = float("nan")
    lengths = torch.tensor([5, 4, 5])
    classes = {"elbo": EngineELBO, "iwae": EngineIWAE, **ENGINE_CLASSES}
    engine = classes[name](3, make_objective(name, 3), None)
    reference = _loss_and_grads(make_objective(name, 3), model, model.model, model.guide, x, lengths, seed=5)
    through_engine = _loss_and_grads(engine, model, model.model, model.guide, x, lengths, seed=5)
    _assert_same(reference, through_engine)


@pytest.mark.compile
def test_a_second_particle_count_does_not_send_the_step_to_eager():
    """After the step was compiled at other particle counts and batch sizes, Dynamo traces the
    held-fixed pass with symbolic sizes; the recurrent cells' shape check must accept them (it
    once refused ``(3, 3)`` against ``(s, 3)`` and sent every later step of the model to eager,
    which the full suite met in this order: compiled evaluations, then the estimator)."""
    from pyrosequence.inference import evaluate, make_bound

    torch.manual_seed(5)
    options = CompileOptions(backend="aot_eager", unroll=2)
    x, lengths = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to the eager step warns
        other = VRNN(4, 3)
        for k, batch in ((3, 3), (5, 2), (2, 3)):
            evaluate(other, x[:batch], lengths[:batch], make_bound("fivo", compile=options), num_particles=k)
        m = VRNN(4, 3)
        for k in (3, 5):
            _loss_and_grads(make_objective("iwae-dreg", k, compile=options), m, m.model, m.guide, x, lengths, seed=k)
