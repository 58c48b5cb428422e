"""Keithley 2400 SourceMeter (SCPI) as a voltage source measuring current; instruments.md §3.2, §4.

Connection: GPIB, factory address 24 (``GPIB0::24::INSTR``), LF terminators with EOI; or RS-232 at the factory
9600 baud 8N1 without flow control, whose terminator is set on the instrument (CR, LF, CRLF or LFCR): pass the
same one as ``termination=`` (default LF).

Configuration at connect (the driver owns the measurement set-up): voltage source in fixed mode with source
auto-ranging, current measurement with auto-range, and ``:FORM:ELEM CURR`` so that every ``:READ?`` reply holds
only currents (the default element list is VOLT,CURR,RES,TIME,STAT, five numbers per reading). The output state
is left untouched at connect.

Readings use ``:READ?`` rather than ``:MEAS:CURR?``: ``:MEAS`` runs ``:CONF:CURR`` first, which per the 2400
manual resets the current-function settings to their ``*RST`` values and switches the output on [?]; a driver
must not silently lose the compliance and NPLC it was given, nor turn on a source. ``:READ?`` needs the output on
(switch it on with :meth:`set_output`); 9.91e37 (SCPI "not a number") and implausible currents raise.

Bulk: a list sweep sends the voltages with ``:SOUR:LIST:VOLT`` (100 per command, continued with
``:SOUR:LIST:VOLT:APP``, 2500 at most), selects ``:SOUR:VOLT:MODE LIST``, sets ``:TRIG:COUN <N>``, switches the
output on and reads all N currents from one ``:READ?``. Afterwards the source returns to fixed mode with a
trigger count of 1 and the output is restored to its previous state. The single ``:READ?`` must finish within the
transport timeout (about N x (NPLC / line frequency + source delay)); open the driver with a long enough
``timeout_s`` for long lists. The output is written as ``:OUTP 1|0`` everywhere (one spelling, instruments.md §0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from .clock import Clock
from .errors import InstrumentConnectionError, LimitError
from .instrument import ScpiInstrument, Setting, attempt_all
from .parsing import in_range, parse_float, parse_float_list
from .transport import BaseTransport, TransportSettings, open_transport
from .validators import Range

log = logging.getLogger(__name__)

IDN_QUERY = "*IDN?"
SOURCE_FIXED_MODE = ":SOUR:VOLT:MODE FIXED"
SOURCE_LIST_MODE = ":SOUR:VOLT:MODE LIST"
SOURCE_VOLTAGE_AUTORANGE = ":SOUR:VOLT:RANG:AUTO 1"
SENSE_CURRENT = ":SENS:FUNC 'CURR'"
SENSE_CURRENT_AUTORANGE = ":SENS:CURR:RANG:AUTO 1"
FORMAT_CURRENT_ONLY = ":FORM:ELEM CURR"
READ_QUERY = ":READ?"
LIST_VOLTAGES = ":SOUR:LIST:VOLT {values}"
LIST_VOLTAGES_APPEND = ":SOUR:LIST:VOLT:APP {values}"
TRIGGER_COUNT = ":TRIG:COUN {count:d}"

#: Source limits of the 2400 (±210 V, ±1.05 A).
VOLTAGE_LIMIT_V = 210.0
CURRENT_LIMIT_A = 1.05
#: Largest plausible current reading (compliance is at most 1.05 A; a little margin for over-range display).
CURRENT_REPLY_LIMIT_A = 1.1
#: List sweep sizes: values per ``:SOUR:LIST:VOLT`` command and the total list length.
LIST_CHUNK = 100
LIST_MAX_POINTS = 2500

_parse_current = in_range(parse_float, -CURRENT_REPLY_LIMIT_A, CURRENT_REPLY_LIMIT_A)


class Keithley2400(ScpiInstrument):
    """Keithley 2400 as a :class:`~labctl.drivers.interfaces.SourceMeter` (voltage source, current measure)."""

    label: ClassVar[str] = "keithley_2400"
    line_settings: ClassVar[TransportSettings] = TransportSettings(write_termination="\n", read_termination="\n",
                                                                   timeout_s=5.0, baud_rate=9600)
    error_query: ClassVar[str] = ":SYST:ERR?"

    source_function = Setting(":SOUR:FUNC?", ":SOUR:FUNC {value}", "Source function (voltage at connect).",
                              mapping={"voltage": "VOLT", "current": "CURR"}, default="voltage")
    source_voltage_v = Setting(":SOUR:VOLT?", ":SOUR:VOLT {value:.6E}", "Fixed-mode source voltage, V.",
                               parse=in_range(parse_float, -VOLTAGE_LIMIT_V, VOLTAGE_LIMIT_V),
                               validator=Range(-VOLTAGE_LIMIT_V, VOLTAGE_LIMIT_V, " V"), reply="{:+.6E}",
                               default=0.0, unit="V")
    compliance_a = Setting(":SENS:CURR:PROT?", ":SENS:CURR:PROT {value:.6E}", "Current compliance, A.",
                           parse=in_range(parse_float, 0.0, CURRENT_LIMIT_A),
                           validator=Range(1e-9, CURRENT_LIMIT_A, " A"), reply="{:+.6E}", default=1.05e-4,
                           unit="A")
    nplc = Setting(":SENS:CURR:NPLC?", ":SENS:CURR:NPLC {value:.6g}",
                   "Integration time in power-line cycles (0.01..10).", parse=in_range(parse_float, 0.01, 10.0),
                   validator=Range(0.01, 10.0), reply="{:+.6E}", default=1.0)
    output = Setting(":OUTP?", ":OUTP {value}", "Output on/off.", mapping={True: "1", False: "0"}, default=False)

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None, termination: str | None = None,
                 line_frequency_hz: float = 50.0) -> None:
        #: Mains frequency the NPLC integration time counts in (50 Hz or 60 Hz, as set on the unit).
        self.line_frequency_hz = line_frequency_hz
        if not isinstance(resource, BaseTransport):
            settings = self.line_settings
            if termination is not None:
                settings = replace(settings, write_termination=termination, read_termination=termination)
            if timeout_s is not None:
                settings = replace(settings, timeout_s=timeout_s)
            resource = open_transport(resource, name=name or self.label, resource_manager=resource_manager,
                                      settings=settings, clock=clock)
        super().__init__(resource, name=name)
        self._connect()

    def _connect(self) -> None:
        ident = self.identity()
        if not ident.maker.upper().startswith("KEITHLEY") or not ident.model.upper().startswith("MODEL 24"):
            raise InstrumentConnectionError(f"not a Keithley 2400-series SourceMeter: {ident}",
                                            instrument=self.name, address=self.address, command=IDN_QUERY)
        if ident.model.upper() not in ("MODEL 2400", "MODEL 2401"):
            log.warning("%s: %s has other source limits than the 2400 this driver checks against", self.name,
                        ident.model)
        log.info("%s: %s", self.name, ident)
        with self.transport.transaction():
            self.source_function = "voltage"
            for command in (SOURCE_FIXED_MODE, SOURCE_VOLTAGE_AUTORANGE, SENSE_CURRENT, SENSE_CURRENT_AUTORANGE,
                            FORMAT_CURRENT_ONLY):
                self.write(command)

    # -- SourceMeter ----------------------------------------------------------------------------------------------
    def set_voltage_v(self, voltage_v: float) -> None:
        self.source_voltage_v = voltage_v

    def get_voltage_v(self) -> float:
        return self.source_voltage_v

    def set_compliance_a(self, current_a: float) -> None:
        self.compliance_a = current_a

    def set_nplc(self, nplc: float) -> None:
        self.nplc = nplc

    def set_integration_time_s(self, time_s: float) -> None:
        """Integration time in seconds, sent as NPLC at the configured line frequency (refused outside 0.01..10)."""
        self.nplc = float(time_s) * self.line_frequency_hz

    def set_output(self, enabled: bool) -> None:
        self.output = bool(enabled)

    def get_output(self) -> bool:
        return self.output

    def measure_current_a(self) -> float:
        """One current reading (``:READ?`` with ``:FORM:ELEM CURR``); the output must be on."""
        return self.query_parsed(READ_QUERY, _parse_current)

    @staticmethod
    def _format_list(values: Sequence[float]) -> str:
        return ",".join(f"{v:.6E}" for v in values)

    def _list_commands(self, voltages_v: np.ndarray | Sequence[float]) -> tuple[list[str], int]:
        """Validate the whole list and render its commands before anything is sent."""
        try:
            values = np.asarray(voltages_v, dtype=float).ravel()
        except (TypeError, ValueError):
            raise LimitError(f"{self.name}.list_sweep: voltages must be numbers") from None
        if not 1 <= values.size <= LIST_MAX_POINTS:
            raise LimitError(f"{self.name}.list_sweep: {values.size} voltages; the 2400 takes 1..{LIST_MAX_POINTS}")
        if not np.all(np.isfinite(values)) or np.any(np.abs(values) > VOLTAGE_LIMIT_V):
            bad = values[~np.isfinite(values) | (np.abs(values) > VOLTAGE_LIMIT_V)]
            raise LimitError(f"{self.name}.list_sweep: voltages {bad[:3].tolist()} are outside "
                             f"[-{VOLTAGE_LIMIT_V:g}, {VOLTAGE_LIMIT_V:g}] V")
        commands = [LIST_VOLTAGES.format(values=self._format_list(values[:LIST_CHUNK]))]
        commands += [LIST_VOLTAGES_APPEND.format(values=self._format_list(values[i:i + LIST_CHUNK]))
                     for i in range(LIST_CHUNK, values.size, LIST_CHUNK)]
        return commands, values.size

    def list_sweep_current_a(self, voltages_v: np.ndarray) -> np.ndarray:
        """Source each voltage in turn and read every current from one ``:READ?`` (LIST mode)."""
        commands, n_points = self._list_commands(voltages_v)
        with self.transport.transaction():
            was_on = self.output
            for command in commands:
                self.write(command)
            self.write(SOURCE_LIST_MODE)
            self.write(TRIGGER_COUNT.format(count=n_points))
            self.output = True
            try:
                reply = self.transport.query(READ_QUERY, retries=0)  # a retry would run the sweep again
            finally:
                self.write(SOURCE_FIXED_MODE)
                self.write(TRIGGER_COUNT.format(count=1))
                if not was_on:
                    self.output = False
        currents = self.parse_reply(READ_QUERY, reply, self._parse_currents(n_points))
        return np.asarray(currents, dtype=float)

    @staticmethod
    def _parse_currents(n_points: int) -> Any:
        def parse(text: str) -> list[float]:
            values = parse_float_list(text)  # every field a finite number; 9.91e37 (NaN) refused
            if len(values) != n_points:
                raise ValueError(f"expected {n_points} readings, got {len(values)}")
            worst = max(abs(v) for v in values)
            if worst > CURRENT_REPLY_LIMIT_A:
                raise ValueError(f"reading {worst:g} A is beyond the 2400's {CURRENT_REPLY_LIMIT_A:g} A")
            return values

        return parse

    def safe_state(self) -> None:
        """Fixed mode, source to 0 V, then output off (zero before disable, as lightlab does).

        Fixed mode comes first because an interrupted list sweep leaves the unit in LIST mode, where
        ``:SOUR:VOLT 0`` would not change what the output sources.

        Every step is attempted even if an earlier one fails; the first failure is raised at the end.
        """
        attempt_all(self.name, (lambda: self.write(SOURCE_FIXED_MODE), lambda: self.set_voltage_v(0.0),
                                lambda: self.set_output(False)))

