"""Safety layer: whole-vector validation before any write, ramps, read-back, safe state on every exit path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.drivers.errors import InstrumentConnectionError, InstrumentError, LimitError
from labctl.bench.safety import SafeHeaterDriver, SafeLaser, SafeStateGuard
from labctl.drivers.limits import HeaterLimits


class RecordingHeaters:
    """A heater driver that records what reaches it (stands in for the transport in these unit tests)."""

    def __init__(self, n: int = 4, mode: str = "voltage") -> None:
        self.name, self.address, self.n_channels, self.mode = "heaters", "TEST", n, mode
        self.values = np.zeros(n)
        self.writes: list[tuple[np.ndarray, np.ndarray]] = []
        self.dead = False

    def set_drive(self, values, channels=None) -> None:
        if self.dead:
            raise InstrumentConnectionError("gone", instrument=self.name, address=self.address)
        idx = np.arange(self.n_channels) if channels is None else np.asarray(channels)
        self.writes.append((np.array(values, dtype=float), idx.copy()))
        self.values[idx] = values

    def read_drive(self) -> np.ndarray:
        return self.values.copy()

    def read_power_w(self):
        return None

    def max_drive(self) -> np.ndarray:
        return np.full(self.n_channels, 12.0)

    def safe_state(self) -> None:
        self.set_drive(np.zeros(self.n_channels))

    def identity(self):
        return None

    def check_errors(self) -> None:
        pass

    def close(self) -> None:
        pass


def limits(n: int = 4, **kw) -> HeaterLimits:
    base = dict(mode="voltage", max_drive=np.full(n, 7.0), max_power_w=np.full(n, 0.040), total_power_w=0.1,
                worst_resistance_ohm=1000.0)
    base.update(kw)
    return HeaterLimits(**base)


def test_valid_vector_is_written_once() -> None:
    inner = RecordingHeaters()
    safe = SafeHeaterDriver(inner, limits())
    safe.set_drive(np.array([1.0, 2.0, 3.0, 4.0]))
    assert len(inner.writes) == 1 and np.allclose(inner.values, [1, 2, 3, 4])


@pytest.mark.parametrize("values, match", [
    ([1.0, np.nan, 0.0, 0.0], "channel 1.*not finite"),
    ([1.0, 0.0, -0.5, 0.0], "channel 2.*negative"),
    ([1.0, 0.0, 0.0, 7.5], "channel 3.*exceeds the limit 7 V"),
    ([6.0, 6.0, 6.0, 0.0], "total heater power"),
    ([1.0, 2.0], "2 values for 4 channels"),
])
def test_bad_vectors_raise_and_write_nothing(values, match) -> None:
    inner = RecordingHeaters()
    safe = SafeHeaterDriver(inner, limits())
    with pytest.raises(LimitError, match=match):
        safe.set_drive(np.array(values))
    assert inner.writes == []


def test_per_heater_power_limit_uses_worst_case_resistance() -> None:
    inner = RecordingHeaters()
    safe = SafeHeaterDriver(inner, limits(worst_resistance_ohm=800.0))
    with pytest.raises(LimitError, match="channel 0.*per-heater limit 40 mW"):
        safe.set_drive(np.array([6.0]), channels=np.array([0]))  # 36 / 800 = 45 mW
    assert inner.writes == []


def test_total_budget_counts_channels_already_on() -> None:
    inner = RecordingHeaters()
    safe = SafeHeaterDriver(inner, limits())
    safe.set_drive(np.array([6.0, 6.0]), channels=np.array([0, 1]))  # 72 mW
    with pytest.raises(LimitError, match="total heater power"):
        safe.set_drive(np.array([6.0]), channels=np.array([2]))  # would reach 108 mW
    assert len(inner.writes) == 1


def test_ramp_splits_writes_and_each_step_is_small() -> None:
    inner = RecordingHeaters()
    safe = SafeHeaterDriver(inner, limits(ramp_step=0.5))
    safe.set_drive(np.array([2.0, 0.0, 0.0, 1.0]))
    steps = np.array([w[0] for w in inner.writes])
    assert len(steps) == 4
    assert np.all(np.abs(np.diff(np.vstack([np.zeros(4), steps]), axis=0)) <= 0.5 + 1e-12)
    assert np.allclose(inner.values, [2, 0, 0, 1])


def test_readback_mismatch_is_reported() -> None:
    inner = RecordingHeaters()
    inner.read_drive = lambda: np.array([1.0, 0.0, 0.0, 0.0])  # type: ignore[method-assign]
    safe = SafeHeaterDriver(inner, limits(), readback_tolerance=1e-3)
    with pytest.raises(InstrumentError, match="read-back of channel 1"):
        safe.set_drive(np.array([1.0, 1.0, 0.0, 0.0]))


def test_current_mode_limits() -> None:
    inner = RecordingHeaters(mode="current")
    lim = limits(mode="current", max_drive=np.full(4, 0.008), worst_resistance_ohm=1100.0)
    safe = SafeHeaterDriver(inner, lim)
    safe.set_drive(np.array([0.005, 0, 0, 0]))
    with pytest.raises(LimitError, match="per-heater limit"):
        safe.set_drive(np.array([0.0065]), channels=np.array([1]))  # 46 mW at 1.1 kOhm


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(min_value=-100, max_value=100),
                          st.sampled_from([float("nan"), float("inf"), -float("inf")])), min_size=4, max_size=4),
       st.floats(min_value=0.1, max_value=7.0))
def test_property_nothing_out_of_limits_reaches_the_driver(values, ramp) -> None:
    inner = RecordingHeaters()
    lim = limits(ramp_step=ramp)
    safe = SafeHeaterDriver(inner, lim)
    try:
        safe.set_drive(np.array(values))
    except LimitError:
        pass
    for written, idx in inner.writes:
        full = inner.values * 0
        full[idx] = written
        assert np.all(np.isfinite(written)) and np.all(written >= 0) and np.all(written <= 7.0)
        assert np.all(lim.power_w(written) <= 0.040 + 1e-12)
    assert lim.power_w(inner.values).sum() <= lim.total_power_w + 1e-12


class FakeLaser:
    def __init__(self) -> None:
        self.name, self.address = "laser0", "TEST"
        self.power = 0.0
        self.sets: list[float] = []
        self.on = True

    def set_power_w(self, p: float) -> None:
        self.sets.append(p)
        self.power = p

    def get_power_w(self) -> float:
        return self.power

    def safe_state(self) -> None:
        self.on = False


def test_laser_power_limit_and_ramp() -> None:
    inner = FakeLaser()
    laser = SafeLaser(inner, max_power_w=2e-3, ramp_step_w=0.5e-3)
    laser.set_power_w(1.5e-3)
    assert inner.sets == pytest.approx([0.5e-3, 1.0e-3, 1.5e-3])
    with pytest.raises(LimitError, match="exceeds the bench limit"):
        laser.set_power_w(3e-3)
    with pytest.raises(LimitError, match="not a finite"):
        laser.set_power_w(float("nan"))
    assert inner.power == pytest.approx(1.5e-3)


def test_guard_makes_safe_on_exception_and_skips_a_dead_instrument() -> None:
    dead, alive, laser = RecordingHeaters(), RecordingHeaters(), FakeLaser()
    dead.dead = True
    alive.values[:] = 3.0
    guard = SafeStateGuard()
    guard.register("dead heaters", dead.safe_state)
    guard.register("heaters", alive.safe_state)
    guard.register("laser", laser.safe_state)
    with pytest.raises(RuntimeError, match="boom"):
        with guard:
            raise RuntimeError("boom")
    assert np.all(alive.values == 0) and laser.on is False
    assert [name for name, _ in guard.failures] == ["dead heaters"]


def test_guard_makes_safe_on_keyboard_interrupt() -> None:
    heaters = RecordingHeaters()
    heaters.values[:] = 1.0
    guard = SafeStateGuard()
    guard.register("heaters", heaters.safe_state)
    with pytest.raises(KeyboardInterrupt):
        with guard:
            raise KeyboardInterrupt
    assert np.all(heaters.values == 0)
