"""Optimizers by name: clipped-adam through our path (lrd applied by the learning-rate schedule)
equals Pyro's ClippedAdam; the options reach torch's optimizers; bad names and options are
refused in one line naming them."""

import json

import pytest
import torch
from pyro.optim.clipped_adam import ClippedAdam

from pyrosequence.training.config import TrainConfig
from pyrosequence.optim.optimizers import OPTIMIZERS, apply_options, build_optimizer, check_optimizer, per_update_decay
from pyrosequence.optim.schedules import LearningRate


def params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(6, 4, generator=g)), torch.nn.Parameter(torch.randn(5, generator=g))]


def gradients(steps, shapes, scale, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[scale * torch.randn(*s, generator=g) for s in shapes] for _ in range(steps)]


def test_clipped_adam_through_our_path_equals_pyros_clipped_adam():
    lr, steps = 0.02, 60
    options = {"betas": [0.96, 0.999], "clip_norm": 1.5, "lrd": 0.97, "weight_decay": 0.3}
    ours, theirs = params(), params()
    grads = gradients(steps, [p.shape for p in ours], scale=3.0)
    assert sum(bool((g.abs() > options["clip_norm"]).any()) for step in grads for g in step) > steps  # clamped often
    optimizer = build_optimizer("clipped-adam", ours, lr, options)
    assert isinstance(optimizer, ClippedAdam) and optimizer.param_groups[0]["lrd"] == 1.0  # lrd goes through the rate
    rate = LearningRate(lr, [], per_update_decay("clipped-adam", check_optimizer("clipped-adam", options)))
    reference = ClippedAdam(theirs, lr=lr, betas=(0.96, 0.999), clip_norm=1.5, lrd=0.97, weight_decay=0.3)
    for step, grad in enumerate(grads):
        if step == steps // 2:  # a checkpoint and resume half way: state_dict of optimizer and rate
            state, rate_state = optimizer.state_dict(), rate.state_dict()
            optimizer = build_optimizer("clipped-adam", ours, lr, options)
            optimizer.load_state_dict(state)
            rate = LearningRate(lr, [], 0.97)
            rate.load_state_dict(rate_state)
        for p, q, g in zip(ours, theirs, grad):
            p.grad, q.grad = g.clone(), g.clone()
        applied = rate.apply(optimizer, step, 0)
        optimizer.step()
        reference.step()
        assert applied == pytest.approx(reference.param_groups[0]["lr"], rel=1e-12)  # lr * lrd**(step + 1)
        for p, q in zip(ours, theirs):
            assert torch.allclose(p, q, rtol=0, atol=1e-6), step
    moved = params()
    assert all((p - q).abs().max() > 0.05 for p, q in zip(ours, moved))  # the comparison is not of parameters at rest


def run(optimizer, ps, grads):
    for grad in grads:
        for p, g in zip(ps, grad):
            p.grad = g.clone()
        optimizer.step()
    return ps


@pytest.mark.parametrize(
    "name,options,reference",
    [
        ("adam", {"betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1},
         lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
        ("adam", {}, lambda ps: torch.optim.Adam(ps, lr=0.01)),
        ("adamw", {"betas": [0.85, 0.995], "eps": 1e-7, "weight_decay": 0.2},
         lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.2)),
        ("adamw", {}, lambda ps: torch.optim.AdamW(ps, lr=0.01)),
        ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05},
         lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.05)),
        ("sgd", {}, lambda ps: torch.optim.SGD(ps, lr=0.01)),
    ],
)
def test_options_reach_torchs_optimizers(name, options, reference):
    ours, theirs = params(), params()
    optimizer = build_optimizer(name, ours, 0.01, options)
    expected = reference(theirs)
    assert type(optimizer) is type(expected)
    for key in ("lr", "betas", "eps", "weight_decay", "momentum", "nesterov"):
        if key in expected.param_groups[0]:
            assert optimizer.param_groups[0][key] == expected.param_groups[0][key], key
    grads = gradients(8, [p.shape for p in ours], scale=1.0)
    for p, q in zip(run(optimizer, ours, grads), run(expected, theirs, grads)):
        assert torch.equal(p, q)


