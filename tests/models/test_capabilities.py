"""What a model offers, answered in one place (pyrosequence.models.core.capabilities)."""

import pytest
import torch

from pyrosequence import VRNN, LinearGaussianSSM, PyroProgram, multi_rate
from pyrosequence.models.core import capabilities
from pyrosequence.models.core.capabilities import (PiecesRequiredError, draws_latents, has_pieces, is_multi_rate,
                                                   is_whole_program, require_pieces)
from pyrosequence.models.autoregressive_rnn import FRNN


def _nothing(x, lengths=None):
    pass


def Program():
    return PyroProgram(_nothing, _nothing, x_dim=3)


class OverridesModel(VRNN):
    def model(self, x, lengths=None, *args):
        return super().model(x, lengths, *args)


class OverridesButMatches(OverridesModel):
    overrides_match_pieces = True


def test_each_kind_of_model_is_answered():
    vrnn, program, gated = VRNN(3, 2), Program(), multi_rate(VRNN(3, 2))
    assert has_pieces(vrnn) and not is_whole_program(vrnn) and not is_multi_rate(vrnn)
    assert not has_pieces(program) and is_whole_program(program) and not is_multi_rate(program)
    assert has_pieces(gated) and is_multi_rate(gated)
    assert not has_pieces(OverridesModel(3, 2)) and has_pieces(OverridesButMatches(3, 2))
    seqs = vrnn.prepare(torch.zeros(2, 4, 3))
    assert draws_latents(vrnn, seqs) and not draws_latents(FRNN(3, 4), FRNN(3, 4).prepare(torch.zeros(2, 4, 3)))
    assert has_pieces(LinearGaussianSSM(2, 2)) and not has_pieces(object())


@pytest.mark.parametrize("make", [Program, lambda: OverridesModel(3, 2)])
def test_require_pieces_names_the_model_and_the_purpose(make):
    model = make()
    with pytest.raises(PiecesRequiredError, match=rf"the fivo bound needs .*(plain Pyro program|{type(model).__name__})"):
        require_pieces(model, "the fivo bound")


def test_the_old_home_of_the_questions_still_answers():
    from pyrosequence.models.core import program

    assert program.has_pieces is capabilities.has_pieces and program.PiecesRequiredError is PiecesRequiredError
