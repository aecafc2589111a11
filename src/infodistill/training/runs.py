"""Build and run ``train-teacher`` and ``distill`` from their configs.

Everything a run needs is checked when it is built (model and method names, layer names and
feature shapes by a dummy forward, checkpoints against the architecture), before the first step.
Models are built (by name or by a factory, with their weights) on the CPU and moved to the run's
device once (``training/device.py`` decides which); everything downstream follows them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from ..data import RandomCropPad, RandomHFlip, load_dataset, mixup
from ..data.factory import load_data_factory
from ..data.loader import auto_eval_batch, first_examples, in_memory, sample_shape
from ..data.transforms import symmetric_inputs
from ..methods import DistillMethod, build_method, method_class
from ..models import (
    build_from_factory,
    build_model,
    interpolate_student,
    load_weights,
    model_device,
    probe_shapes,
)
from . import distributed
from .checkpoint import load_checkpoint, load_model_state
from .config import (
    AUTO_PAIRS,
    ConfigError,
    DataConfig,
    DistillConfig,
    ModelConfig,
    RunConfig,
    TeacherTrainConfig,
    to_dict,
)
from .device import process_group_backend, select_device, to_host
from .distiller import Distiller
from .pid_tracker import PIDTracker
from .rundir import make_run_dir, run_directory, writing
from .runlog import read_log
from .task import Supervised, Task
from .trainer import Fit, seed_everything


def prepare_data(cfg: DataConfig, seed: int):
    """(train, test) datasets; ``train_subset`` keeps a seeded random subset of the training set."""
    if cfg.factory is not None:
        train, test = load_data_factory(cfg.factory, cfg.kwargs)
    else:
        try:
            # data.kwargs are the loader's options, e.g. {size: 224} for an image folder of mixed sizes
            train, test = load_dataset(cfg.name, cfg.root, **cfg.kwargs)
        except TypeError as exc:
            if "unexpected keyword" not in str(exc):
                raise
            raise ConfigError(
                f"data.kwargs {cfg.kwargs} are not all options of the data set {cfg.name!r} "
                f"({str(exc).split('() ')[-1]}); image-folder takes size and test_size, digits seed and "
                "test_size, cifar100 coarse"
            ) from None
    if cfg.train_subset is not None and cfg.train_subset < len(train):
        subset_seed = seed if cfg.subset_seed is None else cfg.subset_seed
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(subset_seed))
        train = train.subset(order[: cfg.train_subset].sort().values)
    if cfg.test_subset is not None and cfg.test_subset < len(test):
        test = test.subset(torch.arange(cfg.test_subset))
    if cfg.scale_inputs == "symmetric":
        train, test = (_symmetric(d, cfg) for d in (train, test))
    return train, test


def _symmetric(data, cfg: DataConfig):
    """``data`` with inputs x -> 2x - 1 (data.scale_inputs = symmetric)."""
    try:
        return symmetric_inputs(data)
    except ValueError as exc:
        raise ConfigError(
            f"data.scale_inputs=symmetric: {exc} ({cfg.factory or cfg.name}) and set data.scale_inputs=none"
        ) from None


def make_augment(cfg: DataConfig, sample_shape):
    """The distillation-data transform: crop-flip and/or mixup, drawn from the epoch's generator."""
    ops = []
    if cfg.augment == "crop-flip":
        if len(sample_shape) != 3:
            raise ValueError("data.augment=crop-flip needs image data (C, H, W); use 'none' for 1-D data")
        ops += [RandomCropPad(tuple(sample_shape[1:]), padding=4), RandomHFlip(0.5)]
    if not ops and cfg.mixup_alpha == 0:
        return None

    def augment(x, gen):
        for op in ops:
            x = op(x, generator=gen)
        if cfg.mixup_alpha > 0:
            x = mixup(x, cfg.mixup_alpha, generator=gen).x  # teacher and student see this same x
        return x

    return augment


def start_device(run: RunConfig) -> torch.device:
    """The run's device (``run.device``, checked against ``run.amp``), with the process group of a
    torchrun run joined on the matching backend. Every entry point calls this first."""
    device = select_device(run.device, run.precision)
    distributed.init(process_group_backend(device))  # a no-op unless started by torchrun
    return device


