"""Chip temperature drift: a random walk in virtual time (TEC-stabilised chip, 10 mK rms per 10 min).

Each clock advance of dt draws an increment N(0, sigma^2 dt / t_ref) from the chip's drift stream, so the walk
is deterministic for a seed and a sequence of advances. All resonances move together by dT * (83 pm/K).
"""

from __future__ import annotations

import math

import numpy as np
from labctl.sim.clock import VirtualClock

__all__ = ["TemperatureDrift"]


class TemperatureDrift:
    """Chip temperature offset from the reference, K, following the clock."""

    def __init__(self, rms_k: float, reference_time_s: float, rng: np.random.Generator, clock: VirtualClock) -> None:
        self._scale = rms_k / math.sqrt(reference_time_s)
        self._rng = rng
        self._offset_k = 0.0
        #: scale * sqrt(dt) of the advances not yet drawn: the walk is drawn when it is read (one draw call for many
        #: advances, the same normals in the same order, the same additions: the same offset to the bit)
        self._steps: list[float] = []
        clock.subscribe(self._on_advance)

    @property
    def offset_k(self) -> float:
        """Current chip temperature minus the reference temperature, K."""
        if self._steps:
            self._draw()
        return self._offset_k

    def _draw(self) -> None:
        steps, self._steps = self._steps, []
        offset = self._offset_k
        for step, normal in zip(steps, self._rng.standard_normal(len(steps)).tolist()):
            offset += step * normal
        self._offset_k = offset

    def state_dict(self) -> dict:
        if self._steps:
            self._draw()
        return {"offset_k": self._offset_k, "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self._steps = []
        self._offset_k = float(state["offset_k"])
        self._rng.bit_generator.state = state["rng"]

    def _on_advance(self, dt_s: float) -> None:
        if dt_s > 0 and self._scale > 0:
            self._steps.append(self._scale * math.sqrt(dt_s))
            if len(self._steps) >= 4096:  # bounded memory when nothing reads the temperature for long
                self._draw()
