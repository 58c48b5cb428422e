"""Physics model of a Keithley 2400 biasing one bank's on-chip balanced photodetector (instruments.md §3.2).

Why a model: ``:READ?`` returns the chip's balanced detector current of bank ``bank``
(``chip.read_balanced_current_a``), and the list-sweep commands of :mod:`labctl.drivers.keithley_2400`
(``:SOUR:LIST:VOLT``, ``…:APP``, ``:SOUR:VOLT:MODE LIST``, ``:TRIG:COUN``) are answered. The instrument speaks
SCPI through the 2400 command tree (:mod:`labctl.sim.scpi.trees.keithley_2400`): PyMeasure's long forms
(``:SOURCE:VOLTAGE 1.5``, ``:SENSE:CURRENT:PROTECTION 0.1``, ``OUTPUT 1``) are the same commands as labctl's short
ones. Source function, source level, compliance, NPLC and output are plain state whose power-on values and reply
formats come from the driver's declarations (the profile sets the source function to current, as after *RST).

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
  Commands without a reply answer nothing.
* ``:MEASure:CURRent?`` (``:MEASure:VOLTage?``, ``:MEASure?``) is ``:CONFigure`` then ``:READ?`` (2400 manual §17):
  the sense function is selected and the source turns on (and stays on: auto output-off disabled), then one
  ``:READ?`` runs. That ``:CONFigure`` also returns the function's other controls to their ``*RST`` values is not
  modelled.
"""

from __future__ import annotations

import logging

import numpy as np
from labctl.drivers.keithley_2400 import LIST_MAX_POINTS, Keithley2400
from labctl.sim.device_model import Reply
from labctl.sim.instruments import ModelEntry
from labctl.sim.scpi.errors import TOO_MUCH_DATA, ScpiError
from labctl.sim.scpi.model import ScpiModel, handles
from labctl.sim.scpi.parser import Parsed
from labctl.sim.scpi.trees import keithley_2400

log = logging.getLogger(__name__)

DEFAULT_LINE_FREQUENCY_HZ = 50.0
DEFAULT_SOURCE_DELAY_S = 1e-3
#: SCPI "not a number" of the 2400 (an element it does not measure).
NAN_REPLY = 9.91e37
DEFAULT_ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")
STATUS_COMPLIANCE = 1 << 3
#: Status-word bits always set while sourcing voltage and measuring current (bit 12 I-meas, bit 14 V-sour).
STATUS_CONFIGURATION = (1 << 12) | (1 << 14)
ERROR_OUTPUT_OFF = (803, "Not permitted with OUTPUT off")
#: Queries that take readings (``:MEASure`` is ``:CONFigure`` then ``:READ?``, which turns the output on).
SINGLE_READING_ACTIONS = ("query read", "query measure_current", "query measure_voltage", "query measure")

_K = Keithley2400


