"""Per-channel readings and spectra through the emulated instruments (ground truth only in the assertions)."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from labctl.bench.bench import Bench
from labctl.bench.config import embedded_bench_path
from labctl.drivers.interfaces import BenchSession
from labctl.calibration.measure import SpectrumSession, channel_weights_raw, lasers_restored, spectra
from labctl.drivers.errors import LimitError

FACET = 10 ** (-3.0 / 10)          # reference chip: 3 dB per facet
RESPONSIVITY_A_PER_W = 0.9


# -- small emulated benches (shared by the calibration tests) ----------------------------------------------------------
def bench_file(tmp: Path, kind: str = "default", *, n_banks: int = 2, n_rings: int = 4, seed: int = 0,
               spacing_m: float = 1.0e-9, spec: dict[str, dict[str, Any]] | None = None) -> Path:
    """An emulated bench like the embedded ``kind`` one ('default', 'current', 'adc') with a smaller chip (one
    channel per ring)."""
    cfg = tomllib.loads(Path(embedded_bench_path(kind)).read_text())
    n_ch = n_rings
    cfg["bench"]["name"] = f"test-{kind}-{n_banks}x{n_rings}-{seed}-{spacing_m:g}"
    chip_spec: dict[str, dict[str, Any]] = {"layout": {"n_banks": n_banks, "n_rings": n_rings},
                                            "lasers": {"n_channels": n_ch, "channel_spacing_m": spacing_m}}
    for key, value in (spec or {}).items():
        chip_spec.setdefault(key, {}).update(value)
    cfg["chip"] = {"seed": seed, "spec": {**cfg["chip"].get("spec", {}), **chip_spec}}
    lasers = [f"laser{k}" for k in range(n_ch)]
    instruments = {k: v for k, v in cfg["instruments"].items() if not k.startswith("laser") or k in lasers}
    wiring = cfg["wiring"]
    wiring.update(banks=n_banks, rings=n_rings, lasers=lasers,
                  wavelengths_m=[1550e-9 + spacing_m * k for k in range(n_ch)])
    wiring["heaters"]["channels"] = list(range(n_banks * n_rings))
    if kind == "default":
        wiring["detectors"] = [{"instrument": "meter", "through_port": 2 * b, "drop_port": 2 * b + 1}
                               for b in range(n_banks)]
    elif kind == "adc":
        wiring["detectors"] = wiring["detectors"][:n_banks]
    else:
        instruments = {k: v for k, v in instruments.items() if not k.startswith("smu") or int(k[3:]) < n_banks}
        wiring["detectors"] = [{"instrument": f"smu{b}"} for b in range(n_banks)]
    cfg["instruments"] = instruments
    path = tmp / f"{cfg['bench']['name']}.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


@contextmanager
def open_bench(path: Path | str, lock_dir: Path) -> Iterator[tuple[Bench, BenchSession, Any]]:
    with Bench.open(path, lock_dir=lock_dir) as bench:
        yield bench, bench.session(), bench.emulation.chip


def outputs(hw: BenchSession) -> list[bool]:
    return [bool(laser.get_output()) for laser in hw.lasers]


# -- channel_weights_raw -----------------------------------------------------------------------------------------------
def test_channel_weights_raw_reads_one_laser_at_a_time(tmp_path: Path) -> None:
    with open_bench(bench_file(tmp_path), tmp_path) as (_, hw, chip):
        hw.lasers[1].set_output(False)                       # a mixed state, to be restored
        before = outputs(hw)
        t0, n0 = hw.elapsed_s(), hw.transaction_count()
        raw = channel_weights_raw(hw)
        assert outputs(hw) == before
        assert raw.shape == (hw.n_banks, hw.n_channels)
        # each column is that laser alone: (drop - through) at the meter = P * facets^2 * weight (bus input)
        power = chip.laser_power_w()
        truth = chip.truth_weights(np.zeros((1, hw.n_banks * hw.n_rings)), hw.mode)[0]   # (B, C)
        scale = power[None, :] * FACET ** 2
        assert np.max(np.abs(raw / scale - truth)) < 0.01        # meter linearity 0.02 dB, 16 bits
        # cost: one laser stabilisation (1 s) per channel and one for all the restored outputs together (they
        # stabilise in parallel), no wall-clock sleeping
        assert hw.n_channels + 0.9 < hw.elapsed_s() - t0 < hw.n_channels + 1.5
        assert hw.transaction_count() > n0


def test_channel_weights_raw_subset_order_and_no_restore(tmp_path: Path) -> None:
    with open_bench(bench_file(tmp_path), tmp_path) as (_, hw, _chip):
        full = channel_weights_raw(hw)
        sub = channel_weights_raw(hw, channels=np.array([3, 0]), restore_lasers=False)
        assert sub.shape == (hw.n_banks, 2)
        assert np.allclose(sub, full[:, [3, 0]], rtol=0.01, atol=2e-6)
        assert not any(outputs(hw))
        with pytest.raises(LimitError):
            channel_weights_raw(hw, channels=np.array([hw.n_channels]))


def test_a_loop_of_readings_restores_the_lasers_once(tmp_path: Path) -> None:
    """Readings without restoring, inside lasers_restored: every output back as it was, on the error path too,
    and a reading costs one stabilisation per channel (none for restoring in between)."""
    with open_bench(bench_file(tmp_path), tmp_path) as (_, hw, _chip):
        hw.lasers[2].set_output(False)
        before = outputs(hw)
        t0 = hw.elapsed_s()
        with lasers_restored(hw):
            for _ in range(3):
                channel_weights_raw(hw, restore_lasers=False)
        assert outputs(hw) == before
        assert 3 * hw.n_channels + 0.9 < hw.elapsed_s() - t0 < 3 * hw.n_channels + 3.0   # restoring each: +9 s
        with pytest.raises(RuntimeError), lasers_restored(hw):
            channel_weights_raw(hw, restore_lasers=False)
            raise RuntimeError("a failure mid-loop")
        assert outputs(hw) == before


def test_ctrl_c_during_a_laser_stabilisation_leaves_that_laser_off(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The 1 s wait after a laser is switched on is where a Ctrl-C most likely lands: the reading's cleanup still
    knows that laser is on and switches it off (every output was off before the reading)."""
    with open_bench(bench_file(tmp_path), tmp_path) as (_, hw, _chip):
        for laser in hw.lasers:
            laser.set_output(False)
        sleep = hw.clock.sleep
        fired: list[float] = []

        def interrupted(seconds: float, category: str = "wait") -> None:
            if seconds >= 0.5 and not fired:
                fired.append(seconds)
                raise KeyboardInterrupt
            sleep(seconds, category)

        monkeypatch.setattr(hw.clock, "sleep", interrupted)
        with pytest.raises(KeyboardInterrupt):
            channel_weights_raw(hw)
        assert fired and not any(outputs(hw))


