"""Tests of infodistill.data: IDX files, offline loaders, the restricted unpickler, transforms."""

from __future__ import annotations

import gzip
import os
import pickle
import pickletools
import struct
import sys

import numpy as np
import pytest
import torch

from infodistill.data import (
    DATASET_NAMES,
    DEFAULT_FASHION_MNIST_ROOT,
    ArrayDataset,
    Compose,
    DataError,
    Normalize,
    RandomCropPad,
    RandomHFlip,
    dataset_stats,
    load_cifar,
    load_dataset,
    load_digits_dataset,
    load_fashion_mnist,
    load_image_folder,
    load_mnist1d,
    mixup,
    read_idx,
    safe_load_pickle,
    write_idx,
)

# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "dtype,shape",
    [(np.uint8, (3, 4, 5)), (np.int8, (7,)), (np.int16, (2, 3)), (np.int32, (4,)), (np.float32, (2, 2, 2, 2)),
     (np.float64, (3, 1))],
)  # fmt: skip
def test_idx_roundtrip(tmp_path, suffix, dtype, shape):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / f"a-idx{len(shape)}{suffix}", arr)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable


def test_idx_header_bytes_are_big_endian(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.arange(3, dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2])
    path = write_idx(tmp_path / "x-idx1", np.array([1], dtype=np.int32))
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 0, 1])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_data(tmp_path, gz):
    full = write_idx(tmp_path / "full-idx3-ubyte", np.zeros((2, 4, 4), np.uint8)).read_bytes()
    path = tmp_path / ("cut-idx3-ubyte" + (".gz" if gz else ""))
    cut = full[:-5]
    path.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DataError, match="truncated IDX data") as err:
        read_idx(path)
    assert path.name in str(err.value) and "\n" not in str(err.value)


def test_idx_truncated_header_and_gzip_stream(tmp_path):
    path = tmp_path / "hdr-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0]))
    with pytest.raises(DataError, match="truncated IDX header") as err:
        read_idx(path)
    assert path.name in str(err.value)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="tiny: truncated"):
        read_idx(tiny)
    gz = tmp_path / "cut.gz"
    gz.write_bytes(gzip.compress(bytes(1000))[:-12])
    with pytest.raises(DataError, match="cut.gz: corrupt or truncated gzip"):
        read_idx(gz)


