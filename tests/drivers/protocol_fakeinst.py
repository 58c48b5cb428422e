"""A pyserial URL handler (``fakeinst://<name>``) whose replies come from a Python responder.

Tests register ``RESPONDERS[name] = callable(line: bytes) -> bytes | None``; the handler feeds each complete
written line (terminator included) to it and queues what it returns. This exercises the real
:class:`~labctl.drivers.transport.SerialTransport` code path (serial_for_url, timeouts, buffering).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import serial
from serial.serialutil import SerialBase

RESPONDERS: dict[str, Callable[[bytes], bytes | None]] = {}
#: Line terminator the handler splits written data on, per name (default LF).
TERMINATORS: dict[str, bytes] = {}


class Serial(SerialBase):
    def open(self) -> None:
        if self._port is None:
            raise serial.SerialException("port must be configured before it can be used")
        name = str(self._port).split("://", 1)[1]
        if name not in RESPONDERS:
            raise serial.SerialException(f"no fake instrument registered as {name!r}")
        self._name = name
        self._rx = bytearray()
        self._tx = bytearray()
        self._cond = threading.Condition()
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _reconfigure_port(self) -> None:
        pass

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        with self._cond:
            while not self._rx:
                if not self.is_open:
                    raise serial.SerialException("port closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return b""
                self._cond.wait(remaining)
            data = bytes(self._rx[:size])
            del self._rx[:size]
            return data

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise serial.SerialException("port closed")
        term = TERMINATORS.get(self._name, b"\n")
        self._tx.extend(data)
        while term in self._tx:
            index = self._tx.index(term) + len(term)
            line = bytes(self._tx[:index])
            del self._tx[:index]
            reply = RESPONDERS[self._name](line)
            if reply:
                with self._cond:
                    self._rx.extend(reply)
                    self._cond.notify_all()
        return len(data)

    def flush(self) -> None:
        pass

    def reset_input_buffer(self) -> None:
        with self._cond:
            self._rx.clear()

    def reset_output_buffer(self) -> None:
        self._tx.clear()
