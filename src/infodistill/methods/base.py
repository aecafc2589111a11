"""Common interface of the distillation methods (docs/methods.md, which also says how to add one).

A method is an ``nn.Module`` that owns all of its trainable state (regressors, filters, heads,
variances), so ``method.parameters()`` is what the optimizer and the checkpoint need besides the
student. It is called on a :class:`Batch` and returns a dict of named, already weighted loss terms;
the trainer sums them. The teacher is frozen by the framework: its logits and features arrive
computed under ``no_grad`` and in eval mode; a method never touches the teacher module.

Conventions shared by all methods:

- Schedules are counted in optimiser steps: before every step the trainer calls
  ``set_phase(step, total_steps, steps_per_epoch)`` (0-based ``step`` of the whole run), so a
  method's rounds and stage boundaries keep their proportions at any budget, 12 epochs or 300.
  Multi-stage methods derive their phase from these numbers only (nothing to checkpoint; on resume
  the trainer calls ``set_phase`` again) and refuse to run before the first call. A caller that
  counts in epochs passes ``set_phase(epoch, total_epochs)``: a step is then an epoch.
- Feature shapes are given without the batch dimension: ``(C, H, W)`` for conv maps, ``(C, L)`` for
  1-D conv maps (handled as ``(C, L, 1)``). Other shapes cannot feed a conv adapter: ValueError at
  build time, naming the layer.
- Spatial mismatch between the two maps of a pair: both are adaptive-average-pooled to the smaller
  size (per axis) before the adapters.
- Loss arithmetic runs in float32 even under bf16 autocast.
- Optimiser groups and clipping (:meth:`DistillMethod.optim_groups`): a method's own parameters
  form one or more :class:`OptimGroup`; each has its learning rate as a multiple of the run's, may
  keep it constant instead of following the run's schedule, and is clipped on its own or in one
  norm with the student's gradients. The default is one group at the student's rate and schedule,
  clipped on its own; RID and VID declare what the [PID-KD] reference code ran.
- Gradient isolation between phases is done in the losses (the inactive side is computed under
  ``no_grad``), so parameters a phase does not train keep ``grad is None``; a single optimizer over
  student + method parameters therefore only updates the active set as long as gradients are reset
  with ``zero_grad(set_to_none=True)`` (the PyTorch default). ``phase_parameters(phase)`` gives the
  method's own parameters trained in a phase for trainers that prefer one optimizer per phase.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Batch:
    """What a method sees for one step."""

    labels: Tensor  # (B,) int64
    student_logits: Tensor  # (B, C)
    teacher_logits: Tensor | None = None  # (B, C), or an ensemble's combined logits
    student_feats: dict[str, Tensor] = field(default_factory=dict)
    teacher_feats: dict[str, Tensor] = field(default_factory=dict)  # computed under no_grad


@dataclass(frozen=True)
class LayerPair:
    """One (student layer, teacher layer) pair with both shapes as maps (C, H, W)."""

    student: str
    teacher: str
    student_shape: tuple[int, int, int]
    teacher_shape: tuple[int, int, int]

    @property
    def c_s(self) -> int:
        return self.student_shape[0]

    @property
    def c_t(self) -> int:
        return self.teacher_shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """Common spatial size: the smaller map, per axis."""
        return (
            min(self.student_shape[1], self.teacher_shape[1]),
            min(self.student_shape[2], self.teacher_shape[2]),
        )


@dataclass(frozen=True)
class MethodSetup:
    """What :func:`~infodistill.methods.build_method` resolves once, for every method: the number of
    classes, the layer pairs with both shapes (empty for a method without feature terms), and how
    many teacher checkpoints a run hands over (``None``: one teacher; progressive needs it).
    A method's constructor takes this and declares only its own hyper-parameters."""

    num_classes: int
    pairs: tuple = ()
    num_checkpoints: int | None = None

    def __post_init__(self):
        try:
            n = operator.index(self.num_classes)
        except TypeError:
            n = None
        if n is None or isinstance(self.num_classes, bool) or n < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        object.__setattr__(self, "num_classes", n)
        object.__setattr__(self, "pairs", tuple(self.pairs))
        if not all(isinstance(p, LayerPair) for p in self.pairs):
            raise ValueError("MethodSetup.pairs holds LayerPair objects: build methods with build_method")


