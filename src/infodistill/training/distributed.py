"""Multi-process data-parallel training with ``torch.distributed`` under ``torchrun``.

``train-teacher`` and ``distill`` run unchanged in one process; started by ``torchrun`` (which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) they join one process
group and split every batch over the processes (see docs/distributed.md). This module holds the
pieces the training loop needs, each a no-op in a single process:

* :func:`init` joins the group (gloo for CPU runs; for CUDA runs nccl for CUDA tensors and gloo for
  the CPU tensors below, ``training/device.py``);
* :func:`world_size`, :func:`rank`, :func:`is_main` and :func:`barrier`; rank 0 alone writes files;
* :func:`all_reduce_sum`, :func:`any_true`, :func:`broadcast_json`, :func:`broadcast_state` and
  :func:`all_gather_bytes` move sums, flags, small JSON values and checkpoint states between ranks
  (JSON and raw tensors, never pickles);
* :func:`shard_bounds` cuts a global batch into per-rank chunks;
* :func:`sync_batchnorm_` makes BatchNorm layers normalise with the statistics of the whole global
  batch, as one process would, and :func:`wrap` puts trainable modules under
  ``DistributedDataParallel``.

Why global BatchNorm: with per-process statistics (plain DDP) a run with W processes and global batch
B normalises over chunks of B/W examples and is a different optimisation from the single-process run
with batch B; with global statistics, and gradients averaged with the chunk weights used by the
trainer, it is the same one up to floating-point rounding. ``torch.nn.SyncBatchNorm`` does this on
GPUs only: CUDA runs use it, and for the CPU it is written here with one all-reduce per layer and
pass.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import types

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import InfodistillError
from .checkpoint import flatten, unflatten

#: the process group of the BatchNorm statistics; a group of its own so that its all-reduces never
#: interleave with DDP's asynchronous gradient buckets on the default group
_BN_GROUP = None


class DistributedError(InfodistillError, RuntimeError):
    """The torchrun environment is malformed or the process group cannot be joined."""


def requested_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 outside torchrun)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        n = int(raw)
    except ValueError:
        raise DistributedError(f"WORLD_SIZE={raw!r} is not an integer; start the run with torchrun") from None
    if n < 1:
        raise DistributedError(f"WORLD_SIZE={n} must be >= 1")
    return n


def init(backend: str | None = None) -> int:
    """Join the process group described by torchrun's environment; return the world size.

    Outside torchrun (``WORLD_SIZE`` unset or 1) nothing happens and 1 is returned, so the
    single-process path is untouched. ``backend`` defaults to gloo (CPU runs); CUDA runs pass
    ``device.process_group_backend``'s "cpu:gloo,cuda:nccl". Idempotent.
    """
    global _BN_GROUP
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    n = requested_world_size()
    if n == 1:
        return 1
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={n} but {', '.join(missing)} is not set: start multi-process runs with torchrun"
        )
    # 30 minutes, gloo's default, for nccl too (whose default is 10): the other ranks wait at a
    # barrier while rank 0 runs the per-epoch PID (docs/distributed.md).
    dist.init_process_group(backend=backend or "gloo", timeout=datetime.timedelta(minutes=30))
    # Only the CPU BatchNorm below uses it (CUDA runs use torch.nn.SyncBatchNorm).
    _BN_GROUP = dist.new_group(backend="gloo")
    atexit.register(shutdown)
    return dist.get_world_size()


def shutdown() -> None:
    """Leave the process group (registered at exit by :func:`init`)."""
    global _BN_GROUP
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _BN_GROUP = None


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on the process that writes checkpoints, logs and prints (rank 0, or the only one)."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks in place (and return it); unchanged in a single process."""
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_true(flag: bool) -> bool:
    """Whether ``flag`` holds on at least one rank: every rank gets the same answer, so all of them
    can stop together instead of leaving the others waiting in a collective."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _broadcast_bytes(data: bytes | None, src: int) -> bytes:
    size = torch.tensor([len(data) if rank() == src else 0], dtype=torch.int64)
    dist.broadcast(size, src)
    buf = (
        torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if rank() == src
        else torch.empty(int(size.item()), dtype=torch.uint8)
    )
    if buf.numel():
        dist.broadcast(buf, src)
    return bytes(buf.numpy())


def broadcast_json(obj=None, src: int = 0):
    """Rank ``src``'s JSON-serialisable ``obj`` on every rank (``obj`` is ignored elsewhere)."""
    if world_size() == 1:
        return obj
    data = json.dumps(obj).encode() if rank() == src else None
    return json.loads(_broadcast_bytes(data, src).decode())


