"""Build and run ``train-teacher`` and ``distill`` from their configs.

Everything a run needs is checked when it is built (model and method names, layer names and
feature shapes by a dummy forward, checkpoints against the architecture), before the first step.
Models are built (by name or by a factory, with their weights) on the CPU and moved to the run's
device once (``training/device.py`` decides which); everything downstream follows them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import RandomCropPad, RandomHFlip, load_dataset, mixup
from ..data.factory import load_data_factory
from ..methods import Batch, build_method, ensemble_logits, noisy_features
from ..models import (
    FeatureExtractor,
    build_from_factory,
    build_model,
    collect_features,
    freeze_teacher,
    interpolate_student,
    load_weights,
    model_device,
    probe_shapes,
    validate_layers,
)
from . import distributed
from .checkpoint import crash_point, load_checkpoint, load_model_state
from .config import (
    ConfigError,
    DataConfig,
    DistillConfig,
    ModelConfig,
    RunConfig,
    TeacherTrainConfig,
    to_dict,
)
from .device import process_group_backend, select_device, to_host
from .rundir import make_run_dir, run_directory, writing
from .trainer import Fit, StepOutput, cross_entropy_step, epoch_generator, seed_everything

#: Teacher outputs are cached for the whole training set only below this size.
CACHE_LIMIT_BYTES = 2 * 1024**3


def prepare_data(cfg: DataConfig, seed: int):
    """(train, test) datasets; ``train_subset`` keeps a seeded random subset of the training set."""
    if cfg.factory is not None:
        train, test = load_data_factory(cfg.factory, cfg.kwargs)
    else:
        train, test = load_dataset(cfg.name, cfg.root)
    if cfg.train_subset is not None and cfg.train_subset < len(train):
        subset_seed = seed if cfg.subset_seed is None else cfg.subset_seed
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(subset_seed))
        train = train.subset(order[: cfg.train_subset].sort().values)
    if cfg.test_subset is not None and cfg.test_subset < len(test):
        test = test.subset(torch.arange(cfg.test_subset))
    return train, test


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
    shape = tuple(train.x.shape[1:])
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
            f"{tuple(data.x.shape[1:])} and giving {data.num_classes} logits (see {what}.kwargs)"
        )
    check_model_fits(model, cfg.label, data, f"{what} model" if what != "model" else what, fix)


@torch.no_grad()
def check_model_fits(model: nn.Module, name: str, data, what: str = "model", fix: str | None = None) -> None:
    """A forward pass on two real examples (eval mode, so no statistic moves): a model built for
    other data fails here, when the run is built, not at its first training step. Two, because
    torch reads a single (C, L) example as an unbatched image and would let a 2-D CNN through."""
    x = data.x[:2].to(model_device(model))
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
        model,
        train,
        test,
        progress,
        device=device,
        extra=None,
        step=cross_entropy_step(model),
        augment=make_augment(cfg.data, train.x.shape[1:]),
    )
    return fit.run(resume)


def _fit(cfg, student: nn.Module, train, test, progress: bool, *, step, **kw) -> Fit:
    """A ``Fit`` over the config's data, optimiser and run settings."""
    return Fit(
        student=student,
        train_x=train.x,
        train_y=train.y,
        test_x=test.x,
        test_y=test.y,
        data=cfg.data,
        optim=cfg.optim,
        run_cfg=cfg.run,
        step=step,
        config_dict=to_dict(cfg),
        config_defaults=to_dict(type(cfg)()),
        progress=progress,
        **kw,
    )


def _channels_last(enabled: bool, models, *datasets) -> None:
    """NHWC layout for image models and their data (faster convolutions on CPU); a no-op for 1-D data."""
    if not enabled or datasets[0].x.dim() != 4:
        return
    for m in models:
        m.to(memory_format=torch.channels_last)
    for ds in datasets:
        ds.x = ds.x.contiguous(memory_format=torch.channels_last)


def _check_tensorboard(run: RunConfig) -> None:
    if run.tensorboard:
        from .scalars import require_tensorboard

        require_tensorboard()


@dataclass
class Teacher:
    """The frozen teacher (one model, or an ensemble) as seen by the method: logits + features."""

    members: list[nn.Module]
    layers: list[str]
    noise: dict | None = None
    extractors: list[FeatureExtractor] = field(default_factory=list)

    def __post_init__(self):
        for m in self.members:
            freeze_teacher(m)
        # Features come from the first member (feature methods distil from one network).
        self.extractors = [FeatureExtractor(self.members[0], self.layers, detach=True)] if self.layers else []

    @torch.no_grad()
    def __call__(self, x, generator: torch.Generator | None = None):
        if self.extractors:
            z0, feats = self.extractors[0](x)
            feats = dict(feats)
        else:
            z0, feats = self.members[0](x), {}
        logits = z0 if len(self.members) == 1 else ensemble_logits([z0] + [m(x) for m in self.members[1:]])
        if self.noise is not None and feats:
            feats = noisy_features(feats, generator=generator, **self.noise)
        return logits.float(), feats


