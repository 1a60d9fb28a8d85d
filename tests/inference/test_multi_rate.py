"""Multi-Rate VAEs of library models: conversion, exact identities, training wiring and the
rate-distortion command."""

import copy
import csv
import json
import math

import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

import pyro
import pyro.poutine as poutine

from pyrosequence import VHRNN, VRNN, HyperLSTM, LinearGaussianSSM
from pyrosequence.cli import main
from pyrosequence.training.config import TrainConfig
from pyrosequence.inference import make_objective
from pyrosequence.inference.multi_rate import LogUniformBeta
from pyrosequence.inference.rate_distortion import rate_distortion, rate_distortion_sums, rd_curve
from pyrosequence.inference.scaling import scale_latents
from pyrosequence.models import MODELS
from pyrosequence.models.multi_rate import gate_parameter_count, gates, is_multi_rate, multi_rate, open_gates, set_beta
from pyrosequence.nn.beta_gate import DECODER, ENCODER
from pyrosequence.training.rundir import build_model

BUILDERS = {
    "vrnn-lstm": lambda: VRNN(3, 4, likelihood="gaussian"),
    "vrnn-gru-2layers": lambda: VRNN(3, 4, likelihood="gaussian", cell="gru", layers=2),
    "vhrnn-lstm": lambda: VHRNN(3, 4, omega_dim=5),
    "vhrnn-gru-mlp": lambda: VHRNN(3, 4, cell="gru", hyper_net="mlp", omega_dim=5),
    # models with whole-sequence nn.LSTMs also applied step by step through their weights
    **{name: (lambda name=name: MODELS[name](3, 4, likelihood="gaussian")) for name in ("storn", "srnn", "zforcing", "srnn-simple")},
}


def batch():
    return torch.randn(5, 6, 3), torch.tensor([6, 4, 6, 1, 5])


def log_joint(model, x, lengths, seed):
    """``log p(x, z) - log q(z | x)`` summed, on the guide draw made from ``seed``."""
    pyro.set_rng_seed(seed)
    guide = poutine.trace(model.guide).get_trace(x, lengths)
    joint = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x, lengths)
    return joint.log_prob_sum() - guide.log_prob_sum()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_open_gates_give_the_base_model(name):
    """w = 0 and an offset that makes every gate exactly 1: the same log-densities on the same
    draws as the base model, at any beta (float64; the hand-written cells round differently
    from torch's fused ones only in the last bits)."""
    torch.set_default_dtype(torch.float64)
    base = BUILDERS[name]()
    mr = multi_rate(copy.deepcopy(base))
    open_gates(mr)
    assert all(bool((g() == 1).all()) for _, g in gates(mr))
    x, lengths = batch()
    for beta in (0.01, 1.0, 7.0):
        set_beta(mr, beta)
        assert torch.allclose(log_joint(mr, x, lengths, 3), log_joint(base, x, lengths, 3), rtol=1e-12, atol=1e-10)


def test_roles_follow_the_pieces_that_use_each_layer():
    model = multi_rate(VRNN(3, 4, likelihood="gaussian"))
    roles = model.gate_roles
    assert {n for n, r in roles.items() if r == ENCODER} == {"encoder_net.0", "encoder_head.params"}
    assert roles["rnn.cell"] == roles["phi_x.0"] == roles["prior_head.params"] == roles["decoder_head.params"] == DECODER
    assert model.ungated == []
    vh = multi_rate(VHRNN(3, 4, omega_dim=5))
    assert {"cell", "theta.rnn", "theta.project", "decoder.0", "decoder.0.generator.0"} <= set(vh.gate_roles)
    assert "decoder.0.weight" not in vh.gate_roles  # covered by the HyperLinear's own gate
    # 2 parameters per gated unit: the paper's 2 m_{i+1} per layer
    assert gate_parameter_count(model) == 2 * sum(g.features for _, g in gates(model))


@pytest.mark.parametrize("beta", [0.3, 4.0])
def test_training_loss_is_beta_rate_plus_distortion(beta):
    """TraceMeanField_ELBO with the latent sites scaled by beta equals beta * R + D, with R (the
    analytic KL) and D computed independently on the same draw."""
    model = multi_rate(VRNN(3, 4, likelihood="gaussian"))
    set_beta(model, beta)
    x, lengths = batch()
    pyro.set_rng_seed(11)
    loss = TraceMeanField_ELBO(max_plate_nesting=1).loss(scale_latents(model.model, beta), scale_latents(model.guide, beta), x, lengths)
    pyro.set_rng_seed(11)
    with torch.no_grad():
        rate, distortion, analytic = rate_distortion_sums(model, x, lengths)
    assert analytic
    assert loss == pytest.approx(float(beta * rate + distortion), rel=1e-6)
    assert float(rate) > 0


