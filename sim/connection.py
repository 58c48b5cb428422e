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

Every exchange can be logged (``exchange_log``): a callable receiving (instrument name, message, reply).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from labctl.sim.device_model import DeviceModel

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


def _one_plain_message(data: bytes) -> bool:
    """Whether ``data``'s only LF is its last byte and nothing in it can hide an LF (no quote, no ``#`` that might
    start a block): then :func:`message_end` finds that LF whether or not blocks are stepped over."""
    return data.count(b"\n") == 1 and b"#" not in data and b'"' not in data and b"'" not in data


class Connection:
    """Framing and output queue of one connection to ``model`` (see the module docstring)."""

    def __init__(self, model: DeviceModel, *, end_signal: bool = False, exchange_log: ExchangeLog | None = None,
                 lock: threading.RLock | None = None) -> None:
        self.model = model
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
        return self.model.connected

    def write(self, data: bytes, end: bool = False) -> None:
        """Bytes from the client; ``end`` marks the last byte of a transfer with END (GPIB EOI) asserted."""
        if not self._input and data[-1:] == b"\n" and _one_plain_message(data):
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
        with self.lock:
            if self._output and self.model.query_interrupted():
                log.debug("%s: unread reply discarded (query interrupted)", self.model.name)
                self._output.clear()
                self.model.reply_ready_s = None
            reply = self.model.exchange(message)
        self._unanswered = reply is None and "?" in message
        if self.exchange_log is not None:
            self.exchange_log(self.model.name, message, reply)
        if reply is None:
            return
        self._output += reply.encode("latin-1") if isinstance(reply, str) else reply
        self._output += self._termination

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
            return data
        data = bytes(self._output[:n])
        del self._output[:n]
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
        with self.lock:
            self.model.reply_ready_s = None
            self.model.clear()
