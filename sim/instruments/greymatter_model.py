"""Physics model of the greymatter DAC controller in front of the emulated chip (instruments.md appendix).

Why a model: the YAML stores each output's last ``CODE``/``SPAN`` but cannot hold codes pending until ``LDAC``,
compute an output from code, span and resolution, or drive heaters. Spellings come from
:mod:`labctl.drivers.greymatter`; the fixed replies (``*IDN?``, ``SYST:ERR?``, ``*RST``) and the reply to an unknown
line (``ERROR:Unknown command``, also given to a resolution outside ``RESOLUTIONS``, as the generated YAML did) come
from the simulation profile. Replies are bare lines, no console echo or banner, as the profile documents.

Wiring: ``heater_map[k]`` is the chip heater on current output ``k`` in the driver's current-mode numbering
(board ``k // 10``, DAC ``(k % 10) // 5``, CH ``k % 5``); ``voltage_heater_map[k]`` (optional) the heater on the
LTC2664 output ``k`` (board ``k // 4``, DAC2, CH ``k % 4``); -1 or a missing entry is an unconnected output.

Semantics (user guide; the firmware source at 0adb0d3 differs, see the driver's docstring):

* ``…:CODE <int>`` loads a **pending** code and ``…:SPAN``/``…:SPAN:ALL`` a pending span; ``LDAC`` and
  ``UPDATE:ALL`` apply every pending code and span at once: the changed current outputs reach the chip in ONE
  ``chip.set_heater_drive(currents_a, mode="current", channels=...)`` call (voltage outputs in one more call).
* Output current = code / (2^res - 1) × span full scale (span 0 = high impedance = 0 A); voltage = span low end +
  code / (2^res - 1) × span width. A heater dissipates the same power for ±V, so ``|V|`` is sent to the chip.
* ``…:CURR <mA>`` / ``…:VOLT <V>`` update that one output at once, the code computed as the firmware does
  (clamped to the span, ``floor(x / fs × max_code + 0.5)``, with the latest written span); on-board calibration
  (``CAL:*``) is not modelled.
* Errors are the firmware's in-line replies: ``ERROR:Code exceeds max (4095 for 12-bit)``, ``ERROR:Use VOLT for
  voltage DACs``, ``ERROR:Invalid channel``, ``ERROR:Invalid board number (0-7)`` …; nothing is applied.
* ``*RST`` and setting a DAC's resolution re-initialise it: codes to zero current / mid-scale voltage, spans to the
  power-on values, applied at once.
* ``FAULT?`` reports the LTC2662 open-circuit flag: bit ``3·board + dac`` is set while one of that DAC's outputs
  on a present board (``boards``) is commanded to a non-zero current but has no heater wired
  (``FAULT:0xNNNNNN``); otherwise ``OK``. Commands to absent boards answer ``OK`` and drive nothing.
* The chip's own heater DAC model re-quantises the current (16 bits over its current full scale) and clips at that
  full scale; ``PDOWN``, per-DAC ``UPDATE``, ``CAL:*`` and ``SN`` are not modelled.

Latency: ``chip.spec.timing.serial_line_s`` per command line, category ``serial``.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

import numpy as np
from labctl.drivers.greymatter import (
    BOARDS,
    CURRENT_CHANNELS,
    CURRENT_SPAN_OFF,
    CURRENT_SPANS_MA,
    DAC_ID,
    ERROR_QUERY,
    FAULT_QUERY,
    IDN_QUERY,
    LOAD_ALL,
    OK,
    OUTPUT_ID,
    RESET,
    RESOLUTIONS,
    UPDATE_ALL,
    VOLTAGE_CHANNELS,
    VOLTAGE_DAC,
    VOLTAGE_SPANS_V,
    CurrentDac,
    CurrentOutput,
    VoltageOutput,
)
from labctl.sim.device_model import DeviceModel, Reply
from labctl.sim.instruments import ModelEntry
from labctl.sim.templates import template_regex

log = logging.getLogger(__name__)

CURRENT_PER_BOARD = 2 * CURRENT_CHANNELS
#: Output-level commands (the driver's Settings; CURR/VOLT are matched on any DAC so the firmware's errors apply).
_OUTPUT_COMMANDS = {
    "code": CurrentOutput.code.command,
    "span": CurrentOutput.span.command,
    "current": CurrentOutput.current_ma.command,
    "voltage": VoltageOutput.voltage_v.command,
}
_DAC_COMMANDS = {"span_all": CurrentDac.span_all.command, "resolution": CurrentDac.resolution.command}
_RESOLUTION_QUERY = str(CurrentDac.resolution.query)


@lru_cache(maxsize=32)
def _pattern(template: str, address: str) -> re.Pattern[str]:
    """Case-insensitive regex of a driver template whose ``{ch}`` is a board/DAC/channel address."""
    pattern = template_regex(template.replace("{ch}", address)).pattern
    for name in ("board", "dac", "ch"):
        pattern = pattern.replace(f"(?P<{name}>.+?)", rf"(?P<{name}>\d+)")
    return re.compile(pattern, re.IGNORECASE)


class GreymatterModel(DeviceModel):
    """The greymatter controller: pending codes/spans per output, applied to the chip on ``LDAC``."""

    category = "serial"

    def __init__(self, name: str, heater_map: np.ndarray | list[int], boards: int = BOARDS,
                 voltage_heater_map: np.ndarray | list[int] | None = None) -> None:
        super().__init__(name)
        if not 1 <= boards <= BOARDS:
            raise ValueError(f"{name}: boards must be 1..{BOARDS}, got {boards}")
        self.boards = boards
        self.n_current = BOARDS * CURRENT_PER_BOARD
        self.n_voltage = BOARDS * VOLTAGE_CHANNELS
        self.heater_map = self._wiring(heater_map, boards * CURRENT_PER_BOARD, self.n_current, "heater_map")
        self.voltage_heater_map = self._wiring([] if voltage_heater_map is None else voltage_heater_map,
                                               boards * VOLTAGE_CHANNELS, self.n_voltage, "voltage_heater_map")
        wired = np.concatenate([self.heater_map[self.heater_map >= 0],
                                self.voltage_heater_map[self.voltage_heater_map >= 0]])
        if np.unique(wired).size != wired.size:
            raise ValueError(f"{name}: a heater is wired to two outputs")
        self._power_on()

    def _wiring(self, value: Any, present: int, total: int, what: str) -> np.ndarray:
        wiring = np.asarray(value, dtype=int).reshape(-1)
        if wiring.size > present:
            raise ValueError(f"{self.name}: {what} has {wiring.size} entries for {present} outputs")
        if np.any(wiring < -1):
            raise ValueError(f"{self.name}: {what} entries must be heater indices or -1")
        return np.concatenate([wiring, np.full(total - wiring.size, -1, dtype=int)])

    def _power_on(self) -> None:
        """Registers at power-on (the driver Settings' declared defaults)."""
        self.code_pending = np.zeros(self.n_current, dtype=int)
        self.code_active = np.zeros(self.n_current, dtype=int)
        self.span_pending = np.full(self.n_current, int(CurrentOutput.span.default))
        self.span_active = self.span_pending.copy()
        self.vcode_pending = np.full(self.n_voltage, int(VoltageOutput.code.default))
        self.vcode_active = self.vcode_pending.copy()
        self.vspan_pending = np.full(self.n_voltage, int(VoltageOutput.span.default))
        self.vspan_active = self.vspan_pending.copy()
        self._pushed_a = np.zeros(self.n_current)
        self._pushed_v = np.zeros(self.n_voltage)
        #: Bits per DAC (board, dac 0..2), the driver's declared power-on resolution.
        self.bits = np.full((BOARDS, VOLTAGE_DAC + 1), int(CurrentDac.resolution.default))

    def attach(self, bench: Any, profile: Any) -> None:
        super().attach(bench, profile)
        self._static = {line: self.dialogue(line) for line in (IDN_QUERY, ERROR_QUERY, RESET)}
        self._unknown = str(profile.error_reply)
        for wiring, what in ((self.heater_map, "heater_map"), (self.voltage_heater_map, "voltage_heater_map")):
            if np.any(wiring >= self.chip.n_heaters):
                raise ValueError(f"{self.name}: {what} names heaters beyond the chip's {self.chip.n_heaters}")

    def latency_s(self, line: str) -> float:
        return float(self.chip.spec.timing.serial_line_s)

    # -- addressing ----------------------------------------------------------------------------------------------
    @staticmethod
    def current_index(board: int, dac: int, ch: int) -> int:
        return board * CURRENT_PER_BOARD + dac * CURRENT_CHANNELS + ch

    def resolution(self, board: int, dac: int) -> int:
        """Bits of one DAC."""
        return int(self.bits[board, dac])

    def _max_codes(self, voltage: bool) -> np.ndarray:
        if voltage:
            bits = [self.resolution(b, VOLTAGE_DAC) for b in range(BOARDS) for _ in range(VOLTAGE_CHANNELS)]
        else:
            bits = [self.resolution(b, d) for b in range(BOARDS) for d in (0, 1) for _ in range(CURRENT_CHANNELS)]
        return 2 ** np.array(bits) - 1

    # -- dispatch ------------------------------------------------------------------------------------------------
    def handle(self, line: str) -> Reply:
        text = line.strip()
        upper = text.upper()
        if upper in (LOAD_ALL, UPDATE_ALL):
            self._update()
            return OK
        if upper == FAULT_QUERY:
            return self._fault_reply()
        if upper == RESET:
            self._reinitialise([(b, d) for b in range(BOARDS) for d in (0, 1, VOLTAGE_DAC)])
            return self._static[RESET]
        if upper in self._static:
            return self._static[upper]
        for kind, template in _OUTPUT_COMMANDS.items():
            found = _pattern(template, OUTPUT_ID).match(text)
            if found is not None:
                return self._output_command(kind, int(found["board"]), int(found["dac"]), int(found["ch"]),
                                            found["value"])
        found = _pattern(_DAC_COMMANDS["span_all"], DAC_ID).match(text)
        if found is not None:
            return self._span_all(int(found["board"]), int(found["dac"]), found["value"])
        found = _pattern(_DAC_COMMANDS["resolution"], DAC_ID).match(text)
        if found is not None:
            return self._set_resolution(int(found["board"]), int(found["dac"]), found["value"])
        found = _pattern(_RESOLUTION_QUERY, DAC_ID).match(text)
        if found is not None and int(found["board"]) < BOARDS and int(found["dac"]) <= VOLTAGE_DAC:
            return f"{self.resolution(int(found['board']), int(found['dac'])):d}"
        return self._unknown

    def _set_resolution(self, board: int, dac: int, value: str) -> str:
        bits = _integer(value)
        if bits not in RESOLUTIONS or board >= BOARDS or dac > VOLTAGE_DAC:
            return self._unknown
        self.bits[board, dac] = bits
        self._reinitialise([(board, dac)])
        return OK

    # -- commands ----------------------------------------------------------------------------------------------------
    @staticmethod
    def _address_error(board: int, dac: int, ch: int | None = None) -> str | None:
        """The firmware parser's address checks, in its order."""
        if board >= BOARDS:
            return "ERROR:Invalid board number (0-7)"
        if dac > VOLTAGE_DAC:
            return "ERROR:Invalid DAC number (0-2)"
        if ch is not None and ch >= CURRENT_CHANNELS:
            return "ERROR:Invalid channel number (0-4)"
        return None

    def _output_command(self, kind: str, board: int, dac: int, ch: int, value: str) -> str:
        error = self._address_error(board, dac, ch)
        if error:
            return error
        voltage = dac == VOLTAGE_DAC
        if voltage and ch >= VOLTAGE_CHANNELS:
            return "ERROR:Invalid channel"
        if kind == "current" and voltage:
            return "ERROR:Use VOLT for voltage DACs"
        if kind == "voltage" and not voltage:
            return "ERROR:Use CURR for current DACs"
        k = board * VOLTAGE_CHANNELS + ch if voltage else self.current_index(board, dac, ch)
        if kind in ("code", "span"):
            number = _integer(value)
            if number is None:
                return f"ERROR:Invalid {kind} value"
            if kind == "span":
                (self.vspan_pending if voltage else self.span_pending)[k] = number
                return OK
            bits = self.resolution(board, dac)
            if number > 2**bits - 1:
                return f"ERROR:Code exceeds max ({2**bits - 1} for {bits}-bit)"
            (self.vcode_pending if voltage else self.code_pending)[k] = number
            return OK
        number_f = _real(value)
        if number_f is None:
            return f"ERROR:Invalid {kind} value"
        max_code = 2 ** self.resolution(board, dac) - 1
        if voltage:
            low, high = VOLTAGE_SPANS_V.get(int(self.vspan_pending[k]), (0.0, 0.0))
            fraction = (min(max(number_f, low), high) - low) / (high - low) if high > low else 0.0
            self.vcode_pending[k] = int(np.floor(fraction * max_code + 0.5))
        else:
            full = CURRENT_SPANS_MA.get(int(self.span_pending[k]), 0.0)
            fraction = min(max(number_f, 0.0), full) / full if full > 0 else 0.0
            self.code_pending[k] = int(np.floor(fraction * max_code + 0.5))
        self._update(only=(voltage, k))  # write-and-update of this one output
        return OK

    def _span_all(self, board: int, dac: int, value: str) -> str:
        error = self._address_error(board, dac)
        if error:
            return error
        number = _integer(value)
        if number is None:
            return "ERROR:Invalid span value"
        if dac == VOLTAGE_DAC:
            self.vspan_pending[board * VOLTAGE_CHANNELS:(board + 1) * VOLTAGE_CHANNELS] = number
        else:
            first = self.current_index(board, dac, 0)
            self.span_pending[first:first + CURRENT_CHANNELS] = number
        return OK

    def _reinitialise(self, dacs: list[tuple[int, int]]) -> None:
        """Power-on registers for ``dacs`` (a re-initialised DAC), applied at once."""
        for board, dac in dacs:
            max_code = 2 ** self.resolution(board, dac) - 1
            if dac == VOLTAGE_DAC:
                part = slice(board * VOLTAGE_CHANNELS, (board + 1) * VOLTAGE_CHANNELS)
                self.vcode_pending[part] = self.vcode_active[part] = int(np.floor(max_code / 2 + 0.5))
                self.vspan_pending[part] = self.vspan_active[part] = int(VoltageOutput.span.default)
            else:
                first = self.current_index(board, dac, 0)
                part = slice(first, first + CURRENT_CHANNELS)
                self.code_pending[part] = self.code_active[part] = 0
                self.span_pending[part] = self.span_active[part] = int(CurrentOutput.span.default)
        self._push()

    # -- outputs and the chip ------------------------------------------------------------------------------------------
    def _update(self, only: tuple[bool, int] | None = None) -> None:
        """Latch pending codes and spans (all outputs, or one ``(is_voltage, index)``), then drive the chip."""
        if only is None:
            self.code_active[:] = self.code_pending
            self.span_active[:] = self.span_pending
            self.vcode_active[:] = self.vcode_pending
            self.vspan_active[:] = self.vspan_pending
        elif only[0]:
            self.vcode_active[only[1]] = self.vcode_pending[only[1]]
            self.vspan_active[only[1]] = self.vspan_pending[only[1]]
        else:
            self.code_active[only[1]] = self.code_pending[only[1]]
            self.span_active[only[1]] = self.span_pending[only[1]]
        self._push()

    def output_currents_a(self) -> np.ndarray:
        """Current of every LTC2662 output from its active code, span and resolution, A."""
        full_ma = np.array([CURRENT_SPANS_MA.get(int(s), 0.0) for s in self.span_active])
        full_ma[self.span_active == CURRENT_SPAN_OFF] = 0.0
        return self.code_active / self._max_codes(False) * full_ma * 1e-3

    def output_voltages_v(self) -> np.ndarray:
        """Voltage of every LTC2664 output from its active code, span and resolution, V."""
        spans = np.array([VOLTAGE_SPANS_V.get(int(s), (0.0, 0.0)) for s in self.vspan_active])
        return spans[:, 0] + self.vcode_active / self._max_codes(True) * (spans[:, 1] - spans[:, 0])

    def _push(self) -> None:
        """Send the outputs that changed to the chip: one call for the current outputs, one for the voltage ones."""
        for mode, values, pushed, wiring in (("current", self.output_currents_a(), self._pushed_a, self.heater_map),
                                             ("voltage", np.abs(self.output_voltages_v()), self._pushed_v,
                                              self.voltage_heater_map)):
            changed = np.flatnonzero((values != pushed) & (wiring >= 0))
            if changed.size:
                self.chip.set_heater_drive(values[changed], mode=mode, channels=wiring[changed])
            pushed[:] = values

    def _fault_reply(self) -> str:
        """LTC2662 open-circuit flags: a non-zero current commanded into an output with no heater."""
        present = np.arange(self.n_current) < self.boards * CURRENT_PER_BOARD  # absent boards flag nothing
        open_circuit = (self.output_currents_a() > 0) & (self.heater_map < 0) & present
        mask = 0
        for k in np.flatnonzero(open_circuit):
            board, rest = divmod(int(k), CURRENT_PER_BOARD)
            mask |= 1 << (3 * board + rest // CURRENT_CHANNELS)
        return OK if mask == 0 else f"FAULT:0x{mask:06X}"


def _integer(text: str) -> int | None:
    """``strtol(text, 0)`` within 0..65535, as the firmware's parse_int (hex ``0x`` accepted)."""
    try:
        value = int(text.strip(), 0)
    except ValueError:
        return None
    return value if 0 <= value <= 65535 else None


def _real(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if np.isfinite(value) else None


REGISTRY = {
    "greymatter": ModelEntry(device="greymatter", model=GreymatterModel, serial=True),
}
