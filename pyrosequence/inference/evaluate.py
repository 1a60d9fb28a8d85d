"""Evaluation of variational bounds on a data set, reported as the FIVO paper does."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

import pyro
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample

from pyrosequence.data.checks import Sequences, check_sequences
from pyrosequence.inference.engine import CompileOptions, compile_options
from pyrosequence.inference.particle_filter import check_filter_options, particle_filter, run_filter
from pyrosequence.inference.resamplers import Resampler, get_resampler
from pyrosequence.models.core.base import SequenceModel
from pyrosequence.models.core.capabilities import has_pieces, is_whole_program, require_pieces

#: Default cap on particles x sequences x steps evaluated at once by importance bounds.
PARTICLE_STEP_BUDGET = 2**18
#: Default cap on particles x sequences filtered at once by the FIVO bound (it streams over time).
FILTER_PARTICLE_BUDGET = 2**16


@dataclass(frozen=True)
class EvaluationResult:
    """A bound evaluated on a set of sequences.

    Attributes:
        bound: the bound's name (``"elbo"``, ``"iwae"``, ...).
        num_particles: particles per sequence.
        log_likelihood: ``(batch,)`` the bound for each sequence (a lower bound on, or for IWAE
            an estimate of a lower bound on, ``log p(x_b)``).
        num_steps: ``(batch,)`` the length of each sequence.
        per_timestep: ``sum(log_likelihood) / sum(num_steps)``, the normalisation of the FIVO
            paper and its reference code.
        num_observed: ``(batch,)`` the number of observed elements of each sequence (its length
            times ``x_dim`` when nothing is missing); ``None`` when not known.
        per_element: ``sum(log_likelihood) / sum(num_observed)``: the bound per observed
            element, the comparable figure when values are missing (a missing element adds
            nothing to the bound).
        block_size: sequences scored per block (with a ``seed``, the figure depends on it: a
            one-process evaluation reproduces a shared one with ``batch_size=block_size``).
    """

    bound: str
    num_particles: int
    log_likelihood: torch.Tensor
    num_steps: torch.Tensor
    num_observed: torch.Tensor | None = None
    block_size: int | None = None

    @property
    def per_timestep(self) -> float:
        return float(self.log_likelihood.sum() / self.num_steps.sum())

    @property
    def per_element(self) -> float | None:
        if self.num_observed is None:
            return None
        return float(self.log_likelihood.sum() / self.num_observed.sum())

    @property
    def total(self) -> float:
        return float(self.log_likelihood.sum())


def log_importance_weights(model: SequenceModel, seqs: Sequences, num_particles: int) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k | x)`` per particle and sequence, shape ``(num_particles, batch)``.

    Runs the guide once, vectorized over a particle plate left of the sequence plate, and replays
    the model against it (``poutine.trace``/``poutine.replay``). Pyro's own
    ``vectorized_importance_weights`` sums over the sequences too; the FIVO normalisation needs
    them apart, so the per-site log-densities are summed here keeping the sequence dimension.
    A :class:`~pyrosequence.models.PyroProgram` computes them from its own traces
    (:meth:`~pyrosequence.models.PyroProgram.log_importance_weights`).
    """
    if is_whole_program(model):
        return model.log_importance_weights(seqs, num_particles)
    shape = (num_particles, seqs.batch_size)
    with pyro.plate("particles", num_particles, dim=-2):
        x = seqs.as_input  # the gaps (and the covariates) survive the model's own validation
        guide_trace = poutine.trace(model.guide).get_trace(x, seqs.lengths)
        model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, seqs.lengths)
    log_w = seqs.x.new_zeros(shape)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                log_w = log_w + sign * site["log_prob"].expand(shape)
    return log_w


