"""The per-step engine: no host synchronisation inside a step, and the compiled step equal to the
eager one (bound and gradients) under the same random draws.

Tests marked ``compile`` run ``torch.compile`` (Inductor: C++ code generation, tens of seconds
for a tiny model, forward and backward); ``pytest -m "not compile"`` leaves them out.
"""

import warnings

import pytest
import torch

import pyro

from pyrosequence import SRNN, VHRNN, VRNN, LinearGaussianSSM
from pyrosequence.inference import FIVO, evaluate, get_resampler, make_bound
from pyrosequence.inference.engine import CompileOptions, compile_options, filter_step
from pyrosequence.inference.particle_filter import run_filter

TINY = dict(x_dim=4, z_dim=3)


def _data(batch=3, steps=5, x_dim=4):
    x = (torch.rand(batch, steps, x_dim) < 0.4).float()
    return x, torch.tensor([steps, 2, steps - 1][:batch])


class _NoHostReads:
    """Make every read of a tensor's value into Python (``bool``, ``item``, ``tolist``, ``int``,
    ``float``) raise while active."""

    NAMES = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__")

    def __enter__(self):
        self.saved = {name: getattr(torch.Tensor, name) for name in self.NAMES}

        def refuse(*args, **kwargs):
            raise AssertionError("a tensor value was read back to the host")

        for name in self.NAMES:
            setattr(torch.Tensor, name, refuse)
        return self

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            setattr(torch.Tensor, name, fn)


