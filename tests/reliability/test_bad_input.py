"""Bad input never ends in a traceback from deep inside: property tests over every parser of user input (bench
files, calibration artifacts, run records, procedure parameters, study specs, command-line arguments, instrument
replies).

Each mutates a valid document at a random place, or types a bad value (hypothesis, derandomized for CI), and asserts
that the result is either accepted or refused with a one-line error that names the offending field, never another
exception type, never after an instrument was opened, never a run that starts on nonsense. The cases and their
oracle live in tests/reliability/cases.py and harness.py (bench/bad_input_cases.py counts the same cases).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.bench.config import BenchConfigError, embedded_bench_path, parse_bench
from labctl.calibration import artifact
from labctl.calibration.artifact import CalibrationFileError
from labctl.calibration.calibrate import Calibration
from labctl.drivers import parsing
from tests.reliability.cases import PARSERS, Fixtures
from tests.reliability.strategies import JUNK
from tests.reliability.strategies import paths as _paths


def _replace(doc: Any, path: tuple, value: Any, delete: bool) -> Any:
    from tests.reliability.strategies import replace

    return replace(doc, path, value, delete)


# ---- every parser through the command line (tests/reliability/cases.py) ---------------------------------------------


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    return Fixtures(tmp_path_factory.mktemp("bad-input"))


def _parser_test(name: str) -> Any:
    parser = PARSERS[name]

    @settings(max_examples=parser.ci_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=parser.strategy())
    def check(fixtures: Fixtures, case: Any) -> None:
        outcome = parser.run(case, fixtures)
        assert outcome.clean, outcome.explain()

    check.__name__ = f"test_bad_{name.replace(' ', '_').replace('(', '').replace(')', '')}_is_refused_in_one_line"
    check.__doc__ = f"{name}: accepted, or one line naming the field; never a traceback or a hardware action."
    return check


test_bad_bench_file_is_refused_in_one_line = _parser_test("bench file")
test_damaged_bench_file_is_refused_in_one_line = _parser_test("bench file (damaged)")
test_any_bench_field_set_to_junk_is_refused_in_one_line = _parser_test("bench fields")
test_bad_calibration_artifact_is_refused_before_the_bench_opens = _parser_test("calibration artifact")
test_damaged_run_record_is_refused_in_one_line = _parser_test("run record")
test_bad_procedure_parameter_is_refused_in_one_line = _parser_test("procedure parameters")
test_bad_study_spec_is_refused_in_one_line = _parser_test("study spec")
test_bad_command_line_is_refused_in_one_line = _parser_test("command line")
test_bad_instrument_reply_names_instrument_and_command = _parser_test("instrument replies")
test_bad_reply_while_connecting_names_instrument_and_command = _parser_test("connect replies")


@pytest.mark.parametrize(("argv", "option"), [
    (["train", "--dataset", "digits", "--lr", "-0.01"], "--lr"),
    (["train", "--dataset", "digits", "--lr", "0"], "--lr"),
    (["train", "--dataset", "digits", "--lr", "nan"], "--lr"),
    (["train", "--dataset", "digits", "--epochs", "0"], "--epochs"),
    (["train", "--dataset", "digits", "--batch-size", "0"], "--batch-size"),
    (["train", "--dataset", "digits", "--seed", "-1"], "--seed"),
    (["train", "--dataset", "digits", "--hidden", "0,5"], "--hidden"),
    (["train", "--dataset", "digits", "--method", "sgd"], "--method"),
    (["train", "--dataset", "digits", "--n-train", "1e999"], "--n-train"),
    (["verify", "--n", "0"], "--n"),
    (["dry-run", "--n-verify", "0"], "--n-verify"),
    (["calibrate", "--n-configs", "99999999999999999999"], "--n-configs"),
    (["resonances", "--step-pm", "inf"], "--step-pm"),
    (["resonances", "--laser", "99"], "--laser"),
    (["weight-scan", "--bank", "99"], "--bank"),
    (["sweep", "--step-pm", "-2"], "--step-pm"),
    (["sweep", "--laser", "99"], "--laser"),
])
def test_the_issues_nonsense_never_starts_a_run(fixtures: Fixtures, argv: list[str], option: str) -> None:
    """The nonsense the issue names (negative learning rate, zero verification vectors, zero epochs...): exit 2,
    one line naming the option, no run folder, no instrument opened."""
    from tests.reliability.harness import run_cli

    folder = fixtures.fresh("nonsense")
    extra = ["--bench", str(fixtures.small_bench)]
    if argv[0] in ("verify", "weight-scan"):
        extra += ["--calibration", str(fixtures.calibration)]
    extra += ["--data-dir", str(folder), "--no-progress" if argv[0] == "sweep" else "--quiet"]
    outcome = run_cli("issue", [*argv, *extra], option, must_refuse=True)
    assert outcome.kind == "error" and outcome.clean, outcome.explain()
    assert not any(folder.iterdir()), "a run folder was made for a refused command"


@pytest.mark.parametrize(("key", "value"), [("lr", -1), ("epochs", 0), ("batch_size", "x"), ("hidden", [0]),
                                            ("seed", -5), ("method", "sgd"), ("lr", None)])
def test_a_resumed_run_with_nonsense_in_its_record_is_refused(fixtures: Fixtures, key: str, value: Any) -> None:
    """run.json's parameters go through the same declarations as the command line: an edited record cannot
    resume a run with a negative learning rate (the message names run.json and the option)."""
    import shutil

    from tests.reliability.harness import run_cli

    run = fixtures.fresh("resume") / fixtures.run_dir.name
    shutil.copytree(fixtures.run_dir, run)
    record = json.loads((run / "run.json").read_text())
    record["params"][key] = value
    (run / "run.json").write_text(json.dumps(record))
    outcome = run_cli("resume", ["train", "--resume", str(run), "--epochs", "2", "--quiet"],
                      "run.json", must_refuse=value is not None)
    assert outcome.clean, outcome.explain()
    if outcome.kind == "error":
        assert f"--{key.replace('_', '-')}" in outcome.message, outcome.message


@pytest.mark.parametrize("text", ["[]", "null", '{"params": []}', '{"params": {"study": 3}}', '"run"', "{}"])
@pytest.mark.parametrize("command", ["show", "report", "runs"])
def test_a_run_json_of_the_wrong_shape_is_refused_in_one_line(fixtures: Fixtures, text: str, command: str) -> None:
    """Valid JSON that is not a run record (a list, a string, params not a table) is named, not crashed on; labctl
    runs lists the others and warns."""
    from tests.reliability.harness import run_cli

    data = fixtures.fresh("shape")
    run = data / "train-x"
    run.mkdir()
    (run / "run.json").write_text(text)
    argv = {"show": ["show", str(run)], "report": ["report", str(run)], "runs": ["runs", "--data-dir", str(data)]}
    outcome = run_cli("run record", argv[command], "run.json|train-x")
    assert outcome.clean, outcome.explain()


def test_a_numeric_parameter_without_a_range_is_a_declaration_error() -> None:
    """The range lives in the declaration, so every plan gets the checks: a plan cannot forget them."""
    from labctl.runs.plan import Param

    with pytest.raises(TypeError, match="min and max"):
        Param("n", int, 1, "a count", min=1)
    Param("n", int, 1, "a count", min=1, max=10)


# ---- bench files ------------------------------------------------------------------------------------------------------
BENCHES = {name: tomllib.loads(embedded_bench_path(name).read_text()) for name in ("default", "current", "adc")}


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BENCHES)), st.data(), JUNK, st.booleans())
def test_a_mutated_bench_file_is_accepted_or_refused_naming_the_key(name: str, data: st.DataObject, junk: Any,
                                                                   delete: bool) -> None:
    doc = BENCHES[name]
    path = data.draw(st.sampled_from(_paths(doc)))
    bad = _replace(doc, path, junk, delete)
    try:
        parse_bench(bad, source="mutated.toml")
    except BenchConfigError as exc:
        assert exc.problems, exc
        for key, message in exc.problems:
            assert key and "\n" not in message and "Traceback" not in message, (key, message)


# ---- calibration artifacts ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibration_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real calibration of a small emulated chip, as its JSON document."""
    from labctl.calibration.calibrate import calibrate

    from labctl.bench.bench import Bench
    from tests.calibration.test_calibrate import bench_file

    tmp = tmp_path_factory.mktemp("artifact")
    with Bench.open(bench_file(tmp / "bench.toml", seed=2), lock_dir=tmp) as bench:
        cal = calibrate(bench.session(), n_configs=4, n_levels=16, n_drift_references=1)
    return json.loads(Path(cal.save(tmp / "cal.json")).read_text())


