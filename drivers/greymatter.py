"""greymatter multi-channel heater/bias DAC controller (Shastri Lab): 8 boards × (2 × LTC2662 current DAC + LTC2664).

Protocol (instruments.md, appendix "greymatter"; the user guide ``docs/USER_GUIDE.md`` of ``Shastri-Lab/greymatter``):

* USB CDC serial, 115200 baud, commands end with LF, SCPI-style and case-insensitive. Set commands answer ``OK``;
  a refused command answers ``ERROR:<reason>`` on the same line (raised here as
  :class:`~labctl.drivers.errors.InstrumentReportedError` naming the command).
* ``*IDN?`` → ``greymatter,DAC Controller,<serial>,<fw>``; ``SYST:ERR?`` → ``0,No error``; ``FAULT?`` → ``OK`` or
  ``FAULT:0xNNNNNN`` (bit ``3·board + dac`` set for a DAC whose fault line is active).
* Current outputs ``BOARD<n>:DAC<0|1>:CH<c>:CURR <mA>`` (**milliamps**), c = 0..4; voltage outputs
  ``BOARD<n>:DAC2:CH<c>:VOLT <V>``, c = 0..3. Spans ``…:CH<c>:SPAN <code>`` / ``BOARD<n>:DAC<m>:SPAN:ALL <code>``;
  raw codes ``…:CH<c>:CODE <int>``; ``LDAC`` / ``UPDATE:ALL`` update every pending output at once; ``…:RES?`` gives
  12 or 16 bits. There is **no read-back of an output** (the firmware answers ``CURR?`` with
  ``ERROR:Query not implemented``).

The released firmware's console echoes each command and prints a ``> `` prompt and a start-up banner; the
reference describes bare reply lines. The driver accepts both: empty lines, prompts and the echo of the command
just sent are skipped, and at connect lines that are not an ``*IDN?`` reply (the banner) are skipped.

Channel map (``HeaterDriver`` channel k, boards 0..n_boards-1):

* current mode (default): 10 outputs per board, k → board ``k // 10``, DAC ``(k % 10) // 5``, CH ``k % 5``;
* voltage mode: the 4 LTC2664 outputs per board, k → board ``k // 4``, DAC 2, CH ``k % 4``.

Simultaneous update. :meth:`Greymatter.set_drive` writes each channel's raw ``CODE`` and then one ``LDAC``: the
user guide documents ``CODE`` as loading a pending value and ``LDAC`` as pulsing the load line shared by all DACs,
so every output changes at the same instant (``UPDATE:ALL`` would send an update to each DAC in turn before the
pulse). The codes are computed here from the span and resolution read at connect, rounding as the firmware does
(``floor(x + 0.5)``). Two consequences, documented rather than hidden: codes bypass the on-board ``CAL:*``
correction, which the firmware applies only to ``CURR``/``VOLT``; and the firmware source at commit 0adb0d3 executes
``CODE`` as write-and-update, so on that firmware outputs change one by one as the lines arrive and ``LDAC`` only
re-latches them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from labctl.drivers.clock import Clock
from labctl.drivers.errors import (
    InstrumentError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeout,
    LimitError,
)
from labctl.drivers.heater_request import validate_heater_request
from labctl.drivers.instrument import Channel, Instrument, LimitedSetting, Setting
from labctl.drivers.interfaces import DriveMode
from labctl.drivers.limits import HeaterLimits
from labctl.drivers.parsing import Identity, parse_idn, parse_int, parse_scpi_error
from labctl.drivers.transport import BaseTransport, TransportSettings
from labctl.drivers.validators import IntRange, OneOf, Range

log = logging.getLogger(__name__)

# -- command set (per-output and per-DAC commands are the Settings below) ------------------------------------------
IDN_QUERY = "*IDN?"
RESET = "*RST"
ERROR_QUERY = "SYST:ERR?"
FAULT_QUERY = "FAULT?"
LOAD_ALL = "LDAC"            # pulse the shared LDAC line: every pending output updates at once
UPDATE_ALL = "UPDATE:ALL"    # update each DAC over SPI, then pulse LDAC
OUTPUT_ID = "BOARD{board}:DAC{dac}:CH{ch}"
DAC_ID = "BOARD{board}:DAC{dac}"
OK = "OK"
ERROR_PREFIX = "ERROR"
PROMPT = ">"

BOARDS = 8
CURRENT_DACS = (0, 1)
VOLTAGE_DAC = 2
CURRENT_CHANNELS = 5   # per LTC2662
VOLTAGE_CHANNELS = 4   # per LTC2664
#: LTC2662 current spans: code -> full scale in mA (0 = high impedance, output off).
CURRENT_SPANS_MA: dict[int, float] = {1: 3.125, 2: 6.25, 3: 12.5, 4: 25.0, 5: 50.0, 6: 100.0, 7: 200.0, 15: 300.0}
CURRENT_SPAN_OFF = 0
#: LTC2664 voltage spans: code -> (min V, max V).
VOLTAGE_SPANS_V: dict[int, tuple[float, float]] = {0: (0.0, 5.0), 1: (0.0, 10.0), 2: (-5.0, 5.0), 3: (-10.0, 10.0),
                                                   4: (-2.5, 2.5)}
#: Bipolar spans the driver uses, smallest first: 0 V is mid-scale in all of them, so switching between them (or
#: from the power-on span) with the code at mid-scale never moves the output.
VOLTAGE_DRIVE_SPANS = (4, 2, 3)
RESOLUTIONS = (12, 16)
FAULT_REPLY = re.compile(r"FAULT:0x([0-9A-Fa-f]{1,6})")
FAULT_UNLOCATED = "FAULT:ACTIVE"  # single-board firmware: a fault, but not which DAC
MAX_SKIPPED_LINES = 16


class _OutputValue(LimitedSetting):
    """An immediate single-output write (``CURR``/``VOLT``), held to the driver's configured limit first."""

    def __set__(self, instance: Any, value: Any) -> None:
        super().__set__(instance, value)
        instance.parent.note_value(instance.index, float(value) * self.to_si)


