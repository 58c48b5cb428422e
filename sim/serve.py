"""An emulated bench served to other processes: each VISA instrument on a raw SCPI socket on the loopback
interface, each serial instrument on a pseudo-terminal.

A client opens ``TCPIP0::127.0.0.1::<port>::SOCKET`` with pyvisa-py (or LabVIEW, MATLAB, a plain socket: LF ends a
message, CR LF too; replies end in LF) or ``serial.Serial("/dev/pts/<n>")``; every open socket or open port is one
connection (:class:`labctl.sim.connection.Connection`) to the instrument's model, and all instruments act on the
bench's one chip. One thread serves everything, one message at a time, so the chip sees the messages of all
clients in the order they arrive.

Time: the chip's virtual clock advances by what each message costs on the real instrument (the reference timing
table), exactly as in-process, so the same messages give the same readings for the same seed whichever process
sends them. A client's own wall-clock waits (a ``time.sleep`` between a heater write and a reading) are invisible
to the emulator and do not advance the clock by default. With ``follow_wall_clock`` the clock is moved forward,
before each message, to at least the wall time elapsed since serving started (category ``idle``): the chip then
drifts and settles during a client's pauses as a real one would, at the price of readings that depend on the
client's timing.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from labctl.sim.connection import Connection
from labctl.sim.emulated_bench import EmulatedBench

log = logging.getLogger(__name__)

READ_CHUNK = 65536


@dataclass
class _Endpoint:
    """A listening socket or a pseudo-terminal of one instrument."""

    name: str
    kind: str  # "socket" | "pty"
    address: str
    fileno: int
    listener: socket.socket | None = None
    master_fd: int = -1
    slave_fd: int = -1
    connection: Connection | None = None  # the pty's one connection


@dataclass
class _Client:
    name: str
    sock: socket.socket
    connection: Connection
    peer: str = ""
    closed: bool = field(default=False)


class BenchServer:
    """Serves ``bench``'s instruments until :meth:`stop` (see the module docstring)."""

    def __init__(self, bench: EmulatedBench, *, host: str = "127.0.0.1", base_port: int = 0,
                 follow_wall_clock: bool = False) -> None:
        self.bench = bench
        self.host = host
        self.follow_wall_clock = follow_wall_clock
        self._selector = selectors.DefaultSelector()
        self._endpoints: list[_Endpoint] = []
        self._clients: dict[int, _Client] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._running = False
        bench.chip.warm_up()
        self._wall0 = time.monotonic()
        self._virtual0 = bench.chip.clock.now_s
        try:
            for index, (name, inst) in enumerate(bench.instruments.items()):
                if inst.serial:
                    endpoint = self._open_pty(name)
                else:
                    endpoint = self._open_socket(name, 0 if base_port == 0 else base_port + index)
                self._endpoints.append(endpoint)
                self._selector.register(endpoint.fileno, selectors.EVENT_READ, ("endpoint", endpoint))
        except BaseException:
            self.close()
            raise

    # -- endpoints -------------------------------------------------------------------------------------------------
    def _open_socket(self, name: str, port: int) -> _Endpoint:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, port))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        address = f"TCPIP0::{self.host}::{port}::SOCKET"
        log.info("%s on %s", name, address)
        return _Endpoint(name, "socket", address, listener.fileno(), listener=listener)

    def _open_pty(self, name: str) -> _Endpoint:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation: bytes pass as the device sends them
        os.set_blocking(master, False)
        path = os.ttyname(slave)
        # the server keeps the slave end open: the terminal survives clients that open and close it
        endpoint = _Endpoint(name, "pty", path, master, master_fd=master, slave_fd=slave,
                             connection=self.bench.connect(name, end_signal=False))
        log.info("%s on %s", name, path)
        return endpoint

    @property
    def addresses(self) -> dict[str, str]:
        """Instrument name -> what a client opens (VISA resource name or pseudo-terminal path)."""
        return {e.name: e.address for e in self._endpoints}

    # -- the loop ----------------------------------------------------------------------------------------------------
    def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` is called (from a signal handler or another thread)."""
        self._running = True
        if on_ready is not None:
            on_ready()
        while self._running:
            for key, _ in self._selector.select():
                kind, item = key.data
                if kind == "wake":
                    os.read(self._wake_r, 64)
                elif kind == "endpoint" and item.kind == "socket":
                    self._accept(item)
                elif kind == "endpoint":
                    self._pty_input(item)
                else:
                    self._client_input(item)

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self._running = False
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:  # the pipe is full: a wake-up is already pending
                pass

    def _accept(self, endpoint: _Endpoint) -> None:
        assert endpoint.listener is not None
        try:
            sock, peer = endpoint.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = _Client(endpoint.name, sock, self.bench.connect(endpoint.name, end_signal=False),
                         f"{peer[0]}:{peer[1]}")
        self._clients[sock.fileno()] = client
        self._selector.register(sock.fileno(), selectors.EVENT_READ, ("client", client))
        log.info("%s: client %s connected", endpoint.name, client.peer)

    def _client_input(self, client: _Client) -> None:
        try:
            data = client.sock.recv(READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        reply = self._feed(client.connection, data)
        if reply:
            try:
                client.sock.sendall(reply)
            except OSError:
                self._drop(client)

    def _pty_input(self, endpoint: _Endpoint) -> None:
        try:
            data = os.read(endpoint.master_fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # no process holds the terminal (not while the server keeps the slave end open)
            return
        assert endpoint.connection is not None
        reply = self._feed(endpoint.connection, data)
        view = memoryview(reply)
        while view:
            try:
                written = os.write(endpoint.master_fd, view)
            except BlockingIOError:
                time.sleep(0.001)  # the terminal's buffer is full until the client reads
                continue
            view = view[written:]

    def _feed(self, connection: Connection, data: bytes) -> bytes:
        if self.follow_wall_clock:
            clock = self.bench.chip.clock
            lag = (time.monotonic() - self._wall0) - (clock.now_s - self._virtual0)
            if lag > 0:
                clock.advance(lag, "idle")
        try:
            connection.write(data)
        except ConnectionError as exc:  # fault "drop": the instrument is gone, the bytes are lost
            log.info("%s", exc)
        return connection.take(connection.waiting())

    def _drop(self, client: _Client) -> None:
        if client.closed:
            return
        client.closed = True
        try:
            self._selector.unregister(client.sock.fileno())
        except (KeyError, ValueError):
            pass
        self._clients.pop(client.sock.fileno(), None)
        client.sock.close()
        log.info("%s: client %s disconnected", client.name, client.peer)

    # -- shutdown ----------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every client, socket and terminal (the bench itself is the caller's to close)."""
        for client in list(self._clients.values()):
            self._drop(client)
        for endpoint in self._endpoints:
            try:
                self._selector.unregister(endpoint.fileno)
            except (KeyError, ValueError):
                pass
            if endpoint.listener is not None:
                endpoint.listener.close()
            for fd in (endpoint.master_fd, endpoint.slave_fd):
                if fd >= 0:
                    os.close(fd)
        self._endpoints.clear()
        try:
            self._selector.unregister(self._wake_r)
        except (KeyError, ValueError):
            pass
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
