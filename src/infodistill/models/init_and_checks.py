"""Weight initialisation and argument checks shared by the model definitions."""

from __future__ import annotations

from torch import nn


def kaiming_init(model: nn.Module) -> None:
    """He-normal convolutions, unit/zero BatchNorm affine, zero linear biases.

    ``fan_out`` is the mode used by the WRN and CIFAR-ResNet papers' training setups; it keeps the
    variance of the backward signal constant through the ReLU network (He et al. 2015).  Linear weights
    keep PyTorch's default (a Kaiming-uniform variant) because the classifier sits after global
    pooling, where the ``fan_out`` scaling of a 10-way head would be far too large.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
