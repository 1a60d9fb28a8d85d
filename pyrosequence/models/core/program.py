"""Plain Pyro programs: a ``model(x, lengths)`` / ``guide(x, lengths)`` pair written the ordinary
Pyro way, given what needs only whole-program traces.

A :class:`~pyrosequence.models.SequenceModel` is written as per-step pieces, which a particle filter
can drive; a plain Pyro program is two opaque functions. :class:`PyroProgram` wraps such a pair and
gives it what can be computed from traces alone (the guide traced, the model replayed against it):
the ``elbo`` and ``iwae`` bounds of :func:`~pyrosequence.inference.evaluate`, PSIS k-hat,
:func:`~pyrosequence.diagnostics.to_inference_data` (guide posteriors, posterior predictive through
``pyro.infer.Predictive``), training with Pyro's ELBOs (``elbo``, ``mean-field``, ``iwae``) and the
CLI through :func:`~pyrosequence.register_model`. What needs the per-step pieces (the FIVO bound and
objective, forecasting and one-step predictive draws through the filter, filter health, step
curves, truncated backpropagation through time) refuses every program with the one
:class:`PiecesRequiredError`.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from typing import Callable

import torch
from torch import nn
from torch.distributions import constraints, transform_to

import pyro
import pyro.poutine as poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyrosequence.data.checks import Sequences, check_sequences
from pyrosequence.models.core.base import refuse_other_device
from pyrosequence.models.core.capabilities import (  # noqa: F401 - their old home; imported from here too
    PiecesRequiredError,
    draws_latents,
    has_pieces,
    pieces_error,
    require_pieces,
)

#: Prefix of the state-dict keys of parameters created by ``pyro.param`` inside a program.
PARAM_PREFIX = "param:"
#: Errors that make a vectorized (particle-plate) run of a program fail: it is then run particle by particle.
_VECTORIZE_ERRORS = (RuntimeError, ValueError, IndexError, TypeError, AssertionError, NotImplementedError)


def _constrained(param: nn.Parameter, constraint, users: bool = False) -> torch.Tensor:
    """The value a ``pyro.param`` site returns: ``param`` under ``constraint``, carrying
    ``.unconstrained()`` -> ``param`` as Pyro's param store attaches it (``pyro.infer.SVI`` collects
    the parameters to update through it). An unconstrained parameter of the program's own is
    returned as a view, so the attribute never lands on the module's ``Parameter`` (which would
    stop ``torch.save`` of the whole module); a user's ``Parameter`` given as the initial value
    (``pyro.module``) is returned itself, as Pyro's param store does, since ``pyro.module``
    compares it by identity."""
    value = transform_to(constraint)(param)
    if value is param and not users:
        value = param.view_as(param)
    value.unconstrained = weakref.ref(param)
    return value


def _key(name: str) -> str:
    """A parameter name as an ``nn.Module`` attribute name (no dots), reversibly."""
    return PARAM_PREFIX + name.replace("%", "%25").replace(".", "%2E")


class _ProgramParams(Messenger):
    """Serves the ``pyro.param`` sites of a program from its :class:`PyroProgram` instead of
    Pyro's global param store, so that every instance owns its parameters (two instances never
    share one by name, ``pyro.clear_param_store()`` does not detach them, and they are saved in
    the module's ``state_dict``)."""

    def __init__(self, owner: "PyroProgram") -> None:
        super().__init__()
        self.owner = owner
        self.submodule_params: set[int] = set()

    def __enter__(self):
        self.submodule_params = {
            id(p) for name, p in self.owner.named_parameters() if not name.startswith(PARAM_PREFIX)
        }
        return super().__enter__()

    def _pyro_param(self, msg) -> None:
        if msg["value"] is not None:  # an outer handler (e.g. substitute) already chose it
            return
        args = msg["args"]
        init = args[1] if len(args) > 1 else None
        constraint = msg["kwargs"].get("constraint", constraints.real)
        msg["value"] = self.owner._serve_param(args[0], init, constraint, self.submodule_params)
        msg["done"] = True