class Keithley2400Model(ScpiModel):
    """A 2400 in voltage-source / current-measure mode on bank ``bank``'s balanced photodetector."""

    category = "scpi"
    tree = keithley_2400.TREE
    plain = {
        "source_function": _K.source_function,
        "source_voltage": _K.source_voltage_v,
        "compliance_current": _K.compliance_a,
        "nplc": _K.nplc,
        "output": _K.output,
    }

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
        self._power_on()

    def _power_on(self) -> None:
        self.list_voltages_v = np.zeros(1)
        self.list_mode = False
        self.trigger_count = 1
        self.elements: tuple[str, ...] = DEFAULT_ELEMENTS
        self.sense_functions: tuple[str, ...] = ("CURR",)

    def attach(self, bench: object, profile: object) -> None:
        super().attach(bench, profile)
        if self.bank >= self.chip.n_banks:
            raise ValueError(f"{self.name}: bank {self.bank} does not exist (chip has {self.chip.n_banks})")

    def reset(self) -> None:
        super().reset()
        self._power_on()

    # -- state -----------------------------------------------------------------------------------------------------
    @property
    def integration_time_s(self) -> float:
        return float(self.value("nplc")) / self.line_frequency_hz

    @property
    def output_on(self) -> bool:
        return str(self.value("output")).strip() == "1"

    # -- commands ----------------------------------------------------------------------------------------------------
    @handles("set source_voltage_mode")
    def _source_mode(self, call: Parsed) -> None:
        self.list_mode = call.args[0] == "LIST"

    @handles("query source_voltage_mode")
    def _source_mode_query(self, call: Parsed) -> Reply:
        return "LIST" if self.list_mode else "FIX"

    @handles("set list_voltage", "set list_voltage_append")
    def _store_list(self, call: Parsed) -> None:
        values = np.array([float(v) for v in call.args[0]])
        append = call.action.endswith("append")
        stored = np.concatenate([self.list_voltages_v, values]) if append else values
        if stored.size > LIST_MAX_POINTS:
            raise ScpiError(TOO_MUCH_DATA, f"{stored.size} list points, at most {LIST_MAX_POINTS}")
        self.list_voltages_v = stored

    @handles("query list_voltage")
    def _list(self, call: Parsed) -> Reply:
        return ",".join(f"{v:+.6E}" for v in self.list_voltages_v)

    @handles("set trigger_count")
    def _set_trigger_count(self, call: Parsed) -> None:
        self.trigger_count = int(call.args[0])

    @handles("query trigger_count")
    def _trigger_count(self, call: Parsed) -> Reply:
        return f"{self.trigger_count:d}"

    @handles("set elements")
    def _set_elements(self, call: Parsed) -> None:
        self.elements = tuple(call.args[0])

    @handles("query elements")
    def _elements(self, call: Parsed) -> Reply:
        return ",".join(self.elements)

    @handles("set sense_functions")
    def _set_sense(self, call: Parsed) -> None:
        self.sense_functions = tuple(call.args[0])

    @handles("query sense_functions")
    def _sense(self, call: Parsed) -> Reply:
        return ",".join(f'"{f}:DC"' if f in ("VOLT", "CURR") else f'"{f}"' for f in self.sense_functions)

    # -- readings ----------------------------------------------------------------------------------------------------
    def latency_s(self, call: Parsed) -> float:  # type: ignore[override]
        if call.action in SINGLE_READING_ACTIONS and not self.list_mode and self.trigger_count == 1 and (
                self.output_on or call.action != "query read"):
            return 0.0  # the reading starts when the command arrives; its reply comes later (_read_single)
        return super().latency_s(call)

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
        compliance = float(self.value("compliance_current"))
        in_compliance = abs(current) > compliance
        if in_compliance:
            current = float(np.sign(current) * compliance)
        return self._point(float(self.value("source_voltage")), current, self.reply_ready_s, in_compliance)

    @handles("query read")
    def _read(self, call: Parsed) -> Reply:
        """One reading per trigger: advance the clock by source delay + integration, then read the chip."""
        if not self.output_on:
            self.status.push(*ERROR_OUTPUT_OFF)
            log.debug("%s: :READ? with the output off", self.name)
            return None
        if self._single_reading():
            return self._read_single()
        n = self.trigger_count
        if self.list_mode:
            volts = np.resize(self.list_voltages_v, n)
        else:
            volts = np.full(n, float(self.value("source_voltage")))
        aperture = self.integration_time_s
        compliance = float(self.value("compliance_current"))
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

    @handles("query measure_current", "query measure_voltage", "query measure")
    def _measure(self, call: Parsed) -> Reply:
        """``:MEASure[:<function>]?``: ``:CONFigure:<function>`` (function selected, source on), then ``:READ?``."""
        function = {"query measure_current": "CURR", "query measure_voltage": "VOLT"}.get(call.action)
        if function is not None:
            self.sense_functions = (function,)
        self.store("output", "1")
        return self._read(call)

    def _point(self, volts: float, amps: float, time_s: float, compliance: bool) -> str:
        fields = {"VOLT": volts, "CURR": amps, "RES": NAN_REPLY, "TIME": time_s,
                  "STAT": float(STATUS_CONFIGURATION | (STATUS_COMPLIANCE if compliance else 0))}
        return ",".join(f"{fields[name]:+.6E}" for name in self.elements)


REGISTRY = {
    "keithley_2400": ModelEntry(device="Keithley 2400", model=Keithley2400Model),
}
