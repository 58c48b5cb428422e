"""Bench files: each kind of mistake is reported with its key path, and nothing connects."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
import tomli_w

from labctl.bench.config import BenchConfigError, embedded_bench_path, load_bench, parse_bench


def default_dict() -> dict:
    return tomllib.loads(embedded_bench_path("default").read_text())


def problems_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(BenchConfigError) as info:
        parse_bench(data, "test.toml")
    return info.value.problems


@pytest.mark.parametrize("name", ["default", "current", "adc"])
def test_embedded_benches_are_valid(name: str) -> None:
    config, digest = load_bench(embedded_bench_path(name))
    assert config.bench.kind == "emulated" and len(digest) == 64
    assert len(config.wiring.heaters.channels) == config.wiring.banks * config.wiring.rings


def test_default_is_the_embedded_default() -> None:
    assert load_bench()[1] == load_bench(embedded_bench_path("default"))[1]


def mutate(edit) -> dict:
    data = copy.deepcopy(default_dict())
    edit(data)
    return data


@pytest.mark.parametrize("edit, path, text", [
    (lambda d: d["instruments"]["heaters"].update(driver="qontorl"), "instruments.heaters.driver", "unknown driver"),
    (lambda d: d["instruments"]["meter"].update(adress="x"), "instruments.meter.adress", "Extra inputs"),
    (lambda d: d["limits"].update(heater_max_voltage_v=-1.0), "limits.heater_max_voltage_v", "finite and > 0"),
    (lambda d: d["limits"].update(heater_max_voltage_v=float("nan")), "limits.heater_max_voltage_v", "finite"),
    (lambda d: d["limits"].update(total_heater_power_w=0), "limits.total_heater_power_w", "greater than 0"),
    (lambda d: d["limits"].pop("laser_max_power_w"), "limits.laser_max_power_w", "Field required"),
    (lambda d: d["wiring"]["heaters"].update(channels=list(range(39))), "wiring.heaters.channels", "39 channels"),
    (lambda d: d["wiring"]["heaters"].update(channels=[0] * 40), "wiring.heaters.channels", "more than one ring"),
    (lambda d: d["wiring"].update(lasers=["laser0", "nolaser"]), "wiring.lasers.1", "not an instrument"),
    (lambda d: d["wiring"]["detectors"][2].update(instrument="pm"), "wiring.detectors.2.instrument",
     "not an instrument"),
    (lambda d: d["wiring"]["detectors"][0].pop("drop_port"), "wiring.detectors.0", "both through_port"),
    (lambda d: d["wiring"]["heaters"].update(mode="current"), "limits.heater_max_current_a", "required"),
    (lambda d: d["bench"].update(kind="real"), "instruments.heaters.address", "required for a real bench"),
    (lambda d: d["chip"].update(spec={"optics": {"loaded_q": -5.0}}), "chip.spec", "optics.loaded_q"),
    (lambda d: d["chip"].update(spec={"optix": {}}), "chip.spec", "optix"),
    (lambda d: d["limits"].update(heater_max_power_w=[0.04] * 3), "limits.heater_max_power_w", "3 values"),
    (lambda d: d["wiring"]["detectors"][0].update(trigger_line=1), "wiring.detectors.0", "trigger_line is for a source"),
])
def test_each_mistake_is_reported_with_its_key_path(edit, path, text) -> None:
    problems = problems_of(mutate(edit))
    assert any(p == path and text in m for p, m in problems), problems


def adc_dict() -> dict:
    return tomllib.loads(embedded_bench_path("adc").read_text())


@pytest.mark.parametrize("edit, path, text", [
    (lambda d: d["wiring"]["detectors"][1].pop("channel"), "wiring.detectors.1", "both channel and tia_gain"),
    (lambda d: d["wiring"]["detectors"][1].pop("tia_gain_v_per_a"), "wiring.detectors.1", "both channel"),
    (lambda d: [x.pop(k) for x in d["wiring"]["detectors"][:1] for k in ("channel", "tia_gain_v_per_a")],
     "wiring.detectors.0.channel", "is a DAQ; give the channel"),
    (lambda d: d["wiring"]["detectors"][1].update(tia_gain_v_per_a=0.0), "wiring.detectors.1", "non-zero"),
    (lambda d: d["wiring"]["detectors"][1].update(tia_offset_v=float("inf")), "wiring.detectors.1.tia_offset_v", "finite"),
    (lambda d: d["wiring"]["detectors"][3].update(channel=101), "wiring.detectors.3.channel",
     "adc channel 101 already reads detector 0"),
    (lambda d: d["wiring"]["detectors"][2].update(channel=99), "wiring.detectors.2.channel", "greater than or equal"),
    (lambda d: d["wiring"]["detectors"][2].update(through_port=0, drop_port=1), "wiring.detectors.2", "not both"),
    (lambda d: d["wiring"]["detectors"][2].update(instrument="laser0"), "wiring.detectors.2.channel",
     "is not a DAQ (keysight_n777xc)"),
    (lambda d: [x.pop(k) for x in d["wiring"]["detectors"][:1] for k in ("channel", "tia_gain_v_per_a")]
     and d["instruments"].update(smu={"driver": "keithley_2400"}) or d["wiring"]["detectors"][0].update(
         instrument="smu"), "wiring.detectors", "mixes DAQ channels, source meters"),
])
def test_daq_detector_mistakes_are_reported_with_their_key_path(edit, path, text) -> None:
    data = adc_dict()
    edit(data)
    problems = problems_of(data)
    assert any(p == path and text in m for p, m in problems), problems


def test_all_problems_are_reported_at_once() -> None:
    def edit(d: dict) -> None:
        d["instruments"]["heaters"]["driver"] = "nope"
        d["limits"]["laser_max_power_w"] = -1
        d["wiring"]["lasers"] = ["ghost"]

    paths = {p for p, _ in problems_of(mutate(edit))}
    assert {"instruments.heaters.driver", "limits.laser_max_power_w"} <= paths


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(BenchConfigError, match="nope.toml"):
        load_bench(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[bench\nname = 1")
    with pytest.raises(BenchConfigError, match=r"(?s)broken.toml.*\(syntax\)"):
        load_bench(broken)


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(tomli_w.dumps(default_dict()))
    config, _ = load_bench(path)
    assert config.wiring.banks == 4


@pytest.mark.parametrize("line", [0, 5])
def test_a_trigger_link_line_outside_1_to_4_is_refused(line: int) -> None:
    data = tomllib.loads(embedded_bench_path("current").read_text())
    data["wiring"]["detectors"][3]["trigger_line"] = line
    problems = problems_of(data)
    assert any(p == "wiring.detectors.3.trigger_line" for p, _ in problems), problems


def test_trigger_cabling_leaves_the_wiring_hash_alone(tmp_path: Path) -> None:
    """Calibrations stay valid when a bench gains or loses the trigger cabling of its sweeps."""
    from labctl.bench.bench import Bench

    text = embedded_bench_path("current").read_text()
    bare = tmp_path / "bare.toml"
    bare.write_text(text.replace(", trigger_line = 1", ""))
    hashes = []
    for path in (embedded_bench_path("current"), bare):
        with Bench.open(path, lock_dir=tmp_path) as bench:
            hashes.append(bench.session().wiring_sha256)
            assert bench.readout.can_log_sweep is (path != bare)
    assert hashes[0] == hashes[1]
