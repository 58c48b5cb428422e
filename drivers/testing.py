"""Byte-exact protocol tests for drivers: a scripted transport (the role of PyMeasure's ``expected_protocol``).

A test lists the exchanges the manual prescribes, in order: each ``(sent, reply)`` pair is one line the driver must
write (exactly, byte for byte, terminator included) and the bytes the instrument answers. A ``str`` reply gets the
read terminator appended; ``bytes`` are sent as they are (binary blocks: see :func:`block`); ``None`` means the
instrument answers nothing; :class:`Late` delays a reply. Any deviation fails at once, naming the step, and
:meth:`ScriptedTransport.assert_done` fails when exchanges or reply bytes are left over.

Time is virtual: a read that finds no reply waits out the timeout in force by advancing
:attr:`ScriptedTransport.now_s` (no wall-clock sleep), and a :class:`Late` reply becomes readable ``after_s``
seconds after its command was written. Replies keep their order, as on a real line: a reply never overtakes a
late one. Driver waits (``transport.sleep``) advance the same clock.

Example, a driver for a hypothetical meter whose every reading is one ``MEAS?`` in watts::

    >>> from labctl.drivers.instrument import ScpiInstrument
    >>> from labctl.drivers.parsing import parse_float
    >>> from labctl.drivers.testing import Late, expected_protocol
    >>> class Meter(ScpiInstrument):
    ...     label = "meter"
    ...     def read_power_w(self) -> float:
    ...         return self.query_parsed("MEAS?", parse_float)
    >>> with expected_protocol(Meter, [("MEAS?", "1.5E-03"), ("MEAS?", Late("2.0E-03", after_s=0.5))]) as meter:
    ...     meter.read_power_w()
    ...     meter.read_power_w()   # arrives after 0.5 s, within the 2 s default timeout
    0.0015
    0.002

A real driver's connect sequence is part of its script (the constructor talks to the instrument); pass the
driver's keyword arguments through ``expected_protocol(Driver, script, name="laser", pin="1234")``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from labctl.drivers.errors import InstrumentTimeout
from labctl.drivers.transport import BaseTransport, TransportSettings

__all__ = ["Exchange", "Late", "ScriptedTransport", "block", "expected_protocol"]


@dataclass(frozen=True)
class Late:
    """A reply that becomes readable ``after_s`` (virtual) seconds after its command was written."""

    reply: bytes | str
    after_s: float


Exchange = tuple[str, "bytes | str | Late | None"]



class _ScriptClock:
    """The scripted transport's virtual time as a :class:`~labctl.drivers.clock.Clock` (driver waits advance it)."""

    virtual = True

    def __init__(self, transport: ScriptedTransport) -> None:
        self._transport = transport

    @property
    def now_s(self) -> float:
        return self._transport.now_s

    def sleep(self, seconds: float, category: str = "wait") -> None:
        if seconds > 0:
            self._transport.now_s += seconds


