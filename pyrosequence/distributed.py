"""Data parallelism over ``torch.distributed``: one process per device, started by ``torchrun``.

``torchrun --nproc_per_node=N -m pyrosequence train ...`` starts N copies of the program; each
finds its place in the job in the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`setup` reads it, joins the process group
(gloo for CPU tensors, NCCL for CUDA ones, each process on ``cuda:LOCAL_RANK``) and returns a
:class:`DataParallel`, the one object the training loop and the evaluation talk to. Without those
variables (or with ``WORLD_SIZE=1``) it is a single process and every method is the identity, so
a one-process run is the same computation as before this module existed.

Training (what makes N processes compute the one-process update of every global batch):

* every process loads the whole data set and draws the same batch order (the shuffle generator
  depends only on seed and epoch); process r takes slice r of each batch
  (``torch.tensor_split``), padded to the global batch's longest length, so the windows of
  truncated backpropagation line up and each shard is computed exactly as its rows of the
  global batch would be;
* gradients are summed by one ``all_reduce`` per update over a flat buffer (see
  :meth:`DataParallel.sum_gradients` for why not ``DistributedDataParallel``), with the weights
  that make the sum the gradient of the global batch's loss: the ELBO family sums its loss over
  sequences (``Trace_ELBO``, ``TraceMeanField_ELBO``, and ``RenyiELBO``, whose log-mean-exp over
  particles keeps the sequence plate: one IWAE bound per sequence), so shard gradients are summed
  as they are and divided by the global batch's number of time steps; FIVO averages ``bound / length`` over the batch, so shard r's gradient is
  weighted by ``B_r / B`` (its share of the batch's sequences). The clipped, averaged gradient is
  identical on every process, so the parameters stay identical without further communication;
* the random draws (latent samples, resampling) of process r come from its own stream, seeded by
  :func:`rank_seed` after the model is built (the initial weights are the one-process ones). The
  update is therefore the one-process update in distribution; it is equal number for number to
  one process that draws shard r's noise from stream r (what ``tests/test_distributed.py``
  checks), and exactly equal to a plain one-process run for models that draw nothing.

Evaluation is cut into blocks of sequences, block j drawing from a stream seeded by
``(seed, j)`` (:func:`pyrosequence.inference.evaluate.block_seed`); blocks are dealt round-robin
to the processes and the per-sequence bounds summed into one vector with an ``all_reduce``, so
the figure equals a one-process ``evaluate(..., seed=seed, batch_size=block)``.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Mapping

import torch
import torch.distributed as dist

from pyrosequence.inference.evaluate import EvaluationResult, FilteringBound, check_bounds, make_bound, score_blocks
from pyrosequence.inference.particle_filter import check_filter_options
from pyrosequence.models.core.program import require_pieces

#: What torchrun sets in every process it starts.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a collective may wait for the other processes before the job fails.
DEFAULT_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a multi-process job, as torchrun describes it."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def detect_launch(env: Mapping[str, str] | None = None) -> Launch | None:
    """The :class:`Launch` that ``env`` (default: ``os.environ``) describes, or ``None`` for one
    process (neither ``RANK`` nor ``WORLD_SIZE`` set, or ``WORLD_SIZE=1``). A partial or
    inconsistent description raises ``ValueError`` in one line naming what is wrong."""
    env = os.environ if env is None else env
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return None
    how = "start the processes with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT"
    if env.get("WORLD_SIZE") == "1" and env.get("RANK", "0") == "0":
        return None
    missing = [name for name in LAUNCH_VARIABLES if not env.get(name)]
    if missing:
        given = [name for name in LAUNCH_VARIABLES if env.get(name)]
        raise ValueError(
            f"incomplete torch.distributed launch: {', '.join(missing)} not set (only {', '.join(given)}); {how}"
        )
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        try:
            values[name] = int(env[name])
        except ValueError:
            raise ValueError(f"torch.distributed launch: {name}={env[name]!r} is not an integer; {how}") from None
    rank, world, local, port = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["MASTER_PORT"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"torch.distributed launch: RANK={rank} must lie in [0, WORLD_SIZE={world}) and LOCAL_RANK={local} be >= 0")
    if not 0 < port < 65536:
        raise ValueError(f"torch.distributed launch: MASTER_PORT={port} is not a port number")
    if world == 1:
        return None
    return Launch(rank, world, local, env["MASTER_ADDR"], port)


def is_main_process(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is process 0 of its launch (always, for one process)."""
    launch = detect_launch(env)
    return launch is None or launch.rank == 0


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``'s random stream in a run seeded with ``seed`` (N > 1)."""
    return (int(seed) * 1_000_003 + 7_919 * (int(rank) + 1)) % 2**32


