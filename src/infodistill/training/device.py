"""Where a run's tensors live and in which precision they are computed: the one place that decides.

``run.device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) is turned into a :class:`torch.device` by
:func:`resolve_device`; the run builders move the student, the teacher(s) and the method's modules
there once, and everything else follows the tensors it is given (batches are moved to the model's
device, the teacher-output cache is computed there, random draws are made on the generator's or
the tensor's device). Tensors come back to the CPU in :func:`to_host` (the metrics' sums) and in
:func:`infodistill.models.collect_features` (features for the PID's numpy), nowhere else.

``run.amp`` (``none``, ``bf16``, ``fp16``) chooses the autocast of the training step:
:func:`autocast` for the forward and the loss, and :func:`grad_scaler` for fp16, whose dynamic
loss scale keeps small fp16 gradients from flushing to zero (CUDA only: torch's CPU autocast has no
fp16 path worth using, so it is refused). Evaluation, the teacher cache and the PID run in float32.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .checkpoint import CheckpointError
from .config import DEVICE_PATTERN, ConfigError

AMP_MODES = ("none", "bf16", "fp16")


def _env_local_rank() -> int | None:
    """torchrun's ``LOCAL_RANK`` in a multi-process run (None in a single process)."""
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
    except ValueError:
        return None  # distributed.init names a malformed WORLD_SIZE
    raw = os.environ.get("LOCAL_RANK")
    try:
        return None if raw is None else int(raw)
    except ValueError:
        raise ConfigError(
            f"LOCAL_RANK={raw!r} is not an integer; start multi-process runs with torchrun"
        ) from None


def resolve_device(spec: str, local_rank: int | None = None, key: str = "run.device") -> torch.device:
    """The device ``run.device`` names on this machine, or a one-line ConfigError.

    ``auto`` is CUDA when it is available, else the CPU; ``cuda`` is ``cuda:LOCAL_RANK`` under
    torchrun (each process its own GPU) and ``cuda:0`` otherwise. ``local_rank`` defaults to
    torchrun's ``LOCAL_RANK`` when ``WORLD_SIZE`` > 1. ``key`` is how messages name the setting
    (a config key, or a command-line flag such as ``--device``)."""
    as_flag = key.startswith("-")

    def setting(value: str) -> str:
        return f"{key} {value}" if as_flag else f"{key}={value}"

    if not isinstance(spec, str) or not DEVICE_PATTERN.fullmatch(spec):
        raise ConfigError(f"{key} must be one of 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    if local_rank is None:
        local_rank = _env_local_rank()
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{key} is {spec!r} but CUDA is not available on this machine; use {setting('cpu')} or auto"
        )
    count = torch.cuda.device_count()
    if spec in ("auto", "cuda"):
        index = local_rank or 0
        if index >= count:
            raise ConfigError(
                f"{key} is {spec!r}: process LOCAL_RANK={index} needs GPU cuda:{index}, but this "
                f"machine has {count}; start at most {count} processes per machine (--nproc_per_node)"
            )
        return torch.device("cuda", index)
    index = int(spec.split(":")[1])
    if local_rank is not None:
        raise ConfigError(
            f"{key} is {spec!r}, one GPU for every process of a multi-process run; use "
            f"{setting('cuda')} (each process takes cuda:LOCAL_RANK)"
        )
    if index >= count:
        raise ConfigError(
            f"{key} is {spec!r} but this machine has {count} CUDA device(s) (cuda:0 to "
            f"cuda:{count - 1}); use one of those or {setting('cuda')}"
        )
    return torch.device("cuda", index)


def check_amp(amp: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run (one line naming the fix)."""
    if amp not in AMP_MODES:
        raise ConfigError(f"run.amp must be one of {', '.join(map(repr, AMP_MODES))}, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"run.amp=fp16 needs a CUDA device (a gradient scaler on fp16 autocast), but the run is on "
            f"{device}; use run.amp=bf16 or none on the CPU"
        )


def select_device(spec: str, amp: str = "none", key: str = "run.device") -> torch.device:
    """:func:`resolve_device` and :func:`check_amp`, and make that device the process's current
    one (so that later CUDA calls without an explicit device use it)."""
    device = resolve_device(spec, key=key)
    check_amp(amp, device)
    if device.type == "cuda":
        # cuBLAS is deterministic only with a fixed workspace; torch.use_deterministic_algorithms
        # (set by seed_everything) warns without it. Set before the first cuBLAS call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.set_device(device)
    return device


def autocast(device: torch.device, amp: str):
    """The autocast context of a training step (a no-op context for ``amp='none'``)."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, amp: str):
    """A ``torch.amp.GradScaler`` for fp16 (None otherwise); its state goes into the checkpoint."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def to_host(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached, on the CPU: where metrics take their inputs (a no-op for CPU tensors)."""
    return t.detach().to("cpu")


def rng_state(device: torch.device) -> dict:
    """The global generators a training step draws from: the CPU's, and the run's GPU's."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_cuda_rng_state(state, device: torch.device) -> None:
    """Restore the GPU generator of a checkpoint; a run resumed on the CPU (or one started on the
    CPU and resumed on a GPU) has none to restore and continues from the seeded generator."""
    if device.type != "cuda" or state is None:
        return
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        raise CheckpointError(
            "the checkpoint's CUDA RNG state is not a byte tensor: the checkpoint is corrupt"
        )
    torch.cuda.set_rng_state(state, device)


def process_group_backend(device: torch.device) -> str:
    """gloo for CPU runs; for CUDA runs nccl for CUDA tensors (gradients, SyncBatchNorm) and gloo
    for the CPU tensors the trainer exchanges (flags, metric sums, checkpoint states)."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


__all__ = [
    "AMP_MODES",
    "autocast",
    "check_amp",
    "grad_scaler",
    "process_group_backend",
    "resolve_device",
    "rng_state",
    "select_device",
    "set_cuda_rng_state",
    "to_host",
]