def test_idx_wrong_magic_and_type_code(tmp_path):
    path = tmp_path / "bad-magic"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(DataError, match="bad-magic: not an IDX file"):
        read_idx(path)
    path = tmp_path / "bad-code"
    path.write_bytes(bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(DataError, match="bad-code: unknown IDX element type code 0x0A"):
        read_idx(path)


def test_idx_size_mismatch(tmp_path):
    path = write_idx(tmp_path / "extra-idx1-ubyte", np.arange(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(DataError, match="extra-idx1-ubyte: IDX size mismatch .* 2 trailing bytes"):
        read_idx(path)


def test_idx_missing_file_and_unsupported_dtype(tmp_path):
    with pytest.raises(DataError, match="nope: file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(ValueError, match="no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


# ---------------------------------------------------------------- Fashion-MNIST


def _fake_fashion(root, n_train=20, n_test=10, gz=(True, False, True, False)):
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    arrays["train-images-idx3-ubyte"][0, 0, :2] = [0, 255]
    for (name, arr), use_gz in zip(arrays.items(), gz, strict=True):
        write_idx(root / (name + (".gz" if use_gz else "")), arr)
    return arrays


def test_fashion_mnist_fake_directory(tmp_path):
    arrays = _fake_fashion(tmp_path / "fm")
    train, test = load_fashion_mnist(tmp_path / "fm")
    assert (len(train), len(test)) == (20, 10)
    assert train.x.shape == (20, 1, 28, 28) and train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64 and train.num_classes == 10 and len(train.classes) == 10
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    expected = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255)[:, None]
    torch.testing.assert_close(test.x, expected)
    assert test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert (train.split, test.split) == ("train", "test")


def test_fashion_mnist_nuisance_adds_fixed_plane_wave_patterns(tmp_path):
    """Each image gains ``nuisance`` x one pattern: a sum of three plane waves with unit standard
    deviation, here recomputed pixel by pixel from the same draws (the module computes them as
    outer products), the same on every load, independent of the image."""
    import math

    from infodistill.data.nuisance import CYCLES, WAVES, nuisance_fields

    _fake_fashion(tmp_path / "fm")
    plain, plain_test = load_fashion_mnist(tmp_path / "fm")
    train, test = load_fashion_mnist(tmp_path / "fm", nuisance=0.5)
    for seed, (noisy, clean) in enumerate(((train, plain), (test, plain_test))):
        rng = np.random.default_rng(seed)
        draws = [
            (
                rng.uniform(*CYCLES, len(clean)),
                rng.uniform(0, math.pi, len(clean)),
                rng.uniform(0, 2 * math.pi, len(clean)),
            )
            for _ in range(WAVES)
        ]
        for i in (0, len(clean) - 1):
            field = np.array(
                [
                    [
                        sum(
                            math.cos(
                                2 * math.pi * f[i] * (math.cos(t[i]) * c / 28 + math.sin(t[i]) * r / 28)
                                + p[i]
                            )
                            for f, t, p in draws
                        )
                        for c in range(28)
                    ]
                    for r in range(28)
                ]
            )
            field /= field.std()
            torch.testing.assert_close(
                noisy.x[i, 0] - clean.x[i, 0],
                torch.tensor(0.5 * field, dtype=torch.float32),
                atol=2e-6,
                rtol=0,
            )
    fields = nuisance_fields(50, 28, 28, seed=3)
    assert np.allclose(fields.reshape(50, -1).std(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(fields, nuisance_fields(50, 28, 28, seed=3))
    assert not np.array_equal(fields, nuisance_fields(50, 28, 28, seed=4))
    assert torch.equal(load_fashion_mnist(tmp_path / "fm", nuisance=0.0)[0].x, plain.x)
    for bad in (-1.0, "1", True, float("nan")):
        with pytest.raises(DataError, match="nuisance must be a number >= 0"):
            load_fashion_mnist(tmp_path / "fm", nuisance=bad)
    # an option another data set does not take: a DataError naming that set's options
    with pytest.raises(
        DataError, match="dataset 'digits' has no option 'nuisance'; its options: seed, test_size"
    ):
        load_dataset("digits", nuisance=1.0)
    with pytest.raises(
        DataError, match="dataset 'fashion-mnist' has no option 'noise'; its options: nuisance"
    ):
        load_dataset("fashion-mnist", tmp_path / "fm", noise=1.0)


def test_fashion_mnist_missing_directory_says_how_to_install(tmp_path):
    with pytest.raises(DataError) as err:
        load_fashion_mnist(tmp_path / "absent")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "does not exist" in msg
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        assert name in msg
    assert "\n" not in msg


def test_fashion_mnist_partial_directory_and_count_mismatch(tmp_path):
    root = tmp_path / "fm"
    _fake_fashion(root)
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        DataError, match="lacks t10k-labels-idx1-ubyte.*apt-get install dataset-fashion-mnist"
    ):
        load_fashion_mnist(root)
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: 9 labels for 10 images"):
        load_fashion_mnist(root)


@pytest.mark.skipif(
    not (DEFAULT_FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist():
    train, test = load_fashion_mnist()
    assert (len(train), len(test)) == (60000, 10000)
    assert train.input_shape == (1, 28, 28)
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert torch.bincount(train.y).tolist() == [6000] * 10
    assert torch.bincount(test.y).tolist() == [1000] * 10


# ---------------------------------------------------------------- CIFAR, python layout


def _cifar_rows(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def _dump(path, obj, protocol):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def _fake_cifar10_py(root, protocol=2, n=2):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = _cifar_rows(n, k)
        labels = [(k + j) % 10 for j in range(n)]
        # Bytes keys, list labels, uint8 array: what the real Python 2 files hold.
        _dump(
            d / name,
            {b"batch_label": b"x", b"data": data, b"labels": labels, b"filenames": [b"a"] * n},
            protocol,
        )
        batches[name] = (data, labels)
    names = [f"class{i}".encode() for i in range(10)]
    _dump(d / "batches.meta", {b"label_names": names, b"num_vis": 3072, b"num_cases_per_batch": n}, protocol)
    return d, batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_python_layout(tmp_path, protocol):
    d, batches = _fake_cifar10_py(tmp_path, protocol)
    train, test = load_cifar(tmp_path, num_classes=10)
    assert train.x.shape == (10, 3, 32, 32) and test.x.shape == (2, 3, 32, 32)
    assert train.classes[3] == "class3" and train.name == "cifar10"
    data, labels = batches["test_batch"]
    assert test.y.tolist() == labels
    # Channel-major rows: value (c, i, j) sits at column c*1024 + i*32 + j.
    assert float(test.x[1, 2, 5, 7]) == pytest.approx(data[1, 2 * 1024 + 5 * 32 + 7] / 255)
    assert train.y.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    again, _ = load_cifar(d, num_classes=10)  # the extracted folder itself works too
    assert torch.equal(again.x, train.x)


def test_cifar100_python_layout_fine_and_coarse(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for name, n in (("train", 4), ("test", 3)):
        _dump(
            d / name,
            {
                b"data": _cifar_rows(n, n),
                b"fine_labels": [99 - j for j in range(n)],
                b"coarse_labels": [19] * n,
            },
            4,
        )
    _dump(d / "meta", {b"fine_label_names": [b"f%d" % i for i in range(100)],
                       b"coarse_label_names": [b"c%d" % i for i in range(20)]}, 4)  # fmt: skip
    train, test = load_cifar(tmp_path, num_classes=100)
    assert train.num_classes == 100 and train.y.tolist() == [99, 98, 97, 96] and train.classes[99] == "f99"
    ctrain, ctest = load_cifar(tmp_path, num_classes=100, coarse=True)
    assert ctrain.num_classes == 20 and ctest.y.tolist() == [19] * 3 and ctrain.classes[0] == "c0"


def _py2_batch(data, labels):
    """A pickle laid out as Python 2 cPickle wrote the real CIFAR files (protocol 2, str = bytes,
    numpy 1.x module names), assembled opcode by opcode since Python 3 cannot write one."""
    n, d = data.shape
    out = b"\x80\x02}(U\x04data"
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
    out += b"(K\x01M" + struct.pack("<H", n) + b"M" + struct.pack("<H", d) + b"\x86"
    out += b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89T" + struct.pack("<I", data.nbytes) + data.tobytes() + b"tb"
    out += b"U\x06labels](" + b"".join(b"K" + bytes([lab]) for lab in labels) + b"eu."
    return out


def test_cifar10_python2_style_pickles(tmp_path):
    d, _ = _fake_cifar10_py(tmp_path)
    data = _cifar_rows(3, 42)
    (d / "test_batch").write_bytes(_py2_batch(data, [7, 8, 9]))
    _, test = load_cifar(tmp_path)
    assert test.y.tolist() == [7, 8, 9]
    torch.testing.assert_close(test.x, torch.from_numpy(data.reshape(3, 3, 32, 32) / 255).float())


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    d, _ = _fake_cifar10_py(tmp_path)
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    assert "system" in " ".join(str(arg) for _, arg, _ in pickletools.genops(payload))
    (d / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match=r"data_batch_3: refusing to unpickle global (posix|os|nt)\.system"):
        load_cifar(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(S'1+1'\ntR.",  # protocol 0 GLOBAL + REDUCE
        b"cnumpy\nload\n(S'x'\ntR.",  # numpy itself, but not an array constructor
        b"c_codecs\nencode\n(X\x03\x00\x00\x00abcX\n\x00\x00\x00zlib_codectR.",  # codec other than latin1
    ],
)
def test_restricted_unpickler_refuses_other_callables(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(DataError, match="evil.pkl: refusing"):
        safe_load_pickle(path)


def test_cifar_python_layout_corrupt_and_wrong_files(tmp_path):
    d, _ = _fake_cifar10_py(tmp_path)
    good = (d / "data_batch_2").read_bytes()
    (d / "data_batch_2").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="data_batch_2: corrupt or truncated pickle"):
        load_cifar(tmp_path)
    _dump(d / "data_batch_2", {b"data": _cifar_rows(2, 0)}, 2)
    with pytest.raises(DataError, match="data_batch_2: expected keys 'data' and 'labels'"):
        load_cifar(tmp_path)
    _dump(d / "data_batch_2", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 2)
    with pytest.raises(DataError, match=r"data_batch_2: 'data' must be a uint8 array of shape \(N, 3072\)"):
        load_cifar(tmp_path)
    (d / "data_batch_2").unlink()
    with pytest.raises(DataError, match="missing data_batch_2; expected cifar-10-batches-bin"):
        load_cifar(tmp_path)


def test_cifar_missing_directory_describes_layout(tmp_path):
    with pytest.raises(DataError, match="does not exist; expected cifar-10-batches-bin.*cifar-10-batches-py"):
        load_cifar(tmp_path / "none")
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="extract it with `tar xzf.*cifar-100-python"):
        load_cifar(tmp_path, num_classes=100)


# ---------------------------------------------------------------- CIFAR, binary layout


def _write_bin(path, labels, pixels):
    labels = np.asarray(labels, np.uint8).reshape(len(pixels), -1)
    path.write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


def test_cifar10_binary_layout_is_preferred(tmp_path):
    _fake_cifar10_py(tmp_path)  # present, but the binary version must win
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    for i in range(1, 6):
        _write_bin(d / f"data_batch_{i}.bin", [9, 9, 9], _cifar_rows(3, 10 + i))
    test_pixels = _cifar_rows(2, 99)
    _write_bin(d / "test_batch.bin", [4, 5], test_pixels)
    (d / "batches.meta.txt").write_text("\n".join(f"name{i}" for i in range(10)) + "\n\n")
    train, test = load_cifar(tmp_path)
    assert len(train) == 15 and train.y.unique().tolist() == [9]
    assert test.y.tolist() == [4, 5] and test.classes[9] == "name9"
    torch.testing.assert_close(test.x, torch.from_numpy(test_pixels.reshape(2, 3, 32, 32) / 255).float())
    with open(d / "test_batch.bin", "ab") as fh:
        fh.write(b"\x00" * 100)
    with pytest.raises(
        DataError, match="test_batch.bin: 6246 bytes is not a positive multiple of the 3073-byte"
    ):
        load_cifar(tmp_path)


def test_cifar100_binary_layout(tmp_path):
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    _write_bin(d / "train.bin", [[3, 77], [4, 11]], _cifar_rows(2, 0))
    _write_bin(d / "test.bin", [[19, 99]], _cifar_rows(1, 1))
    train, test = load_cifar(d, num_classes=100)
    assert train.y.tolist() == [77, 11] and test.y.tolist() == [99] and train.classes is None
    ctrain, _ = load_cifar(d, num_classes=100, coarse=True)
    assert ctrain.y.tolist() == [3, 4] and ctrain.num_classes == 20
    _write_bin(d / "test.bin", [[19, 100]], _cifar_rows(1, 1))
    with pytest.raises(DataError, match=r"test.bin: labels span \[100, 100\], outside \[0, 100\)"):
        load_cifar(d, num_classes=100)


# ---------------------------------------------------------------- image folders


def _png(path, color, size=(6, 5)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder_stratified(tmp_path):
    pytest.importorskip("PIL")
    for i in range(4):
        _png(tmp_path / "zebra" / f"{i}.png", (255, 0, 0))
        _png(tmp_path / "ant" / f"{i}.PNG", (0, 0, 255))
    (tmp_path / "ant" / "notes.txt").write_text("ignored")
    train, test = load_image_folder(tmp_path, seed=0)
    assert train.classes == ("ant", "zebra")
    assert train.x.shape == (6, 3, 5, 6) and test.x.shape == (2, 3, 5, 6)
    assert sorted(test.y.tolist()) == [0, 1]
    for ds in (train, test):
        for x, y in zip(ds.x, ds.y, strict=True):
            channel = 2 if int(y) == 0 else 0  # ant is blue, zebra red
            assert float(x[channel].min()) == 1.0 and float(x.sum()) == 30.0
    again, _ = load_image_folder(tmp_path, seed=0)
    assert torch.equal(again.y, train.y)


def test_image_folder_sizes_splits_and_cub(tmp_path):
    pytest.importorskip("PIL")
    root = tmp_path / "mixed"
    _png(root / "a" / "x.png", (1, 2, 3), size=(8, 8))
    _png(root / "a" / "y.jpg", (1, 2, 3), size=(5, 7))
    _png(root / "b" / "x.png", (1, 2, 3))
    _png(root / "b" / "y.png", (1, 2, 3))
    with pytest.raises(DataError, match="pass size= to resize"):
        load_image_folder(root, test_size=0.5)
    train, test = load_image_folder(root, size=4, test_size=0.5)
    assert train.input_shape == (3, 4, 4) and len(train) + len(test) == 4

    split = tmp_path / "split"
    _png(split / "train" / "cat" / "1.png", (0, 0, 0))
    _png(split / "train" / "dog" / "1.png", (0, 0, 0))
    _png(split / "val" / "dog" / "2.png", (0, 0, 0))
    train, test = load_image_folder(split)
    assert len(train) == 2 and test.y.tolist() == [1] and test.classes == ("cat", "dog")

    cub = tmp_path / "CUB_200_2011"
    _png(cub / "images" / "001.Albatross" / "a.jpg", (0, 0, 0))
    _png(cub / "images" / "002.Auklet" / "b.jpg", (0, 0, 0))
    _png(cub / "images" / "002.Auklet" / "c.jpg", (0, 0, 0))
    (cub / "images.txt").write_text("1 001.Albatross/a.jpg\n2 002.Auklet/b.jpg\n3 002.Auklet/c.jpg\n")
    (cub / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")
    train, test = load_image_folder(cub)
    assert train.y.tolist() == [0, 1] and test.y.tolist() == [1] and train.num_classes == 2


def test_image_folder_empty_or_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "none")
    with pytest.raises(DataError, match="no class folders"):
        load_image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class: class folder holds no images"):
        load_image_folder(tmp_path)


# ---------------------------------------------------------------- digits, MNIST-1D


def test_digits_shapes_and_determinism():
    train, test = load_digits_dataset()
    assert (len(train), len(test)) == (1347, 450)
    assert train.input_shape == (1, 8, 8) and 0.0 <= float(train.x.min()) and float(train.x.max()) == 1.0
    counts = torch.bincount(test.y)
    assert int(counts.min()) >= 43 and int(counts.max()) <= 46  # stratified: 25 % of 174..183 per class
    train2, _ = load_digits_dataset()
    assert torch.equal(train.x, train2.x) and torch.equal(train.y, train2.y)
    train3, _ = load_digits_dataset(seed=1)
    assert not torch.equal(train.x, train3.x)


def test_mnist1d_shapes_and_determinism():
    pytest.importorskip("mnist1d")
    np_state = np.random.get_state()  # noqa: NPY002
    train, test = load_mnist1d(n_samples=200, seed=3)
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002
    assert train.x.shape == (160, 1, 40) and test.x.shape == (40, 1, 40)
    assert train.x.dtype == torch.float32 and train.num_classes == 10
    assert torch.bincount(torch.cat([train.y, test.y])).tolist() == [20] * 10
    again, _ = load_mnist1d(n_samples=200, seed=3)
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)
    other, _ = load_mnist1d(n_samples=200, seed=4)
    assert not torch.equal(other.x, train.x)
    short, _ = load_mnist1d(n_samples=20, final_seq_length=24)
    assert short.input_shape == (1, 24)
    with pytest.raises(ValueError, match="unknown mnist1d generator argument"):
        load_mnist1d(n_samples=20, bogus=1)


def test_mnist1d_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DataError, match="pip install mnist1d"):
        load_mnist1d(n_samples=20)


# ---------------------------------------------------------------- load_dataset, ArrayDataset


def test_load_dataset_dispatch_and_errors(tmp_path):
    with pytest.raises(
        DataError, match="unknown dataset 'mnist'; valid names: cifar10, cifar100, digits"
    ) as err:
        load_dataset("mnist")
    for name in DATASET_NAMES:
        assert name in str(err.value)
    train, _ = load_dataset("Digits")
    assert train.name == "digits"
    with pytest.raises(DataError, match="needs root"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="takes no root"):
        load_dataset("digits", root=tmp_path)
    _fake_fashion(tmp_path / "fm")
    train, _ = load_dataset("fashion_mnist", root=tmp_path / "fm")
    assert len(train) == 20


def test_array_dataset_indexing_and_subset():
    ds = ArrayDataset(torch.arange(24.0).view(4, 1, 2, 3), [0, 1, 2, 1], 3, "toy", classes=["a", "b", "c"])
    x, y = ds[1]
    assert x.shape == (1, 2, 3) and int(y) == 1
    xb, yb = ds[torch.tensor([3, 0])]
    assert xb.shape == (2, 1, 2, 3) and yb.tolist() == [1, 0]
    sub = ds.subset([2, 3])
    assert len(sub) == 2 and sub.y.tolist() == [2, 1] and sub.classes == ("a", "b", "c")
    assert ds.subset(np.array([True, False, False, True])).y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="outside"):
        ArrayDataset(torch.zeros(2, 1, 3), [0, 3], 3, "bad")
    with pytest.raises(ValueError, match="x must be"):
        ArrayDataset(torch.zeros(2, 3), [0, 1], 3, "bad")


# ---------------------------------------------------------------- transforms


def test_random_crop_pad_matches_hand_slice():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5) + 1
    crop = RandomCropPad(4, padding=2)
    out = crop(x, torch.Generator().manual_seed(7))
    assert out.shape == (2, 3, 4, 4)
    g = torch.Generator().manual_seed(7)
    top = torch.randint(0, 9 - 4 + 1, (2,), generator=g)
    left = torch.randint(0, 9 - 4 + 1, (2,), generator=g)
    padded = torch.zeros(2, 3, 9, 9)
    padded[:, :, 2:7, 2:7] = x
    for k in range(2):
        t, le = int(top[k]), int(left[k])
        assert torch.equal(out[k], padded[k, :, t : t + 4, le : le + 4])
    assert torch.equal(RandomCropPad((5, 5), padding=0)(x), x)
    rect = RandomCropPad((3, 2), padding=1)(x, torch.Generator().manual_seed(0))
    assert rect.shape == (2, 3, 3, 2)
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCropPad(8, padding=1)(x)


def test_crop_and_flip_are_deterministic_given_generator():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    aug = Compose([RandomCropPad(8, padding=2), RandomHFlip(0.5)])
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_twice_is_identity():
    x = torch.rand(8, 3, 4, 6)
    flip = RandomHFlip(0.5)
    once = flip(x, torch.Generator().manual_seed(5))
    twice = flip(once, torch.Generator().manual_seed(5))
    assert torch.equal(twice, x) and not torch.equal(once, x)
    assert torch.equal(RandomHFlip(1.0)(x), x.flip(-1))
    assert torch.equal(RandomHFlip(0.0)(x), x)


def test_mixup_is_the_convex_combination_and_deterministic():
    x = torch.randn(10, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    m = mixup(x, 0.4, torch.Generator().manual_seed(3))
    assert 0.0 <= m.lam <= 1.0 and sorted(m.index.tolist()) == list(range(10))
    torch.testing.assert_close(m.x, m.lam * x + (1 - m.lam) * x[m.index])
    m2 = mixup(x, 0.4, torch.Generator().manual_seed(3))
    assert torch.equal(m.x, m2.x) and torch.equal(m.index, m2.index) and m.lam == m2.lam
    y = torch.nn.functional.one_hot(torch.arange(10) % 3, 3).float()
    torch.testing.assert_close(m.mix(y).sum(1), torch.ones(10))
    assert mixup(x, 0.0).lam == 1.0
    # Beta(1, 1) is uniform: the lambdas of many draws should have mean ~1/2, var ~1/12.
    g = torch.Generator().manual_seed(0)
    lams = np.array([mixup(x[:2], 1.0, g).lam for _ in range(2000)])
    assert abs(lams.mean() - 0.5) < 0.03 and abs(lams.var() - 1 / 12) < 0.01


def test_normalize_and_dataset_stats():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 2, 3, 3, generator=g) * torch.tensor([1.0, 4.0]).view(1, 2, 1, 1) + 2
    ds = ArrayDataset(x, torch.zeros(50, dtype=torch.int64), 1, "toy")
    mean, std = dataset_stats(ds, batch_size=7)
    ref = x.double().transpose(0, 1).reshape(2, -1)
    np.testing.assert_allclose(mean, ref.mean(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(1, unbiased=False).numpy(), rtol=1e-5)
    m2, s2 = dataset_stats(Normalize(mean, std)(x))
    np.testing.assert_allclose(m2, [0, 0], atol=1e-5)
    np.testing.assert_allclose(s2, [1, 1], atol=1e-5)
    with pytest.raises(ValueError, match="expects"):
        Normalize([0.5], [0.5])(x)


def test_symmetric_inputs_map_every_example_to_2x_minus_1_held_or_read_per_item():
    from infodistill.data.loader import ItemDataset, TensorPairs
    from infodistill.data.transforms import symmetric_inputs

    x = torch.tensor([[[0.0, 0.25, 1.0]], [[0.5, 0.75, 0.0]]])  # pixel values with exact halves
    held = ArrayDataset(x, [0, 1], 2, "toy")
    out = symmetric_inputs(held)
    assert out.x.tolist() == [[[-1.0, -0.5, 1.0]], [[0.0, 0.5, -1.0]]]
    assert held.x.tolist() == x.tolist()  # the original is untouched
    per_item = ItemDataset(lambda j: x[j], [0, 1], 2, "toy").subset([1])
    scaled = symmetric_inputs(per_item)
    assert len(scaled) == 1 and scaled[0][0].tolist() == [[0.0, 0.5, -1.0]] and int(scaled[0][1]) == 1
    with pytest.raises(ValueError, match="cannot scale the inputs of a TensorPairs"):
        symmetric_inputs(TensorPairs(x, torch.tensor([0, 1])))


def test_a_data_set_loaded_again_is_an_independent_copy_and_a_changed_file_is_read_again(tmp_path):
    import time

    a_train, _ = load_dataset("digits")
    b_train, _ = load_dataset("digits")
    assert torch.equal(a_train.x, b_train.x) and torch.equal(a_train.y, b_train.y)
    a_train.x.zero_()  # a caller that changes its copy in place changes nobody else's
    assert not torch.equal(a_train.x, b_train.x)
    assert torch.equal(load_dataset("digits")[0].x, b_train.x)
    root = tmp_path / "fm"
    _fake_fashion(root)
    first, _ = load_dataset("fashion-mnist", root)
    time.sleep(0.01)
    arrays = _fake_fashion(root, n_train=30)  # the files change: read again, not the kept copy
    second, _ = load_dataset("fashion-mnist", root)
    assert len(first) == 20 and len(second) == 30
    assert second.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