class CurrentOutput(Channel):
    """One LTC2662 output; its id is ``BOARD<n>:DAC<0|1>:CH<c>``."""

    current_ma = _OutputValue(None, "{ch}:CURR {value:.4f}", "Output current in mA, updated at once (the firmware "
                              "applies on-board calibration and clamps to the span).", validator=Range(0.0, 300.0,
                              " mA"), default=0.0, unit="mA", ack=OK, to_si=1e-3)
    code = Setting(None, "{ch}:CODE {value:d}", "Raw DAC code (pending until LDAC/UPDATE).", parse=parse_int,
                   validator=IntRange(0, 65535), default=0, ack=OK)
    span = Setting(None, "{ch}:SPAN {value:d}", "Current span code (takes effect on the next update).",
                   parse=parse_int, validator=OneOf([CURRENT_SPAN_OFF, *CURRENT_SPANS_MA]), default=6, ack=OK)

    def __init__(self, parent: Greymatter, index: int, board: int, dac: int, ch: int) -> None:
        super().__init__(parent, OUTPUT_ID.format(board=board, dac=dac, ch=ch))
        self.parent: Greymatter = parent
        self.index = index


class VoltageOutput(Channel):
    """One LTC2664 output; its id is ``BOARD<n>:DAC2:CH<c>``."""

    voltage_v = _OutputValue(None, "{ch}:VOLT {value:.4f}", "Output voltage, updated at once (on-board calibration "
                             "applied, clamped to the span).", validator=Range(-10.0, 10.0, " V"), default=0.0,
                             unit="V", ack=OK, to_si=1.0)
    code = Setting(None, "{ch}:CODE {value:d}", "Raw DAC code (pending until LDAC/UPDATE).", parse=parse_int,
                   validator=IntRange(0, 65535), default=32768, ack=OK)
    span = Setting(None, "{ch}:SPAN {value:d}", "Voltage span code (takes effect on the next update).",
                   parse=parse_int, validator=OneOf(list(VOLTAGE_SPANS_V)), default=3, ack=OK)

    def __init__(self, parent: Greymatter, index: int, board: int, ch: int) -> None:
        super().__init__(parent, OUTPUT_ID.format(board=board, dac=VOLTAGE_DAC, ch=ch))
        self.parent: Greymatter = parent
        self.index = index