@pytest.mark.parametrize("name", ["storn", "srnn", "srnn-simple"])
def test_sequence_lstm_models_train_their_gates(name):
    """Their LSTMs run in one nn.LSTM call (guide) and step by step (particle filter): both
    paths must see the gates."""
    model = multi_rate(BUILDERS[name]())
    roles = model.gate_roles
    assert ENCODER in roles.values() and DECODER in roles.values()
    x, lengths = batch()
    set_beta(model, 2.5)
    for objective in ("elbo", "fivo"):
        model.zero_grad(set_to_none=True)
        loss = make_objective(objective, 2).loss_and_grads(scale_latents(model.model, 2.5), scale_latents(model.guide, 2.5), x, lengths)
        assert math.isfinite(loss)
        for gate_name, gate in gates(model):
            assert gate.bias.grad is not None and bool(gate.bias.grad.abs().sum() > 0), (objective, gate_name)


@pytest.mark.parametrize("objective", ["elbo", "mean-field", "iwae", "iwae-dreg", "elbo-stl", "fivo"])
def test_every_objective_trains_the_gates(objective):
    model = multi_rate(VHRNN(3, 4, omega_dim=5) if objective == "fivo" else VRNN(3, 4, likelihood="gaussian"))
    x, lengths = batch()
    beta = 2.5  # u != 0, so the gates' slopes get gradient too
    set_beta(model, beta)
    elbo = make_objective(objective, 2)
    loss = elbo.loss_and_grads(scale_latents(model.model, beta), scale_latents(model.guide, beta), x, lengths)
    assert math.isfinite(loss)
    for name, gate in gates(model):
        assert gate.weight.grad is not None and bool(gate.weight.grad.abs().sum() > 0), name
        assert bool(gate.bias.grad.abs().sum() > 0), name


def test_state_dict_round_trip_through_build_model():
    config = TrainConfig(model="vrnn", z_dim=4, multi_rate=True, beta_range=[0.1, 10.0])
    a, b = build_model(config, 3), build_model(config, 3)
    assert is_multi_rate(a)
    with torch.no_grad():
        for _, g in gates(a):
            g.weight.normal_()
    b.load_state_dict(a.state_dict())
    x, lengths = batch()
    x = (x > 0).float()
    for model in (a, b):
        set_beta(model, 0.2)
    assert torch.equal(log_joint(a, x, lengths, 5), log_joint(b, x, lengths, 5))
    other = TrainConfig(model="vrnn", z_dim=4)
    with pytest.raises(RuntimeError, match="beta_conditioner|gate"):
        build_model(other, 3).load_state_dict(a.state_dict())


def test_rd_curve_of_a_multi_rate_model_restores_beta():
    model = multi_rate(VRNN(3, 4, likelihood="gaussian"), (0.1, 10.0))
    set_beta(model, 0.5)
    x, lengths = batch()
    points = rd_curve(model, x, lengths, num_samples=2)
    assert [p.kind for p in points] == ["multi-rate"] * 10
    assert points[0].beta == pytest.approx(0.1) and points[-1].beta == pytest.approx(10.0)
    assert model.beta_conditioner.beta == 0.5
    for p in points:
        assert p.num_steps == 22 and p.analytic_kl and p.loss == pytest.approx(p.distortion + p.beta * p.rate)
    with pytest.raises(ValueError, match="num_samples"):
        rate_distortion(model, x, lengths, num_samples=0)


def test_log_uniform_beta():
    schedule = LogUniformBeta(0.01, 10.0, seed=3)
    betas = torch.tensor([schedule(step) for step in range(4000)], dtype=torch.float64)
    assert schedule(17) == schedule(17) and schedule(17) != schedule(18)
    assert bool((betas >= 0.01).all() and (betas <= 10.0).all())
    logs = betas.log()
    lo, hi = math.log(0.01), math.log(10.0)
    sd = (hi - lo) / math.sqrt(12)
    assert abs(float(logs.mean()) - (lo + hi) / 2) < 4 * sd / math.sqrt(4000)
    # uniform in log beta: each quarter of the log range holds a quarter of the draws
    quarters = torch.histc(logs, bins=4, min=lo, max=hi) / 4000
    assert bool(((quarters - 0.25).abs() < 4 * math.sqrt(0.25 * 0.75 / 4000)).all())


