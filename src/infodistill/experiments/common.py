"""Pieces shared by the experiment drivers: run bookkeeping, preset settings (``--set``), paired
verdicts and report formatting."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict
from math import sqrt
from pathlib import Path
from statistics import mean, stdev, variance

from tqdm.auto import tqdm

from ..atomic import atomic_write
from ..data import load_dataset
from ..training.rundir import RunDir
from ..training.runs import check_model_fits, model_from_config


def logged_last_epoch(log: list[dict], epochs: int) -> bool:
    """Whether a run's log records its last epoch ``epochs``."""
    return any(r.get("epoch") == epochs for r in log)


def finished(run_dir: Path, epochs: int) -> bool:
    """Whether the run in ``run_dir`` has logged its last epoch (then it is skipped on a rerun)."""
    return logged_last_epoch(RunDir(run_dir).read_log(), epochs)


def run_unfinished(configs: list, run, desc: str, progress: bool) -> None:
    """``run(cfg, progress=False, resume=True)`` for every config whose run directory
    (``cfg.run.out_dir``) has not logged its last epoch (``cfg.optim.epochs``), with a progress bar."""
    for cfg in tqdm(configs, desc=desc, disable=not progress):
        if not finished(Path(cfg.run.out_dir), cfg.optim.epochs):
            run(cfg, progress=False, resume=True)


def model_for_data(model: dict, sample_shape: tuple) -> dict:
    """A preset's model for examples of ``sample_shape``: on 1-D signals (C, L) ``cnn-small``
    becomes ``cnn1d`` of the same width (its pool size, chosen for 28x28 images, is dropped);
    other models are kept, and :func:`check_models_fit` refuses those that do not fit."""
    if len(sample_shape) != 2 or model.get("name") != "cnn-small":
        return model
    kwargs = {k: v for k, v in model.get("kwargs", {}).items() if k in ("width", "convs_per_stage")}
    return {"name": "cnn1d", "kwargs": kwargs} if kwargs else {"name": "cnn1d"}


def load_full_data(name: str, root, kwargs: dict | None = None):
    """The data set's (train, test) before any subset: shapes and sizes for the checks and reports;
    ``kwargs`` are the loader's options (``data.kwargs``)."""
    return load_dataset(name, root, **(kwargs or {}))


def check_models_fit(models: dict, train, preset_name: str) -> None:
    """Every model of the experiment, built and run on two real examples before anything trains."""
    fix = (
        f"the {preset_name!r} preset's models do not run on these data: use --preset quick, whose "
        "small CNNs fit any image size and become cnn1d on 1-D signals"
    )
    for what, cfg in models.items():
        check_model_fits(model_from_config(cfg, train), cfg.name, train, what, fix)


def subset_size(request: int | None, available: int) -> int:
    """How many examples a ``train_subset``/``test_subset`` request leaves (``prepare_data``'s rule)."""
    return available if request is None else min(request, available)


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"m ± s"`` over seeds (sample std; 0 for one seed), ``—`` for no values."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    m = mean(values) * scale
    s = stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


#: a claim holds when the mean paired difference lies beyond this many standard errors
SE_RULE = 2.0


def verdict(d: list[float], direction: int) -> bool | None:
    """Whether mean(d) lies beyond SE_RULE standard errors (sd of d / sqrt(n)) in ``direction``
    (+1: above 0, -1: below 0); None with fewer than 2 seeds (no standard error)."""
    if len(d) < 2:
        return None
    se = sqrt(variance(d) / len(d))
    return direction * mean(d) > SE_RULE * se


def diff_text(d: list[float], scale: float = 100.0, unit: str = "pt") -> str:
    """'paired difference +x unit, standard error y unit, n seeds' for the differences ``d``."""
    if not d:
        return "no seed finished both runs"
    se = sqrt(variance(d) / len(d)) if len(d) > 1 else float("nan")
    digits = 2 if unit == "pt" else 3
    return (
        f"paired difference {scale * mean(d):+.{digits}f} {unit}, standard error "
        f"{scale * se:.{digits}f} {unit}, {len(d)} seeds"
    )