@dataclass(frozen=True)
class ImportanceBound:
    """A bound computed from log importance weights, drawn in chunks of particles.

    ``reduce_chunk`` turns a ``(k, batch)`` chunk into a ``(1, batch)`` summary, so memory does not
    grow with K; ``finish`` combines the summaries of all K particles into a ``(batch,)`` bound.

    The weights come from Pyro traces of the model's ``model``/``guide`` (the reference), or,
    with ``compile`` set, from the per-step engine: a particle filter that never resamples
    (:func:`~pyrosequence.inference.particle_filter.run_filter` with ``ess_threshold = 0``), its
    step compiled (see :mod:`pyrosequence.inference.engine`). Both draw the same distribution of
    weights; a model without per-step pieces describing its program keeps the trace path (with
    a warning).
    """

    name: str
    reduce_chunk: Callable[[torch.Tensor], torch.Tensor]
    finish: Callable[[torch.Tensor, int], torch.Tensor]
    #: Compute the weights with the compiled per-step engine; None = Pyro traces.
    compile: CompileOptions | None = None

    def batch_size(self, num_sequences: int, num_steps: int, num_particles: int) -> int:
        if self.compile is not None:  # the filter streams over time: memory is K x batch states
            return max(1, min(num_sequences, FILTER_PARTICLE_BUDGET // num_particles))
        return max(1, min(num_sequences, PARTICLE_STEP_BUDGET // (num_steps * min(num_particles, 16))))

    def per_sequence(self, model: SequenceModel, seqs: Sequences, num_particles: int, particle_chunk: int | None) -> torch.Tensor:
        by_filter = self.compile is not None and _runs_its_pieces(model)
        if by_filter:
            chunk = particle_chunk or num_particles
        else:
            chunk = particle_chunk or max(1, min(num_particles, PARTICLE_STEP_BUDGET // (seqs.num_steps * seqs.batch_size)))
        summaries, done = [], 0
        while done < num_particles:
            k = min(chunk, num_particles - done)
            if by_filter:  # no resampling: the final weights are K independent importance weights
                log_w = run_filter(model, seqs, k, get_resampler("multinomial"), 0.0, compile=self.compile)[1]
            else:
                log_w = log_importance_weights(model, seqs, k)
            summaries.append(self.reduce_chunk(log_w))
            done += k
        return self.finish(torch.cat(summaries), num_particles)


def _runs_its_pieces(model) -> bool:
    """Whether the per-step engine can compute ``model``'s importance weights (else warn)."""
    if has_pieces(model):
        return True
    warnings.warn(
        f"compile: {type(model).__name__} has no per-step pieces describing its program, so its importance "
        "weights come from Pyro traces, not from the compiled per-step engine",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


@dataclass(frozen=True)
class FilteringBound:
    """The FIVO bound: ``log p_hat(x)`` of a particle filter (:func:`particle_filter`).

    All K particles of a sequence must be filtered together (resampling couples them), but the
    filter streams over time and keeps no graph when evaluating, so its memory is that of
    ``K x batch`` states; sequences are batched to keep that under ``FILTER_PARTICLE_BUDGET``.
    """

    resampler: str | Resampler = "multinomial"
    ess_threshold: float = 0.5
    name: str = "fivo"
    #: Compile the filter's step (see :mod:`pyrosequence.inference.engine`); None = eager.
    compile: CompileOptions | None = None

    def __post_init__(self) -> None:
        check_filter_options(1, self.ess_threshold)
        get_resampler(self.resampler)

    def batch_size(self, num_sequences: int, num_steps: int, num_particles: int) -> int:
        return max(1, min(num_sequences, FILTER_PARTICLE_BUDGET // num_particles))

    def per_sequence(self, model: SequenceModel, seqs: Sequences, num_particles: int, particle_chunk: int | None) -> torch.Tensor:
        resampler = get_resampler(self.resampler)
        return particle_filter(model, seqs, num_particles, resampler, self.ess_threshold, compile=self.compile).log_z


Bound = ImportanceBound | FilteringBound

#: name -> factory(resampler=..., ess_threshold=..., compile=...) -> bound; importance bounds
#: ignore the filter options.
BOUNDS: dict[str, Callable[..., Bound]] = {
    # mean of K one-sample ELBOs
    "elbo": lambda compile=None, **_: ImportanceBound(
        "elbo", lambda w: w.sum(0, keepdim=True), lambda s, k: s.sum(0) / k, compile
    ),
    # log (1/K) sum_k w_k  (Burda et al., 2016)
    "iwae": lambda compile=None, **_: ImportanceBound(
        "iwae", lambda w: w.logsumexp(0, keepdim=True), lambda s, k: s.logsumexp(0) - math.log(k), compile
    ),
    # log p_hat(x) of a particle filter (Maddison et al., 2017)
    "fivo": lambda resampler="multinomial", ess_threshold=0.5, compile=None: FilteringBound(
        resampler, ess_threshold, compile=compile
    ),
}


def make_bound(
    name: str,
    resampler: str | Resampler = "multinomial",
    ess_threshold: float = 0.5,
    compile: bool | str | CompileOptions = False,
) -> Bound:
    """The bound called ``name`` (see :data:`BOUNDS`); the filter options apply to ``"fivo"``.

    ``compile`` computes the bound with the compiled per-step engine
    (:mod:`pyrosequence.inference.engine`): the particle filter for ``"fivo"``, a filter that
    never resamples for ``"elbo"`` and ``"iwae"``; default: eager, and Pyro traces for the
    importance bounds."""
    if name not in BOUNDS:
        raise ValueError(f"unknown bound {name!r}; choose one of: {', '.join(sorted(BOUNDS))}")
    return BOUNDS[name](resampler=resampler, ess_threshold=ess_threshold, compile=compile_options(compile))


@contextlib.contextmanager
def evaluation_mode(model: SequenceModel):
    """``model.eval()`` for the duration, then the previous mode: training-only terms of a model
    (e.g. Z-Forcing's auxiliary factor) never enter a reported bound."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def evaluate(
    model: SequenceModel,
    x: torch.Tensor,
    lengths: torch.Tensor | None = None,
    bound: str | Bound = "elbo",
    num_particles: int = 1,
    batch_size: int | None = None,
    particle_chunk: int | None = None,
    seed: int | None = None,
    compile: bool | str | CompileOptions = False,
    group=None,
) -> EvaluationResult:
    """Evaluate ``bound`` with ``num_particles`` particles on every sequence of ``x``.

    Args:
        model: a :class:`SequenceModel`, or a :class:`~pyrosequence.models.PyroProgram` (importance
            bounds only: ``"fivo"`` raises :class:`~pyrosequence.models.PiecesRequiredError`).
        x: ``(batch, time, x_dim)`` padded sequences.
        lengths: ``(batch,)`` lengths or ``None`` for full-length sequences.
        bound: ``"elbo"`` (the mean of ``num_particles`` one-sample ELBOs), ``"iwae"``
            (``log mean_k w_k``, Burda et al.), ``"fivo"`` (a particle filter with multinomial
            resampling at ESS < K/2), or a bound object from :func:`make_bound` (e.g.
            ``make_bound("fivo", resampler="systematic")``).
        num_particles: K. Sequences are processed in batches, and importance particles in
            chunks, so that ``K = 1024`` fits in memory.
        batch_size: sequences per pass (default: from the bound's memory budget).
        particle_chunk: importance particles per pass (default: from ``PARTICLE_STEP_BUDGET``).
        seed: ``None`` (default): the draws come from the global random stream, block after
            block. An integer: block ``j`` (sequences ``j * batch_size`` onwards) draws from its
            own stream, seeded with :func:`block_seed` ``(seed, j)``, and the global stream is
            left untouched; the result then depends only on (seed, batch_size), not on which
            process scores which block (``group``).
        compile: compute the bound with the compiled per-step engine (see :func:`make_bound`);
            with a bound object, a true value replaces that object's setting.
        group: the processes sharing the evaluation (a
            :class:`~pyrosequence.training.distributed.DataParallel` of a torchrun launch, or any
            object with ``rank``, ``world_size`` and ``sum(tensor)``), or ``None``. Every process
            holds all of ``x``; block ``j`` is scored by process ``j % world_size`` and the
            per-sequence bounds are summed into one vector on every process (each entry is
            non-zero on one process only, so the sum is exact). Needs an integer ``seed``; the
            result equals the one-process ``evaluate(..., seed=seed, batch_size=block_size)``.
            The default block size is then capped at ``ceil(n / world_size)`` so every process
            has work.

    Returns:
        :class:`EvaluationResult` with ``log_likelihood`` per sequence, ``per_timestep`` and
        ``per_element`` (per observed element: NaN in ``x`` marks a missing value).
    """
    if isinstance(bound, str):
        rule = make_bound(bound, compile=compile)
    else:
        rule = dataclasses.replace(bound, compile=compile_options(compile)) if compile else bound
    check_filter_options(num_particles, 0.0)
    if isinstance(rule, FilteringBound):
        require_pieces(model, f"the {rule.name} bound")
    if group is not None and seed is None:
        raise ValueError("an evaluation shared by processes needs an integer seed (each block draws from its own "
                         "seeded stream, so the figure does not depend on which process scores it)")
    seqs = model.prepare(x, lengths)
    n = seqs.batch_size
    if batch_size is None:
        batch_size = rule.batch_size(n, seqs.num_steps, num_particles)
        if group is not None:
            batch_size = min(batch_size, math.ceil(n / group.world_size))
    blocks = None if group is None else range(group.rank, math.ceil(n / batch_size), group.world_size)
    scores = score_blocks(model, seqs, rule, num_particles, batch_size, particle_chunk, seed, blocks)
    if group is None:
        log_likelihood = torch.cat([scores[j] for j in sorted(scores)])
    else:
        mine = seqs.x.new_zeros(n, dtype=torch.float64)
        for j, values in scores.items():
            mine[j * batch_size : j * batch_size + len(values)] = values.to(torch.float64)
        log_likelihood = group.sum(mine).to(seqs.x.dtype)
    check_bounds(rule.name, num_particles, log_likelihood)
    return EvaluationResult(rule.name, num_particles, log_likelihood, seqs.lengths.clone(), seqs.num_observed(),
                            batch_size)


def log_jacobian(x: torch.Tensor, lengths: torch.Tensor | None, scale) -> torch.Tensor:
    """``(batch,)``: what each sequence's log-density gains in the data's own units when ``x`` is
    the data standardised as ``x = (data - mean) / scale``: ``-log scale[d]`` for every observed
    element ``(t, d)`` within its length (a missing element adds nothing, as it adds nothing to a
    bound)."""
    seqs = check_sequences(x, lengths)  # the library's own notion of the observed elements
    scale = torch.as_tensor(scale, dtype=torch.float64, device=seqs.x.device)
    if scale.shape != (seqs.x.shape[-1],) or not bool((scale > 0).all()):
        raise ValueError(f"scale must be {seqs.x.shape[-1]} positive factors, got {scale.tolist()}")
    counted = torch.ones_like(seqs.x, dtype=torch.bool) if seqs.observed is None else seqs.observed
    if seqs.mask is not None:
        counted = counted & seqs.mask[..., None]
    return -(counted.to(torch.float64) * scale.log()).sum((1, 2))


def in_data_units(result: EvaluationResult, x: torch.Tensor, lengths: torch.Tensor | None,
                  scale: torch.Tensor) -> EvaluationResult:
    """``result`` (a bound on ``x``, data standardised as ``x = (data - mean) / scale``) as a bound
    on the data in its own units: the density of the data is that of ``x`` times the Jacobian
    ``1 / prod(scale)`` of each observed time step (:func:`log_jacobian`). Papers that report a
    likelihood on raw data they standardised internally (e.g. the VHRNN paper's stock figures)
    are compared in these units.
    """
    if x.dim() != 3 or x.shape[0] != result.log_likelihood.shape[0]:
        raise ValueError(f"x must be the (batch, time, x_dim) sequences the result scores "
                         f"({result.log_likelihood.shape[0]} of them), got shape {tuple(x.shape)}")
    shift = log_jacobian(x, lengths, scale).to(result.log_likelihood.device)
    log_likelihood = result.log_likelihood.to(torch.float64) + shift
    return dataclasses.replace(result, log_likelihood=log_likelihood.to(result.log_likelihood.dtype))


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block``'s draws in an evaluation seeded with ``seed``."""
    return (int(seed) * 1_000_003 + 104_729 * (int(block) + 1)) % 2**63


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Draws from a stream seeded with ``seed`` (on ``device``), restoring the global stream after;
    ``seed=None``: the global stream itself."""
    if seed is None:
        yield
        return
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for dev in cuda:
            with torch.cuda.device(dev):
                torch.cuda.manual_seed(seed)
        yield


def score_blocks(
    model: SequenceModel,
    seqs: Sequences,
    rule: Bound,
    num_particles: int,
    batch_size: int,
    particle_chunk: int | None = None,
    seed: int | None = None,
    blocks=None,
) -> dict[int, torch.Tensor]:
    """The per-sequence bounds of the blocks of ``batch_size`` sequences of ``seqs`` (prepared by
    the model), unchecked: ``{j: bounds of sequences j*batch_size ...}``, for every block or those
    in ``blocks``. ``seed``: see :func:`evaluate`."""
    n = seqs.batch_size
    chosen = range(math.ceil(n / batch_size)) if blocks is None else blocks
    out = {}
    with torch.no_grad(), evaluation_mode(model):
        for j in chosen:
            rows = slice(j * batch_size, (j + 1) * batch_size)
            part = seqs.rows(rows)
            with _seeded(None if seed is None else block_seed(seed, j), seqs.x.device):
                out[j] = rule.per_sequence(model, part, num_particles, particle_chunk)
    return out


def check_bounds(name: str, num_particles: int, log_likelihood: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the first sequence whose bound is not finite."""
    bad = (~torch.isfinite(log_likelihood)).nonzero()
    if len(bad):
        b = int(bad[0, 0])
        value = float(log_likelihood[b])
        why = "the model gives it zero density" if value == -math.inf else "the computation overflowed"
        raise ValueError(
            f"the {name}({num_particles}) bound of sequence {b} is {value} ({why}; check the data's scale "
            "and the weights)"
        )
