"""The particle filter's step as one function of tensors, and its opt-in compilation.

:func:`filter_step` is one step of the filter of :mod:`pyrosequence.inference.particle_filter`
(proposal, prior, emission, reweighting, state update, resampling) written without a host
synchronisation: whether a filter resamples is a boolean tensor, ancestors are drawn for every
filter and ``torch.where`` keeps the identity where it does not resample, and the state is
gathered unconditionally. Being a pure function of tensors (plus the model and constants), it can
be compiled with ``torch.compile``; the eager call of the same function is the reference.

Compilation is opt-in: ``FIVO(..., compile=True)``, ``make_objective("iwae" | "elbo" |
"mean-field" | "iwae-dreg" | "elbo-stl", ..., compile=True)``
(:mod:`pyrosequence.inference.engine_objectives`), ``make_bound(..., compile=True)``,
``evaluate(..., compile=True)``, ``TrainConfig(compile=True)`` (``--compile`` in the CLI). What it
does and does not do:

* The step is compiled with ``fullgraph=True`` (one graph per step, no breaks). A model whose
  step cannot be compiled whole, or whose pieces do not declare
  :attr:`~pyrosequence.models.core.base.SequenceModel.time_invariant_pieces`, runs eagerly with a
  ``RuntimeWarning`` that names the model and the reason (once per model instance): the bound is
  the same, only the speed differs.
* Pieces that compute the same function at every step (``time_invariant_pieces = True``) are
  called with ``t = 0`` inside the compiled step, so one graph serves every step. ``t`` then only
  names Pyro sites, which nobody records there: the compiled step runs outside any Pyro handler
  (``pyro.deterministic`` records nothing) and with distribution validation off.
* Random draws: Inductor generates its own random numbers by default, so a compiled run draws
  different (identically distributed) noise than an eager run from the same seed. With
  ``torch._inductor.config.fallback_random = True`` it calls the same random kernels as eager
  mode, and on a CPU the two then agree to rounding (the equality tests do this). On CUDA that
  is not guaranteed: draws that do not depend on one another (the next step's proposal noise,
  a resampler's uniforms) may run in another order inside a compiled block, so the same seed
  gives other numbers from the same estimator (measured on an H200: evaluation bounds up to 2
  nats per sequence apart from one seed, while a filter that never resamples agreed to 4e-6;
  ``backend="aot_eager"`` kept eager's order exactly). The CUDA tests compare those as
  estimators (tests/cuda/test_cuda.py).
* ``CompileOptions(mode="reduce-overhead")`` asks for CUDA graphs on a CUDA device
  (``torch.compiler.cudagraph_mark_step_begin()`` is called before every filter run); on a CPU
  the mode is accepted and has no CUDA-graph effect. Shapes are static per compiled graph: a new
  batch size or particle count compiles again (Dynamo marks the dimension dynamic after it has
  seen it change).
* A filter that never resamples, run with gradients (the elbo and iwae training objectives),
  needs no weights inside the loop: its compiled steps are :func:`deferred_step` s (proposal,
  draw, state update), and the emissions of all steps (and a time-homogeneous prior) are scored
  in one batched call after the loop (:func:`~pyrosequence.inference.particle_filter.run_filter`),
  which makes the per-step graphs smaller and the scoring one large product instead of ``T``
  small ones.
* The first run compiles (tens of seconds on a CPU for a VRNN, forward and backward each);
  gradient mode, particle count, resampling on/off and the model instance each have their own
  graph. One compiled call runs ``CompileOptions.unroll`` steps (default 4,
  :func:`filter_steps`): a compiled call costs a fixed overhead (guards, autograd wrappers)
  that the steps then share, and the kernels fuse across steps. The filter's first step runs
  eagerly (its inputs, zero weights and states without gradients and an initial state whose
  parts are one tensor, would need a graph of their own), and so do the last
  ``(T - 1) mod unroll`` steps.
"""

from __future__ import annotations

import contextlib
import math
import warnings
import weakref
from dataclasses import dataclass
from typing import NamedTuple

import torch

import pyro
from pyro.distributions.kl import kl_divergence
from pyro.poutine.runtime import _PYRO_STACK

