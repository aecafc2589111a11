"""Build and run ``train-teacher`` and ``distill`` from their configs.

Everything a run needs is checked when it is built (model and method names, layer names and
feature shapes by a dummy forward, checkpoints against the architecture), before the first step.
Models are built (by name or by a factory, with their weights) on the CPU and moved to the run's
device once (``training/device.py`` decides which); everything downstream follows them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..data import RandomCropPad, RandomHFlip, load_dataset, mixup
from ..data.errors import DataOptionError
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
from .checkpoint import load_model_state
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
from .device import select_device
from .distiller import Distiller
from .pid_tracker import PIDTracker
from .rundir import load_checkpoint
from .scalars import require_tensorboard
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
        except DataOptionError as exc:  # the registry checks them against the loader's signature
            raise ConfigError(f"data.kwargs {cfg.kwargs}: {exc}") from None
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


def model_from_config(
    cfg: ModelConfig,
    data,
    seed: int | None = None,
    *,
    weights: bool = True,
    what: str = "model",
    labels: tuple[str, str] | None = None,
    shape: tuple | None = None,
) -> nn.Module:
    """The model ``cfg`` describes for examples of ``data`` (its sample shape and number of
    classes), on the CPU: a built-in one by name or your own by factory, with ``cfg.weights``
    loaded unless ``weights=False`` (a checkpoint is loaded over it anyway). ``what`` is its config
    key (``student``, ``teacher.model``), for the messages, which name its factory and weights
    ``{what}.factory`` and ``{what}.weights`` unless ``labels`` gives their names (the audit's
    arguments); ``shape``: the sample shape when the caller has it already.

    Every place that builds a model from a spec or a run (the runs, ``evaluate``, the audit, the
    experiments' checks) builds it here."""
    shape = sample_shape(data) if shape is None else shape
    factory_label, weights_label = labels or (f"{what}.factory", f"{what}.weights")
    if cfg.factory is not None:
        model = build_from_factory(cfg.factory, cfg.kwargs, seed=seed, what=factory_label)
    else:
        model = build_model(
            cfg.name, data.num_classes, shape[0], input_size=shape[1:], seed=seed, **cfg.kwargs
        )
    if weights and cfg.weights is not None:
        load_weights(model, cfg.weights, prefix=cfg.weights_prefix, key=cfg.weights_key, what=weights_label)
    return model


def model_from_run(
    path,
    cfg: ModelConfig,
    data,
    *,
    what: str = "teacher.model",
    labels: tuple[str, str] | None = None,
    label: str | None = None,
    seed: int | None = None,
) -> nn.Module:
    """The model ``cfg`` describes (:func:`model_from_config`, ``what`` and ``labels`` as there)
    with the weights of a run directory's latest checkpoint, or of a checkpoint directory,
    ``path``: a trained teacher, a finished student. ``label`` names the weights in messages
    (default: the role and the path, "teacher (runs/t)"); ``seed``: the initialisation's, which
    the weights replace."""
    model = model_from_config(cfg, data, seed=seed, weights=False, what=what, labels=labels)
    load_model_state(model, load_checkpoint(path)["student"], label or f"{what.split('.')[0]} ({path})")
    return model


def _fits(model: nn.Module, cfg: ModelConfig, data, what: str, shape: tuple) -> None:
    """:func:`check_model_fits` with the fix a factory model needs (its function, not a name)."""
    fix = None
    if cfg.factory is not None:
        fix = (
            f"make {what}.factory {cfg.factory!r} return a model taking inputs of shape "
            f"{shape} and giving {data.num_classes} logits (see {what}.kwargs)"
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


def train_teacher(cfg: TeacherTrainConfig, progress: bool = True, resume: bool = True) -> dict:
    """Train ``cfg.model`` on the labels (what ``infodistill train-teacher`` runs): data → model
    (checked on real examples) → ``Fit`` of a ``Supervised`` task → its run."""
    seed_everything(cfg.run.seed, cfg.run.threads)
    device = select_device(cfg.run.device, cfg.run.precision)
    _check_tensorboard(cfg.run)
    train, test = prepare_data(cfg.data, cfg.run.seed)
    shape = sample_shape(train)
    model = model_from_config(cfg.model, train, seed=cfg.run.seed, shape=shape).to(device)
    _fits(model, cfg.model, train, "model", shape)
    _channels_last(cfg.run.channels_last, [model], shape, train, test)
    augment = make_augment(cfg.data, shape)
    return _fit(cfg, Supervised(model), train, test, progress, device=device, augment=augment).run(resume)


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


def _channels_last(enabled: bool, models, shape: tuple, *datasets) -> None:
    """NHWC layout for image models and their in-memory data (faster convolutions on CPU); a no-op
    for 1-D data (``shape``: the sample shape). Batches of a data set read per item are converted
    by the model's first layer."""
    if not enabled or len(shape) != 3:
        return
    for m in models:
        m.to(memory_format=torch.channels_last)
    for ds in datasets:
        if in_memory(ds):
            ds.x = ds.x.contiguous(memory_format=torch.channels_last)


def _check_tensorboard(run: RunConfig) -> None:
    if run.tensorboard:
        require_tensorboard()


def teacher_members(
    cfg: DistillConfig, train, method: type[DistillMethod], shape: tuple | None = None
) -> list[nn.Module]:
    """The teacher's networks on the CPU: one (trained from a checkpoint or a weights file,
    untrained from its seed), an ensemble's members, or, for a method that learns from the
    teacher's trajectory, all its checkpoints."""
    t = cfg.teacher
    if t.kind == "untrained":
        return [model_from_config(t.model, train, seed=t.seed, what="teacher.model", shape=shape)]
    if t.model.weights is not None:
        return [model_from_config(t.model, train, what="teacher.model", shape=shape)]
    paths = t.checkpoints if t.kind == "ensemble" or method.uses_teacher_checkpoints else t.checkpoints[:1]
    return [model_from_run(p, t.model, train) for p in paths]


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
    device = select_device(cfg.run.device, cfg.run.precision)
    _check_tensorboard(cfg.run)
    train, test = prepare_data(cfg.data, cfg.run.seed)
    shape = sample_shape(train)
    method_cls = method_class(cfg.method.name)

    members = [m.to(device) for m in teacher_members(cfg, train, method_cls, shape)]
    student = model_from_config(cfg.student, train, seed=cfg.run.seed, what="student", shape=shape).to(device)
    _fits(members[0], cfg.teacher.model, train, "teacher", shape)
    _fits(student, cfg.student, train, "student", shape)
    untrained = members[0] if cfg.teacher.kind == "untrained" else None
    trajectory = None
    if method_cls.uses_teacher_checkpoints:
        # The teacher is one model that takes each checkpoint's weights in turn (Distiller.on_epoch).
        trajectory = members
        members = [
            model_from_config(cfg.teacher.model, train, weights=False, what="teacher.model", shape=shape).to(
                device
            )
        ]
    if cfg.init_lambda is not None:  # towards the final teacher (the last checkpoint of a trajectory)
        interpolate_student(trajectory[-1] if trajectory else members[0], student, cfg.init_lambda)
    _channels_last(cfg.run.channels_last, [student, *members, *(trajectory or [])], shape, train, test)

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
    return _fit(
        cfg,
        distiller,
        train,
        test,
        progress,
        device=device,
        augment=augment,
        evaluate_extra=tracker,
        untrained_teacher=untrained,
    )


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
    """Distil ``cfg.student`` from ``cfg.teacher`` with ``cfg.method`` (what ``infodistill
    distill`` runs): the run built by :func:`build_distillation` (``pair_resolver``: see there),
    then run."""
    return build_distillation(cfg, progress, pair_resolver).run(resume)
