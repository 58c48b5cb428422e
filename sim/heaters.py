"""Heater drive -> dissipated power -> ring resonance shift, with DAC quantization and thermal settling.

Self-heating: R = R0 (1 + gamma P). Voltage drive V: P = V^2 / R solves gamma R0 P^2 + R0 P - V^2 = 0, i.e.
P = 2 V^2 / (R0 + sqrt(R0^2 + 4 gamma R0 V^2)) (stable form). Current drive I: P = I^2 R = I^2 R0 / (1 - gamma I^2 R0),
thermal runaway when gamma I^2 R0 >= 1. The resonance shift is linear in power through the crosstalk matrix
K (m/W): shift = K @ P. Settling is first order: the effective power relaxes toward the commanded one with the
thermal time constant, so a reading taken too early sees a partly moved resonance.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "HeaterRunawayError",
    "quantize_drive",
    "power_from_voltage_w",
    "power_from_current_w",
    "drive_to_power_w",
    "ThermalSettling",
]

MODES = ("voltage", "current")


class HeaterRunawayError(ValueError):
    """Current drive beyond thermal runaway of the self-heating model (gamma I^2 R0 >= 1)."""


def quantize_drive(values: np.ndarray, bits: int, full_scale: float) -> np.ndarray:
    """Clip to [0, full_scale] and round to the DAC grid (2^bits - 1 steps): what the driver really applies."""
    lsb = full_scale / (2**bits - 1)
    # np.clip's result with ufuncs (a fraction of its call overhead; -0.0 kept as clip keeps it), rounded half to even
    return np.rint(np.minimum(np.maximum(0.0, values), full_scale) / lsb) * lsb


def power_from_voltage_w(voltage_v: np.ndarray, r0_ohm: np.ndarray, gamma_per_w: float) -> np.ndarray:
    """Dissipated power under voltage drive with self-heating (closed form)."""
    v2 = np.square(voltage_v)
    return 2.0 * v2 / (r0_ohm + np.sqrt(r0_ohm * r0_ohm + 4.0 * gamma_per_w * r0_ohm * v2))


def power_from_current_w(current_a: np.ndarray, r0_ohm: np.ndarray, gamma_per_w: float) -> np.ndarray:
    """Dissipated power under current drive with self-heating; raises on thermal runaway."""
    i2r = np.square(current_a) * r0_ohm
    g = gamma_per_w * i2r
    if np.any(g >= 1.0):
        raise HeaterRunawayError(f"current drive beyond thermal runaway (max gamma*I^2*R0 = {float(np.max(g)):.3g})")
    return i2r / (1.0 - g)


def drive_to_power_w(drive: np.ndarray, mode: str, r0_ohm: np.ndarray, gamma_per_w: float) -> np.ndarray:
    """Power for a drive array (..., H) in one mode."""
    if mode == "voltage":
        return power_from_voltage_w(drive, r0_ohm, gamma_per_w)
    if mode == "current":
        return power_from_current_w(drive, r0_ohm, gamma_per_w)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


class ThermalSettling:
    """First-order relaxation of each heater's effective power toward its commanded power."""

    def __init__(self, n_heaters: int, time_constant_s: float) -> None:
        self._tau = time_constant_s
        self._target = np.zeros(n_heaters)
        self._start = np.zeros(n_heaters)
        self._t0 = 0.0

    def command(self, power_w: np.ndarray, now_s: float) -> None:
        """New commanded power at ``now_s``; the effective power starts from where it is now."""
        self._start = self.effective_w(now_s)
        self._target = np.array(power_w, dtype=float)
        self._t0 = now_s

    def effective_w(self, now_s: float) -> np.ndarray:
        """Effective power at ``now_s`` (>= the last command time)."""
        decay = self.decay(now_s)
        return self._target + (self._start - self._target) * decay

    def decay(self, now_s: float) -> float:
        """How much of the last step is still to come at ``now_s``: exp(-elapsed / time constant)."""
        return math.exp(-max(now_s - self._t0, 0.0) / self._tau)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The live (start, target) power arrays, for a compiled command that updates them in place (what
        :meth:`command` computes, for some heaters); call :meth:`restarted` after it."""
        return self._start, self._target

    def command_state(self, now_s: float) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`arrays` and :meth:`decay` at ``now_s`` in one call (a heater instrument's every line)."""
        return self._start, self._target, math.exp(-max(now_s - self._t0, 0.0) / self._tau)

    def restarted(self, now_s: float) -> None:
        """The in-place command of :meth:`arrays` took effect at ``now_s``."""
        self._t0 = now_s

    def state_dict(self) -> dict:
        return {"target_w": self._target.tolist(), "start_w": self._start.tolist(), "t0_s": self._t0}

    def load_state_dict(self, state: dict) -> None:
        self._target = np.array(state["target_w"], dtype=float)
        self._start = np.array(state["start_w"], dtype=float)
        self._t0 = float(state["t0_s"])

    @property
    def target_w(self) -> np.ndarray:
        """Commanded (settled) power."""
        return self._target.copy()
