"""An open bench: instruments behind the safety layer, the wiring applied, the lock held, safe state guaranteed.

``Bench.open(path)`` validates the bench file completely before touching anything, takes the bench lock, builds
the emulated chip and its simulated instruments when the bench is emulated, opens every driver, and wraps heaters
and lasers so that no command outside the configured limits can reach them. Leaving the ``with`` block by any
path (normal end, exception, Ctrl-C, SIGTERM, interpreter exit) puts heaters at 0 and lasers off, even if one
instrument has stopped answering.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.bench.config import DRIVERS, BenchConfig, load_bench
from labctl.bench.lock import BenchLock
from labctl.bench.readout import AdcBanks, PowerMeterBanks, SourceMeterBanks
from labctl.drivers.errors import InstrumentConnectionError, InstrumentError, LimitError
from labctl.drivers.interfaces import BankReadout
from labctl.bench.safety import SafeHeaterDriver, SafeLaser, SafeStateGuard
from labctl.bench.session import Session
from labctl.drivers.clock import Clock, WallClock
from labctl.drivers.limits import HeaterLimits, ring_namer

log = logging.getLogger(__name__)


def driver_class(name: str) -> type:
    module, _, cls = DRIVERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def _per_heater(value: float | list[float] | None, n: int) -> np.ndarray | None:
    if value is None:
        return None
    return np.full(n, float(value)) if not isinstance(value, list) else np.asarray(value, dtype=float)


@dataclass
class Bench:
    """Instruments of one bench, ready for calibration and training (they see interfaces only)."""

    config: BenchConfig
    config_sha256: str
    heaters: SafeHeaterDriver
    lasers: list[SafeLaser]
    readout: BankReadout
    instruments: dict[str, Any]
    guard: SafeStateGuard
    lock: BenchLock
    clock: Clock
    emulation: Any = None
    identities: dict[str, str] = field(default_factory=dict)
    _closed: bool = False
    _session: Session | None = None
    _transports: tuple[int, list[Any]] | None = None

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def open(cls, path: str | Path | None = None, *, lock_dir: Path | None = None) -> Iterator[Bench]:
        """Open the bench described by ``path`` (the embedded default when None) for the ``with`` block."""
        config, digest = load_bench(path)
        bench = cls.connect(config, digest, lock_dir=lock_dir, bench_file=path)
        try:
            with bench.guard:
                yield bench
        finally:
            bench.close()

    @classmethod
    def connect(cls, config: BenchConfig, digest: str, *, lock_dir: Path | None = None,
                bench_file: str | Path | None = None) -> Bench:
        lock = BenchLock.for_config(config, bench_file=bench_file, directory=lock_dir)
        lock.acquire()  # every instrument resource of a real bench, before connecting; nothing when emulated
        guard = SafeStateGuard()
        instruments: dict[str, Any] = {}
        emulation = None
        clock: Clock | None = None
        try:
            if config.bench.kind == "emulated":
                from labctl.bench.emulation import build_emulation

                emulation = build_emulation(config)
            # one clock for the whole bench: transports wait on it, the session settles on it
            clock = emulation.clock if emulation is not None else WallClock()
            for name, inst in config.instruments.items():
                instruments[name] = _open_driver(name, inst.driver, inst.address, inst.options, config, emulation,
                                                 clock)
            bench = cls._assemble(config, digest, instruments, guard, lock, emulation, clock)
        except BaseException:
            _reach_the_rest(config, instruments, emulation, clock)
            for name, driver in instruments.items():
                _safe_close(name, driver)   # lasers switch their output off on close (safe_on_close)
            if emulation is not None:
                emulation.close()
            lock.release()
            raise
        bench.guard.arm()  # safe state on SIGTERM and at interpreter exit, with or without ``with``; close disarms
        return bench

    @classmethod
    def _assemble(cls, config: BenchConfig, digest: str, instruments: dict[str, Any], guard: SafeStateGuard,
                  lock: BenchLock, emulation: Any, clock: Clock) -> Bench:
        wiring, limits = config.wiring, config.limits
        heater_driver = instruments[wiring.heaters.instrument]
        n_rings = wiring.banks * wiring.rings
        channels = np.asarray(wiring.heaters.channels, dtype=int)
        if channels.max() >= heater_driver.n_channels:
            raise InstrumentError(f"wiring uses channel {channels.max()} but the driver has "
                                  f"{heater_driver.n_channels}", instrument=heater_driver.name,
                                  address=heater_driver.address)
        max_key = "heater_max_voltage_v" if wiring.heaters.mode == "voltage" else "heater_max_current_a"
        per_ring_drive = _per_heater(getattr(limits, max_key), n_rings)
        per_ring_power = _per_heater(limits.heater_max_power_w, n_rings)
        assert per_ring_drive is not None and per_ring_power is not None
        # unwired outputs may not be driven at all
        max_drive = np.zeros(heater_driver.n_channels)
        max_power = np.zeros(heater_driver.n_channels)
        max_drive[channels] = per_ring_drive
        max_power[channels] = per_ring_power
        worst_r = limits.heater_min_resistance_ohm if wiring.heaters.mode == "voltage" \
            else limits.heater_max_resistance_ohm
        heaters = SafeHeaterDriver(heater_driver, HeaterLimits(
            mode=wiring.heaters.mode, max_drive=max_drive, max_power_w=max_power,
            total_power_w=limits.total_heater_power_w, worst_resistance_ohm=worst_r,
            ramp_step=limits.heater_ramp_step), readback_tolerance=limits.heater_readback_tolerance)
        lasers = [SafeLaser(_laser_view(instruments[name]), limits.laser_max_power_w, limits.laser_ramp_step_w)
                  for name in wiring.lasers]
        readout = _readout(config, instruments)
        # Safe state: heaters first (they heat the chip), then lasers, then the rest.
        guard.register(f"{heaters.name} to zero", heaters.safe_state)
        for laser in lasers:
            guard.register(f"{laser.name} output off", laser.safe_state)
        handled = {wiring.heaters.instrument, *wiring.lasers}
        for name, driver in instruments.items():
            if name not in handled and hasattr(driver, "safe_state"):
                guard.register(f"{name} safe state", driver.safe_state)
        bench = cls(config=config, config_sha256=digest, heaters=heaters, lasers=lasers, readout=readout,
                    instruments=instruments, guard=guard, lock=lock, clock=clock, emulation=emulation)
        identities = {name: driver.identity() for name, driver in instruments.items()}
        for name, inst in config.instruments.items():
            got = identities[name]
            if inst.model is not None and got.model.upper() != inst.model.upper():
                raise InstrumentConnectionError(f"instruments.{name}.model: the bench file says {inst.model!r}, the "
                                                f"instrument is {got}", instrument=name,
                                                address=instruments[name].address)
        bench.identities = {name: str(identity) for name, identity in identities.items()}
        return bench

    # -- use -----------------------------------------------------------------------------------------------------
    @property
    def n_banks(self) -> int:
        return self.config.wiring.banks

    @property
    def n_rings(self) -> int:
        return self.config.wiring.rings

    @functools.cached_property
    def ring_channels(self) -> np.ndarray:
        """Heater-driver channel of every ring, row-major (bank, ring); read-only (the configuration is frozen, and
        every heater write passes it)."""
        channels = np.asarray(self.config.wiring.heaters.channels, dtype=int)
        channels.flags.writeable = False
        return channels

    def set_ring_drive(self, values: np.ndarray) -> None:
        """Drive (V or A) for every ring, row-major (bank, ring), validated as a whole and written in one go."""
        self.heaters.set_drive(np.asarray(values, dtype=float).reshape(-1), self.ring_channels)

    def wait(self, seconds: float) -> None:
        """Let the chip settle: wall-clock time on a real bench, virtual time on an emulated one."""
        self.clock.sleep(seconds, "settle")

    def settle(self) -> None:
        """Wait the heater settling time (5 time constants, at least 1 ms) after a heater change."""
        self.wait(self.settle_time_s)

    @property
    def settle_time_s(self) -> float:
        return self.config.bench.settle_time_s

    @property
    def truth(self) -> Any:
        """The emulator's ground truth (``labctl.bench.emulation.EmulatorTruth``) for reports and tests; None on a
        real bench."""
        return None if self.emulation is None else self.emulation.truth

    def projected_time_s(self) -> float | None:
        """Bench time spent so far on an emulated bench (virtual clock), None on a real one."""
        return self.clock.now_s if self.clock.virtual else None

    def status(self) -> dict[str, Any]:
        """Identity and error state of every instrument (``labctl bench check``)."""
        out: dict[str, Any] = {}
        for name, driver in self.instruments.items():
            entry: dict[str, Any] = {"driver": self.config.instruments[name].driver,
                                     "address": driver.address, "identity": self.identities.get(name)}
            try:
                driver.check_errors()
                entry["errors"] = []
            except InstrumentError as exc:
                entry["errors"] = [str(exc)]
            out[name] = entry
        return out

    def transaction_count(self) -> int:
        """Lines sent to all instruments so far."""
        if self._transports is None or self._transports[0] != len(self.instruments):
            # each transport once (instruments may share one); the batch loop asks several times per reading
            unique = {id(driver.transport): driver.transport for driver in self.instruments.values()}
            self._transports = (len(self.instruments), list(unique.values()))
        return sum([transport.write_count for transport in self._transports[1]])

    def session(self) -> Session:
        """The bench as calibration, training and procedures see it (one per open bench): wrapped instruments behind
        capability interfaces, the heater limits in ring order, the clock, and the batch operation."""
        if self._session is not None:
            return self._session
        w = self.config.wiring
        meter = ports = None
        if logs_spectra(w) and isinstance(self.readout, PowerMeterBanks):
            meter = self.readout.meters[0]
            ports = [(thr, drop) for _, thr, drop in self.readout.ports]
        chip_id = self.config.chip_id
        self._session = Session(
            heaters=self.heaters, ring_channels=self.ring_channels, n_banks=w.banks, n_rings=w.rings,
            limits=self.heaters.limits.take(self.ring_channels, ring_namer(w.rings)), lasers=list(self.lasers),
            wavelengths_m=np.asarray(w.wavelengths_m, dtype=float),
            laser_max_power_w=self.config.limits.laser_max_power_w, readout=self.readout, clock=self.clock,
            settle_time_s=self.settle_time_s, power_meter=meter, sweep_ports=ports, identities=dict(self.identities),
            bench_sha256=self.config_sha256, wiring_sha256=self.config.wiring_sha256,
            chip_id=chip_id, readout_linearity_db=w.readout_linearity_db, transaction_count=self.transaction_count,
            vectorized=None if self.emulation is None else self.emulation.vectorized(self.config, self.readout),
            timing=None if self.emulation is None else self.emulation.timing())
        return self._session

    def make_safe(self) -> list[tuple[str, Exception]]:
        return self.guard.make_safe()

    def lasers_found_off(self) -> list[str]:
        """Lasers switched on through the bench and not switched off since whose output reads off now (an
        interlock, a key switch): the readings taken since were dark. Read before the safe state."""
        off: list[str] = []
        for laser in self.lasers:
            if not laser.switched_on:
                continue
            try:
                if not laser.get_output():
                    off.append(laser.name)
            except InstrumentError as exc:
                log.warning("%s: output state not readable: %s", laser.name, exc)
        return off

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.guard.make_safe()
        finally:
            self.guard.disarm()
            for name, driver in self.instruments.items():
                _safe_close(name, driver)
            if self.emulation is not None:
                self.emulation.close()
            self.lock.release()


def logs_spectra(wiring: Any) -> bool:
    """Every detector is a through/drop port pair of one power meter: the session then offers calibration the
    meter's logging sweeps (``power_meter``, ``sweep_ports``); other benches read spectra as balanced readings.
    ``wiring``: a bench file's ``wiring`` (so a dry check can tell without connecting)."""
    detectors = wiring.detectors
    return (all(d.through_port is not None for d in detectors)
            and len({d.instrument for d in detectors}) == 1)