def test_bad_input():
    with pytest.raises(ValueError, match="no latent variables"):
        multi_rate(HyperLSTM(3, 4))
    with pytest.raises(ValueError, match="cannot gate .*LinearGaussianSSM.*transition_matrix"):
        multi_rate(LinearGaussianSSM(3, 2))
    with pytest.raises(ValueError, match="no layer"):
        multi_rate(LinearGaussianSSM(3, 2), allow_ungated=True)
    model = multi_rate(VRNN(3, 4))
    with pytest.raises(ValueError, match="already"):
        multi_rate(model)
    with pytest.raises(ValueError, match="positive finite"):
        set_beta(model, 0.0)
    with pytest.raises(ValueError, match="not a multi-rate"):
        set_beta(VRNN(3, 4), 1.0)
    with pytest.raises(TypeError, match="SequenceModel"):
        multi_rate(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="a < b"):
        LogUniformBeta(10.0, 0.01)
    with pytest.raises(ValueError, match="zero width"):
        multi_rate(VRNN(3, 4), (1.0, 1.0))
    with pytest.raises(ValueError, match="a < b"):
        TrainConfig(multi_rate=True, beta_range=[1.0, 0.1])
    with pytest.raises(ValueError, match="zero width"):
        TrainConfig(multi_rate=True, beta_range=[0.5, 0.5])
    with pytest.raises(ValueError, match="positive finite"):
        TrainConfig(multi_rate=True, beta_range=[0.0, 1.0])
    with pytest.raises(ValueError, match="no latent variables"):
        TrainConfig(model="hyperlstm", multi_rate=True)
    with pytest.raises(ValueError, match="kl_anneal"):
        TrainConfig(multi_rate=True, kl_anneal=True)


def test_train_multi_rate_and_rd_curve_from_the_command_line(tmp_path, capsys):
    common = ["--z-dim", "3", "--epochs", "1", "--train-subset", "8", "--batch-size", "8", "--eval-particles", "1",
              "--eval-bound", "elbo", "--no-progress"]
    mr, beta_vae, out = tmp_path / "mr", tmp_path / "b05", tmp_path / "rd"
    assert main(["train", "--multi-rate", "--beta-range", "0.1", "10", "--out", str(mr), *common]) == 0
    assert main(["train", "--beta", "0.5", "--out", str(beta_vae), *common]) == 0
    assert json.loads((mr / "config.json").read_text())["beta_range"] == [0.1, 10.0]
    argv = ["rd-curve", str(mr), str(beta_vae), "--betas", "0.1", "1", "10", "--out", str(out)]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "rd_curve.csv").open()))
    assert [(r["kind"], float(r["beta"])) for r in rows] == [("multi-rate", 0.1), ("multi-rate", 1.0), ("multi-rate", 10.0), ("beta-VAE", 0.5)]
    assert (out / "rd_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "| mr | multi-rate |" in (out / "rd_curve.md").read_text()
    capsys.readouterr()
    assert main(argv) == 1  # never overwrite without --force
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert main(argv + ["--force"]) == 0
    assert main(["train", "--multi-rate", "--beta-range", "2", "1", "--out", str(tmp_path / "bad")]) == 1
    assert "a < b" in capsys.readouterr().err
    # evaluate the multi-rate model at a chosen beta; a beta-VAE run has no gates to set
    assert main(["evaluate", str(mr), "--beta", "0.1"]) == 0
    record = json.loads((mr / "evaluations.jsonl").read_text().splitlines()[-1])
    assert record["beta"] == 0.1
    capsys.readouterr()
    assert main(["evaluate", str(beta_vae), "--beta", "0.1"]) == 1
    assert "needs a multi-rate run" in capsys.readouterr().err
    assert main(["evaluate", str(mr), "--beta", "0"]) == 1


def test_cached_gates_follow_beta_parameters_and_grad_mode():
    """Gates and scaled weights are computed once per forward pass and cached: the cache must
    not outlive a backward pass, a parameter update, a change of beta or of the grad mode."""
    model = multi_rate(VRNN(3, 4, likelihood="gaussian"))
    with torch.no_grad():  # slopes w != 0: the gates depend on beta
        for _, g in gates(model):
            g.weight.normal_(0.0, 0.5)
    x, lengths = batch()
    elbo = make_objective("mean-field")
    set_beta(model, 2.0)

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        pyro.set_rng_seed(1)
        loss = elbo.loss_and_grads(scale_latents(model.model, 2.0), scale_latents(model.guide, 2.0), x, lengths)
        return loss, [g.weight.grad.clone() for _, g in gates(model)]

    with torch.no_grad():  # a forward without graph first: must not feed the next one
        log_joint(model, x, lengths, 0)
    first, grads = loss_and_grads()
    again, grads_again = loss_and_grads()  # same parameters: a second backward works, same gradients
    assert again == first and all(torch.equal(a, b) for a, b in zip(grads, grads_again))
    with torch.no_grad():
        gates(model)[0][1].bias.add_(1.0)  # an in-place update (what an optimizer step does)
    assert loss_and_grads()[0] != first
    with torch.no_grad():
        gates(model)[0][1].bias.sub_(1.0)
    assert loss_and_grads()[0] == pytest.approx(first, rel=1e-6)
    set_beta(model, 0.1)
    with torch.no_grad():
        at_small = log_joint(model, x, lengths, 1)
        set_beta(model, 2.0)
        at_two = log_joint(model, x, lengths, 1)
    assert not torch.equal(at_small, at_two)
    log_joint(model, x, lengths, 1)  # a graph left behind in the cache...
    twin = copy.deepcopy(model)  # ...is not copied
    assert torch.equal(log_joint(twin, x, lengths, 4), log_joint(model, x, lengths, 4))
