"""MaskedMLP (MADE without parameter sharing): the autoregressive property, orders, bad input."""

import pytest
import torch

from pyrosequence.nn.made import MaskedMLP, make_order


def _jacobian(made: MaskedMLP, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """d out[i, :].sum() / d x[j] as an (L, L) matrix (row i: output, column j: input)."""
    return torch.autograd.functional.jacobian(lambda v: made(v, h).sum(-1), x)


@pytest.mark.parametrize("order", ["natural", "random", [2, 0, 4, 1, 3]])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_output_i_has_zero_gradient_wrt_itself_and_later_elements(order, layers, seed):
    torch.manual_seed(seed)
    made = MaskedMLP(5, cond_dim=3, hidden=16, out_dim=2, layers=layers, order=order, seed=seed)
    rank = torch.empty(5, dtype=torch.long)
    rank[made.order] = torch.arange(5)
    for _ in range(3):
        jac = _jacobian(made, torch.randn(5), torch.randn(3))
        later = rank[None, :] >= rank[:, None]  # input j is not before output i
        assert torch.all(jac[later] == 0)
        # the allowed connections are really used: every output with predecessors depends on them
        for i in range(5):
            if rank[i] > 0:
                assert jac[i][~later[i]].abs().sum() > 0


def test_natural_order_means_inputs_i_to_L_are_invisible_to_output_i():
    made = MaskedMLP(4, cond_dim=0, hidden=8, out_dim=1)
    jac = _jacobian(made, torch.randn(4), None)
    assert torch.equal(jac.triu() != 0, torch.zeros(4, 4, dtype=torch.bool))
    assert torch.all(jac.tril(-1)[1:].abs().sum(-1) > 0)


def test_random_order_is_a_seeded_permutation():
    a, b, c = make_order(7, "random", 3), make_order(7, "random", 3), make_order(7, "random", 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a.sort().values, torch.arange(7))
    made = MaskedMLP(7, 2, 4, 1, order="random", seed=3)
    assert torch.equal(made.order, a) and "order" in made.state_dict()


def test_conditioning_reaches_every_output_and_leading_dims_broadcast():
    made = MaskedMLP(3, cond_dim=2, hidden=8, out_dim=4)
    x, h = torch.randn(5, 1, 3), torch.randn(6, 2)
    out = made(x, h)
    assert out.shape == (5, 6, 3, 4)
    jac = torch.autograd.functional.jacobian(lambda v: made(torch.zeros(3), v).sum(-1), torch.randn(2))
    assert torch.all(jac.abs().sum(-1) > 0)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="permutation"):
        make_order(3, [0, 0, 1])
    with pytest.raises(ValueError, match="unknown order"):
        make_order(3, "reversed")
    with pytest.raises(ValueError, match="positive"):
        MaskedMLP(0, 1, 4, 1)
    made = MaskedMLP(3, 2, 4, 1)
    with pytest.raises(ValueError, match="last dimension 3"):
        made(torch.zeros(4), torch.zeros(2))
    with pytest.raises(ValueError, match="pass h"):
        made(torch.zeros(3))
