"""The heater-limit rule, written once: used by the bench's safety layer, the drivers' own pre-checks and
calibration's batch pre-checks.

A drive vector is acceptable when every value is finite and >= 0 (heaters only heat), at most the per-output drive
limit, dissipates at most the per-output power limit (worst-case resistance: the lowest for voltage drive, the
highest for current drive), and the whole vector at most the total power budget. Out-of-limit requests raise
:class:`LimitError` naming the output and the limit, before anything is written; nothing is clipped.

The same limits are seen in two orders: the heater driver's channels (safety layer, drivers) and the chip's rings,
row-major (bank, ring) (calibration). :meth:`HeaterLimits.take` gives the ring-ordered view of channel-ordered
limits, so both orders check one set of numbers with one rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from labctl.drivers.errors import LimitError
from labctl.drivers.interfaces import DriveMode


_IDENTITY: dict[int, bytes] = {}


def _is_every_output(index: np.ndarray, size: int) -> bool:
    """Whether ``index`` is 0, 1, ..., size - 1 (a whole vector written in order)."""
    if index.size != size or index.dtype != np.int_:
        return False
    identity = _IDENTITY.get(size)
    if identity is None:
        identity = _IDENTITY[size] = np.arange(size, dtype=np.int_).tobytes()
    return index.tobytes() == identity


def channel_name(index: int) -> str:
    return f"channel {index}"


def ring_namer(n_rings: int) -> Callable[[int], str]:
    """Names of outputs in ring order (row-major bank, ring)."""
    def name(index: int) -> str:
        return f"bank {index // n_rings} ring {index % n_rings}"
    return name


@dataclass(frozen=True)
class HeaterLimits:
    """Per-output drive and power limits and the total power budget, in one order of outputs."""

    mode: DriveMode
    max_drive: np.ndarray                      # (n,) V or A
    #: (n,) per-output power limit, W; None where only the drive limit applies (an instrument's full scale).
    max_power_w: np.ndarray | None = None
    total_power_w: float = float("inf")
    #: Worst-case resistance for power estimates (None: power is not checked).
    worst_resistance_ohm: float | None = None
    #: Largest change per write when ramping (V or A), None: no ramp.
    ramp_step: float | None = None
    #: How messages name output i (``channel i``, ``bank b ring r``).
    name: Callable[[int], str] = field(default=channel_name, compare=False)
    #: Relative slack on the drive limit: absorbs only a unit round trip (mA <-> A) of a value equal to the limit.
    rtol: float = 1e-9

    @property
    def unit(self) -> str:
        return "V" if self.mode == "voltage" else "A"

    @property
    def size(self) -> int:
        return int(self.max_drive.size)

    def power_w(self, drive: np.ndarray) -> np.ndarray:
        """Worst-case electrical power of drive values (V^2/R_min or I^2 R_max); zeros when no resistance is known."""
        d = np.asarray(drive, dtype=float)
        if self.worst_resistance_ohm is None:
            return np.zeros_like(d)
        if self.mode == "voltage":
            return d**2 / self.worst_resistance_ohm
        return d**2 * self.worst_resistance_ohm

    def take(self, index: Any, name: Callable[[int], str] | None = None) -> HeaterLimits:
        """These limits for the outputs ``index`` in that order (e.g. the rings' channels), named by ``name``."""
        idx = np.asarray(index, dtype=int)
        return replace(self, max_drive=self.max_drive[idx],
                       max_power_w=None if self.max_power_w is None else self.max_power_w[idx],
                       name=name or self.name)

    def check(self, drive: Any, index: Any = None, *, state: np.ndarray | None = None, who: str = "") -> np.ndarray:
        """Check drive values; raise :class:`LimitError` naming the first violation. Returns the values as floats.

        ``drive``: (k,) values or (T, k) rows of values for the outputs ``index`` (default: all, k = n).
        ``state``: the full vector currently applied, for the total budget of a partial write (default: zeros).
        ``who``: prefix of messages (the instrument or wrapper name).
        """
        d = np.asarray(drive, dtype=float)
        rows = d if d.ndim == 2 else d.reshape(1, -1) if d.ndim == 1 else np.atleast_2d(d)
        idx = np.arange(self.size) if index is None else np.asarray(index, dtype=int)
        prefix = f"{who}: " if who else ""
        unit = self.unit
        if rows.shape[-1] != idx.size:
            raise LimitError(f"{prefix}{rows.shape[-1]} values for {idx.size} channels")

        def fail(mask: np.ndarray, text: Callable[[int, int], str]) -> None:
            if mask.any():
                m, i = (int(v) for v in np.argwhere(mask)[0])
                raise LimitError(f"{prefix}{self.name(int(idx[i]))}: {text(m, i)}")

        # a whole vector in order (the bench's writes) needs no gather of the limits: the same numbers
        every = index is None or _is_every_output(idx, self.size)
        limit = self.max_drive if every else self.max_drive[idx]
        # comparisons with NaN are False without a floating-point warning: no errstate needed (it costs more than
        # the check on a heater write)
        # the common case in few passes: every value >= 0 is the least one >= 0 (NaN makes the least NaN, which
        # fails, as -inf does; +inf fails the limit); then the first violation
        # (ufunc reductions called directly: ndarray.all/any/sum go through a Python wrapper, on every heater write;
        # a boolean test as a count of true elements: np.count_nonzero takes half the time of a logical reduction)
        if not (rows.size == 0 or (np.minimum.reduce(rows, axis=None) >= 0
                                   and np.count_nonzero(rows <= limit * (1.0 + self.rtol)) == rows.size)):
            fail(~np.isfinite(rows), lambda m, i: f"value {rows[m, i]!r} is not finite")
            fail(rows < 0, lambda m, i: f"{rows[m, i]:.6g} {unit} is negative (heaters take >= 0)")
            fail(rows > limit * (1.0 + self.rtol),
                 lambda m, i: f"drive {rows[m, i]:.6g} {unit} exceeds the limit {limit[i]:.6g} {unit}")
        resistance = self.worst_resistance_ohm
        if resistance is None:
            return d
        power = rows**2 / resistance if self.mode == "voltage" else rows**2 * resistance  # power_w(rows), inline
        if self.max_power_w is not None:
            p_lim = self.max_power_w if every else self.max_power_w[idx]
            over = power > p_lim
            if np.count_nonzero(over):
                fail(over, lambda m, i: f"drive {rows[m, i]:.6g} {unit} dissipates up to "
                                        f"{power[m, i] * 1e3:.4g} mW, over the per-heater limit "
                                        f"{p_lim[i] * 1e3:.4g} mW")
        if math.isfinite(self.total_power_w):
            if state is None or every:
                others = 0.0  # what the difference below is then, exactly: no other output dissipates
            else:
                base = np.asarray(state, dtype=float)
                others = float(self.power_w(base).sum() - self.power_w(base[idx]).sum())
            total = np.add.reduce(power, axis=1) + others
            if np.count_nonzero(total > self.total_power_w):
                worst = float(total.max())
                raise LimitError(f"{prefix}total heater power would reach {worst * 1e3:.5g} mW, over the budget "
                                 f"{self.total_power_w * 1e3:.5g} mW")
        return d