from pyrosequence.device import model_device
from pyrosequence.models.core.missing import mask_elements
from pyrosequence.nn.cells import map_state

#: State and log-weight tensors carry the particle dimension first: (K, batch, ...).
PARTICLE_DIM = 0
#: Dynamo's limit of graphs per compiled function, raised while the filter runs: each model
#: instance, particle count, gradient mode and resampling setting is a graph of its own.
RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class CompileOptions:
    """How :func:`filter_step` is compiled (the arguments of ``torch.compile``).

    Attributes:
        backend: ``"inductor"`` (generated C++/Triton kernels), or e.g. ``"aot_eager"`` (traced
            graphs run by eager kernels: checks the tracing without code generation).
        mode: ``None`` (default), ``"reduce-overhead"`` (CUDA graphs on CUDA devices),
            ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``.
        fullgraph: compile the step as one graph; a graph break then falls back to the eager
            step with a warning instead of running a partly compiled step.
        dynamic: passed to ``torch.compile`` (``None``: Dynamo decides, marking a size dynamic
            once it has seen it change).
        unroll: steps per compiled call (:func:`filter_steps`): fewer calls, so less per-call
            overhead (guards, autograd wrappers) and fusion across steps, for a longer first
            compilation. The last ``(T - 1) mod unroll`` steps of a filter run eagerly. A filter
            with an ``on_step`` callback compiles single steps.
    """

    backend: str = "inductor"
    mode: str | None = None
    fullgraph: bool = True
    dynamic: bool | None = None
    unroll: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.unroll, bool) or not isinstance(self.unroll, int) or self.unroll < 1:
            raise ValueError(f"unroll must be an integer of at least 1 (steps per compiled call), got {self.unroll!r}")
        modes = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
        if self.mode not in modes:
            raise ValueError(f"unknown compile mode {self.mode!r}; choose one of: {', '.join(map(str, modes))}")
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"the compile backend must be a backend name such as 'inductor', got {self.backend!r}")

    @property
    def uses_cuda_graphs(self) -> bool:
        return self.mode == "reduce-overhead"


def compile_options(value) -> CompileOptions | None:
    """``False``/``None`` -> no compilation; ``True`` -> default :class:`CompileOptions`; a mode
    string (``"reduce-overhead"``...) -> those options with that mode; options pass through."""
    if value is None or value is False:
        return None
    if value is True:
        return CompileOptions()
    if isinstance(value, str):
        return CompileOptions(mode=value)
    if isinstance(value, CompileOptions):
        return value
    raise ValueError(f"compile must be a bool, a torch.compile mode or CompileOptions, got {value!r}")


def gather_particles(state, ancestors: torch.Tensor):
    """Select particles ``ancestors`` (K, B) along the particle dimension of a (tuple) state."""

    def pick(tensor: torch.Tensor) -> torch.Tensor:
        index = ancestors.reshape(ancestors.shape + (1,) * (tensor.dim() - 2)).expand_as(tensor)
        return tensor.gather(PARTICLE_DIM, index)

    return map_state(pick, state)


class NotReparameterized(ValueError):
    """A proposal without ``rsample``: the filter (and every objective built on it) needs
    reparameterised latents. ``distribution`` is the offending proposal, ``t`` its step."""

    def __init__(self, model, distribution, t: int) -> None:
        self.distribution, self.t = distribution, t
        super().__init__(f"{type(model).__name__}.proposal must be reparameterisable for the particle filter")


def _draw(model, state, t: int, proposal_t, particles: torch.Size):
    """The proposal of step ``t`` expanded to ``particles`` and a reparameterised draw from it."""
    proposal = model.proposal(state, t, proposal_t)
    if proposal.batch_shape != particles:
        proposal = proposal.expand(particles)
    if not proposal.has_rsample:
        raise NotReparameterized(model, proposal, t)
    return proposal, proposal.rsample()


class StepInfo(NamedTuple):
    """What one step of the particle filter measured, per sequence ``(B,)``."""

    increment: torch.Tensor  # log p_hat(x_t | x_<t)
    ess: torch.Tensor  # effective sample size after the step's reweighting (detached)
    resampled: torch.Tensor  # bool: whether the filter resampled after the step
    lse: torch.Tensor  # log-sum of the weights (non-finite where the weights broke down)


