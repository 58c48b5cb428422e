"""Bench files for real labs: the shipped examples validate, and limits are held against the instruments' full scale
and a photonic chip's plausible bounds before anything connects, each problem one line with its key path."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from labctl.bench.bench import Bench
from labctl.bench.config import BenchConfigError, embedded_bench_path, example_bench_paths, load_bench, parse_bench
from labctl.drivers.errors import InstrumentConnectionError

EXAMPLES = example_bench_paths()


def test_examples_are_shipped_and_cover_the_drivers() -> None:
    drivers = {inst["driver"] for path in EXAMPLES for inst in tomllib.loads(path.read_text())["instruments"].values()}
    # every bench-capable driver appears; the PM100 is a single-port meter and a bank needs through and drop ports
    # on one meter, so it has no example bench
    assert drivers == {"qontrol", "greymatter", "keysight_n777xc", "keysight_n774xa", "keysight_8164b",
                       "santec_tsl570", "keithley_2400", "keysight_daq970a"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_bench_files_validate_with_placeholder_addresses(path: Path) -> None:
    config, digest = load_bench(path)
    assert config.bench.kind == "real" and config.chip is None and len(digest) == 64
    for name, inst in config.instruments.items():
        assert inst.address is not None
        # placeholders only: the documentation network, a serial device path, or a GPIB factory address
        assert inst.address.startswith(("TCPIP0::192.0.2.", "/dev/tty", "GPIB0::")), (name, inst.address)
    assert "PLACEHOLDER" in path.read_text()


def adc_dict() -> dict:
    return tomllib.loads(embedded_bench_path("adc").read_text())


def problems_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(BenchConfigError) as info:
        parse_bench(data, "test.toml")
    assert all("\n" not in m for _, m in info.value.problems)
    return info.value.problems


def edited(edit) -> dict:
    data = copy.deepcopy(adc_dict())
    edit(data)
    return data


@pytest.mark.parametrize("edit, path, text", [
    (lambda d: (d["instruments"]["heaters"].update(model="Q8iv"), d["limits"].update(heater_max_voltage_v=15.0)),
     "limits.heater_max_voltage_v", "15 V exceeds the Qontrol Q8iv full scale 12 V"),
    (lambda d: d["limits"].update(heater_max_voltage_v=[7.0] * 5 + [13.0] + [7.0] * 34),
     "limits.heater_max_voltage_v.5", "13 V exceeds the largest Qontrol (Q8iv, Q8b, Q8a, Q8bi) full scale 12 V"),
    (lambda d: (d["instruments"]["heaters"].update(model="Q8iv"), d["wiring"]["heaters"].update(mode="current"),
                d["limits"].update(heater_max_current_a=0.03)),
     "limits.heater_max_current_a", "30 mA exceeds the Qontrol Q8iv full scale 24 mA"),
    (lambda d: (d["instruments"]["heaters"].update(model="Q8a"), d["wiring"]["heaters"].update(mode="current"),
                d["limits"].update(heater_max_current_a=0.12)),
     "limits.heater_max_current_a", "120 mA exceeds the Qontrol Q8a full scale 100 mA"),
    (lambda d: (d["instruments"]["heaters"].update(driver="greymatter"), d["wiring"]["heaters"].update(
        mode="current"), d["limits"].update(heater_max_current_a=0.4)),
     "limits.heater_max_current_a", "400 mA exceeds the greymatter LTC2662 (300 mA span) full scale 300 mA"),
    (lambda d: d["limits"].update(laser_max_power_w=0.06),
     "limits.laser_max_power_w", "60 mW of laser0 exceeds the Keysight laser power setting full scale 50 mW"),
    (lambda d: (d["instruments"]["laser3"].update(driver="santec_tsl570"), d["limits"].update(laser_max_power_w=0.03)),
     "limits.laser_max_power_w", "30 mW of laser3 exceeds the Santec TSL-570 power setting (+13 dBm) full scale 19.9"),
    (lambda d: d["instruments"]["heaters"].update(model="Q8x"), "instruments.heaters.model",
     "'Q8x' is not a model the qontrol driver drives (Q8iv, Q8b, Q8a, Q8bi)"),
    (lambda d: d["instruments"]["adc"].update(model="34465A"), "instruments.adc.model", "keysight_daq970a"),
    (lambda d: d["wiring"]["heaters"].update(instrument="adc"), "wiring.heaters.instrument",
     "'adc' (keysight_daq970a) is not a heater driver"),
    (lambda d: d["wiring"]["lasers"].__setitem__(2, "adc"), "wiring.lasers.2", "is not a laser driver"),
])
def test_limits_beyond_the_instruments_full_scale_are_refused(edit, path, text) -> None:
    problems = problems_of(edited(edit))
    assert any(p == path and text in m for p, m in problems), problems


@pytest.mark.parametrize("key, value, text", [
    ("heater_max_power_w", 10.0, "10 W is above the plausible 100 mW for a photonic chip"),
    ("total_heater_power_w", 10.0, "10 W is above the plausible 3 W"),
    ("laser_max_power_w", 10.0, "10 W is above the plausible 100 mW"),
    ("heater_min_resistance_ohm", 1.0, "1 Ohm is below the plausible 10 Ohm"),
])
def test_implausible_limits_are_refused_unless_forced(key: str, value: float, text: str) -> None:
    problems = problems_of(edited(lambda d: d["limits"].update({key: value})))
    assert any(p == f"limits.{key}" and text in m and "limits.force_implausible" in m for p, m in problems), problems
    if key != "laser_max_power_w":            # 10 W is also beyond every laser's full scale: never accepted
        forced = edited(lambda d: d["limits"].update({key: value, "force_implausible": [key]}))
        if key == "heater_min_resistance_ohm":
            forced["limits"]["heater_min_resistance_ohm"] = value
        assert parse_bench(forced, "forced.toml").limits.force_implausible == [key]


def test_forcing_an_unknown_key_is_an_error() -> None:
    problems = problems_of(edited(lambda d: d["limits"].update(force_implausible=["heater_max_voltage_v"])))
    assert any(p == "limits.force_implausible" and "'heater_max_voltage_v' has no plausibility bound" in m
               for p, m in problems), problems


def test_limit_problems_connect_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(embedded_bench_path("adc").read_text().replace("laser_max_power_w = 0.010",
                                                                   "laser_max_power_w = 10.0"))
    locks = tmp_path / "locks"
    with pytest.raises(BenchConfigError, match="limits.laser_max_power_w"):
        with Bench.open(bad, lock_dir=locks):
            pass
    assert not locks.exists()


def test_the_model_named_in_the_bench_file_is_checked_at_connect(tmp_path: Path) -> None:
    heaters = '[instruments.heaters]\ndriver = "qontrol"'
    text = embedded_bench_path("default").read_text().replace(heaters, heaters + '\nmodel = "Q8b"')
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(text)
    with pytest.raises(InstrumentConnectionError, match=r"instruments.heaters.model: the bench file says 'Q8b', the "
                                                        r"instrument is Qontrol Q8iv"):
        with Bench.open(wrong, lock_dir=tmp_path):
            pass
    right = tmp_path / "right.toml"
    right.write_text(text.replace('model = "Q8b"', 'model = "Q8iv"'))
    with Bench.open(right, lock_dir=tmp_path) as bench:          # the lock was released by the failed open
        assert bench.identities["heaters"].startswith("Qontrol Q8iv")
