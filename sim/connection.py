"""One client's link to an emulated instrument: bytes in, whole program messages to the model, replies out.

Framing (IEEE 488.2 §7.5, §8.5): a message ends at LF; white space before it (the CR of a CR LF terminator) belongs
to the message and the parsers ignore it. On an interface with an END signal (GPIB EOI, the VXI-11 and USB-TMC end
flag: the in-process VISA resources) the last byte of a write with END also ends the message, as on a real bus, so
``pyvisa`` with any write terminator is understood. A raw socket or a serial line has no END: only LF ends a
message there. Definite-length blocks (``#<d><len><bytes>``) may carry LF bytes; the framer steps over them when
the model speaks SCPI.

Replies: each reply gets the model's reply terminator and waits in this connection's output queue. A new message
while a reply is still unread makes a SCPI model queue -410 and the reply is discarded (488.2 §6.3.2.3); a read
request with nothing to read (GPIB-style, in-process only) makes it queue -420. A reply the instrument has ready
only later (a measurement still running: ``DeviceModel.reply_ready_s``) is queued at once, and taking its first
bytes lets virtual time run until it is ready, as a host blocked in its read would wait.

Every exchange can be logged (``exchange_log``, or a ``log_source``'s): a callable receiving (instrument name, message,
reply).

Faults (:mod:`labctl.sim.faults`): the bench's fault plan is asked about every message; a fired fault loses, delays,
corrupts or truncates the reply, takes the link down, or acts on the instrument first (a laser interlock, a heater
module reset). A reply that comes late waits outside the output queue (it is on the wire, the instrument cannot
discard it) and reaches the host just before the next reply; a device clear aborts it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from labctl.sim.device_model import DeviceModel
from labctl.sim.faults import FaultPlan, truncated

log = logging.getLogger(__name__)

ExchangeLog = Callable[[str, str, "str | bytes | None"], None]


def message_end(buffer: bytes | bytearray, start: int, blocks: bool) -> int:
    """Index of the LF ending the message that starts at ``start``, or -1 when it has not arrived yet. With
    ``blocks``, ``#<d><len>`` introduces a definite-length block whose bytes are stepped over (outside quotes)."""
    if not blocks:
        return buffer.find(b"\n", start)
    i, n = start, len(buffer)
    quote = 0
    while i < n:
        c = buffer[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):  # " '
            quote = c
        elif c == 0x0A:
            return i
        elif c == 0x23 and i + 1 < n and 0x31 <= buffer[i + 1] <= 0x39:  # '#1'..'#9'
            digits = buffer[i + 1] - 0x30
            length_text = bytes(buffer[i + 2:i + 2 + digits])
            if len(length_text) < digits:
                return -1
            if length_text.isdigit():
                i += 2 + digits + int(length_text)
                continue
        i += 1
    return -1


#: The bytes that end a message or may hide its end (quotes, ``#`` of a block).
_FRAMING_BYTES = b"\n#\"'"


def _one_plain_message(data: bytes) -> bool:
    """Whether ``data``'s only LF is its last byte and nothing in it can hide an LF (no quote, no ``#`` that might
    start a block): then :func:`message_end` finds that LF whether or not blocks are stepped over. (One pass: the
    last byte is an LF and it is the only framing byte.)"""
    return data[-1:] == b"\n" and len(data) - len(data.translate(None, _FRAMING_BYTES)) == 1


