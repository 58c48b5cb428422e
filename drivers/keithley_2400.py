"""Keithley 2400 SourceMeter (SCPI) as a voltage source measuring current; instruments.md §3.2, §4.

Connection: GPIB, factory address 24 (``GPIB0::24::INSTR``), LF terminators with EOI; or RS-232 at the factory
9600 baud 8N1 without flow control, whose terminator is set on the instrument (CR, LF, CRLF or LFCR): pass the
same one as ``termination=`` (default LF).

Configuration at connect (the driver owns the measurement set-up): the error queue is drained first (stale
entries are logged, so they are not blamed on the driver's commands later), then voltage source in fixed mode
with source auto-ranging, current measurement with auto-range, ``:FORM:ELEM CURR,STAT`` so that every ``:READ?``
reading is a current and its status word (the default element list is VOLT,CURR,RES,TIME,STAT), and the current
compliance ``compliance_a`` (``:SENS:CURR:PROT``), read back; the integration time is read back; then the error
queue must be clean. The output state is left untouched at connect.

Compliance. A reading taken while the source sits at its compliance limit is the limit, not the device's current.
Each reading's status word says so: bit 3 "in real compliance" and bit 16 "in range compliance" ([M] status word
of the :FORMat:ELEMents STATus element, 2400-series user's manual §18 "SCPI Command Reference", the table
continued on p. 18-51; bit 3 also as listed for the 2400-compatible GSM-20H10 and the Keithley 6430 [?: bit 3 not
read on the 2400 page itself]). Such a reading raises :class:`~labctl.drivers.errors.ComplianceError` from
:meth:`Keithley2400.measure_current_a` and :meth:`Keithley2400.list_sweep_current_a`;
:meth:`Keithley2400.read_current` returns the value with its flag for callers that handle it.
``:SENS:CURR:PROT:TRIP?`` ([M] p. 18-68, "Query current compliance state") says the same about the present state,
at the cost of one more transaction per reading, so the status word is used instead.

Readings use ``:READ?`` rather than ``:MEAS:CURR?``: ``:MEAS`` runs ``:CONF:CURR`` first, which per the 2400
manual resets the current-function settings to their ``*RST`` values and switches the output on [?]; a driver
must not silently lose the compliance and NPLC it was given, nor turn on a source. ``:READ?`` needs the output on
(switch it on with :meth:`set_output`); 9.91e37 (SCPI "not a number") and implausible currents raise.

Bulk: a list sweep sends the voltages with ``:SOUR:LIST:VOLT`` (100 per command, continued with
``:SOUR:LIST:VOLT:APP``, 2500 at most), selects ``:SOUR:VOLT:MODE LIST``, sets ``:TRIG:COUN <N>``, switches the
output on and reads all N readings from one ``:READ?``. Afterwards the source returns to fixed mode with a
trigger count of 1 and the output is restored to its previous state. The one ``:READ?`` is given as long as the
sweep can take (:meth:`Keithley2400.sweep_timeout_s`: N x (3 x NPLC / line frequency + 10 ms) on top of the line
timeout; the factor 3 covers auto-zero's extra conversions and the 10 ms the source delay, both generous bounds
rather than manual figures [?]). The output is written as ``:OUTP 1|0`` everywhere (one spelling, instruments.md
§0).

Triggered buffered readings (a laser sweep read in one transfer): the 2400's trigger model (user's manual §11
"Triggering", Figure 11-3 remote trigger model) with the Trigger Link as the trigger-layer event (§18 p. 18-119:
``:ARM|:TRIGger:SOURce``, "only IMMediate and TLINk are available as trigger layer control sources") and the
reading buffer (§18 Table 18-10 ``:TRACe``, p. 18-115: ``:TRACe:POINts`` 1..2500, ``:TRACe:FEED SENSe``,
``:TRACe:FEED:CONTrol NEXT`` "fills buffer and stops"). Spellings as PyMeasure's ``Keithley2400.trigger_on_external``
(``:TRIG:SOUR TLIN``, ``:TRIG:ILIN n``) and ``KeithleyBuffer`` (``:TRAC:CLEAR``, ``:TRAC:POIN``,
``:TRAC:FEED SENSE;:TRAC:FEED:CONT NEXT``, ``:INIT``, ``:TRAC:DATA?``, ``:ABOR``). :meth:`Keithley2400.arm_triggered`
sets, once per triggered session, the source delay to 0 with the auto delay off (``:SOUR:DEL:AUTO 0``,
``:SOUR:DEL 0``: the bias does not change, so nothing needs to settle), the trigger delay to 0, the arm layer to
immediate with count 1 and the trigger layer to Trigger Link input line ``line``; then per acquisition clears
the buffer, sizes it and the trigger count to N, enables storage and sends ``:INIT``: each of the next N pulses on
the line takes one reading into the buffer, which :meth:`Keithley2400.fetch_triggered_a` reads in one transfer
(``:TRAC:DATA?``, the ``:FORM:ELEM`` elements per reading [?: the 2400 page on :TRACe:DATA? elements was not
read; the 6485 and 2700 manuals say their buffer readings carry the :FORMat:ELEMents elements]).
:meth:`Keithley2400.end_triggered` (``:ABOR``, ``:TRIG:SOUR IMM``, ``:TRIG:COUN 1``, ``:SOUR:DEL:AUTO 1``) returns
to single immediate readings. A pulse arriving while a reading is still in progress is not waited for, so the
pulses must come at least :meth:`Keithley2400.min_trigger_period_s` apart: a buffer that comes back short raises.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from labctl.drivers.clock import Clock
from labctl.drivers.errors import (
    ComplianceError,
    InstrumentConnectionError,
    InstrumentReplyError,
    LimitError,
)
from labctl.drivers.instrument import ScpiInstrument, Setting, attempt_all
from labctl.drivers.parsing import in_range, parse_float, parse_float_list
from labctl.drivers.transport import BaseTransport, TransportSettings, open_transport
from labctl.drivers.validators import Range

log = logging.getLogger(__name__)

IDN_QUERY = "*IDN?"
SOURCE_FIXED_MODE = ":SOUR:VOLT:MODE FIXED"
SOURCE_LIST_MODE = ":SOUR:VOLT:MODE LIST"
SOURCE_VOLTAGE_AUTORANGE = ":SOUR:VOLT:RANG:AUTO 1"
SENSE_CURRENT = ":SENS:FUNC 'CURR'"
SENSE_CURRENT_AUTORANGE = ":SENS:CURR:RANG:AUTO 1"
FORMAT_ELEMENTS = ":FORM:ELEM {elements}"
#: Every reading is (current, status word).
READING_ELEMENTS = ("CURR", "STAT")
FORMAT_READINGS = FORMAT_ELEMENTS.format(elements=",".join(READING_ELEMENTS))
READ_QUERY = ":READ?"
LIST_VOLTAGES = ":SOUR:LIST:VOLT {values}"
LIST_VOLTAGES_APPEND = ":SOUR:LIST:VOLT:APP {values}"
TRIGGER_COUNT = ":TRIG:COUN {count:d}"
#: Triggered buffered readings (module docstring): set once per triggered session, per acquisition, at the end.
TRIGGERED_SETUP = (":SOUR:DEL:AUTO 0", ":SOUR:DEL 0", ":TRIG:DEL 0", ":ARM:SOUR IMM", ":ARM:COUN 1",
                   ":TRAC:FEED SENS")
TRIGGER_LINK_LINE = ":TRIG:ILIN {line:d}"
TRIGGER_LINK_SOURCE = ":TRIG:SOUR TLIN"
BUFFER_CLEAR = ":TRAC:CLE"
BUFFER_POINTS = ":TRAC:POIN {count:d}"
BUFFER_STORE_NEXT = ":TRAC:FEED:CONT NEXT"
INITIATE = ":INIT"
BUFFER_DATA_QUERY = ":TRAC:DATA?"
TRIGGERED_END = (":ABOR", ":TRIG:SOUR IMM", ":TRIG:COUN 1", ":SOUR:DEL:AUTO 1")
#: Trigger Link lines (the 2400's Trigger Link has four).
TRIGGER_LINK_LINES = (1, 2, 3, 4)
#: Margin on top of the integration (and auto-zero, AUTOZERO_FACTOR) between two trigger pulses, s: a bound
#: for the trigger latency and the buffer store, not a manual figure [?].
TRIGGER_MARGIN_S = 2e-4

#: Source limits of the 2400 (±210 V, ±1.05 A).
VOLTAGE_LIMIT_V = 210.0
CURRENT_LIMIT_A = 1.05
#: Largest plausible current reading (compliance is at most 1.05 A; a little margin for over-range display).
CURRENT_REPLY_LIMIT_A = 1.1
#: List sweep sizes: values per ``:SOUR:LIST:VOLT`` command and the total list length.
LIST_CHUNK = 100
LIST_MAX_POINTS = 2500

#: Status-word bits of a reading taken at compliance: 3 = in real compliance, 16 = in range compliance.
COMPLIANCE_BITS: dict[int, str] = {3: "real compliance", 16: "range compliance"}
#: The compliance the driver sets at connect unless told otherwise, A (the bank readout biases photodiodes with
#: the same 10 mA, labctl.bench_readout.SourceMeterBanks).
DEFAULT_COMPLIANCE_A = 0.01
#: Bound on one point of a list sweep beyond its integration: auto-zero conversions and the source delay.
AUTOZERO_FACTOR = 3.0
POINT_OVERHEAD_S = 0.01
#: Bound on the auto source delay at the photocurrents read here (100 uA..10 mA ranges), s. NOT CONFIRMED from the
#: 2400 manual's auto-delay table (3-4); the 2450 reference manual's table gives 1 ms on those ranges and 2-3 ms on
#: 1-10 uA, so 3 ms is taken as the bound.
AUTO_SOURCE_DELAY_BOUND_S = 3e-3


def parse_readings(text: str, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """``current,status`` pairs of ``n_points`` readings: (currents A, status words)."""
    values = parse_float_list(text)  # every field a finite number; 9.91e37 (NaN) refused
    if len(values) != len(READING_ELEMENTS) * n_points:
        raise ValueError(f"expected {n_points} readings of {'/'.join(READING_ELEMENTS)}, got {len(values)} numbers")
    pairs = np.array(values).reshape(n_points, len(READING_ELEMENTS))
    currents, status = pairs[:, 0], pairs[:, 1]
    worst = float(np.max(np.abs(currents)))
    if worst > CURRENT_REPLY_LIMIT_A:
        raise ValueError(f"reading {worst:g} A is beyond the 2400's {CURRENT_REPLY_LIMIT_A:g} A")
    if np.any((status < 0) | (status >= 2 ** 24) | (status != np.round(status))):
        raise ValueError(f"status words {status.tolist()[:3]} are not 24-bit integers")
    return currents, status.astype(np.int64)


def compliance_flags(status: np.ndarray) -> np.ndarray:
    """True where a reading's status word says the source was at compliance."""
    mask = sum(1 << bit for bit in COMPLIANCE_BITS)
    return (status & mask) != 0


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
                 line_frequency_hz: float = 50.0, compliance_a: float = DEFAULT_COMPLIANCE_A) -> None:
        #: Mains frequency the NPLC integration time counts in (50 Hz or 60 Hz, as set on the unit).
        self.line_frequency_hz = line_frequency_hz
        self._initial_compliance = type(self).compliance_a.validator(compliance_a,  # type: ignore[union-attr]
                                                                    f"{name or self.label}.compliance_a")
        self._nplc: float | None = None
        self._read_pending = False
        #: Trigger Link line of the triggered session in progress (None: single immediate readings).
        self._trigger_line: int | None = None
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
            for code, message in self.read_errors():
                log.warning("%s: stale error in the queue at connect: %d %s", self.name, code, message)
            self.source_function = "voltage"
            for command in (SOURCE_FIXED_MODE, SOURCE_VOLTAGE_AUTORANGE, SENSE_CURRENT, SENSE_CURRENT_AUTORANGE,
                            FORMAT_READINGS):
                self.write(command)
            self.set_compliance_a(self._initial_compliance)
            self._nplc = self.nplc
            self.check_errors()

    # -- SourceMeter ----------------------------------------------------------------------------------------------
    def set_voltage_v(self, voltage_v: float) -> None:
        self.source_voltage_v = voltage_v

    def get_voltage_v(self) -> float:
        return self.source_voltage_v

    def set_compliance_a(self, current_a: float) -> None:
        """``:SENS:CURR:PROT``, read back: a compliance the instrument did not take is refused."""
        with self.transport.transaction():
            self.compliance_a = current_a
            got = self.compliance_a
        if not math.isclose(got, float(current_a), rel_tol=1e-3):
            raise InstrumentReplyError(f"compliance reads back {got:g} A, {float(current_a):g} A was set",
                                       instrument=self.name, address=self.address,
                                       command=type(self).compliance_a.query)

    def set_nplc(self, nplc: float) -> None:
        self.nplc = nplc
        self._nplc = float(nplc)

    def set_integration_time_s(self, time_s: float) -> None:
        """Integration time in seconds, sent as NPLC at the configured line frequency (refused outside 0.01..10)."""
        self.set_nplc(float(time_s) * self.line_frequency_hz)

    def sweep_timeout_s(self, n_points: int) -> float:
        """How long one ``:READ?`` of ``n_points`` may take (module docstring): the line timeout plus
        ``n_points`` x (3 x NPLC / line frequency + 10 ms), the NPLC as last read or written."""
        nplc = self._nplc if self._nplc is not None else float(type(self).nplc.validator.hi)  # type: ignore
        per_point = AUTOZERO_FACTOR * nplc / self.line_frequency_hz + POINT_OVERHEAD_S
        return self.transport.settings.timeout_s + n_points * per_point

    def reading_time_bound_s(self) -> float:
        """Bound on how long an immediate reading (``:READ?``, auto source delay) looks at the chip after the
        command arrives: the auto source delay (AUTO_SOURCE_DELAY_BOUND_S) and 3 x NPLC / line frequency (the
        integration and auto-zero's extra conversions), the NPLC as last read or written. A command to the chip
        arriving within it may land inside the reading."""
        nplc = self._nplc if self._nplc is not None else float(type(self).nplc.validator.hi)  # type: ignore
        return AUTO_SOURCE_DELAY_BOUND_S + AUTOZERO_FACTOR * nplc / self.line_frequency_hz

    def shortest_integration(self) -> bool:
        """The integration is the 2400's shortest (0.01 NPLC), as last read or written."""
        lo = float(type(self).nplc.validator.lo)  # type: ignore[attr-defined]
        return self._nplc is not None and self._nplc <= lo * (1 + 1e-9)

    def integration_time_s(self) -> float:
        """NPLC / line frequency, the NPLC as last read or written."""
        nplc = self._nplc if self._nplc is not None else float(type(self).nplc.validator.hi)  # type: ignore
        return nplc / self.line_frequency_hz

    def set_output(self, enabled: bool) -> None:
        self.output = bool(enabled)

    def get_output(self) -> bool:
        return self.output

    def read_current(self) -> tuple[float, bool]:
        """One reading (``:READ?``): the current in A and whether the source was at compliance; output on."""
        with self.transport.timeout_for(self.sweep_timeout_s(1)):
            currents, status = self.query_parsed(READ_QUERY, lambda text: parse_readings(text, 1))
        return float(currents[0]), bool(compliance_flags(status)[0])

    def read_repeated_a(self, n_points: int) -> np.ndarray:
        """``n_points`` readings at the fixed source level from one ``:READ?`` (``:TRIG:COUN n``, instruments.md
        §3.2 bulk; the trigger count back to 1 afterwards), A; a reading at compliance raises."""
        n = int(n_points)
        if not 1 <= n <= LIST_MAX_POINTS:
            raise LimitError(f"{self.name}.read_repeated_a: {n} readings; the 2400 takes 1..{LIST_MAX_POINTS}")
        with self.transport.transaction():
            self.write(TRIGGER_COUNT.format(count=n))
            try:
                with self.transport.timeout_for(self.sweep_timeout_s(n)):
                    reply = self.transport.query(READ_QUERY, retries=0)  # a retry would take the readings again
            finally:
                self.write(TRIGGER_COUNT.format(count=1))
        currents, status = self.parse_reply(READ_QUERY, reply, lambda text: parse_readings(text, n))
        flagged = np.flatnonzero(compliance_flags(status))
        if flagged.size:
            raise self._compliance_error(flagged.tolist(), currents)
        return currents.astype(float)

    def measure_current_a(self) -> float:
        """One current reading; a reading at compliance raises :class:`ComplianceError` (the value would be the
        limit, not the photocurrent)."""
        current, at_compliance = self.read_current()
        if at_compliance:
            raise self._compliance_error([0], np.array([current]))
        return current

    def start_read_current(self) -> None:
        """Send ``:READ?`` and return at once: the 2400 takes the reading (source delay, then the integration) when
        the command arrives and holds the reply in its output queue until :meth:`finish_read_current` reads it;
        meanwhile the host may talk to instruments on other buses. At most one reading is outstanding."""
        if self._read_pending:
            raise InstrumentReplyError("a reading is already outstanding (finish_read_current first)",
                                       instrument=self.name, address=self.address, command=READ_QUERY)
        self.transport.write(READ_QUERY)
        self._read_pending = True

    def finish_read_current(self) -> float:
        """The current that answers :meth:`start_read_current` (A; a reading at compliance raises)."""
        if not self._read_pending:
            raise InstrumentReplyError("no reading outstanding (start_read_current first)", instrument=self.name,
                                       address=self.address, command=READ_QUERY)
        self._read_pending = False
        with self.transport.timeout_for(self.sweep_timeout_s(1)):
            currents, status = self.parse_reply(READ_QUERY, self.transport.read_line(),
                                                lambda text: parse_readings(text, 1))
        if compliance_flags(status)[0]:
            raise self._compliance_error([0], currents)
        return float(currents[0])

    def _compliance_error(self, points: Any, currents: np.ndarray) -> ComplianceError:
        where = f"point{'s' if len(points) > 1 else ''} {list(points)[:5]}" if len(currents) > 1 else "the reading"
        return ComplianceError(f"source at compliance for {where} (reading {float(currents[points[0]]):g} A at "
                               f"the {self.compliance_a:g} A limit): the value is the limit, not the device's "
                               "current; raise the compliance or lower the signal", errors=[(3, "compliance")],
                               instrument=self.name, address=self.address, command=READ_QUERY)

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
        """Source each voltage in turn and read every current from one ``:READ?`` (LIST mode), waiting as long as
        the sweep can take; readings at compliance raise :class:`ComplianceError` naming the points."""
        commands, n_points = self._list_commands(voltages_v)
        with self.transport.transaction():
            was_on = self.output
            for command in commands:
                self.write(command)
            self.write(SOURCE_LIST_MODE)
            self.write(TRIGGER_COUNT.format(count=n_points))
            self.output = True
            try:
                with self.transport.timeout_for(self.sweep_timeout_s(n_points)):
                    reply = self.transport.query(READ_QUERY, retries=0)  # a retry would run the sweep again
            finally:
                self.write(SOURCE_FIXED_MODE)
                self.write(TRIGGER_COUNT.format(count=1))
                if not was_on:
                    self.output = False
        currents, status = self.parse_reply(READ_QUERY, reply, lambda text: parse_readings(text, n_points))
        flagged = np.flatnonzero(compliance_flags(status))
        if flagged.size:
            raise self._compliance_error(flagged.tolist(), currents)
        return currents.astype(float)

    # -- triggered buffered readings (module docstring) ---------------------------------------------------------------
    def min_trigger_period_s(self) -> float:
        """Shortest spacing of Trigger Link pulses every one of which takes a reading: the integration with auto-zero's
        extra conversions (AUTOZERO_FACTOR, a bound) plus TRIGGER_MARGIN_S; the source and trigger delays are 0."""
        return AUTOZERO_FACTOR * self.integration_time_s() + TRIGGER_MARGIN_S

    def arm_triggered(self, n_points: int, line: int = 1) -> None:
        """Arm the next ``n_points`` readings, one per pulse on Trigger Link input ``line``, into the buffer; the
        output must be on (the 2400 reads nothing with it off)."""
        n = int(n_points)
        if not 1 <= n <= LIST_MAX_POINTS:
            raise LimitError(f"{self.name}.arm_triggered: {n} readings; the buffer holds 1..{LIST_MAX_POINTS}")
        if line not in TRIGGER_LINK_LINES:
            raise LimitError(f"{self.name}.arm_triggered: Trigger Link line {line} is not one of "
                             f"{list(TRIGGER_LINK_LINES)}")
        with self.transport.transaction():
            if self._trigger_line != line:
                for command in TRIGGERED_SETUP + (TRIGGER_LINK_LINE.format(line=line), TRIGGER_LINK_SOURCE):
                    self.write(command)
                self._trigger_line = line
            for command in (BUFFER_CLEAR, BUFFER_POINTS.format(count=n), TRIGGER_COUNT.format(count=n),
                            BUFFER_STORE_NEXT, INITIATE):
                self.write(command)

    def fetch_triggered_a(self, n_points: int) -> np.ndarray:
        """The ``n_points`` currents (A) of the armed acquisition, from the buffer in one transfer; a buffer holding
        another number of readings (pulses lost or missing) raises, as does a reading at compliance."""
        n = int(n_points)
        with self.transport.timeout_for(self.sweep_timeout_s(n)):
            reply = self.transport.query(BUFFER_DATA_QUERY, retries=0)

        def parse(text: str) -> tuple[np.ndarray, np.ndarray]:
            got = len(parse_float_list(text)) // len(READING_ELEMENTS)
            if got != n:
                raise ValueError(f"the buffer holds {got} readings, {n} were armed: Trigger Link pulses were lost "
                                 "(closer than a reading takes?) or did not arrive (cabling, line)")
            return parse_readings(text, n)

        currents, status = self.parse_reply(BUFFER_DATA_QUERY, reply, parse)
        flagged = np.flatnonzero(compliance_flags(status))
        if flagged.size:
            raise self._compliance_error(flagged.tolist(), currents)
        return currents.astype(float)

    def end_triggered(self) -> None:
        """Back to single immediate readings (disarm, immediate trigger, count 1, auto source delay)."""
        if self._trigger_line is None:
            return
        with self.transport.transaction():
            for command in TRIGGERED_END:
                self.write(command)
        self._trigger_line = None

    def safe_state(self) -> None:
        """Fixed mode, source to 0 V, then output off (zero before disable, as lightlab does).

        Fixed mode comes first because an interrupted list sweep leaves the unit in LIST mode, where
        ``:SOUR:VOLT 0`` would not change what the output sources.

        Every step is attempted even if an earlier one fails; the first failure is raised at the end.
        """
        steps = [lambda: self.write(SOURCE_FIXED_MODE), lambda: self.set_voltage_v(0.0),
                 lambda: self.set_output(False)]
        if self._trigger_line is not None:          # a triggered session was left armed: disarm first
            steps.insert(0, self.end_triggered)
        attempt_all(self.name, steps)

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"line_frequency_hz": self.line_frequency_hz, "reading_elements": list(READING_ELEMENTS)}

