"""E1 [PID-KD]: the presets, the method variants, run names and the configs of the runs.

What the report (:mod:`.report`) needs from the experiment lives here, so that it does not
import :mod:`.rid` (which runs the experiment and then writes the report).
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...methods import method_hparams
from ...models import parse_model_spec
from ...models.registry import FAMILIES
from ...training.config import DistillConfig, TeacherTrainConfig, from_dict
from ..common import model_for_data, subset_size

TEACHER_KINDS = ("trained", "untrained", "noisy")
METHODS = ("baseline", "kd", "vid", "vid-repdistiller", "rid", "rid-nofreeze", "rid-logvar", "ted")
#: methods without a feature pair (KD is a reference row: does the teacher's knowledge help at all?)
LOGIT_METHODS = ("baseline", "kd")

#: RID with one switch each (see ``infodistill.methods.RID``), run as methods of their own by the
#: ``rid-ablation`` preset to find out what makes RID fall below the baseline. The measured cause is
#: the frozen student of the filter phases; ``rid-nofreeze`` (this project's variant, run by every
#: preset next to the published RID) trains the student with cross-entropy in those epochs too.
RID_VARIANTS = {
    "rid-nofreeze": {"student_in_phase1": True},
    "rid-lam1": {"lam": 1.0},
    "rid-fixvar": {"learn_variance": False},
    "rid-gate-chance": {"gate": "chance"},
    "rid-gate-student": {"gate": "student"},
    # the Gaussian likelihood's log sigma^2 in place of the reference code's (sigma^2)^2
    "rid-logvar": {"variance_term": "log"},
}
#: VID as RepDistiller runs it (a milder method than [PID-KD]'s): lam = 1, the slim
#: conv-ReLU-conv regressor, sigma^2 = 5 exactly, on the last layer pair only.
VID_VARIANTS = {
    "vid-repdistiller": {"lam": 1.0, "regressor": "conv-relu-conv", "alpha_init": None, "eps": 1e-5},
}
#: variants distilled on the last pair only (the others use every pair of the preset)
LAST_PAIR_ONLY = ("vid-repdistiller",)
#: the runs the report's premises and claims read (``report.check_premises``, ``check_claims``), per
#: teacher: I(Y;T), Red and the accuracy of the baseline, KD for the premise that the trained teacher
#: is worth distilling, VID and RID for every claim, TED for "RID ends with the lowest Uni(Y:T\\S)".
#: A preset with ``runs="claims"`` runs only these (the noisy teacher enters no claim).
CLAIM_RUNS = {
    "trained": ("baseline", "kd", "vid", "rid", "ted"),
    "untrained": ("baseline", "vid", "rid"),
}
RUN_SETS = ("all", "claims")


#: the paper's three stage pairs (outputs of the three residual groups) per model family, read from
#: the model table
STAGES = {family: f.stages for family, f in FAMILIES.items() if f.stages}


def stage_pairs(student: str, teacher: str) -> tuple[tuple[str, str], ...]:
    """The K = 3 (student stage, teacher stage) pairs of [PID-KD] for two model names (the stages
    of each family are in the model table, ``infodistill.models.registry.FAMILIES``)."""

    def stages(name):
        family = parse_model_spec(name)[0]
        if family not in STAGES:
            raise ValueError(f"no stage names known for model {name!r} (known families: {sorted(STAGES)})")
        return STAGES[family]

    return tuple(zip(stages(student), stages(teacher), strict=True))


def paper_method_params() -> dict:
    """[PID-KD]'s method settings (its kd-rid code, CIFAR-10 main run; docs/e1.md)."""
    return {
        "kd": {"tau": 4.0, "alpha": 0.1},
        "vid": {"lam": 100.0, "regressor": "kd-rid", "alpha_init": 5.0, "eps": 1e-3},
        "rid": {"lam": 10.0, "rounds": 10, "phase1_fraction": 0.25},
        "ted": {"lam": 10.0},
    }


