"""The in-process shortcuts of the emulated bench's I/O do what the general paths do: a connection's one-message
write frames as the byte-wise framer, and the emulated VISA resources' direct ``write``/``read`` send and return
what pyvisa's own ``MessageBasedResource`` methods send and return (same bytes, same warnings)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from pyvisa.resources import MessageBasedResource

from labctl.sim import Chip, ChipSpec
from labctl.sim.connection import Connection
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments.keysight_models import KeysightLaserModel, KeysightPowerMeterModel
from labctl.sim.profiles.keysight import KEYSIGHT_N7745A, KEYSIGHT_N7778C
from labctl.sim.visa_library import _DirectMessageIO

PORT_MAP = [(b, k) for b in range(4) for k in (0, 1)]


def _bench() -> EmulatedBench:
    chip = Chip(ChipSpec(), seed=0)
    return EmulatedBench(chip, [
        SimulatedInstrument("laser", KEYSIGHT_N7778C, KeysightLaserModel("laser", channel=0)),
        SimulatedInstrument("meter", KEYSIGHT_N7745A, KeysightPowerMeterModel("meter", PORT_MAP)),
    ])


@pytest.fixture
def benches() -> Iterator[tuple[EmulatedBench, EmulatedBench]]:
    """Two identical benches (same seed): one talked to through the shortcut, one through the general path."""
    a, b = _bench(), _bench()
    yield a, b
    a.close()
    b.close()


MESSAGES = [b"*IDN?\n", b":SENS1:POW:ATIM 0.001\n", b":FETC:POW:ALL:CSV?\n", b":SYST:ERR?\n", b"*IDN?\r\n",
            b":SENS2:POW:UNIT 0;:SENS2:POW:UNIT?\n", b"*IDN?;*OPC?\n", b":FETC1:POW?\n", b":BOGUS 'a\nb'\n",
            b"\n", b"  \n", b":SYST:ERR?\n", b":SYST:ERR?\n"]


def _bytewise(connection: Connection, data: bytes) -> None:
    """The same bytes, one at a time: never a whole message in one write, so always the general framer."""
    for k in range(len(data)):
        connection.write(data[k:k + 1])


def test_one_message_writes_frame_as_the_bytewise_framer(benches: tuple[EmulatedBench, EmulatedBench]) -> None:
    fast, slow = (bench.connect("meter") for bench in benches)
    for message in MESSAGES:
        fast.write(message)
        _bytewise(slow, message)
        assert fast.take(fast.waiting()) == slow.take(slow.waiting()), message
    assert benches[0].chip.clock.now_s == benches[1].chip.clock.now_s


def test_direct_visa_io_is_pyvisas_message_io(benches: tuple[EmulatedBench, EmulatedBench]) -> None:
    fast = benches[0].resource_manager.open_resource(benches[0].address("meter"))
    slow = benches[1].resource_manager.open_resource(benches[1].address("meter"))
    assert isinstance(fast, _DirectMessageIO) and isinstance(fast, MessageBasedResource)
    for res in (fast, slow):
        res.read_termination = res.write_termination = "\n"
        res.timeout = 100
    for text in ("*IDN?", ":FETC:POW:ALL:CSV?", ":SENS1:POW:ATIM?", ":SYST:ERR?"):
        assert fast.write(text) == MessageBasedResource.write(slow, text)
        assert fast.read() == MessageBasedResource.read(slow)
    # a reply longer than one chunk is gathered chunk by chunk, as pyvisa does
    fast.chunk_size = slow.chunk_size = 7
    fast.write(":FETC:POW:ALL:CSV?")
    MessageBasedResource.write(slow, ":FETC:POW:ALL:CSV?")
    assert fast.read() == MessageBasedResource.read(slow)
    # the same warnings: a message already terminated, a reply without the expected terminator
    for res, write, read in ((fast, fast.write, fast.read),
                             (slow, lambda t: MessageBasedResource.write(slow, t),
                              lambda: MessageBasedResource.read(slow))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write("*IDN?\n")
            res.read_termination = "\r\n"
            reply = read()
            res.read_termination = "\n"
        assert reply.startswith("Keysight") and reply.endswith("\n")
        assert [str(w.message) for w in caught] == ["write message already ends with termination characters",
                                                    "read string doesn't end with termination characters"]
    # an explicit termination goes through pyvisa's own read
    fast.write("*IDN?")
    assert fast.read(termination="\n").startswith("Keysight")


@pytest.mark.parametrize("data", [b"*IDN?\n", b"*IDN?", b"\n", b"", b"a\nb\n", b"#\n", b":X '1'\n", b':X "1"\n',
                                  b":DATA #14abcd\n", b"VVEC0=1.0000,2.0000\n", b"\n\n", b"x\r\n"])
def test_a_plain_message_is_one_lf_at_the_end_and_nothing_that_hides_one(data: bytes) -> None:
    from labctl.sim.connection import _one_plain_message

    expected = data[-1:] == b"\n" and data.count(b"\n") == 1 and not any(c in data for c in (b"#", b'"', b"'"))
    assert _one_plain_message(data) is expected
