"""The seam between sequence models and inference: :class:`SequenceModel`.

A sequence model is written once as per-step pieces; the full-sequence Pyro ``model`` and ``guide``
are built from them here, generically, and a particle filter (FIVO) drives the very same pieces
with resampling between steps.

Generative story shared by every subclass (``s_t`` is the model's deterministic state)::

    s_0        = initial_state(...)
    z_t        ~ transition(s_{t-1}, t)                 latent site "z_t"
    x_t        ~ emission(s_{t-1}, latent_features(z_t))
    s_t        = update(s_{t-1}, latent_features(z_t), context(x)[:, t])

and the proposal (the guide) is ``z_t ~ proposal(s_{t-1}, t, proposal_context(x)[:, t])``.
Subclasses override those methods; everything else (plates, ``pyro.markov``, masks for ragged
lengths, validation) lives here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.distributions import constraints
from torch.distributions.constraints import Constraint

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.poutine.messenger import Messenger

from pyrosequence.data.checks import Sequences, check_sequences
from pyrosequence.models.core import covariates as cov
from pyrosequence.models.core.missing import mask_elements, partial_step
from pyrosequence.models.core.time_slicing import Context, context_steps, stack_states, time_slices
from pyrosequence.nn.cells import State
from pyrosequence.nn.support import AllOf, check_support, element_support


def _recording_init(init):
    """Wrap a model class's ``__init__`` so that the outermost call (the class actually built)
    records the arguments it was called with (see :attr:`SequenceModel.init_arguments`)."""

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        if "_init_arguments" not in self.__dict__:
            try:
                bound = inspect.signature(init).bind(self, *args, **kwargs)
                bound.apply_defaults()
                recorded = dict(list(bound.arguments.items())[1:])  # without self
            except TypeError:  # a wrong call: the constructor itself raises the error
                recorded = None
            object.__setattr__(self, "_init_arguments", recorded)
        init(self, *args, **kwargs)

    wrapped._records_arguments = True
    return wrapped


def _masked(mask: torch.Tensor | None):
    """``poutine.mask`` for a ragged step; no handler at all when nothing is padded."""
    return contextlib.nullcontext() if mask is None else poutine.mask(mask=mask)


class _DeterministicCollector(Messenger):
    """Takes the ``pyro.deterministic`` sites of a guide's state updates out of the guide trace.

    They describe the model's computation (e.g. VHRNN's generated weights), so the model emits
    them when it reuses the guide's states; keeping them out of the guide trace also keeps it
    free of sites the model lacks, which estimators such as ``TraceMeanField_ELBO`` reject.
    """

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.records: dict[int, list] = {}

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["infer"].get("_deterministic"):
            event_dim = len(msg["fn"].event_shape)
            self.records.setdefault(self.step, []).append((msg["name"], msg["value"], event_dim))
            msg["stop"] = True


@dataclass
class _Recurrence:
    """The recurrence a guide computed, kept so the model can reuse it instead of recomputing.

    Within one ELBO evaluation Pyro runs the guide, then the model replaying the guide's latent
    values (the very same tensor objects). The states depend only on the data, the parameters and
    those values, so the model reuses them when the key (data, lengths, parameter versions, grad
    mode) matches and each replayed value ``is`` the recorded one; otherwise it recomputes.
    """

    key: tuple
    context: Context
    initial: State
    latents: list = field(default_factory=list)  # z_t as sampled by the guide
    features: list = field(default_factory=list)  # latent_features(z_t)
    states: list = field(default_factory=list)  # s_t after update
    deterministic: dict = field(default_factory=dict)  # step -> [(name, value, event_dim)]


def refuse_other_device(x, device: torch.device, owner: str) -> None:
    """Raise a one-line ``ValueError`` when tensor ``x`` is not on ``device`` (where ``owner``, a
    model's name, keeps its weights), naming both devices and the move that fixes it."""
    if isinstance(x, torch.Tensor) and x.device != device:
        raise ValueError(
            f"x is on device {x.device} but {owner} is on {device}: move the data with "
            f"x.to({str(device)!r}) (or the model with model.to({str(x.device)!r})) before calling it"
        )


class SequenceModel(nn.Module):
    """Base class for latent-variable sequence models written as per-step pieces.

    Subclasses implement :meth:`initial_state`, :meth:`transition`, :meth:`emission`,
    :meth:`update` and :meth:`proposal` (and optionally :meth:`context`,
    :meth:`proposal_context`, :meth:`latent_features`, :attr:`emission_support`,
    :meth:`check_data`). Every piece must
    broadcast over arbitrary leading batch dimensions: the guide adds a particle dimension under
    ``vectorize_particles=True``, a particle filter adds one per sequence, and the model evaluates
    :meth:`emission` once for all steps with time stacked at dimension ``-2`` of the state.

    A model with ``z_dim = 0`` is deterministic (an RNN with an output distribution): it has no
    latent sites, its guide is empty, and every bound equals its exact log-likelihood.

    Shapes: ``x`` is ``(batch, time, x_dim)``; ``lengths`` is ``(batch,)`` integer or ``None``.
    Latent sites are named ``z_0 ... z_{T-1}`` (``latent_name``), each with event shape
    ``(z_dim,)``; the observations form one site ``x`` with event shape ``(time, x_dim)``, masked
    beyond each sequence's length, and per element where a value is missing (NaN in ``x``: see
    :mod:`pyrosequence.models.core.missing`). Handlers such as ``poutine.scale`` or
    :func:`pyrosequence.inference.scale_latents` find the latent sites by type (unobserved).
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_records_arguments", False):
            cls.__init__ = _recording_init(init)

    @property
    def init_arguments(self) -> dict | None:
        """The arguments this instance's class constructor was called with, defaults filled in
        (``{"x_dim": 4, "z_dim": 2, "hidden_dim": 64, ...}``; a ``**kwargs`` parameter appears
        under its own name as a dict), or ``None`` when they were not recorded. Recorded
        automatically for every subclass that defines ``__init__``; :func:`pyrosequence.training.train`
        reads them to record in the run directory how to rebuild a model instance it is given."""
        recorded = self.__dict__.get("_init_arguments")
        return None if recorded is None else dict(recorded)

    latent_name = "z"
    obs_name = "x"
    #: Set to True when :meth:`transition` ignores ``t`` and broadcasts over a time dimension
    #: stacked at ``-2`` of the state; the model then evaluates the prior for all steps at once.
    homogeneous_transition = False
    #: Set to True by a subclass whose overridden ``model``/``guide`` compute the same program as the
    #: per-step pieces (e.g. a batched fast path; training-only extras such as an auxiliary factor
    #: aside), so that FIVO may drive the pieces instead.
    overrides_match_pieces = False
    #: Set to True when every piece computes the same function at every step ``t`` (``t`` only
    #: names ``pyro.deterministic`` sites): a compiled particle filter
    #: (:mod:`pyrosequence.inference.engine`) then compiles one step for all ``t``; without it the
    #: compiled filter runs this model's step eagerly, with a warning.
    time_invariant_pieces = False

    def __init__(self, x_dim: int, z_dim: int, name: str | None = None, mask_inputs: bool = False,
                 covariate_dim: int = 0) -> None:
        super().__init__()
        if int(x_dim) < 1 or int(z_dim) < 0:
            raise ValueError(f"x_dim must be positive and z_dim non-negative, got x_dim={x_dim}, z_dim={z_dim}")
        if not isinstance(mask_inputs, bool):
            raise ValueError(f"mask_inputs must be true or false, got {mask_inputs!r}")
        self.x_dim = int(x_dim)
        self.z_dim = int(z_dim)
        #: The number of covariate columns: known inputs ``u_t`` that follow the ``x_dim``
        #: observation columns of ``x`` and are read, never emitted
        #: (:mod:`pyrosequence.models.core.covariates`). 0: a model without covariates.
        self.covariate_dim = cov.check_covariate_dim(covariate_dim)
        #: The networks read ``x`` with the observation mask as ``x_dim`` extra features
        #: (:meth:`network_input`); set for data with missing values (``train`` does it).
        self.mask_inputs = mask_inputs
        # A unique name keeps parameters of different instances apart in Pyro's param store.
        self.pyro_name = name or f"{type(self).__name__.lower()}_{uuid.uuid4().hex[:8]}"
        self._recurrence: _Recurrence | None = None
        self.final_state: State | None = None
        #: Subtracted from x before it enters the networks (not from the likelihood's target):
        #: the mean-centring of inputs of the VHRNN paper (appendix C) and the FIVO code.
        self.register_buffer("input_offset", torch.zeros(self.x_dim))

    #: Version 2 added the ``input_offset`` buffer; older checkpoints load with a zero offset.
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "input_offset"
        if (local_metadata.get("version") or 1) < 2 and key not in state_dict:
            state_dict[key] = torch.zeros_like(self.input_offset)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    @property
    def input_dim(self) -> int:
        """The width of the network input :meth:`network_input` (what :meth:`context`,
        :meth:`proposal_context` and :meth:`initial_state` receive as ``x``): ``x_dim``, or
        ``2 * x_dim`` with :attr:`mask_inputs` (values, then the observation mask), plus
        :attr:`covariate_dim` (the covariates, last). Size the layers that read ``x`` with it."""
        return (2 * self.x_dim if self.mask_inputs else self.x_dim) + self.covariate_dim

    def network_input(self, seqs: Sequences) -> torch.Tensor:
        """What the networks read for the batch ``seqs``: ``seqs.x`` (padding and missing
        elements zero-filled), and with :attr:`mask_inputs` the observation mask concatenated
        as ``x_dim`` more features (1 = observed, 0 = missing; padding reads as observed
        zeros), ``(batch, time, input_dim)``; the covariates, when the model has them, are
        its last :attr:`covariate_dim` features."""
        x = seqs.x if seqs.observed is None else seqs.x.masked_fill(~seqs.observed, 0.0)
        if self.mask_inputs:
            observed = (x.new_ones(()).expand(x.shape) if seqs.observed is None else seqs.observed.to(x.dtype))
            x = torch.cat([x, observed], -1)
        if self.covariate_dim:
            x = torch.cat([x, seqs.covariates], -1)
        return x

    def split_covariates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A network input ``(..., input_dim)`` split into what precedes the covariates (values,
        and the mask with :attr:`mask_inputs`) and the covariates ``(..., covariate_dim)``."""
        return x.split([x.shape[-1] - self.covariate_dim, self.covariate_dim], -1)

    def centered(self, x: torch.Tensor) -> torch.Tensor:
        """``x - input_offset``: the network input for data ``x`` (from :meth:`network_input`).
        With :attr:`mask_inputs` only the values are centred, and a missing value stays zero
        (the training mean) after centring; the mask features and the covariates pass unchanged."""
        if self.covariate_dim and x.shape[-1] == self.input_dim:
            rest, u = self.split_covariates(x)
            return torch.cat([self.centered_values(rest), u], -1)
        return self.centered_values(x)

    def centered_values(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`centered` of a network input without covariates."""
        if not self.mask_inputs or x.shape[-1] != 2 * self.x_dim:
            return x - self.input_offset
        values, observed = x.split(self.x_dim, -1)
        return torch.cat([(values - self.input_offset) * observed, observed], -1)

    # ------------------------------------------------------------------ covariates in the state
    def with_covariates(self, state: State, x: torch.Tensor, batch_shape: torch.Size) -> State:
        """``state`` as :meth:`initial_state` returns it: unchanged without covariates; else
        ``(state, u_0)`` with ``u_0`` the first step's covariates of the network input ``x``,
        broadcast to ``batch_shape`` (see :mod:`pyrosequence.models.core.covariates`)."""
        if not self.covariate_dim:
            return state
        return cov.attach(state, cov.first_covariates(x, self.covariate_dim), batch_shape)

    def model_state(self, state: State) -> State:
        """The model's own part of ``state``: ``state`` itself without covariates, else the
        ``model_state`` of ``(model_state, u_t)``."""
        return cov.split_state(state)[0] if self.covariate_dim else state

    def state_covariates(self, state: State) -> torch.Tensor | None:
        """``u_t``, the covariates of the step ``state`` precedes (``None`` without covariates)."""
        return cov.split_state(state)[1] if self.covariate_dim else None

    def next_state(self, state: State, model_state: State, u_next: torch.Tensor | None) -> State:
        """What :meth:`update` returns from the state ``state`` it was given: the new
        ``model_state``, with ``u_{t+1}`` (the context's :meth:`next_covariates` part) attached,
        broadcast like the covariates ``state`` carried, when the model has covariates."""
        if not self.covariate_dim:
            return model_state
        carried = cov.split_state(state)[1]
        return cov.attach(model_state, u_next, torch.broadcast_shapes(u_next.shape[:-1], carried.shape[:-1]))

    def next_covariates(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, U)`` with ``u_{t+1}`` at step ``t`` for a network input ``x``: the
        part of :meth:`context` that carries the next step's covariates to :meth:`update`."""
        return cov.next_step_covariates(self.split_covariates(x)[1])

    def continue_state(self, state: State, x: torch.Tensor) -> State:
        """The state a window that continues a sequence starts from (truncated backpropagation
        through time, a forecast): ``state`` itself, or with covariates ``state`` with the
        covariates of the window's first step (network input ``x``) attached in place of those
        it carried (zero after the earlier window's last step: unknown there)."""
        if not self.covariate_dim:
            return state
        return self.replace_covariates(state, cov.first_covariates(x, self.covariate_dim))

    def replace_covariates(self, state: State, u: torch.Tensor) -> State:
        """``state`` (of a model with covariates) carrying ``u`` ``(..., U)``, broadcast to the
        state's batch shape, as the covariates of the step it precedes: how a window that
        continues a sequence, or a forecast past its end, hands the model the known inputs."""
        model_state, old = cov.split_state(state)
        return cov.attach(model_state, u, torch.broadcast_shapes(old.shape[:-1], u.shape[:-1]))

    def __getstate__(self) -> dict:
        # The recorded recurrence holds graph tensors of one evaluation: never copy or pickle it.
        return {**self.__dict__, "_recurrence": None, "final_state": None}

    # ------------------------------------------------------------------ per-step pieces
    def context(self, x: torch.Tensor) -> Context:
        """Per-step model inputs computed from ``x`` once per call, ``(batch, time, ...)``.

        Must be causal and pointwise in time (step ``t`` may only use ``x_t``); the default is
        ``x`` minus :attr:`input_offset`.
        """
        return self.centered(x)

    def proposal_context(self, x: torch.Tensor, context: Context, lengths: torch.Tensor) -> Context:
        """Per-step guide inputs (may look at the whole sequence, e.g. a backward RNN, which
        should start at each sequence's own end: ``lengths`` is ``(batch,)``)."""
        return context

    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor) -> State:
        raise NotImplementedError

    def transition(self, state: State, t: int | None) -> dist.Distribution:
        """The prior ``p(z_t | s_{t-1})`` with event shape ``(z_dim,)``.

        ``t`` is ``None`` when a homogeneous transition is evaluated for all steps at once.
        """
        raise NotImplementedError

    def latent_features(self, z: torch.Tensor) -> Any:
        """Features of ``z_t`` shared by :meth:`emission` and :meth:`update` (default: ``z_t``).

        A tensor or a tuple of tensors, each broadcasting like ``z_t``.
        """
        return z

    def emission(self, state: State, z_features: Any) -> dist.Distribution:
        """The likelihood ``p(x_t | s_{t-1}, z_t)`` with event shape ``(x_dim,)``."""
        raise NotImplementedError

    def update(self, state: State, z_features: Any, context_t: Any, t: int) -> State:
        """The deterministic state update ``s_t = f(s_{t-1}, z_t, x_t)`` at step ``t``.

        Values worth inspecting (e.g. generated weights) may be recorded here with
        ``pyro.deterministic(f"name_{t}", value, event_dim=...)``.
        """
        raise NotImplementedError

    def proposal(self, state: State, t: int, proposal_context_t: Any) -> dist.Distribution:
        """The variational posterior ``q(z_t | s_{t-1}, x)`` with event shape ``(z_dim,)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ emission support
    def declaring_heads(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` for the outermost submodules that declare a ``support`` (a
        ``torch.distributions.constraints`` object): the distribution heads of
        :mod:`pyrosequence.nn.heads` and :mod:`pyrosequence.nn.autoregressive`, or a user's own head
        with a ``support`` attribute, whatever attribute name it is stored under. A declaring head's
        own submodules (e.g. the head a hyper output layer wraps) are not listed, nor is anything
        inside a nested :class:`SequenceModel` (which declares its own :attr:`emission_support`)."""
        found: list[tuple[str, nn.Module]] = []

        def walk(module: nn.Module, prefix: str) -> None:
            for name, child in module.named_children():
                path = prefix + name
                if isinstance(child, SequenceModel):
                    continue
                if isinstance(getattr(child, "support", None), Constraint):
                    found.append((path, child))
                else:
                    walk(child, path + ".")

        walk(self, "")
        return found

    def _supports(self) -> list[tuple[str, Constraint]]:
        """Every declared element support with who declared it (see :attr:`emission_support`)."""
        out = [(f" (declared by {type(h).__name__} {n!r} of {type(self).__name__})", element_support(h.support))
               for n, h in self.declaring_heads()]
        for name, child in self.named_children():
            if isinstance(child, SequenceModel) and child.emission_support is not None:
                out.append((f" (declared by the inner model {name!r})", child.emission_support))
        seen = getattr(self, "_emission_distribution_support", None)
        if seen is not None:
            out.append((f" (the support of the distribution {type(self).__name__}.emission returns)", seen))
        unique: list[tuple[str, Constraint]] = []
        for source, support in out:
            if not any(support is u or repr(support) == repr(u) for _, u in unique):
                unique.append((source, support))
        return unique

    @property
    def emission_support(self) -> Constraint | None:
        """The set of values one element of ``x`` may take (a ``torch.distributions.constraints``
        object, element-wise): :meth:`prepare` rejects data outside it with a ``ValueError``.

        By default the data must lie in the support of every head the model owns that declares one
        (:meth:`declaring_heads`: ``BernoulliHead`` declares ``constraints.boolean``, Gaussian and
        mixture heads ``constraints.real``, which restricts nothing), of a nested model's emission,
        and of the distribution :meth:`emission` returned on the first batch (read by the piece
        contract check, when the distribution declares a parameter-free ``support``). Several
        supports combine into :class:`~pyrosequence.nn.support.AllOf`; ``None`` when nothing is
        declared (any finite data is accepted). A subclass may override it, as a property or a class
        attribute (``emission_support = constraints.real``), e.g. when a Bernoulli head it owns
        scores something other than ``x``.
        """
        supports = [support for _, support in self._supports()]
        if not supports:
            return None
        if len(supports) > 1:  # every support is a set of reals: real restricts nothing more
            supports = [s for s in supports if s is not constraints.real] or supports[:1]
        return supports[0] if len(supports) == 1 else AllOf(*supports)

    def check_data(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x`` (padding already zeroed) is outside :attr:`emission_support`;
        the message names the value, where it is, and who declared the support."""
        if type(self).emission_support is not SequenceModel.emission_support:
            check_support(x, self.emission_support, source=f" (declared by {type(self).__name__}.emission_support)")
            return
        for source, support in self._supports():
            check_support(x, support, source=source)

    def filter_view(self, seqs: Sequences, start: int = 0) -> tuple["SequenceModel", Sequences, int]:
        """The model, validated batch and first step index a particle filter runs on: by default
        this model and ``seqs`` themselves. A wrapper that re-shapes the data (e.g.
        :class:`~pyrosequence.models.flattened.Flattened`) returns its inner model's view."""
        return self, seqs, start

    def pieces_match_training(self) -> bool:
        """Whether the per-step pieces compute everything :meth:`model`/:meth:`guide` train on
        now (default ``True``). A model whose overridden ``model`` adds training-only terms
        returns ``False`` while they are active (Z-Forcing's auxiliary factor): the compiled
        elbo/iwae/mean-field objectives (:mod:`pyrosequence.inference.engine_objectives`) then
        leave its training to Pyro's ELBOs."""
        return True

    def init_from_data(self, x: torch.Tensor, lengths: torch.Tensor | None = None, center: bool = False) -> None:
        """Initialise from training data before training.

        Every head found by :meth:`declaring_heads` (whatever its attribute name) that has an
        ``init_bias_from_mean`` method and emits ``x_dim`` values starts at the training data's
        per-dimension mean: a Bernoulli head at the logit of the rate, as the FIVO reference code
        does. With ``center=True`` the network inputs are mean-centred with the training mean
        (:attr:`input_offset`), as the VHRNN paper does for the music data (appendix C); the
        likelihood still scores the raw data.
        """
        seqs = self.prepare(x, lengths)
        valid = seqs.x if seqs.mask is None else seqs.x[seqs.mask]
        if seqs.observed is None:
            mean = valid.reshape(-1, self.x_dim).mean(0)
        else:  # the mean of the observed values of each dimension
            seen = (seqs.observed if seqs.mask is None else seqs.observed[seqs.mask]).reshape(-1, self.x_dim)
            mean = valid.reshape(-1, self.x_dim).sum(0) / seen.sum(0).clamp(min=1)
        for _, head in self.declaring_heads():
            if hasattr(head, "init_bias_from_mean") and getattr(head, "dim", self.x_dim) == self.x_dim:
                head.init_bias_from_mean(mean)
        if center:
            self.input_offset.copy_(mean)

    # ------------------------------------------------------------------ validation
    def prepare(self, x, lengths=None) -> Sequences:
        """Validate a batch against this model and return it with padding zeroed and a mask.

        Floating-point data of another precision (float16, float64) is converted to the model's
        (its weights') precision first; a value that overflows there is then rejected as inf.
        Data on another device than the model (its :attr:`input_offset` buffer, which ``.to``
        moves with the weights) is refused in one line before any computation; ``lengths`` may
        stay on the CPU."""
        refuse_other_device(x, self.input_offset.device, type(self).__name__)
        if isinstance(x, torch.Tensor) and x.dtype.is_floating_point and x.dtype != self.input_offset.dtype:
            x = x.to(self.input_offset.dtype)
        seqs = self._check_batch(x, lengths)
        if not getattr(self, "_pieces_checked", False):
            self._check_contract(seqs)  # first: it reads the support of the emission's distribution
        if seqs.observed is None:
            self.check_data(seqs.x)
        else:
            self.check_data(self._fill_for_check(seqs))
            self._check_partial_steps(seqs)
        return seqs

    def _check_batch(self, x, lengths) -> Sequences:
        """:func:`check_sequences` of the observation columns, with the covariate columns (the
        last :attr:`covariate_dim` ones) checked and attached as :attr:`Sequences.covariates`."""
        if not self.covariate_dim:
            return check_sequences(x, lengths, self.x_dim)
        if not (torch.is_tensor(x) and x.dim() == 3):  # check_sequences names what is wrong
            return check_sequences(x, lengths, self.x_dim + self.covariate_dim)
        values, u = cov.split_columns(x, self.x_dim, self.covariate_dim)
        seqs = check_sequences(values, lengths, self.x_dim)
        u = u[:, : seqs.num_steps]
        cov.check_covariates(u, seqs.mask, first_column=self.x_dim)
        if seqs.mask is not None:
            u = u.masked_fill(~seqs.mask[..., None], 0.0)
        return dataclasses.replace(seqs, covariates=u)

    def _fill_for_check(self, seqs: Sequences) -> torch.Tensor:
        """``x`` with each missing element replaced by an observed value of the same batch, so
        that the support check judges observed values only."""
        seen = seqs.x[seqs.observed]
        return seqs.x.masked_fill(~seqs.observed, float(seen[0]) if seen.numel() else 0.0)

    def _check_partial_steps(self, seqs: Sequences) -> None:
        """Refuse a step with some but not all elements observed when the emission can only
        score whole steps (an autoregressive output; see :mod:`pyrosequence.models.core.missing`)."""
        if getattr(self, "_emission_masks_elements", True):
            return
        where = partial_step(seqs.observed, seqs.mask)
        if where is not None:
            b, t = where
            raise ValueError(
                f"x: step {t} of sequence {b} is partly observed, but the emission of {type(self).__name__} "
                "cannot score part of a step (its output is autoregressive within a step); use a factorized "
                "output, or make such steps entirely missing"
            )

    def _check_contract(self, seqs: Sequences) -> None:
        """On the first batch: check every piece's output shapes (:mod:`pyrosequence.models.core.contract`)."""
        from pyrosequence.models.core.contract import check_pieces

        cls = type(self)
        overridden = cls.model is not SequenceModel.model or cls.guide is not SequenceModel.guide
        self._pieces_checked = True  # before the check: it calls the pieces, never prepare()
        if overridden and not cls.overrides_match_pieces:
            return  # a whole-sequence model/guide: its pieces may not exist
        try:
            inner, inner_seqs, _ = self.filter_view(seqs)
            check_pieces(inner, inner_seqs)
        except BaseException:
            self._pieces_checked = False
            raise

    def _key(self, x, lengths, initial, start) -> tuple:
        versions = tuple(p._version for p in self.parameters())
        return (id(x), id(lengths), id(initial), start, torch.is_grad_enabled(), versions)

    def start_state(self, seqs: Sequences, initial: State | None = None) -> State:
        """The state before the first step: ``initial`` when a window continues a sequence
        (truncated backpropagation through time), else :meth:`initial_state`."""
        if initial is None:
            return self.initial_state(torch.Size([seqs.batch_size]), self.network_input(seqs))
        return self.continue_state(initial, self.network_input(seqs)) if self.covariate_dim else initial

    # ------------------------------------------------------------------ Pyro programs
    def guide(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, initial: State | None = None, start: int = 0
    ) -> None:
        """Sample ``z_0 ... z_{T-1}`` from the proposal, one ``pyro.markov`` step at a time.

        ``initial`` and ``start`` continue a sequence from a state reached earlier: the pieces
        see step indices ``start + t`` (site names stay ``z_0 ... z_{T-1}``).
        """
        pyro.module(self.pyro_name, self)
        seqs = self.prepare(x, lengths)
        if not self.z_dim:  # a deterministic model: nothing to propose
            return
        inputs = self.network_input(seqs)
        ctx = self.context(inputs)
        ctx_steps = context_steps(ctx, seqs.num_steps)
        q_steps = context_steps(self.proposal_context(inputs, ctx, seqs.lengths), seqs.num_steps)
        state = self.start_state(seqs, initial)
        record = _Recurrence(key=self._key(x, lengths, initial, start), context=ctx, initial=state)
        collector = _DeterministicCollector()
        with pyro.plate("sequences", seqs.batch_size, dim=-1), collector:
            for t in pyro.markov(range(seqs.num_steps)):
                with _masked(seqs.step_mask(t)):
                    z = pyro.sample(f"{self.latent_name}_{t}", self.proposal(state, start + t, q_steps[t]))
                features = self.latent_features(z)
                collector.step = t
                state = self.update(state, features, ctx_steps[t], start + t)
                record.latents.append(z)
                record.features.append(features)
                record.states.append(state)
        record.deterministic = collector.records
        self._recurrence = record

    def model(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, initial: State | None = None, start: int = 0
    ) -> None:
        """Score ``x`` under the generative model, sampling ``z_t`` from :meth:`transition`.

        When the latent values are replayed from this model's own guide in the same ELBO
        evaluation, the recurrence the guide computed is reused rather than recomputed, and a
        time-homogeneous prior is evaluated for all steps in one batched call. ``initial`` and
        ``start`` continue a sequence (see :meth:`guide`). The state after the last step is left
        in :attr:`final_state` (with any particle dimensions) for a caller that continues.
        """
        pyro.module(self.pyro_name, self)
        seqs = self.prepare(x, lengths)
        steps = seqs.num_steps
        cached = self._take_recurrence(x, lengths, initial, start)
        priors = stacked_previous = None
        if cached is not None:
            ctx, state = cached.context, cached.initial
            if self.homogeneous_transition:
                stacked_previous = stack_states([cached.initial] + cached.states[:-1])
                priors = time_slices(self.transition(stacked_previous, None), steps)
        else:
            ctx = self.context(self.network_input(seqs))
            state = self.start_state(seqs, initial)
        ctx_steps = None
        previous, features_seq = [], []
        with pyro.plate("sequences", seqs.batch_size, dim=-1):
            for t in pyro.markov(range(steps)):
                if self.z_dim:
                    prior = priors[t] if priors is not None else self.transition(state, start + t)
                    with _masked(seqs.step_mask(t)):
                        z = pyro.sample(f"{self.latent_name}_{t}", prior)
                else:
                    z = seqs.x.new_zeros(seqs.batch_size, 0)
                previous.append(state)
                if cached is not None and cached.latents[t] is z:
                    features, state = cached.features[t], cached.states[t]
                    for name, value, event_dim in cached.deterministic.get(t, ()):
                        pyro.deterministic(name, value, event_dim=event_dim)
                else:  # not our guide's value: compute from here on
                    cached = priors = stacked_previous = None
                    if ctx_steps is None:
                        ctx_steps = context_steps(ctx, steps)
                    features = self.latent_features(z)
                    state = self.update(state, features, ctx_steps[t], start + t)
                features_seq.append(features)
            self.final_state = state
            if stacked_previous is None:
                stacked_previous = stack_states(previous)
            likelihood = mask_elements(self.emission(stacked_previous, stack_states(features_seq)), seqs.observed)
            if seqs.mask is not None:
                likelihood = likelihood.mask(seqs.mask)
            pyro.sample(self.obs_name, likelihood.to_event(1), obs=seqs.x)

    def _take_recurrence(self, x, lengths, initial, start) -> _Recurrence | None:
        """The guide's recurrence for this very batch and these parameters, if there is one."""
        cached, self._recurrence = self._recurrence, None
        if cached is None or cached.key != self._key(x, lengths, initial, start):
            return None
        return cached

    # ------------------------------------------------------------------ conveniences
    def latent_sites(self, num_steps: int) -> list[str]:
        """Names of the latent sample sites for a batch of ``num_steps`` steps."""
        return [f"{self.latent_name}_{t}" for t in range(num_steps)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

