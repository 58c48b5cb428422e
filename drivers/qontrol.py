"""Qontrol Q8iv / Q8b / Q8a / Q8bi heater drivers: 8-channel voltage/current sources daisy-chained on BP8 backplanes.

Protocol (instruments.md §3.1, the qontrol 1.1.20 library and the recorded ``progs/*.json`` traffic):

* USB serial (FTDI), **115200 baud 8N1, no flow control**, ASCII lines ending in LF both ways.
* ``<CMD><ch><op><value>``: ``op`` is ``=`` (set) or ``?`` (get); ``ch`` counts **globally across the daisy
  chain** (8..15 is the second module). Every set answers ``OK`` (one capture shows a leading ACK byte, ``\\x06OK``,
  accepted everywhere) or an error line ``E<code>:<ch>`` matching ``[A-Za-z]{1,3}(\\d+):(\\d+)``. Error lines can
  also arrive on their own (over-current, power-up). There is no ``*IDN?`` and no error queue.
* ``I<ch>=`` takes **milliamps** and current replies are in mA (``+0.0204 mA``); the driver speaks amps and
  converts at the wire.

Numbers are written with four decimals (``V3=1.2346``, ``I3=20.0000`` mA): the resolution the module reports in
its replies, and short enough that a module's ``VVEC`` line (8 values) stays well clear of the ``E14`` buffer
overflow seen with a 16-value line.

Multi-line replies: ``VALL?``, ``IALL?``, ``VMAXALL?``, ``IMAXALL?`` and ``VIPALL?`` answer one line per channel,
so the driver reads exactly ``n_channels`` lines. ``nupall?`` (chain enumeration) and ``log?`` answer an unknown
number of lines, so the driver reads the first line with the normal timeout and the rest until the line stays
quiet for ``quiet_s`` (the library's 50 ms inter-message gap), see :func:`read_until_quiet`.

Staying in step. The modules answer every line in order but have no echo and no sequence number, so a reply that
arrives after the 0.2 s timeout would otherwise be read as the answer to the next command (``V4?`` returning V3's
value, and so on for as long as commands keep coming). The qontrol library only reads whatever is waiting before
each command (``issue_command`` calls ``receive()`` first), which does not help when the late line comes after the
next command went out. This driver therefore, after any timeout or any reply line that cannot be an answer to the
command sent (:func:`reply_shape`: ``OK`` for a set, ``<number> V`` for ``V<ch>?``, ...):

1. drains the line until it stays quiet for ``quiet_s`` (error lines are kept for :meth:`Qontrol.check_errors`);
2. confirms with a query whose answer is known since connect (``id?``, or ``vfull?`` when ``id?`` itself failed),
   discarding every line up to that answer; a unit that never gives it raises
   :class:`~labctl.drivers.errors.InstrumentConnectionError` (reconnect);
3. sends the command again, ``retries`` times at most (default once): every command the driver sends is a query
   or an absolute set (``V3=1.2000``, ``VVEC0=...``, ``nup=0``), so repeating it is harmless. When the retries
   are spent, the last failure is raised, with the line already back in step.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from labctl.drivers import recoveries
from labctl.drivers.clock import Clock
from labctl.drivers.errors import (
    InstrumentConnectionError,
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
from labctl.drivers.parsing import Identity, parse_int, parse_with_unit
from labctl.drivers.transport import BaseTransport, TransportSettings
from labctl.drivers.validators import Range

log = logging.getLogger(__name__)

# -- command set (instruments.md §3.1; per-channel V/I/VMAX/IMAX are the Settings of QontrolChannel) ------------
NUP_RESET = "nup=0"          # reset chain enumeration -> OK (possibly "\x06OK")
CHAIN_QUERY = "nupall?"      # one line per module: "Q8iv-0001: 0", "Q8iv-****: 1"
CHAIN_QUERY_OLD = "nup?"     # same answer; the library falls back to it when nupall? is not recognised
ID_QUERY = "id?"             # "Q8iv-0001"
FIRMWARE_QUERY = "firmware?"  # "v2.4.1"
NCHAN_QUERY = "nchan?"       # "8"
VFULL_QUERY = "vfull?"       # "+12.0000 V"
IFULL_QUERY = "ifull?"       # "+24.0000 mA"
VALL_QUERY = "VALL?"         # one "+0.2077 V" line per channel
IALL_QUERY = "IALL?"         # one "+0.0204 mA" line per channel
VMAXALL_QUERY = "VMAXALL?"   # one "+12.0000 V" line per channel
IMAXALL_QUERY = "IMAXALL?"   # one "+24.0000 mA" line per channel
VIPALL_QUERY = "VIPALL?"     # one "0,0: +0.2082 V, -0.0037 mA[, 4.5130 mW, 9 Ohm]" line per channel
LOG_QUERY = "log?"           # error history, "#  0, E00:01, 2 m ago"
VVEC_SET = "VVEC{start}={values}"  # consecutive channels of ONE module in one line (the library's set_all_values)
IVEC_SET = "IVEC{start}={values}"  # the same for currents in mA (library set_all_values('I'), anchors.md §5)
VALUE_FORMAT = "{:.4f}"

OK = "OK"
#: Most lines read while looking for the known answer during a resynchronisation (a full multi-line reply or two).
RESYNC_MAX_LINES = 256
#: Bytes the modules may put in front of a reply (ACK seen before OK; NUL before chain entries, per the library).
LEADING_NOISE = "\x06\x00"
ERROR_LINE = re.compile(r"[A-Za-z]{1,3}(\d+):(\d+)")
CHAIN_LINE = re.compile(r"(?P<model>[A-Za-z]\w*?)-(?P<serial>[0-9A-Fa-f*]+)\s*:\s*(?P<index>\d+)")
DEVICE_ID = re.compile(r"(?P<model>[A-Za-z]\w*?)-(?P<serial>[0-9A-Fa-f*]+)")
VIP_LINE = re.compile(
    r"(?P<module>\d+)\s*,\s*(?P<port>\d+)\s*:\s*(?P<v>[+-]?\d+(?:\.\d*)?)\s*V\s*,\s*(?P<i>[+-]?\d+(?:\.\d*)?)\s*mA"
    r"(?:\s*,\s*(?P<p>[+-]?\d+(?:\.\d*)?)\s*mW(?:\s*,\s*(?P<r>\S+)\s*Ohm)?)?")

#: Full scale per module type, (volts, amps): the qontrol library's DEVICE_PROPERTIES table.
FULL_SCALE: dict[str, tuple[float, float]] = {
    "Q8iv": (12.0, 24.0e-3),
    "Q8b": (12.0, 83.333333e-3),
    "Q8a": (12.0, 100.0e-3),
    "Q8bi": (12.0, 100.0e-3),
}

#: Documented error codes (the library's COMMON_ERRORS and Qx_ERRORS, plus 20 from the Mx table).
ERROR_MESSAGES: dict[int, str] = {
    0: "unknown error",
    1: "over-voltage on channel {ch}",
    2: "over-current on channel {ch}",
    3: "power error on channel {ch}",
    4: "calibration error",
    5: "output error on channel {ch}",
    10: "unrecognised command",
    11: "unrecognised input parameter",
    12: "unrecognised channel {ch}",
    13: "operation forbidden",
    14: "serial buffer overflow",
    15: "serial communication error",
    16: "command timed out (internal)",
    17: "SPI error",
    18: "ADC error",
    19: "I2C error",
    20: "interlock triggered on channel {ch}",
    30: "too many errors, some were suppressed",
    31: "firmware trap",
    90: "powered up (after connect: a module reset, outputs at 0 V, limits at full scale)",
}
ERROR_COMMS = 15
ERROR_UNRECOGNISED = 10
NOTICE_POWERED_UP = 90


def describe_error(code: int, ch: int) -> str:
    """Human text for ``E<code>:<ch>`` (the ``ch`` field is a sub-code for 14 and 15)."""
    text = ERROR_MESSAGES.get(code, "unrecognised error code").format(ch=ch)
    if code == 14:
        text += {0: " (instruction buffer)", 1: " (single instruction too long)"}.get(ch, "")
    elif code == ERROR_COMMS:
        text += {0: " (overflow)", 1: " (framing)"}.get(ch % 10, "")
    return f"E{code:02d}:{ch:02d} {text}"


def clean_line(line: str) -> str:
    """A reply line without surrounding whitespace and leading ACK/NUL bytes."""
    return line.strip().lstrip(LEADING_NOISE).strip()


_NUMBER = r"[+-]?\d+(?:\.\d*)?"
_VOLTS = re.compile(rf"{_NUMBER}\s*V")
_MILLIAMPS = re.compile(rf"{_NUMBER}\s*mA")
_REPLY_SHAPES: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (re.compile(r"[A-Za-z]+\d*=.*"), re.compile(re.escape(OK))),               # every set answers OK
    (re.compile(r"(?i)(vmax|v)\d+\?|vfull\?|vall\?|vmaxall\?"), _VOLTS),
    (re.compile(r"(?i)(imax|i)\d+\?|ifull\?|iall\?|imaxall\?"), _MILLIAMPS),
    (re.compile(r"(?i)vipall\?"), VIP_LINE),
    (re.compile(r"(?i)id\?"), DEVICE_ID),
    (re.compile(r"(?i)nupall\?|nup\?"), CHAIN_LINE),
    (re.compile(r"(?i)nchan\?"), re.compile(r"\d+")),
    (re.compile(r"(?i)firmware\?"), re.compile(r"\S+")),
)


#: VALUE_FORMAT as a printf-style conversion ("{:.4f}" -> "%.4f": the same digits for every float, and one ``%``
#: over a line's values costs half of one ``str.format``)
_VALUE_PRINTF = "%" + VALUE_FORMAT[2:-1]


@functools.lru_cache(maxsize=512)
def _vector_format(template: str, start: int, n: int) -> str:
    """A vector line of ``n`` values from channel ``start`` as one printf-style string (each value as VALUE_FORMAT):
    one ``%`` per line."""
    return template.format(start=start, values=",".join([_VALUE_PRINTF] * n))


def reply_shape(command: str) -> re.Pattern[str] | None:
    """The form every reply line to ``command`` must have (None: any line, e.g. ``log?``)."""
    text = command.strip()
    header, equals, rest = text.partition("=")
    if equals and "\n" not in rest:
        # a set: of the patterns only the first can match a line with "=", and its ".*" matches any rest without a
        # newline, so the header decides (one look-up per distinct header, not a match per value line)
        return _shape_of(header + "=")
    return _shape_of(text)


@functools.lru_cache(maxsize=256)
def _shape_of(text: str) -> re.Pattern[str] | None:
    for pattern, shape in _REPLY_SHAPES:
        if pattern.fullmatch(text):
            return shape
    return None


def read_until_quiet(transport: BaseTransport, quiet_s: float) -> list[str]:
    """Lines that arrive until the line stays quiet for ``quiet_s`` (for replies of unknown length)."""
    return transport.pending_lines(quiet_s)


def waiting_lines(transport: BaseTransport, quiet_s: float) -> list[str]:
    """Lines already received and not yet read (asynchronous error lines), without waiting for new ones.

    Where the backend cannot tell how many bytes wait (``bytes_waiting()`` is None), the line is listened to for
    ``quiet_s``; where it says 0 (pyvisa-sim never speaks unasked), nothing is read.
    """
    waiting = transport.bytes_waiting()
    if waiting == 0:
        return []
    return transport.pending_lines(0.0 if waiting else quiet_s)


class _DriveSetting(LimitedSetting):
    """A drive setting also held to the channel's limit configured at connect (not only the hardware range)."""

    def __init__(self, *args: Any, kind: DriveMode, to_si: float, **kwargs: Any) -> None:
        super().__init__(*args, to_si=to_si, limit_args={"kind": kind}, **kwargs)


