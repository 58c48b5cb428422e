"""Santec TSL-570 / TSL-770 tunable laser in the SCPI command set (instruments.md §1.5, §4).

Connection (instruments.md §0, §1.5):

* LAN: raw socket on port 5000, ``TCPIP0::<ip>::5000::SOCKET``, commands and replies end in CR (``\\r``)
  [D: santec-corporation/python-samples ``lan_connection.py``].
* GPIB: EOI is always sent; the delimiter is configurable on the unit (``:SYST:COMM:GPIB:DEL 0..3`` = CR, LF,
  CR+LF, none). The driver writes CR+LF (what Santec's GPIB sample sends) and reads until EOI, so it works
  whatever delimiter the unit is set to; parsers strip the delimiter.
* USB (Santec FTDI virtual COM port) / ASRL / serial URLs: CR both ways.

:meth:`SantecTSL570.line_settings_for` picks these per transport; ``write_termination=`` / ``read_termination=``
override them.

Command set. In SCPI mode (``:SYST:COMM:COD 1``) a number without a unit is metres (wavelength) and the power
unit is the one chosen with ``:POW:UNIT``. In Legacy mode the same ``:WAV 1.55E-06`` would be read as nm, so the
driver never talks to a unit in Legacy mode: at connect it queries ``:SYST:COMM:COD?`` and switches to SCPI only
when the unit answers 0, then re-reads the code to confirm. Querying first keeps connect idempotent and logs
when somebody left the laser in Legacy mode (pymeasure writes ``:SYST:COMM:COD 1`` unconditionally; both work).

Power is handled in dBm (``:POW:UNIT 0``, set at connect): the settable range is -15..+13 dBm with 0.01 dB
resolution, whereas in mW the 0.01 mW resolution is 30 % of the -15 dBm setting.

Wavelength logging (bulk): the sweep runs in continuous one-way mode with the trigger output in "step" mode
(``:TRIG:OUTP 3``, ``:TRIG:OUTP:STEP <m>``); afterwards ``:READ:POIN?`` gives the number of logged points and
``:READ:DAT?`` the logged wavelengths as one IEEE definite-length block. The reference (§1.5, from Santec's
sample class) says float32 little-endian; other public drivers read float64 LE in metres (TSL-770) or int32 LE
in 0.1 pm (Legacy mode: Santec's LAN sample, QMI). The driver therefore decodes the block by its size against
``:READ:POIN?`` (4 or 8 bytes per point) and accepts an interpretation only if every value is a plausible
wavelength (metres, or nm which it converts); anything else raises :class:`InstrumentReplyError`.

Block terminator: Santec's own sample reads the block with ``expect_termination=False`` ([D] santec
python-samples ``tsl_instrument.py`` ``get_wavelength_logging_data``), and whether a terminator follows is not
documented. The driver reads just the block, then asks ``*OPC?`` and skips one empty line first if a stray
terminator was left behind: a block with or without its terminator leaves the line in step either way.

Operation complete. On the TSL-570 ``*OPC?`` answers at once, ``0`` while an operation (a tune) is in progress
and ``1`` when it is done ([D] Santec sample ``get_operation_complete_query``: '0' "In operation", '1'
"Operation completed"; NQCP ``Santec_TSL570_Ethernet_Driver.get_operation_status``; QMI ``operation_complete``
reads it as a boolean). After ``:WAV`` the driver therefore polls ``*OPC?`` until ``1``, for at most
``tune_timeout_s`` (a generous bound: no tuning time is documented in the sources consulted [?]).

Trigger output. ``:TRIG:OUTP 3`` (step) and ``:TRIG:OUTP:STEP`` give one pulse per step; the period mode is set
explicitly too, ``:TRIG:OUTP:SETT 0`` = periodic in wavelength ([D] Santec sample
``set_output_trigger_period_mode``: "0: periodic in wavelength, 1: periodic in time"; a public lab note records
the same on a TSL-775). QMI's ``set_trigger_output_period_mode`` documents the opposite encoding [?]: the value is
read back and the unit's own manual should settle it.

Not covered: ``:READ:DAT:POW?`` (power log; its format is undocumented here), frequency commands, fine tuning,
coherence control, attenuator/manual power mode.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from labctl.drivers.clock import Clock
from labctl.drivers.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeout,
    LimitError,
)
from labctl.drivers.instrument import ScpiInstrument, Setting, attempt_all
from labctl.drivers.interfaces import SweepSettings
from labctl.drivers.parsing import in_range, parse_float, parse_int
from labctl.drivers.transport import (
    BaseTransport,
    TransportSettings,
    is_visa_address,
    open_transport,
)
from labctl.drivers.validators import IntRange, OneOf, Range

log = logging.getLogger(__name__)

# -- command spellings that are not plain settings (manual order) ------------------------------------------------
IDN_QUERY = "*IDN?"
WAVELENGTH_MIN_QUERY = ":WAV:MIN?"  # [D: QMI santec tsl_570 driver] not listed in instruments.md §1.5
WAVELENGTH_MAX_QUERY = ":WAV:MAX?"
SWEEP_RANGE_MIN_QUERY = ":WAV:SWE:RANG:MIN?"  # speed-dependent sweep limits
SWEEP_RANGE_MAX_QUERY = ":WAV:SWE:RANG:MAX?"
POWER_MONITOR_QUERY = ":POW:ACT?"
SWEEP_STATUS_QUERY = ":WAV:SWE?"
SWEEP_START = ":WAV:SWE 1"
SWEEP_STOP = ":WAV:SWE 0"
LOG_POINTS_QUERY = ":READ:POIN?"
LOG_DATA_QUERY = ":READ:DAT?"
ALERT_QUERY = ":SYST:ALER?"
OPC_QUERY = "*OPC?"

#: ``:WAV:SWE?`` codes.
SWEEP_STOPPED, SWEEP_RUNNING, SWEEP_WAITING_TRIGGER, SWEEP_PREPARING = 0, 1, 3, 4
#: Sweep speeds the TSL-570 accepts, nm/s (instruments.md §1.5).
SWEEP_SPEEDS_NM_PER_S = (1, 2, 5, 10, 20, 50, 100, 200)
#: Largest logging buffer (``:READ:POIN?`` range).
MAX_LOG_POINTS = 500_000
#: Plausible wavelength window of the TSL-570/770 family (all bands lie within 1260-1680 nm).
WAVELENGTH_WINDOW_M = (1.2e-6, 1.7e-6)
#: Finest wavelength step (0.1 pm).
MIN_STEP_M = 1e-13
#: Settable output power, dBm (typical TSL-570 range).
POWER_RANGE_DBM = (-15.0, 13.0)
#: Alert codes of ``:SYST:ALER?`` (Santec sample ``tsl_instrument.py`` AlertCode, QMI ALERTS_TABLE).
ALERT_TEXTS: dict[int, str] = {
    0: "power supply error 1", 2: "power supply error 2", 3: "power supply error 3",
    4: "power setting error (unconfigurable power)", 5: "wavelength error", 6: "attenuator error",
    7: "interlock detection", 20: "temperature control error 1", 21: "temperature control error 2",
    22: "temperature control error 3", 23: "temperature control error 4 / warming up", 24: "sensor error 1",
    25: "shutter error", 26: "sensor error 2", 27: "connection error", 28: "exhaust fan error",
    30: "exhaust fan error",
}
_NO_ALERT_RE = re.compile(r"^no alerts?\.?$", re.IGNORECASE)
_ALERT_CODE_RE = re.compile(r"^No\s*(\d+)", re.IGNORECASE)


def dbm_to_w(power_dbm: float) -> float:
    return 1e-3 * 10.0 ** (power_dbm / 10.0)


def w_to_dbm(power_w: float) -> float:
    return 10.0 * math.log10(power_w / 1e-3)


def _parse_wavelength_m(text: str) -> float:
    """A wavelength reply in metres (SCPI mode); a value in nm means the unit is in Legacy mode."""
    value = parse_float(text)
    lo, hi = WAVELENGTH_WINDOW_M
    if not lo <= value <= hi:
        hint = " (looks like nm: is the laser in Legacy mode?)" if 1e9 * lo <= value <= 1e9 * hi else ""
        raise ValueError(f"wavelength {value:g} m is outside [{lo:g}, {hi:g}] m{hint}")
    return value


def _parse_opc(text: str) -> int:
    """``*OPC?`` on the TSL: 0 (operation in progress) or 1 (done)."""
    value = parse_int(text)
    if value not in (0, 1):
        raise ValueError(f"expected 0 or 1, got {text!r}")
    return value


def _parse_status(text: str) -> int:
    value = parse_int(text)
    if value not in (SWEEP_STOPPED, SWEEP_RUNNING, SWEEP_WAITING_TRIGGER, SWEEP_PREPARING):
        raise ValueError(f"unknown sweep status {value}")
    return value


class SantecTSL570(ScpiInstrument):
    """Santec TSL-570 / TSL-770 as a :class:`~labctl.drivers.interfaces.TunableLaser` (SCPI mode, dBm)."""

    label: ClassVar[str] = "santec_tsl570"
    #: Raw LAN socket (Santec samples): CR both ways. GPIB and serial get their own, see :meth:`line_settings_for`.
    line_settings: ClassVar[TransportSettings] = TransportSettings(write_termination="\r", read_termination="\r",
                                                                   timeout_s=5.0)
    error_query: ClassVar[str] = ":SYST:ERR?"

    command_set = Setting(":SYST:COMM:COD?", ":SYST:COMM:COD {value}",
                          "Command set: Legacy (nm/THz, no units) or SCPI (m/Hz, units accepted).",
                          mapping={"legacy": "0", "scpi": "1"}, default="legacy")
    power_unit = Setting(":POW:UNIT?", ":POW:UNIT {value}", "Unit of :POW and :POW:ACT? (set to dBm at connect).",
                         mapping={"dBm": "0", "mW": "1"}, default="mW")
    wavelength_unit = Setting(":WAV:UNIT?", ":WAV:UNIT {value}",
                              "Display unit; set to nm at connect so the :WAV:SWE tree is the active one.",
                              mapping={"nm": "0", "THz": "1"}, default="nm")
    wavelength_m = Setting(":WAV?", ":WAV {value:.7E}", "Output wavelength, m (SCPI default unit; 0.1 pm steps).",
                           parse=_parse_wavelength_m, validator=Range(*WAVELENGTH_WINDOW_M, " m"), reply="{:.7E}",
                           default=1.55e-6, unit="m")
    power_dbm = Setting(":POW?", ":POW {value:.2f}", "Output power setpoint, dBm (with :POW:UNIT 0).",
                        parse=in_range(parse_float, -60.0, 20.0), validator=Range(*POWER_RANGE_DBM, " dBm"),
                        reply="{:.2f}", default=0.0, unit="dBm")
    output = Setting(":POW:STAT?", ":POW:STAT {value}", "Laser output on/off (:POW:SHUT is the inverse).",
                     mapping={True: "1", False: "0"}, default=False)
    sweep_start_m = Setting(":WAV:SWE:STAR?", ":WAV:SWE:STAR {value:.7E}", "Sweep start wavelength, m.",
                            parse=_parse_wavelength_m, validator=Range(*WAVELENGTH_WINDOW_M, " m"), reply="{:.7E}",
                            default=1.5e-6, unit="m")
    sweep_stop_m = Setting(":WAV:SWE:STOP?", ":WAV:SWE:STOP {value:.7E}", "Sweep stop wavelength, m.",
                           parse=_parse_wavelength_m, validator=Range(*WAVELENGTH_WINDOW_M, " m"), reply="{:.7E}",
                           default=1.6e-6, unit="m")
    sweep_step_m = Setting(":WAV:SWE:STEP?", ":WAV:SWE:STEP {value:.7E}", "Step of the stepped sweep modes, m.",
                           parse=in_range(parse_float, MIN_STEP_M, 5e-7), validator=Range(MIN_STEP_M, 5e-7, " m"),
                           reply="{:.7E}", default=1e-12, unit="m")
    sweep_speed_nm_per_s = Setting(":WAV:SWE:SPE?", ":WAV:SWE:SPE {value:g}",
                                   "Continuous sweep speed, nm/s (the manual's unit; no unit suffix allowed).",
                                   parse=in_range(parse_float, 0.0, 200.0), validator=OneOf(SWEEP_SPEEDS_NM_PER_S),
                                   reply="{}", default=10, unit="nm/s")
    sweep_mode = Setting(":WAV:SWE:MOD?", ":WAV:SWE:MOD {value}", "Sweep mode (step/continuous, one/two way).",
                         mapping={"step_one_way": "0", "continuous_one_way": "1", "step_two_way": "2",
                                  "continuous_two_way": "3"}, default="step_one_way")
    sweep_cycles = Setting(":WAV:SWE:CYCL?", ":WAV:SWE:CYCL {value:d}", "Sweep repetitions (0..999).",
                           parse=parse_int, validator=IntRange(0, 999), reply="{:d}", default=1)
    trigger_input_external = Setting(":TRIG:INP:EXT?", ":TRIG:INP:EXT {value}", "External trigger input enable.",
                                     mapping={True: "1", False: "0"}, default=False)
    trigger_input_standby = Setting(":TRIG:INP:STAN?", ":TRIG:INP:STAN {value}",
                                    "Trigger-standby mode (sweep waits for a trigger).",
                                    mapping={True: "1", False: "0"}, default=False)
    trigger_output_mode = Setting(":TRIG:OUTP?", ":TRIG:OUTP {value}", "Trigger output timing.",
                                  mapping={"none": "0", "stop": "1", "start": "2", "step": "3"}, default="none")
    trigger_output_period = Setting(":TRIG:OUTP:SETT?", ":TRIG:OUTP:SETT {value}",
                                    "Output trigger period mode: 0 = periodic in wavelength (Santec sample), "
                                    "1 = in time [?: QMI documents the opposite].",
                                    mapping={"wavelength": "0", "time": "1"}, default="time")
    trigger_output_step_m = Setting(":TRIG:OUTP:STEP?", ":TRIG:OUTP:STEP {value:.7E}",
                                    "Wavelength interval of the step trigger output, m (0.1 pm resolution).",
                                    parse=in_range(parse_float, MIN_STEP_M, 5e-7),
                                    validator=Range(MIN_STEP_M, 5e-7, " m"), reply="{:.7E}", default=1e-12, unit="m")

    #: Closing the driver stops any sweep and switches the output off first, as the bench would.
    safe_on_close: ClassVar[bool] = True
    #: Longest wait for ``*OPC?`` to answer 1 after a wavelength change, s (module docstring).
    tune_timeout_s: ClassVar[float] = 30.0

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None, write_termination: str | None = None,
                 read_termination: str | None = None, poll_interval_s: float = 0.1) -> None:
        if not isinstance(resource, BaseTransport):
            settings = self.line_settings_for(resource)
            overrides: dict[str, Any] = {}
            if write_termination is not None:
                overrides["write_termination"] = write_termination
            if read_termination is not None:
                overrides["read_termination"] = read_termination
            if timeout_s is not None:
                overrides["timeout_s"] = timeout_s
            resource = open_transport(resource, name=name or self.label, resource_manager=resource_manager,
                                      settings=replace(settings, **overrides), clock=clock)
        super().__init__(resource, name=name)
        self.poll_interval_s = poll_interval_s
        self._limits_m: tuple[float, float] = WAVELENGTH_WINDOW_M
        self._sweep: SweepSettings | None = None
        self._sweep_started_at: float | None = None
        self._connect()

    @classmethod
    def line_settings_for(cls, address: str) -> TransportSettings:
        """Terminators per transport: CR on the LAN socket and serial, CR+LF out / EOI in on GPIB."""
        if is_visa_address(address) and address.upper().startswith("GPIB"):
            return replace(cls.line_settings, write_termination="\r\n", read_termination="")
        return cls.line_settings

    # -- connect -------------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        """Identify, make sure the SCPI command set is active, fix the units, read the tuning range."""
        ident = self.identity()
        if ident.maker.upper() != "SANTEC" or not ident.model.upper().startswith("TSL-"):
            raise InstrumentConnectionError(f"not a Santec TSL laser: {ident}", instrument=self.name,
                                            address=self.address, command=IDN_QUERY)
        log.info("%s: %s", self.name, ident)
        with self.transport.transaction():
            if self.command_set != "scpi":
                log.warning("%s was in the Legacy command set; switching to SCPI", self.name)
                self.command_set = "scpi"
                if self.command_set != "scpi":
                    raise InstrumentConnectionError("the laser did not switch to the SCPI command set",
                                                    instrument=self.name, address=self.address,
                                                    command=type(self).command_set.command)
            self.power_unit = "dBm"
            self.wavelength_unit = "nm"
            lo = self.query_parsed(WAVELENGTH_MIN_QUERY, _parse_wavelength_m)
            hi = self.query_parsed(WAVELENGTH_MAX_QUERY, _parse_wavelength_m)
        if not lo < hi:
            raise InstrumentReplyError(f"tuning range [{lo:g}, {hi:g}] m is empty", instrument=self.name,
                                       address=self.address, command=WAVELENGTH_MAX_QUERY)
        self._limits_m = (lo, hi)

    # -- TunableLaser ----------------------------------------------------------------------------------------------
    def wavelength_limits_m(self) -> tuple[float, float]:
        """Tuning range of this unit (``:WAV:MIN?`` / ``:WAV:MAX?``, read at connect)."""
        return self._limits_m

    def _check_in_limits(self, what: str, wavelength_m: float) -> float:
        lo, hi = self._limits_m
        value = Range(lo, hi, " m")(wavelength_m, f"{self.name}.{what}")
        return value

    def set_wavelength_m(self, wavelength_m: float) -> None:
        """``:WAV <m>``, then wait for the tune to finish (``*OPC?`` until 1, module docstring)."""
        value = self._check_in_limits("wavelength_m", wavelength_m)
        with self.transport.transaction():
            self.wavelength_m = value
            self.wait_operation_complete(self.tune_timeout_s)

    def wait_operation_complete(self, timeout_s: float, *, after_block: bool = False) -> None:
        """Poll ``*OPC?`` until it answers 1 (0 = an operation is in progress), for at most ``timeout_s``.

        ``after_block`` accepts one empty line first: the terminator a data block may have left behind.
        """
        deadline = time.monotonic() + timeout_s
        skip_empty = after_block
        with self.transport.transaction():
            while True:
                reply = self.query(OPC_QUERY)
                if skip_empty and reply.strip() == "":
                    reply = self.transport.read_line()
                skip_empty = False
                if self.parse_reply(OPC_QUERY, reply, _parse_opc) == 1:
                    return
                if time.monotonic() >= deadline:
                    raise InstrumentTimeout(f"operation still in progress after {timeout_s:g} s (*OPC? answers 0)",
                                            instrument=self.name, address=self.address, command=OPC_QUERY)
                self.transport.sleep(self.poll_interval_s)

    def get_wavelength_m(self) -> float:
        return self.wavelength_m

    def set_power_w(self, power_w: float) -> None:
        """Set the output power; converted to dBm (the unit fixed at connect)."""
        try:
            power = float(power_w)
        except (TypeError, ValueError):
            raise LimitError(f"{self.name}.power_w: {power_w!r} is not a number") from None
        if not math.isfinite(power) or power <= 0.0:
            raise LimitError(f"{self.name}.power_w: {power_w!r} W cannot be expressed in dBm")
        self.power_dbm = w_to_dbm(power)

    def get_power_w(self) -> float:
        """The power setpoint in W, read in the unit the laser reports (``:POW:UNIT?`` first: dBm as set at
        connect, or mW after a front-panel change; the bare ``:POW?`` number means either)."""
        command = type(self).power_dbm.query
        assert command is not None
        with self.transport.transaction():
            if self.power_unit == "dBm":
                return dbm_to_w(self.power_dbm)
            power_mw = self.query_parsed(command, in_range(parse_float, 0.0, 100.0))
        log.warning("%s: power unit is mW (changed on the front panel?); converting %g mW", self.name, power_mw)
        return power_mw * 1e-3

    def measured_power_w(self) -> float:
        """The built-in monitor's reading (``:POW:ACT?``, dBm) in W."""
        return dbm_to_w(self.query_parsed(POWER_MONITOR_QUERY, in_range(parse_float, -100.0, 20.0)))

    def set_output(self, enabled: bool) -> None:
        self.output = bool(enabled)

    def get_output(self) -> bool:
        return self.output

    def sweep_range_m(self) -> tuple[float, float]:
        """Sweep limits at the current speed (``:WAV:SWE:RANG:MIN?`` / ``MAX?``)."""
        with self.transport.transaction():
            return (self.query_parsed(SWEEP_RANGE_MIN_QUERY, _parse_wavelength_m),
                    self.query_parsed(SWEEP_RANGE_MAX_QUERY, _parse_wavelength_m))

    def _validate_sweep(self, sweep: SweepSettings) -> int:
        """All checks before anything is written; returns the speed in nm/s."""
        start = self._check_in_limits("sweep.start_m", sweep.start_m)
        stop = self._check_in_limits("sweep.stop_m", sweep.stop_m)
        if not start < stop:
            raise LimitError(f"{self.name}.sweep: start {start:g} m must be below stop {stop:g} m")
        step = Range(MIN_STEP_M, stop - start, " m")(sweep.step_m, f"{self.name}.sweep.step_m")
        speed_nm_s = float(sweep.speed_m_per_s) * 1e9
        match = [s for s in SWEEP_SPEEDS_NM_PER_S if math.isclose(s, speed_nm_s, rel_tol=1e-6)]
        if not match:
            raise LimitError(f"{self.name}.sweep.speed_m_per_s: {speed_nm_s:g} nm/s is not one of "
                             f"{list(SWEEP_SPEEDS_NM_PER_S)} nm/s")
        n_points = int(round((stop - start) / step)) + 1
        if n_points > MAX_LOG_POINTS:
            raise LimitError(f"{self.name}.sweep: {n_points} trigger points exceed the {MAX_LOG_POINTS}-point log")
        return match[0]

    def configure_sweep(self, sweep: SweepSettings) -> int:
        """Continuous one-way sweep, started by software, with a trigger (and a log point) every ``step_m``.

        Speed goes first because the permitted sweep range depends on it; the unit refuses inconsistent values
        through its error queue, which is drained at the end (:class:`InstrumentReportedError`).
        """
        speed_nm_s = self._validate_sweep(sweep)
        with self.transport.transaction():
            self.sweep_mode = "continuous_one_way"
            self.sweep_speed_nm_per_s = speed_nm_s
            self.sweep_start_m = sweep.start_m
            self.sweep_stop_m = sweep.stop_m
            self.sweep_step_m = sweep.step_m
            self.sweep_cycles = 1
            self.trigger_input_external = False
            self.trigger_input_standby = False
            self.trigger_output_mode = "step"
            self.trigger_output_period = "wavelength"
            self.trigger_output_step_m = sweep.step_m
            self.check_errors()
        self._sweep = sweep
        return sweep.n_points

    def start_sweep(self) -> None:
        self.write(SWEEP_START)
        self._sweep_started_at = time.monotonic()

    def stop_sweep(self) -> None:
        self.write(SWEEP_STOP)

    def sweep_status(self) -> int:
        """``:WAV:SWE?``: 0 stopped, 1 running, 3 waiting for a trigger, 4 preparing."""
        return self.query_parsed(SWEEP_STATUS_QUERY, _parse_status)

    def wait_sweep(self, timeout_s: float) -> None:
        """Poll ``:WAV:SWE?`` until the sweep has run and stopped.

        A stopped status counts as "done" once a running state was seen or the sweep's own duration has passed,
        so a poll that lands before the unit leaves the idle state is not mistaken for completion.
        """
        started = self._sweep_started_at if self._sweep_started_at is not None else time.monotonic()
        expected_s = 0.0
        if self._sweep is not None:
            expected_s = (self._sweep.stop_m - self._sweep.start_m) / self._sweep.speed_m_per_s
        deadline = time.monotonic() + timeout_s
        seen_active = False
        while True:
            status = self.sweep_status()
            if status != SWEEP_STOPPED:
                seen_active = True
            elif seen_active or time.monotonic() - started >= expected_s:
                self._sweep_started_at = None
                return
            if time.monotonic() >= deadline:
                raise InstrumentTimeout(f"sweep not finished after {timeout_s:g} s (status {status})",
                                        instrument=self.name, address=self.address, command=SWEEP_STATUS_QUERY)
            self.transport.sleep(self.poll_interval_s)

    def logged_points(self) -> int:
        """Number of logged wavelengths (``:READ:POIN?``, 0..500000)."""
        return self.query_parsed(LOG_POINTS_QUERY, lambda t: int(in_range(parse_int, 0, MAX_LOG_POINTS)(t)))

    def logged_wavelengths_m(self) -> np.ndarray:
        """The wavelength log of the last sweep, in metres, read as one binary block."""
        with self.transport.transaction():
            n_points = self.logged_points()
            if n_points == 0:
                raise InstrumentError("the laser logged no points; configure_sweep() and run a sweep first",
                                      instrument=self.name, address=self.address, command=LOG_POINTS_QUERY)
            raw = self._read_log_block()
        values = self._decode_log(raw, n_points)
        if self._sweep is not None and n_points != self._sweep.n_points:
            log.warning("%s logged %d points where the sweep asked for %d", self.name, n_points,
                        self._sweep.n_points)
        return values

    def _read_log_block(self) -> bytes:
        """The block alone (as Santec's sample reads it), then ``*OPC?`` past a terminator that may follow it."""
        raw = self.transport.query_binary(LOG_DATA_QUERY, "u1", expect_termination=False).tobytes()
        self.wait_operation_complete(self.transport.timeout_s, after_block=True)
        return raw

    def _decode_log(self, raw: bytes, n_points: int) -> np.ndarray:
        def fail(message: str) -> InstrumentReplyError:
            return InstrumentReplyError(message, instrument=self.name, address=self.address, command=LOG_DATA_QUERY)

        if len(raw) % n_points or len(raw) // n_points not in (4, 8):
            raise fail(f"block of {len(raw)} bytes does not hold {n_points} points of 4 or 8 bytes "
                       f"({LOG_POINTS_QUERY} said {n_points})")
        lo, hi = WAVELENGTH_WINDOW_M
        candidates: list[np.ndarray]
        if len(raw) // n_points == 8:
            candidates = [np.frombuffer(raw, "<f8").astype(float)]
        else:
            candidates = [np.frombuffer(raw, "<f4").astype(float),
                          np.frombuffer(raw, "<i4").astype(float) * 1e-13]  # Legacy format, 0.1 pm units
        for values in candidates:
            with np.errstate(invalid="ignore"):
                if np.all((values >= lo) & (values <= hi)):
                    return values
                if np.all((values >= lo * 1e9) & (values <= hi * 1e9)):
                    return values * 1e-9
        first = candidates[0][:3]
        raise fail(f"logged values {first} are not wavelengths in [{lo:g}, {hi:g}] m (nor nm)")

    def safe_state(self) -> None:
        """Stop any sweep, then switch the output off; both are attempted even if one fails."""
        attempt_all(self.name, (self.stop_sweep, lambda: self.set_output(False)))

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"power_w": self.get_power_w(), "wavelength_limits_m": list(self.wavelength_limits_m())}

    # -- alerts ----------------------------------------------------------------------------------------------------
    def read_alerts(self) -> list[tuple[int, str]]:
        """Read ``:SYST:ALER?`` until it says "No alerts." (or repeats itself, in case it reports a state)."""
        alerts: list[tuple[int, str]] = []
        seen: set[str] = set()
        for _ in range(self.max_errors):
            reply = self.query(ALERT_QUERY).strip()
            if _NO_ALERT_RE.match(reply):
                return alerts
            if not reply:
                raise InstrumentReplyError("empty alert reply", instrument=self.name, address=self.address,
                                           command=ALERT_QUERY)
            if reply in seen:
                return alerts
            seen.add(reply)
            match = _ALERT_CODE_RE.match(reply)
            code = int(match.group(1)) if match else -1
            alerts.append((code, ALERT_TEXTS.get(code, reply)))
        return alerts

    def check_alerts(self) -> None:
        """Raise :class:`InstrumentReportedError` when the laser reports hardware alerts."""
        alerts = self.read_alerts()
        if alerts:
            text = "; ".join(f"No{code:02d}: {message}" for code, message in alerts)
            raise InstrumentReportedError(f"laser alerts: {text}", errors=alerts, instrument=self.name,
                                          address=self.address, command=ALERT_QUERY)
