"""CIFAR-style Wide Residual Networks (Zagoruyko & Komodakis, *Wide Residual Networks*, BMVC 2016)."""

from __future__ import annotations

import torch
from torch import nn

from .init_and_checks import check_positive_int, kaiming_init

__all__ = ["WideBasicBlock", "WideResNet", "wrn"]


class WideBasicBlock(nn.Module):
    """WRN basic block B(3,3): BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus a shortcut.

    The shortcut is the identity when the shape is unchanged, otherwise a 1x1 convolution (stride
    ``stride``) applied to the block's *pre-activated* input, as in the WRN paper's reference setup that
    VID/RID experiments use.  The output is the un-activated residual sum; the next block (or the
    network's final BN-ReLU) activates it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        if in_channels != out_channels or stride != 1:
            self.shortcut: nn.Module | None = nn.Conv2d(
                in_channels, out_channels, 1, stride=stride, padding=0, bias=False
            )
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Out-of-place ops throughout: a forward hook may hold any intermediate output, and an in-place
        # ReLU or += would silently overwrite what it captured.
        act = self.relu1(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(act)
        out = self.conv1(act)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + residual


class WideResNet(nn.Module):
    """WRN-d-k of Zagoruyko & Komodakis (2016), CIFAR variant.

    Depth ``d = 6n + 4``: a 3x3 stem convolution to 16 channels, three groups (``block1``..``block3``)
    of ``n`` :class:`WideBasicBlock` with 16k, 32k, 64k channels and strides 1, 2, 2, a final
    BN-ReLU (``bn_final``, ``relu``), global average pooling (``pool``, adaptive so any spatial size
    works), ``flatten`` and a linear classifier ``fc``.

    Block choice: the papers do not fix the block's activation order, so this is the block of the
    WRN paper and of the RID/VID reference setups: pre-activation BN-ReLU-conv3x3-BN-ReLU-(dropout)-
    conv3x3 with a 1x1 projection shortcut (on the pre-activated input) wherever the shape changes.
    Hence ``block1``..``block3`` output un-normalised residual sums; hook ``relu`` for the activated
    final feature map.  Published sizes (10 classes): WRN-16-1 0.175M, WRN-16-2 0.69M, WRN-40-2
    2.2M parameters.

    Weights: He-normal (fan_out) convolutions, BatchNorm weight 1 / bias 0, zero linear bias.
    """

    def __init__(
        self,
        depth: int = 16,
        width: int = 1,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive_int("depth", depth)
        check_positive_int("width", width)
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        n = (depth - 4) // 6
        widths = (16, 16 * width, 32 * width, 64 * width)
        self.depth, self.width, self.num_classes = depth, width, num_classes
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = self._group(widths[0], widths[1], n, 1, dropout)
        self.block2 = self._group(widths[1], widths[2], n, 2, dropout)
        self.block3 = self._group(widths[2], widths[3], n, 2, dropout)
        self.bn_final = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(widths[3], num_classes)
        self.stage_names: tuple[str, ...] = ("block1", "block2", "block3")
        self.feature_dim = widths[3]
        kaiming_init(self)

    @staticmethod
    def _group(cin: int, cout: int, n: int, stride: int, dropout: float) -> nn.Sequential:
        blocks = [WideBasicBlock(cin, cout, stride, dropout)]
        blocks += [WideBasicBlock(cout, cout, 1, dropout) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.block3(self.block2(self.block1(x)))
        x = self.relu(self.bn_final(x))
        return self.fc(self.flatten(self.pool(x)))


def wrn(depth: int, width: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> WideResNet:
    """Build WRN-``depth``-``width`` (see :class:`WideResNet`)."""
    return WideResNet(depth, width, num_classes, in_channels, dropout)
