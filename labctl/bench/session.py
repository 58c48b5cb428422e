"""The bench session: the one way up to hardware for calibration, training and procedures.

An open :class:`~labctl.bench.bench.Bench` hands its users one :class:`Session`. It offers the safety-wrapped
capabilities (heaters, lasers, bank readout), the one set of heater limits (ring order, the same rule the safety
layer enforces), the bench's clock (wall or virtual: the same object the transports wait on), and the batch
operation "apply these heater configurations and read these encodings". On every bench that batch runs as the
scheduled instrument loop (:meth:`Session.read_configurations`); an emulated bench also offers a vectorized
equivalent from the emulation root (:attr:`Session.vectorized`), so nothing above the session knows an
instrument model, a meter range margin, or the chip. Checkpointing the emulator's state goes through the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from labctl.drivers.clock import Clock
from labctl.drivers.interfaces import BankReadout, DriveMode, HeaterDriver, PowerReadout, TunableLaser
from labctl.drivers.limits import HeaterLimits


class VectorizedReadings(Protocol):
    """The emulated bench's equivalent of the instrument loop: every configuration's readings in one call."""

    def read(self, drives: np.ndarray, powers: np.ndarray, averaging_time_s: float,
             power_index: np.ndarray | None = None) -> np.ndarray:
        """Balanced readings (T, N, B) of drives (T, H) at N laser power settings: powers (N, C), or (K, N, C) of
        which drive t reads ``powers[power_index[t]]``; settled, with the readout's noise and quantization."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The emulator's random streams, drift and clock, for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class BatchCounts:
    """What one batch through the instruments did: configurations written, encodings set, readings taken."""

    configs: int = 0
    encodings: int = 0
    readings: int = 0


