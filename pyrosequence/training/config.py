"""Run configuration: one dataclass, checked when built, saved as ``config.json`` in the run."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pyrosequence.data.registry import REGISTRY as DATA_REGISTRY
from pyrosequence.data.registry import data_source
from pyrosequence.inference.evaluate import BOUNDS
from pyrosequence.inference.objectives import OBJECTIVES, ObjectiveOptions
from pyrosequence.inference.particle_filter import check_filter_options
from pyrosequence.inference.resamplers import get_resampler
from pyrosequence.models import REGISTRY, model_class
from pyrosequence.models.core.options import COMMON_SIZES, size_options
from pyrosequence.nn.beta_gate import check_beta_range
from pyrosequence.optim.init import check_init
from pyrosequence.optim.optimizers import check_optimizer
from pyrosequence.optim.schedules import check_schedule




def _covariate_dim(source, root) -> int:
    """How many covariate columns the training split of ``source`` has; 0 when it cannot be read
    here (a run reopened elsewhere recorded ``covariate_dim`` in its model options)."""
    try:
        return source.covariate_dim(root)
    except (ValueError, OSError):
        return 0


def _has_missing(source, root) -> bool:
    """Whether the training split of ``source`` has missing values; ``False`` when it cannot be
    read here (a run reopened elsewhere: it recorded ``mask_inputs`` when its data had gaps, and
    the data's own reader reports what is wrong when it is loaded)."""
    try:
        return source.has_missing(root)
    except (ValueError, OSError):
        return False


@dataclass
class TrainConfig:
    """Everything that defines a training run. Invalid values raise ``ValueError`` at construction.

    ``model_options`` are passed to the model's constructor (e.g. ``hidden_dim``, ``cell``,
    ``layers``, ``likelihood``); options the model does not take are rejected by name.
    """

    model: str = "vrnn"
    #: A data set's name (built in, registered, an entry point or ``package.module:loader``) or a
    #: path to the user's data (recorded absolute; pyrosequence.data.from_path).
    data: str = "synthetic"
    data_root: str | None = None
    #: How data given by a path is read, split and scaled (pyrosequence.data.from_path): completed
    #: when the configuration is built (format, split method and seed, likelihood, scaling), so a
    #: run's config.json reopens the same splits. Empty for named data sets.
    data_options: dict = field(default_factory=dict)
    z_dim: int | None = None  # None: 8 for models with latents; must stay None for deterministic ones
    model_options: dict = field(default_factory=dict)
    objective: str = "elbo"
    particles: int = 1
    resampler: str = "multinomial"
    ess_threshold: float = 0.5
    epochs: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    #: Global-norm gradient clipping (None = off); applied before the optimizer's own clamp.
    grad_clip: float | None = 10.0
    #: The optimizer by name (pyrosequence.optim.optimizers: adam, adamw, clipped-adam, sgd) and
    #: its options (betas, eps, weight_decay, clip_norm, lrd, momentum, nesterov), completed with
    #: the optimizer's defaults when the configuration is built.
    optimizer: str = "adam"
    optimizer_options: dict = field(default_factory=dict)
    #: Learning-rate schedule: a list of factors (pyrosequence.optim.schedules); [] = constant.
    schedule: list = field(default_factory=list)
    #: Initialisation applied to the built model (pyrosequence.optim.init): default, xavier, fivo.
    init: str = "default"
    #: What a gradient is the gradient of: "mean-step" (the batch's summed loss divided by its
    #: number of time steps, so the rate does not depend on batch size or length) or "sum" (the
    #: batch's summed loss, as Pyro's examples train; weight decay and clamps then act on that
    #: scale). Objectives that normalise their own loss (FIVO) are unaffected.
    loss_reduction: str = "mean-step"
    #: Stop when the validation bound has not improved for this many epochs (None = never).
    patience: int | None = None
    #: Stop at the end of the epoch in which the run's update count reaches this (None = never).
    max_updates: int | None = None
    #: Wall-clock budget in seconds for this invocation: before an epoch that would end past it
    #: (judged by the last epoch's duration) the run checkpoints and exits, resumable (--resume).
    time_limit: float | None = None
    beta: float = 1.0
    kl_anneal: bool = False
    anneal_start: float = 0.2
    anneal_increment: float = 5e-5
    valid_bound: str = "elbo"
    valid_particles: int = 1
    eval_bound: str = "iwae"
    eval_particles: int = 16
    seed: int = 0
    device: str = "cpu"
    #: Truncated backpropagation through time: windows of this many steps, one update each.
    tbptt: int | None = None
    #: Mean-centre the network inputs with the training mean (VHRNN appendix C); targets stay raw.
    center_inputs: bool = False
    #: Train on the first N training sequences only (quick checks); None = all.
    train_subset: int | None = None
    #: Pyro's distribution-argument validation during updates (off by default: inputs are checked
    #: once per call by the models and the loss is checked for NaN/inf each update; on costs ~25%).
    pyro_validation: bool = False
    #: Multi-Rate VAE (Bae et al. 2023): gate every layer by the KL weight and draw beta
    #: log-uniformly from ``beta_range`` at every update (pyrosequence.models.multi_rate).
    multi_rate: bool = False
    beta_range: list = field(default_factory=lambda: [0.01, 10.0])
    #: Model selection on the validation bound: keep the weights of the best epoch (``best.pt``)
    #: and score those on the test split (and in ``evaluate``), as is usual for the papers' tables.
    keep_best: bool = False
    #: Length-bucketed batches (pyrosequence.data.buckets): sort pools of this many batches by
    #: length, so batch-mates have similar lengths and less padding is computed; None = off.
    length_buckets: int | None = None
    #: Compile the per-step engine with torch.compile (pyrosequence.inference.engine): every
    #: training objective (fivo's filter; elbo, iwae, mean-field, iwae-dreg and elbo-stl through
    #: pyrosequence.inference.engine_objectives, which compute the eager estimates from the model's
    #: pieces) and the validation/test bounds. Models without pieces train with the eager
    #: estimators (Pyro traces). Off = eager.
    compile: bool = False
    #: Processes of a data-parallel run (pyrosequence.training.distributed): set by train() from the torchrun
    #: launch, and recorded so that resuming with another number of processes is refused.
    world_size: int = 1

    #: Set by ``train(config, model=instance)`` when the instance cannot be rebuilt from ``model``,
    #: ``z_dim`` and ``model_options`` (pyrosequence.models.core.rebuild): why. The run trains, but every
    #: command that rebuilds its model (evaluate, sample, plot, report, --resume) refuses it.
    model_not_rebuildable: str | None = None

    def __post_init__(self) -> None:
        if self.model_not_rebuildable is not None:
            cls = None  # recorded for information only: nothing is looked up or rebuilt
        else:
            cls = model_class(self.model)
            self.model = REGISTRY.recorded_name(self.model)  # a run-time registration is recorded by import path
        self.data = DATA_REGISTRY.recorded_name(self.data)  # a path absolute, a registration by import path
        source = data_source(self.data, self.data_options)
        if source.options is not None:
            if self.data_root is not None:
                raise ValueError(f"data_root is for named data sets; the data at {self.data} is read from that path")
            self.data_options = source.options
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of: {', '.join(sorted(OBJECTIVES))}")
        for name in ("valid_bound", "eval_bound"):
            if getattr(self, name) not in BOUNDS:
                raise ValueError(f"unknown bound {getattr(self, name)!r}; choose one of: {', '.join(sorted(BOUNDS))}")
        get_resampler(self.resampler)
        check_filter_options(1, self.ess_threshold)
        takes_latents = self.z_dim is not None if cls is None else "z_dim" in inspect.signature(cls.__init__).parameters
        if not takes_latents and self.z_dim is not None:
            raise ValueError(f"model {self.model!r} has no latent variables; do not give it a z_dim")
        if takes_latents and self.z_dim is None:
            self.z_dim = 8
        for name in ("particles", "epochs", "batch_size", "valid_particles", "eval_particles", "world_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("z_dim", "train_subset", "tbptt", "length_buckets"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, got {self.seed!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        for name in ("lr", "beta"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        self.optimizer_options = check_optimizer(self.optimizer, self.optimizer_options)
        self.schedule = check_schedule(self.schedule)
        check_init(self.init)
        if self.loss_reduction not in ("mean-step", "sum"):
            raise ValueError(f"loss_reduction must be 'mean-step' or 'sum', got {self.loss_reduction!r}")
        if self.loss_reduction == "sum" and getattr(OBJECTIVES[self.objective](1, ObjectiveOptions()), "normalized_loss", False):
            # such an objective (fivo) divides each sequence's bound by its length itself; "sum" would be ignored
            raise ValueError(f"loss_reduction 'sum' does not apply to objective {self.objective!r}, which normalises its "
                             "loss itself (each sequence's bound over its length, averaged over the batch)")
        for name in ("patience", "max_updates"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.time_limit is not None and (isinstance(self.time_limit, bool) or not isinstance(self.time_limit, (int, float))
                                            or not self.time_limit > 0 or not math.isfinite(self.time_limit)):
            raise ValueError(f"time_limit must be a positive number of seconds, got {self.time_limit!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        self.beta_range = list(check_beta_range(self.beta_range))
        if self.multi_rate:
            if not takes_latents:
                raise ValueError(f"model {self.model!r} has no latent variables; a multi-rate version is meaningless")
            if self.kl_anneal or self.beta != 1.0:
                raise ValueError("multi_rate draws beta from beta_range itself; do not combine it with beta or kl_anneal")
        sizes = COMMON_SIZES if cls is None else size_options(cls)  # 0 would otherwise silently mean "the default"
        for name, value in self.model_options.items():
            if name in sizes and value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if cls is None:
            return
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "x_dim", "z_dim", "name"}
        unknown = sorted(set(self.model_options) - accepted)
        if unknown:
            raise ValueError(
                f"model {self.model!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(sorted(accepted))}"
            )
        covariates = _covariate_dim(source, self.data_root) if "covariate_dim" not in self.model_options else 0
        if covariates and "covariate_dim" not in accepted:
            raise ValueError(f"the data at {self.data} has {covariates} covariate column(s), but model {self.model!r} "
                             "does not read covariates (no covariate_dim option); use one that does (vrnn, vhrnn, srnn, dmm)")
        if covariates:  # the model reads them: recorded, so reopening builds the same
            self.model_options = {**self.model_options, "covariate_dim": covariates}
        if "mask_inputs" in accepted and "mask_inputs" not in self.model_options and _has_missing(source, self.data_root):
            # data with gaps: the networks read the observation mask too; recorded, so reopening builds the same
            self.model_options = {**self.model_options, "mask_inputs": True}
        if "likelihood" in accepted and "likelihood" not in self.model_options:
            self.model_options = {**self.model_options, "likelihood": source.natural_likelihood(self.data_root)}
        if source.options is not None and self.model_options.get("likelihood") == "bernoulli" and source.likelihood != "bernoulli":
            raise ValueError(f"likelihood 'bernoulli' needs binary data (0 or 1), but the data at {self.data} has other values")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown configuration key(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no run configuration at {path}")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"run configuration {path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"run configuration {path} must hold a JSON object")
        return cls.from_dict(values)
