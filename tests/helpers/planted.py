"""A planted model file for distillation runs whose PID is known by construction, shared by
tests/training/test_pid_stop.py and tests/audit/test_auto_pairs.py (written to planted.py in a
test's directory and named by the configs as ``planted.py:teacher`` etc.).

y = 2*b1 + b2 is written in the input's first two columns ((1, 8) signals, the rest noise). The
teacher's ``stage1`` and ``stage2`` are y's cluster centre plus a little input noise (they hold y).
The student's ``copy`` is the exact centre of y's cluster (y is a function of it) and ``blind`` a
linear map of the noise columns only (it can never learn y).
"""

SOURCE = """
import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

CENTRES = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)) * 4.0
MIX = torch.randn(6, 8, generator=torch.Generator().manual_seed(1)) * 0.2


def label(x):
    return 2 * x[:, 0, 0].long() + x[:, 0, 1].long()


class Teacher(nn.Module):
    stage_names = ("stage1", "stage2")

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Identity()
        self.stage2 = nn.Identity()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        z = CENTRES[label(x)] + x[:, 0, 2:] @ MIX
        return self.fc(self.stage2(self.stage1(z.view(-1, 8, 1, 1))).flatten(1))


class Student(nn.Module):
    stage_names = ("copy", "blind")

    def __init__(self):
        super().__init__()
        self.copy = nn.Identity()
        self.blind = nn.Sequential(nn.Linear(6, 8), nn.Unflatten(1, (8, 1, 1)))
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        c = self.copy(CENTRES[label(x)].view(-1, 8, 1, 1))
        b = self.blind(x[:, 0, 2:])
        return self.fc(torch.cat([c, b], 1).flatten(1))


def teacher():
    return Teacher()


def student():
    return Student()


def data(n_train=300, n_test=300):
    rng = np.random.default_rng(0)
    n = n_train + n_test
    b1, b2 = rng.integers(0, 2, n), rng.integers(0, 2, n)
    x = np.concatenate([b1[:, None], b2[:, None], rng.normal(size=(n, 6))], axis=1)
    x, y = torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(2 * b1 + b2)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])

"""
