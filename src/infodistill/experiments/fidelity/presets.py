"""E2 [FID]: the presets, the settings, run names and the configs of the runs.

What the report (:mod:`.report`) needs from the experiment lives here, so that it does
not import :mod:`.fidelity` (which runs the experiment and then writes the report).
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...training.config import DistillConfig, TeacherTrainConfig, from_dict
from ..common import model_for_data, subset_size

#: seeds of the teacher members are offset so that no student starts from a member's initialisation
MEMBER_SEED_OFFSET = 1000


@dataclass(frozen=True)
class Setting:
    name: str
    members: int = 1
    tau: float | None = None  # None: the independent student (labels only)
    data: str = "none"  # none | crop-flip | mixup
    init_lambda: float | None = None


@dataclass
class FidelityPreset:
    """Everything an E2 run depends on (recorded in the report)."""

    name: str
    data: str = "fashion-mnist"
    data_root: str | None = None
    #: one architecture for teacher members and student (self-distillation)
    model: dict = field(default_factory=lambda: {"name": "cnn-small", "kwargs": {"width": 8}})
    train_subset: int | None = 5000
    #: the subset is the same for every member and student (the distillation data of [FID])
    subset_seed: int = 0
    teacher_epochs: int = 5
    student_epochs: int = 5
    test_subset: int | None = 2000
    batch_size: int = 64
    lr: float = 0.05
    ensembles: tuple[int, ...] = (1, 3, 5)
    taus: tuple[float, ...] = (1.0, 4.0)
    #: distillation-data variants, run with one teacher at ``data_tau``
    data_settings: tuple[str, ...] = ("crop-flip", "mixup")
    data_tau: float = 4.0
    mixup_alpha: float = 1.0
    #: λ of the initialisation sweep (λ = 0 is the ens1 run at ``lambda_tau``)
    lambdas: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9, 1.0)
    lambda_tau: float = 1.0
    #: three seeds: a claim is decided by paired differences beyond 2 standard errors (as in E1)
    seeds: tuple[int, ...] = (0, 1, 2)

    def settings(self) -> list[Setting]:
        grid = [Setting("independent")]
        grid += [Setting(f"ens{m}-tau{t:g}", m, t) for m in self.ensembles for t in self.taus]
        grid += [Setting(f"ens1-tau{self.data_tau:g}-{d}", 1, self.data_tau, d) for d in self.data_settings]
        grid += [Setting(f"lambda{lam:g}", 1, self.lambda_tau, init_lambda=lam) for lam in self.lambdas]
        return grid

    @property
    def n_members(self) -> int:
        return max(self.ensembles)


PRESETS = {
    "quick": FidelityPreset(name="quick"),
    # MNIST-1D, where self-distillation's fidelity is low (~80 % test agreement, measured)
    "quick-mnist1d": FidelityPreset(
        name="quick-mnist1d",
        data="mnist1d",
        model={"name": "cnn1d", "kwargs": {"width": 8}},
        train_subset=None,
        test_subset=None,
        data_settings=("mixup",),
    ),
    # The mixup and λ-initialisation claims, with members and students trained to convergence
    # (5 epochs leave the members at 83 ± 5 % and the students still moving); one member, both τ.
    "long-mnist1d": FidelityPreset(
        name="long-mnist1d",
        data="mnist1d",
        model={"name": "cnn1d", "kwargs": {"width": 8}},
        train_subset=None,
        test_subset=None,
        teacher_epochs=30,
        student_epochs=30,
        ensembles=(1,),
        data_settings=("mixup",),
    ),
    "paper": FidelityPreset(
        name="paper",
        model={"name": "cnn-small", "kwargs": {"width": 16}},
        train_subset=None,
        teacher_epochs=20,
        student_epochs=20,
        test_subset=None,
        batch_size=128,
        lambdas=(0.1, 0.25, 0.375, 0.5, 0.625, 0.75, 0.9, 1.0),
        seeds=(0, 1, 2),
    ),
    # The [FID] CIFAR-100 self-distillation setting with ResNet-56 (needs --data cifar100 --data-dir).
    "cifar100": FidelityPreset(
        name="cifar100",
        data="cifar100",
        model={"name": "resnet56"},
        train_subset=None,
        teacher_epochs=200,
        student_epochs=300,
        test_subset=None,
        batch_size=128,
        lr=0.1,
        seeds=(0, 1, 2),
    ),
}


def _data(p: FidelityPreset) -> dict:
    return {
        "name": p.data,
        "root": p.data_root,
        "train_subset": p.train_subset,
        "subset_seed": p.subset_seed,
        "test_subset": p.test_subset,
        "batch_size": p.batch_size,
    }


def member_dir(out: Path, i: int) -> Path:
    return out / f"teacher-{i}"


def teacher_config(p: FidelityPreset, out: Path, i: int) -> TeacherTrainConfig:
    return from_dict(
        TeacherTrainConfig,
        {
            "data": _data(p),
            "model": deepcopy(p.model),
            "optim": {"lr": p.lr, "epochs": p.teacher_epochs},
            "run": {"seed": MEMBER_SEED_OFFSET + i, "out_dir": str(out)},
        },
    )


def distill_config(p: FidelityPreset, s: Setting, seed: int, out: Path) -> DistillConfig:
    data = _data(p)
    if s.data == "crop-flip":
        data["augment"] = "crop-flip"
    elif s.data == "mixup":
        data["mixup_alpha"] = p.mixup_alpha
    cfg = {
        "data": data,
        "student": deepcopy(p.model),
        "teacher": {
            "kind": "ensemble" if s.members > 1 else "trained",
            "model": deepcopy(p.model),
            "checkpoints": [str(member_dir(out.parent, i)) for i in range(s.members)],
        },
        # KD with alpha = 0: the student learns from the teacher's outputs only ([FID])
        "method": {"name": "baseline"}
        if s.tau is None
        else {"name": "kd", "params": {"tau": s.tau, "alpha": 0.0}},
        "optim": {"lr": p.lr, "epochs": p.student_epochs},
        "run": {"seed": seed, "out_dir": str(out)},
    }
    if s.init_lambda is not None:
        cfg["init_lambda"] = s.init_lambda
    return from_dict(DistillConfig, cfg)


def run_name(setting: str, seed: int) -> str:
    return f"{setting}-s{seed}"


def fit_to_data(preset: FidelityPreset, sample_shape: tuple) -> FidelityPreset:
    """The preset for examples of ``sample_shape``: on 1-D signals the model's 1-D counterpart
    (``model_for_data``) and no crop-flip setting (there is no image to crop or flip)."""
    if len(sample_shape) != 2:
        return preset
    return replace(
        preset,
        model=model_for_data(preset.model, sample_shape),
        data_settings=tuple(d for d in preset.data_settings if d != "crop-flip"),
    )


def data_counts(preset: FidelityPreset, n_train: int, n_test: int) -> dict:
    """The numbers of examples the runs use, once the preset's subsets meet the data set's size."""
    train, test = subset_size(preset.train_subset, n_train), subset_size(preset.test_subset, n_test)
    return {"train": train, "test": test}
