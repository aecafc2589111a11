"""Models for distillation experiments and forward-hook feature capture.

Architectures: CIFAR-style WRN-d-k (:mod:`.wrn`), CIFAR ResNet-6n+2 (:mod:`.resnet`), a small CNN,
an MLP and a 1-D CNN for MNIST-1D (:mod:`.small`), built by name with :func:`build_model`.
Features are captured from named modules of unmodified models (:mod:`.hooks`); your own models and
weights files come in through :mod:`.factory`.
"""

from .factory import build_from_factory, load_weights, read_state_dict
from .hooks import (
    FeatureExtractor,
    collect_features,
    freeze_teacher,
    interpolate_student,
    is_frozen,
    model_device,
    probe_shapes,
    validate_layers,
)
from .registry import MODEL_NAMES, available_models, build_model, parse_model_spec
from .resnet import BasicBlock, CifarResNet, resnet
from .small import MLP, CNN1d, ConvBNReLU, SmallCNN
from .wrn import WideBasicBlock, WideResNet, wrn

__all__ = [
    "MODEL_NAMES",
    "MLP",
    "BasicBlock",
    "CNN1d",
    "CifarResNet",
    "ConvBNReLU",
    "FeatureExtractor",
    "SmallCNN",
    "WideBasicBlock",
    "WideResNet",
    "available_models",
    "build_from_factory",
    "build_model",
    "freeze_teacher",
    "interpolate_student",
    "is_frozen",
    "load_weights",
    "model_device",
    "parse_model_spec",
    "collect_features",
    "probe_shapes",
    "read_state_dict",
    "resnet",
    "validate_layers",
    "wrn",
]
