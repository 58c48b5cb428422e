"""``labctlsim://<bench id>/<instrument>``: a serial port whose far end is a simulated instrument.

Serial drivers open it through ``serial.serial_for_url`` like any port. Each open port is a new connection
(:class:`labctl.sim.connection.Connection`) to the instrument's model on the emulated bench.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import serial
from serial.serialutil import SerialBase

#: (bench id, instrument name) -> factory of a connection with ``write(bytes)``, ``take(n) -> bytes``,
#: ``waiting() -> int``, ``connected``; filled by :class:`labctl.sim.emulated_bench.EmulatedBench`.
ENDPOINTS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def register(bench_id: str, name: str, connect: Any) -> str:
    with _LOCK:
        ENDPOINTS[(bench_id, name)] = connect
    return f"labctlsim://{bench_id}/{name}"


def unregister(bench_id: str) -> None:
    with _LOCK:
        for key in [k for k in ENDPOINTS if k[0] == bench_id]:
            del ENDPOINTS[key]


class Serial(SerialBase):
    """The pyserial side of a simulated serial instrument."""

    def open(self) -> None:
        if self._port is None:
            raise serial.SerialException("port must be configured before it can be used")
        target = str(self._port).split("://", 1)[-1]
        bench_id, _, name = target.partition("/")
        connect = ENDPOINTS.get((bench_id, name))
        if connect is None:
            raise serial.SerialException(f"no simulated instrument at {self._port!r}")
        self._endpoint = connect()
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _reconfigure_port(self) -> None:
        pass

    def _check(self) -> None:
        if not self.is_open:
            raise serial.PortNotOpenError()
        attempt = getattr(self._endpoint, "attempt", None)
        if not (attempt() if attempt is not None else self._endpoint.connected):
            raise serial.SerialException(f"{self._port}: device disconnected")

    # the checks of _check inline in the three calls every line makes (each line of a bench passes here)
    @property
    def in_waiting(self) -> int:
        if not (self.is_open and self._endpoint.connected):
            self._check()
        endpoint = self._endpoint
        return endpoint.waiting()

    def read(self, size: int = 1) -> bytes:
        if not (self.is_open and self._endpoint.connected):
            self._check()
        endpoint = self._endpoint
        data = endpoint.take(size)
        if data or not self._timeout:
            return data
        # the simulation answers synchronously: nothing now means nothing will come; honour the timeout briefly
        time.sleep(min(self._timeout, 0.001))
        return endpoint.take(size)

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise serial.PortNotOpenError()
        try:  # the connection refuses (and counts) bytes while the device is gone
            self._endpoint.write(data if type(data) is bytes else bytes(data))
        except ConnectionError as exc:
            raise serial.SerialException(f"{self._port}: {exc}") from None
        return len(data)

    def flush(self) -> None:
        pass

    def reset_input_buffer(self) -> None:
        self._check()
        self._endpoint.take(self._endpoint.waiting())

    def reset_output_buffer(self) -> None:
        pass
