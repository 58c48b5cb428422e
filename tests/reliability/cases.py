"""Every parser of user input, each as a hypothesis strategy of bad cases and a function that runs one case.

``PARSERS`` maps a parser's name to ``(strategy, run)``; ``run(case, fixtures)`` returns a
:class:`tests.reliability.harness.Outcome`. The test module asserts every outcome is clean; bench/bad_input_cases.py
counts them. ``Fixtures`` makes, once per work folder, the valid documents the cases start from: the embedded bench
files, a small emulated bench with a real calibration of it, a finished training run with its checkpoint, and the
shipped study specs.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import shutil
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import strategies as st

from tests.reliability import strategies as S
from tests.reliability.harness import Outcome, run_call, run_cli

BENCH_NAMES = ("default", "current", "adc")


class Fixtures:
    """Valid starting documents in ``root`` (made on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def fresh(self, name: str) -> Path:
        """A new empty folder for one case."""
        path = self.root / "cases" / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    @functools.cached_property
    def benches(self) -> dict[str, dict[str, Any]]:
        from labctl.bench.config import embedded_bench_path

        return {name: tomllib.loads(embedded_bench_path(name).read_text()) for name in BENCH_NAMES}

    @functools.cached_property
    def small_bench(self) -> Path:
        from tests.calibration.test_calibrate import bench_file

        return bench_file(self.root / "small.toml", seed=2)

    @functools.cached_property
    def calibration(self) -> Path:
        """A real calibration of the small emulated bench, made through its instruments."""
        from labctl.calibration.calibrate import calibrate

        from labctl.bench.bench import Bench

        with Bench.open(self.small_bench, lock_dir=self.root) as bench:
            cal = calibrate(bench.session(), n_configs=4, n_levels=16, n_drift_references=1)
        return Path(cal.save(self.root / "calibration.json"))

    @functools.cached_property
    def calibration_doc(self) -> dict[str, Any]:
        return json.loads(self.calibration.read_text())

    @functools.cached_property
    def run_dir(self) -> Path:
        """A finished digital training run (one epoch of a tiny network on digits) with its checkpoint."""
        from labctl.cli.main import main

        data = self.root / "runs"
        code = main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "--n-train", "64",
                     "--n-test", "32", "--checkpoint-every", "1", "--data-dir", str(data), "--quiet"])
        assert code == 0, code
        (run,) = [p for p in data.iterdir() if (p / "run.json").is_file()]
        return run

    @functools.cached_property
    def run_record(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "run.json").read_text())

    @functools.cached_property
    def studies(self) -> dict[str, dict[str, Any]]:
        folder = Path(__file__).resolve().parents[2] / "labctl" / "study" / "examples"
        return {p.stem: tomllib.loads(p.read_text()) for p in sorted(folder.glob("*.toml"))}


def _field_of(path: tuple) -> str:
    """What an error about the value at ``path`` may name: its dotted parent, or its own key."""
    keys = [str(k) for k in path]
    alternatives = {keys[-1], ".".join(keys), next(k for k in reversed(path) if isinstance(k, str))}
    alternatives |= {k for k in path if isinstance(k, str) and "." in k}     # a dotted parameter name (study specs)
    if len(keys) > 1:
        alternatives.add(".".join(keys[:-1]))
    return "|".join(sorted(alternatives))


