"""The public backward-RNN helpers: reverse_padded and backward_pass (pyrosequence.nn)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pyrosequence.nn import backward_pass, make_lstm, reverse_padded


def test_reverse_padded_reverses_within_each_length_and_is_its_own_inverse():
    x = torch.arange(2 * 4, dtype=torch.float).reshape(2, 4, 1)  # rows 0..3 and 4..7
    lengths = torch.tensor([4, 2])
    out = reverse_padded(x, lengths)
    assert out[..., 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]  # padding (6, 7) stays in place
    assert torch.equal(reverse_padded(out, lengths), x)
    assert torch.equal(reverse_padded(x, None), x.flip(1))
    y = torch.randn(3, 5, 2, 6)  # any trailing dimensions
    lengths = torch.tensor([5, 1, 3])
    out = reverse_padded(y, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b, :n], y[b, :n].flip(0)) and torch.equal(out[b, n:], y[b, n:])


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_backward_pass_summarises_each_suffix(kind):
    torch.manual_seed(0)
    rnn = make_lstm(3, 4) if kind == "lstm" else getattr(nn, kind.upper())(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 3])
    with torch.no_grad():
        out = backward_pass(rnn, x, lengths)
        for b, n in enumerate(lengths.tolist()):
            for t in range(n):
                alone, _ = rnn(x[b:b + 1, t:n].flip(1))  # the suffix t..n-1, read backwards
                assert torch.allclose(out[b, t], alone[0, -1], atol=1e-6)


def test_backward_pass_rejects_what_it_cannot_run():
    with pytest.raises(TypeError, match="needs an nn.LSTM, nn.GRU or nn.RNN, got Linear"):
        backward_pass(nn.Linear(3, 4), torch.randn(2, 5, 3), None)
    with pytest.raises(ValueError, match="batch_first, one-direction"):
        backward_pass(nn.GRU(3, 4), torch.randn(2, 5, 3), None)
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        reverse_padded(torch.randn(2, 5, 3), torch.tensor([5, 3, 1]))
