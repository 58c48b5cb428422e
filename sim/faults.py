"""Injected faults of the emulated bench, applied where bytes meet instruments (the connection seam).

Every connection of an emulated bench (in-process VISA resources, ``labctlsim://`` serial ports, and the sockets
and pseudo-terminals of ``labctl sim serve``) asks the bench's :class:`FaultPlan` about each program message, so
every simulated instrument gets every fault without knowing about it. A fault is configured in a test
(``FaultPlan.add(Fault(...))``) or in an emulated bench file::

    [[faults]]
    kind = "late"              # one of KINDS
    instrument = "meter"       # default: any instrument
    match = "FETC"             # regular expression searched in the message (default: any message)
    after = 20                 # messages to that instrument that pass first (default 0; counted from the plan's
                               # first fault on, so a plan without faults costs nothing per message)
    probability = 1.0          # chance per eligible message, from a generator seeded with `seed`
    count = 1                  # times it fires (0: every eligible message)

Timing follows the emulated transports: an in-process read finds its reply or times out at once, so a "late"
reply is one the host sees only with its next message (after its read timed out); a device clear (IEEE 488.2
§5.8, what VISA's ``clear`` sends) aborts it, a raw socket or serial line has no such thing.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labctl.sim.device_model import DeviceModel

log = logging.getLogger(__name__)

#: Fault kinds and what each does to the message it fires on.
KINDS: dict[str, str] = {
    "timeout": "the instrument executes the message but its reply is lost (the host's read times out)",
    "late": "the reply arrives after the host's read timed out, ahead of the next reply; a device clear aborts it",
    "garbage": "the reply is replaced by printable characters that answer nothing",
    "truncated": "the reply stops halfway, without its terminator",
    "slow": "the reply comes after `delay_s` of wall-clock time (within the host's timeout)",
    "drop": "the link goes down (the message is lost) for the next `down_messages` reads or writes the host "
            "attempts (not given: for good)",
    "error_queue": "the instrument reports an error: a SCPI error-queue entry, or a Qontrol error line",
    "stuck": "the reply to the matching query repeats the first one, whatever the instrument measures",
    "nan": "numbers in the reply become NaN (SCPI ASCII 9.91E37; NaN bytes in a binary block)",
    "overrange": "numbers in the reply become an over-range value (9.9E37, SCPI +INF; > 1e20 on the N774x)",
    "laser_off": "the laser's output switches off (an interlock) before the message runs",
    "heater_reset": "the heater modules reset before the message runs: every output at 0 V, power-up notice",
}

#: SCPI-99 §7.2.1.5 "Not a Number" and +INFinity as ASCII numbers; what drivers must never take for a reading.
SCPI_NAN = "9.91E37"
SCPI_OVER_RANGE = "9.9E37"
#: The error a SCPI instrument queues for the "error_queue" fault: -222 Data out of range (SCPI-99 §21.8.9).
SCPI_FAULT_ERROR = (-222, "Data out of range")
#: The Qontrol error line for the "error_queue" fault: E02 over-current on channel 0 (instruments.md §3.1).
QONTROL_FAULT_LINE = "E02:00"
QONTROL_POWER_UP_LINE = "E90:00"

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_GARBAGE = "!$%&()*;<>@[]^_`{|}~qwzxkjvQWZXKJV"


@dataclass(frozen=True)
class Fault:
    """One configured fault (see the module docstring for the triggers)."""

    kind: str
    instrument: str | None = None
    match: str | None = None
    after: int = 0
    probability: float = 1.0
    count: int = 1
    seed: int = 0
    #: "slow": wall-clock delay of the reply, s.
    delay_s: float = 0.05
    #: "drop": reads or writes the host attempts while the link is down before it comes back (None: never).
    down_messages: int | None = None

    def __post_init__(self) -> None:
        problems = fault_problems(asdict(self))
        if problems:
            key, message = problems[0]
            raise ValueError(f"{key}: {message}")


def fault_problems(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for everything wrong with one fault table (bench files report them with their path)."""
    problems: list[tuple[str, str]] = []
    known = {"kind", "instrument", "match", "after", "probability", "count", "seed", "delay_s", "down_messages"}
    for key in sorted(set(entry) - known):
        problems.append((key, f"unknown fault field; known: {', '.join(sorted(known))}"))
    kind = entry.get("kind")
    if kind not in KINDS:
        problems.append(("kind", f"{kind!r} is not a fault kind; known: {', '.join(KINDS)}"))
    for key in ("after", "count", "seed"):
        value = entry.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append((key, f"{value!r} must be an integer >= 0"))
    p = entry.get("probability", 1.0)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p <= 1.0:
        problems.append(("probability", f"{p!r} must be a number in (0, 1]"))
    d = entry.get("delay_s", 0.05)
    if isinstance(d, bool) or not isinstance(d, int | float) or not 0.0 <= d <= 10.0:
        problems.append(("delay_s", f"{d!r} must be a number of seconds in [0, 10]"))
    down = entry.get("down_messages")
    if down is not None and (not isinstance(down, int) or isinstance(down, bool) or down < 1):
        problems.append(("down_messages", f"{down!r} must be an integer >= 1 (leave it out: down for good)"))
    match = entry.get("match")
    if match is not None:
        try:
            re.compile(str(match))
        except re.error as exc:
            problems.append(("match", f"{match!r} is not a regular expression: {exc}"))
    instrument = entry.get("instrument")
    if instrument is not None and (not isinstance(instrument, str) or not instrument):
        problems.append(("instrument", f"{instrument!r} must be an instrument name"))
    return problems


