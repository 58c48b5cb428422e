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
* Triggered buffered readings (2400 manual §11 trigger model, §18 p. 18-119 ``:ARM|:TRIGger:SOURce``, Table 18-10
  ``:TRACe``; spellings as PyMeasure's ``trigger_on_external`` and ``buffer.py``): with ``:TRIG:SOUR TLIN`` an
  ``:INIT`` arms the trigger layer for ``:TRIG:COUN`` readings, each taken when a pulse arrives on the Trigger Link
  input line ``:TRIG:ILIN`` and stored in the buffer (``:TRAC:FEED SENS``, ``:TRAC:FEED:CONT NEXT``, at most
  ``:TRAC:POIN`` readings); ``:TRAC:DATA?`` returns the stored readings in the ``:FORM:ELEM`` elements (an empty
  buffer queues ``-230,"Data corrupt or stale"`` and answers nothing), ``:TRAC:CLE`` empties it, ``:ABOR``
  disarms. Trigger cabling: a laser sweeping with ``:TRIG0:OUTP STF`` sends its step triggers to Trigger Link
  line ``trigger_link_line`` (1 by default) of every 2400 on the bench (``receive_sweep``; the BNC-to-Trigger-Link
  cable of a real bench). Each reading starts ``:TRIG:DEL`` + source delay after its trigger and integrates for
  NPLC / line frequency at the wavelength the laser has reached meanwhile; a trigger that arrives while the
  previous reading is still in progress is lost (the trigger layer is not waiting for it), so a sweep too fast
  for the integration leaves the buffer short. ``:SOUR:DEL <s>`` sets the source delay (and turns the auto delay
  off), ``:SOUR:DEL:AUTO 1`` returns to ``source_delay_s``. Auto-zero (``:SYST:AZER``) is accepted and its extra
  conversions are not modelled.
* ``:MEASure:CURRent?`` (``:MEASure:VOLTage?``, ``:MEASure?``) is ``:CONFigure`` then ``:READ?`` (2400 manual §17):
  the sense function is selected and the source turns on (and stays on: auto output-off disabled), then one
  ``:READ?`` runs. That ``:CONFigure`` also returns the function's other controls to their ``*RST`` values is not
  modelled.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from labctl.drivers.keithley_2400 import LIST_MAX_POINTS, Keithley2400
from labctl.sim.device_model import Reply
from labctl.sim.instruments import ModelEntry
from labctl.sim.scpi.errors import TOO_MUCH_DATA, ScpiError

if TYPE_CHECKING:
    from labctl.sim.instruments.keysight_models import SweepRecord
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
ERROR_BUFFER_EMPTY = (-230, "Data corrupt or stale")
#: Trigger Link input line the bench's laser trigger output is cabled to (module docstring).
DEFAULT_TRIGGER_LINK_LINE = 1
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
                 source_delay_s: float = DEFAULT_SOURCE_DELAY_S,
                 trigger_link_line: int = DEFAULT_TRIGGER_LINK_LINE) -> None:
        super().__init__(name)
        if bank < 0:
            raise ValueError(f"{name}: bank must be >= 0, got {bank}")
        if line_frequency_hz <= 0 or source_delay_s < 0:
            raise ValueError(f"{name}: line_frequency_hz must be > 0 and source_delay_s >= 0")
        self.bank = int(bank)
        self.line_frequency_hz = float(line_frequency_hz)
        self.source_delay_s = float(source_delay_s)
        self.trigger_link_line = int(trigger_link_line)
        # the buffer: *RST and :SYST:PRES have no effect on the :TRACe subsystem (Table 18-10 note)
        self.buffer_points = 100
        self.buffer_next = False                            # :TRAC:FEED:CONT NEXT (storage enabled)
        self.buffer: list[str] = []                         # stored readings, formatted at storage time
        self.buffer_complete_s = 0.0                        # when the last stored reading ends
        self._power_on()

    def _power_on(self) -> None:
        self.list_voltages_v = np.zeros(1)
        self.list_mode = False
        self.trigger_count = 1
        self.elements: tuple[str, ...] = DEFAULT_ELEMENTS
        self.sense_functions: tuple[str, ...] = ("CURR",)
        self.manual_source_delay_s: float | None = None    # None: the auto source delay (``source_delay_s``)
        self.trigger_source = "IMM"
        self.trigger_input_line = 1
        self.trigger_delay_s = 0.0
        self.armed = 0                                      # readings still waiting for a trigger

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
    def delay_s(self) -> float:
        """Source delay per reading: the manual one when set, else the auto delay."""
        return self.source_delay_s if self.manual_source_delay_s is None else self.manual_source_delay_s

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

    @handles("set source_delay_s")
    def _set_source_delay(self, call: Parsed) -> None:
        self.manual_source_delay_s = float(call.args[0])

    @handles("query source_delay_s")
    def _source_delay(self, call: Parsed) -> Reply:
        return f"{self.delay_s:+.6E}"

    @handles("set source_delay_auto")
    def _set_source_delay_auto(self, call: Parsed) -> None:
        if bool(call.args[0]):
            self.manual_source_delay_s = None
        elif self.manual_source_delay_s is None:
            self.manual_source_delay_s = self.source_delay_s      # auto off keeps the delay it had

    @handles("query source_delay_auto")
    def _source_delay_auto(self, call: Parsed) -> Reply:
        return "1" if self.manual_source_delay_s is None else "0"

    @handles("set trigger_source")
    def _set_trigger_source(self, call: Parsed) -> None:
        self.trigger_source = "TLIN" if str(call.args[0]).upper().startswith("TLIN") else "IMM"

    @handles("query trigger_source")
    def _trigger_source(self, call: Parsed) -> Reply:
        return self.trigger_source

    @handles("set trigger_input_line")
    def _set_trigger_line(self, call: Parsed) -> None:
        self.trigger_input_line = int(call.args[0])

    @handles("query trigger_input_line")
    def _trigger_line(self, call: Parsed) -> Reply:
        return f"{self.trigger_input_line:d}"

    @handles("set trigger_delay_s")
    def _set_trigger_delay(self, call: Parsed) -> None:
        self.trigger_delay_s = float(call.args[0])

    @handles("query trigger_delay_s")
    def _trigger_delay(self, call: Parsed) -> Reply:
        return f"{self.trigger_delay_s:+.6E}"

    @handles("set buffer_points")
    def _set_buffer_points(self, call: Parsed) -> None:
        self.buffer_points = int(call.args[0])

    @handles("query buffer_points")
    def _buffer_points(self, call: Parsed) -> Reply:
        return f"{self.buffer_points:d}"

    @handles("set buffer_control")
    def _set_buffer_control(self, call: Parsed) -> None:
        self.buffer_next = str(call.args[0]).upper().startswith("NEXT")

    @handles("query buffer_control")
    def _buffer_control(self, call: Parsed) -> Reply:
        return "NEXT" if self.buffer_next else "NEV"

    @handles("do buffer_clear")
    def _buffer_clear(self, call: Parsed) -> None:
        self.buffer = []
        self.buffer_complete_s = 0.0

    @handles("do abort")
    def _abort(self, call: Parsed) -> None:
        self.armed = 0

    @handles("do initiate")
    def _initiate(self, call: Parsed) -> None:
        """``:INIT``: with Trigger Link as the trigger source, wait for ``:TRIG:COUN`` triggers; with immediate
        triggering take the readings now (into the buffer when storage is on)."""
        if not self.output_on:
            self.status.push(*ERROR_OUTPUT_OFF)
            return
        if self.trigger_source == "TLIN":
            self.armed = self.trigger_count
            return
        points = self._take_readings(self.trigger_count)
        if self.buffer_next:
            self._store(points, self.chip.clock.now_s)

    def _store(self, points: list[str], complete_s: float) -> None:
        room = max(self.buffer_points - len(self.buffer), 0)
        self.buffer.extend(points[:room])
        self.buffer_complete_s = max(self.buffer_complete_s, complete_s)
        if len(self.buffer) >= self.buffer_points:
            self.buffer_next = False          # the buffer filled: storage stops (feed control back to NEVer)

    @handles("query buffer_data")
    def _buffer_data(self, call: Parsed) -> Reply:
        if not self.buffer:
            self.status.push(*ERROR_BUFFER_EMPTY)
            return None
        if self.buffer_complete_s > self.chip.clock.now_s:
            self.reply_ready_s = self.buffer_complete_s + self.chip.spec.timing.scpi_query_s
        return ",".join(self.buffer)

    def receive_sweep(self, record: SweepRecord) -> None:
        """A laser's step triggers on Trigger Link line ``trigger_link_line`` (see the module docstring): one
        reading per trigger while armed; triggers arriving while a reading is in progress are lost."""
        if self.armed <= 0 or self.trigger_source != "TLIN" or self.trigger_input_line != self.trigger_link_line:
            return
        aperture = self.integration_time_s
        lag = self.trigger_delay_s + self.delay_s
        triggers = record.trigger_times_s(record.n_triggers)
        if record.step_period_s >= lag + aperture:      # every trigger finds the 2400 waiting
            taken = np.arange(min(self.armed, triggers.size))
        else:
            picks, busy_until = [], -np.inf
            for k, t in enumerate(triggers):            # greedy: the trigger layer waits again only when done
                if t >= busy_until:
                    picks.append(k)
                    busy_until = t + lag + aperture
                    if len(picks) == self.armed:
                        break
            taken = np.asarray(picks, dtype=int)
            log.warning("%s: trigger period %.3g ms is shorter than a reading (%.3g ms): %d of %d triggers lost",
                        self.name, record.step_period_s * 1e3, (lag + aperture) * 1e3,
                        int(taken[-1]) + 1 - taken.size if taken.size else 0, int(taken[-1]) + 1 if taken.size else 0)
        if taken.size == 0:
            return
        starts = triggers[taken] + lag
        currents = self._sweep_currents(record, starts + 0.5 * aperture, aperture)
        compliance = float(self.value("compliance_current"))
        clipped = np.abs(currents) > compliance
        currents = np.where(clipped, np.sign(currents) * compliance, currents)
        volts = float(self.value("source_voltage"))
        points = [self._point(volts, float(i), float(t), bool(c))
                  for i, t, c in zip(currents, starts + aperture, clipped)]
        self.armed -= taken.size
        if self.buffer_next:
            self._store(points, float(starts[-1] + aperture))

    def _sweep_currents(self, record: SweepRecord, at_s: np.ndarray, aperture_s: float) -> np.ndarray:
        """This bank's balanced current at the wavelengths the sweep reaches at ``at_s``; every 2400 on the bench
        reads the same sweep, so the chip computes it once per sweep and timing (cached on the record)."""
        key = ("balanced", float(aperture_s), float(at_s[0]), int(at_s.size))
        cached = record._cache.get(key)  # type: ignore[call-overload]
        if cached is None:
            cached = record.chip.balanced_spectrum_a(record.wavelength_at(at_s), record.power_w,
                                                     channel=record.channel, averaging_time_s=aperture_s)
            record._cache[key] = cached  # type: ignore[index]
        return cached[:, self.bank]

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
        start = now + self.delay_s
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
        if self.trigger_source == "TLIN":
            log.warning("%s: :READ? waits for Trigger Link triggers (trigger source TLIN); none come", self.name)
            return None
        if self._single_reading():
            return self._read_single()
        return ",".join(self._take_readings(self.trigger_count))

    def _take_readings(self, n: int) -> list[str]:
        """``n`` readings one after the other (list or fixed level), the clock advancing by source delay +
        integration before each; one formatted point per reading."""
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
            clock.advance(self.delay_s + aperture, self.category)
            currents[k] = self.chip.read_balanced_current_a(aperture)[self.bank]
            times[k] = clock.now_s
        in_compliance = np.abs(currents) > compliance
        currents = np.where(in_compliance, np.sign(currents) * compliance, currents)
        return [self._point(v, i, t, c) for v, i, t, c in zip(volts, currents, times, in_compliance)]

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
