"""Initialisation schemes: xavier/fivo zero the layers' biases, fivo sets every LSTM's forget-gate
bias to 1 (not a GRU's), the Xavier draws have the variance of U(-a, a) within their sampling
error, ``default`` changes nothing, and a Bernoulli output bias started from the data wins."""

import math

import pytest
import torch
from torch import nn

from pyrosequence.training.checkpoint import load_checkpoint
from pyrosequence.training.config import TrainConfig
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.nn.beta_gate import INIT_BIAS, BetaGate
from pyrosequence.nn.heads import BernoulliHead
from pyrosequence.optim.init import initialize
from pyrosequence.training.rundir import build_model


def vrnn(**options):
    return build_model(TrainConfig(z_dim=3, model_options={"hidden_dim": 8, **options}), 2)


def vhrnn():
    return build_model(TrainConfig(model="vhrnn", z_dim=3, model_options={"hidden_dim": 8}), 2)


def drawn(model):
    """``(module, name, tensor, Xavier bound)`` of every matrix the schemes draw."""
    out = []
    for module in model.modules():
        own = dict(module.named_parameters(recurse=False))
        if getattr(module, "keeps_initialisation", False):
            continue
        if isinstance(module, nn.Linear):
            gain = getattr(module, "initial_gain", 1.0)  # started small on purpose (hyper output layers)
            out.append((module, "weight", own["weight"], gain * math.sqrt(6 / sum(own["weight"].shape))))
        for name in own:
            if name.startswith("weight_ih"):
                w_ih, w_hh = own[name], own["weight_hh" + name[len("weight_ih"):]]
                bound = math.sqrt(6 / (w_ih.shape[1] + w_hh.shape[1] + w_ih.shape[0]))
                out += [(module, name, w_ih, bound), (module, "weight_hh" + name[len("weight_ih"):], w_hh, bound)]
    return out


def is_lstm(module, name_ih):
    w_hh = dict(module.named_parameters(recurse=False))["weight_hh" + name_ih[len("weight_ih"):]]
    return w_hh.shape[0] == 4 * w_hh.shape[1]


def check_biases(model, scheme):
    """Every bias of a drawn layer is 0, except an LSTM's forget-gate block of its first bias
    (1 under fivo); returns how many forget-gate blocks were checked."""
    forget = 0
    for module in model.modules():
        own = dict(module.named_parameters(recurse=False))
        if not (isinstance(module, nn.Linear) or any(n.startswith("weight_ih") for n in own)):
            continue
        for name, param in own.items():
            if not name.startswith("bias"):
                continue
            expected = torch.zeros_like(param)
            suffix = name[len("bias_ih"):]
            if scheme == "fivo" and name.startswith("bias_ih") and is_lstm(module, "weight_ih" + suffix):
                hidden = param.shape[0] // 4
                expected[hidden : 2 * hidden] = 1.0
                forget += 1
            assert torch.equal(param.detach(), expected), (type(module).__name__, name)
    return forget


@pytest.mark.parametrize("scheme", ["xavier", "fivo"])
@pytest.mark.parametrize("build,lstms", [(vrnn, 1), (vhrnn, 2), (lambda: vrnn(cell="gru"), 0),
                                         (lambda: vrnn(architecture="fivo"), 2)], ids=["vrnn", "vhrnn", "vrnn-gru", "vrnn-fivo"])
def test_zero_biases_and_the_forget_gate_bias(scheme, build, lstms):
    model = build()
    initialize(model, scheme)
    # VRNN: its LSTMCell; VHRNN: the hyper cell and the hyper network's LSTMCell; a GRU has no forget
    # gate; the FIVO architecture: its LSTMCell (one bias, TensorFlow's) and the smoothing proposal's nn.LSTM
    assert check_biases(model, scheme) == (lstms if scheme == "fivo" else 0)
    assert all(not b.any() for n, b in model.named_buffers() if n.rsplit(".", 1)[-1].startswith("bias_hh"))
    for _, _, w, a in drawn(model):
        assert w.abs().max() <= a


def test_forget_gate_bias_on_every_layer_and_direction_of_an_lstm():
    model = nn.ModuleDict({"lstm": nn.LSTM(4, 6, num_layers=2, bidirectional=True), "gru": nn.GRU(4, 6, num_layers=2),
                           "cell": nn.GRUCell(3, 5), "out": nn.Linear(12, 2)})
    initialize(model, "fivo")
    assert check_biases(model, "fivo") == 4  # l0, l0_reverse, l1, l1_reverse
    assert torch.equal(model["lstm"].bias_ih_l1_reverse[6:12], torch.ones(6))
    assert not model["lstm"].bias_hh_l1_reverse.any() and not model["gru"].bias_ih_l1.any()
    # the layer-1 kernel reads both directions: [12 + 6, 4 * 6]
    assert dict((n, a) for _, n, _, a in drawn(model["lstm"]))["weight_ih_l1"] == pytest.approx(math.sqrt(6 / (12 + 6 + 24)))


def test_fivo_on_a_multi_rate_model_keeps_the_gates():
    model = build_model(TrainConfig(z_dim=3, model_options={"hidden_dim": 8}, multi_rate=True), 2)
    initialize(model, "fivo")
    assert check_biases(model, "fivo") == 1  # the gated LSTM cell
    gates = [m for m in model.modules() if isinstance(m, BetaGate)]
    assert gates and all(torch.all(g.bias == INIT_BIAS[g.role]) and not g.weight.any() for g in gates)


