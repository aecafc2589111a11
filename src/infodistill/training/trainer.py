"""The training loop shared by teacher training and every distillation method.

One plain PyTorch loop: the same optimiser, schedule, clipping, evaluation and checkpointing for
every method, so methods differ only in their loss. Per epoch it logs one JSON line with the
training loss terms, test and distillation-data metrics (accuracy, NLL, ECE, top-1 agreement and
KL(teacher‖student) over the whole set) and, for chosen layer pairs, the PID terms of
``infodistill.pid.estimate``; it then writes a checkpoint atomically, so a rerun of the same command
resumes after the last finished epoch with identical results.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same loop runs data-parallel: every rank draws the same
epoch permutation, trains on its chunk of each global batch of ``data.batch_size`` examples under
``DistributedDataParallel``, metrics are summed over all ranks, and rank 0 alone writes the log
and checkpoints (``distributed.py``, docs/distributed.md). With one process nothing of this runs.

The loop runs on the device of the student (``Fit.device``, chosen by ``training/device.py``):
batches are moved there, the step runs under the run's autocast (``run.amp``; fp16 with a gradient
scaler whose state is checkpointed), and logits come back to the CPU for the metrics in
``device.to_host``. The epoch's permutation and augmentation draws stay on the CPU generator of
:func:`epoch_generator`, so a CPU and a GPU run see the same batches.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.loader import BatchReader, TensorPairs, auto_eval_batch
from ..metrics import FidelityAccumulator
from ..models import model_device
from . import distributed
from .checkpoint import CheckpointError, crash_point, load_model_state, set_rng_state
from .config import ConfigError, DataConfig, OptimConfig, RunConfig
from .device import (
    autocast,
    check_amp,
    grad_scaler,
    process_group_backend,
    rng_state,
    set_cuda_rng_state,
    to_host,
)
from .rundir import RunDir, TrainingError, epoch_name, writing
from .scalars import ScalarWriter
from .task import StepOutput, Task


def seed_everything(seed: int, threads: int | None = None) -> None:
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_generator(seed: int, epoch: int, stream: int = 0, device=None) -> torch.Generator:
    """Randomness of one epoch (order, augmentation, mixup) as a function of (seed, epoch) only,
    so a resumed run draws exactly what the uninterrupted run drew; on the CPU unless ``device``
    names another (a generator draws on its own device)."""
    gen = torch.Generator() if device is None else torch.Generator(device=device)
    return gen.manual_seed(seed * 1_000_003 + epoch * 7919 + stream)


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
class Fit:
    """A task (``task.py``: what is trained and how one step's losses are computed) over its data,
    optimiser and run settings; ``run()`` trains it to the end, resuming if a checkpoint exists."""

    task: Task
    #: map-style data sets of (x, y) items: in memory (ArrayDataset, TensorPairs) or read per
    #: item (an image folder), both through ``data/loader.py``
    train: object
    test: object
    data: DataConfig
    optim: OptimConfig
    run_cfg: RunConfig
    #: augment(x, generator) for the training data (None: the data are fixed)
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    #: extra per-epoch measurements: evaluate_extra(epoch) -> dict (e.g. PID terms); in a
    #: multi-process run it is called on rank 0 only (its result goes to the log rank 0 writes)
    evaluate_extra: Callable[[int], dict] | None = None
    config_dict: dict = field(default_factory=dict)
    #: the config class's defaults: a key missing from a saved config.json (written before the key
    #: existed) counts as its default when a resumed run compares configs
    config_defaults: dict = field(default_factory=dict)
    progress: bool = True
    #: where the loop runs (None: the student's device); models must already be there
    device: torch.device | None = None
    #: an untrained (nuisance) teacher, saved into the run directory when the run starts so that it
    #: can be inspected (``distill`` with ``teacher.kind: untrained``)
    untrained_teacher: nn.Module | None = None
    _test_teacher_logits: torch.Tensor | None = field(default=None, init=False, repr=False)
    #: one BatchReader per split for the whole run (a data set read per item keeps its workers)
    _readers: dict = field(default_factory=dict, init=False, repr=False)
    #: the DistributedDataParallel wrapper of student + extra in a multi-process run
    _ddp: nn.Module | None = field(default=None, init=False, repr=False)
    #: fp16's gradient scaler (None for other precisions); its state is checkpointed
    _scaler: torch.amp.GradScaler | None = field(default=None, init=False, repr=False)

    @property
    def rundir(self) -> RunDir:
        """The run directory (``run.out_dir``): every file of the run is read and written there."""
        return RunDir(self.run_cfg.out_dir)

    @property
    def student(self) -> nn.Module:
        return self.task.student

    @property
    def extra(self) -> nn.Module | None:
        return self.task.extra

    @property
    def teacher_logits(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return self.task.teacher_logits if self.task.has_teacher else None

    @property
    def eval_batch(self) -> int:
        """Examples per evaluation batch: ``data.eval_batch_size``, or automatic (auto_eval_batch)."""
        return auto_eval_batch(self.train, self.data.batch_size, self.data.eval_batch_size)

    def reader(self, split: str) -> BatchReader:
        """The batch reader of ``split`` ("train" or "test"), made at first use."""
        if split not in self._readers:
            device = self.device if self.device is not None else model_device(self.student)
            self._readers[split] = BatchReader(
                getattr(self, split), self.data.workers, pin_memory=device.type == "cuda"
            )
        return self._readers[split]

    def parameters(self):
        return [p for g in self.task.optim_groups() for p in g.params]

    def clip_sets(self) -> list[list[nn.Parameter]]:
        """The parameter sets whose gradients are clipped in one norm each: the student with the
        groups that clip with it, then every other group on its own."""
        groups = self.task.optim_groups()
        with_student = [p for g in groups if g.name == "student" or g.clip_with_student for p in g.params]
        return [with_student] + [
            list(g.params) for g in groups if g.name != "student" and not g.clip_with_student
        ]

    # -----------------------------------------------------------------------------------------
    def run(self, resume: bool = True) -> dict:
        """Train to the last epoch. A run directory that already holds a checkpoint is continued
        with ``resume=True`` (its config must be the same) and refused otherwise.

        The run starts here: under torchrun the process group is joined (on the backend of the
        run's device) and every rank calls this and gets the same final log record; the run
        directory is locked for the run (``RunDir.locked``): a second writer is refused."""
        if self.device is None:
            self.device = model_device(self.student)
        distributed.init(process_group_backend(self.device))
        with self.rundir.locked():
            try:
                return self._run(resume)
            finally:
                for reader in self._readers.values():  # workers stopped, queue threads ended
                    reader.close()
                self._readers.clear()

    def _run(self, resume: bool) -> dict:
        main = distributed.is_main()
        run = self.rundir
        check_amp(self.run_cfg.precision, self.device)
        self._scaler = grad_scaler(self.device, self.run_cfg.precision)
        self._check_split(distributed.world_size())
        opt = self._optimizer()
        base_lrs = [g["lr"] for g in opt.param_groups]
        start, best = self._restore(opt, self._resume_state(resume))
        if main:
            if self.untrained_teacher is not None:
                run.save_untrained_teacher(
                    {k: to_host(v).contiguous() for k, v in self.untrained_teacher.state_dict().items()}
                )
            # Lines of epochs after the checkpoint (or of a first epoch that never reached one)
            # were written before a crash and are redone.
            with writing(f"the log and config.json in {run.path}", "free space or choose another --out"):
                run.truncate_log(start)
                run.write_config(self.config_dict)
        self._parallel()
        # Both readers before the first step: their workers fork while no queue thread runs
        # (data/loader.py says why that matters).
        self.reader("train"), self.reader("test")
        scalars = None
        if self.run_cfg.tensorboard and main:
            scalars = ScalarWriter(run.tensorboard_dir, first_epoch=start + 1)
        try:
            self._epochs(opt, base_lrs, start, best, scalars)
        finally:
            if scalars is not None:
                scalars.close()
        log = run.read_log() if main else []
        return distributed.broadcast_json(log[-1] if log else {})

    def _optimizer(self) -> torch.optim.Optimizer:
        """One parameter group per optimiser group of the task (``Task.optim_groups``): its
        learning rate, and whether it follows the schedule."""
        groups = [
            {
                "params": list(g.params),
                "lr": self.optim.lr * g.lr_scale,
                "name": g.name,
                "constant_lr": g.constant_lr,
            }
            for g in self.task.optim_groups()
        ]
        return make_optimizer(groups, self.optim)

    def _restore(self, opt, state: dict | None) -> tuple[int, dict | None]:
        """Load a checkpoint's weights, optimiser, scaler and generators; (first epoch to run, best
        so far). A fresh run (``state`` None) starts at epoch 0."""
        if state is None:
            return 0, None
        world = distributed.world_size()
        load_model_state(self.student, state["student"], "student")
        if self.extra is not None:
            load_model_state(self.extra, state["extra"], "method")
        saved = [g.get("name") for g in state["optim"]["param_groups"]]
        if saved != [g["name"] for g in opt.param_groups]:
            raise TrainingError(
                f"the checkpoint in {self.rundir.path} has optimiser groups {saved}, this run "
                f"{[g['name'] for g in opt.param_groups]} (written by another version): "
                "start the run in a new directory"
            )
        opt.load_state_dict(state["optim"])
        if self._scaler is not None and state.get("scaler"):
            self._scaler.load_state_dict(state["scaler"])
        ranks, cuda_ranks = state.get("rng_ranks"), state.get("cuda_rng_ranks")
        if ranks is not None and len(ranks) == world:
            set_rng_state({"torch": ranks[distributed.rank()]})
            cuda = cuda_ranks[distributed.rank()] if cuda_ranks and len(cuda_ranks) == world else None
        else:  # single process, or another number of processes than the run was started with
            set_rng_state(state["rng"])
            cuda = state["rng"].get("cuda")
        set_cuda_rng_state(cuda, self.device)
        return state["epoch"] + 1, state.get("best")

    def _parallel(self) -> None:
        """Under torchrun: BatchNorm over the global batch and DistributedDataParallel over student
        and method (``self._ddp``). Nothing in one process."""
        for module in (self.student, self.extra):
            if module is not None:
                distributed.sync_batchnorm_(module, self.device)
        # A method's phases leave parts without gradients; plain training uses every parameter.
        phased = self.extra is not None or type(self.task).frozen is not Task.frozen
        self._ddp = distributed.wrap(
            [self.student, self.extra], find_unused_parameters=phased, device=self.device
        )

    def _epochs(self, opt, base_lrs, start: int, best, scalars) -> None:
        for epoch in range(start, self.optim.epochs):
            t0 = time.perf_counter()
            for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = lr if g["constant_lr"] else lr * lr_factor(self.optim, epoch)
            self.task.on_epoch(epoch, self.optim.epochs)
            train_terms, train_fid, train_seconds, phase_steps = self._train_epoch(opt, epoch)
            self._check_finite_weights(epoch)
            record = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": train_terms}
            if phase_steps:
                record["phase_steps"] = phase_steps  # a multi-phase method's steps in each phase
            record["distill_data"] = train_fid
            if (epoch + 1) % self.run_cfg.eval_every == 0 or epoch + 1 == self.optim.epochs:
                record["test"] = self.evaluate_test()
                if self.evaluate_extra is not None and distributed.is_main():
                    t_extra = time.perf_counter()
                    record.update(self.evaluate_extra(epoch))
                    record["extra_seconds"] = round(time.perf_counter() - t_extra, 3)  # the PID tracker
                acc = record["test"]["accuracy"]
                if best is None or acc > best["accuracy"]:
                    best = {"epoch": epoch + 1, "accuracy": acc}
                record["best"] = best
            record["seconds"] = round(time.perf_counter() - t0, 3)
            # Training steps only (evaluation and the PID excluded): what a batch size or amp buys.
            record["examples_per_s"] = round(len(self.train) / max(train_seconds, 1e-9), 1)
            self._save(epoch, record, opt, best, scalars)
            distributed.barrier()

    def _save(self, epoch: int, record: dict, opt, best, scalars) -> None:
        """The epoch's log line, then its checkpoint (rank 0 writes; every rank takes part in
        gathering the per-rank generators)."""
        rng = rng_state(self.device)
        state = {
            "epoch": epoch,
            "student": self.student.state_dict(),
            "optim": opt.state_dict(),
            "rng": rng,
            "best": best,
        }
        if self.extra is not None:
            state["extra"] = self.extra.state_dict()
        if self._scaler is not None:
            state["scaler"] = self._scaler.state_dict()
        # Each rank's own generator (dropout draws per chunk), for an exact resume; nothing in
        # one process, whose generator is state["rng"].
        state.update(distributed.rank_generators(rng))
        if not distributed.is_main():
            return
        run, name = self.rundir, epoch_name(epoch + 1)
        with writing(
            f"the epoch {epoch + 1} checkpoint in {run.path}",
            lambda: (
                f"the last good checkpoint ({run.latest_name() or 'none yet'}) is kept: "
                "free space and rerun with --resume"
            ),
        ):
            run.append_log(record)
            if scalars is not None:
                scalars.write(record)  # before the checkpoint, like the log line: redone alike
            crash_point("epoch-logged")
            run.save_checkpoint(name, state)
            run.prune_checkpoints(name, self.run_cfg.keep_every)

    def _resume_state(self, resume: bool) -> dict | None:
        """The checkpoint to continue from (None: a fresh run). Rank 0 reads it and sends it to
        the others, so a refusal is raised on every rank alike."""
        if distributed.world_size() == 1:
            return self.rundir.resume_state(resume, self.config_dict, self.config_defaults)
        state, error = None, None
        if distributed.is_main():
            try:
                state = self.rundir.resume_state(resume, self.config_dict, self.config_defaults)
            except (TrainingError, CheckpointError) as exc:
                error = [type(exc).__name__, str(exc)]
        error = distributed.broadcast_json(error)
        if error is not None:
            raise (CheckpointError if error[0] == "CheckpointError" else TrainingError)(error[1])
        return distributed.broadcast_state(state)

    def _check_split(self, world: int) -> None:
        """Every process needs at least one example of the last batch (always so in one)."""
        n, b = len(self.train), self.data.batch_size
        last = n % b or min(b, n)
        if last < world:
            raise ConfigError(
                f"data.batch_size={b} is the global batch, split over {world} processes, but the last "
                f"batch of an epoch holds {last} of the {n} training examples, fewer than one per "
                f"process: choose data.batch_size so that {n} mod batch_size is 0 or >= {world}"
            )

    def _check_finite_weights(self, epoch: int) -> None:
        """A step with a finite loss can still leave non-finite weights (an overflowing gradient);
        they must not become the checkpoint a rerun resumes from."""
        bad = [n for n, p in self.student.named_parameters() if not torch.isfinite(p).all()]
        if self.extra is not None:
            bad += [f"method.{n}" for n, p in self.extra.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingError(
                f"non-finite weights after epoch {epoch + 1} ({', '.join(bad[:3])}); the last good "
                f"checkpoint in {self.run_cfg.out_dir} is kept: lower the learning rate or set "
                "optim.grad_clip"
            )

    def _step(self, x, y, epoch: int, idx) -> StepOutput:
        if self._ddp is None:
            return self.task.step(x, y, epoch, idx)

        def forward(*args):
            out = self.task.step(*args)
            return {"losses": out.losses, "student": out.student_logits, "teacher": out.teacher_logits}

        out = self._ddp(forward, x, y, epoch, idx)
        return StepOutput(out["losses"], out["student"], out["teacher"])

    def _shard(self) -> tuple[int, int] | None:
        return (distributed.rank(), distributed.world_size()) if distributed.world_size() > 1 else None

    def _train_epoch(self, opt, epoch: int):
        """One epoch of steps: (mean loss terms, distillation-data metrics, seconds it took, steps
        in each phase of a multi-phase task). A loss term's mean runs over the steps that had it."""
        t0 = time.perf_counter()
        self.student.train()
        if self.extra is not None:
            self.extra.train()
        gen = epoch_generator(self.run_cfg.seed, epoch)
        n = len(self.train)
        order = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        phase_steps: dict[str, int] = {}
        fid = FidelityAccumulator()
        clip_sets = self.clip_sets() if self.optim.grad_clip is not None else []
        world = distributed.world_size()
        device, amp = self.device, self.run_cfg.precision
        bar = None
        if self.progress and distributed.is_main():
            # Counted in examples (of the global batch), so the bar's rate is examples/s.
            bar = tqdm(
                total=n,
                desc=f"epoch {epoch + 1}/{self.optim.epochs}",
                unit="ex",
                unit_scale=True,
                leave=False,
            )
        plan = self._plan(order)
        batches = self.reader("train")(p[3] for p in plan)
        # Schedules (a method's phases) are counted in optimiser steps over the whole run.
        per_epoch = len(plan)
        total_steps = per_epoch * self.optim.epochs
        for k, ((size, lo, hi, _), (idx, x, y)) in enumerate(zip(plan, batches, strict=True)):
            phase = self.task.on_step(epoch * per_epoch + k, total_steps, per_epoch)
            if phase is not None:
                phase_steps[phase] = phase_steps.get(phase, 0) + 1
            frozen = self.task.frozen()
            if bar is not None:
                bar.update(size)
            # This rank's chunk's mean loss is weighted by chunk·W/batch so that DDP's average
            # over ranks is the mean over the global batch (1 in one process).
            weight = (hi - lo) * world / size
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if self.augment is not None:
                x = self.augment(x, gen)
                idx, x, y = idx[lo:hi], x[lo:hi], y[lo:hi]  # this rank's chunk (all of it in one process)
            with autocast(device, amp):
                out = self._step(x, y, epoch, idx)
            total = sum(out.losses.values())
            self._check_finite_loss(total, out.losses, epoch)
            self._update(opt, total * weight if weight != 1.0 else total, frozen, clip_sets)
            crash_point("train-step")
            for name, v in out.losses.items():
                sums[name] = sums.get(name, 0.0) + float(v.detach()) * len(idx)
                counts[name] = counts.get(name, 0) + len(idx)
            # Metrics on the inputs the student was trained on (after augmentation/mixup), with
            # the logits of this very step: labels of a mixed batch are those of its first image.
            fid.update(
                to_host(out.student_logits).float(),
                to_host(y),
                None if out.teacher_logits is None else to_host(out.teacher_logits).float(),
            )
        if bar is not None:
            bar.close()
        sums, counts = _sum_over_ranks(sums, counts, fid)
        means = {k: v / counts[k] for k, v in sums.items()}
        return means, fid.result(), time.perf_counter() - t0, phase_steps

    def _plan(self, order: torch.Tensor) -> list[tuple[int, int, int, torch.Tensor]]:
        """The batches of the epoch, fixed before any is read: (global batch size, this rank's
        chunk [lo, hi), the indices to read). Without augmentation a rank reads only its chunk;
        with it the whole batch is augmented, drawing exactly what one process draws from the
        shared generator (mixup pairs across chunks), and then cut. In one process the chunk is
        the whole batch."""
        world, rank = distributed.world_size(), distributed.rank()
        plan = []
        for start in range(0, len(order), self.data.batch_size):
            idx = order[start : start + self.data.batch_size]
            lo, hi = distributed.shard_bounds(len(idx), rank, world)
            plan.append((len(idx), lo, hi, idx if self.augment is not None else idx[lo:hi]))
        return plan

    def _check_finite_loss(self, total: torch.Tensor, losses: dict, epoch: int) -> None:
        """Stop every rank alike on a non-finite loss; the last good checkpoint stays."""
        local_bad = not torch.isfinite(total)
        if distributed.any_true(local_bad):
            terms = {k: float(v.detach()) for k, v in losses.items()}
            where = "" if local_bad else " on another process"
            raise TrainingError(
                f"non-finite loss at epoch {epoch + 1}{where} ({terms}); the last good checkpoint in "
                f"{self.run_cfg.out_dir} is kept: lower the learning rate or set optim.grad_clip"
            )

    def _update(self, opt, total: torch.Tensor, frozen, clip_sets) -> None:
        """One optimiser step on ``total``: backward (scaled under fp16), no gradient for the
        frozen parameters, one clipping norm per clip set, the step."""
        scaler = self._scaler
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
        else:
            total.backward()
        for p in frozen:
            p.grad = None  # optimisers skip params without grad: no decay, no momentum
        if self.optim.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
            # One norm per clip set (Fit.clip_sets): the method decides which of its modules
            # clip with the student (RID, VID: as the reference code's optimisers).
            for params in clip_sets:
                grads = [p for p in params if p.grad is not None]
                if grads:
                    nn.utils.clip_grad_norm_(grads, self.optim.grad_clip)
        if scaler is not None:
            scaler.step(opt)  # skipped when the scaled gradients overflowed; the scale then drops
            scaler.update()
        else:
            opt.step()

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        return evaluate_model(self.student, x, y, self.eval_batch, self.teacher_logits, shard=self._shard())

    def evaluate_test(self) -> dict:
        """The test-set metrics; a fixed teacher's test logits are computed once and reused."""
        t = self.teacher_logits
        bs = self.eval_batch
        if t is not None and self.task.teacher_fixed:
            if self._test_teacher_logits is None:
                with torch.no_grad():
                    parts = [t(x.to(self.device)).float() for _, x, _ in self.reader("test").sequential(bs)]
                self._test_teacher_logits = torch.cat(parts)
            t = self._test_teacher_logits
        return evaluate_dataset(
            self.student, self.test, bs, t, shard=self._shard(), reader=self.reader("test")
        )


