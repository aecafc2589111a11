"""CIFAR ResNets (He, Zhang, Ren, Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016, §4.2)."""

from __future__ import annotations

import torch
from torch import nn

from .init_and_checks import check_positive_int, kaiming_init

__all__ = ["BasicBlock", "CifarResNet", "resnet"]


class BasicBlock(nn.Module):
    """Post-activation basic block: conv3x3-BN-ReLU-conv3x3-BN, add shortcut, ReLU.

    The shortcut is the identity when the shape is unchanged, otherwise a 1x1 strided convolution
    followed by BatchNorm (the paper's option B).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        if in_channels != out_channels or stride != 1:
            self.shortcut: nn.Module | None = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Out-of-place ops so that hooked intermediate outputs (e.g. bn2) are not overwritten.
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.shortcut is None else self.shortcut(x)
        return self.relu2(out + residual)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR of He et al. (2016), §4.2.

    A 3x3 stem (``conv1``, ``bn1``, ``relu``) to 16 channels, three stages ``layer1``..``layer3`` of
    ``n`` :class:`BasicBlock` with 16, 32, 64 channels and strides 1, 2, 2, global average pooling
    (``pool``, adaptive so any input size works), ``flatten`` and linear ``fc``.

    Shortcut choice: the paper's CIFAR nets use option A (zero-padded identity); this implementation
    uses option B (1x1 conv + BN projection where the shape changes, identity elsewhere), the variant
    common in distillation benchmarks.  It adds two projections (~3k parameters for ResNet-20: 0.272M
    vs the published 0.27M; ResNet-8 0.078M; ResNet-56 0.855M vs 0.85M).
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        check_positive_int("depth", depth)
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(
                f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth}"
            )
        n = (depth - 2) // 6
        self.depth, self.num_classes = depth, num_classes
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._stage(16, 16, n, 1)
        self.layer2 = self._stage(16, 32, n, 2)
        self.layer3 = self._stage(32, 64, n, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(64, num_classes)
        self.stage_names: tuple[str, ...] = ("layer1", "layer2", "layer3")
        self.feature_dim = 64
        kaiming_init(self)

    @staticmethod
    def _stage(cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(cin, cout, stride), *[BasicBlock(cout, cout, 1) for _ in range(n - 1)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


def resnet(depth: int, num_classes: int, in_channels: int = 3) -> CifarResNet:
    """Build CIFAR ResNet-``depth`` (see :class:`CifarResNet`)."""
    return CifarResNet(depth, num_classes, in_channels)
