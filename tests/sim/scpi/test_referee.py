"""The referee between the manuals and labctl's drivers: every line a driver sends parses, without any error,
in the command tree written from that instrument's manual.

Strongest evidence first: the traffic of real bench sessions on both embedded emulated benches (open, measure
the resonance map, drive the heaters, switch the lasers on, read every bank; on the ``current`` bench the map is a
laser sweep read into the Keithleys' buffers on Trigger Link, and each Keithley also runs a list sweep and a
repeated reading), then each SCPI driver connecting to its pyvisa-sim unit, then every declared setting and
module-level command template rendered with valid values.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from labctl.bench.bench import Bench, lasers_on
from labctl.bench.config import embedded_bench_path
from labctl.calibration.resonances import measure_resonance_map
from labctl.drivers.instrument import ScpiInstrument
from labctl.sim.protocol import all_profiles
from labctl.sim.scpi import Parsed, Parser, ScpiError
from labctl.sim.scpi.trees import TREES

from .driver_lines import Line, profile_session, recorded, template_lines

SCPI_PROFILES = [p for p in all_profiles() if issubclass(p.driver, ScpiInstrument)]


def _bench_session(name: str, lock_dir: Path, step_m: float) -> list[Line]:
    with recorded() as sent, Bench.open(embedded_bench_path(name), lock_dir=lock_dir) as bench:
        hw = bench.session()
        measure_resonance_map(hw, step_m=step_m)
        hw.set_ring_drive(0.5 * hw.max_drive)
        lasers_on(bench, 1e-3)
        hw.readout.read()
        for inst in bench.instruments.values():
            if hasattr(inst, "list_sweep_current_a"):
                inst.list_sweep_current_a(np.linspace(0.0, 0.1, 150))  # 100 + 50: LIST:VOLT and LIST:VOLT:APP
                inst.read_repeated_a(4)
                break
        drivers = {n: i.driver for n, i in bench.config.instruments.items()}
    return [(drivers[n], line) for n, line in sent if drivers[n] in TREES]


@pytest.fixture(scope="module")
def bench_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Line]]:
    """Both embedded benches; the Keithley bench scans with 50 pm steps to stay brief."""
    return {"default": _bench_session("default", tmp_path_factory.mktemp("locks"), 2e-12),
            "current": _bench_session("current", tmp_path_factory.mktemp("locks"), 50e-12)}


def _referee(lines: list[Line], *, execution_errors_allowed: bool = False) -> tuple[dict[str, set[str]], list[str]]:
    """Actions seen per tree, and every line that did not parse cleanly (with ``execution_errors_allowed``:
    every line the parser rejected as a command error, -1xx)."""
    actions: dict[str, set[str]] = defaultdict(set)
    failures: list[str] = []
    parsers = {name: Parser(tree) for name, tree in TREES.items()}
    for tree, line in dict.fromkeys(lines):
        results = parsers[tree].parse(line)
        bad = [r for r in results if isinstance(r, ScpiError)
               and (r.is_command_error or not execution_errors_allowed)]
        if bad or not results:
            failures.append(f"{tree}: {line!r} -> {bad or 'nothing'}")
        actions[tree].update(r.action for r in results if isinstance(r, Parsed))
    return actions, failures


@pytest.mark.parametrize("bench", ["default", "current"])
def test_every_line_of_a_bench_session_parses_in_its_tree(bench_lines: dict[str, list[Line]], bench: str) -> None:
    lines = bench_lines[bench]
    actions, failures = _referee(lines)
    assert not failures, "\n".join(failures)
    # the session really exercised the instruments: lasers tuned and switched, readings taken
    assert {"set wavelength_m", "set power", "set output", "query identity"} <= actions["keysight_n777xc"]
    if bench == "default":
        assert len(lines) > 300
        assert {"query fetch_power_all_csv", "set logging_parameters", "query function_result"} <= \
            actions["keysight_n774xa"]
        assert {"set sweep_start_m", "query readout_data", "do sweep_software_trigger"} <= \
            actions["keysight_n777xc"]
    else:
        assert len(lines) > 300
        assert {"query read", "set list_voltage", "set list_voltage_append", "set trigger_count",
                "set compliance_current", "set trigger_source", "set trigger_input_line", "do buffer_clear",
                "set buffer_points", "set buffer_control", "do initiate", "query buffer_data", "do abort",
                "set source_delay_s", "set source_delay_auto"} <= actions["keithley_2400"]
        assert {"set sweep_start_m", "query readout_data", "do sweep_software_trigger"} <= \
            actions["keysight_n777xc"]


@pytest.mark.parametrize("profile", SCPI_PROFILES, ids=[p.device for p in SCPI_PROFILES])
def test_every_line_of_a_driver_session_and_declaration_parses(profile: object, tmp_path: Path) -> None:
    exact, bounds = profile_session(profile, tmp_path)  # type: ignore[arg-type]
    assert len(exact) > 10
    _, failures = _referee(exact)
    assert not failures, "\n".join(failures)
    # a validator bound may lie outside the family's documented range (-222), but must be spelled right
    _, failures = _referee(bounds, execution_errors_allowed=True)
    assert not failures, "\n".join(failures)


def test_every_module_level_command_template_parses() -> None:
    lines = template_lines()
    assert len(lines) > 40
    _, failures = _referee(lines)
    assert not failures, "\n".join(failures)


def test_driver_values_reach_the_actions_in_si() -> None:
    """What the driver means is what the tree reads: metres, watts, seconds, per the manual's default units."""
    n777 = Parser(TREES["keysight_n777xc"])
    assert n777.parse_one(":SOUR0:WAV 1.54900000E-06").args == (pytest.approx(1.549e-6),)
    assert n777.parse_one(":SOUR0:WAV:SWE:SPE 10.0000NM/S").args == (pytest.approx(1e-8),)
    assert n777.parse_one(":SOUR0:WAV:SWE:PMAX? 1549.0000NM,1560.0000NM").args == (
        pytest.approx(1.549e-6), pytest.approx(1.56e-6))
    meter = Parser(TREES["keysight_n774xa"])
    parsed = meter.parse_one(":SENS3:FUNC:PAR:LOGG 5501,1.000000E-04")
    assert parsed.suffixes == {"n": 3} and parsed.args == (5501, pytest.approx(1e-4))
    pm = Parser(TREES["thorlabs_pm100"])
    assert pm.parse_one("SENS:CORR:WAV 1550.0").args == (pytest.approx(1.55e-6),)  # the console's unit is nm
