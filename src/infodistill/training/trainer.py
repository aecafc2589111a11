"""The training loop shared by teacher training and every distillation method.

One plain PyTorch loop: the same optimiser, schedule, clipping, evaluation and checkpointing for
every method, so methods differ only in their loss. Per epoch it logs one JSON line with the
training loss terms, test and distillation-data metrics (accuracy, NLL, ECE, top-1 agreement and
KL(teacher‖student) over the whole set) and, for chosen layer pairs, the PID terms of
``infodistill.pid.estimate``; it then writes a checkpoint atomically, so a rerun of the same command
resumes after the last finished epoch with identical results.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import FidelityAccumulator
from .checkpoint import load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state
from .config import DataConfig, OptimConfig, RunConfig


class TrainingError(RuntimeError):
    """A run that cannot continue (e.g. a non-finite loss); the last good checkpoint is kept."""


def seed_everything(seed: int, threads: int | None = None) -> None:
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """Randomness of one epoch (order, augmentation, mixup) as a function of (seed, epoch) only,
    so a resumed run draws exactly what the uninterrupted run drew."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + stream)


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: OptimConfig, epoch: int) -> float:
    """Learning-rate multiplier for 0-based ``epoch``; the same schedule for every method."""
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    if cfg.schedule == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return 1.0


@dataclass
class StepOutput:
    """What a step function returns: named loss terms, and logits for the running metrics."""

    losses: dict[str, torch.Tensor]
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None = None


@dataclass
class Fit:
    """Everything one run needs; ``run()`` trains it to the end, resuming if a checkpoint exists."""

    student: nn.Module
    #: modules whose parameters are trained besides the student (a method's adapters)
    extra: nn.Module | None
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    data: DataConfig
    optim: OptimConfig
    run_cfg: RunConfig
    #: step(x, y, epoch, idx) -> StepOutput, called in training mode under autograd; idx are the
    #: training-set indices of the batch (for cached teacher outputs)
    step: Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor], StepOutput]
    #: teacher_logits(x) -> logits, for fidelity metrics (None when training a teacher)
    teacher_logits: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: the teacher never changes during the run (not progressive), so its test logits are cached
    teacher_fixed: bool = True
    #: names of parameters that must not change this epoch: frozen(epoch) -> set of params
    frozen: Callable[[int], set] | None = None
    #: called at the start of each epoch (phase switches)
    on_epoch: Callable[[int], None] | None = None
    #: augment(x, generator) for the training data (None: the data are fixed)
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    #: extra per-epoch measurements: evaluate_extra(epoch) -> dict (e.g. PID terms)
    evaluate_extra: Callable[[int], dict] | None = None
    config_dict: dict = field(default_factory=dict)
    progress: bool = True
    _test_teacher_logits: torch.Tensor | None = field(default=None, init=False, repr=False)

    def parameters(self):
        params = list(self.student.parameters())
        if self.extra is not None:
            params += list(self.extra.parameters())
        return params

    # -----------------------------------------------------------------------------------------
    def run(self, resume: bool = True) -> dict:
        """Train to the last epoch. A run directory that already holds a checkpoint is continued
        with ``resume=True`` (its config must be the same) and refused otherwise."""
        out = Path(self.run_cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "log.jsonl"
        opt = make_optimizer(self.parameters(), self.optim)
        base_lrs = [g["lr"] for g in opt.param_groups]
        start, best = 0, None
        if (out / "latest.json").exists():
            if not resume:
                raise TrainingError(
                    f"{out} already holds a run: pass --resume to continue it, or choose another --out"
                )
            _check_same_config(out / "config.json", self.config_dict)
            state = load_checkpoint(out)
            load_model_state(self.student, state["student"], "student")
            if self.extra is not None:
                load_model_state(self.extra, state["extra"], "method")
            opt.load_state_dict(state["optim"])
            set_rng_state(state["rng"])
            start, best = state["epoch"] + 1, state.get("best")
            _truncate_log(log_path, start)
        (out / "config.json").write_text(json.dumps(self.config_dict, indent=2))
        for epoch in range(start, self.optim.epochs):
            t0 = time.perf_counter()
            for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = lr * lr_factor(self.optim, epoch)
            if self.on_epoch is not None:
                self.on_epoch(epoch)
            train_terms, train_fid = self._train_epoch(opt, epoch)
            record = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": train_terms}
            record["distill_data"] = train_fid
            if (epoch + 1) % self.run_cfg.eval_every == 0 or epoch + 1 == self.optim.epochs:
                record["test"] = self.evaluate_test()
                if self.evaluate_extra is not None:
                    record.update(self.evaluate_extra(epoch))
                acc = record["test"]["accuracy"]
                if best is None or acc > best["accuracy"]:
                    best = {"epoch": epoch + 1, "accuracy": acc}
                record["best"] = best
            record["seconds"] = round(time.perf_counter() - t0, 3)
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            state = {
                "epoch": epoch,
                "student": self.student.state_dict(),
                "optim": opt.state_dict(),
                "rng": rng_state(),
                "best": best,
            }
            if self.extra is not None:
                state["extra"] = self.extra.state_dict()
            save_checkpoint(out, f"epoch-{epoch + 1:04d}", state)
            _prune_checkpoints(out, f"epoch-{epoch + 1:04d}", self.run_cfg.keep_every)
        return read_log(log_path)[-1] if log_path.exists() else {}

    def _train_epoch(self, opt, epoch: int):
        self.student.train()
        if self.extra is not None:
            self.extra.train()
        gen = epoch_generator(self.run_cfg.seed, epoch)
        n = self.train_x.shape[0]
        order = torch.randperm(n, generator=gen)
        frozen = self.frozen(epoch) if self.frozen is not None else set()
        sums: dict[str, float] = {}
        fid = FidelityAccumulator()
        batches = range(0, n, self.data.batch_size)
        if self.progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"epoch {epoch + 1}/{self.optim.epochs}", leave=False)
        for start in batches:
            idx = order[start : start + self.data.batch_size]
            x, y = self.train_x[idx], self.train_y[idx]
            if self.augment is not None:
                x = self.augment(x, gen)
            out = self.step(x, y, epoch, idx)
            total = sum(out.losses.values())
            if not torch.isfinite(total):
                terms = {k: float(v.detach()) for k, v in out.losses.items()}
                raise TrainingError(
                    f"non-finite loss at epoch {epoch + 1} ({terms}); the last good checkpoint in "
                    f"{self.run_cfg.out_dir} is kept: lower the learning rate or set optim.grad_clip"
                )
            opt.zero_grad(set_to_none=True)
            total.backward()
            for p in frozen:
                p.grad = None  # optimisers skip params without grad: no decay, no momentum
            if self.optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(
                    [p for p in self.parameters() if p.grad is not None], self.optim.grad_clip
                )
            opt.step()
            for k, v in out.losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
            # Metrics on the inputs the student was trained on (after augmentation/mixup), with
            # the logits of this very step: labels of a mixed batch are those of its first image.
            fid.update(
                out.student_logits.detach().float(),
                y,
                None if out.teacher_logits is None else out.teacher_logits.detach().float(),
            )
        return {k: v / n for k, v in sums.items()}, fid.result()

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        return evaluate_model(self.student, x, y, self.data.eval_batch_size, self.teacher_logits)

    def evaluate_test(self) -> dict:
        """The test-set metrics; a fixed teacher's test logits are computed once and reused."""
        t = self.teacher_logits
        if t is not None and self.teacher_fixed:
            if self._test_teacher_logits is None:
                self._test_teacher_logits = _batched(t, self.test_x, self.data.eval_batch_size)
            t = self._test_teacher_logits
        return evaluate_model(self.student, self.test_x, self.test_y, self.data.eval_batch_size, t)