def _model(
    cfg: ModelConfig, train, seed: int | None = None, *, weights: bool = True, what: str = "model"
) -> nn.Module:
    """The model ``cfg`` describes, on the CPU: a built-in one by name or your own by factory, with
    ``cfg.weights`` loaded unless ``weights=False`` (a checkpoint is loaded over it anyway).
    ``what`` is its config key, for the messages."""
    shape = sample_shape(train)
    # A config key ("student") names its options "student.factory"; a flag ("--teacher-model",
    # audit's) is named as typed, with the weights file given as "--teacher".
    flag = what.startswith("-")
    if cfg.factory is not None:
        model = build_from_factory(
            cfg.factory, cfg.kwargs, seed=seed, what=what if flag else f"{what}.factory"
        )
    else:
        model = build_model(
            cfg.name, train.num_classes, shape[0], input_size=shape[1:], seed=seed, **cfg.kwargs
        )
    if weights and cfg.weights is not None:
        label = what.removesuffix("-model") if flag else f"{what}.weights"
        load_weights(model, cfg.weights, prefix=cfg.weights_prefix, key=cfg.weights_key, what=label)
    return model


def _fits(model: nn.Module, cfg: ModelConfig, data, what: str) -> None:
    """:func:`check_model_fits` with the fix a factory model needs (its function, not a name)."""
    fix = None
    if cfg.factory is not None:
        fix = (
            f"make {what}.factory {cfg.factory!r} return a model taking inputs of shape "
            f"{sample_shape(data)} and giving {data.num_classes} logits (see {what}.kwargs)"
        )
    check_model_fits(model, cfg.label, data, f"{what} model" if what != "model" else what, fix)


@torch.no_grad()
def check_model_fits(model: nn.Module, name: str, data, what: str = "model", fix: str | None = None) -> None:
    """A forward pass on two real examples (eval mode, so no statistic moves): a model built for
    other data fails here, when the run is built, not at its first training step. Two, because
    torch reads a single (C, L) example as an unbatched image and would let a 2-D CNN through."""
    x = first_examples(data, 2)[0].to(model_device(model))
    kind = "1-D signals" if x.dim() == 3 else "images"
    hint = "cnn1d or mlp" if x.dim() == 3 else "cnn-small, wrn-D-K, resnetN or mlp"
    was = model.training
    model.eval()
    try:
        out = model(x)
        bad = None if tuple(out.shape) == (len(x), data.num_classes) else f"output shape {tuple(out.shape)}"
    except RuntimeError as exc:
        bad = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        model.train(was)
    if bad is not None:
        raise ConfigError(
            f"{what} {name!r} does not fit the data {data.name!r} ({kind} of shape "
            f"{tuple(x.shape[1:])}): {bad}; {fix or f'choose a model for {kind} ({hint})'}"
        )


def load_trained(path: str, cfg: ModelConfig, train) -> nn.Module:
    """A model from a ``train-teacher`` run directory (its latest checkpoint) or a checkpoint."""
    model = _model(cfg, train, weights=False, what="teacher.model")
    load_model_state(model, load_checkpoint(path)["student"], f"teacher ({path})")
    return model


def train_teacher(cfg: TeacherTrainConfig, progress: bool = True, resume: bool = True) -> dict:
    seed_everything(cfg.run.seed, cfg.run.threads)
    device = start_device(cfg.run)
    _check_tensorboard(cfg.run)
    train, test = prepare_data(cfg.data, cfg.run.seed)
    model = _model(cfg.model, train, seed=cfg.run.seed).to(device)
    _fits(model, cfg.model, train, "model")
    with run_directory(cfg.run.out_dir):
        return _train_teacher(cfg, model, train, test, progress, resume, device)


def _train_teacher(cfg, model, train, test, progress: bool, resume: bool, device) -> dict:
    _channels_last(cfg.run.channels_last, [model], train, test)
    fit = _fit(
        cfg,
        Supervised(model),
        train,
        test,
        progress,
        device=device,
        augment=make_augment(cfg.data, sample_shape(train)),
    )
    return fit.run(resume)


