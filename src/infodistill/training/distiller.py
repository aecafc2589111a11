"""One distillation step: the student, the frozen teacher and a method, as the trainer runs it.

The same object serves the trainer and a user's own loop::

    distiller = Distiller(student, teacher, build_method("vid", ...))
    distiller.on_epoch(epoch, total_epochs)        # a progressive teacher's checkpoint
    distiller.on_step(step, total_steps, steps_per_epoch)  # the method's phase (RID, TED, FitNets)
    out = distiller.step(x, y, epoch)              # StepOutput: losses, student and teacher logits
    sum(out.losses.values()).backward()

A loop that calls only ``on_epoch`` runs the multi-stage methods' schedules counted in epochs.

The teacher is frozen here, by the framework (eval mode, no gradients), never by a method. Its
features are captured by forward hooks on the layers the method names, and the student's likewise.
A fixed teacher's outputs on a fixed training set can be computed once
(:meth:`Distiller.cache_teacher_outputs`), which removes the teacher's forward from every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.loader import BatchReader, TensorPairs
from ..methods import Batch, DistillMethod, ensemble_logits, noisy_features
from ..models import FeatureExtractor, freeze_teacher, model_device
from .task import StepOutput, Task
from .trainer import epoch_generator

#: Teacher outputs are cached for the whole training set only below this size.
CACHE_LIMIT_BYTES = 2 * 1024**3


class Teacher:
    """The frozen teacher (one model, or an ensemble) as a method sees it: logits + features.

    Features come from the first member (feature methods distil from one network); an ensemble's
    logits are those of its averaged prediction [FID]. ``noise`` (sigma, fraction, mode) makes the
    noisy teacher of [PID-KD]: its features get fresh noise from the generator of every call."""

    def __init__(
        self, members: nn.Module | Sequence[nn.Module], layers: Sequence[str] = (), noise: dict | None = None
    ):
        self.members = [members] if isinstance(members, nn.Module) else list(members)
        if not self.members:
            raise ValueError("a teacher needs at least one model")
        for m in self.members:
            freeze_teacher(m)
        self.layers, self.noise = list(layers), noise
        self.extractor = FeatureExtractor(self.members[0], self.layers, detach=True) if self.layers else None

    @torch.no_grad()
    def __call__(self, x, generator: torch.Generator | None = None):
        if self.extractor is not None:
            z0, feats = self.extractor(x)
            feats = dict(feats)
        else:
            z0, feats = self.members[0](x), {}
        logits = z0 if len(self.members) == 1 else ensemble_logits([z0] + [m(x) for m in self.members[1:]])
        if self.noise is not None and feats:
            feats = noisy_features(feats, generator=generator, **self.noise)
        return logits.float(), feats


class Distiller(Task):
    """Student + frozen teacher + method: the losses of one distillation step.

    ``teacher``: a model or an ensemble's members. ``checkpoints``: for a method with
    ``uses_teacher_checkpoints`` (progressive), the teacher's training trajectory, earliest first;
    before every epoch the checkpoint the method picks is loaded into ``teacher`` (a model of the
    same architecture). ``noise``: the noisy teacher's settings (see :class:`Teacher`), drawn per
    step from the generator of (``seed``, epoch), so a resumed run draws what the whole run drew.
    """

    has_teacher = True

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | Sequence[nn.Module],
        method: DistillMethod,
        *,
        checkpoints: Sequence[nn.Module] | None = None,
        noise: dict | None = None,
        seed: int = 0,
    ):
        if method.uses_teacher_checkpoints != (checkpoints is not None):
            need = (
                "needs the teacher's checkpoints" if checkpoints is None else "takes no teacher checkpoints"
            )
            raise ValueError(f"method {method.name!r} {need}")
        self.student, self.method, self.extra = student, method, method
        self.teacher = Teacher(teacher, method.teacher_layers, noise)
        self.checkpoints = None if checkpoints is None else list(checkpoints)
        for m in self.checkpoints or []:
            freeze_teacher(m)
        self.seed, self.device = seed, model_device(student)
        self.student_features = (
            FeatureExtractor(student, method.student_layers) if method.student_layers else None
        )
        self.student_frozen = False
        self.cache: dict | None = None

    @property
    def teacher_fixed(self) -> bool:
        """False when the teacher changes during the run (a progressive run's checkpoints)."""
        return self.checkpoints is None

    def on_epoch(self, epoch: int, total_epochs: int) -> None:
        """Before every epoch: a progressive run's teacher checkpoint, and the method's phase with
        the epoch as the step (the trainer then sets it per step, :meth:`on_step`)."""
        self.on_step(epoch, total_epochs)
        if self.checkpoints is not None:
            k = self.method.active_teacher(epoch, total_epochs)
            self.teacher.members[0].load_state_dict(self.checkpoints[k].state_dict())

    def on_step(self, step: int, total_steps: int, steps_per_epoch: int = 1) -> str | None:
        """Before every optimiser step: the method's phase (and whether the student trains in it);
        returns the phase's name for a multi-phase method, else None."""
        self.method.set_phase(step, total_steps, steps_per_epoch)
        self.student_frozen = not self.method.trainable_student()
        return self.method.phase if len(self.method.phases) > 1 else None

    def optim_groups(self):
        """The student's group, then the method's own groups (``DistillMethod.optim_groups``)."""
        return super().optim_groups()[:1] + self.method.optim_groups()

    def frozen(self) -> set:
        return set(self.student.parameters()) if self.student_frozen else set()

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)[0]

    def _student(self, x):
        return self.student_features(x) if self.student_features is not None else (self.student(x), {})

    def step(self, x, y, epoch: int, idx: torch.Tensor | None = None) -> StepOutput:
        if self.cache is not None:
            if idx is None:
                raise ValueError("a Distiller with cached teacher outputs needs the batch's indices (idx)")
            idx = idx.to(self.device)
            zt, tf = self.cache["logits"][idx], {k: v[idx] for k, v in self.cache["feats"].items()}
        else:
            # Drawn on the run's device: a CPU generator would copy every draw to the GPU.
            gen = epoch_generator(self.seed, epoch, stream=1, device=self.device)
            zt, tf = self.teacher(x, generator=gen)
        if self.student_frozen:
            # A phase that trains only the method's own modules: the student is a fixed feature
            # map (eval mode, so its BatchNorm statistics do not move either).
            self.student.eval()
            with torch.no_grad():
                zs, sf = self._student(x)
            self.student.train()
        else:
            zs, sf = self._student(x)
        losses = self.method(Batch(y, zs, zt, dict(sf), tf))
        return StepOutput(losses, zs, zt)

    @torch.no_grad()
    def cache_teacher_outputs(self, data, batch_size: int, workers: int | None = None) -> bool:
        """Compute the teacher's logits and features for the whole training set ``data`` (a data
        set of (x, y) items, or the examples as one tensor) once and use
        them in every later step (indexed by the batch's ``idx``); kept on the student's device.
        Only for a fixed teacher on fixed data: a changing teacher (checkpoints, noise drawn per
        step) is refused, and a cache above ``CACHE_LIMIT_BYTES`` is dropped (the teacher then runs
        online). Returns whether the cache is in use."""
        if not self.teacher_fixed or self.teacher.noise is not None:
            return False
        if isinstance(data, torch.Tensor):
            data = TensorPairs(data, torch.zeros(len(data), dtype=torch.int64))
        n, logits, feats = len(data), [], {}
        with BatchReader(data, workers) as reader:
            for idx, x, _ in reader.sequential(batch_size):
                z, f = self.teacher(x.to(self.device))
                logits.append(z)
                seen = int(idx[0]) + batch_size
                for k, v in f.items():
                    feats.setdefault(k, []).append(v)
                    # the projected size of the whole cache, from the batches so far
                    if sum(t.numel() for t in feats[k]) * 4 * n / seen > CACHE_LIMIT_BYTES:
                        return False
        self.cache = {"logits": torch.cat(logits), "feats": {k: torch.cat(v) for k, v in feats.items()}}
        return True


__all__ = ["CACHE_LIMIT_BYTES", "Distiller", "Teacher"]