@torch.no_grad()
def _batched(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch_size]).float() for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def evaluate_model(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, teacher_logits=None
) -> dict:
    """Full-set accuracy, NLL, ECE in eval mode, and agreement and KL(t‖s) given the teacher's
    logits: a function ``teacher_logits(x)``, or a tensor of them aligned with ``x``."""
    was = model.training
    model.eval()
    acc = FidelityAccumulator()
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        if teacher_logits is None:
            zt = None
        elif isinstance(teacher_logits, torch.Tensor):
            zt = teacher_logits[start : start + batch_size]
        else:
            zt = teacher_logits(xb)
        acc.update(model(xb).float(), yb, None if zt is None else zt.float())
    model.train(was)
    return acc.result()


def _check_same_config(path: Path, config: dict) -> None:
    """Resuming with another config would silently mix two runs: name the keys that differ."""
    if not path.exists():
        return
    saved = json.loads(path.read_text())

    def flat(d, prefix=""):
        items = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            items.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return items

    a, b = flat(saved), flat(json.loads(json.dumps(config)))
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        raise TrainingError(
            f"cannot resume {path.parent}: its config differs in {', '.join(diff[:5])}"
            f"{' ...' if len(diff) > 5 else ''}; use the same config or another --out"
        )


def read_log(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _truncate_log(path: Path, start_epoch: int) -> None:
    """Drop log lines of epochs after the checkpoint (written before a crash, to be redone)."""
    if path.exists():
        keep = [r for r in read_log(path) if r["epoch"] <= start_epoch]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, path)


def _prune_checkpoints(out: Path, latest: str, keep_every: int | None) -> None:
    """Delete earlier epoch checkpoints, except every ``keep_every``-th epoch's."""
    import shutil

    for d in out.glob("epoch-*"):
        if not d.is_dir() or d.name == latest:
            continue
        epoch = int(d.name.split("-")[1])
        if keep_every is None or epoch % keep_every:
            shutil.rmtree(d, ignore_errors=True)


def cross_entropy_step(model: nn.Module) -> Callable:
    """Step function of plain supervised training (teachers, the baseline)."""

    def step(x, y, epoch, idx=None):
        logits = model(x)
        return StepOutput({"ce": F.cross_entropy(logits, y)}, logits)

    return step


__all__ = [
    "Fit",
    "StepOutput",
    "TrainingError",
    "cross_entropy_step",
    "epoch_generator",
    "evaluate_model",
    "lr_factor",
    "make_optimizer",
    "read_log",
    "seed_everything",
]