@dataclass(frozen=True)
class OptimGroup:
    """Parameters that share an optimiser parameter group.

    Their learning rate is the run's ``optim.lr`` times ``lr_scale``; it follows the run's schedule
    (cosine, step) unless ``constant_lr``. With ``optim.grad_clip`` set, the gradients of a group
    with ``clip_with_student`` are clipped in one norm with the student's (one optimiser in the
    reference code), the others each in a norm of their own."""

    name: str
    params: tuple
    lr_scale: float = 1.0
    constant_lr: bool = False
    clip_with_student: bool = False

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(self.params))
        if not (
            isinstance(self.lr_scale, (int, float)) and math.isfinite(self.lr_scale) and self.lr_scale > 0
        ):
            raise ValueError(
                f"optimiser group {self.name!r}: lr_scale must be a positive number, got {self.lr_scale!r}"
            )


def map_shape(layer: str, shape, side: str) -> tuple[int, int, int]:
    """Validate a feature shape (no batch dim) and return it as a conv map (C, H, W)."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{side} layer {layer!r}: shape {shape!r} is not a tuple of ints") from None
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise ValueError(
            f"{side} layer {layer!r}: feature shape {dims} cannot feed a 1x1-conv adapter; "
            "it needs a conv map (C, H, W) or (C, L) (without the batch dimension)"
        )
    return dims if len(dims) == 3 else (dims[0], dims[1], 1)


def resolve_pairs(
    pairs: Iterable,
    student_shapes: Mapping[str, tuple] | None,
    teacher_shapes: Mapping[str, tuple] | None,
    method: str,
) -> list[LayerPair]:
    """Check the layer pairs against the known shapes; raise ValueError naming what is wrong."""
    student_shapes, teacher_shapes = student_shapes or {}, teacher_shapes or {}
    out = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(n, str) for n in pair):
            raise ValueError(f"{method}: a layer pair must be (student_layer, teacher_layer), got {pair!r}")
        s_name, t_name = pair
        for name, shapes, side in ((s_name, student_shapes, "student"), (t_name, teacher_shapes, "teacher")):
            if name not in shapes:
                raise ValueError(f"{method}: no shape for {side} layer {name!r} (known: {sorted(shapes)})")
        out.append(
            LayerPair(
                s_name,
                t_name,
                map_shape(s_name, student_shapes[s_name], "student"),
                map_shape(t_name, teacher_shapes[t_name], "teacher"),
            )
        )
    if not out:
        raise ValueError(f"{method} distils features: give at least one (student_layer, teacher_layer) pair")
    return out


def feature_map(feats: Mapping[str, Tensor], layer: str, side: str, shape, size) -> Tensor:
    """Fetch a captured feature as a (B, C, H, W) map pooled to ``size``; check its declared shape."""
    if layer not in feats:
        raise ValueError(f"no captured {side} feature for layer {layer!r} (got {sorted(feats)})")
    x = feats[layer]
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{side} layer {layer!r}: feature of shape {tuple(x.shape[1:])} "
            f"(as a map), but the method was built for {tuple(shape)}"
        )
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.adaptive_avg_pool2d(x, size)
    return x


def upcast(x: Tensor) -> Tensor:
    """Half-precision tensors (bf16 autocast) to float32 for the loss arithmetic; others unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(upcast(logits), labels)


def check_epoch(epoch: int, total_epochs: int) -> None:
    if total_epochs < 1 or not 0 <= epoch < total_epochs:
        raise ValueError(f"need 0 <= epoch < total_epochs, got epoch={epoch}, total_epochs={total_epochs}")


def check_step(step: int, total_steps: int) -> None:
    if total_steps < 1 or not 0 <= step < total_steps:
        raise ValueError(f"need 0 <= step < total_steps, got step={step}, total_steps={total_steps}")


def split_point(total: int, epochs: int | None, fraction: float) -> int:
    """Steps of a first stage: ``epochs`` (already in steps) if given, else round(fraction * total)
    kept in [1, total - 1] so that both stages run (a 1-step run has no first stage)."""
    if epochs is not None:
        return max(0, min(int(epochs), total))
    if total < 2:
        return 0
    return max(1, min(total - 1, int(fraction * total + 0.5)))


