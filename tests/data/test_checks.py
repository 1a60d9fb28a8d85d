"""Input validation: ``check_sequences``/``check_lengths`` and a model's ``prepare``/``model``/``guide``."""

import numpy as np
import pyro
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample
import pytest
import torch

from pyrosequence.data import check_lengths, check_sequences
from pyrosequence.models import VRNN


@pytest.fixture(autouse=True)
def _fresh_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def _x(batch=3, time=5, dim=2):
    return torch.arange(batch * time * dim, dtype=torch.float32).reshape(batch, time, dim) / 10.0


# ---------------------------------------------------------------------------- x itself
@pytest.mark.parametrize("bad", [np.zeros((2, 3, 2)), [[[0.0, 1.0]]], 1.0, None])
def test_non_tensor_x_is_rejected(bad):
    with pytest.raises(TypeError, match=r"x must be a torch tensor of shape \(batch, time, x_dim\)"):
        check_sequences(bad)


def test_type_error_names_the_given_type():
    with pytest.raises(TypeError, match="got ndarray"):
        check_sequences(np.zeros((2, 3, 2)))


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 5, 2), (4,)])
def test_wrong_rank_is_rejected(shape):
    x = torch.zeros(shape)
    pattern = r"must have shape \(batch, time, x_dim\), got shape " + "\\(" + ", ".join(map(str, shape))
    with pytest.raises(ValueError, match=pattern):
        check_sequences(x)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_non_floating_dtype_is_rejected(dtype):
    x = torch.zeros(2, 3, 2, dtype=dtype)
    with pytest.raises(TypeError, match=r"floating-point tensor, got dtype " + str(dtype)):
        check_sequences(x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_floating_dtypes_are_accepted_and_kept(dtype):
    seqs = check_sequences(torch.ones(2, 3, 2, dtype=dtype))
    assert seqs.x.dtype == dtype


@pytest.mark.parametrize("shape", [(0, 5, 2), (3, 0, 2)])
def test_empty_batch_is_rejected(shape):
    with pytest.raises(ValueError, match=r"x is empty: shape"):
        check_sequences(torch.zeros(shape))


def test_wrong_x_dim_is_rejected():
    with pytest.raises(ValueError, match=r"x has x_dim 2 but the model expects x_dim 3"):
        check_sequences(torch.zeros(2, 4, 2), x_dim=3)
    # the right x_dim passes
    assert check_sequences(torch.zeros(2, 4, 3), x_dim=3).x.shape == (2, 4, 3)


def test_custom_name_appears_in_messages():
    with pytest.raises(ValueError, match=r"^batch has x_dim 2"):
        check_sequences(torch.zeros(2, 4, 2), x_dim=3, name="batch")


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_value_reports_sequence_step_and_dimension(value):
    x = _x(4, 6, 3)
    x[2, 4, 1] = value
    with pytest.raises(ValueError, match=r"inf at sequence 2, step 4, dimension 1$"):
        check_sequences(x)


def test_nan_is_a_missing_value_zero_filled_and_recorded():
    x = _x(4, 6, 3)
    x[2, 4, 1] = float("nan")
    seqs = check_sequences(x)
    assert seqs.observed is not None and int((~seqs.observed).sum()) == 1 and not seqs.observed[2, 4, 1]
    assert seqs.x[2, 4, 1] == 0 and torch.isfinite(seqs.x).all()
    assert torch.isnan(seqs.x_with_nan[2, 4, 1]) and seqs.num_observed().tolist() == [18, 18, 17, 18]
    assert check_sequences(_x(4, 6, 3)).observed is None  # nothing missing: no mask at all
    with pytest.raises(ValueError, match=r"NaN at sequence 2, step 4, dimension 1 \(missing values are not accepted"):
        check_sequences(x, missing=False)


def test_a_sequence_with_nothing_observed_is_named():
    x = _x(3, 6, 2)
    lengths = torch.tensor([6, 3, 5])
    x[1, :3] = float("nan")  # everything within its length; the padding is not looked at
    with pytest.raises(ValueError, match=r"sequence 1 has no observed value"):
        check_sequences(x, lengths)
    x[1, 2, 0] = 1.0
    assert check_sequences(x, lengths).num_observed()[1] == 1


def test_first_non_finite_value_is_reported_in_sequence_then_step_order():
    x = _x(4, 6, 2)
    x[3, 0, 0] = float("inf")  # later sequence, earlier step
    x[1, 5, 1] = float("nan")
    x[1, 2, 1] = float("-inf")  # the first one: sequence 1, step 2
    with pytest.raises(ValueError, match=r"at sequence 1, step 2, dimension 1"):
        check_sequences(x)


def test_non_finite_value_inside_lengths_is_rejected():
    x = _x(3, 6, 2)
    lengths = torch.tensor([6, 3, 5])
    x[1, 2, 0] = float("inf")  # last valid step of sequence 1
    with pytest.raises(ValueError, match=r"at sequence 1, step 2, dimension 0"):
        check_sequences(x, lengths)


# ---------------------------------------------------------------------------- lengths
def test_lengths_of_wrong_shape_are_rejected():
    x = _x(3, 5, 2)
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\) to match x's batch size, got \(2,\)"):
        check_sequences(x, torch.tensor([5, 5]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\).*got \(3, 1\)"):
        check_sequences(x, torch.tensor([[5], [5], [5]]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\).*got \(\)"):
        check_sequences(x, torch.tensor(5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_non_integer_lengths_are_rejected(dtype):
    x = _x(2, 5, 2)
    with pytest.raises(TypeError, match=r"lengths must be an integer tensor, got dtype " + str(dtype)):
        check_sequences(x, torch.tensor([5, 3]).to(dtype))


def test_non_tensor_lengths_are_rejected():
    with pytest.raises(TypeError, match=r"lengths must be a torch tensor of shape \(2,\), got list"):
        check_sequences(_x(2, 5, 2), [5, 3])


def test_zero_length_is_rejected_naming_the_sequence():
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\].*sequence 2 has length 0"):
        check_sequences(_x(3, 5, 2), torch.tensor([5, 3, 0]))


def test_negative_length_is_rejected():
    with pytest.raises(ValueError, match=r"sequence 0 has length -1"):
        check_sequences(_x(2, 5, 2), torch.tensor([-1, 3]))


def test_length_beyond_time_is_rejected_naming_the_sequence():
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\] \(x has 5 time steps\); sequence 1 has length 6"):
        check_sequences(_x(3, 5, 2), torch.tensor([5, 6, 2]))


def test_first_bad_length_is_reported():
    with pytest.raises(ValueError, match=r"sequence 1 has length 9"):
        check_lengths(torch.tensor([3, 9, 0]), batch_size=3, num_steps=5)


def test_check_lengths_returns_int64():
    out = check_lengths(torch.tensor([1, 4], dtype=torch.int32), batch_size=2, num_steps=4)
    assert out.dtype == torch.int64
    assert out.tolist() == [1, 4]


# ---------------------------------------------------------------------------- what comes back
def test_nan_in_padding_is_accepted_and_zeroed():
    x = _x(3, 6, 2)
    lengths = torch.tensor([6, 2, 4])
    x[1, 2:] = float("nan")
    x[2, 4, 0] = float("inf")
    x[2, 5, 1] = float("-inf")
    seqs = check_sequences(x, lengths)
    assert torch.isfinite(seqs.x).all()
    assert torch.equal(seqs.x[1, 2:], torch.zeros(4, 2))
    assert torch.equal(seqs.x[2, 4:], torch.zeros(2, 2))
    # the valid part is untouched
    clean = _x(3, 6, 2)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(seqs.x[b, :n], clean[b, :n])
    # the caller's tensor is not modified in place
    assert torch.isnan(x[1, 2:]).all()


def test_finite_padding_is_also_zeroed():
    x = torch.ones(2, 4, 1)
    seqs = check_sequences(x, torch.tensor([4, 1]))
    assert seqs.x[:, :, 0].tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]


def test_x_is_truncated_to_the_longest_sequence():
    x = _x(3, 8, 2)
    x[:, 5:] = float("nan")  # beyond every length: dropped
    lengths = torch.tensor([3, 5, 2])
    seqs = check_sequences(x, lengths)
    assert seqs.x.shape == (3, 5, 2)
    assert seqs.num_steps == 5 and seqs.batch_size == 3
    expected_mask = torch.tensor(
        [
            [True, True, True, False, False],
            [True, True, True, True, True],
            [True, True, False, False, False],
        ]
    )
    assert seqs.mask is not None
    assert seqs.mask.dtype == torch.bool
    assert torch.equal(seqs.mask, expected_mask)
    assert torch.equal(seqs.step_mask(3), expected_mask[:, 3])
    assert torch.equal(seqs.lengths, lengths)
    assert seqs.lengths.dtype == torch.int64


def test_mask_is_none_without_lengths():
    x = _x(2, 4, 2)
    seqs = check_sequences(x)
    assert seqs.mask is None
    assert seqs.step_mask(0) is None
    assert torch.equal(seqs.x, x)
    assert seqs.lengths.tolist() == [4, 4]
    assert seqs.lengths.dtype == torch.int64


def test_mask_is_none_when_every_length_is_full():
    x = _x(2, 4, 2)
    seqs = check_sequences(x, torch.tensor([4, 4], dtype=torch.int32))
    assert seqs.mask is None
    assert torch.equal(seqs.x, x)
    assert seqs.lengths.tolist() == [4, 4]
    assert seqs.lengths.dtype == torch.int64


def test_mask_is_none_when_equal_lengths_are_shorter_than_x():
    x = _x(2, 6, 2)
    x[:, 3:] = float("nan")
    seqs = check_sequences(x, torch.tensor([3, 3]))
    assert seqs.mask is None
    assert seqs.x.shape == (2, 3, 2)
    assert torch.equal(seqs.x, _x(2, 6, 2)[:, :3])


# ---------------------------------------------------------------------------- models
def _sample_sites(trace):
    """Names of the sample sites (plates included, since a plate is entered before any sampling)."""
    return [name for name, node in trace.nodes.items() if node["type"] == "sample"]


def test_bernoulli_vrnn_rejects_non_binary_data():
    model = VRNN(3, 2, likelihood="bernoulli")
    x = torch.zeros(2, 4, 3)
    x[1, 2, 0] = 0.5
    with pytest.raises(ValueError, match=r"binary.*found the value 0\.5"):
        model.prepare(x)


def test_bernoulli_vrnn_accepts_binary_data_and_non_binary_padding():
    model = VRNN(3, 2, likelihood="bernoulli")
    x = (torch.arange(24, dtype=torch.float32).reshape(2, 4, 3) % 2)
    x[1, 3] = 0.5  # padding of sequence 1
    seqs = model.prepare(x, torch.tensor([4, 3]))
    assert seqs.x[1, 3].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="binary"):
        model.prepare(x)  # without lengths the 0.5 is data


