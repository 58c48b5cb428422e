"""Thorlabs PM100D / PM100USB optical power meter console (PM100A, PM400 share the SCPI core); instruments.md §2.3.

Connection: USB-TMC, ``USB0::0x1313::0x8078::<SN>::INSTR`` (PM100D) or ``USB0::0x1313::0x8072::<SN>::INSTR``
(PM100USB); LF terminators. ``*IDN?`` answers ``Thorlabs,PM100D,<SN>,<fw>`` (the manual writes THORLABS).

Units: the correction wavelength is set and read in **nm** (``SENS:CORR:WAV``), unlike the Keysight meters; the
driver converts from metres. The power unit is forced to W at connect (``SENS:POW:UNIT W``) so ``MEAS:POW?``
answers in W.

At connect the driver first drains the error queue (stale entries are logged, not blamed on its own commands
later) and ends by requiring it clean. It reads the sensor head
(``SYST:SENS:IDN?`` -> ``name,sn,cal_msg,type,subtype,flags``):
``no sensor`` (nothing plugged in) or a head without the power flag is refused with a clear error, and the
head's wavelength range (``SENS:CORR:WAV? MIN|MAX``) is read so out-of-range wavelengths are refused before
anything is sent. Flags are read in the PM100D/PM100USB format (1 power, 2 energy, 16 response settable,
32 wavelength settable, 64 tau settable, 256 temperature sensor); the newer PM100D2/D3 format is not covered.

Averaging: the console averages ``SENS:AVER:COUN`` samples per reading, and its manual says one sample takes
about 3 ms (quoted in several public drivers: "Sets the averaging rate (1 sample takes approx. 3ms)"). The
driver maps ``averaging_time_s`` to ``round(t / 3 ms)`` samples, at least 1.

Bulk: the PM100 has no logging/buffer command in any driver examined (instruments.md §2.3); every reading is one
``MEAS:POW?`` transaction. The logging methods of :class:`~labctl.drivers.interfaces.PowerReadout` therefore
raise :class:`NoLoggingError` rather than emulate logging with a software loop whose timing nobody controls.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import numpy as np
from labctl.drivers.clock import Clock
from labctl.drivers.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReplyError,
    LimitError,
)
from labctl.drivers.instrument import ScpiInstrument, Setting
from labctl.drivers.parsing import in_range, parse_float, parse_int
from labctl.drivers.transport import BaseTransport, TransportSettings
from labctl.drivers.validators import IntRange, Range

log = logging.getLogger(__name__)

IDN_QUERY = "*IDN?"
SENSOR_IDN_QUERY = "SYST:SENS:IDN?"
WAVELENGTH_MIN_QUERY = "SENS:CORR:WAV? MIN"
WAVELENGTH_MAX_QUERY = "SENS:CORR:WAV? MAX"
MEASURE_POWER_QUERY = "MEAS:POW?"

#: Time per averaged sample, s (PM100D/PM100A manual: "1 sample takes approx. 3ms").
SAMPLE_TIME_S = 3e-3
#: Largest averaging count the driver sends (10 000 samples, about 30 s per reading).
MAX_AVERAGE_COUNT = 10_000
#: Plausible power reply, W: a little negative after zeroing, up to the largest Thorlabs thermal heads.
POWER_REPLY_RANGE_W = (-1e-3, 250.0)
#: Wavelengths any Thorlabs head can be corrected for, nm (photodiodes 200..2600 nm, thermal heads to 10.6 um).
WAVELENGTH_WINDOW_NM = (150.0, 25_000.0)
#: Sensor flag bits (PM100D/PM100USB format).
FLAG_POWER, FLAG_ENERGY, FLAG_WAVELENGTH_SETTABLE = 1, 2, 32


class NoLoggingError(InstrumentError, NotImplementedError):
    """The instrument has no logging/buffer function; raised instead of a silent software emulation."""


class ThorlabsPM100(ScpiInstrument):
    """Thorlabs PM100D / PM100USB as a single-port :class:`~labctl.drivers.interfaces.PowerReadout` (port 1)."""

    label: ClassVar[str] = "thorlabs_pm100"
    line_settings: ClassVar[TransportSettings] = TransportSettings(write_termination="\n", read_termination="\n",
                                                                   timeout_s=3.0)
    error_query: ClassVar[str] = "SYST:ERR?"
    n_ports: int = 1

    wavelength_nm = Setting("SENS:CORR:WAV?", "SENS:CORR:WAV {value:.1f}",
                            "Correction wavelength, nm (the console's unit).",
                            parse=in_range(parse_float, *WAVELENGTH_WINDOW_NM),
                            validator=Range(*WAVELENGTH_WINDOW_NM, " nm"), reply="{:.6E}", default=1550.0, unit="nm")
    average_count = Setting("SENS:AVER:COUN?", "SENS:AVER:COUN {value:d}",
                            "Samples averaged per reading (about 3 ms each).",
                            parse=lambda t: int(in_range(parse_int, 1, 1_000_000)(t)),
                            validator=IntRange(1, MAX_AVERAGE_COUNT), reply="{:d}", default=1)
    range_auto = Setting("SENS:POW:RANG:AUTO?", "SENS:POW:RANG:AUTO {value}", "Power auto-ranging.",
                         mapping={True: "1", False: "0"}, default=True)
    range_upper_w = Setting("SENS:POW:RANG:UPP?", "SENS:POW:RANG:UPP {value:.6E}",
                            "Fixed range: the console picks the smallest range holding this power, W.",
                            parse=in_range(parse_float, 0.0, 1e4), validator=Range(1e-9, 250.0, " W"),
                            reply="{:.6E}", default=1e-3, unit="W")
    power_unit = Setting("SENS:POW:UNIT?", "SENS:POW:UNIT {value}", "Unit of power readings (W at connect).",
                         mapping={"W": "W", "dBm": "DBM"}, default="dBm")

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None) -> None:
        super().__init__(resource, resource_manager=resource_manager, name=name, timeout_s=timeout_s,
                         clock=clock)
        self.sensor: tuple[str, ...] = ()
        self.wavelength_settable = False
        self._wavelength_limits_nm: tuple[float, float] = WAVELENGTH_WINDOW_NM
        self._connect()

    # -- connect ----------------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        ident = self.identity()
        if ident.maker.upper() != "THORLABS" or not ident.model.upper().startswith("PM"):
            raise InstrumentConnectionError(f"not a Thorlabs PM power meter: {ident}", instrument=self.name,
                                            address=self.address, command=IDN_QUERY)
        log.info("%s: %s", self.name, ident)
        with self.transport.transaction():
            for code, message in self.read_errors():
                log.warning("%s: stale error in the queue at connect: %d %s", self.name, code, message)
            self.sensor = self.query_parsed(SENSOR_IDN_QUERY, self._parse_sensor)
            flags = int(self.sensor[5])
            if not flags & FLAG_POWER:
                raise InstrumentConnectionError(f"sensor head {self.sensor[0]} cannot measure power (flags {flags})",
                                                instrument=self.name, address=self.address,
                                                command=SENSOR_IDN_QUERY)
            self.wavelength_settable = bool(flags & FLAG_WAVELENGTH_SETTABLE)
            self.power_unit = "W"
            if self.wavelength_settable:
                lo = self.query_parsed(WAVELENGTH_MIN_QUERY, in_range(parse_float, *WAVELENGTH_WINDOW_NM))
                hi = self.query_parsed(WAVELENGTH_MAX_QUERY, in_range(parse_float, *WAVELENGTH_WINDOW_NM))
                if not lo < hi:
                    raise InstrumentReplyError(f"sensor wavelength range [{lo:g}, {hi:g}] nm is empty",
                                               instrument=self.name, address=self.address,
                                               command=WAVELENGTH_MAX_QUERY)
                self._wavelength_limits_nm = (lo, hi)
            self.check_errors()
        log.info("%s: sensor %s (s/n %s), wavelength %s", self.name, self.sensor[0], self.sensor[1],
                 f"{self._wavelength_limits_nm[0]:g}-{self._wavelength_limits_nm[1]:g} nm"
                 if self.wavelength_settable else "fixed")

    def _parse_sensor(self, text: str) -> tuple[str, ...]:
        if text.strip().strip('"').lower() == "no sensor":
            raise InstrumentConnectionError("no sensor head is attached to the console: plug one in and reconnect",
                                            instrument=self.name, address=self.address, command=SENSOR_IDN_QUERY)
        fields = tuple(f.strip().strip('"') for f in text.strip().split(","))
        if len(fields) != 6 or not fields[0]:
            raise ValueError(f"expected 'name,sn,cal_msg,type,subtype,flags', got {text!r}")
        for field in fields[3:]:
            parse_int(field)
        return fields

    # -- PowerReadout ------------------------------------------------------------------------------------------------
    def _check_port(self, port: int | None) -> None:
        if port is not None and port != 1:
            raise LimitError(f"{self.name}: port {port!r} does not exist (the PM100 has one input, port 1)")

    def set_wavelength_m(self, wavelength_m: float, port: int | None = None) -> None:
        """Correction wavelength; sent in nm, checked against the sensor head's range first."""
        self._check_port(port)
        try:
            wavelength_nm = float(wavelength_m) * 1e9
        except (TypeError, ValueError):
            raise LimitError(f"{self.name}.wavelength_m: {wavelength_m!r} is not a number") from None
        if not self.wavelength_settable:
            raise LimitError(f"{self.name}.wavelength_m: sensor head {self.sensor[0] if self.sensor else '?'} "
                             "has a fixed wavelength")
        Range(*self._wavelength_limits_nm, " nm")(wavelength_nm, f"{self.name}.wavelength_m")
        self.wavelength_nm = wavelength_nm

    def get_wavelength_m(self) -> float:
        return self.wavelength_nm * 1e-9

    def wavelength_limits_m(self) -> tuple[float, float]:
        lo, hi = self._wavelength_limits_nm
        return lo * 1e-9, hi * 1e-9

    @staticmethod
    def averaging_count_for(averaging_time_s: float) -> int:
        """Samples for an averaging time (about 3 ms per sample, at least one)."""
        return max(1, round(averaging_time_s / SAMPLE_TIME_S))

    def set_averaging_time_s(self, averaging_time_s: float, port: int | None = None) -> None:
        """Averaging time mapped to ``SENS:AVER:COUN``; must fit in the transport timeout."""
        self._check_port(port)
        try:
            seconds = float(averaging_time_s)
        except (TypeError, ValueError):
            raise LimitError(f"{self.name}.averaging_time_s: {averaging_time_s!r} is not a number") from None
        if not math.isfinite(seconds) or seconds <= 0.0:
            raise LimitError(f"{self.name}.averaging_time_s: {averaging_time_s!r} s must be positive")
        count = self.averaging_count_for(seconds)
        if count * SAMPLE_TIME_S > 0.8 * self.transport.settings.timeout_s:
            raise LimitError(f"{self.name}.averaging_time_s: {seconds:g} s would outlast the "
                             f"{self.transport.settings.timeout_s:g} s reply timeout; open with a longer timeout_s")
        self.average_count = count

    def get_averaging_time_s(self) -> float:
        return self.average_count * SAMPLE_TIME_S

    def set_range_dbm(self, range_dbm: float | None, port: int | None = None) -> None:
        """None: auto range. Otherwise auto off and the upper range set to the power of ``range_dbm``, in W."""
        self._check_port(port)
        if range_dbm is None:
            self.range_auto = True
            return
        try:
            value = float(range_dbm)
        except (TypeError, ValueError):
            raise LimitError(f"{self.name}.range_dbm: {range_dbm!r} is not a number") from None
        if not math.isfinite(value):
            raise LimitError(f"{self.name}.range_dbm: {range_dbm!r} is not finite")
        upper_w = 1e-3 * 10.0 ** (value / 10.0)
        command = type(self).range_upper_w.format_command(self, upper_w)  # validate before anything is sent
        with self.transport.transaction():
            self.range_auto = False
            self.write(command)

    def read_power_w(self, port: int = 1) -> float:
        """One averaged reading, W (``MEAS:POW?``); over-range markers and implausible values raise."""
        self._check_port(port)
        return self.query_parsed(MEASURE_POWER_QUERY, in_range(parse_float, *POWER_REPLY_RANGE_W))

    def read_all_w(self) -> np.ndarray:
        return np.array([self.read_power_w(1)])

    def _no_logging(self, what: str) -> NoLoggingError:
        return NoLoggingError(f"{what}: the PM100 has no logging or buffer function; read single values with "
                              "read_power_w(), or use a meter with logging (e.g. Keysight N774xA) for sweeps",
                              instrument=self.name, address=self.address)

    def configure_logging(self, n_points: int, averaging_time_s: float, triggered: bool = True) -> None:
        raise self._no_logging("configure_logging")

    def start_logging(self) -> None:
        raise self._no_logging("start_logging")

    def wait_logging(self, timeout_s: float) -> None:
        raise self._no_logging("wait_logging")

    def logged_power_w(self, port: int) -> np.ndarray:
        raise self._no_logging("logged_power_w")

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"sensor": list(self.sensor), "wavelength_limits_m": list(self.wavelength_limits_m()),
                "averaging_time_s": self.get_averaging_time_s()}
