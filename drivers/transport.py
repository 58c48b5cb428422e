"""Byte transports to instruments: VISA (pyvisa) and serial (pyserial ``serial_for_url``).

A transport owns one connection and guarantees, for every exchange:
- one lock per transaction (a query's write and read are never interleaved with another thread's);
- Ctrl-C never cuts a transaction in half: SIGINT arriving mid-exchange is held and re-raised right after;
- bounded retries of transient failures (timeouts, serial framing hiccups) for idempotent queries;
- errors that name the instrument, its address and the command;
- a debug-level log line per exchange.

Drivers speak only to the :class:`Transport` protocol, so one driver class works on a real instrument, on a
pyvisa-sim YAML, and on the emulated bench alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from labctl.drivers import recoveries
from labctl.drivers.clock import WALL_CLOCK, Clock
from labctl.drivers.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReplyError,
    InstrumentTimeout,
)

log = logging.getLogger(__name__)


@runtime_checkable
class Transport(Protocol):
    """What a driver needs from a connection."""

    name: str
    address: str

    def write(self, command: str) -> None: ...

    def query(self, command: str, *, retries: int | None = None) -> str: ...

    def read_line(self) -> str: ...

    def query_binary(self, command: str, datatype: str = "f", *, big_endian: bool = False,
                     expect_termination: bool = True, retries: int | None = None) -> np.ndarray: ...

    def query_raw(self, command: str, n_bytes: int) -> bytes: ...

    def close(self) -> None: ...

    @property
    def is_open(self) -> bool: ...


@dataclass(frozen=True)
class TransportSettings:
    """Line settings a driver declares for its instrument (the manual's defaults)."""

    write_termination: str = "\n"
    read_termination: str = "\n"
    timeout_s: float = 2.0
    retries: int = 1
    baud_rate: int = 9600
    retry_delay_s: float = 0.05


try:  # the C function behind signal.signal, without its enum conversions: twice per outermost transaction
    from _signal import signal as _set_handler
except ImportError:  # pragma: no cover - other Python implementations
    _set_handler = signal.signal


class _InterruptGuard:
    """Defers SIGINT while a transaction runs, then delivers it to the handler it had displaced (Python's default
    raises KeyboardInterrupt; the run engine's pauses at the next checkpoint).

    Only the main thread can own signal handlers; elsewhere the guard is a no-op (worker threads are not
    interrupted by Ctrl-C anyway). ``enter``/``exit`` nest: the handler is installed by the outermost transaction
    only (a plain method pair, not a generator context manager: transactions are the drivers' hot path).
    """

    def __init__(self) -> None:
        self._pending = False
        self._depth = 0
        self._previous: Any = None
        self._main = threading.main_thread().ident
        self._handler = self._on_sigint  # one bound method for every transaction

    def enter(self) -> bool:
        """Start holding SIGINT; False (nothing to undo) outside the main thread."""
        if threading.get_ident() != self._main:
            return False
        if self._depth == 0:
            self._pending = False
            try:
                self._previous = _set_handler(signal.SIGINT, self._handler)
            except ValueError:  # not in main interpreter (e.g. embedded); nothing to guard
                self._previous = None
        self._depth += 1
        return True

    def exit(self) -> None:
        """Stop holding; the outermost exit restores the handler and delivers a Ctrl-C received meanwhile."""
        self._depth -= 1
        if self._depth == 0 and self._previous is not None:
            previous, self._previous = self._previous, None
            _set_handler(signal.SIGINT, previous)
            if self._pending:
                self._pending = False
                if previous == signal.SIG_IGN:
                    return
                if callable(previous) and previous is not signal.default_int_handler:
                    previous(signal.SIGINT, None)   # e.g. the run engine's: pause at the next checkpoint
                    return
                raise KeyboardInterrupt

    def _on_sigint(self, signum: int, frame: Any) -> None:
        log.warning("Ctrl-C received during an instrument transaction; finishing it first")
        self._pending = True


_GUARD = _InterruptGuard()


class _Transaction:
    """The transport's lock held and Ctrl-C deferred for one exchange (see :meth:`BaseTransport.transaction`)."""

    __slots__ = ("_transport", "_held", "_owner")

    def __init__(self, transport: BaseTransport) -> None:
        self._transport = transport
        self._held = False
        self._owner = False

    def __enter__(self) -> None:
        transport = self._transport
        transport._lock.acquire()
        try:
            self._held = _GUARD.enter()
            if not transport.is_open:
                raise transport._error(InstrumentConnectionError, "connection is closed", None)
        except BaseException:
            self._release()
            raise
        if transport._owner is None:  # this thread's transactions inside this one are nested (_Nested)
            transport._owner = threading.get_ident()
            self._owner = True

    def __exit__(self, *exc: Any) -> None:
        self._release()

    def _release(self) -> None:
        try:
            if self._owner:
                self._owner = False
                self._transport._owner = None
            if self._held:
                self._held = False
                _GUARD.exit()
        finally:
            self._transport._lock.release()


class _Nested:
    """A transaction of the thread that holds one on the same transport already: the lock is held and Ctrl-C is
    deferred by the enclosing one (drivers nest a write and a read in an exchange), so only the connection is
    checked."""

    __slots__ = ("_transport",)

    def __init__(self, transport: BaseTransport) -> None:
        self._transport = transport

    def __enter__(self) -> None:
        transport = self._transport
        if not transport.is_open:
            raise transport._error(InstrumentConnectionError, "connection is closed", None)

    def __exit__(self, *exc: object) -> None:
        return None


class _TimeoutFor:
    """The block of :meth:`BaseTransport.timeout_for` (a plain context manager: every reading enters one)."""

    __slots__ = ("_previous", "_seconds", "_transport")

    def __init__(self, transport: BaseTransport, seconds: float) -> None:
        self._transport = transport
        self._seconds = seconds

    def __enter__(self) -> None:
        transport = self._transport
        transport._lock.acquire()
        self._previous = transport._timeout_override_s
        transport._timeout_override_s = self._seconds
        try:
            transport._apply_timeout(transport.timeout_s)
        except BaseException:
            transport._timeout_override_s = self._previous
            transport._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        transport = self._transport
        try:
            transport._timeout_override_s = self._previous
            transport._apply_timeout(transport.timeout_s)
        finally:
            transport._lock.release()


class BaseTransport:
    """Locking, interrupt holding, retries and logging shared by all transports."""

    def __init__(self, name: str, address: str, settings: TransportSettings, clock: Clock | None = None) -> None:
        self.name = name
        self.address = address
        self.settings = settings
        #: What instrument-imposed waits pass on: the wall, or an emulated bench's virtual clock.
        self.clock: Clock = clock if clock is not None else WALL_CLOCK
        self._lock = threading.RLock()
        #: Thread running the outermost transaction (None: none runs); its inner ones are ``_nested``.
        self._owner: int | None = None
        self._nested = _Nested(self)
        #: Lines sent so far (tests and the safety layer's audits use it).
        self.write_count = 0
        self._timeout_override_s: float | None = None

    # -- helpers -------------------------------------------------------------------------------------------
    def _error(self, cls: type[InstrumentError], message: str, command: str | None) -> InstrumentError:
        return cls(message, instrument=self.name, address=self.address, command=command)

    def transaction(self) -> _Transaction | _Nested:
        """Hold the lock and defer Ctrl-C for a multi-step exchange (public so drivers can group steps)."""
        if self._owner == threading.get_ident():
            return self._nested
        return _Transaction(self)

    def _with_retries(self, command: str, func: Any, retries: int | None) -> Any:
        attempts = 1 + (self.settings.retries if retries is None else retries)
        last: InstrumentError | None = None
        for attempt in range(attempts):
            try:
                result = func()
            except (InstrumentTimeout, _TransientError) as exc:
                last = exc if isinstance(exc, InstrumentError) else self._error(InstrumentTimeout, str(exc), command)
                log.warning("%s at %s: %r failed (%s), attempt %d of %d",
                            self.name, self.address, command, exc, attempt + 1, attempts)
                self._recover()
                if attempt + 1 < attempts:
                    time.sleep(self.settings.retry_delay_s)
            else:
                if last is not None:
                    recoveries.note(self.name, command, last.detail,
                                    f"sent again after clearing the line; answered on attempt {attempt + 1}")
                return result
        assert last is not None
        raise last

    def sleep(self, seconds: float) -> None:
        """Wait as the instrument requires (settling, polling), on the bench's clock (virtual when emulated)."""
        if seconds > 0:
            self.clock.sleep(seconds, "wait")

    def _send(self, command: str) -> None:
        self.write_count += 1
        self._write(command)

    @property
    def timeout_s(self) -> float:
        """The reply timeout in force: the line setting, or the one of an enclosing :meth:`timeout_for`."""
        return self.settings.timeout_s if self._timeout_override_s is None else self._timeout_override_s

    def timeout_for(self, seconds: float) -> _TimeoutFor:
        """Wait up to ``seconds`` for each reply inside the block (holding the lock).

        Drivers use it where one reply takes as long as the measurement behind it (a long averaging time, a list
        sweep read in one ``:READ?``, a wavelength move ended by ``*OPC?``), and for short probes of commands that
        older firmware may not answer at all.
        """
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"timeout must be a positive number of seconds, got {seconds!r}")
        return _TimeoutFor(self, float(seconds))

    def _apply_timeout(self, seconds: float) -> None:
        """Make the backend wait ``seconds`` for replies (backends that read the timeout per call need nothing)."""

    def _recover(self) -> None:
        """Bring the line back to a clean state after a failed exchange (flush stale bytes)."""

    @property
    def is_open(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------------------------
    def write(self, command: str) -> None:
        if self._owner == threading.get_ident():  # inside this thread's transaction (a driver's exchange): held
            if not self.is_open:
                raise self._error(InstrumentConnectionError, "connection is closed", None)
            if log.isEnabledFor(logging.DEBUG):  # (log.debug's own test, without its call: every line passes)
                log.debug("%s <- %r", self.name, command)
            self._send(command)
            return
        with self.transaction():
            log.debug("%s <- %r", self.name, command)
            self._send(command)

    def query(self, command: str, *, retries: int | None = None) -> str:
        def once() -> str:
            self._send(command)
            return self._read_line(command)

        with self.transaction():
            debug = log.isEnabledFor(logging.DEBUG)
            if debug:
                log.debug("%s <- %r", self.name, command)
            reply = self._with_retries(command, once, retries)
            if debug:
                log.debug("%s -> %r", self.name, reply)
            return reply

    def read_line(self) -> str:
        if self._owner == threading.get_ident():  # inside this thread's transaction: held (as in write)
            if not self.is_open:
                raise self._error(InstrumentConnectionError, "connection is closed", None)
            reply = self._read_line(None)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> %r", self.name, reply)
            return reply
        with self.transaction():
            reply = self._read_line(None)
            log.debug("%s -> %r", self.name, reply)
            return reply

    def query_binary(self, command: str, datatype: str = "f", *, big_endian: bool = False,
                     expect_termination: bool = True, retries: int | None = None) -> np.ndarray:
        """Query an IEEE 488.2 definite-length block (``#<d><len><bytes>``) and decode it.

        ``expect_termination=False`` for instruments that send the block with no terminator after it.
        """
        with self.transaction():
            log.debug("%s <- %r (binary %s)", self.name, command, datatype)
            raw = self._with_retries(command, lambda: self._query_block(command, expect_termination), retries)
            values = decode_block(raw, datatype, big_endian=big_endian,
                                  error=lambda m: self._error(InstrumentReplyError, m, command))
            log.debug("%s -> %d values", self.name, values.size)
            return values

    def read_binary(self, datatype: str = "f", *, command: str | None = None, big_endian: bool = False,
                    expect_termination: bool = True) -> np.ndarray:
        """Read (without sending anything) the definite-length block that answers an earlier :meth:`write` of a
        query, e.g. after talking to other instruments meanwhile; ``command`` names that query in errors."""
        with self.transaction():
            raw = self._read_block(command, expect_termination)
            values = decode_block(raw, datatype, big_endian=big_endian,
                                  error=lambda m: self._error(InstrumentReplyError, m, command))
            log.debug("%s -> %d values", self.name, values.size)
            return values

    def pending_lines(self, quiet_s: float) -> list[str]:
        """Collect lines that arrive until the line stays quiet for ``quiet_s`` (replies of unknown length,
        asynchronous error lines)."""
        lines: list[str] = []
        with self.transaction(), self.timeout_for(max(quiet_s, 1e-3)):
            while True:
                try:
                    lines.append(self._read_line(None))
                except InstrumentTimeout:
                    log.debug("%s -> %d pending lines", self.name, len(lines))
                    return lines

    def bytes_waiting(self) -> int | None:
        """Bytes received and not yet read, or None where the backend cannot tell."""
        return None

    def discard_input(self) -> None:
        """Drop every byte received and not yet read (a reply cut short before its terminator), as after a failed
        exchange."""
        with self.transaction():
            self._recover()

    def query_raw(self, command: str, n_bytes: int) -> bytes:
        """Query a reply of exactly ``n_bytes`` raw bytes with no header or terminator (e.g. Santec ``TA``)."""
        with self.transaction():
            log.debug("%s <- %r (raw %d bytes)", self.name, command, n_bytes)
            self._send(command)
            data = self._read_bytes(n_bytes, command)
            log.debug("%s -> %d raw bytes", self.name, len(data))
            return data

    # -- to implement ----------------------------------------------------------------------------------------
    def _write(self, command: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _read_line(self, command: str | None) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _read_bytes(self, n_bytes: int, command: str | None) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    def _query_block(self, command: str, expect_termination: bool = True) -> bytes:
        """Send ``command`` and return the whole definite-length block, header included."""
        self._send(command)
        return self._read_block(command, expect_termination)

    def _read_block(self, command: str | None, expect_termination: bool = True) -> bytes:
        """Read a whole definite-length block, header included (its query was sent already)."""
        head = self._read_bytes(2, command)
        if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
            raise self._error(InstrumentReplyError, f"expected a definite-length block '#<d>…', got {head!r}",
                              command)
        n_digits = int(head[1:2])
        length_text = self._read_bytes(n_digits, command)
        if not length_text.isdigit():
            raise self._error(InstrumentReplyError, f"bad block length field {length_text!r}", command)
        body = self._read_bytes(int(length_text), command)
        if expect_termination:
            self._discard_termination(command)
        return head + length_text + body

    def _discard_termination(self, command: str) -> None:
        term = self.settings.read_termination.encode()
        if term:
            tail = self._read_bytes(len(term), command)
            if tail != term:
                raise self._error(InstrumentReplyError, f"block not followed by the terminator, got {tail!r}",
                                  command)


#: Most lines read while looking for the known answer of a resynchronisation.
RESYNC_MAX_LINES = 64


class _TransientError(Exception):
    """Internal marker for a failure worth retrying (serial framing, VISA I/O hiccup)."""


def decode_block(raw: bytes, datatype: str, *, big_endian: bool, error: Any) -> np.ndarray:
    """Decode an IEEE 488.2 definite-length block strictly (length and item size must agree)."""
    if len(raw) < 2 or raw[:1] != b"#" or not raw[1:2].isdigit():
        raise error(f"expected a definite-length block '#<d>…', got {raw[:12]!r}")
    n_digits = int(raw[1:2])
    if n_digits == 0:
        raise error("indefinite-length blocks (#0) are not supported")
    length_text = raw[2:2 + n_digits]
    if len(length_text) != n_digits or not length_text.isdigit():
        raise error(f"bad block length field {length_text!r}")
    length = int(length_text)
    body = raw[2 + n_digits:2 + n_digits + length]
    if len(body) != length:
        raise error(f"block announced {length} bytes but carried {len(body)}")
    dtype = np.dtype(datatype).newbyteorder(">" if big_endian else "<")
    if length % dtype.itemsize:
        raise error(f"block of {length} bytes is not a whole number of {dtype.itemsize}-byte values")
    return np.frombuffer(body, dtype=dtype).astype(dtype.newbyteorder("="))


class VisaTransport(BaseTransport):
    """A pyvisa message-based resource (GPIB, USB-TMC, LAN, ASRL, or a simulated backend)."""

    def __init__(self, address: str, *, name: str = "", resource_manager: Any = None,
                 settings: TransportSettings = TransportSettings(), clock: Clock | None = None) -> None:
        super().__init__(name or address, address, settings, clock)
        import pyvisa
        from pyvisa import constants as vc

        self._pyvisa = pyvisa
        self._vc = vc
        self._rm = resource_manager if resource_manager is not None else pyvisa.ResourceManager()
        try:
            self._res = self._rm.open_resource(address)
        except (pyvisa.errors.VisaIOError, OSError, ValueError) as exc:
            raise self._error(InstrumentConnectionError, f"cannot open VISA resource: {exc}", None) from exc
        self._res.timeout = settings.timeout_s * 1000.0
        #: The reply timeout (ms) the resource has, and the one the next read needs (set lazily: a timeout_for
        #: around every reading would otherwise set the VISA attribute twice per reading).
        self._timeout_applied_ms = self._timeout_wanted_ms = float(self._res.timeout)
        self._res.write_termination = settings.write_termination
        self._res.read_termination = settings.read_termination or None
        if address.upper().startswith("ASRL"):
            with contextlib.suppress(AttributeError, pyvisa.errors.VisaIOError):
                self._res.baud_rate = settings.baud_rate
        #: A raw socket (``...::SOCKET``, SCPI on port 5025) has no device clear: see :meth:`_resync_socket`.
        self._raw_socket = address.upper().rstrip().endswith("::SOCKET")
        #: The ``*IDN?`` reply once seen: the known answer that shows a raw socket is back in step.
        self._identity: str | None = None
        self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    def _translate(self, exc: Exception, command: str | None) -> Exception:
        errors = self._pyvisa.errors
        if isinstance(exc, errors.VisaIOError) and exc.error_code == self._vc.StatusCode.error_timeout:
            return self._error(InstrumentTimeout, f"no reply within {self.timeout_s:g} s", command)
        if isinstance(exc, errors.VisaIOError) and exc.error_code in (
            self._vc.StatusCode.error_connection_lost, self._vc.StatusCode.error_invalid_object,
            self._vc.StatusCode.error_resource_not_found, self._vc.StatusCode.error_no_listeners,
        ):
            return self._error(InstrumentConnectionError, f"connection lost: {exc.description}", command)
        if isinstance(exc, UnicodeDecodeError):
            return self._error(InstrumentReplyError, f"reply is not text: {exc}", command)
        return self._error(InstrumentConnectionError, f"I/O error: {exc}", command)

    def _write(self, command: str) -> None:
        try:
            self._res.write(command)
        except (self._pyvisa.errors.VisaIOError, OSError) as exc:
            raise self._translate(exc, command) from exc

    def _read_line(self, command: str | None) -> str:
        try:
            if self._timeout_wanted_ms != self._timeout_applied_ms:
                self._sync_timeout()
            return self._res.read()
        except (self._pyvisa.errors.VisaIOError, OSError, UnicodeDecodeError) as exc:
            raise self._translate(exc, command) from exc

    def _read_bytes(self, n_bytes: int, command: str | None) -> bytes:
        try:
            self._sync_timeout()
            return bytes(self._res.read_bytes(n_bytes))
        except (self._pyvisa.errors.VisaIOError, OSError) as exc:
            raise self._translate(exc, command) from exc

    def _query_block(self, command: str, expect_termination: bool = True) -> bytes:
        # pyvisa's own block reader copes with terminator bytes inside the payload.
        self.write_count += 1
        try:
            self._sync_timeout()
            values = self._res.query_binary_values(
                command, datatype="B", container=bytes,
                expect_termination=expect_termination and bool(self.settings.read_termination))
        except (self._pyvisa.errors.VisaIOError, OSError) as exc:
            raise self._translate(exc, command) from exc
        except ValueError as exc:
            raise self._error(InstrumentReplyError, f"malformed binary block: {exc}", command) from exc
        return _definite_block(bytes(values))

    def _read_block(self, command: str | None, expect_termination: bool = True) -> bytes:
        try:
            values = self._res.read_binary_values(
                datatype="B", container=bytes,
                expect_termination=expect_termination and bool(self.settings.read_termination))
        except (self._pyvisa.errors.VisaIOError, OSError) as exc:
            raise self._translate(exc, command) from exc
        except ValueError as exc:
            raise self._error(InstrumentReplyError, f"malformed binary block: {exc}", command) from exc
        return _definite_block(bytes(values))

    def _apply_timeout(self, seconds: float) -> None:
        self._timeout_wanted_ms = max(1.0, seconds * 1000.0)

    def _sync_timeout(self) -> None:
        """Give the resource the reply timeout the next read needs (only when it changed)."""
        if self._timeout_wanted_ms != self._timeout_applied_ms:
            self._res.timeout = self._timeout_wanted_ms
            self._timeout_applied_ms = self._timeout_wanted_ms

    def bytes_waiting(self) -> int | None:
        try:
            return int(self._res.bytes_in_buffer)
        except (AttributeError, TypeError, ValueError, NotImplementedError, self._pyvisa.errors.VisaIOError):
            return None

    def query(self, command: str, *, retries: int | None = None) -> str:
        reply = super().query(command, retries=retries)
        if self._raw_socket and self._identity is None and command.strip().upper() == "*IDN?":
            self._identity = reply.strip()
        return reply

    def _recover(self) -> None:
        with contextlib.suppress(Exception):
            self._res.clear()
        if self._raw_socket:
            self._resync_socket()

    def _resync_socket(self) -> None:
        """Bring a raw socket back in step after a failed exchange. ``clear`` is no device clear there (no GPIB
        control lines, no VXI-11 abort channel), so a reply that missed the timeout is still on its way and would
        be read as the answer to the next query, and so on for every query after it. Ask ``*IDN?`` (answer known
        since connect) and discard every line before that answer; no answer means the link is lost."""
        if self._identity is None:
            return
        self._send("*IDN?")
        for _ in range(RESYNC_MAX_LINES):
            try:
                line = self._read_line("*IDN?").strip()
            except InstrumentTimeout:
                break
            if line == self._identity:
                log.info("%s: back in step (*IDN? answered)", self.name)
                return
            log.warning("%s: discarding %r (a reply that came late) before the answer to '*IDN?'", self.name,
                        line[:80])
        raise self._error(InstrumentConnectionError, "lost step on the raw socket: no *IDN? answer while "
                                                     "resynchronising; reconnect", "*IDN?")

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._open = False
                with contextlib.suppress(self._pyvisa.errors.VisaIOError, OSError):
                    self._res.close()


class SerialTransport(BaseTransport):
    """A pyserial port opened with ``serial.serial_for_url`` so tests and emulators can plug in URL handlers."""

    def __init__(self, url: str, *, name: str = "", settings: TransportSettings = TransportSettings(),
                 port: Any = None, clock: Clock | None = None) -> None:
        super().__init__(name or url, url, settings, clock)
        import serial

        self._serial_mod = serial
        if port is not None:
            self._port = port
        else:
            try:
                self._port = serial.serial_for_url(url, baudrate=settings.baud_rate, timeout=settings.timeout_s,
                                                   write_timeout=settings.timeout_s)
            except (serial.SerialException, ValueError, OSError) as exc:
                raise self._error(InstrumentConnectionError, f"cannot open serial port: {exc}", None) from exc
        self._buffer = bytearray()

    @property
    def is_open(self) -> bool:
        return bool(getattr(self._port, "is_open", False))

    def _write(self, command: str) -> None:
        data = (command + self.settings.write_termination).encode("ascii")
        try:
            self._port.write(data)
            self._port.flush()
        except (self._serial_mod.SerialException, OSError) as exc:
            raise self._error(InstrumentConnectionError, f"write failed: {exc}", command) from exc
        except self._serial_mod.SerialTimeoutException as exc:  # pragma: no cover - subclass of SerialException
            raise self._error(InstrumentTimeout, f"write timed out: {exc}", command) from exc

    def _fill(self, command: str | None, until: Any) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._error(InstrumentTimeout, f"no complete reply within {self.timeout_s:g} s"
                                  + (f" (partial {bytes(self._buffer)!r})" if self._buffer else ""), command)
            try:
                self._port.timeout = remaining
                chunk = self._port.read(max(1, getattr(self._port, "in_waiting", 0) or 1))
            except (self._serial_mod.SerialException, OSError) as exc:
                raise self._error(InstrumentConnectionError, f"read failed: {exc}", command) from exc
            if chunk:
                self._buffer.extend(chunk)

    def _read_line(self, command: str | None) -> str:
        term = self.settings.read_termination.encode()
        if term not in self._buffer:
            try:  # the bytes already received first: reading them cannot block (no deadline or timeout to set)
                waiting = getattr(self._port, "in_waiting", 0) or 0
                if waiting:
                    data = self._port.read(waiting)
                    if not self._buffer and data.find(term) == len(data) - len(term) >= 0:
                        # exactly one whole line, nothing held back (a reply read whole): the line the buffer
                        # below would give, without passing through it
                        return self._decoded(data[:len(data) - len(term)], command)
                    self._buffer.extend(data)
            except (self._serial_mod.SerialException, OSError) as exc:
                raise self._error(InstrumentConnectionError, f"read failed: {exc}", command) from exc
            if term not in self._buffer:
                self._fill(command, lambda: term in self._buffer)
        index = self._buffer.index(term)
        line = bytes(self._buffer[:index])
        del self._buffer[:index + len(term)]
        return self._decoded(line, command)

    def _decoded(self, line: bytes, command: str | None) -> str:
        try:
            return line.decode("ascii").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise self._error(InstrumentReplyError, f"reply is not ASCII: {line!r}", command) from exc

    def _read_bytes(self, n_bytes: int, command: str | None) -> bytes:
        self._fill(command, lambda: len(self._buffer) >= n_bytes)
        data = bytes(self._buffer[:n_bytes])
        del self._buffer[:n_bytes]
        return data

    def pending_lines(self, quiet_s: float) -> list[str]:
        """Collect lines that arrive until the line stays quiet for ``quiet_s`` (asynchronous error lines)."""
        lines: list[str] = []
        with self.transaction():
            term = self.settings.read_termination.encode()
            while True:
                while term in self._buffer:
                    index = self._buffer.index(term)
                    lines.append(bytes(self._buffer[:index]).decode("ascii", "replace").rstrip("\r"))
                    del self._buffer[:index + len(term)]
                try:
                    self._port.timeout = quiet_s
                    chunk = self._port.read(max(1, getattr(self._port, "in_waiting", 0) or 1))
                except (self._serial_mod.SerialException, OSError) as exc:
                    raise self._error(InstrumentConnectionError, f"read failed: {exc}", None) from exc
                if not chunk:
                    return lines
                self._buffer.extend(chunk)

    def bytes_waiting(self) -> int | None:
        try:
            return len(self._buffer) + int(getattr(self._port, "in_waiting", 0) or 0)
        except (self._serial_mod.SerialException, OSError, TypeError, ValueError):
            return None

    def _recover(self) -> None:
        self._buffer.clear()
        with contextlib.suppress(Exception):
            self._port.reset_input_buffer()

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(self._serial_mod.SerialException, OSError):
                self._port.close()


def is_visa_address(address: str) -> bool:
    """VISA resource names contain '::' (``GPIB0::20::INSTR``, ``TCPIP0::host::inst0::INSTR``, ``ASRL1::INSTR``)."""
    return "::" in address


def open_transport(address: str, *, name: str = "", resource_manager: Any = None,
                   settings: TransportSettings = TransportSettings(), clock: Clock | None = None) -> BaseTransport:
    """Open the right transport for an address: VISA resource names go to pyvisa, anything else to pyserial.
    ``clock``: what the transport's waits pass on (default: the wall clock)."""
    if resource_manager is not None or is_visa_address(address):
        return VisaTransport(address, name=name, resource_manager=resource_manager, settings=settings, clock=clock)
    return SerialTransport(address, name=name, settings=settings, clock=clock)


def expect_reply(transport: BaseTransport, command: str, reply: str, expected: str) -> None:
    """Raise a reply error naming the command unless ``reply`` equals ``expected`` (e.g. an ``OK`` acknowledge)."""
    if reply.strip() != expected:
        raise InstrumentReplyError(f"expected {expected!r}, got {reply!r}", instrument=transport.name,
                                   address=transport.address, command=command)


def _definite_block(body: bytes) -> bytes:
    """``body`` as the IEEE 488.2 definite-length block it arrived as (``#<n><length><body>``): pyvisa's block
    readers return the payload only."""
    return f"#{len(str(len(body)))}{len(body)}".encode() + body
