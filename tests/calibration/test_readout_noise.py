"""The readout noise probe chooses the cheapest averaging whose measured noise is good enough (readout_noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.bench.bench import Bench
from labctl.bench.config import embedded_bench_path
from labctl.calibration.readout_noise import TARGET_RELATIVE_NOISE, choose_averaging, reading_steps


def noisy_current_bench(tmp_path: Path, input_noise_a_per_rthz: float) -> Path:
    """The embedded current bench with the detector's input noise set (the quiet reference chip: 5e-12)."""
    text = embedded_bench_path("current").read_text()
    text += f"\n[chip.spec.detector]\ninput_noise_a_per_rthz = {input_noise_a_per_rthz!r}\n"
    path = tmp_path / "noisy.toml"
    path.write_text(text)
    return path


def probe(path: Path, tmp_path: Path):
    with Bench.open(path, lock_dir=tmp_path) as bench:
        return choose_averaging(bench.session())


def test_a_quiet_source_meter_bench_takes_the_shortest_integration(tmp_path: Path) -> None:
    choice = probe(embedded_bench_path("current"), tmp_path)
    assert choice.met_target and len(choice.probe) == 1
    assert choice.averaging_time_s == pytest.approx(2e-4)        # 0.01 NPLC at 50 Hz: the 2400's shortest
    assert choice.probe[0].requested_s == pytest.approx(1e-4)    # asked for 0.1 ms, the readout rounded it up


def test_a_noisy_detector_gets_a_longer_integration_just_long_enough(tmp_path: Path) -> None:
    # 1000x the input noise: 0.25 uA rms at 0.2 ms against a ~0.37 mA signal, far above 1e-4 of it
    choice = probe(noisy_current_bench(tmp_path, 5e-9), tmp_path)
    assert choice.met_target
    rejected, chosen = choice.probe[:-1], choice.probe[-1]
    assert rejected and all(not p.good for p in rejected)
    assert chosen.good and chosen.averaging_time_s == choice.averaging_time_s
    assert choice.averaging_time_s > 2e-4
    # noise falls with the integration time (about 1/sqrt(t)), so the longer setting is the quieter one
    assert chosen.noise_rms < min(p.noise_rms for p in rejected)
    assert all(p.relative_noise > TARGET_RELATIVE_NOISE for p in rejected)


def test_the_default_bench_keeps_its_averaging(tmp_path: Path) -> None:
    choice = probe(embedded_bench_path("default"), tmp_path)
    assert choice.averaging_time_s == pytest.approx(1e-4) and choice.probe[0].relative_noise < TARGET_RELATIVE_NOISE


def test_reading_steps_show_the_resolution() -> None:
    readings = np.array([[1.0, 5.0], [1.5, 5.0], [2.5, 5.0]])
    np.testing.assert_array_equal(reading_steps(readings), [0.5, np.inf])


def test_dfa_takes_the_cheapest_measured_setting_within_its_target() -> None:
    from labctl.calibration.readout_noise import averaging_for

    record = {"averaging_time_s": 0.1, "probe": [
        {"averaging_time_s": 2e-4, "relative_noise": 4e-3}, {"averaging_time_s": 1e-3, "relative_noise": 2e-3},
        {"averaging_time_s": 1e-2, "relative_noise": 6e-4}, {"averaging_time_s": 0.1, "relative_noise": 2e-4}]}
    assert averaging_for(record, 1e-3) == 1e-2
    assert averaging_for(record, 1e-5) == 0.1            # nothing measured meets it: the calibration's choice
    assert averaging_for({"averaging_time_s": 1e-4}, 1e-3) == 1e-4      # not probed
    assert averaging_for(None, 1e-3) is None
