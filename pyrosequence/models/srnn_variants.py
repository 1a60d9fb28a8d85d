"""SRNN-hier and SRNN-flat: the simplified SRNN with Dai et al.'s non-factorised outputs."""

from __future__ import annotations

from pyrosequence.models.flattened import Flattened
from pyrosequence.models.simplified_srnn import SimplifiedSRNN


class SRNNHier(SimplifiedSRNN):
    """SRNN-hier (Dai et al. 2019, section 5.1, eq. 14): :class:`SimplifiedSRNN` whose output is
    autoregressive within the step, ``p(x_t | h_t) = prod_i p(x_{t,i} | x_{t,<i}, h_t)``, through a
    low-level RNN (``output="hier-rnn"``, the default here) or a masked MLP (``"hier-made"``).
    Everything else is the simplified SRNN's (see its docstring for the generative story)."""

    def __init__(self, x_dim: int, z_dim: int, hidden_dim: int | None = None, likelihood: str = "bernoulli",
                 output: str = "hier-rnn", width: int | None = None, layers: int = 1, fast_path: bool = True,
                 mask_inputs: bool = False, name: str | None = None) -> None:
        super().__init__(x_dim, z_dim, hidden_dim, likelihood, output, width, layers, fast_path, mask_inputs, name)


class SRNNFlat(Flattened):
    r"""SRNN-flat (Dai et al. 2019, section 5.2): :class:`SimplifiedSRNN` over the univariate
    sequence of all elements, ``x_{1,1}, ..., x_{1,L}, x_{2,1}, ...`` (``group = 1``), or over groups
    of ``group`` consecutive elements (a coarser flattening, ours, to save compute)::

        z_j | x'_{<j}  ~ N(mu_p(v_{j-1}), ...),   x'_j | h_j ~ p(x'_j | dec(h_j))      j = 1 .. T L / U

    with one latent per inner step. Bounds are reported per original sequence and step
    (:class:`~pyrosequence.models.flattened.Flattened`).

    Args:
        x_dim: ``L``; must be a multiple of ``group``.
        z_dim: latent size per inner step.
        group: ``U``, the elements per inner step (default 1, the paper's flat model).
        hidden_dim, likelihood, width, layers, fast_path: passed to :class:`SimplifiedSRNN`.
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("group", "hidden_dim", "width", "layers")

    def __init__(self, x_dim: int, z_dim: int, group: int = 1, hidden_dim: int | None = None,
                 likelihood: str = "bernoulli", width: int | None = None, layers: int = 1, fast_path: bool = True,
                 mask_inputs: bool = False, name: str | None = None) -> None:
        if not isinstance(group, int) or group < 1 or group > x_dim:
            raise ValueError(f"group (U) must be an integer between 1 and x_dim = {x_dim}, got {group!r}")
        inner = SimplifiedSRNN(group, z_dim, hidden_dim, likelihood, "factorized", width, layers, fast_path,
                               mask_inputs=mask_inputs)
        super().__init__(inner, x_dim, name=name)
