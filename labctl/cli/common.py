"""Helpers shared by the command-line modules: bench names, output files, JSON output."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def bench_path(value: str | None) -> Path | None:
    """A bench file path, or the name of an embedded bench ('default', 'current', 'adc')."""
    if value is None:
        return None
    if not value.strip() or "\x00" in value:
        raise ValueError(f"--bench: {value!r} is neither a file nor an embedded bench name")
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"--bench: {value} is a folder, expected a bench file (TOML) or an embedded bench name")
    if path.exists() or path.suffix == ".toml" or "/" in value:
        return path
    from labctl.bench.config import embedded_bench_path

    embedded = embedded_bench_path(value)
    if not embedded.exists():
        raise ValueError(f"--bench: {value!r} is neither a file nor an embedded bench name")
    return embedded


def output_file(value: str, option: str) -> Path:
    """A file the command will write: refused now (naming ``option``) if it is a folder or cannot be made."""
    import os

    if not value.strip() or "\x00" in value:
        raise ValueError(f"{option}: {value!r} is not a file name")
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"{option}: {value} is a folder, expected a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write in {parent}")
    return path


def json_default(value: Any) -> Any:
    """``json.dumps`` default: numpy arrays and scalars as plain lists and numbers."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