def rid_schedule(step: int, total_steps: int, rounds: int = 10, phase1_fraction: float = 0.25):
    """(round index, phase) of a step; phase is "filter" (phase 1) or "student" (phase 2).

    The reference code's rule [PID-KD], applied to optimiser steps instead of epochs: the run is
    split into ``rounds`` rounds (fewer if the run has under two steps a round) of near-equal length
    L (round r starts at step floor(r * total / rounds)), and a step i of its round is phase 1 while
    i < phase1_fraction * L, i.e. the first ceil(phase1_fraction * L) steps (kept in [1, L - 1], so
    both phases run). The reference, 300 epochs in 10 rounds of R = 30 with phase 1 while
    ``epoch % R < R / 4``, gives 8 filter + 22 student epochs a round; so does this rule with steps.
    Counted in steps, a 12-epoch run keeps 10 rounds and the student's 3/4 share; counted in epochs it
    had 6 rounds of 1 + 1 epochs. A 1-step run is phase 2 only. ``(epoch, total_epochs)`` gives the
    schedule counted in epochs.
    """
    check_step(step, total_steps)
    n = max(1, min(int(rounds), total_steps // 2))
    for r in range(n):
        start, end = r * total_steps // n, (r + 1) * total_steps // n
        if step < end:
            length = end - start
            n1 = 0 if length == 1 else max(1, min(length - 1, math.ceil(phase1_fraction * length - 1e-9)))
            return r, "filter" if step - start < n1 else "student"
    raise AssertionError("unreachable")


class DistillMethod(nn.Module):
    """Base class; see the module docstring for the contract."""

    name = "base"
    #: phases in the order they occur; single-phase methods have one.
    phases: tuple[str, ...] = ("train",)
    uses_teacher_logits = False
    uses_teacher_features = False
    #: the method learns from a sequence of teacher checkpoints (earliest first): before every
    #: epoch the framework loads checkpoint ``active_teacher(epoch, total)`` into the teacher
    uses_teacher_checkpoints = False

    def __init__(self, setup: MethodSetup):
        super().__init__()
        self.num_classes = setup.num_classes
        # A method without feature terms ignores any pairs it was given (it captures no features).
        self.pairs: list[LayerPair] = list(setup.pairs) if self.uses_teacher_features else []
        if self.uses_teacher_features and not self.pairs:
            raise ValueError(
                f"{self.name} distils features: give at least one (student_layer, teacher_layer) pair"
            )
        self.phase = self.phases[0]
        self._phase_set = len(self.phases) == 1

    @property
    def label(self) -> str:
        """Human-readable name for logs and tables."""
        return self.name

    @property
    def student_layers(self) -> list[str]:
        return [p.student for p in self.pairs]

    @property
    def teacher_layers(self) -> list[str]:
        return [p.teacher for p in self.pairs]

    def enable_pair_stop(self) -> None:
        """Give the method a mask of its pairs, all on, that :meth:`stop_pair` can switch off one
        by one (the PID tracker's stop rule, ``pid.stop``); the feature terms then skip a pair that
        is off. The mask is a buffer, saved in the method's checkpoint, so a resumed run keeps it;
        a method without the mask (the default) has every pair on and its checkpoints unchanged."""
        if "pairs_on" not in self._buffers:
            device = next((t.device for t in [*self.parameters(), *self.buffers()]), None)
            self.register_buffer("pairs_on", torch.ones(len(self.pairs), dtype=torch.bool, device=device))

    def pair_index(self, student: str, teacher: str) -> int | None:
        """Index of the pair (student layer, teacher layer) in :attr:`pairs`, or None."""
        for k, p in enumerate(self.pairs):
            if (p.student, p.teacher) == (student, teacher):
                return k
        return None

    def stop_pair(self, student: str, teacher: str) -> bool:
        """Switch off the feature term of the pair (student layer, teacher layer); True if it was on.
        Needs :meth:`enable_pair_stop` first."""
        if "pairs_on" not in self._buffers:
            raise RuntimeError(f"{self.name}: call enable_pair_stop() before stop_pair()")
        k = self.pair_index(student, teacher)
        if k is None:
            raise ValueError(f"{self.name} has no pair ({student!r}, {teacher!r})")
        was = bool(self.pairs_on[k])
        self.pairs_on[k] = False
        return was

    def pair_active(self, k: int) -> bool:
        """Whether pair ``k``'s feature term is on (always, unless stopped by :meth:`stop_pair`)."""
        return "pairs_on" not in self._buffers or bool(self.pairs_on[k])

    @staticmethod
    def _no_term(total, batch: Batch) -> Tensor:
        """A feature term's sum: ``total``, or a zero on the student's graph when every pair is off
        (a tensor the trainer can log and back-propagate like any term)."""
        return batch.student_logits.sum() * 0.0 if isinstance(total, float) else total

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

    def set_phase(self, step: int, total_steps: int, steps_per_epoch: int = 1) -> None:
        """Called by the trainer before every optimiser step: 0-based ``step`` of ``total_steps``,
        ``steps_per_epoch`` of them an epoch (a caller counting in epochs passes (epoch, total_epochs))."""
        check_step(step, total_steps)
        if int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self._phase_set = True

    def trainable_student(self) -> bool:
        """Whether the student's own parameters are trained in the current phase."""
        return True

    def active_teacher(self, epoch: int, total_epochs: int) -> int:
        """Index of the teacher checkpoint that teaches during ``epoch`` (methods with
        ``uses_teacher_checkpoints``; every other method has one teacher, index 0)."""
        check_epoch(epoch, total_epochs)
        return 0

    def requires_teacher(self) -> bool:
        return self.uses_teacher_logits or self.uses_teacher_features

    def optim_groups(self) -> list[OptimGroup]:
        """The method's own parameters by optimiser group (none for a method without parameters):
        by default one group at the student's learning rate and schedule, clipped on its own."""
        params = tuple(self.parameters())
        return [OptimGroup(self.name, params)] if params else []

    def phase_parameters(self, phase: str | None = None) -> list[nn.Parameter]:
        """The method's own parameters trained in ``phase`` (default: the current one)."""
        self._check_phase_name(phase)
        return list(self.parameters())

    def _check_phase_name(self, phase: str | None) -> str:
        phase = self.phase if phase is None else phase
        if phase not in self.phases:
            raise ValueError(f"{self.name}: unknown phase {phase!r}; phases are {self.phases}")
        return phase

    def _require_phase(self) -> None:
        if not self._phase_set:
            raise RuntimeError(
                f"{self.name} has phases {self.phases}: call set_phase(epoch, total_epochs) "
                "at the start of every epoch before computing losses"
            )

    def _teacher_logits(self, batch: Batch) -> Tensor:
        if batch.teacher_logits is None:
            raise ValueError(f"{self.name} needs teacher logits (batch.teacher_logits is None)")
        return batch.teacher_logits

    def _maps(self, batch: Batch, pair: LayerPair) -> tuple[Tensor, Tensor]:
        """(student map, teacher map) of a pair, both pooled to the pair's common size."""
        s = feature_map(batch.student_feats, pair.student, "student", pair.student_shape, pair.size)
        t = feature_map(batch.teacher_feats, pair.teacher, "teacher", pair.teacher_shape, pair.size)
        return s, t


class TwoStageMethod(DistillMethod):
    """A method whose run is a first stage of ``first_epochs`` epochs (default: ``first_fraction`` of
    the run's steps, both stages kept non-empty by :func:`split_point`) followed by a second; the
    stage names are ``phases``. FitNets (hint, kd) and TED (filters, distill) share this schedule."""

    def _set_stages(self, first_epochs: int | None, first_fraction: float, what: str) -> None:
        if first_epochs is not None and first_epochs < 0:
            raise ValueError(f"{what}_epochs must be >= 0, got {first_epochs}")
        if not 0.0 <= first_fraction <= 1.0:
            raise ValueError(f"{what}_fraction must be in [0, 1], got {first_fraction}")
        self.first_epochs, self.first_fraction = first_epochs, float(first_fraction)

    def stage(self, step: int, total_steps: int, steps_per_epoch: int = 1) -> str:
        """The stage a step belongs to (a given ``first_epochs`` counts ``steps_per_epoch`` each)."""
        check_step(step, total_steps)
        first = None if self.first_epochs is None else self.first_epochs * int(steps_per_epoch)
        n_first = split_point(total_steps, first, self.first_fraction)
        return self.phases[0] if step < n_first else self.phases[1]

    def set_phase(self, step: int, total_steps: int, steps_per_epoch: int = 1) -> None:
        super().set_phase(step, total_steps, steps_per_epoch)
        self.phase = self.stage(step, total_steps, steps_per_epoch)
