"""Validation of a multi-channel heater write, shared by the heater drivers (nothing is sent on failure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from labctl.drivers.errors import LimitError
from labctl.drivers.interfaces import DriveMode
from labctl.drivers.limits import HeaterLimits


def validate_heater_request(who: str, values: Any, channels: Any, n_channels: int, limits: np.ndarray,
                            unit: str, describe: Callable[[int], str] = lambda ch: "") -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """Check a whole request (shapes, channel numbers, duplicates, finiteness, 0..limit) before any I/O.

    Returns ``(channels, values)``; ``describe(ch)`` adds the instrument's own name of a channel to messages. The
    values are held to the instrument's configured limit by the one heater-limit rule (:mod:`.limits`).
    """
    vals = np.asarray(values, dtype=float)
    if vals.ndim == 0:  # np.atleast_1d without its Python wrapper (every heater write passes here)
        vals = vals.reshape(1)
    key: tuple[str, bytes, int] | None = None
    if channels is None:
        chans = np.arange(n_channels)
    else:
        raw = np.asarray(channels)
        if raw.ndim == 0:
            raw = raw.reshape(1)
        if raw.ndim == 1:
            key = (raw.dtype.str, raw.tobytes(), n_channels)
        if key not in _CHECKED and raw.dtype.kind not in "iu" and not (
                raw.dtype.kind == "f" and np.all(raw == np.round(raw))):
            raise LimitError(f"{who}: channel numbers must be integers, got {raw!r}")
        chans = raw.astype(int)
    if vals.ndim != 1 or vals.shape != chans.shape:
        raise LimitError(f"{who}: {vals.size} values for {chans.size} channels")
    if key not in _CHECKED:  # (the same channel numbers passed these checks before: they pass them again)
        if chans.size and (np.minimum.reduce(chans) < 0 or np.maximum.reduce(chans) >= n_channels):
            bad = np.flatnonzero((chans < 0) | (chans >= n_channels))
            raise LimitError(f"{who}: channel {chans[bad[0]]} does not exist (0..{n_channels - 1})")
        if len(set(chans.tolist())) != chans.size:
            raise LimitError(f"{who}: a channel appears twice in {chans.tolist()}")
        if key is not None:
            if len(_CHECKED) >= 256:
                _CHECKED.clear()
            _CHECKED[key] = None

    _limits_of(unit, np.asarray(limits, dtype=float), describe).check(vals, chans, who=who)
    return chans, vals


#: Channel vectors (dtype, bytes, the driver's channel count) that passed the channel checks (integers, in range, no
#: duplicates): a driver writes the same few channel sets again and again.
_CHECKED: dict[tuple[str, bytes, int], None] = {}

#: (unit, limits, describe) -> the rule's object: a driver checks every write against the same few limit vectors.
_LIMITS: dict[tuple[str, bytes, Callable[[int], str]], HeaterLimits] = {}


def _limits_of(unit: str, limits: np.ndarray, describe: Callable[[int], str]) -> HeaterLimits:
    """The :class:`HeaterLimits` of an instrument's configured limits, made once per distinct limit vector."""
    key = (unit, limits.tobytes(), describe)
    found = _LIMITS.get(key)
    if found is None:
        def name(ch: int) -> str:
            where = describe(ch)
            return f"channel {ch}{f' ({where})' if where else ''}"

        mode: DriveMode = "voltage" if unit == "V" else "current"
        if len(_LIMITS) >= 64:
            _LIMITS.clear()
        found = _LIMITS[key] = HeaterLimits(mode=mode, max_drive=limits.copy(), name=name)
    return found