@dataclass
class RIDPreset:
    """Everything an E1 run depends on (recorded in the report)."""

    name: str
    data: str = "fashion-mnist"
    data_root: str | None = None
    #: options of the data set's loader (``data.kwargs``), e.g. MNIST-1D's generator:
    #: ``{corr_noise_scale: 1.0}`` adds task-irrelevant structure to every signal
    data_kwargs: dict = field(default_factory=dict)
    teacher_model: dict = field(default_factory=lambda: {"name": "cnn-small", "kwargs": {"width": 32}})
    teacher_train_subset: int | None = 20000
    teacher_epochs: int = 2
    #: the teacher trains for at least this many optimiser steps (its epochs are raised to reach
    #: them): a preset handed a smaller data set with --data (digits: 23 steps an epoch) still
    #: trains a teacher worth distilling instead of stopping after 2 epochs (46 steps). 300 leaves
    #: the tuned presets as they were (Fashion-MNIST 2 x 313 steps, MNIST-1D 10 x 63)
    teacher_min_steps: int = 300
    student_model: dict = field(default_factory=lambda: {"name": "cnn-small", "kwargs": {"width": 8}})
    #: the student learns from few labelled examples, where a teacher's knowledge matters (measured
    #: on plain Fashion-MNIST with 3 seeds: KD from this teacher adds 4.1 points over the baseline)
    student_train_subset: int | None = 500
    student_epochs: int = 12
    test_subset: int | None = 2000
    batch_size: int = 64
    lr: float = 0.05
    nesterov: bool = True
    #: the gradient-norm clip of the distillation methods, per optimiser group as the reference code
    #: clips (RID: student + f_s + sigma^2 | f_t + heads; VID: one norm); the baseline and KD run
    #: unclipped, as the reference's baseline
    grad_clip: float | None = 100.0
    #: inputs in [-1, 1] ("symmetric", the reference code's Normalize(0.5, 0.5)) or as loaded
    #: ("none"); 1-D signals (MNIST-1D, already standardised) are always left as loaded
    scale_inputs: str = "symmetric"
    #: (student layer, teacher layer) pairs distilled by VID/RID/TED and measured by the PID; None:
    #: the three stages of the two models (:func:`stage_pairs`). The claims use the last pair.
    pairs: tuple[tuple[str, str], ...] | None = None
    #: distil the pairs the layer map suggests (``method.pairs: auto``, chosen per run on training
    #: examples, recorded in its config.json) instead of ``pairs``; the PID still measures ``pairs``
    auto_pairs: bool = False
    #: the stop rule (``pid.stop``): a feature method's pair is switched off once the upper end of
    #: its Uni(Y:T\S) interval reaches its permutation floor; for the runs that distil every measured
    #: pair (VID, RID, TED with the preset's pairs), with ``pid_perm`` label permutations
    pid_stop: bool = False
    pid_perm: int = 20
    methods: tuple[str, ...] = METHODS
    teachers: tuple[str, ...] = TEACHER_KINDS
    #: "all": every teacher x method; "claims": of those, only the runs the premises and claims
    #: read (:data:`CLAIM_RUNS`: 8 a seed instead of 16; the variants, KD and TED from the
    #: untrained teacher are left to the other presets or ``--set runs=all``)
    runs: str = "all"
    seeds: tuple[int, ...] = (0, 1, 2)
    noise: dict = field(
        default_factory=lambda: {"noise_sigma": 2.0, "noise_fraction": 1.0, "noise_mode": "add"}
    )
    method_params: dict = field(default_factory=paper_method_params)
    #: the RID variant of this project, reported next to the published RID (None: not run)
    variant: str | None = "rid-nofreeze"
    pid_k: int = 5
    pid_pca: int = 5
    pid_samples: int = 1000
    #: bootstrap resamples per PID estimate (the bands of the plots; 0: none)
    pid_boot: int = 20
    #: PID of "all" layer pairs (the paper's plots) or only the "last" (its layer 3, the claims).
    #: Stage 1's flattened maps (25 088 dimensions for the w32 teacher) cost most: the teacher's
    #: PCA and k-means run once per run, the student's at every PID epoch (~0.5 s on 2 cores)
    pid_layers: str = "all"
    #: PID every n-th epoch (and the last)
    pid_every: int = 2
    augment: str = "none"

    def __post_init__(self):
        if self.runs not in RUN_SETS:
            raise ValueError(f"runs must be one of {', '.join(RUN_SETS)}, got {self.runs!r}")
        if self.pid_layers not in ("all", "last"):
            raise ValueError(f"pid_layers must be 'all' or 'last', got {self.pid_layers!r}")
        if self.pid_stop and (self.pid_boot < 1 or self.pid_perm < 2):
            raise ValueError(
                "pid_stop reads Uni(Y:T\\S)'s interval and its permutation floor: it needs pid_boot >= 1 "
                f"and pid_perm >= 2, got pid_boot={self.pid_boot}, pid_perm={self.pid_perm}"
            )

    def grid(self) -> list[tuple[str, str]]:
        """The (teacher, method) rows this preset runs, in run order (see :attr:`runs`)."""
        rows = [(kind, m) for kind in self.teachers for m in self.methods]
        if self.runs == "claims":
            rows = [(kind, m) for kind, m in rows if m in CLAIM_RUNS.get(kind, ())]
        return rows

    def layer_pairs(self) -> tuple[tuple[str, str], ...]:
        if self.pairs is not None:
            return tuple(tuple(p) for p in self.pairs)
        return stage_pairs(self.student_model["name"], self.teacher_model["name"])


