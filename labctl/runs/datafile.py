"""The run's raw data: one HDF5 file (``data.h5``) appended as the run goes.

Rows go into resizable datasets, one per field, under the stream's group (``training/batches/loss``), and the file
is flushed after every append, so a process killed at any moment leaves a file that h5py opens with every row
appended before the last flush. Whole arrays (a spectrum, a crosstalk matrix) are written once under their name.
Units are part of the names (``wavelength_m``, ``power_w``) and, where given, an ``unit`` attribute.

A resumed run first cuts every stream back to the rows its checkpoint had seen (:meth:`DataFile.truncate`), so
a stream never holds rows of work that the resumed run repeats.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DATA_FILE = "data.h5"
#: Rows per chunk of a resizable dataset (appends are one row at a time).
CHUNK_ROWS = 64


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, str):
        return np.array(value.encode())
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        return arr.astype("S")
    if arr.dtype == object:
        raise TypeError(f"cannot store {type(value).__name__} in HDF5")
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    return arr


def open_h5(path: str | os.PathLike[str], mode: str) -> Any:
    """An HDF5 file; a damaged or foreign one raises OSError naming the file (h5py's message alone does not)."""
    import h5py

    try:
        return h5py.File(path, mode, **({"locking": False} if mode == "r" else {}))
    except OSError as exc:
        raise OSError(f"{path}: not a readable HDF5 data file ({exc}); the file is damaged") from None


class DataFile:
    """Append-as-you-go HDF5 file of one run."""

    def __init__(self, path: str | os.PathLike[str], mode: str = "a") -> None:

        self.path = Path(path)
        self._h5 = open_h5(self.path, mode)
        self.rows: dict[str, int] = {}
        try:
            for name, group in self._streams():
                self.rows[name] = int(group.attrs.get("rows", 0))
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:   # opens, then fails inside: damaged
            self._h5.close()
            raise OSError(f"{self.path}: damaged HDF5 data file ({exc})") from None

    def _streams(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        self._h5.visititems(lambda name, obj: out.append((name, obj)) if "rows" in obj.attrs else None)
        return out

    # -- writing ----------------------------------------------------------------------------------------------------
    def append(self, stream: str, row: Mapping[str, Any]) -> None:
        """Append one row (field name -> scalar or array of a fixed shape) to ``stream``, then flush."""
        group = self._h5.require_group(stream)
        n = int(group.attrs.get("rows", 0))
        for key, value in row.items():
            if value is None:
                continue
            arr = _as_array(value)
            if key not in group:
                dtype = arr.dtype if arr.dtype.kind in "iufSc" else np.float64
                group.create_dataset(key, shape=(n, *arr.shape), maxshape=(None, *arr.shape), dtype=dtype,
                                     chunks=(CHUNK_ROWS, *arr.shape), fillvalue=_fill(dtype))
            ds = group[key]
            if ds.shape[1:] != arr.shape:
                raise ValueError(f"{stream}/{key}: row shape {arr.shape}, stream has {ds.shape[1:]}")
            if ds.shape[0] < n + 1:
                ds.resize(n + 1, axis=0)
            ds[n] = arr
        group.attrs["rows"] = n + 1
        self.rows[stream] = n + 1
        self._h5.flush()

    def write(self, name: str, value: Any, attrs: Mapping[str, Any] | None = None) -> None:
        """Write a whole array under ``name`` (replacing one of that name), then flush."""
        if name in self._h5:
            del self._h5[name]
        ds = self._h5.create_dataset(name, data=_as_array(value))
        for key, val in (attrs or {}).items():
            ds.attrs[key] = val
        self._h5.flush()

    def set_attrs(self, name: str, attrs: Mapping[str, Any]) -> None:
        obj = self._h5.require_group(name) if name not in self._h5 else self._h5[name]
        for key, val in attrs.items():
            obj.attrs[key] = val
        self._h5.flush()

    def truncate(self, stream: str, rows: int) -> None:
        """Keep the first ``rows`` rows of ``stream`` (a resumed run repeats the rest)."""
        if stream not in self._h5:
            return
        group = self._h5[stream]
        for ds in group.values():
            if hasattr(ds, "resize") and ds.shape and ds.shape[0] > rows:
                ds.resize(rows, axis=0)
        group.attrs["rows"] = min(int(group.attrs.get("rows", 0)), rows)
        self.rows[stream] = int(group.attrs["rows"])
        self._h5.flush()

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.flush()
            self._h5.close()

    def __enter__(self) -> DataFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fill(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return np.nan
    return 0 if dtype.kind in "iu" else None


def read_tree(path: str | os.PathLike[str], *, max_rows: int | None = None) -> dict[str, Any]:
    """Every dataset in a run's HDF5 file as numpy arrays (``max_rows``: only shapes for longer ones)."""
    import h5py

    out: dict[str, Any] = {}
    with open_h5(path, "r") as h5:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                if max_rows is not None and obj.shape and obj.shape[0] > max_rows:
                    out[name] = obj.shape
                else:
                    out[name] = obj[()]
        h5.visititems(visit)
    return out


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Streams and arrays of a run's HDF5 file: ``{name: {"shape": ..., "dtype": ...}}`` (for ``labctl show``)."""
    import h5py

    out: dict[str, Any] = {}
    with open_h5(path, "r") as h5:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = {"shape": list(obj.shape), "dtype": str(obj.dtype)}
        try:
            h5.visititems(visit)
        except (RuntimeError, KeyError, ValueError) as exc:     # a damaged file opens, then fails inside
            raise OSError(f"{path}: damaged HDF5 data file ({exc})") from None
    return out