def _laser_view(driver: Any) -> Any:
    """The TunableLaser of an instrument (a mainframe exposes its laser as ``.laser``)."""
    return getattr(driver, "laser", driver)


def _readout(config: BenchConfig, instruments: dict[str, Any]) -> BankReadout:
    detectors = config.wiring.detectors
    if all(d.through_port is not None for d in detectors):
        names = list(dict.fromkeys(d.instrument for d in detectors))
        meters = [getattr(instruments[n], "power_meter", instruments[n]) for n in names]
        ports = [(names.index(d.instrument), int(d.through_port), int(d.drop_port))  # type: ignore[arg-type]
                 for d in detectors]
        return PowerMeterBanks(meters, ports)
    if all(d.channel is not None for d in detectors):
        names = list(dict.fromkeys(d.instrument for d in detectors))
        wiring = [(names.index(d.instrument), int(d.channel), float(d.tia_gain_v_per_a),  # type: ignore[arg-type]
                   d.tia_offset_v) for d in detectors]
        return AdcBanks([instruments[n] for n in names], wiring)
    if all(d.through_port is None and d.channel is None for d in detectors):
        compliance = config.limits.detector_max_current_a
        lines = [d.trigger_line for d in detectors]
        return SourceMeterBanks([instruments[d.instrument] for d in detectors],
                                trigger_lines=lines if all(line is not None for line in lines) else None,
                                **({} if compliance is None else {"compliance_a": compliance}))
    raise ValueError("wiring.detectors: one readout kind per bench (power-meter ports, DAQ channels or source meters)")