#: The data and teacher that two presets share (each preset takes its own copy): Fashion-MNIST with
#: task-irrelevant patterns and its 6-epoch teacher (``quick``, ``standard-nuisance``), and MNIST-1D
#: with the three-conv teacher (``quick-mnist1d``, ``standard-mnist1d``); the presets' comments say
#: how each was chosen.
NUISANCE_REGIME = {"data_kwargs": {"nuisance": 1.5}, "teacher_epochs": 6}
MNIST1D_REGIME = {
    "data": "mnist1d",
    "teacher_model": {"name": "cnn1d", "kwargs": {"width": 32, "convs_per_stage": 3}},
    "teacher_train_subset": None,
    "teacher_epochs": 10,
    "test_subset": None,
}

PRESETS = {
    # Fashion-MNIST with task-irrelevant structure (data/nuisance.py: a fixed random plane-wave
    # pattern of standard deviation 1.5 pixel units on every image), chosen by measurement
    # (docs/e1.md, "Premises and regimes"): the untrained teacher keeps ~5 % of the trained one's
    # I(Y;T) (the paper's premise; on plain Fashion-MNIST 85 %, where the preset's one trained-teacher
    # claim with a premise sat on the 2-standard-error line and its verdict changed with the thread
    # count); the teacher needs 6 epochs (80 %). Trained and untrained teacher, and only the runs the
    # claims read (24, not 48: all 48 took 490 s on plain Fashion-MNIST, over the 5-minute budget);
    # `--set runs=all` adds the variants and the untrained teacher's KD and TED. Another data set
    # (--data) drops the patterns: they are an option of Fashion-MNIST's loader. The PID of the
    # last pair only, which the claims read (the three pairs' trajectories: --set pid_layers=all,
    # ~40 s more; the runs distil all three pairs either way).
    "quick": RIDPreset(
        name="quick",
        **deepcopy(NUISANCE_REGIME),
        teachers=("trained", "untrained"),
        pid_every=6,
        pid_layers="last",
        runs="claims",
    ),
    # Trained and untrained teacher (the claims); the noisy teacher's 35 runs would take the preset
    # from ~1 to ~1.5 hours on 2 cores (VID and RID on three pairs: ~80 s a run): add it with
    # --set 'teachers=[trained, untrained, noisy]'.
    "standard": RIDPreset(
        name="standard",
        student_train_subset=1000,
        student_epochs=20,
        test_subset=5000,
        teachers=("trained", "untrained"),
        seeds=(0, 1, 2, 3, 4),
    ),
    # quick's regime (the same teacher and patterns) with a student with room, as
    # `standard-mnist1d` has one: cnn-small w8 with two convs a stage on 1 000 labels, 20 epochs
    # (measured, seed 0: the baseline flat at 45 % from epoch 13, KD +26 pt, RID +22 pt by epoch 20).
    "standard-nuisance": RIDPreset(
        name="standard-nuisance",
        **deepcopy(NUISANCE_REGIME),
        student_model={"name": "cnn-small", "kwargs": {"width": 8, "convs_per_stage": 2}},
        student_train_subset=1000,
        student_epochs=20,
        test_subset=5000,
        teachers=("trained", "untrained"),
        seeds=(0, 1, 2, 3, 4),
        pid_every=5,
        runs="claims",
    ),
    # MNIST-1D's teacher is cnn1d w32 with three convs a stage, chosen by measurement (docs/e1.md,
    # "Regimes"): untrained, its stage 3 carries 7 % of the trained one's I(Y;T) (the paper's
    # premise: under 10 %; one conv a stage: 27 %), and trained it reaches ~98 %.
    "quick-mnist1d": RIDPreset(
        name="quick-mnist1d",
        **deepcopy(MNIST1D_REGIME),
        student_model={"name": "cnn1d", "kwargs": {"width": 8}},
        student_train_subset=500,
        student_epochs=12,
        teachers=("trained", "untrained"),
        pid_every=4,
    ),
    # The quick preset's teacher, and a student with room (two convs a stage) trained to
    # convergence (the baseline's accuracy moves < 1 pt over its last quarter; measured: +0.6)
    "standard-mnist1d": RIDPreset(
        name="standard-mnist1d",
        **deepcopy(MNIST1D_REGIME),
        student_model={"name": "cnn1d", "kwargs": {"width": 8, "convs_per_stage": 2}},
        student_train_subset=1000,
        student_epochs=30,
        pid_every=5,
        teachers=("trained", "untrained"),
        seeds=(0, 1, 2, 3, 4),
    ),
    "paper": RIDPreset(
        name="paper",
        teacher_model={"name": "wrn-16-2"},
        teacher_train_subset=None,
        teacher_epochs=30,
        student_model={"name": "cnn-small", "kwargs": {"width": 8}},
        student_train_subset=10000,
        student_epochs=40,
        test_subset=None,
        batch_size=128,
        seeds=(0, 1, 2, 3, 4),
    ),
    # What makes RID fall below the baseline: one switch at a time, in the regime it was measured
    # in (the measurement in docs/e1.md predates the paper defaults: one pair, clipping at 5, k = 10).
    "rid-ablation": RIDPreset(
        name="rid-ablation",
        teacher_train_subset=10000,
        teacher_epochs=3,
        student_model={"name": "cnn-small", "kwargs": {"width": 4}},
        student_train_subset=1000,
        student_epochs=8,
        pid_every=1,
        methods=("baseline", "kd", "rid", *RID_VARIANTS),
        # six seeds: the baseline's first three sat 1.1 pt above its next three
        seeds=(0, 1, 2, 3, 4, 5),
    ),
    # The [PID-KD] CIFAR-10 setting (needs --data cifar10 --data-dir DIR).
    "cifar10": RIDPreset(
        name="cifar10",
        data="cifar10",
        teacher_model={"name": "wrn-40-2"},
        teacher_train_subset=None,
        teacher_epochs=200,
        student_model={"name": "wrn-16-1"},
        student_train_subset=None,
        student_epochs=200,
        test_subset=None,
        batch_size=128,
        seeds=(0, 1, 2),
    ),
}