def _toml(doc: dict[str, Any]) -> str:
    """TOML text of a mutated document; a None (TOML has no null) becomes a deleted key."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [clean(v) for v in value if v is not None]
        return value
    return tomli_w.dumps(clean(doc))


def _nonfinite_or_negative(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and (
        not math.isfinite(value) or value <= 0)


# ---- bench files ---------------------------------------------------------------------------------------------------
def bench_file_cases() -> st.SearchStrategy[Any]:
    return st.sampled_from(BENCH_NAMES).flatmap(
        lambda name: st.tuples(st.just(name), S.mutation(_BENCH_DOCS[name])))


def run_bench_file(case: Any, fx: Fixtures) -> Outcome:
    """A mutated bench file through ``labctl bench check``: refused naming the key, or the bench starts to open."""
    name, (path, junk, delete) = case
    doc = S.replace(fx.benches[name], path, junk, delete)
    folder = fx.fresh("bench")
    file = folder / "bench.toml"
    file.write_text(_toml(doc))
    limits_nonsense = path[0] == "limits" and len(path) == 2 and not delete and junk is not None and \
        path[1] != "force_implausible" and _nonfinite_or_negative(junk)
    return run_cli("bench file", ["bench", "check", "--bench", str(file)], _field_of(path),
                   must_refuse=limits_nonsense)


def bench_fields() -> list[tuple[str, tuple]]:
    """(bench, path) of every field a bench file may hold, present in the embedded files or not: every BenchConfig
    model field, each driver option, and every chip-spec parameter of the emulation (``[chip.spec]``)."""
    import inspect as _inspect

    from labctl.sim.chip_spec import ChipSpec

    from labctl.bench import config as C

    out: list[tuple[str, tuple]] = []
    for name, doc in _BENCH_DOCS.items():
        first = next(iter(doc["instruments"]))
        sections: list[tuple[tuple, Any]] = [
            (("bench",), C.BenchInfo), (("limits",), C.Limits), (("wiring",), C.Wiring),
            (("wiring", "heaters"), C.HeaterWiring), (("wiring", "detectors", 0), C.DetectorWiring),
            (("chip",), C.EmulatedChip), (("instruments", first), C.InstrumentConfig)]
        for prefix, model in sections:
            out += [(name, (*prefix, f)) for f in model.model_fields]
        for inst, entry in doc["instruments"].items():
            module, _, cls_name = C.DRIVERS[entry["driver"]].partition(":")
            import importlib

            params = _inspect.signature(getattr(importlib.import_module(module), cls_name)).parameters
            out += [(name, ("instruments", inst, "options", p)) for p, v in params.items()
                    if v.kind is v.KEYWORD_ONLY] + [(name, ("instruments", inst, "options", "no_such_option"))]
            break                                          # one instrument per driver kind is enough
        out += [(name, ("chip", "spec", section, f)) for section, fields in ChipSpec().to_dict().items()
                for f in fields]
    return sorted(set(out), key=str)


def bench_field_cases() -> st.SearchStrategy[Any]:
    return st.tuples(st.sampled_from(bench_fields()), S.JUNK)


def _set(doc: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(doc)
    node: Any = out
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value
    return out


def run_bench_field(case: Any, fx: Fixtures) -> Outcome:
    """Any field of a bench file (present or optional) set to junk, through ``labctl bench check``."""
    (name, path), junk = case
    file = fx.fresh("benchfield") / "bench.toml"
    file.write_text(_toml(_set(fx.benches[name], path, junk)))
    limits_nonsense = path[0] == "limits" and path[1] != "force_implausible" and _nonfinite_or_negative(junk)
    return run_cli("bench file", ["bench", "check", "--bench", str(file)], _field_of(path),
                   must_refuse=limits_nonsense)


def bench_bytes_cases() -> st.SearchStrategy[Any]:
    return st.sampled_from(BENCH_NAMES).flatmap(lambda name: st.tuples(st.just(name), S.corrupt_bytes(
        _BENCH_TEXT[name])))


def run_bench_bytes(case: Any, fx: Fixtures) -> Outcome:
    """A bench file damaged on disk (truncated, garbage, stray or non-UTF-8 bytes)."""
    _, data = case
    file = fx.fresh("benchbytes") / "bench.toml"
    file.write_bytes(data)
    return run_cli("bench file (damaged)", ["bench", "check", "--bench", str(file)], "bench.toml")


# ---- calibration artifacts ------------------------------------------------------------------------------------------
def calibration_cases() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.tuples(st.just("mutated"), st.data(), S.JUNK, st.sampled_from([False, True, "rename"]), st.booleans()),
        st.tuples(st.just("bytes"), st.data()),
        st.tuples(st.just("wrong bench"), st.sampled_from(BENCH_NAMES)),
    )


def run_calibration(case: Any, fx: Fixtures) -> Outcome:
    """A damaged or foreign calibration through ``labctl verify --calibration``: refused before the bench opens."""
    kind = case[0]
    folder = fx.fresh("cal")
    file = folder / "cal.json"
    bench = str(fx.small_bench)
    must_refuse = False
    if kind == "mutated":
        _, data, junk, delete, rehash = case
        doc = fx.calibration_doc
        path = data.draw(st.sampled_from([p for p in S.paths(doc) if p[0] != "sha256"]))
        bad = S.replace(doc, path, junk, delete)
        if rehash:       # edited with a tool that fixes the hash up: only the content checks remain
            from labctl.calibration import artifact

            bad.pop("sha256", None)
            try:
                bad = artifact.finalize(bad)
            except (TypeError, ValueError):
                bad = {**bad, "sha256": "0" * 64}
        file.write_text(json.dumps(bad))
    elif kind == "bytes":
        file.write_bytes(case[1].draw(S.corrupt_bytes(fx.calibration.read_bytes())))
    else:
        shutil.copy(fx.calibration, file)
        bench = case[1]                 # an embedded bench: another chip, another wiring
        must_refuse = True
    return run_cli("calibration artifact", ["verify", "--calibration", str(file), "--bench", bench, "--data-dir",
                                            str(folder / "runs"), "--quiet"], "--calibration", must_refuse=must_refuse)


# ---- run records -----------------------------------------------------------------------------------------------------
RUN_COMMANDS = ("show", "show --json", "report", "resume")


def run_record_cases() -> st.SearchStrategy[Any]:
    return st.tuples(
        st.sampled_from(RUN_COMMANDS),
        st.one_of(st.tuples(st.just("mutated"), st.data(), S.JUNK, st.sampled_from([False, True, "rename"])),
                  st.tuples(st.just("run.json bytes"), st.data()),
                  st.tuples(st.just("data.h5 bytes"), st.data()),
                  st.tuples(st.just("checkpoint bytes"), st.data()),
                  st.tuples(st.just("missing"), st.sampled_from(["run.json", "data.h5", "checkpoint"]))))


def run_run_record(case: Any, fx: Fixtures) -> Outcome:
    """A run folder whose run.json, data.h5 or checkpoint is damaged, through show, report and --resume."""
    command, damage = case
    folder = fx.fresh("run")
    run = folder / fx.run_dir.name
    shutil.copytree(fx.run_dir, run)
    ckpt = max(run.glob("ckpt-*.npz"))
    kind = damage[0]
    name = "run.json"
    if kind == "mutated":
        _, data, junk, delete = damage
        path = data.draw(st.sampled_from(S.paths(fx.run_record)))
        (run / "run.json").write_text(json.dumps(S.replace(fx.run_record, path, junk, delete)))
        field = "run.json"
    elif kind.endswith("bytes"):
        target = {"run.json bytes": run / "run.json", "data.h5 bytes": run / "data.h5",
                  "checkpoint bytes": ckpt}[kind]
        target.write_bytes(damage[1].draw(S.corrupt_bytes(target.read_bytes())))
        name = target.name
        field = target.name
    else:
        target = {"run.json": run / "run.json", "data.h5": run / "data.h5", "checkpoint": ckpt}[damage[1]]
        target.unlink()
        name = target.name
        field = f"{target.name}|{run.name}"
    argv = {"show": ["show", str(run)], "show --json": ["show", str(run), "--json"],
            "report": ["report", str(run), "--out", str(folder / "report")],
            "resume": ["train", "--resume", str(run), "--epochs", "2", "--quiet"]}[command]
    return run_cli(f"run record ({command})", argv, f"{field}|{name}")


# ---- procedure parameters -----------------------------------------------------------------------------------------
def _plan_params() -> list[tuple[str, str]]:
    from labctl.cli.plans import load_plans

    return [(plan.name, p.name) for plan in load_plans().values() for p in plan.params if not p.flag]


#: Values the issue names as nonsense, whatever the declarations say: (plan, parameter) -> refuse when true.
NONSENSE: dict[tuple[str, str], Callable[[float], bool]] = {
    ("train", "lr"): lambda v: v <= 0,
    ("train", "epochs"): lambda v: v <= 0,
    ("train", "batch_size"): lambda v: v <= 0,
    ("train", "n_train"): lambda v: v <= 0,
    ("train", "n_test"): lambda v: v <= 0,
    ("verify", "n"): lambda v: v <= 0,
    ("dry-run", "n_verify"): lambda v: v <= 0,
    ("dry-run", "n_train"): lambda v: v <= 0,
    ("calibrate", "n_configs"): lambda v: v <= 0,
    ("calibrate", "n_levels"): lambda v: v <= 0,
    ("calibrate", "n_drift_references"): lambda v: v <= 0,
    ("weight-scan", "points"): lambda v: v <= 1,
    ("resonances", "step_pm"): lambda v: v <= 0,
}


def plan_param_cases() -> st.SearchStrategy[Any]:
    return st.tuples(st.sampled_from(_plan_params()), S.NUMBER_TEXT)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def run_plan_param(case: Any, fx: Fixtures) -> Outcome:
    """``labctl PLAN --PARAM VALUE``: refused naming the option, or the run starts with a sensible value."""
    from labctl.cli.plans import load_plans
    from labctl.runs.plan import option

    (plan_name, name), text = case
    plan = load_plans()[plan_name]
    param = plan.param(name)
    folder = fx.fresh("param")
    argv = [plan_name, f"{option(name)}={text}", "--data-dir", str(folder), "--quiet", "--bench", str(fx.small_bench)]
    if plan_name == "train" and name != "dataset":
        argv += ["--dataset", "digits"]
    if any(p.name == "calibration" for p in plan.params) and name != "calibration" and plan_name != "train":
        argv += ["--calibration", str(fx.calibration)]
    value = _number(text)
    numeric = param.type in (int, float)
    nonsense = numeric and (value is None or not math.isfinite(value) or abs(value) > 1e15
                            or NONSENSE.get((plan_name, name), lambda v: False)(value)
                            or (param.type is int and value != int(value)))
    if param.choices is not None:
        nonsense = text not in param.choices
    return run_cli("procedure parameters", argv, param.option, must_refuse=bool(nonsense))


# ---- study specs -------------------------------------------------------------------------------------------------------
def study_cases() -> st.SearchStrategy[Any]:
    return st.sampled_from(sorted(_STUDY_DOCS)).flatmap(
        lambda name: st.tuples(st.just(name), S.mutation(_STUDY_DOCS[name])))


def run_study_spec(case: Any, fx: Fixtures) -> Outcome:
    """A mutated study spec through ``labctl study``: refused naming the key, or the study starts."""
    name, (path, junk, delete) = case
    folder = fx.fresh("study")
    file = folder / "spec.toml"
    file.write_text(_toml(S.replace(fx.studies[name], path, junk, delete)))
    key = [k for k in path if isinstance(k, str)][-1]
    nonsense = not delete and key in STUDY_COUNTS and isinstance(junk, int | float) and not isinstance(junk, bool) \
        and (not math.isfinite(junk) or junk <= 0)
    return run_cli("study spec", ["study", str(file), "--data-dir", str(folder / "runs"), "--no-progress"],
                   _field_of(path), must_refuse=nonsense)


#: Study parameters that count something or set a rate: zero, negative or non-finite is nonsense.
STUDY_COUNTS = ("verify.n", "experiment.train.epochs", "experiment.train.lr", "experiment.train.batch_size",
                "experiment.n_train", "experiment.n_test", "samples")


# ---- command-line arguments --------------------------------------------------------------------------------------------
_WORD = st.from_regex(r"[a-z][a-z-]{0,10}", fullmatch=True)


def cli_cases() -> st.SearchStrategy[Any]:
    from labctl.cli.plans import load_plans

    commands = ["sweep", "bench check", "bench scan", "runs", "show latest", "report latest", "study x.toml",
                "sim serve", *load_plans()]
    return st.one_of(
        st.tuples(st.just("unknown option"), st.sampled_from(commands), _WORD),
        st.tuples(st.just("unknown command"), _WORD),
        st.tuples(st.just("bad path"), st.sampled_from(["show", "report", "study", "train --resume",
                                                         "verify --calibration", "sweep --out"]),
                  st.sampled_from(["/nonexistent/x", "", ".", "/", "/dev/null", "no-such-run", "run.json",
                                   "\x00"])),
        st.tuples(st.just("bad bench"), st.sampled_from(["bench check", "sweep", "calibrate", "resonances",
                                                         "characterize"]),
                  st.one_of(_WORD, st.sampled_from(["", ".", "/", "/nonexistent/b.toml", "/dev/null", "default ",
                                                    "DEFAULT", "../default", "x.toml"]))),
        st.tuples(st.just("bad number"), st.sampled_from(["runs --limit", "study x --workers", "sweep --laser",
                                                          "bench scan --timeout", "sim serve --port", "sweep --step-pm",
                                                          "sweep --start-nm"]), S.NUMBER_TEXT),
    )


def run_cli_case(case: Any, fx: Fixtures) -> Outcome:
    kind = case[0]
    folder = fx.fresh("cli")
    data = ["--data-dir", str(folder)]
    if kind == "unknown option":
        _, command, word = case
        argv = [*command.split(), f"--{word}-zz"]
        return run_cli("command line", argv, f"--{word}-zz")
    if kind == "unknown command":
        return run_cli("command line", [f"{case[1]}zz"], f"{case[1]}zz")
    if kind == "bad path":
        _, command, value = case
        argv = {"show": ["show", value, *data], "report": ["report", value, *data], "study": ["study", value],
                "train --resume": ["train", "--resume", value, *data, "--quiet"],
                "verify --calibration": ["verify", "--calibration", value, *data, "--quiet",
                                         "--bench", str(fx.small_bench)],
                "sweep --out": ["sweep", "--out", value, "--bench", str(fx.small_bench), *data]}[command]
        option = command.split()[-1] if command.split()[-1].startswith("--") else "RUN|SPEC|spec"
        # a path the command can use (an existing file, a run id that matches nothing...) is not nonsense: any
        # refusal must name the option or the value
        return run_cli("command line", argv, f"{option}|{value}" if value.strip() else option,
                       must_refuse=command != "sweep --out" or value in ("", ".", "/", "\x00"))
    if kind == "bad bench":
        _, command, value = case
        argv = [*command.split(), "--bench", value, *([] if command.startswith("bench") else data)]
        return run_cli("command line", argv, f"--bench|{value}" if value.strip() else "--bench",
                       must_refuse=value.strip() not in ("default",))
    _, command, value = case
    words = command.split()
    argv = [*words[:-1], f"{words[-1]}={value}"]
    if words[0] == "study":
        spec = folder / "x.toml"
        spec.write_text((Path(__file__).resolve().parents[2] / "labctl/study/examples/calibration-yield.toml")
                        .read_text())
        argv = ["study", str(spec), f"--workers={value}", *data]
    elif words[0] == "sweep":
        argv += ["--bench", str(fx.small_bench), *data]
    number = _number(value)
    must = number is None or not math.isfinite(number) or number < 0 or abs(number) > 1e15 or (
        words[-1] in ("--limit", "--workers", "--port", "--laser") and number != int(number))
    return run_cli("command line", argv, words[-1], must_refuse=must,
                   accept_exit=(0,) if words[0] == "runs" else ())


# ---- instrument replies ----------------------------------------------------------------------------------------------
def _driver_queries() -> list[tuple[str, str, str]]:
    """(module, class, setting) of every declared query of every driver (instruments and their channels)."""
    import importlib
    import pkgutil

    from labctl.drivers.instrument import Channel, Instrument

    from labctl import drivers

    out = []
    for info in pkgutil.iter_modules(drivers.__path__):
        module = importlib.import_module(f"labctl.drivers.{info.name}")
        for cls_name, cls in vars(module).items():
            if (inspect.isclass(cls) and cls.__module__ == module.__name__ and issubclass(cls, Instrument | Channel)
                    and hasattr(cls, "settings_declared")):
                out += [(module.__name__, cls_name, s.name) for s in cls.settings_declared() if s.query is not None]
    return sorted(set(out))


def _reply_parsers() -> dict[str, Callable[[str], Any]]:
    """Every module-level reply parser of the drivers (and the shared ones in labctl.drivers.parsing)."""
    from labctl.drivers import (
        keithley_2400,
        keysight_daq970a,
        keysight_laser,
        keysight_sweep,
        parsing,
        santec_tsl570,
    )

    return {
        "parsing.parse_float": parsing.parse_float, "parsing.parse_int": parsing.parse_int,
        "parsing.parse_bool": parsing.parse_bool, "parsing.parse_float_list": parsing.parse_float_list,
        "parsing.parse_with_unit(V)": parsing.parse_with_unit("V"),
        "parsing.parse_with_unit(mA)": parsing.parse_with_unit("mA"), "parsing.parse_idn": parsing.parse_idn,
        "parsing.parse_scpi_error": parsing.parse_scpi_error,
        "keithley_2400.parse_readings(1)": lambda t: keithley_2400.parse_readings(t, 1),
        "keithley_2400.parse_readings(3)": lambda t: keithley_2400.parse_readings(t, 3),
        "keysight_daq970a.parse_channel_list": keysight_daq970a.parse_channel_list,
        "keysight_daq970a._parse_integer_number": keysight_daq970a._parse_integer_number,
        "keysight_laser.parse_sweep_check": keysight_laser.parse_sweep_check,
        "keysight_laser.parse_wavelength_m": keysight_laser.parse_wavelength_m,
        "keysight_laser.parse_power_w": keysight_laser.parse_power_w,
        "keysight_laser.parse_count": keysight_laser.parse_count(1, 1000),
        "keysight_laser.parse_int_in": keysight_laser.parse_int_in((0, 1, 2)),
        "keysight_laser.parse_token": keysight_laser.parse_token(("CONT", "STEP")),
        "keysight_sweep.parse_logging_state": keysight_sweep.parse_logging_state,
        "keysight_sweep.parse_power_w": keysight_sweep.parse_power_w,
        "santec_tsl570._parse_wavelength_m": santec_tsl570._parse_wavelength_m,
        "santec_tsl570._parse_opc": santec_tsl570._parse_opc,
        "santec_tsl570._parse_status": santec_tsl570._parse_status,
    }


def _finite(value: Any) -> None:
    import numpy as np

    if isinstance(value, tuple):
        for v in value:
            _finite(v)
        return
    if isinstance(value, float | list | np.ndarray) and not isinstance(value, str):
        arr = np.asarray(value)
        if arr.dtype.kind in "fc":
            assert np.all(np.isfinite(arr)), f"non-finite value {value!r} accepted"


def reply_cases() -> st.SearchStrategy[Any]:
    return st.one_of(st.tuples(st.just("setting"), st.sampled_from(_driver_queries()), S.REPLY_TEXT),
                     st.tuples(st.just("parser"), st.sampled_from(sorted(_reply_parsers())), S.REPLY_TEXT))


def run_reply(case: Any, fx: Fixtures) -> Outcome:
    """A bad reply to a driver's query: the value is a finite number, or an InstrumentReplyError names the
    instrument and the command, and nothing more is written to the instrument."""
    import importlib

    from labctl.drivers.errors import InstrumentReplyError
    from labctl.drivers.instrument import Channel
    from labctl.drivers.testing import ScriptedTransport

    kind, what, text = case
    if kind == "parser":
        return run_call("instrument replies", lambda: _reply_parsers()[what](text), ValueError, "",
                        check=_finite)
    module, cls_name, setting_name = what
    cls = getattr(importlib.import_module(module), cls_name)
    setting = getattr(cls, setting_name)
    transport = ScriptedTransport([], settings=getattr(cls, "line_settings", None) or ScriptedTransport([]).settings)
    if issubclass(cls, Channel):
        from labctl.drivers.instrument import Instrument

        parent = Instrument.__new__(Instrument)
        parent.name, parent.transport, parent.address = "inst", transport, transport.address
        owner = cls.__new__(cls)
        Channel.__init__(owner, parent, 1)
    else:
        owner = cls.__new__(cls)
        owner.name, owner.transport, owner.address = "inst", transport, transport.address
    command = owner._fill(setting.query)
    transport.script = [(command, text)]

    def read() -> Any:
        value = getattr(owner, setting_name)
        assert transport.step == 1
        return value

    out = run_call("instrument replies", read, InstrumentReplyError, command, check=_finite)
    if out.kind == "error":
        out.field = f"{command}"
        out.hardware_action = len(transport.sent) > 1 or "inst" not in out.message
    return out


def _connect_protocols() -> dict[str, tuple[Callable[[Any], Any], list[Any], Any]]:
    """Every driver's connect sequence as its byte-exact protocol test scripts it (tests/drivers): (open the driver
    on a transport, script, line settings)."""
    from labctl.drivers.greymatter import Greymatter
    from labctl.drivers.keithley_2400 import Keithley2400
    from labctl.drivers.keysight_8164b import Keysight8164B
    from labctl.drivers.keysight_daq970a import KeysightDAQ970A
    from labctl.drivers.keysight_n774xa import KeysightN774xA
    from labctl.drivers.keysight_n777xc import KeysightN777xC
    from labctl.drivers.qontrol import Qontrol
    from labctl.drivers.santec_tsl570 import SantecTSL570
    from labctl.drivers.testing import ScriptedTransport
    from labctl.drivers.thorlabs_pm100 import ThorlabsPM100

    from tests.drivers import (
        test_greymatter,
        test_keithley_2400,
        test_keysight_8164b,
        test_keysight_daq970a,
        test_keysight_laser,
        test_keysight_n774xa,
        test_qontrol,
        test_santec_tsl570,
        test_thorlabs_pm100,
    )

    plain = ScriptedTransport([]).settings
    return {
        "keithley_2400": (Keithley2400, test_keithley_2400.CONNECT, test_keithley_2400.LF),
        "keysight_8164b": (lambda t: Keysight8164B(t, poll_interval_s=0, output_settle_s=0),
                           test_keysight_8164b.CONNECT, test_keysight_8164b.LF),
        "keysight_daq970a": (KeysightDAQ970A, test_keysight_daq970a.CONNECT, KeysightDAQ970A.line_settings),
        "keysight_n777xc": (lambda t: KeysightN777xC(t, poll_interval_s=0, output_settle_s=0),
                            test_keysight_laser.N777X_CONNECT, test_keysight_laser.LF),
        "keysight_n774xa": (lambda t: KeysightN774xA(t, poll_interval_s=0), test_keysight_n774xa.connect_script(),
                            test_keysight_n774xa.LF),
        "santec_tsl570": (lambda t: SantecTSL570(t, poll_interval_s=0.001), test_santec_tsl570.CONNECT,
                          test_santec_tsl570.CR),
        "thorlabs_pm100": (ThorlabsPM100, test_thorlabs_pm100.CONNECT, test_thorlabs_pm100.LF),
        "qontrol": (lambda t: Qontrol(t, mode="voltage", quiet_s=0.0), test_qontrol.connect_script(), plain),
        "greymatter": (lambda t: Greymatter(t, n_boards=1, max_current_a=0.02), test_greymatter.current_connect(),
                       plain),
    }


def connect_reply_cases() -> st.SearchStrategy[Any]:
    protocols = _connect_protocols()
    steps = [(name, i) for name, (_, script, _) in sorted(protocols.items())
             for i, (_, reply) in enumerate(script) if isinstance(reply, str)]
    return st.tuples(st.sampled_from(steps), S.REPLY_TEXT)


def _valid_value(text: str) -> bool:
    """A reply that is a value in its own right (a number or a boolean): a driver may act on it."""
    from labctl.drivers import parsing

    for parse in (parsing.parse_float, parsing.parse_bool):
        try:
            parse(text)
        except ValueError:
            continue
        return True
    return False


def run_connect_reply(case: Any, fx: Fixtures) -> Outcome:
    """A bad reply at one step of a driver's connect sequence: the driver connects (the reply was a valid value),
    or refuses in one line naming the instrument or the command; after a bad reply it may ask (a query, e.g.
    Qontrol's known-answer resynchronisation) but never sets anything the script did not expect."""
    from labctl.drivers.errors import InstrumentError, LimitError
    from labctl.drivers.testing import ScriptedTransport

    (name, step), text = case
    factory, script, line = _connect_protocols()[name]
    command = script[step][0]
    bad = [*script[:step], (command, text), *script[step + 1:]]
    transport = ScriptedTransport(bad, settings=line, name=name, address=f"SCRIPT::{name}")

    def connect() -> Any:
        try:
            return factory(transport)
        except AssertionError as exc:           # the driver left the script after the bad reply
            sent = transport.sent[-1].decode("latin-1").strip()
            if sent.endswith("?") or sent == command or _valid_value(text):
                return "diverged: a query, a retry of the command, or acting on a valid value"
            raise RuntimeError(f"after the bad reply to {command!r} the driver sent {sent!r}: {exc}") from None

    out = run_call("instrument replies (connect)", connect, (InstrumentError, LimitError),
                   f"{command}|{name}")
    if out.kind == "error" and transport.step > step + 1:
        later = [s.decode("latin-1").strip() for s in transport.sent[step + 1:]]
        out.hardware_action = any(not c.endswith("?") for c in later if c not in ("*CLS",))
    return out


# ---- the registry --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parser:
    name: str
    strategy: Callable[[], st.SearchStrategy[Any]]
    run: Callable[[Any, Fixtures], Outcome]
    #: Examples per test run in CI (hypothesis, derandomized), sized to each case's cost.
    ci_examples: int


PARSERS: dict[str, Parser] = {p.name: p for p in (
    Parser("bench file", bench_file_cases, run_bench_file, 40),
    Parser("bench file (damaged)", bench_bytes_cases, run_bench_bytes, 20),
    Parser("bench fields", bench_field_cases, run_bench_field, 60),
    Parser("calibration artifact", calibration_cases, run_calibration, 25),
    Parser("run record", run_record_cases, run_run_record, 20),
    Parser("procedure parameters", plan_param_cases, run_plan_param, 60),
    Parser("study spec", study_cases, run_study_spec, 30),
    Parser("command line", cli_cases, run_cli_case, 40),
    Parser("instrument replies", reply_cases, run_reply, 200),
    Parser("connect replies", connect_reply_cases, run_connect_reply, 150),
)}


def _load_docs() -> tuple[dict[str, Any], dict[str, bytes], dict[str, Any]]:
    from labctl.bench.config import embedded_bench_path

    benches = {n: tomllib.loads(embedded_bench_path(n).read_text()) for n in BENCH_NAMES}
    texts = {n: embedded_bench_path(n).read_bytes() for n in BENCH_NAMES}
    folder = Path(__file__).resolve().parents[2] / "labctl" / "study" / "examples"
    studies = {p.stem: tomllib.loads(p.read_text()) for p in sorted(folder.glob("*.toml"))}
    return benches, texts, studies


_BENCH_DOCS, _BENCH_TEXT, _STUDY_DOCS = _load_docs()
