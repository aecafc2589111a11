"""The public names keep working while the code moves between files.

Recorded from each package's ``__all__`` before the layout of issue 13 (commit aaf7e2c), plus the
command line's verbs and options. A name may be added anywhere; one that disappears from here
breaks someone's import, so it fails this test instead.

Re-pinned on purpose in issue 22: ``infodistill.data.datasets`` (the loaders' former home, a shim
since issue 13) is gone, its names are ``infodistill.data``'s; ``infodistill.imports`` and
``infodistill.errors`` are new (layer-0 modules); ``infodistill.training`` adds ``RunDir``,
``model_from_config`` and ``model_from_run``; ``run_audit``, ``run_layer_map`` and
``run_rank_teachers`` (which read ``infodistill audit``'s flag text: YAML options, comma lists) are
gone from the library, the command does that reading itself and calls ``load_models`` (options as
mappings, layers as lists) and then ``audit``, ``layer_map`` or ``rank_teachers``.
"""

from __future__ import annotations

import argparse
import importlib

import pytest

#: module -> the names it exported (``__all__``) at aaf7e2c
PUBLIC = {
    "infodistill.audit": [
        "NOTHING_MARGIN_BITS", "NOTHING_SD_FACTOR", "TRANSFERRED_BITS", "TRANSFERRED_FRACTION",
        "AuditResult", "AuditRow", "audit",
        # issue 23: the models and examples of `infodistill audit`, shared with the layer map
        "LoadedModels", "load_models",
    ],
    # issue 23: the layer map, its pairing and the teacher ranking
    "infodistill.layer_map": [
        "FLOOR_MARGIN_BITS", "FLOOR_SD_FACTOR", "LayerMap", "MapCell", "Pairing", "TeacherRank",
        "TeacherRanking", "auto_pairs", "layer_map", "map_features", "rank_from_maps", "rank_teachers",
        "suggest_pairing",
    ],
    "infodistill.cli": ["CLIError", "_json_default", "build_parser", "gates_table", "main"],
    "infodistill.data": [
        "ArrayDataset", "Compose", "DATASET_NAMES", "DEFAULT_FASHION_MNIST_ROOT", "DataError",
        "FASHION_MNIST_CLASSES", "FASHION_MNIST_FILES", "IMAGE_EXTENSIONS", "Mixup", "Normalize",
        "RandomCropPad", "RandomHFlip", "RestrictedUnpickler", "Transform", "dataset_stats", "load_cifar",
        "load_dataset", "load_digits_dataset", "load_fashion_mnist", "load_image_folder", "load_mnist1d",
        "load_sparse_parity", "mixup", "read_idx", "safe_load_pickle", "write_idx",
    ],
    "infodistill.errors": ["InfodistillError"],
    "infodistill.imports": ["first_line", "import_object"],
    "infodistill.methods": [
        "METHODS", "Batch", "Baseline", "DistillMethod", "FitNets", "KD", "LayerPair", "Progressive", "RID",
        "Scaffold", "TED", "VID", "build_method", "ensemble_logits", "method_hparams", "noisy_features",
        "rid_schedule", "soft_cross_entropy",
    ],
    "infodistill.metrics": ["FidelityAccumulator", "fidelity_metrics", "linear_cka"],
    "infodistill.models": [
        "MODEL_NAMES", "MLP", "BasicBlock", "CNN1d", "CifarResNet", "ConvBNReLU", "FeatureExtractor",
        "SmallCNN", "WideBasicBlock", "WideResNet", "available_models", "build_model", "freeze_teacher",
        "interpolate_student", "is_frozen", "parse_model_spec", "collect_features", "probe_shapes",
        "resnet", "validate_layers", "wrn",
    ],
    "infodistill.pid": [
        "PIDResult", "decompose", "EstimateResult", "SweepResult", "estimate", "sweep", "as_joint",
        "co_information", "conditional_entropy", "conditional_mutual_information", "convert_units",
        "entropy", "marginal", "mutual_information",
    ],
    "infodistill.pid.broja": ["solve_broja"],
    "infodistill.pid.estimate": ["EstimateResult", "SweepResult", "estimate", "sweep"],
    "infodistill.training": [
        "CheckpointError", "ConfigError", "DistillConfig", "Fit", "TeacherTrainConfig", "TrainingError",
        "build_distillation", "distill", "load_checkpoint", "load_config", "read_log", "save_checkpoint",
        "train_teacher", "RunDir", "model_from_config", "model_from_run",
    ],
}  # fmt: skip

#: verb -> (positional arguments, long options) of ``infodistill`` at aaf7e2c
CLI = {
    "pid": (
        ["joint"],
        [
            "--boot", "--ci", "--counts", "--discretize", "--fit-fraction", "--json", "--k", "--k-s", "--k-t",
            "--labels", "--no-normalize", "--pca", "--perm", "--pool", "--seed", "--student", "--teacher",
            "--tol", "--unit",
        ],
    ),
    "demo": ([], ["--boot"]),
    "train-teacher": (["config", "overrides"], ["--out", "--quiet", "--resume"]),
    "distill": (["config", "overrides"], ["--out", "--quiet", "--resume"]),
    "evaluate": (["run_dir"], ["--json", "--pid-pairs"]),
    "reproduce": (["experiment"], []),
    "audit": (
        [],
        [
            "--boot", "--data", "--data-root", "--json", "--k", "--layers-s", "--layers-t", "--n", "--pca",
            "--seed", "--student", "--student-kwargs", "--student-model", "--teacher", "--teacher-kwargs",
            "--teacher-model",
            "--map", "--heatmap",  # issue 23
        ],
    ),
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_recorded_name_is_still_exported(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(mod, name)]
    assert not missing, f"{module} no longer has {missing}"
    undeclared = [name for name in PUBLIC[module] if name not in mod.__all__]
    assert not undeclared, f"{module}.__all__ no longer lists {undeclared}"


def test_the_entry_points_the_readme_names():
    from infodistill.methods import build_method
    from infodistill.models import FeatureExtractor
    from infodistill.pid import decompose, estimate

    assert callable(decompose) and callable(estimate) and callable(build_method)
    assert isinstance(FeatureExtractor, type)


def test_cli_verbs_and_options():
    from infodistill.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for verb, (positional, options) in CLI.items():
        assert verb in sub.choices, f"infodistill {verb} is gone"
        parser = sub.choices[verb]
        have_pos = [a.dest for a in parser._actions if not a.option_strings]
        have_opt = {o for a in parser._actions for o in a.option_strings}
        assert have_pos == positional, verb
        assert not set(options) - have_opt, f"infodistill {verb} lost {sorted(set(options) - have_opt)}"
