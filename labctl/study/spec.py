"""Study specs: a TOML file that names a procedure and the parameter points to run it at, expanded into jobs.

Why a file and not code: a study is an experiment plan that must be reviewed, rerun and resumed exactly. The file
says which procedure runs, on which base bench, and which parameters vary: ``[grid]`` (every combination) and/or
``[random]`` (``samples`` points drawn with ``seed`` for every grid point), with fixed ``[params]``, optionally as a
union of ``[[cases]]`` that each add their own params/grid/random. Parameters are dotted names; the first part says
where the value goes:

``bench``                      the base bench file (path relative to the spec, or an embedded bench name)
``chip.seed``                  the emulated chip's seed (bench file ``[chip] seed``)
``chip.spec.<section>.<name>`` any ChipSpec field (bench file ``[chip.spec]``; validated by the bench file parser)
``calibrate.<kw>``             keyword of ``run_calibration`` (calibrate-verify): ``refine``
``verify.<kw>``                keyword of ``run_verification``: ``n``, ``refine``, ``seed``, ``recenter``, ``drift``
``experiment.<field>``         field of ``labctl.dfa.training.Experiment`` (train), nested ``experiment.train.epochs``,
                               ``experiment.photonic.path``
``calibration``                calibration file for photonic training (default: each job calibrates first)
anything else                  handed to a user procedure (``procedure = "package.module:function"``) as is

Every job is expanded and checked here, before anything runs, so a mistake is one line naming the key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUILTIN_PROCEDURES = ("calibrate-verify", "train")
#: Keys of a table that make it a value distribution rather than a nested parameter table.
DISTRIBUTIONS = ("range", "uniform", "loguniform", "integers", "choice", "normal")
_STUDY_KEYS = {"name", "procedure", "bench", "description"}
_CASE_KEYS = {"name", "params", "grid", "random"}
_TOP_KEYS = {"study", "params", "grid", "random", "cases", "units", "report"}
CALIBRATE_KEYS = {"refine"}
VERIFY_KEYS = {"n", "refine", "seed", "recenter", "drift"}


#: Most jobs one study may expand to (a mistyped range must not fill the memory before anything is checked).
MAX_JOBS = 100_000


class StudySpecError(ValueError):
    """A study spec is invalid; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class Job:
    """One point of a study: its position, case and parameters (dotted names, JSON values)."""

    index: int
    case: str
    params: dict[str, Any]

    @property
    def key(self) -> str:
        """Content hash of the case and parameters: a resumed study recognises finished jobs by it."""
        text = json.dumps({"case": self.case, "params": self.params}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def id(self) -> str:
        return f"{self.index:04d}-{self.key}"


@dataclass(frozen=True)
class StudySpec:
    """A parsed study file (``source`` is its path; relative bench paths are relative to its folder)."""

    name: str
    procedure: str
    source: Path
    text: str
    bench: str | None
    description: str
    jobs: tuple[Job, ...]
    swept: dict[str, tuple[str, ...]]          # case -> parameters that vary within it
    units: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def cases(self) -> list[str]:
        return list(self.swept)

    def to_record(self) -> dict[str, Any]:
        """What the study's run.json keeps of the spec (its text is also copied into the study folder)."""
        return {"name": self.name, "procedure": self.procedure, "source": str(self.source), "sha256": self.sha256,
                "bench": self.bench, "description": self.description, "n_jobs": len(self.jobs),
                "cases": {c: list(p) for c, p in self.swept.items()}, "units": self.units, "report": self.report}


def _fail(source: Path, key: str, message: str) -> StudySpecError:
    shown = key if key.isprintable() else repr(key)          # a key with control characters stays on one line
    return StudySpecError(f"{source}: {shown}: {' '.join(message.split())}")


def _named(source: Path, where: str, table: Mapping[str, Any], *, leaves_are_distributions: bool = False
           ) -> dict[str, Any]:
    """:func:`flatten`, refusing empty names (``"" = 1`` or ``"a..b"``) with the table they are in."""
    flat = flatten(table, leaves_are_distributions=leaves_are_distributions)
    for name in flat:
        if not name or any(not part.strip() for part in name.split(".")):
            raise _fail(source, where, f"parameter name {name!r} has an empty part")
    return flat


def _is_distribution(value: Any) -> bool:
    return isinstance(value, Mapping) and any(k in DISTRIBUTIONS for k in value)


def flatten(table: Mapping[str, Any], prefix: str = "", *, leaves_are_distributions: bool = False
            ) -> dict[str, Any]:
    """Nested TOML tables to dotted names (``chip.spec.optics.loaded_q``); distribution tables stay leaves."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not (leaves_are_distributions and _is_distribution(value)):
            out.update(flatten(value, f"{name}.", leaves_are_distributions=leaves_are_distributions))
        else:
            out[name] = value
    return out


def _grid_values(source: Path, where: str, key: str, value: Any) -> list[Any]:
    if isinstance(value, list):
        if not value:
            raise _fail(source, f"{where}.{key}", "empty list of values")
        return value
    if isinstance(value, Mapping) and set(value) == {"range"}:
        bounds = value["range"]
        if (not isinstance(bounds, list) or len(bounds) not in (2, 3)
                or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)):
            raise _fail(source, f"{where}.{key}", f"range must be [start, stop] or [start, stop, step] integers, "
                                                  f"got {bounds!r}")
        if bounds[2:] == [0]:
            raise _fail(source, f"{where}.{key}", f"range step must not be 0, got {bounds!r}")
        if abs(bounds[1] - bounds[0]) // max(abs(bounds[2]) if len(bounds) == 3 else 1, 1) > MAX_JOBS:
            raise _fail(source, f"{where}.{key}", f"range {bounds!r} has more than {MAX_JOBS:,} values")
        values = list(range(*bounds))
        if not values:
            raise _fail(source, f"{where}.{key}", f"range {bounds!r} is empty")
        return values
    if isinstance(value, Mapping):
        raise _fail(source, f"{where}.{key}", "a grid takes a list of values or {range = [start, stop]}; "
                                              f"distributions ({', '.join(DISTRIBUTIONS[1:])}) belong in [random]")
    raise _fail(source, f"{where}.{key}", f"a grid takes a list of values, got {value!r}")


def _sampler(source: Path, where: str, key: str, value: Any) -> Any:
    """A function rng -> one value, checked now so a bad distribution is reported before anything runs."""
    if not (isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS[1:]):
        raise _fail(source, f"{where}.{key}", "expected one of {uniform = [lo, hi]}, {loguniform = [lo, hi]}, "
                                              "{integers = [lo, hi]} (hi excluded), {choice = [...]}, "
                                              f"{{normal = [mean, std]}}; got {value!r}")
    kind, args = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise _fail(source, f"{where}.{key}", "choice needs a non-empty list")
        return lambda rng: args[int(rng.integers(len(args)))]
    if (not isinstance(args, list) or len(args) != 2
            or not all(isinstance(a, int | float) and not isinstance(a, bool) and math.isfinite(a) for a in args)):
        raise _fail(source, f"{where}.{key}", f"{kind} needs two finite numbers, got {args!r}")
    lo, hi = args
    if kind == "normal":
        if hi < 0:
            raise _fail(source, f"{where}.{key}", f"normal std must be >= 0, got {hi!r}")
        return lambda rng: float(rng.normal(lo, hi))
    if not lo < hi:
        raise _fail(source, f"{where}.{key}", f"{kind} needs lo < hi, got {args!r}")
    if kind == "uniform":
        return lambda rng: float(rng.uniform(lo, hi))
    if kind == "loguniform":
        if lo <= 0:
            raise _fail(source, f"{where}.{key}", f"loguniform needs lo > 0, got {args!r}")
        return lambda rng: float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if not all(isinstance(a, int) for a in args):
        raise _fail(source, f"{where}.{key}", f"integers needs integer bounds, got {args!r}")
    return lambda rng: int(rng.integers(lo, hi))


def _points(source: Path, where: str, grid: Mapping[str, Any], random: Mapping[str, Any]
            ) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """Every (parameters, varying names) of one case: grid combinations, each with ``samples`` random draws."""
    for table, value in (("grid", grid), ("random", random)):
        if not isinstance(value, Mapping):
            raise _fail(source, f"{where}{table}", f"must be a table, got {value!r:.60}")
    grid_flat = _named(source, f"{where}grid", grid, leaves_are_distributions=True)
    axes = {k: _grid_values(source, f"{where}grid", k, v) for k, v in grid_flat.items()}
    random_table = dict(random)
    samples = random_table.pop("samples", None)
    seed = random_table.pop("seed", 0)
    dists = _named(source, f"{where}random", random_table, leaves_are_distributions=True)
    samplers = {k: _sampler(source, f"{where}random", k, v) for k, v in dists.items()}
    if samplers and not (isinstance(samples, int) and not isinstance(samples, bool) and 1 <= samples <= MAX_JOBS):
        raise _fail(source, f"{where}random.samples", f"give the number of random points (1..{MAX_JOBS:,}), got "
                                                      f"{samples!r}")
    n_points = math.prod(len(v) for v in axes.values()) * (samples if samplers else 1)
    if n_points > MAX_JOBS:
        raise _fail(source, f"{where}grid", f"{n_points:,} jobs; at most {MAX_JOBS:,}")
    if samples is not None and not samplers:
        raise _fail(source, f"{where}random", "samples given but no distribution to draw from")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise _fail(source, f"{where}random.seed", f"must be a non-negative integer, got {seed!r}")
    both = set(axes) & set(samplers)
    if both:
        raise _fail(source, sorted(both)[0], "given both in [grid] and in [random]")
    varying = [k for k, v in axes.items() if len(v) > 1] + list(samplers)
    rng = np.random.default_rng(seed)
    for combo in itertools.product(*axes.values()) if axes else [()]:
        point = dict(zip(axes, combo))
        for _ in range(samples if samplers else 1):
            yield {**point, **{k: draw(rng) for k, draw in samplers.items()}}, varying


def _check_params(source: Path, procedure: str, params: Mapping[str, Any]) -> None:
    """Namespaces of the built-in procedures; user procedures take any name."""
    for key, value in params.items():
        head, _, rest = key.partition(".")
        if key == "bench":
            if not isinstance(value, str):
                raise _fail(source, key, f"must be a bench file path or embedded bench name, got {value!r}")
            continue
        if head == "chip":
            if key == "chip.seed":
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
                    raise _fail(source, key, f"must be a non-negative integer, got {value!r}")
            elif not (rest.startswith("spec.") and rest.count(".") == 2):
                raise _fail(source, key, "chip parameters are chip.seed or chip.spec.<section>.<field> "
                                         "(a labctl.sim ChipSpec field)")
            continue
        if procedure not in BUILTIN_PROCEDURES:
            continue
        if procedure == "calibrate-verify" and head in ("calibrate", "verify"):
            allowed = CALIBRATE_KEYS if head == "calibrate" else VERIFY_KEYS
            if rest not in allowed:
                raise _fail(source, key, f"unknown {head} parameter (known: {', '.join(sorted(allowed))})")
            _check_plan_value(source, key, head, rest, value)
            continue
        if procedure == "train" and key == "calibration":
            if not isinstance(value, str) or not value.strip():
                raise _fail(source, key, f"must be a calibration file path, got {value!r:.60}")
            continue
        if procedure == "train" and head == "experiment":
            continue
        known = "bench, chip.*, " + ("calibrate.*, verify.*" if procedure == "calibrate-verify"
                                     else "experiment.*, calibration")
        raise _fail(source, key, f"not a parameter of procedure {procedure!r} (known: {known})")


def _check_plan_value(source: Path, key: str, plan_name: str, name: str, value: Any) -> None:
    """A value of a procedure's parameter, checked by that plan's own declaration (range, type, choices)."""
    from labctl.procedures import calibrate, verify  # noqa: F401 - registers the plans
    from labctl.runs.plan import PLANS, ParamError

    param = PLANS[plan_name].param(name)
    if param.flag and not isinstance(value, bool):
        raise _fail(source, key, f"expected true or false, got {value!r:.60}")
    if param.type in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _fail(source, key, f"expected a number, got {value!r:.60}")
    try:
        param.check(value)
    except ParamError as exc:
        raise _fail(source, key, str(exc).removeprefix(f"{param.option}: ")) from None


def _check_jobs(source: Path, procedure: str, jobs: list[Job]) -> None:
    """What only the whole job can say: the chip spec overrides (the emulation's own check) and, for training, the
    Experiment the job's parameters make."""
    specs: set[str] = set()
    for job in jobs:
        chip = {k: v for k, v in job.params.items() if k.startswith("chip.spec.")}
        text = json.dumps(chip, sort_keys=True, default=str)
        if chip and text not in specs:
            specs.add(text)
            from labctl.bench.emulation import check_chip_spec

            nested: dict[str, Any] = {}
            for k, v in chip.items():
                _, _, section, name = k.split(".", 3)
                nested.setdefault(section, {})[name] = v
            try:
                check_chip_spec(nested)
            except (ValueError, TypeError) as exc:
                raise _fail(source, min(chip), " ".join(str(exc).split())) from None
        if procedure == "train":
            from labctl.study.jobs import experiment_from_params

            try:
                experiment_from_params(job.params)
            except (ValueError, TypeError) as exc:
                text = " ".join(str(exc).split())
                named = [k for k in job.params if k.startswith("experiment.") and k.rpartition(".")[2] in text]
                raise _fail(source, min(named) if named else "experiment", text) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and expand a study file; raises :class:`StudySpecError` (one line) on any mistake."""
    if not str(path).strip() or "\x00" in str(path):
        raise StudySpecError(f"spec: {str(path)!r} is not a study file name")
    source = Path(path)
    if source.is_dir():
        raise StudySpecError(f"{source}: spec: is a folder, expected a study file (TOML)")
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise StudySpecError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise StudySpecError(f"{source}: not a text file (byte {exc.start} is not UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudySpecError(f"{source}: TOML syntax: {exc}") from None
    return parse_spec(data, source, text)


def parse_spec(data: Mapping[str, Any], source: Path, text: str) -> StudySpec:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(source, sorted(unknown)[0], f"unknown table (known: {', '.join(sorted(_TOP_KEYS))})")
    study = data.get("study")
    if not isinstance(study, Mapping):
        raise _fail(source, "study", "missing [study] table with name and procedure")
    bad = set(study) - _STUDY_KEYS
    if bad:
        raise _fail(source, f"study.{sorted(bad)[0]}", f"unknown key (known: {', '.join(sorted(_STUDY_KEYS))})")
    name, procedure = study.get("name"), study.get("procedure")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise _fail(source, "study.name", f"give a name of letters, digits, '-', '_', '.', got {name!r}")
    if not isinstance(procedure, str) or not (procedure in BUILTIN_PROCEDURES or ":" in procedure):
        raise _fail(source, "study.procedure", f"{', '.join(BUILTIN_PROCEDURES)} or 'package.module:function', "
                                               f"got {procedure!r}")
    bench = study.get("bench")
    if bench is not None and not isinstance(bench, str):
        raise _fail(source, "study.bench", f"must be a bench file path or embedded bench name, got {bench!r}")
    for table in ("params", "grid", "random", "units", "report"):
        if table in data and not isinstance(data[table], Mapping):
            raise _fail(source, table, f"must be a table, got {data[table]!r:.60}")
    base = _named(source, "params", data.get("params", {}))
    cases_in = data.get("cases") or [{"name": ""}]
    if not isinstance(cases_in, list) or not all(isinstance(c, Mapping) for c in cases_in):
        raise _fail(source, "cases", "must be an array of tables ([[cases]])")
    jobs: list[Job] = []
    swept: dict[str, tuple[str, ...]] = {}
    for i, case in enumerate(cases_in):
        bad = set(case) - _CASE_KEYS
        if bad:
            raise _fail(source, f"cases.{i}.{sorted(bad)[0]}", f"unknown key (known: {', '.join(sorted(_CASE_KEYS))})")
        label = case.get("name", f"case{i}" if len(cases_in) > 1 else "")
        if not isinstance(label, str) or label in swept:
            raise _fail(source, f"cases.{i}.name", f"needs a distinct name, got {label!r}")
        where = f"cases.{i}." if data.get("cases") else ""
        for table in ("params", "grid", "random"):
            if table in case and not isinstance(case[table], Mapping):
                raise _fail(source, f"{where}{table}", f"must be a table, got {case[table]!r:.60}")
        fixed = {**base, **_named(source, f"{where}params", case.get("params", {}))}
        grid = {**data.get("grid", {}), **case.get("grid", {})}
        random = {**data.get("random", {}), **case.get("random", {})}
        varying: list[str] = []
        for point, varying in _points(source, where, grid, random):
            params = {**fixed, **point}
            _check_params(source, procedure, params)
            jobs.append(Job(len(jobs), label, params))
            if len(jobs) > MAX_JOBS:
                raise _fail(source, f"{where}grid", f"more than {MAX_JOBS:,} jobs")
        swept[label] = tuple(varying)
    _check_jobs(source, procedure, jobs)
    units = data.get("units", {})
    if not isinstance(units, Mapping) or not all(isinstance(v, str) for v in flatten(units).values()):
        raise _fail(source, "units", "must map parameter or figure names to unit strings")
    report = data.get("report", {})
    if not isinstance(report, Mapping):
        raise _fail(source, "report", "must be a table")
    return StudySpec(name=name, procedure=procedure, source=source, text=text, bench=bench,
                     description=str(study.get("description", "")), jobs=tuple(jobs), swept=swept,
                     units=flatten(units), report=dict(report))
