"""Helpers shared by the command-line modules: bench names, progress lines, JSON output."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO


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


class ProgressLine:
    """Progress of long steps on stderr: one rewritten line on a terminal, a line per step otherwise."""

    def __init__(self, prefix: str, stream: TextIO | None = None, min_interval_s: float = 0.5) -> None:
        self.prefix = prefix
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval_s = min_interval_s
        self._step: str | None = None
        self._last = 0.0
        self._t0 = time.monotonic()
        self._step_start = (self._t0, 0)     # (time, done) of a step's first report: its rate gives the ETA

    def __call__(self, step: str, done: int, total: int) -> None:
        now = time.monotonic()
        new_step = step != self._step
        if new_step:
            self._step_start = (now, done)
        if not (new_step or done >= total or now - self._last >= self.min_interval_s):
            return
        self._last = now
        t_start, done_start = self._step_start
        eta = ""
        if done_start < done < total:
            eta = f", ETA {(now - t_start) / (done - done_start) * (total - done):.0f} s"
        text = f"[{self.prefix}] {step} {done}/{total} ({now - self._t0:.0f} s{eta})"
        if self.tty:
            end = "\n" if done >= total and step == "done" else ""
            self.stream.write("\r\x1b[K" + text + end)
        elif new_step or done >= total:
            self.stream.write(text + "\n")
        self._step = step
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def json_default(value: Any) -> Any:
    """``json.dumps`` default: numpy arrays and scalars as plain lists and numbers."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