class CurrentDac(Channel):
    """One LTC2662 chip; its id is ``BOARD<n>:DAC<0|1>``."""

    resolution = Setting("{ch}:RES?", "{ch}:RES {value:d}", "DAC resolution in bits (setting it re-initialises "
                         "the DAC).", parse=parse_int, validator=OneOf(list(RESOLUTIONS)), reply="{:d}", default=16,
                         ack=OK)
    span_all = Setting(None, "{ch}:SPAN:ALL {value:d}", "Span code of all five outputs.", parse=parse_int,
                       validator=OneOf([CURRENT_SPAN_OFF, *CURRENT_SPANS_MA]), default=6, ack=OK)


class VoltageDac(Channel):
    """One LTC2664 chip; its id is ``BOARD<n>:DAC2``."""

    resolution = Setting("{ch}:RES?", "{ch}:RES {value:d}", "DAC resolution in bits (setting it re-initialises "
                         "the DAC).", parse=parse_int, validator=OneOf(list(RESOLUTIONS)), reply="{:d}", default=16,
                         ack=OK)
    span_all = Setting(None, "{ch}:SPAN:ALL {value:d}", "Span code of all four outputs.", parse=parse_int,
                       validator=OneOf(list(VOLTAGE_SPANS_V)), default=3, ack=OK)


def current_span_for(max_ma: float) -> int:
    """Smallest LTC2662 span whose full scale covers ``max_ma``."""
    for code, full in sorted(CURRENT_SPANS_MA.items(), key=lambda item: item[1]):
        if max_ma <= full:
            return code
    raise LimitError(f"{max_ma:g} mA exceeds the largest current span (300 mA)")


def voltage_span_for(max_v: float) -> int:
    """Smallest bipolar LTC2664 span covering ``max_v`` (0 V stays mid-scale across span changes)."""
    for code in VOLTAGE_DRIVE_SPANS:
        if max_v <= VOLTAGE_SPANS_V[code][1]:
            return code
    raise LimitError(f"{max_v:g} V exceeds the largest voltage span (10 V)")


