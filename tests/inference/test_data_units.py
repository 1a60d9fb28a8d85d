"""Bounds in the data's own units (``in_data_units``): the change-of-variables identity, checked
exactly with the linear-Gaussian model, whose likelihood is known for the data and for its
standardised version alike."""

import math

import pytest
import torch

from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.inference.evaluate import EvaluationResult, in_data_units
from pyrosequence.models.linear_gaussian import LinearGaussianSSM


def scaled_copy(model: LinearGaussianSSM, scale: torch.Tensor) -> LinearGaussianSSM:
    """The model of ``scale * x`` when ``model`` is the model of ``x`` (same latent chain)."""
    copy = LinearGaussianSSM(model.x_dim, model.z_dim, proposal="prior").double()
    copy.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        copy.observation_matrix.mul_(scale[:, None])
        copy.log_observation_scale.add_(scale.log())
    return copy


@pytest.mark.parametrize("missing", [False, True])
def test_the_exact_likelihood_of_the_data_is_the_standardised_one_moved_by_the_jacobian(missing):
    torch.manual_seed(0)
    model = LinearGaussianSSM(3, 2, proposal="prior").double()
    x = model.sample(5, 7)
    lengths = torch.tensor([7, 3, 5, 7, 1])
    if missing:
        x[0, 2, 1] = x[1, 0, 0] = x[3, 6, 2] = x[2, 1] = math.nan  # single elements and a whole step
    scale = torch.tensor([0.5, 3.0, 40.0], dtype=torch.float64)
    standardised = EvaluationResult("exact", 1, model.exact_log_prob(x, lengths), lengths)
    in_units = in_data_units(standardised, x, lengths, scale)
    truth = scaled_copy(model, scale).exact_log_prob(x * scale, lengths)
    assert torch.allclose(in_units.log_likelihood, truth, atol=1e-9, rtol=0)
    # a full step moves by -sum(log scale); a missing element adds nothing
    observed = (~torch.isnan(x) & (torch.arange(7)[None, :, None] < lengths[:, None, None])).double()
    expected_shift = -(observed * scale.log()).sum((1, 2))
    assert torch.allclose(in_units.log_likelihood - standardised.log_likelihood, expected_shift, atol=1e-12)
    assert in_units.num_steps is standardised.num_steps


def test_a_dataset_keeps_its_scale_through_subsets_and_devices():
    x = torch.randn(4, 6, 2)
    data = SequenceDataset(x, torch.tensor([6, 5, 4, 6]), "d", torch.tensor([2.0, 0.5]))
    assert torch.equal(data.subset([1, 2]).scale, torch.tensor([2.0, 0.5]))
    assert torch.equal(data.to("cpu").scale, data.scale)
    assert SequenceDataset.from_sequences([x[0], x[1]], "d").scale is None


@pytest.mark.parametrize("scale, message", [
    (torch.tensor([1.0]), r"one factor per observation column, shape \(2,\)"),
    (torch.tensor([1.0, 0.0]), "finite and positive"),
    (torch.tensor([1.0, float("nan")]), "finite and positive"),
])
def test_a_bad_scale_is_refused_naming_the_problem(scale, message):
    with pytest.raises(ValueError, match=message):
        SequenceDataset(torch.randn(2, 3, 2), torch.tensor([3, 3]), "d", scale)


def test_in_data_units_refuses_sequences_that_do_not_match_the_result():
    result = EvaluationResult("elbo", 1, torch.zeros(3), torch.tensor([2, 2, 2]))
    with pytest.raises(ValueError, match="3 of them"):
        in_data_units(result, torch.zeros(2, 2, 1), None, torch.ones(1))
    with pytest.raises(ValueError, match="positive factors"):
        in_data_units(result, torch.zeros(3, 2, 1), None, torch.tensor([-1.0]))