class QontrolChannel(Channel):
    """One output; ``{ch}`` is the global channel number across the chain."""

    # Limits are declared first on purpose: pyvisa-sim parses a setter's channel id as free text, so in the
    # generated simulation "V{ch}=" would also swallow "VMAX5=…" if it were tried first.
    vmax_v = Setting("VMAX{ch}?", "VMAX{ch}={value:.4f}", "Firmware voltage limit of the channel.",
                     parse=parse_with_unit("V"), validator=Range(0.0, 12.0, " V"), reply="{:+.4f} V",
                     default=12.0, unit="V", ack=OK)
    imax_ma = Setting("IMAX{ch}?", "IMAX{ch}={value:.4f}", "Firmware current limit of the channel, in mA.",
                      parse=parse_with_unit("mA"), validator=Range(0.0, 100.0, " mA"), reply="{:+.4f} mA",
                      default=24.0, unit="mA", ack=OK)
    voltage_v = _DriveSetting("V{ch}?", "V{ch}={value:.4f}", "Output voltage (switches the channel to voltage "
                              "drive).", parse=parse_with_unit("V"), validator=Range(0.0, 12.0, " V"),
                              reply="{:+.4f} V", default=0.0, unit="V", ack=OK, kind="voltage", to_si=1.0)
    current_ma = _DriveSetting("I{ch}?", "I{ch}={value:.4f}", "Output current in mA, the instrument's unit "
                               "(switches the channel to current drive).", parse=parse_with_unit("mA"),
                               validator=Range(0.0, 100.0, " mA"), reply="{:+.4f} mA", default=0.0, unit="mA",
                               ack=OK, kind="current", to_si=1e-3)

    def __init__(self, parent: Qontrol, index: int) -> None:
        super().__init__(parent, index)
        self.index = index
        self.parent: Qontrol = parent

    @property
    def current_a(self) -> float:
        """Output current in amps (``I<ch>?`` answers mA)."""
        return self.current_ma * 1e-3

    @current_a.setter
    def current_a(self, value: float) -> None:
        self.current_ma = float(value) * 1e3