class ScriptedTransport(BaseTransport):
    """A transport that plays an instrument from a script and checks every byte the driver writes."""

    def __init__(self, script: Sequence[Exchange], *, settings: TransportSettings = TransportSettings(),
                 name: str = "scripted", address: str = "SCRIPT::INSTR") -> None:
        super().__init__(name, address, settings, clock=_ScriptClock(self))
        self.script = list(script)
        self.step = 0
        #: Every line written, terminator included.
        self.sent: list[bytes] = []
        #: Virtual time, s: advanced by waits for (late) replies, timeouts and the driver's sleeps.
        self.now_s = 0.0
        self._pending = bytearray()
        self._arrivals: list[tuple[float, bytes]] = []
        self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    def _advance(self, seconds: float) -> None:
        self.now_s += seconds

    def _encode(self, reply: bytes | str) -> bytes:
        if isinstance(reply, bytes):
            return reply
        return reply.encode("latin-1") + self.settings.read_termination.encode("ascii")

    def _write(self, command: str) -> None:
        data = (command + self.settings.write_termination).encode("latin-1")
        self.sent.append(data)
        if self.step >= len(self.script):
            raise AssertionError(f"unexpected extra write {data!r} after the script ended")
        expected, reply = self.script[self.step]
        expected_bytes = (expected + self.settings.write_termination).encode("latin-1")
        assert data == expected_bytes, f"step {self.step}: expected {expected_bytes!r}, driver sent {data!r}"
        self.step += 1
        if reply is None:
            return
        delay = reply.after_s if isinstance(reply, Late) else 0.0
        raw = self._encode(reply.reply if isinstance(reply, Late) else reply)
        previous = self._arrivals[-1][0] if self._arrivals else self.now_s
        self._arrivals.append((max(previous, self.now_s + delay), raw))

    def _deliver(self) -> None:
        """Move every reply that has arrived by now into the receive buffer."""
        while self._arrivals and self._arrivals[0][0] <= self.now_s:
            self._pending.extend(self._arrivals.pop(0)[1])

    def _wait_until(self, ready: Any, command: str | None, what: str) -> None:
        """Wait (virtually) until ``ready()``; past the timeout in force, raise :class:`InstrumentTimeout`."""
        deadline = self.now_s + self.timeout_s
        self._deliver()
        while not ready():
            if not self._arrivals or self._arrivals[0][0] > deadline:
                self.now_s = deadline
                raise InstrumentTimeout(f"{what} within {self.timeout_s:g} s (script)", instrument=self.name,
                                        address=self.address, command=command)
            self.now_s = max(self.now_s, self._arrivals[0][0])
            self._deliver()

    def _read_line(self, command: str | None) -> str:
        term = self.settings.read_termination.encode("ascii")
        if not term:
            raise AssertionError("a line read needs a read terminator")
        self._wait_until(lambda: term in self._pending, command, "no complete line")
        index = self._pending.index(term)
        line = bytes(self._pending[:index])
        del self._pending[:index + len(term)]
        return line.decode("latin-1")

    def _read_bytes(self, n_bytes: int, command: str | None) -> bytes:
        self._wait_until(lambda: len(self._pending) >= n_bytes, command, f"fewer than {n_bytes} bytes")
        data = bytes(self._pending[:n_bytes])
        del self._pending[:n_bytes]
        return data

    def bytes_waiting(self) -> int:
        self._deliver()
        return len(self._pending)

    def _recover(self) -> None:
        # like flushing a serial input buffer: what has arrived is dropped, a reply still on its way is not
        self._deliver()
        self._pending.clear()

    def queue_reply(self, reply: str, after_s: float = 0.0) -> None:
        """An unsolicited line (e.g. a Qontrol asynchronous error line), readable ``after_s`` from now."""
        previous = self._arrivals[-1][0] if self._arrivals else self.now_s
        self._arrivals.append((max(previous, self.now_s + after_s), self._encode(reply)))

    def assert_done(self) -> None:
        """Every scripted exchange happened and every reply byte was read."""
        assert self.step == len(self.script), (
            f"driver stopped after {self.step} of {len(self.script)} exchanges; next expected "
            f"{self.script[self.step][0]!r}")
        leftover = bytes(self._pending) + b"".join(raw for _, raw in self._arrivals)
        assert not leftover, f"unread reply bytes left: {leftover!r}"

    def close(self) -> None:
        self._open = False


def block(payload: bytes, terminator: bytes = b"\n") -> bytes:
    """An IEEE 488.2 definite-length block ``#<d><len><payload>`` followed by ``terminator``."""
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload + terminator


@contextlib.contextmanager
def expected_protocol(driver_class: type, exchanges: Sequence[Exchange], *,
                      settings: TransportSettings | None = None, **kwargs: Any) -> Iterator[Any]:
    """Open ``driver_class`` on a :class:`ScriptedTransport` playing ``exchanges``; on leaving the block, check
    that all of them happened and every reply was read.

    ``settings`` defaults to the driver's own ``line_settings`` (terminators, timeout); ``kwargs`` go to the
    driver's constructor. The driver is not closed (closing may itself send commands: script them and close it
    inside the block).
    """
    transport = ScriptedTransport(exchanges, settings=settings or getattr(driver_class, "line_settings",
                                                                          TransportSettings()))
    driver = driver_class(transport, **kwargs)
    yield driver
    transport.assert_done()