def _artifact_junk() -> st.SearchStrategy[Any]:
    return st.one_of(JUNK, st.lists(st.floats(allow_nan=True), max_size=5),
                     st.lists(st.lists(st.floats(-1, 1), min_size=1, max_size=3), min_size=1, max_size=3))


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data(), junk=_artifact_junk(), delete=st.booleans())
def test_a_corrupted_calibration_is_refused_in_one_line(calibration_doc: dict[str, Any], tmp_path_factory: Any,
                                                        data: st.DataObject, junk: Any, delete: bool) -> None:
    """Mutated, then re-hashed (as an editing tool would): load either works or says what is wrong in one line."""
    paths = [p for p in _paths(calibration_doc) if p[0] not in ("sha256",)]
    path = data.draw(st.sampled_from(paths))
    bad = _replace(calibration_doc, path, junk, delete)
    bad.pop("sha256", None)
    try:
        bad = artifact.finalize(bad)
    except (TypeError, ValueError):
        return   # not even serializable as a document: not a file a user can hold
    out = tmp_path_factory.mktemp("bad") / "cal.json"
    out.write_text(json.dumps(bad))
    try:
        cal = Calibration.load(out)
    except CalibrationFileError as exc:
        assert "\n" not in str(exc) and str(exc), exc
        return
    # accepted: then it is usable maths (finite ranges where it claims usable rings)
    w_min, w_max = cal.achievable_range
    assert w_min.shape == w_max.shape == cal.shape


