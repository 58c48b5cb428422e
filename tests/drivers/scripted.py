"""A scripted transport for byte-exact protocol tests.

The test lists the exchanges the manual prescribes, in order: each ``(sent, reply)`` pair is one line the driver
must write (exactly, byte for byte, terminator included) and the raw bytes the instrument answers (``None`` for
a command with no reply). Any deviation fails at once, naming the step.
"""

from __future__ import annotations

from collections.abc import Sequence

from labctl.drivers.errors import InstrumentTimeout
from labctl.drivers.transport import BaseTransport, TransportSettings

Exchange = tuple[str, "bytes | str | None"]


class ScriptedTransport(BaseTransport):
    def __init__(self, script: Sequence[Exchange], *, settings: TransportSettings = TransportSettings(),
                 name: str = "scripted", address: str = "SCRIPT::INSTR") -> None:
        super().__init__(name, address, settings)
        self.script = list(script)
        self.step = 0
        self.sent: list[bytes] = []
        self._pending = bytearray()
        self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    def _write(self, command: str) -> None:
        data = (command + self.settings.write_termination).encode("ascii")
        self.sent.append(data)
        if self.step >= len(self.script):
            raise AssertionError(f"unexpected extra write {data!r} after the script ended")
        expected, reply = self.script[self.step]
        expected_bytes = (expected + self.settings.write_termination).encode("ascii")
        assert data == expected_bytes, f"step {self.step}: expected {expected_bytes!r}, driver sent {data!r}"
        self.step += 1
        if reply is not None:
            raw = reply.encode("ascii") if isinstance(reply, str) else reply
            if isinstance(reply, str):
                raw += self.settings.read_termination.encode("ascii")
            self._pending.extend(raw)

    def _take(self, n: int, command: str | None) -> bytes:
        if len(self._pending) < n:
            raise InstrumentTimeout("no reply (script)", instrument=self.name, address=self.address,
                                    command=command)
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data

    def _read_line(self, command: str | None) -> str:
        term = self.settings.read_termination.encode("ascii")
        if term not in self._pending:
            raise InstrumentTimeout("no complete line (script)", instrument=self.name, address=self.address,
                                    command=command)
        index = self._pending.index(term)
        line = bytes(self._pending[:index])
        del self._pending[:index + len(term)]
        return line.decode("ascii")

    def _read_bytes(self, n_bytes: int, command: str | None) -> bytes:
        return self._take(n_bytes, command)

    def _recover(self) -> None:
        # like a VISA device clear: stale reply bytes are dropped before a retry
        self._pending.clear()

    def queue_reply(self, reply: str) -> None:
        """An unsolicited line (e.g. a Qontrol asynchronous error line)."""
        self._pending.extend((reply + self.settings.read_termination).encode("ascii"))

    def assert_done(self) -> None:
        assert self.step == len(self.script), (
            f"driver stopped after {self.step} of {len(self.script)} exchanges; next expected "
            f"{self.script[self.step][0]!r}")
        assert not self._pending, f"unread reply bytes left: {bytes(self._pending)!r}"

    def close(self) -> None:
        self._open = False


def block(payload: bytes) -> bytes:
    """An IEEE 488.2 definite-length block with a LF terminator."""
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload + b"\n"
