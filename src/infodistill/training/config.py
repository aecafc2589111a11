"""Typed run configurations: YAML or TOML files plus ``key.sub=value`` overrides.

Unknown keys, wrong types and out-of-range values are errors that name the key (``ConfigError``,
one line). YAML is read with ``safe_load`` only, so a file with Python tags is refused.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import InfodistillError


class ConfigError(InfodistillError, ValueError):
    """A configuration that cannot be used; the message names the key."""


@dataclass
class DataConfig:
    #: a built-in data set (default fashion-mnist), or None with ``factory``
    name: str | None = None
    root: str | None = None
    #: your own data: "pkg.module:fn" or "path/to/file.py:fn" returning (train, test), called with
    #: ``kwargs`` (data/factory.py); a torch Dataset is streamed (read per item). With a built-in
    #: name, ``kwargs`` are its loader's options (image-folder: size, test_size)
    factory: str | None = None
    kwargs: dict = field(default_factory=dict)
    #: train on the first n examples of a seeded permutation of the training set (None: all)
    train_subset: int | None = None
    #: seed of that permutation (None: the run's seed); fix it so that several runs (an ensemble's
    #: members and their students) see the same subset
    subset_seed: int | None = None
    #: evaluate on the first n test examples (None: all) — for quick presets
    test_subset: int | None = None
    batch_size: int = 128
    #: examples per batch of evaluation, the teacher-output cache and the PID tracker (None:
    #: automatic, as many as fit 16 MiB of input, at most 1000, at least batch_size;
    #: data/loader.py auto_eval_batch)
    eval_batch_size: int | None = None
    #: inputs as loaded ("none") or mapped x -> 2x - 1 ("symmetric": images in [0, 1] to [-1, 1],
    #: the [PID-KD] reference code's Normalize(0.5, 0.5)); for data sets held in memory
    scale_inputs: str = "none"
    #: distillation/training data: "none" or "crop-flip" (random crop with padding + h-flip)
    augment: str = "none"
    #: mixup of the distillation batch (0: off); teacher and student see the same mixed input
    mixup_alpha: float = 0.0
    #: DataLoader worker processes (None: 0 for a set held in memory; for a set read per item such
    #: as an image folder every core but two, at most 4; data/loader.py)
    workers: int | None = None

    def __post_init__(self):
        if self.name is None and self.factory is None:
            self.name = "fashion-mnist"

    def check(self, key: str) -> None:
        _name_or_factory(self, key, "root")
        _positive(self.batch_size, f"{key}.batch_size")
        if self.eval_batch_size is not None:
            _positive(self.eval_batch_size, f"{key}.eval_batch_size")
        _choice(self.augment, ("none", "crop-flip"), f"{key}.augment")
        _choice(self.scale_inputs, ("none", "symmetric"), f"{key}.scale_inputs")
        if self.mixup_alpha < 0:
            raise ConfigError(f"{key}.mixup_alpha must be >= 0, got {self.mixup_alpha}")
        if self.subset_seed is not None:
            _seed(self.subset_seed, f"{key}.subset_seed")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0
        ):
            raise ConfigError(
                f"{key}.workers must be an integer >= 0 (or null: automatic), got {self.workers!r}"
            )
        if self.train_subset is not None:
            _positive(self.train_subset, f"{key}.train_subset")
        if self.test_subset is not None:
            _positive(self.test_subset, f"{key}.test_subset")


@dataclass
class ModelConfig:
    #: a built-in architecture (default cnn-small), or None with ``factory``
    name: str | None = None
    kwargs: dict = field(default_factory=dict)
    #: your own nn.Module: "pkg.module:fn" or "path/to/file.py:fn", called with ``kwargs``
    factory: str | None = None
    #: initial weights: a .safetensors file or a PyTorch state dict (torch.load, weights_only=True)
    weights: str | None = None
    #: strip this prefix from the file's keys (e.g. "module." of a DDP-saved model)
    weights_prefix: str | None = None
    #: the state dict sits under this key of the file's mapping (e.g. "state_dict"; "a.b" nests)
    weights_key: str | None = None

    def __post_init__(self):
        if self.name is None and self.factory is None:
            self.name = "cnn-small"

    @property
    def label(self) -> str:
        """How messages name the model: its name, or its factory."""
        return self.name if self.factory is None else self.factory

    def check(self, key: str) -> None:
        _name_or_factory(self, key)
        if self.weights is None and (self.weights_prefix is not None or self.weights_key is not None):
            option = "weights_prefix" if self.weights_prefix is not None else "weights_key"
            raise ConfigError(f"{key}.{option} is set but {key}.weights is not; name the weights file")
        if self.weights is not None and not self.weights.strip():
            raise ConfigError(f"{key}.weights must name a file, got {self.weights!r}")


@dataclass
class OptimConfig:
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    #: "cosine", "step" (multiply by gamma at each milestone epoch) or "constant"
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    epochs: int = 10
    #: clip the gradient norm at this value (None: no clipping): the student's, and each of the
    #: method's optimiser groups with it or on its own as the method declares (OptimGroup)
    grad_clip: float | None = None

    def check(self, key: str) -> None:
        _choice(self.optimizer, ("sgd", "adam", "adamw"), f"{key}.optimizer")
        _choice(self.schedule, ("cosine", "step", "constant"), f"{key}.schedule")
        _positive(self.lr, f"{key}.lr")
        _positive(self.epochs, f"{key}.epochs")
        _non_negative(self.momentum, f"{key}.momentum")
        _non_negative(self.weight_decay, f"{key}.weight_decay")
        _positive(self.gamma, f"{key}.gamma")  # a step schedule multiplies the lr by it
        if self.grad_clip is not None:
            _positive(self.grad_clip, f"{key}.grad_clip")
        if any(m < 1 or m > self.epochs for m in self.milestones):
            raise ConfigError(
                f"{key}.milestones must lie in 1..epochs ({self.epochs}), got {self.milestones}"
            )


@dataclass
class TeacherConfig:
    #: "trained" (from checkpoints), "untrained" (random init from seed), "noisy", "ensemble"
    kind: str = "trained"
    model: ModelConfig = field(default_factory=ModelConfig)
    checkpoints: list[str] = field(default_factory=list)
    seed: int = 0
    noise_sigma: float = 1.0
    noise_fraction: float = 1.0
    noise_mode: str = "add"

    def check(self, key: str) -> None:
        _choice(self.kind, ("trained", "untrained", "noisy", "ensemble"), f"{key}.kind")
        _choice(self.noise_mode, ("add", "replace"), f"{key}.noise_mode")
        weights = self.model.weights is not None
        if weights and self.checkpoints:
            raise ConfigError(
                f"{key}.checkpoints and {key}.model.weights both give the teacher's weights; keep one"
            )
        if weights and self.kind not in ("trained", "noisy"):
            raise ConfigError(
                f"{key}.model.weights is one set of weights, for a trained or noisy teacher, not an "
                f"{self.kind} one; use {key}.checkpoints"
                + (" (a list of run directories)" if self.kind == "ensemble" else " or drop the weights")
            )
        if self.kind in ("trained", "noisy", "ensemble") and not self.checkpoints and not weights:
            raise ConfigError(
                f"{key}.checkpoints: a {self.kind} teacher needs at least one checkpoint path"
                + (f" (or {key}.model.weights: a weights file)" if self.kind != "ensemble" else "")
            )
        if self.kind == "ensemble" and len(self.checkpoints) < 2:
            raise ConfigError(
                f"{key}.checkpoints: an ensemble needs >= 2 members, got {len(self.checkpoints)}"
            )
        if not 0 <= self.noise_fraction <= 1:
            raise ConfigError(f"{key}.noise_fraction must lie in [0, 1], got {self.noise_fraction}")
        _non_negative(self.noise_sigma, f"{key}.noise_sigma")
        _seed(self.seed, f"{key}.seed")


#: method.pairs: chosen from the layer map when the run is built
AUTO_PAIRS = "auto"


@dataclass
class MethodConfig:
    name: str = "kd"
    #: [student_layer, teacher_layer] pairs for feature methods, or "auto": the pairing the layer map
    #: suggests (infodistill.layer_map), measured on training examples when the run is built
    pairs: list[list[str]] | str = field(default_factory=list)
    params: dict = field(default_factory=dict)
    #: how "auto" pairs were chosen: filled in when the run is built (pairs then holds the chosen
    #: ones), so config.json records both; not set by hand
    auto_pairs: dict | None = None

    def check(self, key: str) -> None:
        if isinstance(self.pairs, str):
            if self.pairs != AUTO_PAIRS:
                raise ConfigError(
                    f"{key}.pairs must be a list of [student_layer, teacher_layer] pairs or "
                    f"{AUTO_PAIRS!r}, got {self.pairs!r}"
                )
            return
        _pairs(self.pairs, f"{key}.pairs")


@dataclass
class PIDConfig:
    #: [student_layer, teacher_layer] pairs whose PID is tracked (empty: none)
    pairs: list[list[str]] = field(default_factory=list)
    every: int = 1
    k: int = 10
    pca: int | None = 5
    #: examples of the test set used for the PID (None: all)
    n_samples: int | None = 2000
    n_boot: int = 0
    #: label permutations of the permutation baseline (0: none; the stop rule needs >= 2)
    n_perm: int = 0
    #: the stop rule: switch off a tracked pair's distillation term once the upper end of its
    #: (bias-centred) Uni(Y:T\S) interval reaches its permutation floor (infodistill.pid.floor)
    stop: bool = False

    def check(self, key: str) -> None:
        _pairs(self.pairs, f"{key}.pairs")
        _positive(self.every, f"{key}.every")
        if self.k < 2:
            # One cluster carries no information: every term would be a meaningless 0.
            raise ConfigError(f"{key}.k must be >= 2 clusters, got {self.k}")
        if self.pca is not None:
            _non_negative(self.pca, f"{key}.pca")
        if self.n_samples is not None and self.n_samples < self.k:
            raise ConfigError(
                f"{key}.n_samples must be >= {key}.k ({self.k}) to fit the clusters, got {self.n_samples}"
            )
        _non_negative(self.n_boot, f"{key}.n_boot")
        _non_negative(self.n_perm, f"{key}.n_perm")
        if self.stop:
            if not self.pairs:
                raise ConfigError(f"{key}.stop needs {key}.pairs: the pairs whose distillation may stop")
            if self.n_boot < 1:
                raise ConfigError(f"{key}.stop reads Uni(Y:T\\S)'s interval: set {key}.n_boot (e.g. 100)")
            if self.n_perm < 2:
                raise ConfigError(f"{key}.stop reads the permutation floor: set {key}.n_perm >= 2 (e.g. 20)")


@dataclass
class RunConfig:
    seed: int = 0
    out_dir: str = "runs/run"
    eval_every: int = 1
    channels_last: bool = False
    #: "auto" (CUDA when available), "cpu", "cuda" (cuda:LOCAL_RANK under torchrun) or "cuda:N"
    device: str = "auto"
    #: autocast of the training step: "none", "bf16" (CPU and CUDA) or "fp16" (CUDA, gradient scaler)
    amp: str = "none"
    #: the same as amp: bf16 (kept for configs written before run.amp)
    bf16: bool = False
    #: also write the log's scalars for TensorBoard into <out_dir>/tensorboard (pip install tensorboard)
    tensorboard: bool = False
    #: cache the teacher's outputs when the distillation data is fixed (no augmentation/mixup)
    cache_teacher: bool = True
    #: also keep the checkpoint of every n-th epoch (e.g. a teacher's trajectory for progressive
    #: distillation); None keeps only the latest
    keep_every: int | None = None
    threads: int | None = None

    def check(self, key: str) -> None:
        _positive(self.eval_every, f"{key}.eval_every")
        if self.keep_every is not None:
            _positive(self.keep_every, f"{key}.keep_every")
        _seed(self.seed, f"{key}.seed")
        if self.threads is not None:
            _positive(self.threads, f"{key}.threads")
        if not self.out_dir.strip():
            raise ConfigError(f"{key}.out_dir must name a directory, got {self.out_dir!r}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(
                f"{key}.device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got {self.device!r}"
            )
        _choice(self.amp, ("none", "bf16", "fp16"), f"{key}.amp")
        if self.bf16 and self.amp == "fp16":
            raise ConfigError(f"{key}.bf16=true and {key}.amp=fp16 contradict each other; keep {key}.amp")

    @property
    def precision(self) -> str:
        """The autocast the run uses: run.amp, or bf16 from the older run.bf16 switch."""
        return "bf16" if self.bf16 and self.amp == "none" else self.amp


@dataclass
class TeacherTrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class DistillConfig:
    data: DataConfig = field(default_factory=DataConfig)
    student: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pid: PIDConfig = field(default_factory=PIDConfig)
    run: RunConfig = field(default_factory=RunConfig)
    #: initialise the student as λ·teacher + (1−λ)·random init (same architecture); None: off
    init_lambda: float | None = None

    def check(self, key: str = "") -> None:
        if self.init_lambda is not None and not 0 <= self.init_lambda <= 1:
            raise ConfigError(f"init_lambda must lie in [0, 1], got {self.init_lambda}")
        if self.pid.stop:
            if self.method.pairs == AUTO_PAIRS:
                raise ConfigError(
                    "pid.stop switches off method pairs named in the config; with method.pairs: auto "
                    "they are chosen when the run is built: name them (the layer map suggests them: "
                    "infodistill audit --map)"
                )
            method_pairs = [list(p) for p in self.method.pairs]
            for pair in self.pid.pairs:
                if list(pair) not in method_pairs:
                    raise ConfigError(
                        f"pid.stop switches off method pairs, but pid.pairs holds {list(pair)}, which is "
                        f"not in method.pairs {method_pairs}; track only method pairs with pid.stop"
                    )


# ---------------------------------------------------------------------------------------------


#: what run.device may say (training/device.py resolves it on the machine)
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _name_or_factory(cfg, key, *name_only):
    """A built-in name or a factory, not both (``__post_init__`` fills the default name only when
    neither is given), and options that only the built-in name takes."""
    if cfg.name is not None and cfg.factory is not None:
        raise ConfigError(f"{key}.name and {key}.factory both say what to build; keep one")
    if cfg.factory is not None:
        for option in name_only:
            if getattr(cfg, option) is not None:
                raise ConfigError(
                    f"{key}.{option} is for the built-in data sets; pass it to {key}.factory in {key}.kwargs"
                )
        if not isinstance(cfg.factory, str) or ":" not in cfg.factory:
            raise ConfigError(
                f"{key}.factory must look like 'package.module:function' or 'path/to/file.py:function', "
                f"got {cfg.factory!r}"
            )


def _positive(value, key):
    if not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value}")


def _non_negative(value, key):
    if not value >= 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def _seed(value, key):
    # The PID estimator (scikit-learn's random_state) takes seeds in [0, 2**32).
    if not 0 <= value < 2**32:
        raise ConfigError(f"{key} must lie in [0, 2**32), got {value}")


def _pairs(pairs, key):
    for i, pair in enumerate(pairs):
        if len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise ConfigError(f"{key}[{i}] must be [student_layer, teacher_layer], got {pair}")


def _choice(value, options, key):
    if value not in options:
        raise ConfigError(f"{key} must be one of {', '.join(map(repr, options))}, got {value!r}")


_YAML11_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str):
    """Check ``value`` against the type hint ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            # No setting means anything at .nan or .inf; caught here, not after an epoch of NaNs.
            raise ConfigError(f"config key {key!r}: expected a finite number, got {value}")
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(
            f"config key {key!r}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}"
        )
    return value


