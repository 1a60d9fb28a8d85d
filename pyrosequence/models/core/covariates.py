"""Covariates: known inputs ``u_t`` (calendar features, controls, another market's prices) that a
model conditions on but does not emit.

Where they travel
-----------------
A batch with covariates is still one tensor ``x``: its last ``covariate_dim`` columns are
``u_t``. That keeps every entry point (``model(x, lengths)``, ``guide``, Pyro's ELBOs, the
particle filter, the compiled engine, evaluation, minibatching) unchanged: only
:meth:`SequenceModel.prepare <pyrosequence.models.core.base.SequenceModel.prepare>` knows the
split. It returns :class:`~pyrosequence.data.checks.Sequences` whose ``x`` (and ``observed``)
cover the observation columns alone, so the emission, the observed-element counts, the NaN
masks and every draw or forecast are about the observations, and whose ``covariates`` hold
``u``. Covariates must be known wherever a sequence is: NaN or inf in them is refused
(:func:`check_covariates`), since a model cannot condition on an unknown input.

How the pieces read them
------------------------
:meth:`~pyrosequence.models.core.base.SequenceModel.network_input` appends ``u_t`` to the
features the networks read (``(..., input_dim)``, covariates last), so :meth:`context`,
:meth:`proposal_context` and :meth:`initial_state` see them. The prior ``transition(s_{t-1}, t)``
reads only the state, yet must see ``u_t``: so the state before step ``t`` carries ``u_t``
(:func:`attach`: ``(model_state, u_t)``). The context of step ``t`` hands ``u_{t+1}`` to the
update (:func:`next_step_covariates`), which attaches it to the state it returns, and
:meth:`initial_state` attaches ``u_0``. Reading the next step's covariate is no leak: covariates
are known in advance, unlike observations. After a sequence's last step the attached value is
zero (unknown here); a window that continues the sequence (truncated backpropagation, a
forecast) replaces it with its own first covariate
(:meth:`~pyrosequence.models.core.base.SequenceModel.continue_state`).
"""

from __future__ import annotations

import torch

from pyrosequence.data.checks import check_covariate_dim, check_covariates  # noqa: F401 (re-exported)
from pyrosequence.nn.cells import State


def split_columns(x: torch.Tensor, x_dim: int, covariate_dim: int, name: str = "x") -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(batch, time, x_dim + covariate_dim)`` split into the observation columns and the
    covariate columns; a tensor of another width is refused naming both counts."""
    if torch.is_tensor(x) and x.dim() == 3 and x.shape[-1] != x_dim + covariate_dim:
        raise ValueError(
            f"{name} has {x.shape[-1]} columns but the model expects x_dim {x_dim} plus {covariate_dim} covariate "
            f"column(s) (the last ones), {x_dim + covariate_dim} in all (shape {tuple(x.shape)})"
        )
    return x[..., :x_dim], x[..., x_dim:]


def next_step_covariates(u: torch.Tensor) -> torch.Tensor:
    """``(batch, time, U)`` whose step ``t`` holds ``u_{t+1}`` (zero after the last step): what the
    update of step ``t`` attaches to the state for the prior of step ``t + 1``."""
    return torch.cat([u[:, 1:], torch.zeros_like(u[:, :1])], 1)


def first_covariates(x: torch.Tensor, covariate_dim: int) -> torch.Tensor:
    """``u_0``, ``(batch, U)``: the covariates of the first step of a network input ``x``
    ``(batch, time, input_dim)`` (covariates last)."""
    return x[:, 0, x.shape[-1] - covariate_dim:]


def attach(state: State, u: torch.Tensor, batch_shape: torch.Size | None = None) -> tuple:
    """The state ``(model_state, u)`` of a model reading covariates: ``u`` (``(..., U)``, the
    covariates of the step this state precedes) expanded to ``batch_shape`` when given."""
    if batch_shape is not None:
        u = u.expand(tuple(batch_shape) + u.shape[-1:])
    return state, u


def split_state(state: tuple) -> tuple[State, torch.Tensor]:
    """``(model_state, u)`` of a state built by :func:`attach`."""
    return state[0], state[1]