def evaluation_seed(seed: int, what: int) -> int:
    """The seed of a data-parallel run's evaluation ``what`` (the epoch's validation; -1: test)."""
    return (int(seed) * 999_983 + 65_537 * (int(what) + 2)) % 2**63


class DataParallel:
    """One process's view of a data-parallel job (see the module docstring).

    ``DataParallel()`` is the one-process job: ``active`` is false and every method does what one
    process would (shards are whole batches, sums are the values themselves). :func:`setup` builds
    the multi-process one from a :class:`Launch`.
    """

    def __init__(self, launch: Launch | None = None, device: torch.device | None = None, owns_group: bool = False):
        self.launch = launch
        self.device = device or torch.device("cpu")
        self.owns_group = owns_group

    @property
    def active(self) -> bool:
        return self.launch is not None

    @property
    def rank(self) -> int:
        return 0 if self.launch is None else self.launch.rank

    @property
    def world_size(self) -> int:
        return 1 if self.launch is None else self.launch.world_size

    @property
    def is_main(self) -> bool:
        """Process 0: the one that writes files and prints."""
        return self.rank == 0

    def close(self, synchronise: bool = False) -> None:
        """Leave the process group if :func:`setup` joined it. ``synchronise`` (the work ended
        normally on every process): wait for every process first, so that none tears its
        connections down while a peer still uses them (gloo may then abort the process at exit,
        "terminate called without an active exception"). After an error no process waits."""
        if self.owns_group and dist.is_initialized():
            store = _default_store() if synchronise else None
            if synchronise:
                dist.barrier()
            dist.destroy_process_group()
            if store is not None:
                _leave_in_order(store, self.rank, self.world_size)
        self.owns_group = False

    # -- data ---------------------------------------------------------------------------------

    def batches(self, data, batch_size: int, generator: torch.Generator, bucket_pool: int | None = None):
        """Yield ``(x, lengths, batch_lengths)`` per global batch: this process's shard, padded to
        the global batch's longest length, and the lengths of the whole global batch (from which
        every process computes the same normalisation). A shard may be empty (a last batch with
        fewer sequences than processes)."""
        if not self.active:
            for x, lengths in data.batches(batch_size, shuffle=True, generator=generator, bucket_pool=bucket_pool):
                yield x, lengths, lengths
            return
        device = data.x.device
        for index in data.index_batches(batch_size, shuffle=True, generator=generator, bucket_pool=bucket_pool):
            batch_lengths = data.lengths[index.to(device)]
            mine = torch.tensor_split(index, self.world_size)[self.rank].to(device)
            yield data.x[mine, : int(batch_lengths.max())], data.lengths[mine], batch_lengths

    # -- gradients ----------------------------------------------------------------------------

    def sum_gradients(self, params: list[torch.Tensor], loss: float, weight: float = 1.0) -> float:
        """Replace every ``p.grad`` by ``sum_r weight_r * grad_r`` over the processes and return
        ``sum_r weight_r * loss_r`` (one process: both unchanged).

        One ``all_reduce`` of a flat buffer per update rather than ``DistributedDataParallel``:
        DDP hooks the module's ``forward``, which Pyro's objectives never call (they run
        ``model.model``/``model.guide`` and FIVO the pieces), and it averages with equal weights,
        while FIVO's shards need ``B_r / B``. A parameter whose gradient is ``None`` on every
        process (unused by this update) stays ``None``, so Adam skips it exactly as one process
        would; a gradient present on some processes only is summed with zeros for the others.
        """
        if not self.active:
            return loss
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            by_dtype.setdefault(p.dtype, []).append(p)
        total = None
        for dtype, group in by_dtype.items():
            # [weighted gradients..., one presence flag per parameter, weighted loss (first buffer only)]
            pieces = [p.new_zeros(p.numel()) if p.grad is None else p.grad.reshape(-1) * weight for p in group]
            pieces.append(torch.tensor([p.grad is not None for p in group], dtype=dtype))
            if total is None:
                pieces.append(torch.tensor([loss * weight], dtype=dtype))
            flat = torch.cat([piece.to(self.device) for piece in pieces])
            dist.all_reduce(flat)
            sizes = [p.numel() for p in group]
            grads = flat[: sum(sizes)].split(sizes)
            present = flat[sum(sizes) : sum(sizes) + len(group)].tolist()
            for p, g, flag in zip(group, grads, present):
                p.grad = g.reshape(p.shape).to(p.device) if flag else None
            if total is None:
                total = float(flat[-1])
        return loss if total is None else total

    # -- coordination -------------------------------------------------------------------------

    def broadcast_object(self, value=None):
        """Process 0's ``value`` on every process."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def on_main(self, fn: Callable[[], object]):
        """Run ``fn`` on process 0 alone (file system work) and return its result on every process;
        if it raises, every process raises the same error (none is left waiting)."""
        if not self.active:
            return fn()
        outcome = None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except Exception as error:  # sent on, then raised here too
                self.broadcast_object(("error", _portable(error)))
                raise
        kind, value = self.broadcast_object(outcome)
        if kind == "error":
            value.raised_on_main = True  # the command line prints it once, on process 0
            raise value
        return value

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Give every process process 0's parameters and buffers (in place)."""
        if not self.active:
            return
        for tensor in module.state_dict().values():
            if tensor.device == self.device:
                dist.broadcast(tensor, src=0)
            else:
                moved = tensor.to(self.device)
                dist.broadcast(moved, src=0)
                tensor.copy_(moved)

    def all_gather_object(self, value) -> list:
        """``[value of process 0, value of process 1, ...]`` on every process."""
        if not self.active:
            return [value]
        out = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over the processes (a new tensor, same device)."""
        if not self.active:
            return tensor
        total = tensor.to(self.device).clone()
        dist.all_reduce(total)
        return total.to(tensor.device)


def _portable(error: Exception) -> Exception:
    """``error`` if it survives pickling (to be sent to the other processes), else a RuntimeError
    with its message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(str(error))