def all_gather_bytes(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of the 1-D uint8 tensor ``t`` (same length on every rank), in rank order."""
    if world_size() == 1:
        return [t]
    out = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(out, t.contiguous())
    return out


def broadcast_state(state: dict | None, src: int = 0) -> dict | None:
    """Rank ``src``'s nested state (tensors and plain values, as a checkpoint holds) on every rank.

    Rank ``src`` reads a checkpoint once and sends it, so the other ranks need no access to the
    run directory (machines of a multi-node run need not share a file system)."""
    if world_size() == 1:
        return state
    tensors: dict[str, torch.Tensor] = {}
    header = None
    if rank() == src:
        skeleton = None if state is None else flatten(state, "", tensors)
        specs = [[k, str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in tensors.items()]
        header = {"skeleton": skeleton, "tensors": specs}
    header = broadcast_json(header, src)
    if header["skeleton"] is None:
        return None
    for key, dtype, shape in header["tensors"]:
        if rank() != src:
            tensors[key] = torch.empty(shape, dtype=getattr(torch, dtype))
        dist.broadcast(tensors[key], src)
    return unflatten(header["skeleton"], tensors)


def rank_generators(rng: dict) -> dict:
    """Every rank's generator states for a checkpoint: ``{"rng_ranks": [...]}`` (and
    ``"cuda_rng_ranks"`` when ``rng`` holds a CUDA state), gathered from all ranks; ``{}`` in one
    process, whose generator is the checkpoint's ``rng``."""
    if world_size() == 1:
        return {}
    out = {"rng_ranks": all_gather_bytes(rng["torch"])}
    if "cuda" in rng:
        out["cuda_rng_ranks"] = all_gather_bytes(rng["cuda"])
    return out


def shard_bounds(n: int, rank_: int, world: int) -> tuple[int, int]:
    """The [start, stop) slice of ``n`` items that rank ``rank_`` of ``world`` takes: contiguous
    chunks whose sizes differ by at most one, the larger ones first."""
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (rank_ < extra)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is again a sum over ranks: if every rank's loss depends on
    S = Σ_r s_r, the gradient reaching s_r is Σ_q ∂L_q/∂S."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM, group=group)
        return y

    @staticmethod
    def backward(ctx, grad):
        g = grad.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM, group=ctx.group)
        return g, None