def _open_driver(name: str, driver: str, address: str | None, options: dict[str, Any], config: BenchConfig,
                 emulation: Any, clock: Clock) -> Any:
    cls = driver_class(driver)
    kwargs: dict[str, Any] = dict(options)
    kwargs.setdefault("name", name)
    kwargs["clock"] = clock
    if config.limits.detector_max_current_a is not None and "compliance_a" in inspect.signature(cls).parameters:
        kwargs.setdefault("compliance_a", config.limits.detector_max_current_a)   # from the bench limits
    if name == config.wiring.heaters.instrument:
        kwargs.setdefault("mode", config.wiring.heaters.mode)
        key = "max_voltage_v" if config.wiring.heaters.mode == "voltage" else "max_current_a"
        per_ring = _per_heater(getattr(config.limits, "heater_" + key), config.wiring.banks * config.wiring.rings)
        assert per_ring is not None
        # the instrument's own limit is a hardware backstop at the largest ring limit; per-channel limits (and
        # zero for unwired outputs) are enforced by the safety wrapper before anything is sent
        kwargs.setdefault(key, float(per_ring.max()))
        if "used_channels" in inspect.signature(cls).parameters:  # outputs the bench does not wire are left alone
            kwargs.setdefault("used_channels", list(config.wiring.heaters.channels))
    if emulation is not None:
        target = emulation.address(name)
        kwargs.update(emulation.driver_options(name))
        return cls(target, resource_manager=None if "://" in target else emulation.resource_manager, **kwargs)
    if address is None:
        raise ValueError(f"instruments.{name}.address: required for a real bench")
    return cls(address, **kwargs)