@pytest.mark.parametrize("ess_threshold", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("resampler", ["multinomial", "systematic", "stratified", "residual"])
def test_a_step_reads_nothing_back_to_the_host(resampler, ess_threshold):
    m = VRNN(4, 3, architecture="fivo")
    x, lengths = _data()
    seqs = m.prepare(x, lengths)
    ctx = m.context(seqs.x)
    q = m.proposal_context(seqs.x, ctx, seqs.lengths)
    k, b = 4, 3
    state = m.initial_state(torch.Size([k, b]), seqs.x)
    log_w = torch.randn(k, b)
    log_w[:, 1] = torch.tensor([0.0, -30.0, -30.0, -30.0])  # degenerate: this filter resamples
    with pyro.validation_enabled(False), _NoHostReads():
        out = filter_step(m, get_resampler(resampler), ess_threshold, state, log_w, torch.zeros(b), torch.zeros(b),
                          seqs.x[:, 0], ctx[:, 0], q[:, 0], torch.ones(b, dtype=torch.bool),
                          torch.ones(b, dtype=torch.bool), None, 0)
    resampled = out.info.resampled
    assert resampled.dtype == torch.bool and resampled.shape == (b,)
    assert bool(resampled[1]) == (ess_threshold > 0)


def test_resampling_decisions_follow_the_ess_rule():
    """Resampled exactly where the ESS after the step fell below the threshold (never after a
    sequence's last step), and the weights restart there."""
    m = VRNN(4, 3)
    x, lengths = _data(steps=8)
    with torch.no_grad():
        result, log_w = run_filter(m, m.prepare(x, lengths), 6, get_resampler("systematic"), 0.7)
    t = torch.arange(8)[:, None]
    expected = (result.ess < 0.7 * 6) & (t < lengths[None] - 1)
    assert torch.equal(result.resampled, expected) and bool(expected.any()) and not bool(expected.all())
    assert torch.allclose(result.log_increments.sum(0), result.log_z, atol=1e-4)


def test_non_finite_weights_name_the_first_bad_step_and_sequence_once():
    """The finiteness check runs after the loop and still names the first step and sequence."""
    m = LinearGaussianSSM(x_dim=2, z_dim=2)
    x = m.sample(3, 6).detach()
    x[2, 3, 0] = float("nan")
    seqs = m.prepare(torch.zeros_like(x))
    seqs.x.copy_(x)  # past the data check, as a model producing NaN would be
    # NaN then reaches the proposal and the states of the later steps too (validation would
    # reject the proposal's parameters first): the error still names step 3 of sequence 2
    with pyro.validation_enabled(False), pytest.raises(ValueError, match="sequence 2 are NaN at step 3"):
        run_filter(m, seqs, 4, get_resampler("multinomial"), 0.5)


def test_filter_importance_weights_equal_the_trace_path():
    """With no resampling the filter draws the same z as the vectorised guide (same seed), so
    the engine's elbo/iwae bounds equal those computed from Pyro traces."""
    m = VRNN(4, 3)
    x, lengths = _data()
    for bound in ("elbo", "iwae"):
        pyro.set_rng_seed(5)
        traced = evaluate(m, x, lengths, bound, 7).log_likelihood
        pyro.set_rng_seed(5)
        rule = make_bound(bound)
        with torch.no_grad():
            log_w = run_filter(m, m.prepare(x, lengths), 7, get_resampler("multinomial"), 0.0)[1]
        by_filter = rule.finish(rule.reduce_chunk(log_w), 7)
        assert torch.allclose(traced, by_filter, atol=1e-4), bound


def test_compile_options_are_checked():
    assert compile_options(False) is None and compile_options(None) is None
    assert compile_options(True) == CompileOptions()
    assert compile_options("reduce-overhead").uses_cuda_graphs
    with pytest.raises(ValueError, match="unroll must be an integer of at least 1"):
        CompileOptions(unroll=0)
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        compile_options("fast")
    with pytest.raises(ValueError, match="compile must be"):
        compile_options(3)
    assert "compile=CompileOptions" in repr(FIVO(4, compile=True))


def test_a_model_without_time_invariant_pieces_runs_eagerly_with_a_warning():
    m = LinearGaussianSSM(x_dim=2, z_dim=2)
    x = m.sample(2, 5).detach()
    pyro.set_rng_seed(1)
    eager = FIVO(3).loss(m.model, m.guide, x)
    pyro.set_rng_seed(1)
    with pytest.warns(RuntimeWarning, match="LinearGaussianSSM runs eagerly.*time_invariant_pieces"):
        compiled = FIVO(3, compile=CompileOptions(backend="aot_eager")).loss(m.model, m.guide, x)
    assert compiled == eager


def _grads(model, fivo, x, lengths, seed):
    pyro.set_rng_seed(seed)
    result = fivo.filter(model.model, model.guide, x, lengths)
    loss = -(result.log_z / lengths).mean()
    params = [p for p in model.parameters() if p.requires_grad]
    return result, loss, torch.autograd.grad(loss, params, allow_unused=True)


def _assert_compiled_equals_eager(model, options, x, lengths):
    eager = FIVO(3, ess_threshold=0.8)
    compiled = FIVO(3, ess_threshold=0.8, compile=options)
    with torch._inductor.config.patch(fallback_random=True), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager step
        _grads(model, compiled, x, lengths, 0)  # compiles (which may itself draw random numbers)
        r1, loss1, g1 = _grads(model, eager, x, lengths, 7)
        r2, loss2, g2 = _grads(model, compiled, x, lengths, 7)
    assert torch.equal(r1.resampled, r2.resampled) and bool(r1.resampled.any())
    assert torch.allclose(r1.log_z, r2.log_z, rtol=1e-5, atol=1e-5)
    assert torch.allclose(loss1, loss2, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()


@pytest.mark.compile
def test_compiled_step_equals_eager_for_vrnn():
    _assert_compiled_equals_eager(VRNN(**TINY, architecture="fivo"), CompileOptions(), *_data())


@pytest.mark.compile
def test_compiled_step_equals_eager_for_vhrnn():
    model = VHRNN(**TINY, likelihood="bernoulli", omega_dim=4, architecture="fivo")
    _assert_compiled_equals_eager(model, CompileOptions(), *_data())


@pytest.mark.compile
def test_compiled_step_equals_eager_for_srnn():
    # two compiled calls of 2 steps after the eager first step: the carry crosses calls
    _assert_compiled_equals_eager(SRNN(**TINY, hidden_dim=4), CompileOptions(unroll=2), *_data())


@pytest.mark.compile
def test_compiled_evaluation_of_every_bound_equals_eager():
    """evaluate(compile=...) gives the eager values: fivo through the filter, elbo and iwae
    through a filter that never resamples (equal to the trace path under the same seed)."""
    m = VRNN(**TINY)
    x, lengths = _data()
    options = CompileOptions(backend="aot_eager")  # the tracing; Inductor's kernels are tested above
    for bound in ("fivo", "iwae", "elbo"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            evaluate(m, x, lengths, bound, 5, compile=options)
            pyro.set_rng_seed(2)
            compiled = evaluate(m, x, lengths, bound, 5, compile=options).log_likelihood
        pyro.set_rng_seed(2)
        eager = evaluate(m, x, lengths, bound, 5).log_likelihood
        assert torch.allclose(compiled, eager, atol=1e-4), bound


@pytest.mark.compile
def test_a_step_that_cannot_compile_runs_eagerly_with_a_warning():
    class Chatty(VRNN):
        def emission(self, state, z_features):
            print("emitting")  # a side effect fullgraph cannot trace
            return super().emission(state, z_features)

    m = Chatty(**TINY)
    x, lengths = _data()
    pyro.set_rng_seed(4)
    eager = FIVO(3).loss(m.model, m.guide, x, lengths)
    pyro.set_rng_seed(4)
    with pytest.warns(RuntimeWarning, match="Chatty runs eagerly.*torch.compile failed"):
        compiled = FIVO(3, compile=CompileOptions(backend="aot_eager")).loss(m.model, m.guide, x, lengths)
    assert compiled == pytest.approx(eager, rel=1e-6)


def test_train_hands_compile_to_the_objective_and_the_bounds(tmp_path):
    """TrainConfig(compile=True) reaches the engine from train's FIVO objective and its bounds; a
    model without time_invariant_pieces then runs eagerly, so the updates equal an eager run's."""
    from pyrosequence.training.config import TrainConfig
    from pyrosequence.training.loop import train

    options = dict(model="lgssm", z_dim=2, objective="fivo", particles=2, epochs=1, batch_size=32, train_subset=64,
                   valid_bound="fivo", valid_particles=2, eval_bound="iwae", eval_particles=2)
    quiet = dict(progress=False, log=lambda s: None)
    eager = train(TrainConfig(**options), out=tmp_path / "eager", **quiet)
    with pytest.warns(RuntimeWarning, match="LinearGaussianSSM runs eagerly"):
        compiled = train(TrainConfig(compile=True, **options), out=tmp_path / "compiled", **quiet)
    assert [r["train_loss_per_step"] for r in compiled.history] == [r["train_loss_per_step"] for r in eager.history]
    assert compiled.history[0]["valid_fivo_per_step"] == pytest.approx(eager.history[0]["valid_fivo_per_step"])


@pytest.mark.compile
@pytest.mark.parametrize("iafs", [0, 1])
def test_compiled_dmm_step_equals_eager(iafs):
    """The DMM declares time-invariant pieces; its step (with and without a flow in the guide)
    traces whole (aot_eager: the graph capture without Inductor's code generation)."""
    from pyrosequence import DMM

    model = DMM(4, 3, hidden_dim=5, transition_dim=6, emission_dim=6, iafs=iafs)
    _assert_compiled_equals_eager(model, CompileOptions(backend="aot_eager"), *_data())