class FilterStep(NamedTuple):
    """What :func:`filter_step` returns: the filter it carries to the next step, what the step
    measured, and the held-fixed pass's carry (``None`` unless one was given)."""

    state: object  # the particles' states, resampled where the filter resampled
    log_w: torch.Tensor  # (K, B) log-weights since each filter's last resampling
    log_z: torch.Tensor  # (B,) log-normalisers accumulated at resamplings
    reference: torch.Tensor  # (B,) the next step's reference log-sum
    info: StepInfo
    held_fixed: object = None  # HeldFixed


def filter_step(model, resampler, ess_threshold: float, state, log_w, log_z, reference, x_t, context_t, proposal_t,
                active, may_resample, latent_scale, t: int, analytic_kl: bool = False, observed_t=None, held_fixed=None):
    """One step of the particle filter, without reading anything back to the host.

    Args:
        model: the :class:`~pyrosequence.models.core.base.SequenceModel` whose pieces run.
        resampler: ``log_weights (B, K) -> ancestors (B, K)``; unused when ``ess_threshold == 0``.
        ess_threshold: resample the filters whose ESS is below ``ess_threshold * K``.
        state: the particles' states ``s_{t-1}`` (particle dimension first).
        log_w: ``(K, B)`` log-weights since each filter's last resampling.
        log_z: ``(B,)`` the log-normalisers accumulated at earlier resamplings.
        reference: ``(B,)`` log-sum of the weights after the previous step (``log K`` after a
            resampling): the previous step's term of the increments.
        x_t, context_t, proposal_t: step ``t`` of the data, the model's context and the
            proposal's context.
        active: ``(B,)`` bool, ``t < length``: ended sequences add no weight.
        may_resample: ``(B,)`` bool, ``t < length - 1``: never resample after the last step.
        latent_scale: ``None``, or the factor of the latent terms (a number or 0-d tensor).
        t: the step index handed to the pieces.
        analytic_kl: the latent term of the increment is ``-KL(q(z_t|.) || p(z_t|.))`` computed
            in closed form (the mean-field ELBO of ``TraceMeanField_ELBO``) instead of the
            sampled ``log p(z_t|.) - log q(z_t|.)``; where no closed form is registered the
            sampled term is used, as Pyro does. ``z_t`` still drives the state update.
        observed_t: ``(B, x_dim)`` bool, the observed elements of ``x_t`` (``None``: all): the
            emission is scored on those only (:func:`~pyrosequence.models.core.missing.mask_elements`).
        held_fixed: ``None``, or the carry of the held-fixed pass of the lower-variance gradient
            estimators (:class:`HeldFixed`, see :func:`held_fixed_step`); only without
            resampling (``ess_threshold == 0``).

    Returns:
        :class:`FilterStep`: the updated (and resampled) ``state``, ``log_w``, ``log_z`` and
        ``reference``; ``info`` (:class:`StepInfo`: ``increment = log p_hat(x_t | x_<t)``, the ESS
        after reweighting, whether each filter resampled and the log-sum of the weights, all
        ``(B,)``; the log-sum is non-finite where a filter's weights broke down, which the caller
        checks once, after the loop); and with ``held_fixed`` its updated carry.
    """
    particles = log_w.shape
    k = particles[0]
    if model.z_dim:
        proposal, z = _draw(model, state, t, proposal_t, particles)
        log_latent = latent_log_ratio(model.transition(state, t), proposal, z, analytic_kl)
        if latent_scale is not None:
            log_latent = latent_scale * log_latent
    else:  # a deterministic model: every particle carries the exact likelihood
        z, log_latent = x_t.new_zeros(particles + (0,)), 0.0
    if held_fixed is not None:
        held_fixed = held_fixed_step(model, held_fixed, z, x_t, context_t, proposal_t, active, latent_scale, t,
                                     observed_t)
    features = model.latent_features(z)
    increment = mask_elements(model.emission(state, features), observed_t).log_prob(x_t) + log_latent
    log_w = log_w + increment.masked_fill(~active, 0.0)
    lse = log_w.logsumexp(PARTICLE_DIM)
    ess = (2 * lse - (2 * log_w).logsumexp(PARTICLE_DIM)).exp()
    state = model.update(state, features, context_t, t)
    step_increment = lse - reference
    if ess_threshold > 0 and k > 1:  # one particle has ESS = 1 = K: it never resamples
        resample = (ess < ess_threshold * k) & may_resample
        # A filter whose weights broke down draws from uniform weights: its result is discarded
        # (the caller raises naming the step), but the resampler must not fail on it first.
        weights = torch.where(torch.isfinite(lse), log_w.detach(), 0.0)
        drawn = resampler(weights.transpose(0, 1)).transpose(0, 1)
        identity = torch.arange(k, device=log_w.device)[:, None]
        state = gather_particles(state, torch.where(resample, drawn, identity))
        log_k = math.log(k)
        log_z = log_z + (lse - log_k).masked_fill(~resample, 0.0)
        log_w = log_w.masked_fill(resample, 0.0)
        reference = lse.masked_fill(resample, log_k)
    else:
        resample = torch.zeros_like(active)
        reference = lse
    return FilterStep(state, log_w, log_z, reference, StepInfo(step_increment, ess.detach(), resample, lse), held_fixed)


