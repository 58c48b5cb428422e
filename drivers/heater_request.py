"""Validation of a multi-channel heater write, shared by the heater drivers (nothing is sent on failure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import LimitError


def validate_heater_request(name: str, values: Any, channels: Any, n_channels: int, limits: np.ndarray,
                            unit: str, describe: Callable[[int], str] = lambda ch: "") -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """Check a whole request (shapes, channel numbers, duplicates, finiteness, 0..limit) before any I/O.

    Returns ``(channels, values)``; ``describe(ch)`` adds the instrument's own name of a channel to messages.
    """
    vals = np.atleast_1d(np.asarray(values, dtype=float))
    if channels is None:
        chans = np.arange(n_channels)
    else:
        raw = np.atleast_1d(np.asarray(channels))
        if raw.dtype.kind not in "iu" and not (raw.dtype.kind == "f" and np.all(raw == np.round(raw))):
            raise LimitError(f"{name}: channel numbers must be integers, got {raw!r}")
        chans = raw.astype(int)
    if vals.ndim != 1 or vals.shape != chans.shape:
        raise LimitError(f"{name}: {vals.size} values for {chans.size} channels")
    bad = np.flatnonzero((chans < 0) | (chans >= n_channels))
    if bad.size:
        raise LimitError(f"{name}: channel {chans[bad[0]]} does not exist (0..{n_channels - 1})")
    if np.unique(chans).size != chans.size:
        raise LimitError(f"{name}: a channel appears twice in {chans.tolist()}")
    chan_limits = limits[chans]
    for k in np.flatnonzero(~np.isfinite(vals) | (vals < 0) | (vals > chan_limits)):
        where = describe(int(chans[k]))
        raise LimitError(f"{name}: channel {chans[k]}{f' ({where})' if where else ''}: {vals[k]:g} {unit} "
                         f"is outside [0, {chan_limits[k]:g}] {unit}; nothing was written")
    return chans, vals