@pytest.mark.parametrize("kind", ["current", "adc"])
def test_channel_weights_raw_on_photodiodes(tmp_path: Path, kind: str) -> None:
    """Neither the 2400 nor the DAQ integrates 100 us: the next accepted integration time is used; readings in amps
    (the DAQ's volts converted back through each TIA's gain and offset)."""
    with open_bench(bench_file(tmp_path, kind), tmp_path) as (_, hw, chip):
        raw = channel_weights_raw(hw)
        truth = chip.truth_weights(np.zeros((1, hw.n_banks * hw.n_rings)), hw.mode)[0]
        scale = chip.laser_power_w()[None, :] * FACET * RESPONSIVITY_A_PER_W
        assert hw.readout.unit == "A"
        assert np.max(np.abs(raw / scale - truth)) < 0.01


# -- spectra -----------------------------------------------------------------------------------------------------------
def test_sweep_spectra_match_the_chip(tmp_path: Path) -> None:
    with open_bench(bench_file(tmp_path), tmp_path) as (_, hw, chip):
        before = outputs(hw)
        home = hw.lasers[0].get_wavelength_m()
        t0 = hw.elapsed_s()
        wall = time.perf_counter()
        sp = spectra(hw, 1549.0e-9, 1554.0e-9, 2e-12)
        wall = time.perf_counter() - wall
        assert outputs(hw) == before and hw.lasers[0].get_wavelength_m() == home
        assert sp.through is not None and sp.drop is not None and sp.unit == "W"
        assert sp.wavelength_m.size == 2501 and np.allclose(np.diff(sp.wavelength_m), 2e-12)
        e_thr, e_drop = chip.truth_fields(np.zeros((1, hw.n_banks * hw.n_rings)), hw.mode,
                                          wavelength_m=sp.wavelength_m)
        scale = sp.laser_power_w * FACET ** 2
        assert np.max(np.abs(sp.through / scale - np.abs(e_thr[0].T) ** 2)) < 0.01
        assert np.max(np.abs(sp.drop / scale - np.abs(e_drop[0].T) ** 2)) < 0.01
        assert np.allclose(sp.balanced, sp.drop - sp.through)
        # bench time: the 5 nm sweep at 10 nm/s plus the other lasers off and back on together (they stabilise
        # in parallel: one 1 s pause for all, not one each)
        elapsed = hw.elapsed_s() - t0
        assert 0.5 + 0.9 < elapsed < 0.5 + 1.0 + 0.6
        assert wall < elapsed