def test_defaults_complete_the_options_and_are_recorded():
    assert check_optimizer("adam", {}) == {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}
    assert check_optimizer("adamw", {})["weight_decay"] == 0.01
    assert check_optimizer("clipped-adam", {"betas": (0.96, 0.999)}) == {
        "betas": [0.96, 0.999], "eps": 1e-8, "weight_decay": 0.0, "clip_norm": 10.0, "lrd": 1.0}
    assert check_optimizer("sgd", {}) == {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    config = TrainConfig(optimizer="clipped-adam", optimizer_options={"lrd": 0.99996, "weight_decay": 2.0})
    assert config.optimizer_options["lrd"] == 0.99996 and config.optimizer_options["clip_norm"] == 10.0
    assert per_update_decay(config.optimizer, config.optimizer_options) == 0.99996
    assert per_update_decay("adam", check_optimizer("adam", {})) == 1.0
    recorded = json.loads(config.to_json())
    assert recorded["optimizer"] == "clipped-adam" and recorded["optimizer_options"] == config.optimizer_options


def test_apply_options_gives_a_loaded_optimizer_the_options_of_now():
    ps = params()
    old = build_optimizer("clipped-adam", ps, 0.01, {"betas": [0.9, 0.999], "weight_decay": 0.0, "clip_norm": 10.0})
    run(old, ps, gradients(2, [p.shape for p in ps], 1.0))
    new = build_optimizer("clipped-adam", ps, 0.01, {})
    new.load_state_dict(old.state_dict())
    apply_options(new, "clipped-adam", {"betas": [0.5, 0.9], "weight_decay": 0.1, "clip_norm": 2.0})
    group = new.param_groups[0]
    assert (group["betas"], group["weight_decay"], group["clip_norm"], group["lrd"]) == ((0.5, 0.9), 0.1, 2.0, 1.0)
    assert new.state[ps[0]]["step"] == 2  # the moments are kept


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("rmsprop", {}, "unknown optimizer 'rmsprop'; choose one of: adam, adamw, clipped-adam, sgd"),
        ("adam", {"lrd": 0.99}, "optimizer 'adam' does not take lrd; it takes: betas, eps, weight_decay"),
        ("adamw", {"clip_norm": 5.0}, "optimizer 'adamw' does not take clip_norm"),
        ("sgd", {"betas": [0.9, 0.99]}, "optimizer 'sgd' does not take betas; it takes: momentum, nesterov, weight_decay"),
        ("clipped-adam", {"momentum": 0.9}, "optimizer 'clipped-adam' does not take momentum"),
        ("adam", {"betas": [0.9]}, "adam: betas must be two numbers in [0, 1), got [0.9]"),
        ("adam", {"betas": [0.9, 1.0]}, "adam: betas must be two numbers in [0, 1), got [0.9, 1.0]"),
        ("clipped-adam", {"betas": [-0.1, 0.999]}, "clipped-adam: betas must be two numbers in [0, 1)"),
        ("adamw", {"betas": "0.9,0.99"}, "adamw: betas must be two numbers in [0, 1)"),
        ("clipped-adam", {"lrd": -0.9}, "clipped-adam: lrd (the per-update decay factor) must be in (0, 1], got -0.9"),
        ("clipped-adam", {"lrd": 1.01}, "lrd (the per-update decay factor) must be in (0, 1], got 1.01"),
        ("clipped-adam", {"clip_norm": 0}, "clipped-adam: clip_norm must be a positive number, got 0"),
        ("adam", {"weight_decay": -1.0}, "adam: weight_decay must be a non-negative number, got -1.0"),
        ("adam", {"eps": 0.0}, "adam: eps must be a positive number, got 0.0"),
        ("sgd", {"momentum": -0.5}, "sgd: momentum must be a non-negative number, got -0.5"),
        ("sgd", {"nesterov": True}, "sgd: nesterov needs a positive momentum"),
        ("sgd", {"nesterov": "yes", "momentum": 0.9}, "sgd: nesterov must be true or false"),
    ],
)
def test_bad_optimizers_and_options_are_refused_in_one_line(name, options, message):
    with pytest.raises(ValueError) as error:
        check_optimizer(name, options)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
    with pytest.raises(ValueError) as error:
        TrainConfig(optimizer=name, optimizer_options=options)
    assert message in str(error.value)
    assert sorted(OPTIMIZERS) == ["adam", "adamw", "clipped-adam", "sgd"]