def paired(a: dict, b: dict) -> list[float]:
    """a[seed] - b[seed] for every seed in both ({seed: value} dicts): same seed, same initialisation
    and data order, so the difference removes most of the seed-to-seed spread."""
    return [a[s] - b[s] for s in a if s in b]


def save_figure(fig, out: Path, name: str) -> str:
    """Lay the figure out, write it to ``out / name`` (PNG, 120 dpi) and close it; returns ``name``
    for the report's list of plots."""
    import matplotlib.pyplot as plt  # only a report that draws loads matplotlib (see _plots)

    fig.tight_layout()
    # "tight" keeps a legend placed outside the axes inside the image
    fig.savefig(out / name, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return name


def write_report(out: Path, lines: list[str], plots: list[str], preset, summary: dict) -> Path:
    """Finish a report: the plots and the preset's settings after ``lines``; ``report.md`` and
    ``summary.json`` written atomically. Returns the report's path."""
    lines = lines + ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Settings", "", "```json", json.dumps(asdict(preset), indent=2), "```", ""]
    report = out / "report.md"
    atomic_write(report, "\n".join(lines))
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    return report


def _coerce_setting(value, tp, key: str):
    """``value`` (as YAML read it) checked against the preset field's type hint ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is not type(None):
                try:
                    return _coerce_setting(value, arg, key)
                except ValueError as exc:
                    errors.append(str(exc))
        raise ValueError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list like [a, b], got {value!r}")
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise ValueError(f"{key}: expected {len(items)} items, got {value!r}")
        return tuple(
            _coerce_setting(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, items, strict=True))
        )
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping like {{a: 1}}, got {value!r}")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and tp is not bool or not isinstance(value, tp):
        raise ValueError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
    return value


#: ``--set methods.vid.lam=1`` is read as ``method_params.vid.lam`` (``methods`` alone is the list)
SETTING_ALIASES = {"methods": "method_params"}


def apply_settings(preset, settings, check_method=None):
    """A copy of the preset dataclass with ``settings`` applied: ``(key, value)`` pairs in order (or
    a mapping). ``key`` is a field, or a dotted path into a dict field (``method_params.vid.lam``,
    ``student_model.kwargs.width``); ``methods.X.Y`` is read as ``method_params.X.Y``. The value
    must fit the field's type (an int for a float field is taken). ``check_method(method, param,
    key)``, if given, vets keys under ``method_params``. Bad keys or types raise ValueError starting
    with the key (``infodistill reproduce --set KEY=YAML`` parses its values and prefixes "--set").

    A ``data`` that names another data set than the preset's starts its ``data_kwargs`` afresh (a
    loader's options belong to its data set: ``quick``'s Fashion-MNIST patterns mean nothing to the
    digits); ``data_kwargs`` settings after it give the new set's own."""
    hints = typing.get_type_hints(type(preset))
    names = [f.name for f in dataclasses.fields(preset)]
    changes: dict = {}
    for key, value in settings.items() if isinstance(settings, dict) else settings:
        parts = key.split(".")
        if len(parts) > 1 and parts[0] in SETTING_ALIASES:
            parts[0] = SETTING_ALIASES[parts[0]]
        top = parts[0]
        if top not in names:
            raise ValueError(f"{key}: unknown setting {top!r}; valid settings: {', '.join(names)}")
        if len(parts) == 1:
            changes[top] = _coerce_setting(value, hints[top], top)
            if top == "data" and "data_kwargs" in names and changes[top] != preset.data:
                changes["data_kwargs"] = {}
            continue
        current = changes.get(top, getattr(preset, top))
        if not isinstance(current, dict):
            raise ValueError(f"{key}: {top!r} is not a mapping, set it whole ({top}=...)")
        new = json.loads(json.dumps(current))  # a deep copy: the preset's defaults stay untouched
        node = new
        for p in parts[1:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: {p!r} is not a mapping")
        if top == "method_params" and check_method is not None:
            if len(parts) != 3:
                raise ValueError(f"{key}: use method_params.METHOD.PARAM=value")
            check_method(parts[1], parts[2], key)
        node[parts[-1]] = value
        changes[top] = new
    return dataclasses.replace(preset, **changes)
