"""labctl.drivers.testing: the published scripted transport keeps its promises (byte-exact, ordered, virtual time)."""

from __future__ import annotations

import doctest

import pytest

import labctl.drivers.testing as testing
from labctl.drivers.errors import InstrumentTimeout
from labctl.drivers.testing import Late, ScriptedTransport, block
from labctl.drivers.transport import TransportSettings

FAST = TransportSettings(timeout_s=0.2, retries=0)


def test_docstring_example_runs() -> None:
    result = doctest.testmod(testing)
    assert result.attempted > 0 and result.failed == 0


def test_a_wrong_byte_fails_naming_the_step() -> None:
    transport = ScriptedTransport([("V0?", "+1.0000 V")], settings=FAST)
    with pytest.raises(AssertionError, match="step 0"):
        transport.query("V1?")


def test_late_reply_times_out_then_is_read_by_the_next_read_in_virtual_time() -> None:
    transport = ScriptedTransport([("V3?", Late("+3.0000 V", 0.3)), ("V4?", "+4.0000 V")], settings=FAST)
    with pytest.raises(InstrumentTimeout):
        transport.query("V3?")
    assert transport.now_s == pytest.approx(0.2)
    # the late reply arrives before V4's own: a driver that does not resynchronise reads the wrong value
    assert transport.query("V4?") == "+3.0000 V"
    assert transport.read_line() == "+4.0000 V"
    transport.assert_done()


def test_replies_keep_their_order_and_leftovers_are_reported() -> None:
    transport = ScriptedTransport([("a?", Late("A", 1.0)), ("b?", "B")], settings=TransportSettings(timeout_s=5.0))
    transport.write("a?")
    transport.write("b?")
    assert transport.read_line() == "A" and transport.now_s == pytest.approx(1.0)
    with pytest.raises(AssertionError, match="unread reply bytes"):
        transport.assert_done()


def test_sleep_advances_the_virtual_clock_and_binary_blocks_decode() -> None:
    transport = ScriptedTransport([("DATA?", block(b"\x00\x00\x80\x3f"))], settings=FAST)
    transport.sleep(2.5)
    assert transport.now_s == pytest.approx(2.5)
    assert transport.query_binary("DATA?", "f").tolist() == [1.0]
    transport.assert_done()
