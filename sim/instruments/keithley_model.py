"""Physics model of a Keithley 2400 biasing one bank's on-chip balanced photodetector (instruments.md §3.2).

Why a model: the YAML answers ``:READ?`` with a constant and knows no list sweep. Here ``:READ?`` returns the
chip's balanced detector current of bank ``bank`` (``chip.read_balanced_current_a``), and the list-sweep commands
of :mod:`labctl.drivers.keithley_2400` (``:SOUR:LIST:VOLT``, ``…:APP``, ``:SOUR:VOLT:MODE LIST``,
``:TRIG:COUN``) are answered. Everything else (identity, source/sense set-up, NPLC, compliance, output, the error
queue) stays in the YAML, whose state this model reads.

Measurement model and the choices made where the driver and reference leave room:

* Integration time = NPLC / line frequency; the line frequency is an assumption of the bench, 50 Hz by default
  (``line_frequency_hz``). Autozero and other per-reading overheads are not modelled; each point adds a source
  delay of ``source_delay_s`` (default 1 ms, the order of the 2400's auto source delay on the µA..mA ranges).
* Each reading of a list sweep advances the virtual clock by source delay + integration time and then reads the
  chip once, so heater settling and drift act between the points of a sweep. The message itself costs
  ``timing.scpi_query_s`` (category ``scpi`` throughout). A single reading in fixed mode starts when its ``:READ?``
  arrives and is ready ``source delay + integration + scpi_query_s`` later; the host waits for it only when it
  reads the reply (so it may take readings of several meters at once, or talk to the heater driver meanwhile).
* The photocurrent does not depend on the bias voltage (reverse-biased photodiodes within their operating range);
  no diode I-V curve is modelled, so a list sweep returns one current per point at the same light level.
* Compliance: a current beyond ``:SENS:CURR:PROT`` reads as ± the compliance value (the source holds the
  compliance current, as the 2400 does in voltage-source mode) and sets status-word bit 3 (in real compliance).
  The ``STAT`` element also carries bit 12 (I-measure) and bit 14 (V-source), as the 2400's status word does in
  this configuration, so a driver must test the compliance bits, not the whole word.
* ``:READ?`` with the output off queues ``+803,"Not permitted with OUTPUT off"`` and answers nothing (the 2400 with
  auto output-off disabled, its default), so the driver's query times out and the error is in ``:SYST:ERR?``.
* ``:FORM:ELEM <list>`` chooses the elements of each point (the driver's ``CURR,STAT`` gives
  ``+1.234560E-04,+2.048000E+04``); before it, the 2400's default elements VOLT,CURR,RES,TIME,STAT are sent
  (RES = 9.91e37, TIME = virtual seconds since the bench started).
* List mode with ``:TRIG:COUN`` N takes N points cycling through the list; fixed mode takes N points at the fixed
  level. A list longer than 2500 points queues ``-223,"Too much data"``; an unparsable list ``-104,"Data type
  error"``; neither changes the stored list. A trigger count outside 1..2500 queues ``-222,"Data out of range"``.
  Commands without a reply answer nothing (pyvisa-sim ``NoResponse``).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import numpy as np
from pyvisa_sim.component import NoResponse

from labctl.drivers.keithley_2400 import (
    FORMAT_ELEMENTS,
    LIST_MAX_POINTS,
    LIST_VOLTAGES,
    LIST_VOLTAGES_APPEND,
    READ_QUERY,
    SOURCE_FIXED_MODE,
    SOURCE_LIST_MODE,
    TRIGGER_COUNT,
)

from ..device_model import DeviceModel, Reply
from ..templates import template_regex
from . import ModelEntry

log = logging.getLogger(__name__)

DEFAULT_LINE_FREQUENCY_HZ = 50.0
DEFAULT_SOURCE_DELAY_S = 1e-3
#: SCPI "not a number" of the 2400 (an element it does not measure).
NAN_REPLY = 9.91e37
DEFAULT_ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")
STATUS_COMPLIANCE = 1 << 3
#: Status-word bits always set while sourcing voltage and measuring current (bit 12 I-meas, bit 14 V-sour).
STATUS_CONFIGURATION = (1 << 12) | (1 << 14)
ELEMENT_NAMES = frozenset(DEFAULT_ELEMENTS)
ERROR_OUTPUT_OFF = '+803,"Not permitted with OUTPUT off"'
ERROR_TOO_MUCH_DATA = '-223,"Too much data"'
ERROR_DATA_TYPE = '-104,"Data type error"'


@lru_cache(maxsize=16)
def _pattern(template: str) -> re.Pattern[str]:
    """The driver's template as a case-insensitive regex (SCPI headers are case-insensitive)."""
    pattern = template_regex(template).pattern.replace("(?P<count>.+?)", r"(?P<count>[+-]?\d+)")
    return re.compile(pattern, re.IGNORECASE)