def process_device(device: torch.device, launch: Launch | None) -> torch.device:
    """The device of this process: with several processes a CUDA device without an index becomes
    ``cuda:LOCAL_RANK``; an explicit index is refused (each process owns one GPU)."""
    if launch is None or device.type != "cuda":
        return device
    if device.index is not None:
        raise ValueError(
            f"under torchrun each process takes cuda:LOCAL_RANK; pass --device cuda (or auto), not {device}"
        )
    if launch.local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"process {launch.rank} has LOCAL_RANK={launch.local_rank} but this machine has "
            f"{torch.cuda.device_count()} GPU(s); start at most that many processes per machine"
        )
    return torch.device("cuda", launch.local_rank)


def setup(
    device: torch.device,
    batch_size: int | None = None,
    num_sequences: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> tuple[DataParallel, torch.device]:
    """Join the job ``env`` describes (see :func:`detect_launch`): ``(DataParallel, device)``.

    The launch is checked before any rendezvous, so a bad one fails at once, on every process, in
    one line: a missing variable, a CUDA index or ``LOCAL_RANK`` the machine cannot serve, more
    processes than sequences in a batch (``min(batch_size, num_sequences)``). The backend is NCCL
    for CUDA devices and gloo otherwise. A process group the caller already initialised is used
    as it is (and left open).
    """
    launch = detect_launch(env)
    if launch is None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise ValueError(
                "a torch.distributed process group is initialised but RANK/WORLD_SIZE are not set; "
                "start the processes with torchrun"
            )
        return DataParallel(), device
    if batch_size is not None:
        smallest = batch_size if num_sequences is None else min(batch_size, num_sequences)
        if launch.world_size > smallest:
            raise ValueError(
                f"{launch.world_size} processes cannot share batches of {smallest} sequences "
                "(each process needs at least one); use fewer processes or a larger --batch-size"
            )
    if not dist.is_available():
        raise ValueError("this PyTorch build has no torch.distributed; it cannot run several processes")
    device = process_device(device, launch)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        if dist.get_world_size() != launch.world_size or dist.get_rank() != launch.rank:
            raise ValueError(
                f"the initialised process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                f"disagrees with RANK={launch.rank}, WORLD_SIZE={launch.world_size}"
            )
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DataParallel(launch, device, owns_group=False), device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, init_method="env://", rank=launch.rank, world_size=launch.world_size, timeout=timeout)
    except (RuntimeError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"process {launch.rank} could not join the {backend} process group at "
            f"{launch.master_addr}:{launch.master_port}: {message}"
        ) from None
    return DataParallel(launch, device, owns_group=True), device