@dataclass
class Session:
    """Instruments, wiring, limits and clock of one open bench, as calibration and training see them (implements
    :class:`labctl.drivers.interfaces.BenchSession`)."""

    heaters: HeaterDriver                    # safety-wrapped, instrument channel order
    ring_channels: np.ndarray                # (B*R,) heater channel of ring (bank, ring), row-major
    n_banks: int
    n_rings: int
    #: The bench's heater limits in ring order (a view of the safety layer's limits: one rule, one set of numbers).
    limits: HeaterLimits
    lasers: list[TunableLaser]               # safety-wrapped, one per WDM channel, channel order
    wavelengths_m: np.ndarray                # (C,) WDM grid
    laser_max_power_w: float
    readout: BankReadout                     # every bank's balanced output in one call
    clock: Clock                             # wall clock on a real bench, the emulator's virtual clock otherwise
    settle_time_s: float                     # heater settle before a reading
    #: The raw power meter and per-bank (through, drop) ports when the bench reads ports off chip (logging
    #: sweeps are possible), else None (on-chip balanced photodiodes: spectra are taken by stepping the laser).
    power_meter: PowerReadout | None = None
    sweep_ports: list[tuple[int, int]] | None = None
    identities: dict[str, str] = field(default_factory=dict)
    bench_sha256: str = ""
    wiring_sha256: str = ""
    chip_id: str = ""
    #: Instrument lines sent so far.
    transaction_count: Callable[[], int] = lambda: 0
    #: The emulated bench's vectorized batch (None on a real bench).
    vectorized: VectorizedReadings | None = None
    #: Receivers of raw data from layers above (the run engine's record): ``tap(stream, **row)``.
    taps: list[Callable[..., None]] = field(default_factory=list)
    #: Laser powers as last set through :meth:`set_laser_powers` (None: unknown).
    _laser_w: np.ndarray | None = field(default=None, repr=False)

    # -- what the limits say -------------------------------------------------------------------------------------
    @property
    def mode(self) -> DriveMode:
        return self.limits.mode

    @property
    def max_drive(self) -> np.ndarray:
        """(B*R,) per-ring drive limit (V or A)."""
        return self.limits.max_drive

    @property
    def max_power_w(self) -> np.ndarray:
        """(B*R,) per-ring heater power limit."""
        assert self.limits.max_power_w is not None
        return self.limits.max_power_w

    @property
    def total_power_w(self) -> float:
        return self.limits.total_power_w

    @property
    def n_channels(self) -> int:
        return len(self.lasers)

    # -- time ------------------------------------------------------------------------------------------------------
    def wait(self, seconds: float) -> None:
        """Let the chip settle: wall-clock time on a real bench, virtual time on an emulated one."""
        self.clock.sleep(seconds, "settle")

    def elapsed_s(self) -> float:
        """Bench time since the bench opened (projected on an emulated bench, measured on a real one)."""
        return self.clock.now_s

    # -- heaters and lasers -------------------------------------------------------------------------------------------
    def set_ring_drive(self, values: np.ndarray) -> None:
        """Drive every ring (row-major bank, ring) in one validated write, then wait for it to settle."""
        self.heaters.set_drive(np.asarray(values, dtype=float).reshape(-1), self.ring_channels)
        self.wait(self.settle_time_s)

    def set_laser_powers(self, powers_w: np.ndarray) -> bool:
        """Set every laser's power, sending only the channels that changed since the last call; True if any was sent.
        Callers that set lasers another way call :meth:`forget_lasers` first."""
        powers = np.asarray(powers_w, dtype=float)
        changed = np.flatnonzero(self._laser_w != powers) if self._laser_w is not None else np.arange(powers.size)
        for k in changed:
            self.lasers[int(k)].set_power_w(float(powers[k]))
        self._laser_w = powers.copy()
        return changed.size > 0

    def note_laser_powers(self, powers_w: np.ndarray) -> None:
        """The lasers' powers are now these (set one by one by the caller, e.g. while tuning each laser)."""
        self._laser_w = np.array(powers_w, dtype=float)

    def forget_lasers(self) -> None:
        """The lasers' powers are no longer known (something else set them)."""
        self._laser_w = None

    # -- the batch ----------------------------------------------------------------------------------------------
    def read_configurations(self, drives: np.ndarray, powers: np.ndarray, schedule: Iterable[tuple[int, int]],
                            power_index: np.ndarray | None = None, current: int | None = None
                            ) -> tuple[np.ndarray, BatchCounts, int | None]:
        """Apply heater configurations and read encodings through the instruments, in the order ``schedule`` gives.

        ``drives`` (T, B*R); ``powers`` (N, C) or (K, N, C) with configuration t reading ``powers[power_index[t]]``;
        ``schedule`` yields (configuration, encoding) pairs; ``current``: the configuration already applied (not
        rewritten). Every write goes through the safety layer. Returns readings (T, N, B), what was done, and the
        configuration left applied.
        """
        drives = np.asarray(drives, dtype=float)
        stacked = powers if powers.ndim == 3 else powers[None]
        index = power_index if power_index is not None else np.zeros(drives.shape[0], dtype=int)
        out = np.empty((drives.shape[0], stacked.shape[1], self.n_banks))
        counts = BatchCounts()
        for cfg, i in schedule:
            if cfg != current:
                self.set_ring_drive(drives[cfg])
                current = cfg
                counts.configs += 1
            if self.set_laser_powers(stacked[index[cfg], i]):
                counts.encodings += 1
            out[cfg, i] = np.asarray(self.readout.read().balanced, dtype=float)
            counts.readings += 1
        return out, counts, current

    # -- the run's record ------------------------------------------------------------------------------------------------
    def emit(self, stream: str, **row: Any) -> None:
        """Hand a row of raw data (a spectrum, a heater step, a weight sweep) to whoever records the run; nothing
        happens when no one does (calibration used from Python)."""
        for tap in self.taps:
            tap(stream, **row)

    # -- checkpoints --------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """State a resumed run needs to continue bit-identically (the emulator's streams and clock; empty on a real
        bench, whose chip cannot be rewound)."""
        return {} if self.vectorized is None else {"emulator": self.vectorized.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.vectorized is not None and "emulator" in state:
            self.vectorized.load_state_dict(state["emulator"])
