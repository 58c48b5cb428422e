"""Study files: expansion into jobs, job bench files, one-line errors naming the key, units of labels."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from labctl.study.runner import payloads
from labctl.study.spec import StudySpecError, load_spec
from labctl.study.units import label, unit_of

EXAMPLES = Path(__file__).resolve().parents[3] / "labctl" / "study" / "examples"


def test_grid_cases_and_fixed_params_expand_in_order(write_spec) -> None:
    spec = load_spec(write_spec("""
[study]
name = "t"
procedure = "calibrate-verify"
bench = "small_bench.toml"
[params]
"verify.n" = 2
[grid]
"chip.seed" = { range = [0, 3] }
[[cases]]
name = "a"
[[cases]]
name = "b"
[cases.grid]
chip.spec.fabrication.resonance_offset_m = [1e-10, 2e-10]
"""))
    assert [j.case for j in spec.jobs] == ["a"] * 3 + ["b"] * 6
    assert [j.params["chip.seed"] for j in spec.jobs[:3]] == [0, 1, 2]
    assert spec.jobs[3].params == {"verify.n": 2, "chip.seed": 0, "chip.spec.fabrication.resonance_offset_m": 1e-10}
    assert spec.swept == {"a": ("chip.seed",), "b": ("chip.seed", "chip.spec.fabrication.resonance_offset_m")}
    assert len({j.key for j in spec.jobs}) == 9 and [j.index for j in spec.jobs] == list(range(9))


def test_random_samples_are_reproducible_and_within_bounds(write_spec) -> None:
    text = """
[study]
name = "r"
procedure = "calibrate-verify"
bench = "small_bench.toml"
[grid]
"verify.refine" = [false, true]
[random]
samples = 5
seed = 7
"chip.spec.optics.loaded_q" = { uniform = [5000, 9000] }
"chip.spec.power_meter.noise_w" = { loguniform = [1e-12, 1e-9] }
"chip.seed" = { integers = [0, 1000] }
"""
    first, again = load_spec(write_spec(text, "a.toml")), load_spec(write_spec(text, "b.toml"))
    assert [j.params for j in first.jobs] == [j.params for j in again.jobs]
    assert len(first.jobs) == 10
    qs = [j.params["chip.spec.optics.loaded_q"] for j in first.jobs]
    assert all(5000 <= q < 9000 for q in qs) and len(set(qs)) == 10
    assert all(1e-12 <= j.params["chip.spec.power_meter.noise_w"] <= 1e-9 for j in first.jobs)
    assert all(isinstance(j.params["chip.seed"], int) for j in first.jobs)


def test_job_bench_file_carries_seed_and_chip_spec_overrides(write_spec) -> None:
    spec = load_spec(write_spec("""
[study]
name = "b"
procedure = "calibrate-verify"
bench = "small_bench.toml"
[params]
"chip.seed" = 42
"chip.spec.optics.loaded_q" = 6000.0
"""))
    bench = tomllib.loads(payloads(spec)[0]["bench_text"])
    assert bench["chip"]["seed"] == 42
    assert bench["chip"]["spec"]["optics"] == {"loaded_q": 6000.0}
    assert bench["chip"]["spec"]["layout"] == {"n_banks": 1, "n_rings": 2}     # the base bench's overrides stay


@pytest.mark.parametrize(("body", "message"), [
    ('[params]\n"chip.spec.optics.loaded_qq" = 1.0', "optics.loaded_qq: unknown key"),
    ('[params]\n"chip.spec.optics.loaded_q" = -5.0', "optics.loaded_q must be > 0"),
    ('[params]\n"verify.m" = 3', "verify.m: unknown verify parameter"),
    ('[params]\n"experiment.seed" = 3', "experiment.seed: not a parameter of procedure 'calibrate-verify'"),
    ('[params]\n"chip.optics" = 3', "chip.optics: chip parameters are chip.seed or chip.spec"),
    ('[grid]\n"chip.seed" = { uniform = [0, 1] }', "grid.chip.seed: a grid takes a list"),
    ('[random]\n"chip.seed" = { uniform = [0, 1] }', "random.samples: give the number of random points"),
    ('[random]\nsamples = 2\n"chip.seed" = { gauss = [0, 1] }', "random.chip.seed.gauss: expected one of"),
    ('[grid]\n"chip.seed" = []', "grid.chip.seed: empty list"),
    ('[gird]\nx = 1', "gird: unknown table"),
])
def test_mistakes_are_one_line_naming_the_key(write_spec, body: str, message: str) -> None:
    path = write_spec(f'[study]\nname = "e"\nprocedure = "calibrate-verify"\nbench = "small_bench.toml"\n{body}\n')
    with pytest.raises(ValueError) as info:
        payloads(load_spec(path))
    text = str(info.value)
    assert "\n" not in text and message in text and str(path) in text


def test_unknown_procedure_and_bench_are_reported(write_spec) -> None:
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        payloads(load_spec(write_spec('[study]\nname = "p"\nprocedure = "no_such_module:f"\n')))
    with pytest.raises(ValueError, match="bench 'nowhere.toml': neither a file"):
        payloads(load_spec(write_spec('[study]\nname = "p"\nprocedure = "calibrate-verify"\nbench = "nowhere.toml"\n')))
    with pytest.raises(StudySpecError, match="study.procedure"):
        load_spec(write_spec('[study]\nname = "p"\nprocedure = "calibrate"\n'))


def test_training_jobs_are_checked_as_experiments(write_spec) -> None:
    path = write_spec('[study]\nname = "t"\nprocedure = "train"\n[params]\n"experiment.feedback" = "optical"\n')
    with pytest.raises(StudySpecError, match="experiment.feedback: feedback must be"):   # at load, naming the key
        payloads(load_spec(path))


def test_shipped_examples_expand_and_validate() -> None:
    yield_spec = load_spec(EXAMPLES / "calibration-yield.toml")
    assert len([j for j in yield_spec.jobs if j.case == "yield"]) >= 64
    dfa = load_spec(EXAMPLES / "dfa-noise-tolerance.toml")
    assert set(dfa.cases) == {"gaussian", "dac-bits", "detector-noise"}
    for spec in (yield_spec, dfa):
        assert len(payloads(spec)) == len(spec.jobs)


def test_units_follow_labctl_names() -> None:
    assert unit_of("chip.spec.fabrication.resonance_offset_m") == "m"
    assert unit_of("chip.spec.heaters.tuning_efficiency_m_per_w") == "m/W"
    assert unit_of("chip.spec.power_meter.noise_w") == "W"
    assert unit_of("chip.spec.heaters.dac_bits") == "bits"
    assert unit_of("chip.spec.optics.loaded_q") == "1"
    assert unit_of("chip.seed") == "seed"
    assert unit_of("x", {"x": "mm"}) == "mm"
    assert label("true_bits").startswith("true_bits [bits]")
    assert label("chip.spec.optics.loaded_q") == "chip.spec.optics.loaded_q [dimensionless]"
