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

import math
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


#: Operation kinds a batch's bench time and transactions are split into (see :class:`BatchCounts`).
KINDS = ("configure", "encode", "read", "batch")


@dataclass
class BatchCounts:
    """What one batch through the instruments did: configurations written, encodings set, readings taken, and the
    bench time (s) and instrument transactions spent on each kind of operation.

    Kinds: ``configure`` (heater lines and the settle after them), ``encode`` (laser power commands, waiting for
    them to settle, and collecting the reading in flight before they go out), ``read`` (starting or taking
    readings), ``batch`` (once per batch: the last reading's reply, the lasers' error queues).
    """

    configs: int = 0
    encodings: int = 0
    readings: int = 0
    time_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    transactions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


class _KindTimer:
    """Charges the bench time and transactions of a block of instrument work to one operation kind (a plain
    context manager: the batch loop enters several per reading)."""

    __slots__ = ("_counts", "_kind", "_session", "_t0", "_x0")

    def __init__(self, session: Session, counts: BatchCounts) -> None:
        self._session = session
        self._counts = counts

    def __call__(self, kind: str) -> _KindTimer:
        self._kind = kind
        return self

    def __enter__(self) -> None:
        self._t0, self._x0 = self._session.clock.now_s, self._session.transaction_count()

    def __exit__(self, *exc: object) -> None:
        kind = self._kind
        self._counts.time_s[kind] += self._session.clock.now_s - self._t0
        self._counts.transactions[kind] += self._session.transaction_count() - self._x0


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
    #: The bench file's readout linearity bound (dB; None: the readout kind's default, see calibration.verify).
    readout_linearity_db: float | None = None
    #: Instrument lines sent so far.
    transaction_count: Callable[[], int] = lambda: 0
    #: The emulated bench's vectorized batch (None on a real bench).
    vectorized: VectorizedReadings | None = None
    #: Receivers of raw data from layers above (the run engine's record): ``tap(stream, **row)``.
    taps: list[Callable[..., None]] = field(default_factory=list)
    #: The instrument timing table the bench's times are projected with (emulated bench: the emulator's
    #: ``ChipSpec.timing`` as a dict of its fields), None on a real bench (times are measured there).
    timing: dict[str, float] | None = None
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
    def heater_lines(self, rings: np.ndarray | None = None) -> int | None:
        """Instrument lines the heater driver's protocol needs at least to write ``rings`` (ring indices, default
        all), where the driver says (``lines_for``); None where it does not."""
        inner = getattr(self.heaters, "inner", self.heaters)
        lines_for = getattr(inner, "lines_for", None)
        if lines_for is None:
            return None
        index = np.arange(self.ring_channels.size) if rings is None else np.asarray(rings, dtype=int)
        return int(lines_for(self.ring_channels[index]))

    def read_configurations(self, drives: np.ndarray, powers: np.ndarray, schedule: Iterable[tuple[int, int]],
                            power_index: np.ndarray | None = None, current: int | None = None
                            ) -> tuple[np.ndarray, BatchCounts, int | None]:
        """Apply heater configurations and read encodings through the instruments, in the order ``schedule`` gives.

        ``drives`` (T, B*R); ``powers`` (N, C) or (K, N, C) with configuration t reading ``powers[power_index[t]]``;
        ``schedule`` yields (configuration, encoding) pairs; ``current``: the configuration already applied (not
        rewritten). Returns readings (T, N, B), what was done (counts, and time and transactions per operation
        kind), and the configuration left applied.

        Every heater write goes through the safety layer (the whole resulting vector is checked), and only the rings
        whose drive changes are sent. Where the instruments allow it, work overlaps (docs/bench-time.md):

        * laser power changes are all sent first and then waited for together (``*OPC?`` on each), so the lasers
          settle at the same time instead of one after the other; their error queues are read once per batch;
        * with a readout that can start a reading and collect it later (the N774x's self-triggered
          ``:READ:POW:ALL?``), the reading starts when the heaters have settled and its reply is collected after
          the next configuration's heater lines have gone out (a serial line, another bus): the meter averages
          and answers while those lines travel, and no heater value lands before its averaging window has ended
          (a heater line takes effect only once it has arrived). Before laser commands (which share the meter's
          bus) the reply is collected first. A readout that bounds its reading time (``reading_time_bound_s``:
          source meters, whose integration the calibration's noise probe may make long) is left alone until then:
          the heater lines wait for the bound, so a long integration is never disturbed.
        """
        drives = np.asarray(drives, dtype=float)
        stacked = powers if powers.ndim == 3 else powers[None]
        index = power_index if power_index is not None else np.zeros(drives.shape[0], dtype=int)
        out = np.empty((drives.shape[0], stacked.shape[1], self.n_banks))
        counts = BatchCounts()
        timer = _KindTimer(self, counts)
        readout = self.readout
        overlap_reads = bool(getattr(readout, "can_start_read", False))
        known = hasattr(self.heaters, "applied")                # the safety layer keeps a record of every channel
        pending: tuple[int, int] | None = None
        bound = getattr(readout, "reading_time_bound_s", None) if overlap_reads else None
        read_until = -math.inf                                 # the pending reading's time bound ends
        settled_at = -math.inf                                 # heaters settled (last line + settle time)
        commanded: set[int] = set()                            # lasers commanded in this batch

        def collect() -> None:
            nonlocal pending
            if pending is not None:
                out[pending] = np.asarray(readout.finish_read().balanced, dtype=float)  # type: ignore[attr-defined]
                pending = None

        for cfg, i in schedule:
            target = np.asarray(stacked[index[cfg], i], dtype=float)
            lasers = ((self._laser_w != target).nonzero()[0] if self._laser_w is not None
                      else np.arange(target.size))
            if lasers.size:
                with timer("encode"):
                    collect()
                    self._laser_w = None              # unknown until every command below has gone out
                    for k in lasers:
                        _start_power(self.lasers[int(k)], float(target[k]))
                    self._laser_w = target.copy()
                commanded.update(int(k) for k in lasers)
                counts.encodings += 1
            if cfg != current:
                with timer("configure"):
                    values = drives[cfg]
                    if known:
                        applied = self.heaters.applied[self.ring_channels]  # type: ignore[attr-defined]
                        rings = (applied != values).nonzero()[0]
                    else:
                        rings = np.arange(values.size)
                    if rings.size:
                        wait = read_until - self.clock.now_s if pending is not None else 0.0
                        if wait > 0:                  # the pending reading may still be integrating
                            self.wait(wait)
                        self.heaters.set_drive(values[rings], self.ring_channels[rings])
                        settled_at = self.clock.now_s + self.settle_time_s
                    collect()                         # its reply travelled while the heater lines went out
                current = cfg
                counts.configs += 1
            if lasers.size:
                with timer("encode"):
                    for k in lasers:
                        _wait_power(self.lasers[int(k)])
            wait = settled_at - self.clock.now_s
            if wait > 0:  # the rest of the settle: bench time of "configure", no instrument line
                t0 = self.clock.now_s
                self.wait(wait)
                counts.time_s["configure"] += self.clock.now_s - t0
            with timer("read"):
                if overlap_reads:
                    sent_at = self.clock.now_s        # the first reading command goes out now
                    readout.start_read()  # type: ignore[attr-defined]
                    pending = (cfg, i)
                    limit = bound() if bound is not None else None
                    if limit is not None:
                        read_until = sent_at + float(limit)
                else:
                    out[cfg, i] = np.asarray(readout.read().balanced, dtype=float)
            counts.readings += 1
        with timer("batch"):
            collect()
            for k in sorted(commanded):
                self.lasers[k].check_errors()
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


def _start_power(laser: TunableLaser, power_w: float) -> None:
    """Send a power change and go on (lasers that cannot: set and wait)."""
    start = getattr(laser, "start_power_w", None)
    if start is None:
        laser.set_power_w(power_w)
    else:
        start(power_w)


def _wait_power(laser: TunableLaser) -> None:
    wait = getattr(laser, "wait_power_settled", None)
    if wait is not None:
        wait()