def teacher_config(p: RIDPreset, out: Path) -> TeacherTrainConfig:
    data = {"train_subset": p.teacher_train_subset}
    optim = {"epochs": p.teacher_epochs}
    return from_dict(
        TeacherTrainConfig,
        {
            "data": _data(p, data),
            "model": deepcopy(p.teacher_model),
            "optim": _optim(p, optim),
            "run": {"out_dir": str(out)},
        },
    )


def distill_config(
    p: RIDPreset, teacher_dir: Path, kind: str, method: str, seed: int, out: Path
) -> DistillConfig:
    pairs = [list(q) for q in p.layer_pairs()]
    distilled = pairs[-1:] if method in LAST_PAIR_ONLY else pairs
    measured = pairs if p.pid_layers == "all" else pairs[-1:]
    name, params = method_spec(p, method)
    teacher = {
        "kind": kind,
        "model": deepcopy(p.teacher_model),
        "seed": seed,
        "checkpoints": [] if kind == "untrained" else [str(teacher_dir)],
        **(deepcopy(p.noise) if kind == "noisy" else {}),
    }
    return from_dict(
        DistillConfig,
        {
            "data": _data(p, {"train_subset": p.student_train_subset, "augment": p.augment}),
            "student": deepcopy(p.student_model),
            "teacher": teacher,
            "method": {"name": name, "params": params, "pairs": _distilled(p, method, distilled)},
            "optim": _optim(
                p, {"epochs": p.student_epochs, "grad_clip": None if method in LOGIT_METHODS else p.grad_clip}
            ),
            "pid": {
                "pairs": measured,
                **_stop(p, method, measured, distilled),
                "k": p.pid_k,
                "pca": p.pid_pca,
                "n_boot": p.pid_boot,
                "n_samples": p.pid_samples,
                "every": p.pid_every,
            },
            "run": {"seed": seed, "out_dir": str(out)},
        },
    )