def _fit(cfg, task: Task, train, test, progress: bool, **kw) -> Fit:
    """A ``Fit`` of ``task`` over the config's data, optimiser and run settings."""
    return Fit(
        task=task,
        train=train,
        test=test,
        data=cfg.data,
        optim=cfg.optim,
        run_cfg=cfg.run,
        config_dict=to_dict(cfg),
        config_defaults=to_dict(type(cfg)()),
        progress=progress,
        **kw,
    )


def _channels_last(enabled: bool, models, *datasets) -> None:
    """NHWC layout for image models and their in-memory data (faster convolutions on CPU); a no-op
    for 1-D data. Batches of a data set read per item are converted by the model's first layer."""
    if not enabled or len(sample_shape(datasets[0])) != 3:
        return
    for m in models:
        m.to(memory_format=torch.channels_last)
    for ds in datasets:
        if in_memory(ds):
            ds.x = ds.x.contiguous(memory_format=torch.channels_last)


def _check_tensorboard(run: RunConfig) -> None:
    if run.tensorboard:
        from .scalars import require_tensorboard

        require_tensorboard()


def _teacher_members(cfg: DistillConfig, train, method: type[DistillMethod]) -> list[nn.Module]:
    """The teacher's networks on the CPU: one (trained from a checkpoint or a weights file,
    untrained from its seed), an ensemble's members, or, for a method that learns from the
    teacher's trajectory, all its checkpoints."""
    t = cfg.teacher
    if t.kind == "untrained":
        return [_model(t.model, train, seed=t.seed, what="teacher.model")]
    if t.model.weights is not None:
        return [_model(t.model, train, what="teacher.model")]
    paths = t.checkpoints if t.kind == "ensemble" or method.uses_teacher_checkpoints else t.checkpoints[:1]
    return [load_trained(p, t.model, train) for p in paths]


def build_distillation(cfg: DistillConfig, progress: bool = True, pair_resolver=None) -> Fit:
    """Everything of a distillation run, validated, as a ready-to-run ``Fit``, built top down:
    data → teacher and student (checked on real examples) → method (layer pairs resolved on their
    probed shapes) → the step (``Distiller``, with its teacher-output cache) → the PID tracker.

    Under torchrun every rank builds the same run (its own teacher-output cache of the whole
    training set included: the chunks a rank trains on change every epoch).

    ``method.pairs: auto`` is resolved by ``pair_resolver(teacher, student, train, cfg)`` ->
    ``(pairs, record)`` once the models are built (``infodistill.layer_map.auto_pairs``, which the
    command line passes: the layer map sits above this layer); the run then records the chosen
    pairs and the record in its config (``method.pairs``, ``method.auto_pairs``). The caller's
    ``cfg`` is not changed."""
    seed_everything(cfg.run.seed, cfg.run.threads)
    device = start_device(cfg.run)
    _check_tensorboard(cfg.run)
    train, test = prepare_data(cfg.data, cfg.run.seed)
    shape = sample_shape(train)
    method_cls = method_class(cfg.method.name)

    members = [m.to(device) for m in _teacher_members(cfg, train, method_cls)]
    student = _model(cfg.student, train, seed=cfg.run.seed, what="student").to(device)
    _fits(members[0], cfg.teacher.model, train, "teacher")
    _fits(student, cfg.student, train, "student")
    if cfg.teacher.kind == "untrained":
        _save_untrained_teacher(members[0], Path(cfg.run.out_dir))
    trajectory = None
    if method_cls.uses_teacher_checkpoints:
        # The teacher is one model that takes each checkpoint's weights in turn (Distiller.on_epoch).
        trajectory = members
        members = [_model(cfg.teacher.model, train, weights=False, what="teacher.model").to(device)]
    if cfg.init_lambda is not None:  # towards the final teacher (the last checkpoint of a trajectory)
        interpolate_student(trajectory[-1] if trajectory else members[0], student, cfg.init_lambda)
    _channels_last(cfg.run.channels_last, [student, *members, *(trajectory or [])], train, test)

    if cfg.method.pairs == AUTO_PAIRS:
        cfg = _resolve_auto_pairs(
            cfg, pair_resolver, trajectory[-1] if trajectory else members[0], student, train
        )
    pairs = [tuple(p) for p in cfg.method.pairs]
    method = build_method(
        cfg.method.name,
        num_classes=train.num_classes,
        pairs=pairs,
        student_shapes=probe_shapes(student, [s for s, _ in pairs], shape) if pairs else {},
        teacher_shapes=probe_shapes(members[0], [t for _, t in pairs], shape) if pairs else {},
        **({"num_checkpoints": len(trajectory)} if trajectory else {}) | dict(cfg.method.params),
    ).to(device)
    t = cfg.teacher
    noise = (
        {"sigma": t.noise_sigma, "fraction": t.noise_fraction, "mode": t.noise_mode}
        if t.kind == "noisy"
        else None
    )
    distiller = Distiller(student, members, method, checkpoints=trajectory, noise=noise, seed=cfg.run.seed)

    augment = make_augment(cfg.data, shape)
    eval_batch = auto_eval_batch(train, cfg.data.batch_size, cfg.data.eval_batch_size)
    if cfg.run.cache_teacher and augment is None:
        distiller.cache_teacher_outputs(train, eval_batch, workers=cfg.data.workers)
    tracker = None
    if cfg.pid.pairs:
        tracker = PIDTracker(
            cfg.pid,
            student,
            members[0],
            test,
            epochs=cfg.optim.epochs,
            seed=cfg.run.seed,
            batch_size=eval_batch,
            workers=cfg.data.workers,
            noise=noise,
            teacher_fixed=distiller.teacher_fixed,
            method=method,
        )
    return _fit(cfg, distiller, train, test, progress, device=device, augment=augment, evaluate_extra=tracker)