@dataclass(frozen=True)
class QontrolModule:
    """One module of the daisy chain, as enumerated by ``nupall?``."""

    index: int
    model: str
    serial: str
    first_channel: int
    n_channels: int
    full_scale_v: float
    full_scale_a: float

    @property
    def channels(self) -> range:
        return range(self.first_channel, self.first_channel + self.n_channels)


class _CommsRetry(Exception):
    """Internal: the module answered E15 (serial comms error); the command is sent once more."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


class Qontrol(Instrument):
    """A chain of Qontrol Q8-family modules as one :class:`~labctl.drivers.interfaces.HeaterDriver`.

    Connecting enumerates the chain, checks the full scale, then **sets and reads back** the firmware limits
    ``VMAX``/``IMAX`` of the channels in ``used_channels`` (all channels when None) from ``max_voltage_v``/
    ``max_current_a`` (per channel or scalar; default: the module full scale) and refuses to continue if the
    read-back differs, so the limits the bench believes in are the ones the firmware enforces. Channels outside
    ``used_channels`` keep the limits someone else may have set for them: they are read back, never rewritten.

    Connect sequence: ``nup=0``, ``nupall?`` (``nup?`` if unrecognised), ``id?``, ``nchan?``, ``vfull?``,
    ``ifull?``, ``VMAX<ch>=`` and ``IMAX<ch>=`` for every used channel, ``VMAXALL?``, ``IMAXALL?``. Current mode
    writes ``I<ch>=``/``IVEC`` in mA; ``IVEC`` comes from the library's ``set_all_values`` (the recordings show
    ``VVEC`` only). ``retries`` bounds how often a command is sent again after the line lost step (module
    docstring).
    """

    label: ClassVar[str] = "qontrol"
    #: How long the known-answer query of a resynchronisation may take, s (ten reply timeouts).
    resync_timeout_s: ClassVar[float] = 2.0
    line_settings: ClassVar[TransportSettings] = TransportSettings(
        write_termination="\n", read_termination="\n", timeout_s=0.2, retries=0, baud_rate=115200)

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None, mode: DriveMode = "voltage",
                 max_voltage_v: float | Sequence[float] | np.ndarray | None = None,
                 max_current_a: float | Sequence[float] | np.ndarray | None = None,
                 quiet_s: float = 0.05, used_channels: Sequence[int] | np.ndarray | None = None,
                 retries: int = 1) -> None:
        if mode not in ("voltage", "current"):
            raise ValueError(f"mode must be 'voltage' or 'current', got {mode!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.mode: DriveMode = mode
        self.quiet_s = quiet_s
        self.retries = int(retries)
        self._used_request = None if used_channels is None else [int(c) for c in np.ravel(used_channels)]
        self.used_channels: np.ndarray = np.zeros(0, dtype=int)
        #: (query, reply) pairs whose answer is known since connect: how the driver confirms it is back in step.
        self._known_answers: list[tuple[str, str]] = []
        self.modules: list[QontrolModule] = []
        self.n_channels = 0
        self.device_id = ""
        self._errors: list[tuple[int, str]] = []
        #: A module reset seen after connect (E90), or None (see :meth:`_note_reset`).
        self.reset_seen: str | None = None
        self._vmax_v = np.zeros(0)
        self._imax_a = np.zeros(0)
        #: Module of every channel (index into ``modules``), for splitting vector writes.
        self._module_index = np.zeros(0, dtype=int)
        #: channel set (bytes of the int array) -> write order and runs (:meth:`_runs`)
        self._run_cache: dict[bytes, tuple[np.ndarray, list[tuple[int, int, int]]]] = {}
        super().__init__(resource, resource_manager=resource_manager, name=name, timeout_s=timeout_s,
                         clock=clock)
        try:
            self._connect(max_voltage_v, max_current_a)
        except Exception:
            self.transport.close()
            raise

    # -- connect -------------------------------------------------------------------------------------------------
    def _connect(self, max_voltage_v: Any, max_current_a: Any) -> None:
        self._collect_waiting()  # start-up lines (E90 powered up) before the first command
        self._ack(NUP_RESET)
        self.modules = self._enumerate_chain()
        self.n_channels = sum(m.n_channels for m in self.modules)
        self._module_index = np.concatenate([np.full(m.n_channels, m.index) for m in self.modules])
        self._run_cache.clear()
        self.device_id = self.query(ID_QUERY)
        match = DEVICE_ID.fullmatch(self.device_id)
        top = self.modules[0]
        if not match or match["model"] != top.model:
            raise self._reply_error(ID_QUERY, f"expected '{top.model}-<serial>' (module 0 of the chain), got "
                                              f"{self.device_id!r}")
        self._known_answers = [(ID_QUERY, self.device_id)]
        # nchan? is recorded from a single module only ("8") [?]: accept the per-module or the chain total
        nchan = self.query_parsed(NCHAN_QUERY, parse_int)
        if nchan not in (top.n_channels, self.n_channels):
            raise self._reply_error(NCHAN_QUERY, f"{nchan} channels, but the chain enumerated {top.n_channels} "
                                                 f"per module and {self.n_channels} in total")
        vfull_line = self.query(VFULL_QUERY)
        vfull = self.parse_reply(VFULL_QUERY, vfull_line, parse_with_unit("V"))
        self._known_answers.append((VFULL_QUERY, vfull_line))
        ifull_a = self.query_parsed(IFULL_QUERY, parse_with_unit("mA")) * 1e-3
        for command, got, table in ((VFULL_QUERY, vfull, top.full_scale_v), (IFULL_QUERY, ifull_a, top.full_scale_a)):
            if not math.isclose(got, table, rel_tol=1e-3):
                raise self._reply_error(command, f"full scale {got:g} does not match the {top.model} table value "
                                                 f"{table:g}")
        self._apply_limits(max_voltage_v, max_current_a)
        log.info("%s: %d module(s) %s, %d channels, %s mode", self.name, len(self.modules),
                 [f"{m.model}-{m.serial}" for m in self.modules], self.n_channels, self.mode)

    def _enumerate_chain(self) -> list[QontrolModule]:
        command = CHAIN_QUERY
        try:
            lines = self._exchange(command, None)
        except InstrumentReportedError as exc:
            if not any(code == ERROR_UNRECOGNISED for code, _ in exc.errors):
                raise
            log.info("%s: %s not recognised, falling back to %s", self.name, CHAIN_QUERY, CHAIN_QUERY_OLD)
            command = CHAIN_QUERY_OLD
            lines = self._exchange(command, None)
        modules: list[QontrolModule] = []
        first = 0
        for position, line in enumerate(lines):
            match = CHAIN_LINE.fullmatch(line)
            if not match:
                raise self._reply_error(command, f"expected '<model>-<serial>: <index>', got {line!r}")
            model, index = match["model"], int(match["index"])
            if index != position:
                raise self._reply_error(command, f"module {line!r} reports chain index {index}, expected {position}")
            if model not in FULL_SCALE:
                raise self._reply_error(command, f"unsupported module type {model!r} (known: {sorted(FULL_SCALE)})")
            digits = re.search(r"\d+", model)
            assert digits is not None  # every FULL_SCALE key carries its channel count
            n = int(digits.group())
            volts, amps = FULL_SCALE[model]
            modules.append(QontrolModule(index, model, match["serial"], first, n, volts, amps))
            first += n
        if not modules:
            raise self._reply_error(command, "no module enumerated")
        return modules

    def _limits(self, value: Any, full: np.ndarray, what: str, unit: str, used: np.ndarray) -> np.ndarray:
        """Per-channel limits from a scalar or a vector, each used one within [0, module full scale]."""
        if value is None:
            return full.copy()
        limits = np.broadcast_to(np.asarray(value, dtype=float), full.shape).copy() if np.ndim(value) == 0 \
            else np.asarray(value, dtype=float)
        if limits.shape != full.shape:
            raise LimitError(f"{self.name} {what}: {limits.size} values for {full.size} channels")
        bad = ~np.isfinite(limits) | (limits < 0) | (limits > full)
        for ch in used[bad[used]]:
            raise LimitError(f"{self.name} {what}[{ch}]: {limits[ch]:g} {unit} is outside [0, {full[ch]:g}] {unit} "
                             "(module full scale)")
        return limits

    def _used(self) -> np.ndarray:
        """The channels this driver may configure (``used_channels``, checked against the chain)."""
        if self._used_request is None:
            return np.arange(self.n_channels)
        used = np.array(sorted(set(self._used_request)), dtype=int)
        if used.size != len(self._used_request):
            raise LimitError(f"{self.name} used_channels: a channel appears twice in {self._used_request}")
        for ch in used[(used < 0) | (used >= self.n_channels)]:
            raise LimitError(f"{self.name} used_channels: channel {ch} does not exist (0..{self.n_channels - 1})")
        return used

    def _apply_limits(self, max_voltage_v: Any, max_current_a: Any) -> None:
        full_v = np.concatenate([np.full(m.n_channels, m.full_scale_v) for m in self.modules])
        full_a = np.concatenate([np.full(m.n_channels, m.full_scale_a) for m in self.modules])
        self.used_channels = used = self._used()
        vmax = self._limits(max_voltage_v, full_v, "max_voltage_v", "V", used)
        imax = self._limits(max_current_a, full_a, "max_current_a", "A", used)
        # No bulk VMAX/IMAX set is documented, so one line per used channel; read-back uses the bulk queries.
        for ch in used:
            self.channel(int(ch)).vmax_v = float(vmax[ch])
        for ch in used:
            self.channel(int(ch)).imax_ma = float(imax[ch]) * 1e3
        self._vmax_v = self._read_all(VMAXALL_QUERY, "V", 1.0, full_v)
        self._imax_a = self._read_all(IMAXALL_QUERY, "mA", 1e-3, full_a)
        for command, got, wanted, full, unit in ((VMAXALL_QUERY, self._vmax_v, vmax, full_v, "V"),
                                                 (IMAXALL_QUERY, self._imax_a, imax, full_a, "A")):
            tolerance = full / 65535.0 + (1e-4 if unit == "V" else 1e-7)  # one DAC step plus the last digit
            for ch in used[np.abs(got[used] - wanted[used]) > tolerance[used]]:
                raise self._reply_error(command, f"channel {ch} limit reads back {got[ch]:g} {unit}, "
                                                 f"{wanted[ch]:g} {unit} was set; refusing to continue")

    # -- line handling -------------------------------------------------------------------------------------------
    def _reply_error(self, command: str | None, message: str) -> InstrumentReplyError:
        return InstrumentReplyError(message, instrument=self.name, address=self.address, command=command)

    def _reported(self, command: str | None, errors: list[tuple[int, str]]) -> InstrumentReportedError:
        text = "; ".join(message for _, message in errors)
        return InstrumentReportedError(f"module reported {text}", errors=errors, instrument=self.name,
                                       address=self.address, command=command)

    def _read_line(self, command: str) -> str:
        try:
            return self.transport.read_line()
        except InstrumentError as exc:
            if exc.command is None and not isinstance(exc, InstrumentReportedError):
                raise type(exc)(exc.detail, instrument=self.name, address=self.address, command=command) from exc
            raise

    def _error_of(self, line: str) -> tuple[int, int] | None:
        match = ERROR_LINE.fullmatch(line)
        return (int(match.group(1)), int(match.group(2))) if match else None

    def _collect_waiting(self) -> None:
        """Read lines that arrived unasked; error lines are kept for :meth:`check_errors`, the rest logged.
        (:func:`waiting_lines` inline: it runs before every command.)"""
        waiting = self.transport.bytes_waiting()
        if waiting == 0:
            return
        for raw in self.transport.pending_lines(0.0 if waiting else self.quiet_s):
            self._discard(raw, "(arrived unasked)")

    def _take(self, command: str, raw: str) -> str | None:
        """One reply line: None for a power-up notice, raises for an error line, E15 asks for a retry."""
        line = raw.strip().lstrip(LEADING_NOISE).strip()  # clean_line inline (every reply line passes here)
        if ":" not in line:  # no error line (ERROR_LINE needs its colon): the common case, without the regex
            return line
        error = self._error_of(line)
        if error is None:
            return line
        if error[0] == NOTICE_POWERED_UP and not self._known_answers:
            log.info("%s: %s", self.name, describe_error(*error))
            return None
        # after connect, a power-up notice means a module reset: outputs at 0 V and VMAX/IMAX back at full scale,
        # so the drive the bench believes in and the firmware backstop are both gone: an error, not a notice
        if error[0] == NOTICE_POWERED_UP:
            self._note_reset(error)
        leftover = read_until_quiet(self.transport, self.quiet_s)  # resynchronise before reporting
        if leftover:
            log.debug("%s: discarded %r after %s", self.name, leftover, line)
        if error[0] == ERROR_COMMS:
            raise _CommsRetry(describe_error(*error))
        raise self._reported(command, [(error[0], describe_error(*error))])

    def _exchange(self, command: str, n_lines: int | None) -> list[str]:
        """Send ``command`` and read ``n_lines`` reply lines, or (None) one line and then lines until quiet.

        Error lines raise :class:`InstrumentReportedError` naming the command; ``E15`` (serial comms error) makes
        the driver send the command once more, as the library does. A timeout, or a line that cannot answer
        ``command`` (:func:`reply_shape`), puts the line back in step (:meth:`resynchronise`) and sends the
        command again, at most ``retries`` times; then the last failure is raised.
        """
        shape = reply_shape(command)
        with self.transport.transaction():
            self._collect_waiting()
            failure: InstrumentError | None = None
            for attempt in range(1 + self.retries):
                if attempt:
                    log.warning("%s: sending %r again (attempt %d of %d)", self.name, command, attempt + 1,
                                1 + self.retries)
                try:
                    lines = self._send_and_read(command, n_lines)
                except InstrumentTimeout as exc:
                    failure = exc
                else:
                    foreign = None
                    if shape is not None:
                        for line in lines:  # (a loop, not a comprehension: no frame of its own per command)
                            if not shape.fullmatch(line):
                                foreign = line
                                break
                    if foreign is None:
                        if failure is not None:
                            recoveries.note(self.name, command, failure.detail,
                                            f"line resynchronised, command sent again (attempt {attempt + 1})")
                        return lines
                    failure = self._reply_error(command, f"reply line {foreign!r} cannot answer {command!r}: "
                                                         "the line was out of step")
                log.warning("%s: %s; resynchronising", self.name, failure.detail)
                self.resynchronise(command)
            assert failure is not None
            raise failure

    def _send_and_read(self, command: str, n_lines: int | None) -> list[str]:
        for attempt in (1, 2):
            self.transport.write(command)
            try:
                return self._read_reply(command, n_lines)
            except _CommsRetry as exc:
                if attempt == 2:
                    raise self._reported(command, [(ERROR_COMMS, exc.line)]) from None
                log.warning("%s: %s on %r, sending it once more", self.name, exc.line, command)
        raise AssertionError("unreachable")  # pragma: no cover

    def resynchronise(self, failed_command: str | None = None) -> None:
        """Bring the line back in step: drain it, then confirm with a query whose answer is known.

        Lines read meanwhile are discarded (error lines are kept for :meth:`check_errors`). The confirming query is
        ``id?`` (``vfull?`` when ``failed_command`` was ``id?``, so that a late ``id?`` reply cannot pass for the
        confirmation). Before connect has learnt these answers, the line is only drained.
        """
        with self.transport.transaction():
            for raw in read_until_quiet(self.transport, self.quiet_s):
                self._discard(raw, "while draining")
            # the start of a line cut short (no terminator will come) would prefix the confirming answer
            self.transport.discard_input()
            failed = (failed_command or "").strip().lower()
            known = [(query, answer) for query, answer in self._known_answers if query.lower() != failed]
            if not known:
                return
            query, answer = known[0]
            self.transport.write(query)
            # a module slow enough to miss one reply may be slow with the next: wait longer than for a reply
            with self.transport.timeout_for(max(self.resync_timeout_s, self.transport.timeout_s)):
                for _ in range(RESYNC_MAX_LINES):
                    try:
                        line = clean_line(self.transport.read_line())
                    except InstrumentTimeout:
                        raise InstrumentConnectionError(
                            f"lost step with the modules: no answer to {query!r} within {self.transport.timeout_s:g} "
                            "s while resynchronising; reconnect",
                            instrument=self.name, address=self.address, command=query) from None
                    if line == answer:
                        log.info("%s: back in step (%r answered %r)", self.name, query, answer)
                        return
                    self._discard(line, f"before the answer to {query!r}")
            raise InstrumentConnectionError(
                f"lost step with the modules: {RESYNC_MAX_LINES} lines without the answer {answer!r} to {query!r}; "
                "reconnect", instrument=self.name, address=self.address, command=query)

    def _discard(self, raw: str, when: str) -> None:
        line = clean_line(raw)
        error = self._error_of(line)
        if error is None:
            if line:
                log.warning("%s: discarding %r %s", self.name, line, when)
        elif error[0] == NOTICE_POWERED_UP and not self._known_answers:
            log.info("%s: %s", self.name, describe_error(*error))
        elif error[0] == NOTICE_POWERED_UP:
            self._note_reset(error)
            log.error("%s: %s %s", self.name, describe_error(*error), when)
        else:
            log.warning("%s: %s %s", self.name, describe_error(*error), when)
            self._errors.append((error[0], describe_error(*error)))

    def _note_reset(self, error: tuple[int, int]) -> None:
        """A module reset after connect: kept for :meth:`check_errors`, and no non-zero drive is accepted after it
        (the caller may have caught the error; the firmware limits are no longer the bench's)."""
        self.reset_seen = describe_error(*error)
        self._errors.append((error[0], self.reset_seen))

    def _read_reply(self, command: str, n_lines: int | None) -> list[str]:
        lines: list[str] = []
        while not lines or (n_lines is not None and len(lines) < n_lines):
            line = self._take(command, self._read_line(command))
            if line is not None:
                lines.append(line)
        if n_lines is None:
            for raw in read_until_quiet(self.transport, self.quiet_s):
                line = self._take(command, raw)
                if line:
                    lines.append(line)
        return lines

    def query(self, command: str) -> str:
        return self._exchange(command, 1)[0]

    def write(self, command: str) -> None:
        """Every Qontrol command answers, so a write is a set with its ``OK`` checked."""
        self._ack(command)

    def _ack(self, command: str) -> None:
        reply = self._exchange(command, 1)[0]  # query() inline: every heater line passes here
        if reply != OK:
            self.check_ack(command, reply, OK)

    def check_ack(self, command: str, reply: str, ack: str) -> None:
        """``OK`` (after an optional ACK byte); an error line raises naming the command (:meth:`query` already
        does so for the replies it reads, this covers replies obtained otherwise)."""
        if reply == ack:
            return
        error = self._error_of(clean_line(reply))
        if error is not None:
            raise self._reported(command, [(error[0], describe_error(*error))])
        if clean_line(reply) != ack:
            raise self._reply_error(command, f"expected {ack!r}, got {reply!r}")

    def _read_all(self, command: str, unit: str, to_si: float, full: np.ndarray) -> np.ndarray:
        """A one-line-per-channel query (``VALL?`` style), parsed strictly and checked for plausibility."""
        lines = self._exchange(command, self.n_channels)
        parse = parse_with_unit(unit)
        values = np.array([self.parse_reply(command, line, parse) for line in lines]) * to_si
        self._check_plausible(command, values, full)
        return values

    def _check_plausible(self, command: str, values: np.ndarray, full: np.ndarray) -> None:
        """Readings beyond -10 %..110 % of full scale cannot come from a working module."""
        for ch in np.flatnonzero((values < -0.1 * full) | (values > 1.1 * full)):
            raise self._reply_error(command, f"channel {ch} reads {values[ch]:g}, implausible for full scale "
                                             f"{full[ch]:g}")

    # -- channels and limits -----------------------------------------------------------------------------------------
    def channel(self, index: int) -> QontrolChannel:
        if not 0 <= int(index) < self.n_channels:
            raise LimitError(f"{self.name}: channel {index} does not exist (0..{self.n_channels - 1})")
        return QontrolChannel(self, int(index))

    def module_of(self, channel: int) -> QontrolModule:
        for module in self.modules:
            if channel in module.channels:
                return module
        raise LimitError(f"{self.name}: channel {channel} does not exist (0..{self.n_channels - 1})")

    def _full_scale(self) -> np.ndarray:
        index = 0 if self.mode == "voltage" else 1
        return np.concatenate([np.full(m.n_channels, (m.full_scale_v, m.full_scale_a)[index]) for m in self.modules])

    def check_limit(self, channel: int, value_si: float, kind: DriveMode, what: str) -> None:
        """Refuse (LimitError) a drive value outside [0, the channel's limit read back at connect]."""
        limits = self._vmax_v if kind == "voltage" else self._imax_a
        HeaterLimits(mode=kind, max_drive=limits).check(np.array([value_si]), np.array([channel]), who=what)

    def max_drive(self) -> np.ndarray:
        """Firmware limits as read back at connect: VMAX in volts (voltage mode) or IMAX in amps (current mode)."""
        return (self._vmax_v if self.mode == "voltage" else self._imax_a).copy()

    def _validated(self, values: Any, channels: Any) -> tuple[np.ndarray, np.ndarray]:
        """The whole request checked before anything is written: shapes, channel numbers, finiteness, limits."""
        if self.mode == "voltage":  # (the limits read back at connect, not copied: the check only reads them)
            return validate_heater_request(self.name, values, channels, self.n_channels, self._vmax_v, "V")
        return validate_heater_request(self.name, values, channels, self.n_channels, self._imax_a, "A")

    # -- HeaterDriver ------------------------------------------------------------------------------------------------
    def set_drive(self, values: np.ndarray, channels: np.ndarray | None = None) -> None:
        """Volts (voltage mode) or amps (current mode) on ``channels`` (all when None).

        The whole vector is validated first. Channels are then written in order: each run of consecutive channels
        within one module goes out as one ``VVEC<start>=v1,…`` (``IVEC`` in mA for current mode) line; an isolated
        channel as ``V<ch>=`` (``I<ch>=``). Each line must answer ``OK``.
        """
        chans, vals = self._validated(values, channels)
        if self.reset_seen is not None and np.any(vals != 0):
            raise InstrumentReportedError(f"a module reset earlier ({self.reset_seen}): the outputs went to 0 V and "
                                          "VMAX/IMAX to full scale; reconnect before driving the heaters again",
                                          errors=[(NOTICE_POWERED_UP, self.reset_seen)], instrument=self.name,
                                          address=self.address, command=None)
        order, runs = self._runs(chans)
        vals = vals[order]
        # the vector lines' numbers as one list (the wire unit's values, element by element as _write_run makes
        # them), sliced per line: one conversion per write, not one per line
        wire = (vals.tolist() if self.mode == "voltage" else (vals * 1e3).tolist()) if len(runs) > 1 else None
        template = VVEC_SET if self.mode == "voltage" else IVEC_SET
        with self.transport.transaction():
            for first, start, end in runs:
                if wire is None or end - start == 1:
                    self._write_run(first, vals[start:end])
                else:
                    self._ack(_vector_format(template, first, end - start) % tuple(wire[start:end]))

    def _runs(self, chans: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """The write order of ``chans`` (ascending) and its runs (first channel, start, end in that order) of
        consecutive channels within one module: one line each. A bench writes the same few channel sets again and
        again, so the split is remembered per set."""
        key = chans.tobytes()
        found = self._run_cache.get(key)
        if found is None:
            order = np.argsort(chans, kind="stable")
            ordered = chans[order]
            module = self._module_index[ordered]
            ends = (np.flatnonzero((np.diff(ordered) != 1) | (np.diff(module) != 0)) + 1).tolist() + [ordered.size]
            first = ordered.tolist()
            runs = [(first[start], start, end) for start, end in zip([0] + ends[:-1], ends)]
            if len(self._run_cache) >= 256:
                self._run_cache.clear()
            found = self._run_cache[key] = (order, runs)
        return found

    def lines_for(self, channels: np.ndarray) -> int:
        """Fewest lines that can write ``channels``: one per module touched. A line addresses one module at most:
        ``VVEC`` sets consecutive channels of one module, the qontrol library's ``set_all_values`` sends one
        ``VVEC`` per module of the chain (ASCII and binary DEXT alike), and a 16-value line overflowed a module's
        buffer in recorded traffic (``E14:00``), instruments.md §3.1. So a whole chain takes one line per module."""
        chans = np.ravel(np.asarray(channels, dtype=int))
        bad = (chans < 0) | (chans >= self._module_index.size)
        if bad.any():
            self.module_of(int(chans[bad][0]))              # raises, naming the channel
        return int(np.unique(self._module_index[chans]).size)

    def _write_run(self, start: int, values_si: np.ndarray) -> None:
        if values_si.size == 1:
            channel = self.channel(start)
            if self.mode == "voltage":
                channel.voltage_v = float(values_si[0])
            else:
                channel.current_ma = float(values_si[0]) * 1e3
            return
        if self.mode == "voltage":
            template, values = VVEC_SET, values_si.tolist()
        else:
            template, values = IVEC_SET, (values_si * 1e3).tolist()
        self._ack(_vector_format(template, start, len(values)) % tuple(values))

    def read_drive(self) -> np.ndarray:
        """Output of every channel as measured by the modules (``VALL?`` in V, or ``IALL?`` converted to A)."""
        if self.mode == "voltage":
            return self._read_all(VALL_QUERY, "V", 1.0, self._full_scale())
        return self._read_all(IALL_QUERY, "mA", 1e-3, self._full_scale())

    def read_power_w(self) -> np.ndarray | None:
        """Electrical power per channel from ``VIPALL?``.

        Lines carrying power (``…, 4.5130 mW, 9 Ohm``) give it directly; lines with only voltage and current give
        V·I. Each line's ``module,port`` must match the channel it stands for. The resistance field is not used
        (its format at zero current is unrecorded), so any token is accepted there.
        """
        lines = self._exchange(VIPALL_QUERY, self.n_channels)
        power = np.empty(self.n_channels)
        volts = np.empty(self.n_channels)
        amps = np.empty(self.n_channels)
        for ch, line in enumerate(lines):
            match = VIP_LINE.fullmatch(line)
            if not match:
                raise self._reply_error(VIPALL_QUERY, f"line {ch}: expected '<module>,<port>: <V> V, <I> mA"
                                                      f"[, <P> mW[, <R> Ohm]]', got {line!r}")
            module = self.module_of(ch)
            where = (int(match["module"]), int(match["port"]))
            if where != (module.index, ch - module.first_channel):
                raise self._reply_error(VIPALL_QUERY, f"line {ch} is for module,port {where}, expected "
                                                      f"{(module.index, ch - module.first_channel)}")
            volts[ch] = float(match["v"])
            amps[ch] = float(match["i"]) * 1e-3
            power[ch] = float(match["p"]) * 1e-3 if match["p"] is not None else volts[ch] * amps[ch]
        full_v = np.concatenate([np.full(m.n_channels, m.full_scale_v) for m in self.modules])
        full_a = np.concatenate([np.full(m.n_channels, m.full_scale_a) for m in self.modules])
        self._check_plausible(VIPALL_QUERY, volts, full_v)
        self._check_plausible(VIPALL_QUERY, amps, full_a)
        self._check_plausible(VIPALL_QUERY, power, full_v * full_a)
        return power

    def safe_state(self) -> None:
        """All channels to 0 V, one ``VVEC`` line per module (0 V drives no current whatever the mode).

        Every module is attempted even if one fails; the first failure is raised afterwards.
        """
        failures: list[InstrumentError] = []
        for module in self.modules:
            zeros = ",".join([VALUE_FORMAT.format(0.0)] * module.n_channels)
            try:
                self._ack(VVEC_SET.format(start=module.first_channel, values=zeros))
            except InstrumentError as exc:
                log.error("%s: safe state failed on module %d: %s", self.name, module.index, exc)
                failures.append(exc)
        if failures:
            raise failures[0]

    # -- identity and errors -------------------------------------------------------------------------------------
    def identity(self) -> Identity:
        """``id?`` gives model and serial (``Q8iv-0001``; ``****`` when unassigned), ``firmware?`` the firmware."""
        device_id = self.query(ID_QUERY)
        match = DEVICE_ID.fullmatch(device_id)
        if not match:
            raise self._reply_error(ID_QUERY, f"expected '<model>-<serial>', got {device_id!r}")
        firmware = self.query(FIRMWARE_QUERY)
        if not firmware or " " in firmware:
            raise self._reply_error(FIRMWARE_QUERY, f"expected a firmware version such as 'v2.4.1', got {firmware!r}")
        return Identity("Qontrol", match["model"], match["serial"], firmware)

    def _snapshot_extra(self) -> dict[str, Any]:
        """Chain, firmware limits and outputs as the modules report them now (``VMAXALL?``, ``IMAXALL?``,
        ``VALL?`` or ``IALL?``)."""
        full_v = np.concatenate([np.full(m.n_channels, m.full_scale_v) for m in self.modules])
        full_a = np.concatenate([np.full(m.n_channels, m.full_scale_a) for m in self.modules])
        return {
            "mode": self.mode,
            "modules": [{"index": m.index, "model": m.model, "serial": m.serial, "first_channel": m.first_channel,
                         "n_channels": m.n_channels, "full_scale_v": m.full_scale_v, "full_scale_a": m.full_scale_a}
                        for m in self.modules],
            "used_channels": self.used_channels.tolist(),
            "vmax_v": self._read_all(VMAXALL_QUERY, "V", 1.0, full_v).tolist(),
            "imax_a": self._read_all(IMAXALL_QUERY, "mA", 1e-3, full_a).tolist(),
            "drive": {"values": self.read_drive().tolist(), "unit": "V" if self.mode == "voltage" else "A"},
        }

    def read_errors(self) -> list[tuple[int, str]]:
        """Asynchronous error lines received so far (and now waiting), as (code, text); clears them."""
        with self.transport.transaction():
            self._collect_waiting()
            errors, self._errors = self._errors, []
        return errors

    def check_errors(self) -> None:
        """Raise :class:`InstrumentReportedError` for asynchronous error lines (no queue exists to poll)."""
        errors = self.read_errors()
        if errors:
            raise self._reported(None, errors)

    def error_log(self) -> list[str]:
        """The module's error history from ``log?`` (lines such as ``#  0, E00:01, 2 m ago``).

        An error line in reply (``E10:00`` from firmware without ``log?``) raises
        :class:`InstrumentReportedError`; it is never returned as a history entry.
        """
        return [line for line in self._exchange(LOG_QUERY, None) if line]

