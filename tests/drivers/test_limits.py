"""The one heater-limit rule: the same numbers give the same verdict in channel order and in ring order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.drivers.errors import LimitError
from labctl.drivers.limits import HeaterLimits, ring_namer

CHANNELS = np.array([5, 0, 3, 6, 1, 2])          # ring i is wired to channel CHANNELS[i]
LIMITS = HeaterLimits(mode="voltage", max_drive=np.array([6.0, 5.0, 7.0, 4.0, 6.5, 5.5, 3.0, 0.0]),
                      max_power_w=np.full(8, 0.04), total_power_w=0.15, worst_resistance_ohm=900.0)


def _verdict(limits: HeaterLimits, drive: np.ndarray, index: np.ndarray | None = None) -> bool:
    try:
        limits.check(drive, index)
    except LimitError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(-1.0, 9.0), st.just(float("nan"))), min_size=6, max_size=6))
def test_ring_view_and_channel_order_agree(values: list[float]) -> None:
    drive = np.array(values)
    rings = LIMITS.take(CHANNELS, ring_namer(3))
    assert _verdict(rings, drive) == _verdict(LIMITS, drive, CHANNELS)


def test_messages_name_the_output_in_its_order() -> None:
    rings = LIMITS.take(CHANNELS, ring_namer(3))
    drive = np.full(6, 1.0)
    drive[3] = 4.5                                  # ring (1, 0) is channel 6: limit 3 V
    with pytest.raises(LimitError, match=r"bank 1 ring 0: drive 4\.5 V exceeds the limit 3 V"):
        rings.check(drive)
    with pytest.raises(LimitError, match=r"heaters: channel 6: drive 4\.5 V exceeds the limit 3 V"):
        LIMITS.check(drive, CHANNELS, who="heaters")


def test_batch_rows_and_partial_writes_count_the_budget() -> None:
    uniform = HeaterLimits(mode="voltage", max_drive=np.full(8, 7.0), max_power_w=np.full(8, 0.06),
                           total_power_w=0.15, worst_resistance_ohm=900.0)
    rows = np.full((4, 8), 1.0)
    uniform.check(rows)
    rows[2, :6] = 5.0                               # 6 x 25/900 W = 167 mW > 150 mW budget
    with pytest.raises(LimitError, match="total heater power would reach 168.89 mW"):
        uniform.check(rows)
    state = np.zeros(8)
    state[:4] = 5.0                                 # 111 mW already on
    uniform.check(np.array([3.0]), np.array([4]), state=state)           # +10 mW: fine
    with pytest.raises(LimitError, match="total heater power"):
        uniform.check(np.array([5.0, 5.0]), np.array([4, 5]), state=state)
