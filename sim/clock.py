"""VirtualClock: simulated bench time, so a run can report how long it would take on real instruments."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable

__all__ = ["VirtualClock"]


class VirtualClock:
    """Monotonic virtual time in seconds, with a running total per action category.

    Simulated instruments call ``advance(dt_s, category)`` with their latency (see ``ChipSpec.timing``); the
    chip's drift model subscribes so the chip temperature wanders as virtual time passes. Chip reads never
    advance the clock themselves: time accounting belongs to the instruments.
    """

    #: Sleeping advances this clock (the ``labctl.drivers.clock.Clock`` protocol that transports wait on).
    virtual = True

    def __init__(self, start_s: float = 0.0) -> None:
        if not math.isfinite(start_s):
            raise ValueError(f"start_s must be finite, got {start_s!r}")
        self._now_s = float(start_s)
        self._totals: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self._listeners: list[Callable[[float], None]] = []

    @property
    def now_s(self) -> float:
        """Current virtual time, s."""
        return self._now_s

    def advance(self, dt_s: float, category: str = "other") -> float:
        """Move time forward by dt_s >= 0 charged to ``category``; returns the new time."""
        if not 0.0 <= dt_s < math.inf:  # finite and >= 0 (NaN fails both comparisons)
            raise ValueError(f"dt_s must be finite and >= 0, got {dt_s!r}")
        self._now_s += dt_s
        self._totals[category] += dt_s
        self._counts[category] += 1
        for listener in self._listeners:
            listener(dt_s)
        return self._now_s

    def sleep(self, seconds: float, category: str = "wait") -> None:
        """A wait on an emulated bench: time passes on this clock at once (no wall-clock wait)."""
        if seconds > 0:
            self.advance(seconds, category)

    def totals(self) -> dict[str, float]:
        """Seconds charged per category so far."""
        return dict(self._totals)

    def counts(self) -> dict[str, int]:
        """Number of advances per category so far."""
        return dict(self._counts)

    def state_dict(self) -> dict:
        return {"now_s": self._now_s, "totals": dict(self._totals), "counts": dict(self._counts)}

    def load_state_dict(self, state: dict) -> None:
        """Restore time and per-category totals (listeners stay as they are)."""
        self._now_s = float(state["now_s"])
        self._totals = defaultdict(float, {k: float(v) for k, v in state["totals"].items()})
        self._counts = defaultdict(int, {k: int(v) for k, v in state["counts"].items()})

    def subscribe(self, listener: Callable[[float], None]) -> None:
        """Call ``listener(dt_s)`` on every advance (used by the drift model)."""
        self._listeners.append(listener)