def decode_faults(mask: int) -> list[tuple[int, int]]:
    """(board, dac) of every set bit of the 24-bit ``FAULT?`` mask (bit = 3·board + dac)."""
    return [(bit // 3, bit % 3) for bit in range(24) if mask >> bit & 1]


class Greymatter(Instrument):
    """The greymatter DAC controller as a :class:`~labctl.drivers.interfaces.HeaterDriver`.

    Connecting identifies the controller, reads each used DAC's resolution, writes the spans chosen from the
    configured limits (smallest span covering each channel's limit), then **zeroes every output it owns** and
    loads spans and zeros together with one ``LDAC``. Zeroing is required: there is no read-back, so the only way
    to know (and make safe) the outputs is to set them; spans come first so that no code is ever latched in a
    span this driver did not choose.
    """

    label: ClassVar[str] = "greymatter"
    line_settings: ClassVar[TransportSettings] = TransportSettings(
        write_termination="\n", read_termination="\n", timeout_s=2.0, retries=0, baud_rate=115200)

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None, mode: DriveMode = "current",
                 n_boards: int = BOARDS,
                 max_current_a: float | Sequence[float] | np.ndarray | None = None,
                 max_voltage_v: float | Sequence[float] | np.ndarray | None = None,
                 connect_attempts: int = 2) -> None:
        if mode not in ("voltage", "current"):
            raise ValueError(f"mode must be 'voltage' or 'current', got {mode!r}")
        if not 1 <= n_boards <= BOARDS:
            raise ValueError(f"n_boards must be 1..{BOARDS}, got {n_boards}")
        self.name = name or self.label
        self.mode: DriveMode = mode
        self.n_boards = n_boards
        per_board = 2 * CURRENT_CHANNELS if mode == "current" else VOLTAGE_CHANNELS
        self.n_channels = n_boards * per_board
        limit = max_current_a if mode == "current" else max_voltage_v
        if limit is None:
            raise LimitError(f"{self.name}: {'max_current_a' if mode == 'current' else 'max_voltage_v'} "
                             f"is required in {mode} mode (it chooses the spans)")
        self._limit = self._limits(limit)
        self._addresses = [self.address_of(k) for k in range(self.n_channels)]
        self._commanded = np.zeros(self.n_channels)
        self._full_scale = np.zeros(self.n_channels)  # A (current) or V half-range (voltage)
        self._max_code = np.zeros(self.n_channels, dtype=int)
        self._spans = np.zeros(self.n_channels, dtype=int)
        self.connect_attempts = connect_attempts
        super().__init__(resource, resource_manager=resource_manager, name=name, timeout_s=timeout_s,
                         clock=clock)
        try:
            self._connect()
        except Exception:
            self.transport.close()
            raise

    # -- channel map and limits ----------------------------------------------------------------------------------
    def address_of(self, k: int) -> tuple[int, int, int]:
        """(board, dac, ch) of HeaterDriver channel ``k`` (see the module docstring)."""
        if not 0 <= k < self.n_channels:
            raise LimitError(f"{self.name}: channel {k} does not exist (0..{self.n_channels - 1})")
        if self.mode == "current":
            board, rest = divmod(k, 2 * CURRENT_CHANNELS)
            return board, rest // CURRENT_CHANNELS, rest % CURRENT_CHANNELS
        board, ch = divmod(k, VOLTAGE_CHANNELS)
        return board, VOLTAGE_DAC, ch

    def _limits(self, value: Any) -> np.ndarray:
        name = self.name
        top = 0.3 if self.mode == "current" else 10.0
        unit = "A" if self.mode == "current" else "V"
        limits = np.full(self.n_channels, float(value)) if np.ndim(value) == 0 else np.asarray(value, dtype=float)
        if limits.shape != (self.n_channels,):
            raise LimitError(f"{name}: {limits.size} limits for {self.n_channels} channels")
        for k in np.flatnonzero(~np.isfinite(limits) | (limits < 0) | (limits > top)):
            raise LimitError(f"{name}: channel {k} limit {limits[k]:g} {unit} is outside [0, {top:g}] {unit}")
        return limits

    def output(self, k: int) -> CurrentOutput | VoltageOutput:
        """The output behind HeaterDriver channel ``k`` (its Settings address the firmware directly)."""
        board, dac, ch = self.address_of(k)
        if self.mode == "current":
            return CurrentOutput(self, k, board, dac, ch)
        return VoltageOutput(self, k, board, ch)

    def dac(self, board: int, dac: int) -> CurrentDac | VoltageDac:
        return (VoltageDac if dac == VOLTAGE_DAC else CurrentDac)(self, DAC_ID.format(board=board, dac=dac))

    def _used_dacs(self) -> list[tuple[int, int]]:
        dacs = CURRENT_DACS if self.mode == "current" else (VOLTAGE_DAC,)
        return [(board, dac) for board in range(self.n_boards) for dac in dacs]

    def check_limit(self, k: int, value_si: float, what: str) -> None:
        """Refuse (LimitError) a drive value outside [0, the channel's configured limit] (the one heater-limit rule)."""
        HeaterLimits(mode=self.mode, max_drive=self._limit).check(np.array([value_si]), np.array([k]), who=what)

    def note_value(self, k: int, value_si: float) -> None:
        """Record a value written directly to one output (the firmware computed its code)."""
        self._commanded[k] = value_si

    def max_drive(self) -> np.ndarray:
        """The configured per-channel limits (A or V). The instrument itself enforces only the span full scale
        (:meth:`span_full_scale`); the driver refuses anything above these limits before writing."""
        return self._limit.copy()

    def span_full_scale(self) -> np.ndarray:
        """Full scale of each channel's span: amps (current) or the positive end of the bipolar span in volts."""
        return self._full_scale.copy()

    # -- connect -------------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        identity = self._identify_at_connect()
        log.info("%s: %s, %d boards, %s mode", self.name, identity, self.n_boards, self.mode)
        self._configure()

    def _configure(self) -> None:
        resolution: dict[tuple[int, int], int] = {}
        for board, dac in self._used_dacs():
            bits = resolution[(board, dac)] = self.dac(board, dac).resolution
            if bits not in RESOLUTIONS:
                command = CurrentDac.resolution.query.format(ch=DAC_ID.format(board=board, dac=dac))  # type: ignore
                raise self._reply_error(command, f"resolution {bits}, expected 12 or 16")
        self._max_code = np.array([2 ** resolution[(b, d)] - 1 for b, d, _ in self._addresses])
        if self.mode == "current":
            self._spans = np.array([current_span_for(lim * 1e3) for lim in self._limit])
            self._full_scale = np.array([CURRENT_SPANS_MA[s] * 1e-3 for s in self._spans])
        else:
            self._spans = np.array([voltage_span_for(lim) for lim in self._limit])
            self._full_scale = np.array([VOLTAGE_SPANS_V[s][1] for s in self._spans])
        # Spans before any code: a code is only ever latched in the span chosen here. Written first, the zero
        # codes would be applied by the first update in whatever span the DAC holds (mid-scale of a unipolar
        # voltage span left by someone else is 2.5 or 5 V, not 0 V; and the 0adb0d3 firmware updates on every
        # CODE). The firmware itself orders them so: LTC2662::init() writes the span, then update_all(); and its
        # CURR conversion uses the span it holds (current_ma_to_code reads span_[channel]). One LDAC then
        # applies spans and zero codes together.
        everything = np.arange(self.n_channels)
        self._write_spans()
        self._write_codes(everything, self._zero_codes())
        self._ack(LOAD_ALL)
        self._commanded[:] = self._code_values(everything, self._zero_codes())

    def _identify_at_connect(self) -> Identity:
        """``*IDN?``, skipping a start-up banner; sent again once if the firmware was still starting (it flushes
        its input before the prompt)."""
        for attempt in range(1, self.connect_attempts + 1):
            with self.transport.transaction():
                self.transport.write(IDN_QUERY)
                try:
                    for _ in range(MAX_SKIPPED_LINES):
                        line = self._clean(self._read_line(IDN_QUERY), IDN_QUERY)
                        if line is None:
                            continue
                        try:
                            identity = parse_idn(line)
                        except ValueError:
                            log.debug("%s: skipping %r while waiting for the *IDN? reply", self.name, line)
                            continue
                        if identity.maker.lower() != "greymatter":
                            raise self._reply_error(IDN_QUERY, f"not a greymatter controller: {line!r}")
                        return identity
                except InstrumentTimeout:
                    if attempt == self.connect_attempts:
                        raise
                    log.info("%s: no *IDN? reply yet (controller starting?), asking again", self.name)
                    continue
            raise self._reply_error(IDN_QUERY, f"no *IDN? reply among {MAX_SKIPPED_LINES} lines")
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_spans(self) -> None:
        """``SPAN:ALL`` for a DAC whose outputs share one span, ``CH<c>:SPAN`` otherwise."""
        for board, dac in self._used_dacs():
            members = [k for k, (b, d, _) in enumerate(self._addresses) if (b, d) == (board, dac)]
            spans = {int(self._spans[k]) for k in members}
            if len(spans) == 1:
                self.dac(board, dac).span_all = spans.pop()
            else:
                for k in members:
                    self.output(k).span = int(self._spans[k])

    # -- codes -------------------------------------------------------------------------------------------------------
    def _codes(self, chans: np.ndarray, values_si: np.ndarray) -> np.ndarray:
        """Codes as the firmware computes them: floor(fraction × max_code + 0.5)."""
        if self.mode == "current":
            fraction = values_si / self._full_scale[chans]
        else:
            fraction = (values_si + self._full_scale[chans]) / (2.0 * self._full_scale[chans])
        return np.floor(fraction * self._max_code[chans] + 0.5).astype(int)

    def _code_values(self, chans: np.ndarray, codes: np.ndarray) -> np.ndarray:
        fraction = codes / self._max_code[chans]
        if self.mode == "current":
            return fraction * self._full_scale[chans]
        return (2.0 * fraction - 1.0) * self._full_scale[chans]

    def _zero_codes(self) -> np.ndarray:
        """0 mA is code 0; 0 V is mid-scale of the bipolar spans."""
        if self.mode == "current":
            return np.zeros(self.n_channels, dtype=int)
        return np.floor(self._max_code / 2.0 + 0.5).astype(int)

    def _write_codes(self, chans: np.ndarray, codes: np.ndarray) -> None:
        for k, code in zip(chans, codes):
            self.output(int(k)).code = int(code)

    # -- line handling -------------------------------------------------------------------------------------------
    def _reply_error(self, command: str | None, message: str) -> InstrumentReplyError:
        return InstrumentReplyError(message, instrument=self.name, address=self.address, command=command)

    def _read_line(self, command: str) -> str:
        try:
            return self.transport.read_line()
        except InstrumentError as exc:
            if exc.command is None and not isinstance(exc, InstrumentReportedError):
                raise type(exc)(exc.detail, instrument=self.name, address=self.address, command=command) from exc
            raise

    @staticmethod
    def _clean(raw: str, command: str) -> str | None:
        """The reply text, or None for console noise: an empty line, a bare prompt, the echo of ``command``."""
        line = raw.strip()
        while line.startswith(PROMPT):
            line = line[len(PROMPT):].lstrip()
        if not line or line.upper() == command.strip().upper():
            return None
        return line

    def query(self, command: str) -> str:
        """Send ``command`` and return its reply line; ``ERROR:<reason>`` raises naming the command."""
        with self.transport.transaction():
            self.transport.write(command)
            for _ in range(MAX_SKIPPED_LINES):
                line = self._clean(self._read_line(command), command)
                if line is None:
                    continue
                if line.upper().startswith(ERROR_PREFIX):
                    reason = line[len(ERROR_PREFIX):].lstrip(":").strip()
                    raise InstrumentReportedError(f"controller refused it: {reason}", errors=[(-1, reason)],
                                                  instrument=self.name, address=self.address, command=command)
                return line
        raise self._reply_error(command, f"no reply among {MAX_SKIPPED_LINES} lines of console output")

    def write(self, command: str) -> None:
        """Every greymatter command answers, so a write is a set with its ``OK`` checked."""
        self._ack(command)

    def _ack(self, command: str) -> None:
        self.check_ack(command, self.query(command), OK)

    # -- HeaterDriver ------------------------------------------------------------------------------------------------
    def _validated(self, values: Any, channels: Any) -> tuple[np.ndarray, np.ndarray]:
        """The whole request checked before anything is written."""
        unit = "A" if self.mode == "current" else "V"

        def describe(ch: int) -> str:
            board, dac, out = self._addresses[ch]
            return f"board {board} DAC{dac} CH{out}"

        return validate_heater_request(self.name, values, channels, self.n_channels, self._limit, unit, describe)

    def set_drive(self, values: np.ndarray, channels: np.ndarray | None = None) -> None:
        """Amps (current mode) or volts (voltage mode) on ``channels`` (all when None), changing together.

        Sends ``BOARD<n>:DAC<m>:CH<c>:CODE <code>`` per channel, then one ``LDAC`` (see the module docstring).
        """
        chans, vals = self._validated(values, channels)
        codes = self._codes(chans, vals)
        with self.transport.transaction():
            self._write_codes(chans, codes)
            self._ack(LOAD_ALL)
        self._commanded[chans] = self._code_values(chans, codes)

    def lines_for(self, channels: np.ndarray) -> int:
        """Lines that write ``channels``: one ``CODE`` per channel and one ``LDAC`` that applies them together (the
        user guide has no multi-channel value command; ``SPAN:ALL`` sets spans, not values)."""
        return int(np.unique(np.ravel(channels)).size) + 1

    def read_drive(self) -> np.ndarray:
        """The drive last commanded on every channel (A or V), quantised to the codes written.

        **Not measured**: the controller has no output read-back. Connect zeroes every output, so this is the
        true commanded state as long as nothing else talks to the controller.
        """
        return self._commanded.copy()

    def read_power_w(self) -> np.ndarray | None:
        """None: the controller measures neither voltage nor current."""
        return None

    def safe_state(self) -> None:
        """Every owned output to zero (code 0, or mid-scale = 0 V), then ``LDAC``.

        Each line is attempted even if one fails; the first failure is raised at the end.
        """
        failures: list[InstrumentError] = []
        zero = self._zero_codes()
        for k in range(self.n_channels):
            try:
                self.output(k).code = int(zero[k])
            except InstrumentError as exc:
                failures.append(exc)
        try:
            self._ack(LOAD_ALL)
        except InstrumentError as exc:
            failures.append(exc)
        if failures:
            log.error("%s: safe state incomplete (%d failures): %s", self.name, len(failures), failures[0])
            raise failures[0]
        self._commanded[:] = self._code_values(np.arange(self.n_channels), zero)

    # -- identity and errors -------------------------------------------------------------------------------------
    def identity(self) -> Identity:
        return self.query_parsed(IDN_QUERY, parse_idn)

    def _snapshot_extra(self) -> dict[str, Any]:
        """Resolutions are read back (``RES?``); spans and drive are what the driver wrote: the firmware has no
        output or span read-back, so they are labelled as commanded."""
        return {
            "mode": self.mode,
            "resolution_bits": {DAC_ID.format(board=b, dac=d): self.dac(b, d).resolution
                                for b, d in self._used_dacs()},
            "commanded": {"spans": self._spans.tolist(), "span_full_scale": self.span_full_scale().tolist(),
                          "drive": self.read_drive().tolist(), "unit": "A" if self.mode == "current" else "V",
                          "read_back": False},
            "limits": self.max_drive().tolist(),
        }

    def reset(self) -> None:
        """``*RST`` (every DAC re-initialised, spans back to their power-on value), then the driver's own
        configuration again: resolutions, zeroed outputs, spans."""
        self._ack(RESET)
        self._configure()

    def read_queue(self) -> list[tuple[int, str]]:
        """``SYST:ERR?`` until it answers ``0`` (bounded, so a stuck queue cannot hang a run)."""
        errors: list[tuple[int, str]] = []
        for _ in range(50):
            code, message = self.query_parsed(ERROR_QUERY, parse_scpi_error)
            if code == 0:
                return errors
            errors.append((code, message))
        raise InstrumentReportedError(f"error queue did not empty: {errors[-3:]}", errors=errors,
                                      instrument=self.name, address=self.address, command=ERROR_QUERY)

    def read_faults(self) -> list[tuple[int, str]]:
        """``FAULT?``: ``OK`` or ``FAULT:0xNNNNNN``, decoded to (bit, "fault on board b DACd …") entries."""
        reply = self.query(FAULT_QUERY)
        if reply.upper() == OK:
            return []
        if reply.upper() == FAULT_UNLOCATED:
            return [(-1, "fault line active (single-board firmware cannot tell which DAC)")]
        match = FAULT_REPLY.fullmatch(reply)
        if not match:
            raise self._reply_error(FAULT_QUERY, f"expected 'OK' or 'FAULT:0xNNNNNN', got {reply!r}")
        mask = int(match.group(1), 16)
        if mask == 0:
            raise self._reply_error(FAULT_QUERY, f"fault reply {reply!r} names no DAC")
        return [(3 * board + dac, f"fault on board {board} DAC{dac} ({'voltage' if dac == VOLTAGE_DAC else 'current'}"
                                  " DAC: open circuit, over-temperature or power limit)")
                for board, dac in decode_faults(mask)]

    def read_errors(self) -> list[tuple[int, str]]:
        """Queue entries, then faults (both drained/read; empty when clean)."""
        return self.read_queue() + self.read_faults()

    def check_errors(self) -> None:
        """Raise :class:`InstrumentReportedError` for queued errors or active DAC faults."""
        queue = self.read_queue()
        if queue:
            text = "; ".join(f"{code}: {message}" for code, message in queue)
            raise InstrumentReportedError(f"controller reported {text}", errors=queue, instrument=self.name,
                                          address=self.address, command=ERROR_QUERY)
        faults = self.read_faults()
        if faults:
            raise InstrumentReportedError("; ".join(message for _, message in faults), errors=faults,
                                          instrument=self.name, address=self.address, command=FAULT_QUERY)