def _save_untrained_teacher(model: nn.Module, out: Path) -> None:
    """Rank 0 saves the untrained (nuisance) teacher, so it can be inspected; the run itself
    rebuilds it from its seed."""
    if not distributed.is_main():
        return
    from safetensors.torch import save_file

    make_run_dir(out)
    weights = {k: to_host(v).contiguous() for k, v in model.state_dict().items()}
    tmp = out / ".teacher-untrained.safetensors.tmp"
    with writing(f"the untrained teacher in {out}", "free space or choose another --out"):
        save_file(weights, str(tmp))
        tmp.replace(out / "teacher-untrained.safetensors")


def _resolve_auto_pairs(cfg: DistillConfig, resolver, teacher: nn.Module, student: nn.Module, train):
    """A copy of ``cfg`` with ``method.pairs: auto`` replaced by the pairs ``resolver`` chooses."""
    if resolver is None:
        raise ConfigError(
            "method.pairs: auto is chosen from the layer map, which this call does not reach: run "
            "`infodistill distill`, or pass pair_resolver=infodistill.layer_map.auto_pairs"
        )
    pairs, record = resolver(teacher, student, train, cfg)
    if method_class(cfg.method.name).uses_teacher_features and not pairs:
        raise ConfigError(
            f"method.pairs: auto: the layer map suggests no pair ({record.get('why', 'nothing left')}); "
            f"{cfg.method.name} needs at least one: name the pairs, or distil the logits only (kd)"
        )
    cfg = copy.deepcopy(cfg)
    cfg.method.pairs = [list(p) for p in pairs]
    cfg.method.auto_pairs = record
    return cfg


def distill(cfg: DistillConfig, progress: bool = True, resume: bool = True, pair_resolver=None) -> dict:
    """Build and run a distillation (``pair_resolver``: see :func:`build_distillation`)."""
    start_device(cfg.run)  # the process group first: the lock below is rank 0's alone
    # Locked before the build: it writes the untrained teacher into the directory.
    with run_directory(cfg.run.out_dir):
        return build_distillation(cfg, progress, pair_resolver).run(resume)


def run_summary(out_dir: str) -> dict:
    """Last and best epoch of a run directory's log."""
    log = read_log(Path(out_dir) / "log.jsonl")
    last = log[-1]
    return {
        "last": last,
        "best": last.get("best"),
        "config": json.loads((Path(out_dir) / "config.json").read_text()),
    }