def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    teacher_logits=None,
    *,
    shard: tuple[int, int] | None = None,
) -> dict:
    """:func:`evaluate_dataset` of the examples ``x`` with labels ``y``."""
    return evaluate_dataset(model, TensorPairs(x, y), batch_size, teacher_logits, shard=shard)


@torch.no_grad()
def evaluate_dataset(
    model: nn.Module,
    dataset,
    batch_size: int,
    teacher_logits=None,
    *,
    shard: tuple[int, int] | None = None,
    reader: BatchReader | None = None,
) -> dict:
    """Full-set accuracy, NLL, ECE in eval mode, and agreement and KL(t‖s) given the teacher's
    logits: a function ``teacher_logits(x)``, or a tensor of them aligned with the data set.

    ``shard=(rank, world)``: this rank evaluates batches rank, rank + world, ... (the batches one
    process would form, so every example's logits are the single-process ones) and the sums of
    all ranks are added, so every rank returns the metrics of the whole set.

    Batches (read by ``reader``, default a new one over ``dataset``) are moved to the model's
    device and the logits brought back for the sums."""
    was = model.training
    model.eval()
    device = model_device(model)
    acc = FidelityAccumulator()
    skip = None if shard is None else (lambda k: k % shard[1] != shard[0])
    # A reader made here is closed here; one handed in belongs to the caller.
    with contextlib.nullcontext(reader) if reader is not None else BatchReader(dataset) as reader:
        for idx, xb, yb in reader.sequential(batch_size, skip=skip):
            xb = xb.to(device)
            if teacher_logits is None:
                zt = None
            elif isinstance(teacher_logits, torch.Tensor):
                zt = teacher_logits[idx[0] : idx[-1] + 1]
            else:
                zt = teacher_logits(xb)
            acc.update(to_host(model(xb)).float(), to_host(yb), None if zt is None else to_host(zt).float())
    model.train(was)
    if shard is not None and shard[1] > 1:
        _all_reduce_fidelity(acc)
    return acc.result()