class HeldFixed(NamedTuple):
    """The held-fixed pass of :mod:`pyrosequence.inference.gradient_estimators`, carried beside
    the filter's particles: the model's state recomputed from the *detached* draws ``z_<t``
    (the parameters keep their gradient), and per particle ``(K, B)`` the sums so far of
    ``log p(x_s, z_s)`` and ``log q(z_s)`` at those detached draws (latent terms scaled as the
    filter scales them; ``log_p`` is ``None`` when only the guide's pass is needed). Their
    gradients are the partial derivatives with every sampled value held fixed: what Pyro's
    replay of the model and guide with detached values gives."""

    state: object
    log_p: torch.Tensor | None
    log_q: torch.Tensor


def held_fixed_step(model, held: HeldFixed, z: torch.Tensor, x_t, context_t, proposal_t, active, latent_scale,
                    t: int, observed_t=None) -> HeldFixed:
    """Advance :class:`HeldFixed` by step ``t`` with the step's draw ``z`` held fixed (detached);
    ``observed_t`` as in :func:`filter_step`."""
    particles = held.log_q.shape
    if model.z_dim:
        z = z.detach()
        proposal = model.proposal(held.state, t, proposal_t)
        if proposal.batch_shape != particles:
            proposal = proposal.expand(particles)
        log_q = proposal.log_prob(z)
        log_prior = None if held.log_p is None else model.transition(held.state, t).log_prob(z)
        if latent_scale is not None:
            log_q = latent_scale * log_q
            log_prior = None if log_prior is None else latent_scale * log_prior
    else:
        log_q, log_prior = 0.0, 0.0
    features = model.latent_features(z)
    log_p = held.log_p
    if log_p is not None:
        emission = mask_elements(model.emission(held.state, features), observed_t)
        log_p = log_p + (emission.log_prob(x_t) + log_prior).masked_fill(~active, 0.0)
    if torch.is_tensor(log_q):
        log_q = held.log_q + log_q.masked_fill(~active, 0.0)
    else:
        log_q = held.log_q
    return HeldFixed(model.update(held.state, features, context_t, t), log_p, log_q)