def _teacher_members(cfg: DistillConfig, train) -> list[nn.Module]:
    """The teacher's networks on the CPU: one (trained from a checkpoint or a weights file,
    untrained from its seed), an ensemble's members, or a progressive run's checkpoints."""
    t = cfg.teacher
    if t.kind == "untrained":
        return [_model(t.model, train, seed=t.seed, what="teacher.model")]
    if t.model.weights is not None:
        return [_model(t.model, train, what="teacher.model")]
    paths = t.checkpoints if t.kind == "ensemble" else t.checkpoints[:1]
    if cfg.method.name == "progressive":
        paths = t.checkpoints
    return [load_trained(p, t.model, train) for p in paths]


def build_distillation(cfg: DistillConfig, progress: bool = True) -> Fit:
    """Everything of a distillation run, validated, as a ready-to-run ``Fit``.

    Under torchrun every rank builds the same run (its own teacher-output cache of the whole
    training set included: the chunks a rank trains on change every epoch)."""
    seed_everything(cfg.run.seed, cfg.run.threads)
    device = start_device(cfg.run)
    _check_tensorboard(cfg.run)
    out = Path(cfg.run.out_dir)
    train, test = prepare_data(cfg.data, cfg.run.seed)
    sample_shape = tuple(train.x.shape[1:])
    members = [m.to(device) for m in _teacher_members(cfg, train)]
    student = _model(cfg.student, train, seed=cfg.run.seed, what="student").to(device)
    _fits(members[0], cfg.teacher.model, train, "teacher")
    _fits(student, cfg.student, train, "student")
    if cfg.teacher.kind == "untrained" and distributed.is_main():
        from safetensors.torch import save_file

        make_run_dir(out)
        # Saved so the nuisance teacher of a run can be inspected; it is rebuilt from its seed.
        weights = {k: to_host(v).contiguous() for k, v in members[0].state_dict().items()}
        tmp = out / ".teacher-untrained.safetensors.tmp"
        with writing(f"the untrained teacher in {out}", "free space or choose another --out"):
            save_file(weights, str(tmp))
            tmp.replace(out / "teacher-untrained.safetensors")
    progressive = cfg.method.name == "progressive"
    checkpoints = members if progressive else None
    if progressive:
        members = [_model(cfg.teacher.model, train, weights=False, what="teacher.model").to(device)]
    if cfg.init_lambda is not None:  # towards the final teacher (the last checkpoint if progressive)
        interpolate_student(checkpoints[-1] if progressive else members[0], student, cfg.init_lambda)
    _channels_last(cfg.run.channels_last, [student, *members, *(checkpoints or [])], train, test)

    pairs = [tuple(p) for p in cfg.method.pairs]
    s_layers, t_layers = [p[0] for p in pairs], [p[1] for p in pairs]
    params = dict(cfg.method.params)
    if progressive:
        params.setdefault("num_checkpoints", len(checkpoints))
    method = build_method(
        cfg.method.name,
        num_classes=train.num_classes,
        pairs=pairs,
        student_shapes=probe_shapes(student, s_layers, sample_shape) if pairs else {},
        teacher_shapes=probe_shapes(members[0], t_layers, sample_shape) if pairs else {},
        **params,
    ).to(device)
    noise = None
    if cfg.teacher.kind == "noisy":
        noise = {
            "sigma": cfg.teacher.noise_sigma,
            "fraction": cfg.teacher.noise_fraction,
            "mode": cfg.teacher.noise_mode,
        }
    teacher = Teacher(members, method.teacher_layers, noise)
    s_fx = FeatureExtractor(student, method.student_layers) if method.student_layers else None

    def student_forward(x):
        return s_fx(x) if s_fx is not None else (student(x), {})

    augment = make_augment(cfg.data, sample_shape)

    cache = None
    if cfg.run.cache_teacher and augment is None and not progressive and noise is None:
        cache = _cache_teacher(teacher, train.x, cfg.data.eval_batch_size, device)

    state = {"student_frozen": False}

    def on_epoch(epoch: int) -> None:
        method.set_phase(epoch, cfg.optim.epochs)
        state["student_frozen"] = not method.trainable_student()
        if progressive:
            k = method.active_teacher(epoch, cfg.optim.epochs)
            members[0].load_state_dict(checkpoints[k].state_dict())

    def step(x, y, epoch, idx):
        if cache is not None:
            idx = idx.to(device)
            zt, tf = cache["logits"][idx], {k: v[idx] for k, v in cache["feats"].items()}
        else:
            # Drawn on the run's device: a CPU generator would copy every draw to the GPU.
            gen = epoch_generator(cfg.run.seed, epoch, stream=1, device=device)
            zt, tf = teacher(x, generator=gen)
        if state["student_frozen"]:
            # A phase that trains only the method's own modules: the student is a fixed feature
            # map (eval mode, so its BatchNorm statistics do not move either).
            student.eval()
            with torch.no_grad():
                zs, sf = student_forward(x)
            student.train()
        else:
            zs, sf = student_forward(x)
        losses = method(Batch(y, zs, zt, dict(sf), tf))
        return StepOutput(losses, zs, zt)

    def frozen(epoch: int) -> set:
        return set(student.parameters()) if state["student_frozen"] else set()

    pid_eval = (
        _pid_tracker(cfg, student, members[0], test, noise, teacher_fixed=not progressive)
        if cfg.pid.pairs
        else None
    )
    return _fit(
        cfg,
        student,
        train,
        test,
        progress,
        device=device,
        extra=method,
        step=step,
        teacher_logits=lambda x: teacher(x)[0],
        teacher_fixed=not progressive,
        frozen=frozen,
        on_epoch=on_epoch,
        augment=augment,
        evaluate_extra=pid_eval,
    )


