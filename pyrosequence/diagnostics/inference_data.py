"""A trained sequence model and its data as an ArviZ ``InferenceData``.

There is no standard path from a Pyro SVI sequence model to ArviZ (arviz issue 2453, numpyro
issue 349); this module is one. Install ArviZ with ``pip install -e ".[diagnostics]"``.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch

import pyro
import pyro.poutine as poutine

from pyrosequence.data.checks import Sequences
from pyrosequence.diagnostics.step_bounds import IMPORTANCE_BOUNDS, step_log_likelihood
from pyrosequence.models.core.base import SequenceModel
from pyrosequence.models.core.program import PyroProgram, pieces_error

#: Bounds whose per-step terms fill the ``log_likelihood`` group.
BOUND_NAMES = ("fivo",) + IMPORTANCE_BOUNDS
#: Where the latent trajectories of the ``posterior`` group come from.
LATENT_SOURCES = ("guide", "filter")
#: Cap on particles x sequences x steps of one pass of the importance bounds.
_STEP_BUDGET = 2**18


def require_arviz():
    """Import ArviZ, or say how to install it."""
    try:
        import arviz
    except ImportError:
        raise ImportError('diagnostics need ArviZ: pip install -e ".[diagnostics]"') from None
    return arviz


def _nan_beyond(values: torch.Tensor, valid: torch.Tensor, lead: int = 0) -> np.ndarray:
    """``values`` (``lead`` draw dims, then ``(B, T, ...)``) as float64 numpy, NaN where ``valid``
    (``(B, T)``) is False."""
    array = values.detach().to("cpu", torch.float64).numpy().copy()
    index = (slice(None),) * lead + (~valid.cpu().numpy(),)
    array[index] = np.nan
    return array


def known_covariates(seqs: Sequences, starts: torch.Tensor, horizon: int) -> torch.Tensor | None:
    """The covariates of the ``horizon`` steps after each sequence's ``starts[b]``, as far as
    every sequence knows them (a forecast refuses to go further, naming the missing steps);
    ``None`` for data without covariates."""
    if seqs.covariates is None:
        return None
    known = max(0, min(horizon, int((seqs.lengths - starts).min())))
    rows = torch.arange(known, device=starts.device)[None] + starts[:, None]  # (B, known)
    return seqs.covariates.gather(1, rows[..., None].expand(-1, -1, seqs.covariates.shape[-1]))


def guide_latents(model: SequenceModel, seqs: Sequences, num_samples: int) -> torch.Tensor:
    """``num_samples`` draws of ``z_{0:T-1}`` from the guide, shape ``(S, B, T, Z)``: the guide is
    traced once under a plate of ``num_samples`` left of the sequence plate."""
    with torch.no_grad(), pyro.plate("draws", num_samples, dim=-2):
        trace = poutine.trace(model.guide).get_trace(seqs.as_input, seqs.lengths)
    z = [trace.nodes[name]["value"] for name in model.latent_sites(seqs.num_steps)]
    return torch.stack([v.expand(num_samples, seqs.batch_size, model.z_dim) for v in z], dim=2)


def _importance_steps(model: SequenceModel, seqs: Sequences, bound: str, num_particles: int) -> torch.Tensor:
    rows = max(1, _STEP_BUDGET // (num_particles * seqs.num_steps))
    out = []
    for start in range(0, seqs.batch_size, rows):
        part = slice(start, start + rows)
        out.append(step_log_likelihood(model, seqs.rows(part), bound, num_particles))
    return torch.cat(out)


def _check_options(num_samples, num_particles, bound, latents, prefix_len, horizon, steps) -> None:
    for name, value in (("num_samples", num_samples), ("num_particles", num_particles)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if bound not in BOUND_NAMES:
        raise ValueError(f"unknown bound {bound!r}; choose one of: {', '.join(BOUND_NAMES)}")
    if latents not in LATENT_SOURCES:
        raise ValueError(f"unknown latent source {latents!r}; choose one of: {', '.join(LATENT_SOURCES)}")
    if (prefix_len is None) != (horizon is None):
        raise ValueError("forecasts need both prefix_len and horizon (or neither)")
    if prefix_len is not None:
        if not isinstance(prefix_len, int) or not 1 <= prefix_len <= steps:
            raise ValueError(f"prefix_len must be an integer in [1, {steps}], got {prefix_len!r}")
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")


def to_inference_data(
    model: SequenceModel,
    x: torch.Tensor,
    lengths: torch.Tensor | None = None,
    num_samples: int = 100,
    num_particles: int = 100,
    bound: str | None = None,
    prefix_len: int | None = None,
    horizon: int | None = None,
    latents: str = "guide",
    resampler: str = "multinomial",
    ess_threshold: float = 0.5,
    feature_names: Sequence[str] | None = None,
):
    """Predictive draws, latent trajectories and per-step log-likelihoods of ``model`` on ``x``
    as an :class:`arviz.InferenceData`.

    ``B`` sequences of ``T`` steps and ``D`` features, ``S = num_samples`` draws, ``Z = z_dim``,
    ``H = horizon``. Every array is NaN beyond a sequence's length. The model's parameters are
    point estimates, so there is one chain, and the ``draw`` dimension counts Monte Carlo draws
    of latent variables and observations, not of parameters.

    Groups (variable: dims, shape):

    - ``observed_data``: ``x``: ``(sequence, time, feature)``, ``(B, T, D)``.
    - ``posterior_predictive``: ``x``: ``(chain, draw, sequence, time, feature)``, ``(1, S, B, T, D)``:
      one-step-ahead draws ``x_t ~ p(x_t | x_<t)``, from a particle filter of ``num_particles``
      particles that has seen ``x_<t`` (:func:`~pyrosequence.diagnostics.forecast.one_step_predictive`).
      With ``prefix_len`` and ``horizon`` also ``x_forecast``: ``(chain, draw, sequence, horizon,
      feature)``, ``(1, S, B, H, D)``: multi-step forecasts sampled forward from the filter's
      state after the first ``min(prefix_len, length)`` steps
      (:func:`~pyrosequence.diagnostics.forecast.forecast`); step ``h`` is time
      ``prefix_lengths[b] + h`` (``constant_data``). Forecasts are not masked by length.
    - ``log_likelihood``: ``x``: ``(chain, draw, sequence, time)``, ``(1, 1, B, T)``: the per-step
      terms of ``bound``, which sum over time to the bound of each sequence; ``x_sequence``:
      ``(chain, draw, sequence)``, ``(1, 1, B)``, that sum. ``"fivo"``: the filter's log
      increments ``log p_hat(x_t | x_<t)`` (the same filter as the predictive draws);
      ``"elbo"``/``"iwae"``: :func:`~pyrosequence.diagnostics.step_bounds.step_log_likelihood`
      with ``num_particles`` importance samples. These are bounds (estimates of lower bounds) on
      ``log p(x)``, not pointwise likelihoods per posterior draw: ``az.loo``/``az.waic`` do not apply.
    - ``posterior`` (only when ``z_dim > 0``): ``z``: ``(chain, draw, sequence, time, latent)``,
      ``(1, S, B, T, Z)``: latent trajectories. ``latents="guide"`` (default): joint draws
      ``z_{0:T-1} ~ q(z | x)`` from the guide (the variational posterior, which may look at the
      whole sequence). ``latents="filter"``: the ``z_t`` drawn with the one-step predictive
      samples, i.e. from the filter's predictive ``p(z_t | x_<t)``, which has not seen ``x_t``.
    - ``constant_data``: ``lengths``: ``(sequence,)``; with forecasts ``prefix_lengths``: ``(sequence,)``.
    - ``filter_stats`` (the particle filter behind the predictive draws): ``ess``: ``(sequence,
      time)``, effective sample size after each step's reweighting; ``resampled``: ``(sequence,
      time)``, 1.0 where the filter resampled after the step; ``predictive_mean`` and
      ``predictive_variance``: ``(sequence, time, feature)``, moments of ``p(x_t | x_<t)``.

    Coordinates: ``sequence``, ``time``, ``horizon`` and ``latent`` count from 0; ``feature`` is
    ``feature_names`` or counts from 0. The settings of the call are the attributes of the
    ``filter_stats`` group (``idata.filter_stats.attrs``): ``bound``, ``num_particles``,
    ``num_samples``, ``latents``, ``resampler``, ``ess_threshold``, ``model``.

    ``bound=None`` means ``"fivo"`` for a SequenceModel and ``"iwae"`` for a plain Pyro program.

    A :class:`~pyrosequence.models.PyroProgram` gets the groups that need only traces (see
    :func:`program_inference_data`); the particle filter's groups, ``latents="filter"`` and
    forecasts raise :class:`~pyrosequence.models.PiecesRequiredError`.

    Set Pyro's seed beforehand (``pyro.set_rng_seed``) for reproducible draws.
    """
    if isinstance(model, PyroProgram):
        if bound == "fivo":
            raise pieces_error(model, "the fivo bound")
        if latents == "filter":
            raise pieces_error(model, "latents='filter' (draws from the particle filter)")
        if prefix_len is not None or horizon is not None:
            raise pieces_error(model, "forecasting through the particle filter")
        return program_inference_data(
            model, x, lengths, num_samples=num_samples, num_particles=num_particles,
            bound=bound or "iwae", feature_names=feature_names,
        )
    bound = bound or "fivo"
    az = require_arviz()
    import xarray as xr

    from pyrosequence.diagnostics.forecast import forecast, one_step_predictive

    seqs = model.prepare(x, lengths)
    batch, steps, dim = seqs.batch_size, seqs.num_steps, model.x_dim
    _check_options(num_samples, num_particles, bound, latents, prefix_len, horizon, steps)
    if feature_names is not None and len(feature_names) != dim:
        raise ValueError(f"feature_names has {len(feature_names)} names for {dim} features")
    valid = seqs.mask if seqs.mask is not None else torch.ones(batch, steps, dtype=torch.bool, device=seqs.x.device)
    coords = {
        "chain": [0],
        "draw": np.arange(num_samples),
        "sequence": np.arange(batch),
        "time": np.arange(steps),
        "feature": list(feature_names) if feature_names is not None else np.arange(dim),
    }
    was_training = model.training
    model.eval()
    try:
        pred = one_step_predictive(
            model, seqs.as_input, seqs.lengths, num_samples=num_samples, num_particles=num_particles,
            resampler=resampler, ess_threshold=ess_threshold,
        )
        if bound == "fivo":
            steps_ll = pred.log_increments
        else:
            steps_ll = _importance_steps(model, seqs, bound, num_particles)
        z = None
        if model.z_dim:
            z = guide_latents(model, seqs, num_samples) if latents == "guide" else pred.latents
        fc = None
        if prefix_len is not None:
            prefix_lengths = seqs.lengths.clamp(max=prefix_len)
            fc = forecast(
                model, seqs.as_input[:, :prefix_len], prefix_lengths, horizon=horizon,
                num_samples=num_samples, num_particles=num_particles,
                future_covariates=known_covariates(seqs, prefix_lengths, horizon),
            )
    finally:
        model.train(was_training)

    obs = ("sequence", "time", "feature")
    draws = ("chain", "draw")
    predictive = {"x": (draws + obs, _nan_beyond(pred.samples, valid, lead=1)[None])}
    if fc is not None:
        coords["horizon"] = np.arange(horizon)
        predictive["x_forecast"] = (draws + ("sequence", "horizon", "feature"), fc.samples.detach().cpu().double().numpy()[None])
    per_step = _nan_beyond(steps_ll, valid)
    log_lik = {
        "x": (draws + ("sequence", "time"), per_step[None, None]),
        "x_sequence": (draws + ("sequence",), np.nansum(per_step, axis=-1)[None, None]),
    }
    constant = {"lengths": (("sequence",), seqs.lengths.cpu().numpy())}
    if fc is not None:
        constant["prefix_lengths"] = (("sequence",), fc.prefix_lengths.cpu().numpy())
    attrs = {
        "bound": bound, "num_particles": num_particles, "num_samples": num_samples, "latents": latents,
        "resampler": str(resampler), "ess_threshold": float(ess_threshold), "model": type(model).__name__,
    }
    stats = {
        "ess": (("sequence", "time"), _nan_beyond(pred.ess, valid)),
        "resampled": (("sequence", "time"), _nan_beyond(pred.resampled.double(), valid)),
        "predictive_mean": (obs, _nan_beyond(pred.mean, valid)),
        "predictive_variance": (obs, _nan_beyond(pred.variance, valid)),
    }

    def dataset(variables: dict, **extra) -> "xr.Dataset":
        sizes = {d: n for dims, array in variables.values() for d, n in zip(dims, array.shape)}
        own = {k: (np.arange(sizes[k]) if k == "draw" else v) for k, v in coords.items() if k in sizes}
        return xr.Dataset(variables, coords=own, **extra)

    groups = {
        "posterior_predictive": dataset(predictive),
        "log_likelihood": dataset(log_lik),
        "observed_data": dataset({"x": (obs, _nan_beyond(seqs.x_with_nan, valid))}),  # NaN where missing
        "constant_data": dataset(constant),
        "filter_stats": dataset(stats, attrs=attrs),
    }
    if z is not None:
        coords["latent"] = np.arange(model.z_dim)
        groups = {"posterior": dataset({"z": (draws + ("sequence", "time", "latent"), _nan_beyond(z, valid, lead=1)[None])}), **groups}
    return az.InferenceData(**groups)



def _stack_steps(names: Sequence[str], steps: int) -> tuple[dict[str, list[str]], list[str]]:
    """Sites named ``base_0 ... base_{T-1}`` (one per step) grouped under ``base``; the others alone."""
    by_base: dict[str, dict[int, str]] = {}
    for name in names:
        match = re.fullmatch(r"(.+)_(\d+)", name)
        if match:
            by_base.setdefault(match.group(1), {})[int(match.group(2))] = name
    stacked = {
        base: [sites[t] for t in range(steps)]
        for base, sites in by_base.items()
        if sorted(sites) == list(range(steps)) and base not in names
    }
    grouped = {name for sites in stacked.values() for name in sites}
    return stacked, [name for name in names if name not in grouped]


def _program_variables(draws: dict[str, torch.Tensor], names: Sequence[str], seqs: Sequences, valid: torch.Tensor) -> tuple[dict, dict]:
    """ArviZ variables ``(dims, array)`` of site draws ``(S, B, ...)``; per-step sites stacked
    over time and NaN beyond each length. Returns the variables and extra coordinates."""
    batch, steps = seqs.batch_size, seqs.num_steps
    stacked, single = _stack_steps(list(names), steps)
    values = {base: torch.stack([draws[n] for n in sites], dim=2) for base, sites in stacked.items()}
    values.update({name: draws[name] for name in single})
    variables, coords = {}, {}
    for name, value in values.items():
        if value.dim() >= 2 and value.shape[1] == batch:
            timed = value.dim() >= 3 and value.shape[2] == steps
            head = ("sequence", "time") if timed else ("sequence",)
            rest = [f"{name}_dim_{i}" for i in range(value.dim() - 1 - len(head))]
            array = _nan_beyond(value, valid, lead=1) if timed else value.detach().to("cpu", torch.float64).numpy()
        else:  # not laid out per sequence (a program with several plate levels): its own dims
            head, rest = (), [f"{name}_dim_{i}" for i in range(value.dim() - 1)]
            array = value.detach().to("cpu", torch.float64).numpy()
        for dim, size in zip(rest, value.shape[1 + len(head):]):
            coords[dim] = np.arange(size)
        variables[name] = (("chain", "draw") + head + tuple(rest), array[None])
    return variables, coords


def program_inference_data(
    model: PyroProgram,
    x: torch.Tensor,
    lengths: torch.Tensor | None = None,
    num_samples: int = 100,
    num_particles: int = 100,
    bound: str = "iwae",
    feature_names: Sequence[str] | None = None,
):
    """A plain Pyro program (:class:`~pyrosequence.models.PyroProgram`) and its data as an
    :class:`arviz.InferenceData`, from traces only.

    ``S = num_samples`` draws; ``B`` sequences of ``T`` steps. Sites named ``name_0 ...
    name_{T-1}`` (one per step) are stacked into one variable ``name`` with a ``time`` dimension
    and are NaN beyond each sequence's length; other sites keep their own shape (a dimension of
    size ``T`` right after ``sequence`` is taken as ``time`` and masked too).

    Groups:

    - ``posterior``: every latent site of the guide, ``(chain, draw, sequence, ...)``: joint draws
      ``z ~ q(z | x)`` (the guide run once under a plate of ``S`` draws, or ``S`` times).
    - ``posterior_predictive``: every observed site of the model, redrawn given those latent draws
      by ``pyro.infer.Predictive`` with the observations released (``poutine.uncondition``); its
      attributes say ``program``, ``bound``, ``num_particles`` and ``num_samples``.
    - ``log_likelihood``: ``x_sequence``: ``(chain, draw, sequence)``, ``(1, 1, B)``: the
      ``bound`` (``"elbo"`` or ``"iwae"``) of each sequence with ``num_particles`` importance samples.
      A whole program has no per-step split of the bound, so there is no per-step ``x`` variable.
    - ``observed_data``: ``x``: ``(sequence, time, feature)``; ``constant_data``: ``lengths``.

    There is no ``filter_stats`` group: no particle filter runs (``filter_health`` refuses).
    """
    az = require_arviz()
    import xarray as xr

    from pyrosequence.inference.evaluate import evaluate

    seqs = model.prepare(x, lengths)
    batch, steps, dim = seqs.batch_size, seqs.num_steps, seqs.x.shape[-1]
    _check_options(num_samples, num_particles, bound, "guide", None, None, steps)
    if bound not in IMPORTANCE_BOUNDS:
        raise pieces_error(model, f"the {bound} bound")
    if feature_names is not None and len(feature_names) != dim:
        raise ValueError(f"feature_names has {len(feature_names)} names for {dim} features")
    valid = seqs.mask if seqs.mask is not None else torch.ones(batch, steps, dtype=torch.bool, device=seqs.x.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            draws = model.guide_draws(seqs, num_samples)
            predicted = model.posterior_predictive(seqs, draws, num_samples)
        ll = evaluate(model, seqs.x, seqs.lengths, bound=bound, num_particles=num_particles).log_likelihood
    finally:
        model.train(was_training)
    coords = {
        "chain": [0], "draw": np.arange(num_samples), "sequence": np.arange(batch), "time": np.arange(steps),
        "feature": list(feature_names) if feature_names is not None else np.arange(dim),
    }
    posterior, extra = _program_variables(draws, model.latent_names, seqs, valid)
    predictive, extra_pp = _program_variables(predicted, model.observed_names, seqs, valid)
    coords.update(extra)
    coords.update(extra_pp)
    attrs = {"program": type(model).__name__, "bound": bound, "num_particles": num_particles, "num_samples": num_samples}

    def dataset(variables: dict, **kw) -> "xr.Dataset":
        sizes = {d: n for dims, array in variables.values() for d, n in zip(dims, array.shape)}
        own = {k: (np.arange(sizes[k]) if k == "draw" else v) for k, v in coords.items() if k in sizes}
        return xr.Dataset(variables, coords=own, **kw)

    groups = {
        "posterior_predictive": dataset(predictive, attrs=attrs),
        "log_likelihood": dataset({"x_sequence": (("chain", "draw", "sequence"), ll.detach().cpu().double().numpy()[None, None])}),
        "observed_data": dataset({"x": (("sequence", "time", "feature"), _nan_beyond(seqs.x, valid))}),
        "constant_data": dataset({"lengths": (("sequence",), seqs.lengths.cpu().numpy())}),
    }
    if posterior:
        groups = {"posterior": dataset(posterior), **groups}
    return az.InferenceData(**groups)