def deferred_step(model, state, context_t, proposal_t, log_w: torch.Tensor, t: int):
    """Step ``t`` of a filter that never resamples, with the scoring left for after the loop
    (:func:`~pyrosequence.inference.particle_filter.run_filter` scores every step's emission,
    and a time-homogeneous prior, in one batched call, as the model's own ``model`` does):
    only what the recurrence needs runs per step. Returns the new state and
    ``(state, z, features, log_q, log_prior)``: the new state again (the caller stacks them),
    the draw ``z_t`` from the proposal, its features, ``log q(z_t)`` ``(K, B)`` and, for a model
    without :attr:`homogeneous_transition`, ``log p(z_t | s_{t-1})`` (else ``None``); both
    unscaled, ``None`` for a model without latents. ``log_w`` (``(K, B)``) gives the particles'
    shape."""
    particles = log_w.shape
    log_q = log_prior = None
    if model.z_dim:
        proposal, z = _draw(model, state, t, proposal_t, particles)
        log_q = proposal.log_prob(z)
        if not model.homogeneous_transition:
            log_prior = model.transition(state, t).log_prob(z)
    else:  # a deterministic model
        z = log_w.new_zeros(particles + (0,))
    features = model.latent_features(z)
    state = model.update(state, features, context_t, t)
    return state, (state, z, features, log_q, log_prior)


def latent_log_ratio(prior, proposal, z: torch.Tensor, analytic_kl: bool = False) -> torch.Tensor:
    """The latent term of a weight increment: ``log p(z) - log q(z)``, or with ``analytic_kl``
    ``-KL(q || p)`` in closed form when ``torch.distributions`` registers one for the pair
    (``TraceMeanField_ELBO``'s rule: otherwise the sampled ratio)."""
    if analytic_kl:
        try:
            kl = kl_divergence(proposal, prior)
        except NotImplementedError:
            pass
        else:
            return -kl.expand(proposal.batch_shape)
    return prior.log_prob(z) - proposal.log_prob(z)


def filter_steps(model, resampler, ess_threshold: float, state, log_w, log_z, reference, held_fixed, x_steps,
                 context_steps, proposal_steps, active_steps, may_resample_steps, latent_scale,
                 analytic_kl: bool = False, deferred: bool = False, observed_steps=None):
    """Consecutive :func:`filter_step` s, one per element of the per-step tuples (``t = 0`` for
    every one: compiled steps need :attr:`time_invariant_pieces`). Returns the carried
    ``(state, log_w, log_z, reference, held_fixed)`` (``held_fixed`` stays ``None`` when not
    given) and a tuple of each step's ``(increment, ess, resampled, lse)``; with ``deferred``,
    :func:`deferred_step` s instead (the weights carried unchanged, each step's outputs
    those of :func:`deferred_step`)."""
    outputs = []
    if observed_steps is None:
        observed_steps = (None,) * len(x_steps)
    for x_t, context_t, proposal_t, active, may_resample, observed_t in zip(
        x_steps, context_steps, proposal_steps, active_steps, may_resample_steps, observed_steps
    ):
        if deferred:
            state, per_step = deferred_step(model, state, context_t, proposal_t, log_w, 0)
            outputs.append(per_step)
            continue
        step = filter_step(
            model, resampler, ess_threshold, state, log_w, log_z, reference, x_t, context_t, proposal_t, active,
            may_resample, latent_scale, 0, analytic_kl, observed_t, held_fixed,
        )
        state, log_w, log_z, reference, held_fixed = step.state, step.log_w, step.log_z, step.reference, step.held_fixed
        outputs.append(tuple(step.info))
    return state, log_w, log_z, reference, held_fixed, tuple(outputs)


_COMPILED: dict[CompileOptions, object] = {}
#: model -> why its step runs eagerly although compilation was asked for (warned once)
_EAGER_ONLY: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def _compiled_step(options: CompileOptions):
    if options not in _COMPILED:
        mode = None if options.mode == "default" else options.mode
        _COMPILED[options] = torch.compile(
            filter_steps, backend=options.backend, mode=mode, fullgraph=options.fullgraph, dynamic=options.dynamic
        )
    return _COMPILED[options]


def _fall_back(model, reason: str) -> None:
    if model not in _EAGER_ONLY:
        warnings.warn(
            f"compile: the particle-filter step of {type(model).__name__} runs eagerly ({reason}); "
            "the bound is the same, only slower",
            RuntimeWarning,
            stacklevel=4,
        )
    _EAGER_ONLY[model] = reason