def _global_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the union of every rank's chunk (training mode); eval mode as usual.

    Each rank sends its count n_r, n_r·mean_r and M2_r + n_r·mean_r² (M2_r: its sum of squared
    deviations from its own mean, so no precision is lost inside a chunk); with N = Σ n_r,
    mean = Σ n_r·mean_r / N and var = Σ (M2_r + n_r·mean_r²) / N − mean² (biased, to normalise;
    the running variance gets N/(N−1)·var, as ``F.batch_norm`` does). The sums are float64, so the
    subtraction loses ~1e-16·mean² against var: nothing at the scale of activations. One all-reduce
    forward and one backward per layer (the latency of a collective is what this costs).
    """
    if not bn.training or _BN_GROUP is None:
        return type(bn).forward(bn, x)  # running statistics: nothing to share
    bn._check_input_dim(x)
    factor = 0.0
    if bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    channels = xf.shape[1]
    dims = [0, *range(2, xf.dim())]
    shape = [1, channels] + [1] * (xf.dim() - 2)
    n_local = xf.numel() // max(channels, 1)
    local_mean = xf.mean(dims)
    local_m2 = (xf - local_mean.view(shape)).pow(2).sum(dims).double()
    local_mean = local_mean.double()
    packed = torch.cat(
        [n_local * local_mean, local_m2 + n_local * local_mean.pow(2), local_mean.new_full((1,), n_local)]
    )
    total = _AllReduceSum.apply(packed, _BN_GROUP)
    n = total[-1]
    mean = total[:channels] / n
    var = (total[channels : 2 * channels] / n - mean.pow(2)).clamp_min(0.0)
    y = (xf - mean.to(xf.dtype).view(shape)) * torch.rsqrt(var + bn.eps).to(xf.dtype).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats:
        with torch.no_grad():
            count = float(n)
            unbiased = var * (count / (count - 1.0)) if count > 1 else var
            bn.running_mean.mul_(1.0 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)
            bn.running_var.mul_(1.0 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)
    return y.to(x.dtype)


def sync_batchnorm_(module: nn.Module, device: torch.device | None = None) -> int:
    """Make every BatchNorm layer of ``module`` use global-batch statistics in training mode.

    On the CPU the layers keep their identity (hooks, state-dict keys and checkpoints are
    unchanged): only their ``forward`` is replaced. On CUDA they become ``torch.nn.SyncBatchNorm``
    (:func:`to_sync_batchnorm_`). Returns the number of layers changed; a no-op in one process."""
    if world_size() == 1:
        return 0
    if device is not None and device.type == "cuda":
        return to_sync_batchnorm_(module)
    changed = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm):
            m.forward = types.MethodType(_global_batch_norm, m)
            changed += 1
    return changed


def to_sync_batchnorm_(module: nn.Module, process_group=None) -> int:
    """Replace every BatchNorm child of ``module`` by a ``torch.nn.SyncBatchNorm`` in place.

    Unlike ``SyncBatchNorm.convert_sync_batchnorm`` the new layers take over the old ones' hook
    dictionaries, so feature hooks on a BatchNorm layer (and their handles) keep working; the
    parameters and buffers are the same tensors (the optimiser and the state-dict keys are
    unchanged). The top module itself is not replaced. Returns the number of layers replaced."""
    changed = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.modules.batchnorm._BatchNorm) or isinstance(child, nn.SyncBatchNorm):
                continue
            new = nn.SyncBatchNorm.convert_sync_batchnorm(child, process_group)
            for hooks in (
                "_forward_hooks",
                "_forward_pre_hooks",
                "_forward_hooks_with_kwargs",
                "_forward_pre_hooks_with_kwargs",
                "_forward_hooks_always_called",
            ):
                if hasattr(child, hooks):
                    setattr(new, hooks, getattr(child, hooks))
            setattr(parent, name, new)
            changed += 1
    return changed


class _Closure(nn.Module):
    """The trainable modules as one module whose forward runs a given function: DDP's gradient
    hooks need the forward to pass through the DDP wrapper, while the step functions call the
    student and the method's modules directly (feature hooks, phase switches)."""

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(modules)

    def forward(self, fn, *args):
        return fn(*args)


def wrap(
    modules: list[nn.Module | None], find_unused_parameters: bool = True, device: torch.device | None = None
) -> nn.Module | None:
    """``DistributedDataParallel`` over ``modules`` (on ``device``); call it as ``ddp(fn, *args)`` to
    run ``fn`` (which uses the modules) as the forward whose gradients DDP averages over ranks.
    None in one process (the modules are called directly).

    ``find_unused_parameters`` is needed when some parameters get no gradient in some steps
    (methods that train different parts in different phases); parameters unused on every rank keep
    ``grad = None``, as in one process, so the optimiser skips them alike."""
    if world_size() == 1:
        return None
    cuda = device is not None and device.type == "cuda"
    return DistributedDataParallel(
        _Closure([m for m in modules if m is not None]),
        device_ids=[device.index] if cuda else None,
        find_unused_parameters=find_unused_parameters,
    )


__all__ = [
    "DistributedError",
    "all_gather_bytes",
    "all_reduce_sum",
    "any_true",
    "barrier",
    "broadcast_json",
    "broadcast_state",
    "rank_generators",
    "init",
    "is_main",
    "rank",
    "requested_world_size",
    "shard_bounds",
    "shutdown",
    "sync_batchnorm_",
    "to_sync_batchnorm_",
    "world_size",
    "wrap",
]
