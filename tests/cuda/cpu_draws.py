"""Identical random draws on two devices: every draw of a CUDA run made on the CPU.

Random numbers differ across devices: the CPU and CUDA generators are different algorithms
(mt19937 against Philox), so one seed gives different noise on each and a bound computed on a
GPU cannot be compared number for number with the CPU's. :class:`DrawsOnCpu` removes that
difference. Inside it, every random ATen operation (those PyTorch tags
``nondeterministic_seeded``: ``normal_``, ``uniform_``, ``rand``, ``randn``, ``multinomial``,
``bernoulli``, ...) whose tensors or ``device`` argument are on the target device runs on the CPU,
with the CPU generator, and its result is copied to the target device. A CUDA run started from
the same seed then consumes the CPU generator in the same order, with the same shapes, as the
CPU run, and sees the same numbers; everything else (the networks, the log-densities, the
log-sum-exps, the gathers) still runs on the GPU, so what remains between the two runs is float
rounding.

One caveat, stated where it is used: a draw that depends on probabilities computed on the
device (``multinomial`` of resampling weights) is made from the device's probabilities, which
differ from the CPU's by rounding; a uniform variate landing within that rounding of a boundary
between two ancestors would pick another ancestor. Its chance is of the order of 1e-7 per draw.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

_CPU = torch.device("cpu")
#: Fused RNN kernels that PyTorch tags as seeded for their inter-layer dropout alone: with dropout 0 they
#: draw nothing, and they have no CPU kernel, so they run on the device (a dropout > 0 is refused).
_FUSED_RNN = ("aten::_cudnn_rnn", "aten::miopen_rnn")


class DrawsOnCpu(TorchDispatchMode):
    """While active, random ATen ops on ``device`` draw on the CPU (see the module docstring).

    ``count`` is the number of random ops redirected (the tests check that draws happened).
    Random ops on other devices run unchanged. Use in eager mode only (not under torch.compile).
    """

    def __init__(self, device: str | torch.device):
        super().__init__()
        self.device = torch.device(device)
        self.count = 0

    def _on_target(self, args, kwargs) -> bool:
        leaves, _ = tree_flatten((args, kwargs))
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                return _same(leaf.device, self.device)
        device = kwargs.get("device")
        return device is not None and _same(torch.device(device), self.device)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.Tag.nondeterministic_seeded not in func.tags or not self._on_target(args, kwargs):
            return func(*args, **kwargs)
        if func.name() in _FUSED_RNN:
            dropout = _argument(func, args, kwargs, "dropout")
            if dropout:
                raise NotImplementedError(f"DrawsOnCpu cannot move the dropout draws of {func.name()} (dropout={dropout})")
            return func(*args, **kwargs)
        self.count += 1

        def to_cpu(value):
            if isinstance(value, torch.Tensor):
                return value.to(_CPU)
            if isinstance(value, torch.device):
                return _CPU
            if isinstance(value, torch.Generator) and value.device.type != "cpu":
                return None  # the CPU's default generator
            return value

        cpu_args, cpu_kwargs = tree_map(to_cpu, args), tree_map(to_cpu, kwargs)
        if "device" in cpu_kwargs and isinstance(cpu_kwargs["device"], str):
            cpu_kwargs["device"] = _CPU
        out = func(*cpu_args, **cpu_kwargs)
        if func._schema.is_mutable:
            # in place (normal_, uniform_, bernoulli_, exponential_, random_) or out=: write the
            # CPU values back into the caller's tensors
            mutated = []
            for i, arg in enumerate(func._schema.arguments):
                if arg.alias_info is not None and arg.alias_info.is_write:
                    source = cpu_args[i] if i < len(cpu_args) else cpu_kwargs.get(arg.name)
                    target = args[i] if i < len(args) else kwargs.get(arg.name)
                    if isinstance(target, torch.Tensor):
                        target.copy_(source)
                        mutated.append(target)
            if mutated:
                return mutated[0] if len(mutated) == 1 else tuple(mutated)
        return tree_map(lambda v: v.to(self.device) if isinstance(v, torch.Tensor) else v, out)


def _argument(func, args, kwargs, name: str):
    """The value of argument ``name`` of an ATen call (positional or keyword), or None."""
    for i, arg in enumerate(func._schema.arguments):
        if arg.name == name:
            return args[i] if i < len(args) else kwargs.get(name)
    return None


def _same(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device when 0 is the current one."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
