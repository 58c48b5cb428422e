"""Transport behaviour: timeouts, terminators, retries, Ctrl-C safety, binary blocks, error wording."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import InstrumentConnectionError, InstrumentReplyError, InstrumentTimeout
from labctl.drivers.transport import SerialTransport, TransportSettings, VisaTransport, decode_block, open_transport

from labctl.drivers.testing import ScriptedTransport, block

FAST = TransportSettings(timeout_s=0.2, retries=1, retry_delay_s=0.0)


def echo_upper(line: bytes) -> bytes:
    return line.upper()


def test_serial_query_round_trip(fake_serial: dict) -> None:
    fake_serial["box"] = echo_upper
    transport = SerialTransport("fakeinst://box", name="box", settings=FAST)
    assert transport.query("hello") == "HELLO"
    transport.close()
    assert not transport.is_open


def test_timeout_names_instrument_address_and_command(fake_serial: dict) -> None:
    fake_serial["mute"] = lambda line: None
    transport = SerialTransport("fakeinst://mute", name="heater dac", settings=FAST)
    with pytest.raises(InstrumentTimeout) as info:
        transport.query("V0?")
    message = str(info.value)
    assert "heater dac" in message and "fakeinst://mute" in message and "'V0?'" in message
    assert "VI_ERROR" not in message


def test_termination_mismatch_is_reported_with_the_partial_reply(fake_serial: dict) -> None:
    fake_serial["cr"] = lambda line: b"+1.0 V\r"  # instrument configured for CR, we expect LF
    transport = SerialTransport("fakeinst://cr", settings=TransportSettings(timeout_s=0.1, retries=0))
    with pytest.raises(InstrumentTimeout, match=r"partial b'\+1.0 V\\r'"):
        transport.query("V0?")


def test_transient_failure_is_retried_then_succeeds(fake_serial: dict) -> None:
    calls: list[bytes] = []

    def flaky(line: bytes) -> bytes | None:
        calls.append(line)
        return None if len(calls) == 1 else b"OK\n"

    fake_serial["flaky"] = flaky
    transport = SerialTransport("fakeinst://flaky", settings=FAST)
    assert transport.query("id?") == "OK"
    assert calls == [b"id?\n", b"id?\n"]


def test_persistent_failure_is_retried_a_bounded_number_of_times_then_reported(fake_serial: dict) -> None:
    calls: list[bytes] = []
    fake_serial["dead"] = lambda line: calls.append(line)
    transport = SerialTransport("fakeinst://dead", settings=TransportSettings(timeout_s=0.05, retries=2,
                                                                              retry_delay_s=0.0))
    with pytest.raises(InstrumentTimeout, match="id"):
        transport.query("id?")
    assert len(calls) == 3


def test_ctrl_c_during_a_transaction_is_held_until_the_reply_is_read(fake_serial: dict, caplog) -> None:
    def interrupting(line: bytes) -> bytes:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the instrument is "answering"
        return b"+8.2702 V\n"

    fake_serial["slow"] = interrupting
    transport = SerialTransport("fakeinst://slow", name="qontrol", settings=FAST)
    caplog.set_level(logging.DEBUG, logger="labctl.drivers.transport")
    with pytest.raises(KeyboardInterrupt):
        transport.query("V0?")
    # the reply was read completely before the interrupt was delivered: nothing is left half-read
    assert any("+8.2702 V" in r.getMessage() for r in caplog.records)
    assert transport._buffer == bytearray()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    fake_serial["slow"] = echo_upper
    assert transport.query("next") == "NEXT"


def test_one_transaction_at_a_time_across_threads(fake_serial: dict) -> None:
    fake_serial["echo"] = echo_upper
    transport = SerialTransport("fakeinst://echo", settings=FAST)
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        for _ in range(50):
            results[i] = transport.query(f"q{i}")
            assert results[i] == f"Q{i}"

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: f"Q{i}" for i in range(4)}


def test_closed_transport_refuses_io(fake_serial: dict) -> None:
    fake_serial["box"] = echo_upper
    transport = SerialTransport("fakeinst://box", settings=FAST)
    transport.close()
    with pytest.raises(InstrumentConnectionError, match="closed"):
        transport.query("x")


def test_unknown_serial_port_gives_a_connection_error_naming_the_address() -> None:
    with pytest.raises(InstrumentConnectionError, match="fakeinst://nobody"):
        SerialTransport("fakeinst://nobody")


def test_binary_block_decoding_is_strict() -> None:
    payload = np.array([1e-3, 2e-6], dtype="<f4").tobytes()
    raw = b"#18" + payload
    assert np.allclose(decode_block(raw, "f", big_endian=False, error=ValueError), [1e-3, 2e-6])

    for bad in (b"18" + payload, b"#0" + payload, b"#19" + payload, b"#2x8" + payload, b"#17" + payload[:7]):
        with pytest.raises(ValueError):
            decode_block(bad, "f", big_endian=False, error=ValueError)


def test_scripted_binary_query_and_truncated_block() -> None:
    values = np.linspace(1.5e-6, 1.51e-6, 5)
    transport = ScriptedTransport([(":SOUR0:READ:DATA? LLOG", block(values.astype("<f8").tobytes()))])
    assert np.array_equal(transport.query_binary(":SOUR0:READ:DATA? LLOG", "d"), values)
    transport.assert_done()

    short = ScriptedTransport([(":FETC:POW:ALL?", b"#216" + b"\x00" * 8)],
                              settings=TransportSettings(retries=0))
    with pytest.raises(InstrumentTimeout, match="FETC:POW:ALL"):
        short.query_binary(":FETC:POW:ALL?", "f")

    no_term = ScriptedTransport([(":FETC:POW:ALL?", b"#14" + b"\x00" * 4 + b"X")],
                                settings=TransportSettings(retries=0))
    with pytest.raises(InstrumentReplyError, match="terminator"):
        no_term.query_binary(":FETC:POW:ALL?", "f")


SIM_YAML = """\
spec: "1.1"
devices:
  box:
    eom:
      GPIB INSTR: {q: "\\n", r: "\\n"}
    error:
      error_queue:
        - {q: ":SYST:ERR?", default: '+0,"No error"', command_error: '-113,"Undefined header"'}
    dialogues:
      - {q: "*IDN?", r: "Keysight Technologies,N7744A,MY123,1.0"}
