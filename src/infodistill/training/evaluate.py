"""Evaluate a run directory's latest checkpoint: what ``infodistill evaluate`` prints."""

from __future__ import annotations

from pathlib import Path

from ..data.loader import auto_eval_batch, first_examples
from ..methods import method_class
from ..models import collect_features
from ..pid import estimate
from .config import ConfigError, DistillConfig, TeacherTrainConfig, from_dict
from .device import select_device
from .distiller import Teacher
from .rundir import RunDir
from .runs import model_from_run, prepare_data, teacher_members
from .trainer import evaluate_dataset


def evaluate_run(
    run_dir: str | Path,
    pid_pairs: list[str] | None = None,
    device: str | None = None,
    *,
    device_name: str = "device",
) -> dict:
    """``{"test": {...}}`` (accuracy, NLL, ECE, and against the teacher agreement and KL) of the
    latest checkpoint in ``run_dir`` on its test set, plus ``"pid"`` per ``student:teacher`` layer
    pair (``pid_pairs``, default the config's ``pid.pairs``) for a distillation run with a teacher.

    ``device``: where the models run (``auto``, ``cpu``, ``cuda``, ``cuda:N``; default the run's
    ``run.device``), named ``device_name`` in errors (``infodistill evaluate`` passes its flag)."""
    run = RunDir(run_dir)
    if not run.has_config():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    raw = run.read_config()
    is_distill = "student" in raw
    cfg = from_dict(DistillConfig if is_distill else TeacherTrainConfig, raw)
    if device is not None:
        where = select_device(device, key=device_name)
    else:
        try:
            where = select_device(cfg.run.device)
        except ConfigError as exc:  # trained on a GPU, evaluated where there is none
            what = str(exc).split("; ")[0]
            cpu = f"{device_name} cpu" if device_name.startswith("-") else f"{device_name}='cpu'"
            raise ConfigError(
                f"{what} (the run's config.json); evaluate it with {cpu} or auto"
            ) from None
    train, test = prepare_data(cfg.data, cfg.run.seed)
    what = "student" if is_distill else "model"
    model = model_from_run(
        run_dir, cfg.student if is_distill else cfg.model, train, what=what, label="student"
    )
    model.to(where)
    teacher = None
    method = method_class(cfg.method.name) if is_distill else None
    # A teacher that changed during the run (a checkpoint trajectory) has no one set of logits.
    if is_distill and not method.uses_teacher_checkpoints:
        teacher = Teacher([m.to(where) for m in teacher_members(cfg, train, method)])
    t_logits = None if teacher is None else (lambda x: teacher(x)[0])
    bs = auto_eval_batch(train, cfg.data.batch_size, cfg.data.eval_batch_size)
    result = {"test": evaluate_dataset(model, test, bs, t_logits)}
    pairs = [p.split(":") for p in pid_pairs] if pid_pairs else (cfg.pid.pairs if is_distill else [])
    if pairs and teacher is not None:
        result["pid"] = {}
        n = min(cfg.pid.n_samples or len(test), len(test))
        x, y = first_examples(test, n, bs, cfg.data.workers)
        for s_layer, t_layer in pairs:
            s_feat = collect_features(model, [s_layer], x, bs)[1][s_layer].numpy()
            t_feat = collect_features(teacher.members[0], [t_layer], x, bs)[1][t_layer].numpy()
            res = estimate(y.numpy(), t_feat, s_feat, k=cfg.pid.k, pca=cfg.pid.pca, seed=cfg.run.seed)
            result["pid"][f"{s_layer}|{t_layer}"] = res.pid.as_dict()
    return result
