"""Learning-rate schedules: every factor gives the sequence its formula says, checked against
``torch.optim.lr_scheduler``'s own sequence where torch has the schedule; composition is the
product; bad specs are refused in one line naming them; the state survives a checkpoint."""

import io
import math

import pytest
import torch
from torch.optim import lr_scheduler

from pyrosequence.training.config import TrainConfig
from pyrosequence.optim.schedules import LearningRate, check_schedule, describe, parse_factor

LR = 0.01


def ours(schedule, updates=None, epochs=None, decay=1.0, lr=LR):
    """Our rate of update u (in epoch 0), or of epoch e (at its first update)."""
    rate = LearningRate(lr, check_schedule(schedule), decay)
    if updates is not None:
        return [rate.rate(u, 0) for u in range(updates)]
    return [rate.rate(0, e) for e in range(epochs)]


def torch_sequence(make, n, lr=LR, metrics=None):
    """The rate torch's scheduler ``make(optimizer)`` gives at each of ``n`` steps (read before the
    step, as the update of that step uses it), fed ``metrics[i]`` after step i if given."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make(optimizer)
    rates = []
    for i in range(n):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(metrics[i]) if metrics is not None else scheduler.step()
    return rates


def test_constant_is_no_schedule():
    assert check_schedule("constant") == check_schedule(None) == check_schedule([]) == []
    assert ours(["constant"], updates=5) == [LR] * 5
    assert ours(["constant"], epochs=5) == [LR] * 5


def test_warmup_is_torchs_linear_lr():
    got = ours(["warmup:steps=5"], updates=12)
    assert got == pytest.approx([LR * min(1.0, (u + 1) / 5) for u in range(12)], rel=1e-15)
    # LinearLR from 1/steps to 1 over steps - 1 scheduler steps: the first update already moves
    expected = torch_sequence(lambda o: lr_scheduler.LinearLR(o, start_factor=1 / 5, end_factor=1.0, total_iters=4), 12)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[4:] == [LR] * 8


def test_exponential_is_pyros_lrd_and_torchs_exponential_lr_one_update_ahead():
    gamma = 0.9
    got = ours([f"exponential:gamma={gamma}"], updates=30)
    assert got == pytest.approx([LR * gamma ** (u + 1) for u in range(30)], rel=1e-12)
    # ExponentialLR's step t uses gamma**t; Pyro's lrd (and ours) decays before the first update
    expected = torch_sequence(lambda o: lr_scheduler.ExponentialLR(o, gamma=gamma), 31)
    assert got == pytest.approx(expected[1:], rel=1e-12)
    # the optimizer's own per-update decay (clipped Adam's lrd) is the same factor
    assert ours([], updates=30, decay=gamma) == pytest.approx(got, rel=1e-15)


def test_step_is_torchs_step_lr_per_epoch():
    got = ours(["step:every=3,gamma=0.5"], epochs=11)
    expected = torch_sequence(lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 11)
    assert got == pytest.approx(expected, rel=1e-15)
    assert got == [LR * 0.5 ** (e // 3) for e in range(11)]
    rate = LearningRate(LR, check_schedule(["step:every=3,gamma=0.5"]))
    assert {rate.rate(u, 4) for u in range(0, 100, 7)} == {LR * 0.5}  # per epoch: updates do not move it


def test_cosine_is_torchs_cosine_annealing_with_eta_min():
    floor, steps = 1e-4, 20
    got = ours([f"cosine:steps={steps},floor={floor}"], updates=steps + 6)
    expected = torch_sequence(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=steps, eta_min=floor), steps + 1)
    assert got[: steps + 1] == pytest.approx(expected, rel=1e-9)
    formula = [floor + (LR - floor) * 0.5 * (1 + math.cos(math.pi * u / steps)) for u in range(steps + 1)]
    assert got[: steps + 1] == pytest.approx(formula, rel=1e-12)
    assert got[0] == pytest.approx(LR, rel=1e-15)
    assert got[steps:] == pytest.approx([floor] * 6, rel=1e-12)  # then it stays at the floor (torch's would rise again)


def test_cosine_warmup_is_a_linear_prefix_then_torchs_cosine():
    floor, warmup, steps = 1e-5, 4, 24
    got = ours([f"cosine:steps={steps},floor={floor},warmup={warmup}"], updates=steps + 3)
    prefix = torch_sequence(lambda o: lr_scheduler.LinearLR(o, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1), warmup)
    cosine = torch_sequence(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=steps - warmup, eta_min=floor), steps - warmup + 1)
    assert got[:warmup] == pytest.approx(prefix, rel=1e-12)
    assert got[:warmup] == pytest.approx([LR * (u + 1) / warmup for u in range(warmup)], rel=1e-15)
    assert got[warmup : steps + 1] == pytest.approx(cosine, rel=1e-9)
    assert got[warmup] == pytest.approx(LR, rel=1e-15) and got[steps:] == pytest.approx([floor] * 3, rel=1e-12)


#: Validation bounds with improvements, ties, changes below the threshold and long plateaus.
VALID = [-9.0, -8.0, -7.99, -8.5, -8.2, -7.0, -7.0, -7.04, -7.1, -6.5, -6.52, -6.6, -6.7, -6.8, -6.9, -7.0,
         -7.1, -6.0, -6.0, -6.1, -6.2, -6.3, -6.4, -6.5, -6.6, -6.7, -6.8, -6.9, -7.0, -7.1]


@pytest.mark.parametrize(
    "factor,patience,threshold,cooldown,min_lr",
    [(0.5, 1, 0.05, 0, 0.0), (0.5, 2, 0.0, 1, 1e-3), (0.3, 0, 0.02, 2, 0.0), (0.1, 1, 0.0, 0, 2e-5), (0.5, 0, 0.5, 0, 0.0)],
)
def test_plateau_is_torchs_reduce_on_plateau_in_max_mode(factor, patience, threshold, cooldown, min_lr):
    spec = f"plateau:factor={factor},patience={patience},threshold={threshold},cooldown={cooldown},min_lr={min_lr}"
    rate = LearningRate(LR, check_schedule([spec]))
    got = []
    for e, valid in enumerate(VALID):
        got.append(rate.rate(3 * e, e))  # the rate the epoch trains with
        rate.end_epoch(valid)
    expected = torch_sequence(
        lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", factor=factor, patience=patience,
                                                 threshold=threshold, cooldown=cooldown, min_lr=min_lr),
        len(VALID), metrics=VALID,
    )
    assert got == pytest.approx(expected, rel=1e-12)
    assert len(set(got)) > 2  # the sequence does cut, more than once
    if min_lr:
        assert min(got) == pytest.approx(min_lr, rel=1e-12)


def test_plateau_never_raises_the_rate_and_skips_cuts_below_torchs_eps():
    # a min_lr above the rate: torch leaves the rate alone
    rate = LearningRate(LR, check_schedule(["plateau:factor=0.5,patience=0,min_lr=0.1"]))
    expected = torch_sequence(lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", threshold=0.0, patience=0, min_lr=0.1), 6, metrics=[-1.0] * 6)
    got = []
    for _ in range(6):
        got.append(rate.rate(0, 0))
        rate.end_epoch(-1.0)
    assert got == expected == [LR] * 6
    # a tiny rate: torch stops cutting once a cut is below its eps (1e-8)
    lr = 1e-7
    rate = LearningRate(lr, check_schedule(["plateau:factor=0.5,patience=0"]))
    expected = torch_sequence(lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", threshold=0.0, patience=0,
                                                                                factor=0.5, min_lr=0.0), 8,
                              lr=lr, metrics=[-1.0] * 8)
    got = []
    for _ in range(8):
        got.append(rate.rate(0, 0))
        rate.end_epoch(-1.0)
    assert got == pytest.approx(expected, rel=1e-12) and got[-1] == pytest.approx(lr / 8)


def test_composition_is_the_product_of_the_factors():
    factors = ["warmup:steps=4", "exponential:gamma=0.97", "step:every=2,gamma=0.5",
               "cosine:steps=30,floor=1e-4,warmup=3", "plateau:factor=0.5,patience=0"]
    decay = 0.99
    combined = LearningRate(LR, check_schedule(factors), decay)
    alone = [LearningRate(LR, check_schedule([f])) for f in factors]
    for e in range(5):
        for u in range(8 * e, 8 * e + 8):
            product = LR * decay ** (u + 1)
            for single in alone:
                product *= single.rate(u, e) / LR
            assert combined.rate(u, e) == pytest.approx(product, rel=1e-12), (u, e)
        for single in (combined, alone[-1]):
            single.end_epoch(-1.0)  # never better: the plateau factor cuts every epoch after the first
    assert combined.plateau["scale"] == 0.5**4


def test_a_schedule_restarted_at_a_resume_counts_from_there():
    schedule = check_schedule(["warmup:steps=3", "step:every=2,gamma=0.1", "cosine:steps=10,floor=0"])
    fresh = LearningRate(LR, schedule, 0.95)
    later = LearningRate(LR, schedule, 0.95, origin_step=40, origin_epoch=5)
    for u, e in [(0, 0), (1, 0), (5, 1), (9, 3), (12, 4)]:
        assert later.rate(40 + u, 5 + e) == fresh.rate(u, e)


def test_learning_rate_state_dict_round_trip():
    schedule = check_schedule(["plateau:factor=0.5,patience=1,cooldown=1,threshold=0.1", "exponential:gamma=0.99"])
    rate = LearningRate(LR, schedule, origin_step=7, origin_epoch=2)
    for valid in [-5.0, -5.05, -5.2, -4.0, -4.5, -4.6]:
        rate.end_epoch(valid)
    state = rate.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # as the checkpoint stores it
    buffer.seek(0)
    restored = LearningRate(LR, schedule)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.state_dict() == state and restored.plateau == rate.plateau
    assert (restored.origin_step, restored.origin_epoch) == (7, 2)
    rate.end_epoch(-5.0)  # the saved state is a copy, not a view of the live one
    assert state != rate.state_dict()
    restored.end_epoch(-5.0)
    for valid in [-4.7, -4.8, -3.0, -3.5]:
        assert restored.rate(30, 8) == rate.rate(30, 8)
        rate.end_epoch(valid), restored.end_epoch(valid)
    assert restored.state_dict() == rate.state_dict()


def test_parse_factor_reads_the_command_line_spec():
    assert parse_factor("cosine:steps=20000,floor=1e-6") == {"name": "cosine", "steps": 20000, "floor": 1e-6}
    assert parse_factor(" plateau : factor=0.5 , patience=3 ") == {"name": "plateau", "factor": 0.5, "patience": 3}
    assert parse_factor("constant") == {"name": "constant"}
    assert check_schedule("step:every=5") == [{"name": "step", "every": 5, "gamma": 0.1}]  # completed with defaults
    schedule = check_schedule(["warmup:steps=2", {"name": "exponential", "gamma": 0.5}])
    assert check_schedule(schedule) == schedule  # a checked schedule (as config.json holds it) checks to itself
    assert describe(schedule) == "warmup:steps=2 * exponential:gamma=0.5"


@pytest.mark.parametrize(
    "schedule,message",
    [
        ("exponential:gamma=-0.5", "schedule 'exponential': gamma must be in (0, 1] (a decay), got -0.5"),
        ("exponential:gamma=1.5", "gamma must be in (0, 1] (a decay), got 1.5"),
        ("step:every=2,gamma=-0.1", "schedule 'step': gamma must be in (0, 1] (a decay), got -0.1"),
        ("plateau:factor=-0.5", "schedule 'plateau': factor must be in (0, 1] (a decay), got -0.5"),
        ("plateau:min_lr=-1e-5", "schedule 'plateau': min_lr must not be negative, got -1e-05"),
        ("cosine:steps=10,floor=-1", "schedule 'cosine': floor must not be negative, got -1"),
        ("linear:steps=3", "unknown schedule 'linear'; choose one of: constant, warmup, exponential, cosine, step, plateau"),
        ("cosine:floor=1e-6", "schedule 'cosine' needs steps (e.g. --schedule cosine:steps=...)"),
        ("exponential", "schedule 'exponential' needs gamma"),
        ("step:gamma=0.5", "schedule 'step' needs every"),
        ("cosine:steps", "--schedule takes NAME:key=value,key=value, got 'cosine:steps'"),
        ("cosine:=3", "--schedule takes NAME:key=value,key=value, got 'cosine:=3'"),
        ("cosine:steps=many", "--schedule 'cosine:steps=many': steps must be a number, got 'many'"),
        ("warmup:steps=3,gamma=0.5", "schedule 'warmup' does not take gamma; it takes: steps"),
        ("warmup:steps=2.5", "schedule 'warmup': steps must be a positive integer, got 2.5"),
        ("warmup:steps=0", "schedule 'warmup': steps must be a positive integer, got 0"),
        ("plateau:patience=-1", "schedule 'plateau': patience must be a non-negative integer, got -1"),
        ("cosine:steps=10,warmup=10", "schedule 'cosine': warmup (10) must be shorter than steps (10)"),
        (["plateau", "plateau:factor=0.1"], "a schedule has at most one plateau factor"),
        ([{"gamma": 0.5}], "a schedule factor is an object with a 'name'"),
        (3, "a schedule is a list of factors, got 3"),
    ],
)
def test_bad_schedules_are_refused_in_one_line_naming_them(schedule, message):
    with pytest.raises(ValueError) as error:
        check_schedule(schedule)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule=schedule if isinstance(schedule, list) else [schedule])
