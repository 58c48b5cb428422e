"""The session's batch (``Session.read_configurations``) on the embedded default bench: the overlapped loop reads
what one visit at a time reads, writes only the rings that change with every write checked by the safety layer,
disturbs no reading, and its counters and time per operation kind match the schedule it ran."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from labctl.bench.bench import Bench
from labctl.bench.config import load_bench
from labctl.bench.session import KINDS, Session
from labctl.drivers.errors import LimitError
from tests.labctl.bench.test_bench import TransportAudit

AVERAGING_S = 1e-4


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    config, digest = load_bench()
    b = Bench.connect(config, digest, lock_dir=tmp_path_factory.mktemp("locks"))
    try:
        with b.guard:
            s = b.session()
            for k, laser in enumerate(s.lasers):
                laser.set_wavelength_m(float(s.wavelengths_m[k]))
                laser.set_power_w(1e-3)
                laser.set_output(True)
            s.readout.configure(float(np.mean(s.wavelengths_m)), AVERAGING_S)
            yield b
    finally:
        b.close()


def _drives(session: Session, n: int, seed: int) -> np.ndarray:
    """Safe random ring drives (V): every ring somewhere within a quarter of its limit."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 0.25, (n, session.ring_channels.size)) * session.max_drive


def _powers(session: Session, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.3e-3, 1.5e-3, (n, session.n_channels))


def _one_at_a_time(session: Session, drives: np.ndarray, powers: np.ndarray,
                   visits: list[tuple[int, int]]) -> np.ndarray:
    """The plain loop: blocking writes, settle, one reading per visit."""
    out = np.empty((drives.shape[0], powers.shape[0], session.n_banks))
    session.forget_lasers()
    for cfg, i in visits:
        session.set_ring_drive(drives[cfg])
        session.set_laser_powers(powers[i])
        out[cfg, i] = session.readout.read().balanced
    session.forget_lasers()
    return out


def _visits(n_cfg: int, n_enc: int) -> list[tuple[int, int]]:
    """Back and forth over the configurations, one encoding after the other (the engine's sample order)."""
    return [(t if i % 2 == 0 else n_cfg - 1 - t, i) for i in range(n_enc) for t in range(n_cfg)]


def test_the_overlapped_loop_reads_what_one_visit_at_a_time_reads(bench: Bench) -> None:
    s = bench.session()
    chip = bench.emulation.chip
    drives, powers = _drives(s, 4, seed=1), _powers(s, 3, seed=2)
    visits = _visits(4, 3)
    plain = _one_at_a_time(s, drives, powers, visits)
    disturbed = chip.disturbed_readings
    batch, counts, current = s.read_configurations(drives, powers, visits, current=None)
    assert chip.disturbed_readings == disturbed                  # no command landed inside a reading's window
    assert current == visits[-1][0] and counts.readings == len(visits)
    scale = np.abs(plain).max()
    # the same products within the meter's noise and linearity (and the chip's drift between the two passes)
    np.testing.assert_allclose(batch, plain, rtol=0.01, atol=2e-3 * scale)


def test_only_changed_rings_are_written_and_every_write_is_checked(bench: Bench) -> None:
    s = bench.session()
    drives = np.repeat(_drives(s, 1, seed=3), 3, axis=0)
    drives[1, 10:13] *= 0.5                                       # bank 1, rings 0-2: channels 10-12, one module
    drives[2, 20:40] = 0.9 * s.max_drive[20:40]                   # banks 2 and 3 near their limits
    powers = _powers(s, 1, seed=4)
    s.read_configurations(drives[:1], powers, [(0, 0)])
    audit = TransportAudit(bench)
    try:
        s.read_configurations(drives, powers, [(1, 0)], current=0)
        writes = audit.heater_values()
        assert [sorted(w) for w in writes] == [[10, 11, 12]]     # one VVEC line, only the changed channels
        assert s.heaters.applied[s.ring_channels] == pytest.approx(drives[1])  # type: ignore[attr-defined]
        audit.lines.clear()
        with pytest.raises(LimitError):                           # 0.9 x the per-ring limit everywhere: total
            s.read_configurations(drives, powers, [(2, 0)], current=1)   # power beyond the bench's budget
        assert audit.heater_values() == []                        # refused before any line went out
        assert s.heaters.applied[s.ring_channels] == pytest.approx(drives[1])  # type: ignore[attr-defined]
    finally:
        audit.restore()


def test_counts_and_time_per_kind_match_the_schedule(bench: Bench) -> None:
    s = bench.session()
    drives, powers = _drives(s, 3, seed=5), _powers(s, 4, seed=6)
    visits = _visits(3, 4)
    s.read_configurations(drives[:1], powers[:1], [(0, 0)])      # configuration 0 and encoding 0 applied
    t0, x0 = s.clock.now_s, s.transaction_count()
    _, counts, _ = s.read_configurations(drives, powers, visits, current=0)
    config_changes = sum(1 for k, (t, _) in enumerate(visits) if t != (0 if k == 0 else visits[k - 1][0]))
    assert (counts.configs, counts.encodings, counts.readings) == (config_changes, 3, 12)
    assert set(counts.time_s) == set(KINDS)
    assert sum(counts.time_s.values()) == pytest.approx(s.clock.now_s - t0, rel=1e-12)
    assert sum(counts.transactions.values()) == s.transaction_count() - x0
    timing = s.timing
    assert timing is not None
    # a configuration: five Qontrol lines and the settle; a reading travels while the next lines go out
    assert counts.time_s["configure"] == pytest.approx(counts.configs * (5 * timing["serial_line_s"]
                                                                         + s.settle_time_s), rel=1e-9)
    assert counts.time_s["read"] == pytest.approx(0.0, abs=1e-12)
    # an encoding: ten power commands back to back, the last one settles, the reading in flight is collected first
    per_encoding = (AVERAGING_S + timing["meter_overhead_s"] + 9 * timing["scpi_query_s"]
                    + timing["laser_power_change_s"] + timing["scpi_query_s"])
    assert counts.time_s["encode"] == pytest.approx(counts.encodings * per_encoding, rel=1e-9)