def test_session_fetches_through_only(tmp_path: Path) -> None:
    with open_bench(bench_file(tmp_path), tmp_path) as (_, hw, _chip):
        with SpectrumSession(hw, 0, through_only=True) as session:
            a = session.scan(1549.5e-9, 1550.5e-9, 5e-12)
            b = session.scan(1549.5e-9, 1550.5e-9, 5e-12)
        assert a.drop is None and a.through is not None and np.all(np.isnan(a.balanced))
        assert session.scans == 2 and np.allclose(a.through, b.through, rtol=0.01, atol=1e-7)


@pytest.mark.parametrize("kind", ["current", "adc"])
def test_stepped_spectra_on_photodiodes(tmp_path: Path, kind: str) -> None:
    with open_bench(bench_file(tmp_path, kind, n_banks=1, n_rings=2), tmp_path) as (_, hw, chip):
        before = outputs(hw)
        home = hw.lasers[0].get_wavelength_m()
        t0 = hw.elapsed_s()
        sp = spectra(hw, 1549.4e-9, 1550.0e-9, 20e-12)
        assert outputs(hw) == before and hw.lasers[0].get_wavelength_m() == pytest.approx(home)
        assert sp.through is None and sp.drop is None and sp.unit == "A"
        assert sp.balanced.shape == (31, 1)
        truth = chip.truth_weights(np.zeros((1, 2)), hw.mode, wavelength_m=sp.wavelength_m)[0].T
        scale = sp.laser_power_w * FACET * RESPONSIVITY_A_PER_W
        # commanded wavelengths; the laser lands within +-1 pm (up to ~1.5 % of the span on the flanks)
        assert np.max(np.abs(sp.balanced / scale - truth)) < 0.04
        assert hw.elapsed_s() - t0 > 31 * 0.1                  # one retune per point


def test_spectra_refuse_bad_scans(tmp_path: Path) -> None:
    with open_bench(bench_file(tmp_path), tmp_path) as (_, hw, _chip):
        before = outputs(hw)
        with pytest.raises(LimitError):
            spectra(hw, 1551e-9, 1550e-9, 2e-12)
        with pytest.raises(LimitError):                      # 0.1 ms averaging does not fit a 0.1 pm step
            spectra(hw, 1550e-9, 1550.1e-9, 0.1e-12)
        assert outputs(hw) == before
