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


def test_a_whole_vector_written_in_order_or_not_counts_only_itself() -> None:
    """Writing every output replaces the state: the budget counts the new vector alone, whatever the order the
    outputs are given in and whatever the state was."""
    uniform = HeaterLimits(mode="voltage", max_drive=np.full(8, 7.0), max_power_w=np.full(8, 0.06),
                           total_power_w=0.15, worst_resistance_ohm=900.0)
    state = np.full(8, 6.0)                         # 320 mW on now: over budget by itself
    drive = np.array([3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0])   # 6 x 10 + 2 x 17.8 = 95.6 mW
    order = np.arange(8)
    for index in (order, order[::-1], np.array([1, 0, 2, 3, 4, 5, 6, 7])):
        uniform.check(drive[index], index, state=state)
    over = drive + 1.5                              # 6 x 22.5 + 2 x 33.6 = 202.2 mW
    for index in (order, order[::-1]):
        with pytest.raises(LimitError, match="total heater power would reach 202.22 mW"):
            uniform.check(over[index], index, state=state)


@given(st.lists(st.sampled_from([0.0, -0.0, 0.5, 2.0, 2.0 + 1e-12, 2.1, -1e-300, float("nan"), float("inf"),
                                 float("-inf")]), min_size=3, max_size=3))
@settings(max_examples=200, deadline=None)
def test_the_common_case_test_accepts_exactly_what_the_rule_accepts(values: list[float]) -> None:
    """The whole-vector fast test (least value >= 0, every value <= its limit) accepts a vector exactly when every
    value is >= 0 and within its limit, whole vector or gathered channels alike."""
    limits = HeaterLimits(mode="voltage", max_drive=np.array([2.0, 2.0, 3.0]))
    drive = np.array(values)
    ok = bool(np.all((drive >= 0) & (drive <= limits.max_drive * (1 + limits.rtol))))
    for index in (None, np.array([0, 1, 2]), np.array([2, 1, 0])):
        limit = limits.max_drive if index is None else limits.max_drive[index]
        ok = bool(np.all((drive >= 0) & (drive <= limit * (1 + limits.rtol))))
        try:
            limits.check(drive, index)
        except LimitError:
            assert not ok
        else:
            assert ok