class StepRunner:
    """Calls :func:`filter_step` for one filter run: eagerly, or compiled with ``options``.

    Use as a context manager around the time loop. When compiled, the loop runs outside any Pyro
    handler, with distribution validation off and Dynamo's RNN tracing and recompile limit
    raised; on exit everything is restored. A step that fails to compile runs eagerly from then
    on (see the module docstring).
    """

    def __init__(self, model, resampler, ess_threshold: float, options: CompileOptions | None,
                 single_steps: bool = False, analytic_kl: bool = False, deferred: bool = False) -> None:
        self.model, self.resampler, self.ess_threshold = model, resampler, float(ess_threshold)
        self.analytic_kl = bool(analytic_kl)
        self.deferred = bool(deferred)
        self.options = options
        self.unroll = 1 if options is None or single_steps else options.unroll
        if options is not None and not getattr(model, "time_invariant_pieces", False):
            _fall_back(model, "its pieces do not declare time_invariant_pieces = True, so one compiled graph "
                              "cannot serve every step")
        self.compiled = options is not None and model not in _EAGER_ONLY
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "StepRunner":
        if self.compiled:
            saved = list(_PYRO_STACK)
            _PYRO_STACK.clear()
            self._stack.callback(_PYRO_STACK.extend, saved)
            self._stack.enter_context(pyro.validation_enabled(False))
            self._stack.enter_context(torch._dynamo.config.patch(allow_rnn=True, recompile_limit=RECOMPILE_LIMIT))
            if self.options.uses_cuda_graphs and model_device(self.model).type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def block_length(self, t: int, steps: int) -> int:
        """How many steps the call at step ``t`` of ``steps`` runs: ``unroll`` compiled ones, or
        one eager step (the first step, whose inputs carry no gradient and alias one another,
        the last ``(steps - 1) mod unroll`` steps, and everything when not compiled)."""
        if self.compiled and t > 0 and t + self.unroll <= steps:
            return self.unroll
        return 1

    def __call__(self, state, log_w, log_z, reference, x_steps, context_steps, proposal_steps, active_steps,
                 may_resample_steps, latent_scale, t: int, first: bool = False, held_fixed=None, observed_steps=None):
        """Steps ``t ... t + n - 1`` (``n`` = the length of the per-step tuples, from
        :meth:`block_length`): the carried ``(state, log_w, log_z, reference, held_fixed)`` and
        each step's ``(increment, ess, resampled, lse)``. ``first``: the filter's first step
        (always eager). ``held_fixed``: the :class:`HeldFixed` carry, or ``None``.
        ``observed_steps``: the observed elements of each step, ``None`` when nothing is missing."""
        carry = (state, log_w, log_z, reference, held_fixed)
        if observed_steps is None:
            observed_steps = (None,) * len(x_steps)
        if self.compiled and not first and len(x_steps) == self.unroll:
            if latent_scale is not None and not torch.is_tensor(latent_scale):
                latent_scale = log_w.new_tensor(latent_scale)  # a float would be a constant of the graph
            try:
                return _compiled_step(self.options)(
                    self.model, self.resampler, self.ess_threshold, *carry, tuple(x_steps), tuple(context_steps),
                    tuple(proposal_steps), tuple(active_steps), tuple(may_resample_steps), latent_scale,
                    self.analytic_kl, self.deferred, tuple(observed_steps),
                )
            except Exception as error:  # a graph break, an unsupported op, a compiler failure
                self.compiled = False
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                _fall_back(self.model, f"torch.compile failed: {type(error).__name__}: {first_line}")
        outputs = []
        *carry, held_fixed = carry
        for i, x_t in enumerate(x_steps):
            if self.deferred:
                state, per_step = deferred_step(self.model, carry[0], context_steps[i], proposal_steps[i],
                                                carry[1], t + i)
                carry[0] = state
                outputs.append(per_step)
                continue
            step = filter_step(
                self.model, self.resampler, self.ess_threshold, *carry, x_t, context_steps[i], proposal_steps[i],
                active_steps[i], may_resample_steps[i], latent_scale, t + i, self.analytic_kl, observed_steps[i],
                held_fixed,
            )
            carry, held_fixed = [step.state, step.log_w, step.log_z, step.reference], step.held_fixed
            outputs.append(tuple(step.info))
        return (*carry, held_fixed, tuple(outputs))