class Keithley2400Model(DeviceModel):
    """A 2400 in voltage-source / current-measure mode on bank ``bank``'s balanced photodetector."""

    category = "scpi"

    def __init__(self, name: str, bank: int, line_frequency_hz: float = DEFAULT_LINE_FREQUENCY_HZ,
                 source_delay_s: float = DEFAULT_SOURCE_DELAY_S) -> None:
        super().__init__(name)
        if bank < 0:
            raise ValueError(f"{name}: bank must be >= 0, got {bank}")
        if line_frequency_hz <= 0 or source_delay_s < 0:
            raise ValueError(f"{name}: line_frequency_hz must be > 0 and source_delay_s >= 0")
        self.bank = int(bank)
        self.line_frequency_hz = float(line_frequency_hz)
        self.source_delay_s = float(source_delay_s)
        self.list_voltages_v = np.zeros(1)
        self.list_mode = False
        self.trigger_count = 1
        self.elements: tuple[str, ...] = DEFAULT_ELEMENTS

    def attach(self, device: object, bench: object) -> None:
        super().attach(device, bench)
        if self.bank >= self.chip.n_banks:
            raise ValueError(f"{self.name}: bank {self.bank} does not exist (chip has {self.chip.n_banks})")

    # -- state read from the YAML ---------------------------------------------------------------------------------------
    @property
    def integration_time_s(self) -> float:
        return float(self.prop("nplc")) / self.line_frequency_hz

    @property
    def output_on(self) -> bool:
        return str(self.prop("output")).strip() == "1"

    def queue_error(self, entry: str) -> None:
        """Put an error into the instrument's SCPI error queue (``:SYST:ERR?``, served by the YAML)."""
        for queue in self.device._error_queues.values():
            queue._queue.append(entry.encode("ascii"))

    # -- dispatch ------------------------------------------------------------------------------------------------------
    def handle(self, line: str) -> Reply:
        text = line.strip()
        upper = text.upper()
        if upper == READ_QUERY:
            return self._read()
        if upper == SOURCE_LIST_MODE:
            self.list_mode = True
            return NoResponse
        for template, append in ((LIST_VOLTAGES, False), (LIST_VOLTAGES_APPEND, True)):
            found = _pattern(template).match(text)
            if found is not None:
                self._store_list(found["values"], append)
                return NoResponse
        found = _pattern(TRIGGER_COUNT).match(text)
        if found is not None:
            count = int(found["count"])
            if not 1 <= count <= LIST_MAX_POINTS:
                self.queue_error('-222,"Data out of range"')
            else:
                self.trigger_count = count
            return NoResponse
        return None

    def after(self, line: str) -> None:
        upper = line.strip().upper()
        if upper == SOURCE_FIXED_MODE:
            self.list_mode = False
            return
        found = _pattern(FORMAT_ELEMENTS).match(line.strip())
        if found is not None:
            elements = tuple(e.strip().upper() for e in found["elements"].split(","))
            if elements and set(elements) <= ELEMENT_NAMES:
                self.elements = elements

    # -- commands ----------------------------------------------------------------------------------------------------
    def _store_list(self, text: str, append: bool) -> None:
        try:
            values = np.array([float(v) for v in text.split(",")])
        except ValueError:
            self.queue_error(ERROR_DATA_TYPE)
            return
        stored = np.concatenate([self.list_voltages_v, values]) if append else values
        if stored.size > LIST_MAX_POINTS:
            self.queue_error(ERROR_TOO_MUCH_DATA)
            return
        self.list_voltages_v = stored

    def latency_s(self, line: str) -> float:
        if line.strip().upper() == READ_QUERY and self._single_reading():
            return 0.0        # the reading starts when the command arrives; its reply comes later (_read_single)
        return super().latency_s(line)

    def _single_reading(self) -> bool:
        return self.output_on and not self.list_mode and self.trigger_count == 1

    def _read_single(self) -> Reply:
        """One reading in fixed mode: the source delay, then the integration window, both starting when the
        command arrives (evaluated at the window's middle: heater settling and laser ramps still in progress
        show); the reply is ready after them and the query's transfer (``timing.scpi_query_s``), and the host may
        talk to other instruments meanwhile. A command landing inside the window disturbs the reading."""
        chip = self.chip
        now = chip.clock.now_s
        aperture = self.integration_time_s
        start = now + self.source_delay_s
        chip.open_reading_window(start + aperture)
        current = float(chip.read_balanced_current_a(aperture, at_s=start + 0.5 * aperture)[self.bank])
        self.reply_ready_s = start + aperture + chip.spec.timing.scpi_query_s
        compliance = float(self.prop("compliance_a"))
        in_compliance = abs(current) > compliance
        if in_compliance:
            current = float(np.sign(current) * compliance)
        return self._point(float(self.prop("source_voltage_v")), current, self.reply_ready_s, in_compliance)

    def _read(self) -> Reply:
        """One reading per trigger: advance the clock by source delay + integration, then read the chip."""
        if not self.output_on:
            self.queue_error(ERROR_OUTPUT_OFF)
            log.debug("%s: :READ? with the output off", self.name)
            return NoResponse
        if self._single_reading():
            return self._read_single()
        n = self.trigger_count
        if self.list_mode:
            volts = np.resize(self.list_voltages_v, n)
        else:
            volts = np.full(n, float(self.prop("source_voltage_v")))
        aperture = self.integration_time_s
        compliance = float(self.prop("compliance_a"))
        clock = self.chip.clock
        currents = np.empty(n)
        times = np.empty(n)
        for k in range(n):  # one chip reading per source point: the clock must move between points
            clock.advance(self.source_delay_s + aperture, self.category)
            currents[k] = self.chip.read_balanced_current_a(aperture)[self.bank]
            times[k] = clock.now_s
        in_compliance = np.abs(currents) > compliance
        currents = np.where(in_compliance, np.sign(currents) * compliance, currents)
        return ",".join(self._point(v, i, t, c) for v, i, t, c in zip(volts, currents, times, in_compliance))

    def _point(self, volts: float, amps: float, time_s: float, compliance: bool) -> str:
        fields = {"VOLT": volts, "CURR": amps, "RES": NAN_REPLY, "TIME": time_s,
                  "STAT": float(STATUS_CONFIGURATION | (STATUS_COMPLIANCE if compliance else 0))}
        return ",".join(f"{fields[name]:+.6E}" for name in self.elements)


REGISTRY = {
    "keithley_2400": ModelEntry(device="Keithley 2400", model=Keithley2400Model),
}