class Connection:
    """Framing and output queue of one connection to ``model`` (see the module docstring)."""

    def __init__(self, model: DeviceModel, *, end_signal: bool = False, exchange_log: ExchangeLog | None = None,
                 lock: threading.RLock | None = None, faults: FaultPlan | None = None, log_source: Any = None
                 ) -> None:
        """``exchange_log``: called with every exchange; ``log_source``: an object whose ``exchange_log`` attribute
        (None or such a callable, settable at any time: an emulated bench's) is looked up at every exchange."""
        self.model = model
        self.log_source = log_source
        self.faults = faults
        #: A reply that missed the host's timeout and arrives with the next one (fault "late").
        self._late = b""
        #: The output queue ends in a reply cut short (fault "truncated"): no terminator, no END will come.
        self.partial = False
        self.end_signal = end_signal
        self.exchange_log = exchange_log
        #: Held while a message runs: one chip, several connections (the server's threads) take turns.
        self.lock = lock if lock is not None else threading.RLock()
        self._blocks = model.blocks_in_messages
        self._input = bytearray()
        self._output = bytearray()
        #: The last message asked something and got no reply (an error took its place, already queued): the next
        #: read that finds nothing is no -420.
        self._unanswered = False
        self._termination = model.reply_termination.encode("ascii")

    @property
    def connected(self) -> bool:
        faults = self.faults
        return self.model.connected and (faults is None or not faults.links_down or faults.link_up(self.model.name))

    def attempt(self) -> bool:
        """Whether the link is up for one read or write the host attempts; an attempt while it is down counts
        towards its coming back (fault "drop" with ``down_messages``)."""
        faults = self.faults
        if self.model.connected and (faults is None or not faults.links_down or faults.link_up(self.model.name)):
            return True
        if self.faults is not None:
            self.faults.refused(self.model.name)
        return False

    def write(self, data: bytes, end: bool = False) -> None:
        """Bytes from the client; ``end`` marks the last byte of a transfer with END (GPIB EOI) asserted.
        Raises ConnectionError while the link is down (the bytes are lost)."""
        if not self.attempt():
            raise ConnectionError(f"{self.model.name}: link down")
        if not self._input and _one_plain_message(data):
            # the common case, one whole message per write: the framing below would end it at the same LF
            self._run(data[:-1])
            return
        self._input += data
        start = 0
        while True:
            stop = message_end(self._input, start, self._blocks)
            if stop < 0:
                break
            self._run(bytes(self._input[start:stop]))
            start = stop + 1
        del self._input[:start]
        if end and self.end_signal and self._input.strip():
            message, self._input = bytes(self._input), bytearray()
            self._run(message)

    def _run(self, raw: bytes) -> None:
        message = raw.decode("latin-1")
        if not message.strip():
            return  # an empty line is no program message
        faults = self.faults
        fault = faults.pick(self.model.name, message) if faults is not None and faults.faults else None
        if fault is not None and fault.kind == "drop":
            self._input.clear()
            raise ConnectionError(f"{self.model.name}: link dropped")
        first = None
        with self.lock:
            if self._output and self.model.query_interrupted():
                log.debug("%s: unread reply discarded (query interrupted)", self.model.name)
                self._output.clear()
                self.partial = False
                self.model.reply_ready_s = None
            if fault is not None:
                first = self.faults.before(fault, self.model)  # type: ignore[union-attr]
            reply = self.model.exchange(message)
        if self._late:
            late, self._late = self._late, b""
            self._output += late
        if first is not None:
            self._output += first.encode("latin-1") + self._termination
        original = reply
        if fault is not None and reply is not None:
            reply = self._faulty(fault, message, reply)
        self._unanswered = reply is None and "?" in message
        if faults is not None and faults.journal is not None:
            # a late reply still answers this message (when it arrives); a truncated one answers nothing
            faults.record(self.model.name, message,
                               original if fault is not None and fault.kind == "late" else reply, fault)
        if self.exchange_log is not None:
            self.exchange_log(self.model.name, message, reply)
        elif self.log_source is not None and self.log_source.exchange_log is not None:
            self.log_source.exchange_log(self.model.name, message, reply)
        if reply is None:
            return
        self._output += reply.encode("latin-1") if isinstance(reply, str) else reply
        self._output += self._termination

    def _faulty(self, fault: Any, message: str, reply: str | bytes) -> str | bytes | None:
        """The reply as the host gets it under ``fault``; None when nothing (more) arrives now."""
        assert self.faults is not None
        kind = fault.kind
        if kind == "timeout":
            return None
        if kind == "late":
            self._late = (reply.encode("latin-1") if isinstance(reply, str) else reply) + self._termination
            return None
        if kind == "truncated":
            self._output += truncated(reply)
            self.partial = True
            return None
        if kind == "slow":
            self.faults.slow(fault)
            return reply
        return self.faults.reply(fault, self.model.name, message, reply)

    # -- the client's side of the output queue -----------------------------------------------------------------
    def waiting(self) -> int:
        return len(self._output)

    def take(self, n: int) -> bytes:
        if self._output and self.model.reply_ready_s is not None:
            with self.lock:
                self.model.wait_for_reply()  # the host blocks in its read until the instrument has the reply
        if n >= len(self._output):  # the whole queue (a reply read at once)
            data = bytes(self._output)
            self._output.clear()
            self.partial = False
            return data
        data = bytes(self._output[:n])
        del self._output[:n]
        if not self._output:
            self.partial = False
        return data

    def read_request(self) -> None:
        """A GPIB-style read with nothing to read: the model may queue -420 (query unterminated, 488.2 §6.3.2.2),
        except for the first such read after a query whose reply an error replaced (that error is queued)."""
        if self._unanswered:
            self._unanswered = False
            return
        with self.lock:
            self.model.query_unterminated()

    def clear(self) -> None:
        """Device clear: input and output buffers dropped (IEEE 488.2 §5.8)."""
        self._input.clear()
        self._output.clear()
        self._late = b""
        self.partial = False
        with self.lock:
            self.model.reply_ready_s = None
            self.model.clear()