def _stop(p: RIDPreset, method: str, measured: list, distilled: list) -> dict:
    """The PID's stop-rule settings of one run: on where the run distils every measured pair."""
    on = (
        p.pid_stop
        and method not in LOGIT_METHODS
        and not p.auto_pairs
        and all(q in distilled for q in measured)
    )
    return {"stop": True, "n_perm": p.pid_perm} if on else {}


def _distilled(p: RIDPreset, method: str, pairs: list):
    if method in LOGIT_METHODS:
        return []
    return "auto" if p.auto_pairs else pairs


def _data(p: RIDPreset, extra: dict) -> dict:
    return {
        "name": p.data,
        "root": p.data_root,
        "kwargs": deepcopy(p.data_kwargs),
        "test_subset": p.test_subset,
        "scale_inputs": p.scale_inputs,
        "batch_size": p.batch_size,
        **extra,
    }


def _optim(p: RIDPreset, extra: dict) -> dict:
    return {"lr": p.lr, "nesterov": p.nesterov, **extra}


def method_spec(p: RIDPreset, method: str) -> tuple[str, dict]:
    """(method name, its parameters) of an E1 row: a variant is its base method with its switches,
    under the preset's parameters for that base (and any the preset sets for the variant itself)."""
    params = deepcopy(p.method_params.get(method, {}))
    for base, variants in (("rid", RID_VARIANTS), ("vid", VID_VARIANTS)):
        if method in variants:
            return base, {**deepcopy(p.method_params.get(base, {})), **variants[method], **params}
    return method, params


def run_name(kind: str, method: str, seed: int) -> str:
    return f"{kind}-{method}-s{seed}"


def check_method_param(method: str, param: str, key: str) -> None:
    """For the setting ``method_params.METHOD.PARAM`` (``key``): METHOD a method of E1 (or a
    variant), PARAM one of its keyword arguments."""
    base = {**{m: m for m in METHODS}, **{v: "rid" for v in RID_VARIANTS}, **{v: "vid" for v in VID_VARIANTS}}
    if method not in base:
        raise ValueError(f"{key}: unknown method {method!r}; valid methods: {', '.join(base)}")
    valid = [
        k
        for k in method_hparams(base[method])
        if k not in ("num_classes", "pairs", "student_shapes", "teacher_shapes")
    ]
    if param not in valid:
        raise ValueError(f"{key}: {base[method]} has no parameter {param!r}; valid: {', '.join(valid)}")


def fit_to_data(preset: RIDPreset, sample_shape: tuple) -> RIDPreset:
    """The preset with models that run on examples of ``sample_shape`` (see ``model_for_data``)."""
    if len(sample_shape) == 2 and preset.augment == "crop-flip":
        raise ValueError(f"augment='crop-flip' needs image data, but {preset.data!r} holds 1-D signals")
    return replace(
        preset,
        scale_inputs="none" if len(sample_shape) == 2 else preset.scale_inputs,
        teacher_model=model_for_data(preset.teacher_model, sample_shape),
        student_model=model_for_data(preset.student_model, sample_shape),
    )


def teacher_budget(preset: RIDPreset, n_train: int) -> RIDPreset:
    """The preset with the teacher's epochs raised to at least ``teacher_min_steps`` optimiser steps
    on its ``n_train``-example training set (see :attr:`RIDPreset.teacher_min_steps`)."""
    per_epoch = -(-subset_size(preset.teacher_train_subset, n_train) // preset.batch_size)
    need = -(-preset.teacher_min_steps // max(per_epoch, 1))
    return replace(preset, teacher_epochs=max(preset.teacher_epochs, need))


def data_counts(preset: RIDPreset, n_train: int, n_test: int) -> dict:
    """The numbers of examples the runs use, once the preset's subsets meet the data set's size."""
    test = subset_size(preset.test_subset, n_test)
    return {
        "teacher_train": subset_size(preset.teacher_train_subset, n_train),
        "student_train": subset_size(preset.student_train_subset, n_train),
        "test": test,
        "pid_samples": min(preset.pid_samples, test),
    }