def _sum_over_ranks(sums: dict, counts: dict, fid: FidelityAccumulator) -> tuple[dict, dict]:
    """The loss sums and counts and the metric sums of all ranks (as they are in one process)."""
    if distributed.world_size() == 1:
        return sums, counts
    both = torch.tensor([*sums.values(), *(counts[k] for k in sums)], dtype=torch.float64)
    totals = distributed.all_reduce_sum(both).tolist()
    _all_reduce_fidelity(fid)
    return dict(zip(sums, totals[: len(sums)], strict=True)), dict(
        zip(sums, totals[len(sums) :], strict=True)
    )


def _all_reduce_fidelity(acc: FidelityAccumulator) -> None:
    """Replace the accumulator's sums by their totals over all ranks (float64: counts stay exact)."""
    scalars = ("n", "correct", "nll", "agree", "kl", "n_teacher")
    packed = torch.cat(
        [
            torch.tensor([float(getattr(acc, k)) for k in scalars], dtype=torch.float64),
            acc.bin_count,
            acc.bin_correct,
            acc.bin_conf,
        ]
    )
    distributed.all_reduce_sum(packed)
    for i, k in enumerate(scalars):
        value = float(packed[i])
        setattr(acc, k, int(round(value)) if k in ("n", "n_teacher") else value)
    acc.bin_count, acc.bin_correct, acc.bin_conf = packed[len(scalars) :].view(3, -1).clone().unbind(0)


__all__ = [
    "Fit",
    "epoch_generator",
    "evaluate_dataset",
    "evaluate_model",
    "lr_factor",
    "make_optimizer",
    "seed_everything",
]