# ---- instrument replies -----------------------------------------------------------------------------------------------
REPLY_PARSERS = [parsing.parse_float, parsing.parse_int, parsing.parse_bool, parsing.parse_float_list,
           parsing.parse_with_unit("V"), parsing.parse_idn, parsing.parse_scpi_error,
           parsing.in_range(parsing.parse_float, -1.0, 1.0)]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(REPLY_PARSERS), st.one_of(st.text(max_size=40), st.from_regex(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")))
def test_every_reply_parser_returns_a_value_or_a_value_error(parse: Any, text: str) -> None:
    try:
        value = parse(text)
    except ValueError as exc:
        assert str(exc)
        return
    if isinstance(value, float):
        assert math.isfinite(value)
    if isinstance(value, list):
        assert all(math.isfinite(v) for v in value)


def test_a_reply_error_names_instrument_and_command() -> None:
    """A driver turns a parser's ValueError into one line naming the instrument, its address and the command."""
    from labctl.drivers.errors import InstrumentReplyError
    from labctl.drivers.keysight_n777xc import KeysightN777xC
    from labctl.drivers.testing import ScriptedTransport

    transport = ScriptedTransport([("*IDN?", "Keysight Technologies,N7778C,X,1"), ("*IDN?", "garbage")])
    laser = KeysightN777xC.__new__(KeysightN777xC)
    laser.name, laser.transport, laser.address = "laser0", transport, transport.address
    laser.identity()
    with pytest.raises(InstrumentReplyError) as info:
        laser.identity()
    text = str(info.value)
    assert "laser0" in text and "*IDN?" in text and "\n" not in text
    np.testing.assert_equal(transport.step, 2)
