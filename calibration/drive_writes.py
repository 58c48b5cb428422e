"""Heater writes that send only what changed: many calibration steps move a few heaters between readings.

A weight sweep steps one ring per bank while the other 36 hold their configuration; a heater step changes the
heaters of one group. Drivers that address channels one line each (greymatter: ``BOARD:DAC:CH:CODE`` per channel,
then ``LDAC``) then spend 40 lines per point where 4 do; on the emulated ``current`` bench that was 45 transactions
per sweep point instead of 9. Every write still goes through the bench's safety-wrapped driver (which validates
the whole resulting vector) and is followed by the bench's settle wait, exactly like
:meth:`BenchSession.set_ring_drive`.
"""

from __future__ import annotations

import numpy as np

from labctl.drivers.interfaces import BenchSession


class DriveWriter:
    """Writes ring-order drive vectors, sending only the channels that differ from the last vector written."""

    def __init__(self, hw: BenchSession) -> None:
        self.hw = hw
        self.last: np.ndarray | None = None
        self.channels = np.asarray(hw.ring_channels, dtype=int).reshape(-1)

    def write(self, drive: np.ndarray) -> None:
        """Apply ``drive`` (B*R,) and wait for it to settle (nothing sent when nothing changed, but still waited)."""
        d = np.asarray(drive, dtype=float).reshape(-1)
        if self.last is None:
            self.hw.set_ring_drive(d)
        else:
            changed = np.flatnonzero(d != self.last)
            if changed.size:
                self.hw.heaters.set_drive(d[changed], self.channels[changed])
            self.hw.wait(self.hw.settle_time_s)
        self.last = d.copy()

    def forget(self) -> None:
        """The heaters were written elsewhere: the next write sends every channel."""
        self.last = None