@dataclass
class Exchange:
    """One program message as the instrument got it and the reply as the host got it (tests' journal)."""

    instrument: str
    message: str
    reply: str | bytes | None
    fault: str | None = None


@dataclass
class _Armed:
    fault: Fault
    rng: random.Random
    pattern: re.Pattern[str] | None
    fired: int = 0


@dataclass
class FaultPlan:
    """The faults of one emulated bench, their triggers' state, and what fired (see the module docstring)."""

    faults: list[_Armed] = field(default_factory=list)
    #: Every fault that fired: {"kind", "instrument", "message", "n"} (emulator truth: for tests and reports).
    fired: list[dict[str, Any]] = field(default_factory=list)
    #: Every exchange, when a test asks for it (``journal = []``).
    journal: list[Exchange] | None = None
    _seen: dict[str, int] = field(default_factory=dict)
    #: Instruments whose link is down: name -> attempts left before it is back (None: until restored). Public so
    #: that a connection sees "every link up" (empty) without a call on every message.
    links_down: dict[str, int | None] = field(default_factory=dict)
    _stuck: dict[tuple[str, str], str | bytes | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, faults: list[Fault] | tuple[Fault, ...] = ()) -> FaultPlan:
        plan = cls()
        for fault in faults:
            plan.add(fault)
        return plan

    def add(self, fault: Fault) -> None:
        pattern = re.compile(fault.match) if fault.match is not None else None
        self.faults.append(_Armed(fault, random.Random(fault.seed), pattern))

    # -- triggers --------------------------------------------------------------------------------------------------
    def pick(self, instrument: str, message: str) -> Fault | None:
        """The fault firing on this message to ``instrument`` (counts the message), or None."""
        with self._lock:
            n = self._seen.get(instrument, 0) + 1
            self._seen[instrument] = n
            for armed in self.faults:
                f = armed.fault
                if f.instrument is not None and f.instrument != instrument:
                    continue
                if n <= f.after or (armed.pattern is not None and not armed.pattern.search(message)):
                    continue
                if f.kind == "stuck" and armed.fired:
                    return f          # once stuck, the reading stays stuck
                if f.count and armed.fired >= f.count:
                    continue
                if f.probability < 1.0 and armed.rng.random() >= f.probability:
                    continue
                armed.fired += 1
                self.fired.append({"kind": f.kind, "instrument": instrument, "message": message.strip(), "n": n})
                log.info("fault %s on %s at message %d %r", f.kind, instrument, n, message.strip())
                if f.kind == "drop":
                    self.links_down[instrument] = f.down_messages
                return f
        return None

    # -- the link --------------------------------------------------------------------------------------------------
    def link_up(self, instrument: str) -> bool:
        return instrument not in self.links_down

    def refused(self, instrument: str) -> None:
        """A read or write attempted while the link is down fails; after ``down_messages`` of them it is back."""
        with self._lock:
            if instrument not in self.links_down:
                return
            left = self.links_down[instrument]
            if left is None:
                return
            if left <= 1:
                del self.links_down[instrument]
                log.info("fault drop: %s is back", instrument)
            else:
                self.links_down[instrument] = left - 1

    # -- what the instrument does ------------------------------------------------------------------------------------
    def before(self, fault: Fault, model: DeviceModel) -> str | None:
        """Faults acting on the instrument before the message runs; returns a line the instrument sends first."""
        if fault.kind == "laser_off":
            off = getattr(model, "interlock_off", None)
            if off is None:
                raise ValueError(f"fault laser_off: {model.name} is not a laser")
            off()
        elif fault.kind == "heater_reset":
            reset = getattr(model, "power_cycle", None)
            if reset is None:
                raise ValueError(f"fault heater_reset: {model.name} is not a heater driver")
            reset()
            return QONTROL_POWER_UP_LINE
        elif fault.kind == "error_queue":
            status = getattr(model, "status", None)
            if status is not None:
                status.push(*SCPI_FAULT_ERROR)
            else:
                return QONTROL_FAULT_LINE
        return None

    def reply(self, fault: Fault, instrument: str, message: str, reply: str | bytes) -> str | bytes:
        """The reply as altered by ``fault`` (garbage, NaN, over-range, stuck)."""
        if fault.kind == "garbage":
            rng = random.Random(len(self.fired))
            return "".join(rng.choice(_GARBAGE) for _ in range(max(4, len(reply))))
        if fault.kind in ("nan", "overrange"):
            if isinstance(reply, bytes):
                return _block_filled(reply, fault.kind)
            text = SCPI_NAN if fault.kind == "nan" else SCPI_OVER_RANGE
            return _NUMBER.sub(text, reply)
        if fault.kind == "stuck":
            key = (instrument, message.strip())
            return self._stuck.setdefault(key, reply) or reply
        return reply

    def slow(self, fault: Fault) -> None:
        time.sleep(fault.delay_s)

    def record(self, instrument: str, message: str, reply: str | bytes | None, fault: Fault | None) -> None:
        if self.journal is not None:
            self.journal.append(Exchange(instrument, message.strip(), reply, None if fault is None else fault.kind))


def _block_filled(reply: bytes, kind: str) -> bytes:
    """A definite-length block whose payload is NaN (all bits set: NaN as float32 and float64) or over-range
    (float32 3.4e38 pattern; as float64 about 1e306), header and length unchanged."""
    if len(reply) < 2 or reply[:1] != b"#" or not reply[1:2].isdigit():
        return reply
    digits = int(reply[1:2])
    start = 2 + digits
    try:
        length = int(reply[2:start])
    except ValueError:
        return reply
    pattern = b"\xff" if kind == "nan" else b"\xff\xff\x7f\x7f"
    payload = (pattern * (length // len(pattern) + 1))[:length]
    return reply[:start] + payload + reply[start + length:]


def truncated(reply: str | bytes) -> bytes:
    """The first half of a reply (at least one byte), as bytes."""
    data = reply.encode("latin-1") if isinstance(reply, str) else reply
    return data[:max(1, len(data) // 2)]