def test_gaussian_vrnn_accepts_real_data():
    model = VRNN(3, 2, likelihood="gaussian")
    x = torch.zeros(2, 4, 3)
    x[1, 2, 0] = 0.5
    seqs = model.prepare(x)
    assert torch.equal(seqs.x, x)


def test_prepare_checks_the_model_x_dim_and_finiteness():
    model = VRNN(3, 2, likelihood="gaussian")
    with pytest.raises(ValueError, match=r"x has x_dim 2 but the model expects x_dim 3"):
        model.prepare(torch.zeros(2, 4, 2))
    x = torch.zeros(2, 4, 3)
    x[0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"sequence 0, step 1, dimension 2"):
        model.prepare(x)


def _bad_inputs():
    non_binary = torch.zeros(2, 4, 3)
    non_binary[0, 0, 1] = 0.5
    nan = torch.zeros(2, 4, 3)
    nan[1, 3, 0] = float("inf")
    return [
        ("bernoulli", non_binary, None, ValueError, r"binary"),
        ("gaussian", nan, None, ValueError, r"inf at sequence 1, step 3"),
        ("gaussian", torch.zeros(2, 4, 5), None, ValueError, r"expects x_dim 3"),
        ("gaussian", torch.zeros(2, 4), None, ValueError, r"must have shape \(batch, time, x_dim\)"),
        ("gaussian", torch.zeros(2, 4, 3, dtype=torch.long), None, TypeError, r"floating-point"),
        ("gaussian", np.zeros((2, 4, 3)), None, TypeError, r"must be a torch tensor"),
        ("gaussian", torch.zeros(2, 4, 3), torch.tensor([4, 0]), ValueError, r"sequence 1 has length 0"),
        ("gaussian", torch.zeros(2, 4, 3), torch.tensor([4.0, 2.0]), TypeError, r"integer tensor"),
    ]


@pytest.mark.parametrize("program", ["guide", "model"])
@pytest.mark.parametrize("likelihood,x,lengths,error,pattern", _bad_inputs())
def test_model_and_guide_raise_before_sampling(program, likelihood, x, lengths, error, pattern):
    vrnn = VRNN(3, 2, likelihood=likelihood)
    traced = poutine.trace(getattr(vrnn, program))
    with pytest.raises(error, match=pattern):
        traced.get_trace(x, lengths)
    assert _sample_sites(traced.msngr.trace) == []


@pytest.mark.parametrize("program", ["guide", "model"])
def test_model_and_guide_run_on_valid_input(program):
    # the counterpart of the test above: the same programs do sample on good data
    vrnn = VRNN(3, 2, likelihood="bernoulli")
    x = torch.zeros(2, 4, 3)
    x[0, 1] = 1.0
    trace = poutine.trace(getattr(vrnn, program)).get_trace(x, torch.tensor([4, 2]))
    sites = [name for name in _sample_sites(trace) if not site_is_subsample(trace.nodes[name])]
    assert sites[:4] == vrnn.latent_sites(4)
    assert ("x" in sites) == (program == "model")