class PyroProgram(nn.Module):
    r"""A plain Pyro ``model(x, lengths)`` / ``guide(x, lengths)`` pair as a pyrosequence model.

    The program sees ``x`` of shape ``(batch, time, x_dim)`` (validated: finite, floating, cut to
    the longest sequence, zero beyond each sequence's length) and ``lengths`` of shape
    ``(batch,)`` (int64). It must put every sample site inside one plate over the sequences,
    ``pyro.plate(sequence_plate, batch)`` (default name ``"sequences"``), and mask steps beyond a
    sequence's length itself (``poutine.mask``); sites outside that plate (global latents) would
    couple the sequences, so per-sequence bounds refuse them. Every latent site of the model must
    be sampled by the guide, and every site the guide samples must be a latent site of the model:
    a guide site the model lacks (or observes) would enter the importance weights with no model
    term, and the "bound" could exceed log p(x). An auxiliary variable whose density the guide
    accounts for itself is marked as Pyro marks one, ``pyro.sample(name, d,
    infer={"is_auxiliary": True})``: its log-density then counts in the guide's alone, as in
    Pyro's ELBOs, and it is not one of the program's latents (``latent_names``).

    Parameters: ``pyro.param(name, init, constraint=...)`` sites are owned by this module (not by
    Pyro's global param store): they are created on the first run, appear in ``parameters()`` and
    ``state_dict()`` and are trained by :func:`pyrosequence.training.train`. ``nn.Module``\s the program uses
    must be reachable from this module: pass ``PyroModule``\s as ``model``/``guide`` (they are
    registered as submodules), assign them as attributes of a subclass, or register them inside the
    program with ``pyro.module(name, net)`` (their parameters are then adopted by reference).
    A ``PyroModule``'s ``PyroParam``\s go through a param-store scope private to this instance
    while the program runs (``ParamStoreDict.scope``), so two programs never share a parameter by name.

    Usage::

        import torch, pyro, pyro.distributions as dist
        from pyro import poutine
        from torch.distributions import constraints
        from pyrosequence import PyroProgram
        from pyrosequence.inference import evaluate

        def model(x, lengths):
            a = pyro.param("a", torch.tensor(0.5))
            s = pyro.param("s", torch.tensor(1.0), constraint=constraints.positive)
            z = x.new_zeros(x.shape[0])
            with pyro.plate("sequences", x.shape[0]):
                for t in pyro.markov(range(x.shape[1])):
                    with poutine.mask(mask=t < lengths):
                        z = pyro.sample(f"z_{t}", dist.Normal(a * z, 1.0))
                        pyro.sample(f"x_{t}", dist.Normal(z, s), obs=x[:, t, 0])

        def guide(x, lengths):
            w = pyro.param("w", torch.tensor(0.5))
            with pyro.plate("sequences", x.shape[0]):
                for t in pyro.markov(range(x.shape[1])):
                    with poutine.mask(mask=t < lengths):
                        pyro.sample(f"z_{t}", dist.Normal(w * x[:, t, 0], 1.0))

        program = PyroProgram(model, guide, x_dim=1)
        program.init_from_data(x, lengths)          # creates the parameters (also done on first use)
        evaluate(program, x, lengths, bound="iwae", num_particles=64).per_timestep

    For the CLI, subclass it with the constructor ``__init__(self, x_dim, z_dim=..., **options)``
    that :func:`pyrosequence.training.train` calls, and register the subclass
    (``register_model("mine", MyProgram)`` or ``--model package.module:MyProgram``)::

        class MyProgram(PyroProgram):
            def __init__(self, x_dim, z_dim=1):
                super().__init__(model, guide, x_dim=x_dim)

    Particles: bounds and diagnostics first run the program vectorized, under a particle plate left
    of the program's own plates (``vectorize_particles=None``: tried once, and if the program
    fails there it is run one particle at a time from then on; ``True``/``False`` force either).
    Training with several particles uses Pyro's vectorized ELBOs with one plate level (the
    sequences), as for every built-in model.

    Args:
        model, guide: callables ``(x, lengths) -> None``; ``nn.Module``\s become submodules.
        x_dim: the data dimension the program expects (checked), or ``None`` for any.
        sequence_plate: the name of the program's plate over sequences.
        vectorize_particles: see above.
    """

    #: Read by the training loop after each update (a state to continue from): a program has none.
    final_state = None

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        x_dim: int | None = None,
        sequence_plate: str = "sequences",
        vectorize_particles: bool | None = None,
    ) -> None:
        super().__init__()
        if not callable(model) or not callable(guide):
            raise TypeError(f"PyroProgram needs callables model(x, lengths) and guide(x, lengths), got {model!r}, {guide!r}")
        if x_dim is not None and (isinstance(x_dim, bool) or not isinstance(x_dim, int) or x_dim < 1):
            raise ValueError(f"x_dim must be a positive integer or None, got {x_dim!r}")
        if not isinstance(sequence_plate, str) or not sequence_plate:
            raise ValueError(f"sequence_plate must be a plate name, got {sequence_plate!r}")
        if vectorize_particles not in (None, True, False):
            raise ValueError(f"vectorize_particles must be None, True or False, got {vectorize_particles!r}")
        self.program_model = model
        self.program_guide = guide
        self.x_dim = x_dim
        self.sequence_plate = sequence_plate
        self.vectorize_particles = vectorize_particles
        self._constraints: dict[str, constraints.Constraint] = {}
        self._store_state: dict = {"params": {}, "constraints": {}}
        self._inspected = False
        self.plate_nesting = 1
        self.latent_names: tuple[str, ...] = ()
        self.observed_names: tuple[str, ...] = ()

    # ------------------------------------------------------------------ parameters
    def _serve_param(self, name: str, init, constraint, submodule_params: set[int]) -> torch.Tensor:
        key = _key(name)
        param = self._parameters.get(key)
        if param is None:
            if isinstance(init, nn.Parameter) and id(init) in submodule_params:
                return _constrained(init, constraint, users=True)
            if init is None and name in pyro.get_param_store():  # a PyroModule's PyroParam, synced to the store
                value = pyro.get_param_store().get_param(name)
                if id(value.unconstrained()) in submodule_params:
                    return value
            if init is None:
                raise ValueError(
                    f"the program reads pyro.param({name!r}) without an initial value, and it is not a parameter of "
                    f"this {type(self).__name__}; give it one (pyro.param(name, init)) so that the program owns it"
                )
            if isinstance(init, nn.Parameter):  # pyro.module(name, net) of a net outside this module: adopt it
                param = init
            else:
                value = init() if callable(init) else init
                if not torch.is_tensor(value):
                    value = torch.as_tensor(value, dtype=torch.get_default_dtype())
                with torch.no_grad():
                    unconstrained = transform_to(constraint).inv(value.detach()).clone().contiguous()
                param = nn.Parameter(unconstrained)
            self.register_parameter(key, param)
            self._constraints[name] = constraint
        elif name not in self._constraints:  # loaded from a state dict before the program first ran
            if isinstance(init, nn.Parameter) and init is not param and id(init) not in submodule_params:
                with torch.no_grad():  # the net computes with its own tensor: give it the loaded value
                    init.copy_(param)
                self._parameters[key] = param = init
            self._constraints[name] = constraint
        return _constrained(param, self._constraints[name], users=param is init)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # Parameters the program creates on its first run may be loaded before that run (a run
        # directory reopened): they are registered here and get their constraint when the program
        # first asks for them.
        for full_key, value in state_dict.items():
            if full_key.startswith(prefix + PARAM_PREFIX):
                key = full_key[len(prefix):]
                if "." not in key and key not in self._parameters:
                    self.register_parameter(key, nn.Parameter(value.detach().clone()))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def num_parameters(self) -> int:
        """Parameters (elements) the module holds so far (the program's own appear after its first run)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ running the program
    def _running(self):
        # A private param-store scope: what PyroModules sync into Pyro's store while the program runs
        # stays with this instance (never shared by name with another program or the user's store).
        stack = contextlib.ExitStack()
        stack.enter_context(pyro.get_param_store().scope(state=self._store_state))
        stack.enter_context(_ProgramParams(self))
        return stack

    def model(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """The program's model on the validated batch (see the class docstring)."""
        seqs = self.prepare(x, lengths)
        with self._running():
            return self.program_model(seqs.x, seqs.lengths)

    def guide(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """The program's guide on the validated batch."""
        seqs = self.prepare(x, lengths)
        with self._running():
            return self.program_guide(seqs.x, seqs.lengths)

    def check_data(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x`` (padding zeroed) is outside the program's support; a
        subclass overrides this (the default accepts any finite data)."""

    def prepare(self, x, lengths=None) -> Sequences:
        """Validate a batch as :meth:`SequenceModel.prepare` does (shape, dtype, NaN/inf within
        the lengths, ``x_dim``, :meth:`check_data`); on the first batch also run the program once
        (without consuming random numbers) to create its parameters and check its structure."""
        weights = next(iter(self.parameters()), None)  # none before the first run creates them
        if weights is not None:
            refuse_other_device(x, weights.device, type(self).__name__)
        dtype = next((p.dtype for p in self.parameters() if p.dtype.is_floating_point), None)
        if isinstance(x, torch.Tensor) and x.dtype.is_floating_point and dtype is not None and x.dtype != dtype:
            x = x.to(dtype)
        try:
            seqs = check_sequences(x, lengths, self.x_dim, missing=False)
        except ValueError as error:
            if "contains NaN" not in str(error):
                raise
            raise ValueError(f"{error}: {type(self).__name__} is a plain Pyro program, which receives x without "
                             "a mask; handle missing values inside the program (pyro.sample(..., obs_mask=...)) "
                             "and pass them in another form") from None
        self.check_data(seqs.x)
        if not self._inspected:
            self._inspect(seqs)
        return seqs

    def init_from_data(self, x: torch.Tensor, lengths: torch.Tensor | None = None, center: bool = False) -> None:
        """Called by :func:`pyrosequence.training.train` before training: runs the program once on a few
        training sequences so that its parameters exist before the optimizer is built."""
        if center:
            raise ValueError(f"{type(self).__name__} is a plain Pyro program: centre the data inside the program (center_inputs is for SequenceModels)")
        rows = slice(0, 4)
        self.prepare(x[rows], None if lengths is None else lengths[rows])

    def initial_state(self, *args, **kwargs):
        raise pieces_error(self, "truncated backpropagation through time (tbptt)")

    def _inspect(self, seqs: Sequences) -> None:
        """Run guide and replayed model once, hidden from outer handlers and without consuming
        random numbers: create the parameters, find the plate nesting, the latent and observed
        sites, and check that every sample site lies in the sequence plate."""
        self._inspected = True
        try:
            devices = [seqs.x.device] if seqs.x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad(), poutine.block():
                guide_trace, model_trace = self._traces(seqs, None)
        except BaseException:
            self._inspected = False
            raise
        dims = [
            frame.dim
            for trace in (guide_trace, model_trace)
            for site in trace.nodes.values()
            if site["type"] == "sample"
            for frame in site["cond_indep_stack"]
            if frame.vectorized
        ]
        self.plate_nesting = max(1, -min(dims)) if dims else 1
        for trace, role in ((model_trace, "model"), (guide_trace, "guide")):
            for name, site in trace.nodes.items():
                if site["type"] == "sample" and not site_is_subsample(site):
                    self._sequence_dim(site, role)
        guide_latents = [
            (name, site) for name, site in guide_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
        ]
        auxiliary = {name for name, site in guide_latents if (site.get("infer") or {}).get("is_auxiliary")}
        self.latent_names = tuple(name for name, _ in guide_latents if name not in auxiliary)
        extra = [name for name in self.latent_names if name not in model_trace.nodes]
        observed = [name for name in self.latent_names if name in model_trace.nodes and model_trace.nodes[name]["is_observed"]]
        if extra or observed:
            self._inspected = False
            names = extra or observed
            what = "that the model does not have" if extra else "that the model observes"
            raise ValueError(
                f"the guide samples site(s) {', '.join(names[:3])}{' ...' if len(names) > 3 else ''} {what}: their "
                "density would enter the importance weights with no model term, so the bound would be invalid (it "
                "can exceed log p(x)); remove them, or mark an auxiliary variable whose density the guide accounts for "
                "with pyro.sample(..., infer={'is_auxiliary': True})"
            )
        self.observed_names = tuple(
            name for name, site in model_trace.nodes.items() if site["type"] == "sample" and site["is_observed"]
        )
        missing = [
            name for name, site in model_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
            and name not in guide_trace.nodes
        ]
        if missing:
            self._inspected = False
            raise ValueError(
                f"the guide does not sample the model's latent site(s) {', '.join(missing[:3])}"
                f"{' ...' if len(missing) > 3 else ''}; importance weights need every latent drawn by the guide"
            )
        if not self.observed_names:
            self._inspected = False
            raise ValueError("the model has no observed sample site (pyro.sample(..., obs=...)): it does not score x")

    def _sequence_dim(self, site, role: str) -> int:
        for frame in site["cond_indep_stack"]:
            if frame.name == self.sequence_plate:
                if frame.size is not None and frame.dim is None:
                    break
                return frame.dim
        self._inspected = False
        raise ValueError(
            f"sample site {site['name']!r} of the {role} is not inside pyro.plate({self.sequence_plate!r}, batch): "
            "per-sequence bounds need every site in the plate over sequences (a global latent couples them); "
            "pass sequence_plate=... if your plate has another name"
        )

    def _traces(self, seqs: Sequences, particles: int | None, plate_name: str = "_particles"):
        """Guide trace and model trace replayed against it; ``particles`` draws at once under a
        plate left of the program's plates, or one draw (``None``)."""
        args = (seqs.x, seqs.lengths)
        with self._running():
            plate = (
                contextlib.nullcontext() if particles is None else pyro.plate(plate_name, particles, dim=-self.plate_nesting - 1)
            )
            with plate:
                guide_trace = poutine.trace(self.program_guide).get_trace(*args)
                model_trace = poutine.trace(poutine.replay(self.program_model, trace=guide_trace)).get_trace(*args)
        return guide_trace, model_trace

    def _run_vectorized(self, run: Callable[[bool], object]):
        """``run(True)`` if the program may be vectorized over particles, else ``run(False)``;
        with ``vectorize_particles=None`` a failing vectorized run switches the program to the loop."""
        if self.vectorize_particles is False:
            return run(False)
        if self.vectorize_particles is True:
            return run(True)
        try:
            out = run(True)
        except _VECTORIZE_ERRORS as error:
            self.vectorize_particles = False
            warnings.warn(
                f"{type(self).__name__}: the program failed under a particle plate ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); it is run one particle at a time from now on "
                "(pass vectorize_particles=False to skip the attempt)",
                RuntimeWarning,
            )
            return run(False)
        self.vectorize_particles = True
        return out

    # ------------------------------------------------------------------ importance weights
    def _per_sequence(self, trace, vectorized: bool) -> torch.Tensor:
        """Sum of the log-densities of a trace's sample sites within each sequence, broadcastable
        to ``(K, B)`` when vectorized and to ``(B,)`` otherwise."""
        trace.compute_log_prob()
        depth = self.plate_nesting + (1 if vectorized else 0)
        total = torch.zeros(())
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            seq_dim = depth + self._sequence_dim(site, "program")
            log_p = site["log_prob"]
            if log_p.dim() > depth:
                raise ValueError(
                    f"site {name!r} has log_prob of shape {tuple(log_p.shape)}: more batch dimensions than the "
                    f"program's {self.plate_nesting} plate level(s)"
                )
            log_p = log_p.reshape((1,) * (depth - log_p.dim()) + log_p.shape)
            keep = (0, seq_dim) if vectorized else (seq_dim,)
            others = [d for d in range(depth) if d not in keep]
            if others:
                log_p = log_p.sum(others, keepdim=True)
            log_p = log_p.reshape(log_p.shape[0], log_p.shape[seq_dim]) if vectorized else log_p.reshape(-1)
            total = total.to(log_p) + log_p
        return total

    def log_importance_weights(self, seqs: Sequences, num_particles: int) -> torch.Tensor:
        """``log p(x, z_k) - log q(z_k | x)`` per particle and sequence, shape ``(num_particles, batch)``:
        the guide traced (all particles at once where the program allows, else one at a time), the
        model replayed against it, every site's log-density summed within each sequence."""
        if not self._inspected:
            self._inspect(seqs)
        batch = seqs.batch_size

        def run(vectorized: bool) -> torch.Tensor:
            if vectorized:
                guide_trace, model_trace = self._traces(seqs, num_particles)
                log_w = self._per_sequence(model_trace, True) - self._per_sequence(guide_trace, True)
                return log_w.expand(num_particles, batch)
            rows = []
            for _ in range(num_particles):
                guide_trace, model_trace = self._traces(seqs, None)
                rows.append((self._per_sequence(model_trace, False) - self._per_sequence(guide_trace, False)).expand(batch))
            return torch.stack(rows)

        return self._run_vectorized(run).to(seqs.x.dtype)

    def has_latents(self, seqs: Sequences) -> bool:
        """Whether the guide samples any latent site (known after the first batch)."""
        if not self._inspected:
            self._inspect(seqs)
        return bool(self.latent_names)

    # ------------------------------------------------------------------ draws for diagnostics
    def guide_draws(self, seqs: Sequences, num_samples: int) -> dict[str, torch.Tensor]:
        """``num_samples`` joint draws of every latent site from the guide, each ``(S, *value shape)``."""
        if not self._inspected:
            self._inspect(seqs)

        def run(vectorized: bool) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                if vectorized:
                    with self._running(), pyro.plate("_draws", num_samples, dim=-self.plate_nesting - 1):
                        trace = poutine.trace(self.program_guide).get_trace(seqs.x, seqs.lengths)
                    out = {}
                    for name in self.latent_names:
                        value = trace.nodes[name]["value"]
                        if value.shape[:1] != (num_samples,):
                            raise ValueError(f"guide site {name!r} does not vary over the draws: value shape {tuple(value.shape)}")
                        out[name] = value
                    return out
                draws = []
                for _ in range(num_samples):
                    with self._running():
                        trace = poutine.trace(self.program_guide).get_trace(seqs.x, seqs.lengths)
                    draws.append({name: trace.nodes[name]["value"] for name in self.latent_names})
                return {name: torch.stack([d[name] for d in draws]) for name in self.latent_names}

        return self._run_vectorized(run)

    def posterior_predictive(self, seqs: Sequences, draws: dict[str, torch.Tensor], num_samples: int) -> dict[str, torch.Tensor]:
        """Draws of every observed site of the model given the guide's ``draws`` (``pyro.infer.Predictive``
        on the model with its observations released, ``poutine.uncondition``): ``x ~ p(x | z)``,
        ``z ~ q(z | x)``. The program's inputs are unchanged, so a program that reads ``x`` to
        compute later steps draws each step given the observed past."""
        from pyro.infer import Predictive

        def released(x, lengths):
            with self._running():
                return poutine.uncondition(self.program_model)(x, lengths)

        def run(vectorized: bool) -> dict[str, torch.Tensor]:
            predictive = Predictive(
                released, posterior_samples=draws, num_samples=num_samples,
                return_sites=list(self.observed_names), parallel=vectorized,
            )
            with torch.no_grad():
                return predictive(seqs.x, seqs.lengths)

        return self._run_vectorized(run)

    def extra_repr(self) -> str:
        def label(fn):
            return getattr(fn, "__qualname__", type(fn).__name__)

        return f"model={label(self.program_model)}, guide={label(self.program_guide)}, x_dim={self.x_dim}"