def check_world_size(saved_config: dict, world_size: int, run_dir) -> None:
    """Refuse, in one line, to resume a run with another number of processes than it was trained
    with: each process draws from its own stream, so no other number continues it exactly."""
    saved = int(saved_config.get("world_size", 1))
    if saved != world_size:
        how = (f"torchrun --nproc_per_node={saved} (over all machines: {saved} processes)" if saved > 1
               else "one process (without torchrun, or --nproc_per_node=1)")
        raise ValueError(
            f"{run_dir} was trained by {saved} process{'es' if saved > 1 else ''} and this launch has {world_size}: "
            f"every process draws from its own random stream, so only the same number continues it exactly; resume it with {how}"
        )


def gather_rng_states(group: DataParallel, state: dict) -> dict:
    """The random-number state a data-parallel checkpoint stores: process 0's own entries (what a
    one-process reader expects) and ``"ranks"``, every process's state in rank order. A
    collective: every process calls it. One process: ``state`` unchanged."""
    if not group.active:
        return state
    return {**state, "ranks": group.all_gather_object({k: v.cpu() for k, v in state.items()})}


def rank_rng_state(rng: dict, group: DataParallel) -> dict:
    """This process's state from a checkpoint's ``rng`` entry (see :func:`gather_rng_states`)."""
    if not group.active:
        return rng
    ranks = rng.get("ranks")
    if not isinstance(ranks, list) or len(ranks) != group.world_size or not all(isinstance(r, dict) for r in ranks):
        raise ValueError(
            f"the checkpoint holds no random-number state for each of {group.world_size} processes; it cannot be resumed exactly"
        )
    return ranks[group.rank]


def shard_blocks(num_blocks: int, group: DataParallel) -> list[int]:
    """The evaluation blocks process ``group.rank`` scores: every ``world_size``-th one."""
    return list(range(group.rank, num_blocks, group.world_size))


def evaluate_sharded(
    group: DataParallel,
    model,
    x: torch.Tensor,
    lengths: torch.Tensor | None,
    bound,
    num_particles: int,
    seed: int,
    batch_size: int | None = None,
    particle_chunk: int | None = None,
):
    """:func:`~pyrosequence.inference.evaluate.evaluate` with its blocks shared by the processes.

    Every process holds all of ``x``; block j (sequences ``j * batch_size`` onwards) is scored by
    process ``j % world_size`` with the draws of ``block_seed(seed, j)``; the per-sequence bounds
    are summed into one vector on every process (each entry is non-zero on one process only, so
    the sum is exact). The result equals a one-process ``evaluate(..., seed=seed,
    batch_size=batch_size)``; the default ``batch_size`` is the bound's memory budget, capped at
    ``ceil(n / world_size)`` so every process has work. Returns ``(EvaluationResult, batch_size)``:
    the block size used, which a one-process evaluation needs to reproduce the figure.
    """
    rule = make_bound(bound) if isinstance(bound, str) else bound
    check_filter_options(num_particles, 0.0)
    if isinstance(rule, FilteringBound):
        require_pieces(model, f"the {rule.name} bound")
    seqs = model.prepare(x, lengths)
    n = seqs.batch_size
    if batch_size is None:
        batch_size = min(rule.batch_size(n, seqs.num_steps, num_particles), math.ceil(n / group.world_size))
    num_blocks = math.ceil(n / batch_size)
    scores = score_blocks(model, seqs, rule, num_particles, batch_size, particle_chunk, seed, shard_blocks(num_blocks, group))
    mine = seqs.x.new_zeros(n, dtype=torch.float64)
    for j, values in scores.items():
        mine[j * batch_size : j * batch_size + len(values)] = values.to(torch.float64)
    log_likelihood = group.sum(mine).to(seqs.x.dtype)
    check_bounds(rule.name, num_particles, log_likelihood)
    return EvaluationResult(rule.name, num_particles, log_likelihood, seqs.lengths.clone(), seqs.num_observed()), batch_size


def _default_store():
    """The rendezvous store of the default process group (a TCP store whose server lives in
    process 0), or ``None`` where this PyTorch does not expose it."""
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


def _leave_in_order(store, rank: int, world_size: int, timeout: float = 60.0) -> None:
    """After the group is destroyed: every other process reports through the store that it has
    left, and process 0, which serves the store, waits for all of them before it may exit. Without
    this, process 0 could exit (taking the store's server with it) while a peer is still tearing
    its connections down, and gloo may then abort that peer ("terminate called without an active
    exception") after the work has ended normally."""
    key = "pyrosequence/left"
    try:
        if rank != 0:
            store.add(key, 1)
            return
        deadline = time.monotonic() + timeout
        while store.add(key, 0) < world_size - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    except RuntimeError:  # a peer already gone: nothing is left to wait for
        pass