def xavier_statistics(values):
    """``(mean, mean of squares)`` of values drawn U(-1, 1), each with its standard error:
    Var(u) = 1/3, and Var(u^2) = E u^4 - (E u^2)^2 = 1/5 - 1/9 = 4/45."""
    n = values.numel()
    return (values.mean().item(), math.sqrt(1 / 3 / n)), ((values**2).mean().item(), math.sqrt(4 / 45 / n))


def within(value, expected, standard_error, k=5.0):
    return abs(value - expected) <= k * standard_error


@pytest.mark.parametrize("scheme", ["xavier", "fivo"])
def test_xavier_variance_within_its_sampling_error(scheme):
    torch.manual_seed(0)
    # large layers: the variance a^2 / 3 of each matrix within 5 standard errors of the sample variance
    lstm, linear = nn.LSTMCell(30, 50), nn.Linear(300, 200)
    initialize(nn.ModuleList([lstm, linear]), scheme)
    for w, a in [(lstm.weight_ih, math.sqrt(6 / (30 + 50 + 200))), (lstm.weight_hh, math.sqrt(6 / (30 + 50 + 200))),
                 (linear.weight, math.sqrt(6 / 500))]:
        (mean, se_mean), (square, se_square) = xavier_statistics(w.detach().flatten() / a)
        assert w.abs().max() <= a
        assert within(mean, 0.0, se_mean) and within(square, 1 / 3, se_square), (mean, square)
    # the recurrent matrix is drawn as part of TensorFlow's one kernel, not as its own Xavier matrix
    _, (square, se_square) = xavier_statistics(lstm.weight_hh.detach().flatten() / math.sqrt(6 / (50 + 200)))
    assert not within(square, 1 / 3, se_square)
    # every matrix of the paper models, pooled in units of its bound
    for model in (vrnn(), vhrnn()):
        initialize(model, scheme)
        pooled = torch.cat([w.detach().flatten() / a for _, _, w, a in drawn(model)])
        (mean, se_mean), (square, se_square) = xavier_statistics(pooled)
        assert within(mean, 0.0, se_mean) and within(square, 1 / 3, se_square), (mean, square)


def test_default_leaves_the_model_untouched_and_schemes_follow_the_generator():
    model = vhrnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert initialize(model, "default") is model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    a, b = vrnn(), vrnn()
    initialize(a, "xavier", generator=torch.Generator().manual_seed(3))
    initialize(b, "xavier", generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="unknown initialisation 'orthogonal'; choose one of: default, xavier, fivo"):
        initialize(a, "orthogonal")


@pytest.fixture
def one_thread():
    """One torch thread: a tiny model on a shared 2-core machine trains several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_bernoulli_output_bias_from_the_data_wins_over_the_zero_bias(tmp_path, monkeypatch, one_thread):
    from pyrosequence.data.registry import load_split as real_load_split

    def binary_split(name, split, root=None, options=None):
        data = real_load_split(name, split, root, options)
        x = (data.x[:8, :12] > 0.3).float()
        lengths = data.lengths[:8].clamp(max=12)
        x = x * (torch.arange(12)[None, :, None] < lengths[:, None, None])
        return SequenceDataset(x, lengths, data.name)

    monkeypatch.setattr("pyrosequence.training.loop.load_split", binary_split)
    from pyrosequence.training.loop import train

    config = TrainConfig(epochs=1, z_dim=2, batch_size=8, lr=1e-12, grad_clip=None, eval_particles=1, init="fivo",
                         model_options={"hidden_dim": 8, "likelihood": "bernoulli"})
    train(config, out=tmp_path / "run", progress=False, log=lambda s: None)
    weights = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    full = binary_split("synthetic", "train")
    rate = full.x.sum((0, 1)) / full.lengths.sum()
    expected = torch.log(rate.clamp(1e-5, 1 - 1e-5)) - torch.log1p(-rate.clamp(1e-5, 1 - 1e-5))
    model = vrnn(likelihood="bernoulli")
    (head,) = [n for n, m in model.named_modules() if isinstance(m, BernoulliHead)]
    assert expected.abs().min() > 0.1  # the data's logit is far from the zero bias
    assert torch.allclose(weights[f"{head}.logits.bias"], expected, atol=1e-5)  # init_from_data ran after init
    assert torch.allclose(weights["rnn.cell.bias_ih"][8:16], torch.ones(8), atol=1e-5)  # and init did run
    assert weights["phi_x.0.bias"].abs().max() < 1e-5


def test_schemes_keep_the_starts_models_choose_deliberately():
    """The DMM's identity transition mean stays the identity; hyper output layers keep their
    small start (Xavier times 0.1)."""
    from pyrosequence.models import DMM, VHRNN

    dmm = DMM(6, 5)
    initialize(dmm, "fivo")
    transition = next(m for m in dmm.modules() if getattr(m, "keeps_initialisation", False))
    assert torch.equal(transition.weight, torch.eye(5)) and torch.equal(transition.bias, torch.zeros(5))
    vhrnn = VHRNN(6, 8, architecture="fivo")
    initialize(vhrnn, "xavier")
    small = [m for m in vhrnn.modules() if getattr(m, "initial_gain", 1.0) != 1.0]
    assert small
    for layer in small:
        bound = 0.1 * (6.0 / (layer.weight.shape[0] + layer.weight.shape[1])) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.5 * bound
