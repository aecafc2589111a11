"""Tests of ``infodistill.models``: architectures, registry, hooks, teacher freezing, student init."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from infodistill.models import (
    MODEL_NAMES,
    FeatureExtractor,
    build_model,
    freeze_teacher,
    interpolate_student,
    is_frozen,
    parse_model_spec,
    probe_shapes,
    wrn,
)

torch.set_num_threads(1)

IMAGE_MODELS = [n for n in MODEL_NAMES if n not in ("mlp", "cnn1d")]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def down(h: int) -> int:
    """Spatial size after a 3x3 conv with stride 2 and padding 1: floor((h + 2 - 3) / 2) + 1."""
    return (h - 1) // 2 + 1


# ---------------------------------------------------------------------------------------------------
# Parameter counts by hand (weights + BN affine; BN running stats are buffers, not parameters).


def bn(c: int) -> int:
    return 2 * c


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def wrn_params_by_hand(depth: int, k: int, classes: int = 10, cin: int = 3) -> int:
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = conv(cin, 16, 3)
    for g in range(3):
        a, b = widths[g], widths[g + 1]
        # first block of the group: BN(a) conv(a->b) BN(b) conv(b->b), 1x1 projection if a != b
        total += bn(a) + conv(a, b, 3) + bn(b) + conv(b, b, 3) + (conv(a, b, 1) if a != b else 0)
        total += (n - 1) * (bn(b) + conv(b, b, 3) + bn(b) + conv(b, b, 3))
    return total + bn(widths[3]) + widths[3] * classes + classes


def resnet_params_by_hand(depth: int, classes: int = 10, cin: int = 3) -> int:
    n = (depth - 2) // 6
    total = conv(cin, 16, 3) + bn(16)
    for a, b in [(16, 16), (16, 32), (32, 64)]:
        total += conv(a, b, 3) + bn(b) + conv(b, b, 3) + bn(b) + (conv(a, b, 1) + bn(b) if a != b else 0)
        total += (n - 1) * 2 * (conv(b, b, 3) + bn(b))
    return total + 64 * classes + classes


def test_hand_formula_reproduces_two_worked_values():
    # WRN-16-1, worked out on paper block by block: 432 + 9344 + 32992 + 131520 + 128 + 650.
    assert wrn_params_by_hand(16, 1) == 175_066
    # ResNet-20 option B: 432 + 32 + 14016 + 51648 + 205696 + 650.
    assert resnet_params_by_hand(20) == 272_474


@pytest.mark.parametrize(
    "name, by_hand, published",
    [
        # Published sizes: WRN-16-1 0.175M, WRN-40-2 2.24M (CIFAR, 10 classes; Zagoruyko & Komodakis
        # 2016/2017 round them to 0.2M and 2.2M); ResNet-20 0.27M, ResNet-56 0.85M (He et al. 2016,
        # Table 6, option-A shortcuts: option B adds the two projections, under 1 %).
        ("wrn-16-1", lambda: wrn_params_by_hand(16, 1), 0.175e6),
        ("wrn-16-2", lambda: wrn_params_by_hand(16, 2), 0.69e6),
        ("wrn-40-2", lambda: wrn_params_by_hand(40, 2), 2.24e6),
        ("resnet20", lambda: resnet_params_by_hand(20), 0.27e6),
        ("resnet56", lambda: resnet_params_by_hand(56), 0.85e6),
    ],
)
def test_parameter_counts(name, by_hand, published):
    model = build_model(name, num_classes=10, in_channels=3)
    assert n_params(model) == by_hand()
    assert abs(n_params(model) - published) / published < 0.02


def test_parameter_count_follows_input_channels_and_classes():
    assert n_params(wrn(16, 1, num_classes=100, in_channels=1)) == wrn_params_by_hand(16, 1, 100, 1)
    assert n_params(build_model("resnet8", 7, 1)) == resnet_params_by_hand(8, 7, 1)


# ---------------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_image_model_output_shape(name, shape):
    model = build_model(name, num_classes=10, in_channels=shape[0])
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_mlp_output_shape(shape):
    model = build_model("mlp", num_classes=10, in_channels=shape[0], input_size=shape[1:])
    assert model(torch.randn(4, *shape)).shape == (4, 10)
    with pytest.raises(ValueError, match="input features"):
        model(torch.randn(4, shape[0], 5, 5))


def test_cnn1d_output_shape():
    model = build_model("cnn1d", num_classes=10, in_channels=1)
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)
    assert model(torch.randn(3, 40)).shape == (3, 10)  # (N, L) arrays as one channel
    mlp = build_model("mlp", 10, 1, input_size=40)
    assert mlp(torch.randn(3, 1, 40)).shape == (3, 10)


def test_probe_shapes_hand_computed_downsampling():
    # WRN-16-2: 16k, 32k, 64k channels; stride 1, 2, 2 (3x3, pad 1).
    m = build_model("wrn-16-2", 10, 3)
    for h in (32, 28, 30):
        got = probe_shapes(m, ["conv1", "block1", "block2", "block3", "relu", "pool", "fc"], (3, h, h))
        h2, h3 = down(h), down(down(h))
        assert got == {
            "conv1": (16, h, h),
            "block1": (32, h, h),
            "block2": (64, h2, h2),
            "block3": (128, h3, h3),
            "relu": (128, h3, h3),
            "pool": (128, 1, 1),
            "fc": (10,),
        }
    assert (down(28), down(down(28)), down(30), down(down(30))) == (14, 7, 15, 8)

    r = build_model("resnet20", 10, 1)
    assert probe_shapes(r, ["layer1", "layer2", "layer3", "layer2.0.shortcut"], (1, 28, 28)) == {
        "layer1": (16, 28, 28),
        "layer2": (32, 14, 14),
        "layer3": (64, 7, 7),
        "layer2.0.shortcut": (32, 14, 14),
    }
    c = build_model("cnn-small", 10, 1, width=8)
    assert probe_shapes(c, ["stage1", "stage2", "stage3", "pool"], (1, 28, 28)) == {
        "stage1": (8, 28, 28),
        "stage2": (16, 14, 14),
        "stage3": (32, 7, 7),
        "pool": (32, 7, 7),
    }
    assert probe_shapes(c, ["stage3", "pool"], (1, 32, 32)) == {"stage3": (32, 8, 8), "pool": (32, 7, 7)}
    c1 = build_model("cnn1d", 10, 1, width=4)
    assert probe_shapes(c1, ["stage1", "stage2", "stage3", "fc"], (1, 40)) == {
        "stage1": (4, 40),
        "stage2": (8, 20),
        "stage3": (16, 10),
        "fc": (10,),
    }
    mlp = build_model("mlp", 10, 1, input_size=(28, 28), hidden=(32, 16))
    assert probe_shapes(mlp, ["flatten", "layer1", "layer2"], (1, 28, 28)) == {
        "flatten": (784,),
        "layer1": (32,),
        "layer2": (16,),
    }


@pytest.mark.parametrize("name", list(MODEL_NAMES))
def test_every_stage_can_be_hooked(name):
    shape = (1, 40) if name == "cnn1d" else (1, 28, 28)
    model = build_model(name, 10, 1, input_size=shape[1:])
    layers = [*model.stage_names, "fc"]
    with FeatureExtractor(model, layers) as fx:
        out, feats = fx(torch.randn(2, *shape))
        assert list(feats) == layers
        assert all(f.shape[0] == 2 for f in feats.values())
        assert torch.equal(feats["fc"], out)
    assert model.feature_dim == model.fc.in_features


def test_every_named_module_fires():
    model = build_model("resnet8", 10, 3)
    names = [n for n, _ in model.named_modules() if n]
    with FeatureExtractor(model, names) as fx:
        _, feats = fx(torch.randn(2, 3, 16, 16))
    assert set(feats) == set(names)


# ---------------------------------------------------------------------------------------------------
# Hook validation and cleanup


def test_unknown_layer_suggests_close_match():
    model = build_model("wrn-16-1", 10, 3)
    with pytest.raises(ValueError, match=r"did you mean 'block2'") as e:
        FeatureExtractor(model, ["blok2"])
    assert "block1" in str(e.value) and "fc" in str(e.value)
    with pytest.raises(ValueError, match="no module named 'zzz'"):
        probe_shapes(model, ["zzz"], (3, 8, 8))
    with pytest.raises(ValueError, match="twice"):
        FeatureExtractor(model, ["fc", "fc"])
    with pytest.raises(TypeError):
        FeatureExtractor(model, "fc")
    assert all(not m._forward_hooks for m in model.modules())


class _Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 3)
        self.pair = _Pair()

    def forward(self, x):
        return self.used(x) + self.pair(x)[0]


class _Pair(nn.Module):
    def forward(self, x):
        return x[:, :3], x[:, 3:]


def test_probe_shapes_rejects_idle_and_non_tensor_layers():
    m = _Odd()
    assert probe_shapes(m, ["used"], (4,)) == {"used": (3,)}
    with pytest.raises(ValueError, match="did not run"):
        probe_shapes(m, ["unused"], (4,))
    with pytest.raises(ValueError, match="not a tensor"):
        probe_shapes(m, ["pair"], (4,))
    with pytest.raises(ValueError, match="input_shape"):
        probe_shapes(m, ["used"], (0,))
    assert all(not mod._forward_hooks for mod in m.modules())
    with FeatureExtractor(m, ["unused"]) as fx, pytest.raises(RuntimeError, match="did not run"):
        fx(torch.randn(2, 4))


def test_probe_shapes_restores_training_flags_and_bn_stats():
    model = build_model("cnn-small", 10, 1, width=4)
    model.train()
    model.stage2.eval()  # a mixed state must come back exactly
    before = copy.deepcopy(model.state_dict())
    flags = {n: m.training for n, m in model.named_modules()}
    probe_shapes(model, ["stage3"], (1, 28, 28))
    assert {n: m.training for n, m in model.named_modules()} == flags
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_hooks_removed_leave_nothing_behind():
    model = build_model("wrn-16-1", 10, 3)
    modules = dict(model.named_modules())
    fx = FeatureExtractor(model, ["block1", "block3", "fc"])
    assert all(len(modules[n]._forward_hooks) == 1 for n in fx.layers)
    fx(torch.randn(2, 3, 8, 8))
    assert fx.features
    fx.remove()
    fx.remove()  # idempotent
    assert not fx.features and not fx.active
    assert all(not m._forward_hooks for m in model.modules())
    model(torch.randn(2, 3, 8, 8))
    assert not fx.features
    with pytest.raises(RuntimeError, match="removed"):
        fx(torch.randn(2, 3, 8, 8))
    with FeatureExtractor(model, ["block2"]):
        assert len(modules["block2"]._forward_hooks) == 1
    assert all(not m._forward_hooks for m in model.modules())


def test_features_keep_graph_unless_detached():
    model = build_model("cnn-small", 10, 1, width=4)
    x = torch.randn(2, 1, 12, 12)
    with FeatureExtractor(model, ["stage2"]) as fx:
        _, feats = fx(x)
        feats["stage2"].pow(2).mean().backward()
    assert model.stage1[0].conv.weight.grad is not None
    with FeatureExtractor(model, ["stage2"], detach=True) as fx:
        _, feats = fx(x)
        assert not feats["stage2"].requires_grad


# ---------------------------------------------------------------------------------------------------
# Frozen teacher


class _Pair2(nn.Module):
    def __init__(self, teacher, student):
        super().__init__()
        self.teacher, self.student = teacher, student


def _kd_step(pair: _Pair2, opt, x):
    pair.train()
    with torch.no_grad():
        zt = pair.teacher(x)
    zs = pair.student(x)
    loss = nn.functional.kl_div(zs.log_softmax(1), zt.log_softmax(1), log_target=True, reduction="batchmean")
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_freeze_teacher_bn_stats_and_params_never_move():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16) * 3 + 1  # far from BN's initial statistics (0, 1)

    def run(freeze: bool):
        teacher = build_model("wrn-16-1", 10, 3, seed=1)
        if freeze:
            assert freeze_teacher(teacher) is teacher
        pair = _Pair2(teacher, build_model("cnn-small", 10, 3, width=4, seed=2))
        # optimizer over everything, as a careless method might do; momentum + weight decay would
        # move any parameter that received a gradient
        opt = torch.optim.SGD(pair.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
        before = copy.deepcopy(teacher.state_dict())
        s_before = copy.deepcopy(pair.student.state_dict())
        for _ in range(2):
            _kd_step(pair, opt, x)
        changed = [k for k, v in teacher.state_dict().items() if not torch.equal(v, before[k])]
        s_changed = [k for k, v in pair.student.state_dict().items() if not torch.equal(v, s_before[k])]
        return teacher, changed, s_changed

    teacher, changed, s_changed = run(freeze=True)
    assert changed == []
    assert s_changed  # the student did train
    assert not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert is_frozen(teacher)
    # control: the identical procedure without freezing does move the teacher's BN statistics
    _, changed_unfrozen, _ = run(freeze=False)
    assert any(k.endswith("running_mean") for k in changed_unfrozen)
    assert any(k.endswith("running_var") for k in changed_unfrozen)


def test_freeze_teacher_survives_train_calls_copies_and_flag_tampering():
    teacher = freeze_teacher(build_model("resnet8", 10, 1, seed=0))
    freeze_teacher(teacher)  # idempotent: one pre-hook only
    assert len(teacher._forward_pre_hooks) == 1
    assert teacher.train() is teacher and not teacher.training
    teacher.layer2.train(True)
    assert not any(m.training for m in teacher.modules())
    for clone in (copy.deepcopy(teacher), pickle.loads(pickle.dumps(teacher))):
        clone.train()
        assert is_frozen(clone)
        assert clone.train.module is clone  # the override points at the clone, not the original
    teacher.load_state_dict(build_model("resnet8", 10, 1, seed=5).state_dict())
    assert is_frozen(teacher)
    # direct flag tampering is undone before the next forward
    teacher.bn1.training = True
    before = teacher.bn1.running_mean.clone()
    teacher(torch.randn(4, 1, 8, 8) + 5)
    assert torch.equal(teacher.bn1.running_mean, before)
    assert not teacher.bn1.training


# ---------------------------------------------------------------------------------------------------
# Student interpolation


def _trained_bn(model: nn.Module, x) -> nn.Module:
    model.train()
    with torch.no_grad():
        model(x)
    return model


def test_interpolate_student_endpoints_and_midpoint():
    x = torch.randn(4, 3, 8, 8) + 2
    teacher = _trained_bn(build_model("wrn-16-1", 10, 3, seed=0), x)
    teacher.bn_final.num_batches_tracked.fill_(7)
    init = build_model("wrn-16-1", 10, 3, seed=1)
    t_state, i_state = teacher.state_dict(), init.state_dict()

    s1 = interpolate_student(teacher, copy.deepcopy(init), 1.0)
    for k, v in s1.state_dict().items():
        assert torch.equal(v, t_state[k]), k
    s0 = interpolate_student(teacher, copy.deepcopy(init), 0)
    for k, v in s0.state_dict().items():
        assert torch.equal(v, i_state[k]), k
    sh = interpolate_student(teacher, copy.deepcopy(init), 0.5)
    for k, v in sh.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (t_state[k] + i_state[k]) / 2, rtol=0, atol=1e-6)
    assert sh.bn_final.num_batches_tracked.item() == 4  # round(0.5 * 7 + 0.5 * 0) = round(3.5) = 4
    assert all(p.requires_grad for p in sh.parameters())
    # works from a frozen teacher too and does not unfreeze it
    freeze_teacher(teacher)
    interpolate_student(teacher, copy.deepcopy(init), 0.3)
    assert is_frozen(teacher)


def test_interpolate_student_rejects_mismatch_and_bad_lambda():
    a = build_model("wrn-16-1", 10, 3)
    with pytest.raises(ValueError, match="same architecture"):
        interpolate_student(a, build_model("wrn-16-2", 10, 3), 0.5)
    with pytest.raises(ValueError, match="only in"):
        interpolate_student(a, build_model("resnet8", 10, 3), 0.5)
    with pytest.raises(ValueError, match="same architecture"):
        interpolate_student(a, build_model("wrn-16-1", 100, 3), 0.5)
    for lam in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="lam"):
            interpolate_student(a, build_model("wrn-16-1", 10, 3), lam)


# ---------------------------------------------------------------------------------------------------
# Registry and determinism


def test_same_seed_same_init_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a = build_model("wrn-16-1", 10, 3, seed=123)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_model("wrn-16-1", 10, 3, seed=123)
    c = build_model("wrn-16-1", 10, 3, seed=124)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    assert not torch.equal(a.block1[0].conv1.weight, c.block1[0].conv1.weight)
    torch.manual_seed(5)
    d = build_model("cnn1d", 10, 1)
    torch.manual_seed(5)
    e = build_model("cnn1d", 10, 1)
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters(), strict=True))


def test_kaiming_init():
    m = build_model("wrn-40-2", 10, 3, seed=0)
    w = m.block3[1].conv1.weight  # 128 -> 128, 3x3: He-normal (fan_out) std sqrt(2 / (128 * 9))
    assert abs(w.std().item() / (2 / (128 * 9)) ** 0.5 - 1) < 0.02
    assert torch.equal(m.bn_final.weight, torch.ones(128)) and not m.fc.bias.any()


def test_registry_names_and_errors():
    assert parse_model_spec("WRN-40-2") == ("wrn", {"depth": 40, "width": 2})
    assert parse_model_spec("resnet56") == ("resnet", {"depth": 56})
    assert parse_model_spec("cnn-small") == ("cnn-small", {})
    assert build_model("wrn-22-1", 10, 3).depth == 22
    for bad in ("vgg11", "wrn-17-2", "wrn-16-0", "resnet21", "wrn40-2"):
        with pytest.raises(ValueError, match="valid names: wrn-16-1") as e:
            build_model(bad, 10, 3)
        assert "resnet20" in str(e.value) and "cnn1d" in str(e.value)
    with pytest.raises(ValueError, match="unknown option"):
        build_model("resnet20", 10, 3, width=4)
    with pytest.raises(ValueError, match="input_size"):
        build_model("mlp", 10, 1)
    assert build_model("mlp", 10, 1, in_features=12).in_features == 12
    assert build_model("cnn-small", 10, 1, width=4).fc.in_features == 16 * 49
    assert build_model("cnn-small", 10, 1, width=4, pool_size=1).fc.in_features == 16
    assert build_model("wrn-16-1", 10, 3, dropout=0.3).block1[0].dropout.p == 0.3
    with pytest.raises(ValueError, match="depth"):
        wrn(15, 1, 10)


def test_collect_features_batches_and_restores_modes():
    from infodistill.models import build_model, collect_features

    torch.manual_seed(0)
    model = build_model("cnn-small", num_classes=10, in_channels=1, width=4)
    model.train()
    model.stage2.eval()  # a mix of modes must come back as it was
    x = torch.randn(7, 1, 12, 12)
    logits, feats = collect_features(model, ["stage2", "stage3"], x, batch_size=3)
    assert model.training and not model.stage2.training and model.stage1.training
    model.eval()
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(logits, ref, atol=1e-6)
    assert feats["stage3"].shape[0] == 7 and feats["stage3"].dtype == torch.float32


def test_every_row_of_the_model_table_builds_and_has_its_stages():
    """The one model table: each listed name builds, takes exactly its family's options, and the
    stage modules it declares (the pairs E1 distils) exist with the names given."""
    from infodistill.models.registry import FAMILIES, MODEL_NAMES, build_model, parse_model_spec

    assert MODEL_NAMES == tuple(n for f in FAMILIES.values() for n in f.examples)
    for name in MODEL_NAMES:
        family = parse_model_spec(name)[0]
        shape = {"cnn1d": (1, 40), "mlp": (1, 8, 8)}.get(family, (3, 32, 32))
        model = build_model(name, num_classes=10, in_channels=shape[0], input_size=shape[1:])
        modules = dict(model.named_modules())
        for stage in FAMILIES[family].stages or ():
            assert stage in modules, (name, stage)
        with pytest.raises(ValueError, match="unknown option"):
            build_model(name, num_classes=10, in_channels=shape[0], input_size=shape[1:], not_an_option=1)