def distill(cfg: DistillConfig, progress: bool = True, resume: bool = True) -> dict:
    start_device(cfg.run)  # the process group first: the lock below is rank 0's alone
    # Locked before the build: it writes the untrained teacher into the directory.
    with run_directory(cfg.run.out_dir):
        return build_distillation(cfg, progress).run(resume)


@torch.no_grad()
def _cache_teacher(teacher: Teacher, x: torch.Tensor, batch: int, device: torch.device) -> dict | None:
    """The teacher's logits and features for the whole training set, kept on ``device``."""
    logits, feats = [], {}
    for start in range(0, x.shape[0], batch):
        z, f = teacher(x[start : start + batch].to(device))
        logits.append(z)
        for k, v in f.items():
            feats.setdefault(k, []).append(v)
            if sum(t.numel() for t in feats[k]) * 4 * x.shape[0] / (start + batch) > CACHE_LIMIT_BYTES:
                return None  # too large to keep: the teacher runs online instead
    return {"logits": torch.cat(logits), "feats": {k: torch.cat(v) for k, v in feats.items()}}


def _pid_tracker(
    cfg: DistillConfig, student: nn.Module, teacher: nn.Module, test, noise: dict | None, teacher_fixed=True
):
    """Per-epoch PID of (Y, teacher layer, student layer) on held-out test examples [PID-KD].

    For a noisy teacher the teacher features get the same kind of noise the method sees (drawn
    from a fixed generator, so every epoch measures the same teacher representation)."""
    from ..pid import discretize, estimate

    # Layer names are checked now, when the run is built, not after the first epoch.
    validate_layers(student, list(dict.fromkeys(s for s, _ in cfg.pid.pairs)))
    validate_layers(teacher, list(dict.fromkeys(t for _, t in cfg.pid.pairs)))
    n = len(test) if cfg.pid.n_samples is None else min(cfg.pid.n_samples, len(test))
    if n < cfg.pid.k:
        raise ValueError(f"pid.k = {cfg.pid.k} clusters need at least that many test examples, got {n}")
    x, y = test.x[:n], test.y[:n]
    settings = {"k": cfg.pid.k, "pca": cfg.pid.pca, "seed": cfg.run.seed}
    # A fixed teacher's features, PCA and k-means are the same at every epoch: done once (the
    # teacher's PCA is most of an estimate's time), giving the same numbers as redoing them.
    teacher_symbols = {}

    @torch.no_grad()
    def evaluate(epoch: int) -> dict:
        if (epoch + 1) % cfg.pid.every and epoch + 1 != cfg.optim.epochs:
            return {}
        out = {}
        bs = cfg.data.eval_batch_size
        for s_layer, t_layer in cfg.pid.pairs:
            crash_point("pid")
            s_feat = collect_features(student, [s_layer], x, bs)[1][s_layer]
            t_sym = teacher_symbols.get(t_layer)
            if t_sym is None:
                t_feat = collect_features(teacher, [t_layer], x, bs)[1][t_layer]
                if noise is not None:
                    # Noise drawn batch by batch from a fixed generator, as the method sees it.
                    gen = torch.Generator().manual_seed(cfg.run.seed)
                    t_feat = torch.cat([noisy_features(t, generator=gen, **noise) for t in t_feat.split(bs)])
                t_sym = discretize(t_feat.numpy(), **settings)
                if teacher_fixed:
                    teacher_symbols[t_layer] = t_sym
            # n_perm=0: the tracker records the terms and their intervals, not the permutation baseline
            res = estimate(y.numpy(), t_sym, s_feat.numpy(), n_boot=cfg.pid.n_boot, n_perm=0, **settings)
            out[f"{s_layer}|{t_layer}"] = res.pid.as_dict() | (
                {"ci": {k: list(v) for k, v in res.ci.items()}} if res.ci else {}
            )
        return {"pid": out}

    return evaluate


def run_summary(out_dir: str) -> dict:
    """Last and best epoch of a run directory's log."""
    from .trainer import read_log

    log = read_log(Path(out_dir) / "log.jsonl")
    last = log[-1]
    return {
        "last": last,
        "best": last.get("best"),
        "config": json.loads((Path(out_dir) / "config.json").read_text()),
    }