def from_dict(cls, data: Any, key: str = ""):
    """Build the dataclass ``cls`` from nested dicts, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        where = f"config key {key!r}" if key else "the config file"
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in data:
        if k not in names:
            full = f"{key}.{k}" if key else k
            raise ConfigError(f"unknown config key {full!r}; valid keys here: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{key}.{k}" if key else k) for k, v in data.items()}
    obj = cls(**kwargs)
    for f in dataclasses.fields(cls):
        # A section left out takes its defaults, which must hold too (a distill config without a
        # teacher section means a trained teacher with no checkpoint).
        sub = getattr(obj, f.name)
        if f.name not in data and dataclasses.is_dataclass(sub) and hasattr(sub, "check"):
            sub.check(f"{key}.{f.name}" if key else f.name)
    if hasattr(obj, "check"):
        obj.check(key)
    return obj


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _set_path(d: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    d[parts[-1]] = value


#: Values a config file may expand to: real configs hold a few dozen, while nested YAML aliases
#: (the "billion laughs") or a self-referencing alias expand without bound when validated.
MAX_CONFIG_VALUES = 100_000


def _check_size(data, path) -> None:
    stack, seen = [data], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"config file {path} expands to more than {MAX_CONFIG_VALUES} values "
                "(nested or recursive YAML aliases?); write the values out"
            )
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _toml_module():
    """The standard library's TOML reader (Python >= 3.11) or its backport ``tomli`` on 3.10,
    which has the same API and error type (a ValueError)."""
    try:
        import tomllib  # Python >= 3.11; the backport below is optional
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # the backport, an optional package on 3.10
        except ModuleNotFoundError:
            raise ConfigError(
                "reading .toml configs on Python 3.10 needs the tomli package: pip install tomli "
                "(or use a .yaml config)"
            ) from None
    return tomllib


def load_config(cls, path: str | Path | None = None, overrides: list[str] = ()):
    """Read a YAML (.yaml/.yml) or TOML (.toml) file, apply ``key.sub=value`` overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"config file {path} is a directory; pass a .yaml, .yml or .toml file")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path} as UTF-8 text ({exc})") from None
        try:
            if path.suffix == ".toml":
                data = _toml_module().loads(text)
            elif path.suffix in (".yaml", ".yml"):
                data = yaml.safe_load(text) or {}
            else:
                raise ConfigError(f"config file {path}: use a .yaml, .yml or .toml file")
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"config file {path} is not valid safe YAML ({first})") from None
        except ValueError as exc:  # tomllib.TOMLDecodeError
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"config file {path} is not valid TOML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file {path} must hold a mapping of sections (data:, optim:, ...), "
                f"got {type(data).__name__}"
            )
        _check_size(data, path)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        k, v = item.split("=", 1)
        try:
            value = yaml.safe_load(v) if v.strip() else None
        except yaml.YAMLError:
            value = v
        _set_path(data, k.strip(), value)
    return from_dict(cls, data)
