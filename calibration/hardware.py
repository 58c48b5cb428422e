"""What calibration may touch: the bench's safety-wrapped instruments, seen as capability interfaces.

Calibration never imports the bench (``labctl``); the bench hands it this bundle. Every heater write still goes
through the safety layer, every reading through a real driver, so calibration learns about the chip only what
the instruments tell it, and can never exceed the bench's limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from labctl.drivers.interfaces import BankReadout, DriveMode, HeaterDriver, PowerReadout, TunableLaser


@dataclass
class CalibrationHardware:
    """Instruments and wiring of one bench, as calibration and training need them."""

    heaters: HeaterDriver                    # safety-wrapped, instrument channel order
    ring_channels: np.ndarray                # (B*R,) heater channel of ring (bank, ring), row-major
    n_banks: int
    n_rings: int
    mode: DriveMode                          # heaters driven in volts or amps
    max_drive: np.ndarray                    # (B*R,) per-ring drive limit (V or A)
    max_power_w: np.ndarray                  # (B*R,) per-ring heater power limit
    total_power_w: float                     # heater power budget
    lasers: list[TunableLaser]               # safety-wrapped, one per WDM channel, channel order
    wavelengths_m: np.ndarray                # (C,) WDM grid
    laser_max_power_w: float
    readout: BankReadout                     # every bank's balanced output in one call
    wait: Callable[[float], None]            # settle/poll wait: wall clock on a real bench, virtual on an emulated one
    settle_time_s: float                     # heater settle before a reading
    #: The raw power meter and per-bank (through, drop) ports when the bench reads ports off chip (logging
    #: sweeps are possible), else None (on-chip balanced photodiodes: spectra are taken by stepping the laser).
    power_meter: PowerReadout | None = None
    sweep_ports: list[tuple[int, int]] | None = None
    identities: dict[str, str] = field(default_factory=dict)
    bench_sha256: str = ""
    wiring_sha256: str = ""
    chip_id: str = ""
    #: Instrument transactions so far and projected bench time so far (None on a real bench).
    transaction_count: Callable[[], int] = lambda: 0
    elapsed_s: Callable[[], float | None] = lambda: None

    @property
    def n_channels(self) -> int:
        return len(self.lasers)

    def set_ring_drive(self, values: np.ndarray) -> None:
        """Drive every ring (row-major bank, ring) in one validated write, then wait for it to settle."""
        self.heaters.set_drive(np.asarray(values, dtype=float).reshape(-1), self.ring_channels)
        self.wait(self.settle_time_s)