resources:
  GPIB0::7::INSTR: {device: box}
"""


def test_visa_transport_timeout_is_translated(tmp_path: Path) -> None:
    import pyvisa

    path = tmp_path / "box.yaml"
    path.write_text(SIM_YAML)
    rm = pyvisa.ResourceManager(f"{path}@sim")
    transport = open_transport("GPIB0::7::INSTR", name="meter", resource_manager=rm,
                               settings=TransportSettings(timeout_s=0.05, retries=0))
    assert isinstance(transport, VisaTransport)
    assert transport.query("*IDN?").startswith("Keysight")
    with pytest.raises(InstrumentTimeout) as info:
        transport.query(":NOT:A:COMMAND?")
    assert "meter at GPIB0::7::INSTR" in str(info.value) and ":NOT:A:COMMAND?" in str(info.value)
    assert "VI_ERROR_TMO" not in str(info.value)
    transport.close()


def test_visa_open_failure_names_the_address(tmp_path: Path) -> None:
    import pyvisa

    path = tmp_path / "box.yaml"
    path.write_text(SIM_YAML)
    rm = pyvisa.ResourceManager(f"{path}@sim")
    with pytest.raises(InstrumentConnectionError, match="GPIB0::x::INSTR"):
        open_transport("GPIB0::x::INSTR", resource_manager=rm)


def test_a_transaction_held_by_one_thread_keeps_others_out_of_its_nested_exchanges(fake_serial: dict) -> None:
    """Exchanges nested in a thread's transaction run without taking the lock again, and still exclude every other
    thread until the outer transaction ends; a nested exchange on a closed line still refuses."""
    fake_serial["echo"] = echo_upper
    transport = SerialTransport("fakeinst://echo", settings=FAST)
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        inside.wait(2)
        order.append(transport.query("other"))

    thread = threading.Thread(target=other)
    thread.start()
    with transport.transaction():
        inside.set()
        for i in range(3):
            order.append(transport.query(f"mine{i}"))  # nested: the other thread waits meanwhile
        thread.join(0.05)
        assert thread.is_alive()
    thread.join(2)
    assert order == ["MINE0", "MINE1", "MINE2", "OTHER"]
    with transport.transaction():
        transport.close()
        with pytest.raises(InstrumentConnectionError, match="closed"):
            transport.query("x")
        with pytest.raises(InstrumentConnectionError, match="closed"):
            transport.write("x")       # a nested write and read check the connection themselves
        with pytest.raises(InstrumentConnectionError, match="closed"):
            transport.read_line()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_reply_already_waiting_is_read_whole_and_a_partial_one_completed(fake_serial: dict) -> None:
    fake_serial["box"] = lambda line: b"first\nsecond"  # one message answered by a line and a partial line
    transport = SerialTransport("fakeinst://box", settings=FAST)
    transport.write("go")
    assert transport.read_line() == "first"
    with pytest.raises(InstrumentTimeout, match="partial b'second'"):
        transport.read_line()
