"""The bench server in-process (one thread): raw sockets and pseudo-terminals carry the same exchanges as the
in-process transports, several clients share one chip, and virtual time follows the wall clock only on request."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import serial

from labctl.sim import Chip, ChipSpec
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments.keysight_models import KeysightLaserModel
from labctl.sim.instruments.qontrol_model import QontrolModel
from labctl.sim.profiles import ALL
from labctl.sim.serve import BenchServer

PROFILES = {p.device: p for p in ALL}


def _bench() -> EmulatedBench:
    chip = Chip(ChipSpec(), seed=5)
    return EmulatedBench(chip, [
        SimulatedInstrument("laser", PROFILES["Keysight N7778C"], KeysightLaserModel("laser", channel=2)),
        SimulatedInstrument("heaters", PROFILES["Qontrol Q8iv"], QontrolModel("heaters", np.arange(40), 5),
                            serial=True),
    ])


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[BenchServer, EmulatedBench, list[tuple]]]:
    bench = _bench()
    log: list[tuple] = []
    bench.exchange_log = lambda *exchange: log.append(exchange)
    server = BenchServer(bench, follow_wall_clock=getattr(request, "param", False))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, bench, log
    finally:
        server.stop()
        thread.join(5)
        assert not thread.is_alive()
        server.close()
        bench.close()


def _socket(address: str) -> socket.socket:
    _, host, port, _ = address.split("::")
    sock = socket.create_connection((host, int(port)), timeout=2)
    return sock


def _ask(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    reply = b""
    while not reply.endswith(b"\n"):
        reply += sock.recv(4096)
    return reply


def test_socket_and_pty_clients_share_one_chip(served: tuple[BenchServer, EmulatedBench, list[tuple]]) -> None:
    server, bench, log = served
    addresses = server.addresses
    assert addresses["laser"].startswith("TCPIP0::127.0.0.1::") and addresses["heaters"].startswith("/dev/pts/")
    first, second = _socket(addresses["laser"]), _socket(addresses["laser"])
    try:
        assert _ask(first, b"*IDN?\r\n") == b"Keysight Technologies,N7778C,DE59800324,V2.022\n"
        first.sendall(b":SOUR0:WAV 1552.5NM\n")
        assert float(_ask(second, b":SOUR0:WAV?\n")) == pytest.approx(1552.5e-9)  # one instrument, two clients
        # a message split across TCP segments is one message
        second.sendall(b":SOUR0:POW:UN")
        time.sleep(0.05)
        assert _ask(second, b"IT?\n") == b"0\n"
    finally:
        first.close()
        second.close()
    with serial.Serial(addresses["heaters"], 115200, timeout=2) as port:
        port.write(b"VVEC8=1.0000,2.0000\n")
        assert port.readline() == b"OK\n"
        port.write(b"v9?\n")                            # the firmware takes lower case
        reply = port.readline()
        assert reply.endswith(b" V\n") and float(reply[:-3]) == pytest.approx(2.0, abs=1e-3)  # the DAC's step
    assert bench.chip.laser_wavelength_m()[2] == pytest.approx(1552.5e-9)
    assert bench.chip.heater_drive()[8:10] == pytest.approx([1.0, 2.0], abs=1e-3)
    names = [name for name, _, _ in log]
    assert names.count("laser") == 4 and names.count("heaters") == 2


def test_virtual_time_counts_only_the_messages_by_default(served: tuple[BenchServer, EmulatedBench, list]) -> None:
    server, bench, _ = served
    sock = _socket(server.addresses["laser"])
    try:
        _ask(sock, b"*OPC?\n")
        before = bench.chip.clock.now_s
        time.sleep(0.3)
        _ask(sock, b"*OPC?\n")
        assert bench.chip.clock.now_s - before == pytest.approx(bench.chip.spec.timing.scpi_query_s)
    finally:
        sock.close()


@pytest.mark.parametrize("served", [True], indirect=True)
def test_wall_clock_mode_lets_the_chip_live_through_a_client_pause(served: tuple[BenchServer, EmulatedBench,
                                                                                 list]) -> None:
    server, bench, _ = served
    sock = _socket(server.addresses["laser"])
    try:
        _ask(sock, b"*OPC?\n")
        before = bench.chip.clock.now_s
        time.sleep(0.3)
        _ask(sock, b"*OPC?\n")
        assert bench.chip.clock.now_s - before >= 0.3 - 0.05
        assert bench.chip.clock.totals()["idle"] > 0
    finally:
        sock.close()