def _reach_the_rest(config: BenchConfig, instruments: dict[str, Any], emulation: Any, clock: Clock | None) -> None:
    """After a failed connect: open the lasers not opened yet, so that closing them switches their outputs off (a
    laser left on by an earlier session that was killed is still switched off when the heaters fail to connect).
    Lasers that cannot be reached either are logged and left."""
    if clock is None:
        return
    for name in config.wiring.lasers:
        if name in instruments:
            continue
        inst = config.instruments[name]
        try:
            instruments[name] = _open_driver(name, inst.driver, inst.address, inst.options, config, emulation, clock)
        except (InstrumentError, OSError, ValueError) as exc:
            log.error("after the failed connect, %s could not be reached to switch it off: %s", name, exc)


def _safe_close(name: str, driver: Any) -> None:
    try:
        driver.close()
    except (InstrumentError, OSError) as exc:
        log.error("closing %s failed: %s", name, exc)


def lasers_on(bench: Bench, powers_w: np.ndarray | float, wavelengths_m: np.ndarray | None = None) -> None:
    """Convenience for procedures: every channel to its WDM wavelength (the wiring's unless given) and power,
    then outputs on."""
    powers = np.broadcast_to(np.asarray(powers_w, dtype=float), (len(bench.lasers),))
    if not np.all(np.isfinite(powers)):
        raise LimitError("laser powers must be finite")
    grid = np.asarray(bench.config.wiring.wavelengths_m if wavelengths_m is None else wavelengths_m, dtype=float)
    for k, laser in enumerate(bench.lasers):
        laser.set_wavelength_m(float(grid[k]))
        laser.set_power_w(float(powers[k]))
        laser.set_output(True)
