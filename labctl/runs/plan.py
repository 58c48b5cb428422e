"""Procedures as named, parameterized plans: generators of messages that one run engine executes.

As in Bluesky, a plan says *what* happens (steps, data, checkpoints, results) and the engine
(:mod:`labctl.runs.engine`) owns everything else: validation, the run folder and its records, the bench and its safe
state on every exit, progress bars, checkpoints, pause and resume. A procedure therefore carries no boilerplate for
records, safety or progress.

A plan is declared once with its :class:`Param` list; the same declarations validate values, generate the command
line options (defaults shown in ``--help``) and go into ``run.json``. The body is a generator function
``body(ctx, **values)`` that yields messages:

``Step(name, total)``       a new step (a progress bar when it is longer than a few seconds)
``Advance(n)``              progress within the step
``Data(stream, row)``       one row appended to the run's HDF5 file (``stream`` is a group path)
``Array(name, value)``      a whole array written to the HDF5 file
``Artifact(kind, path)``    a file the run made (hashed and listed in ``run.json``)
``Note(key, value)``        a value stored in ``run.json`` under ``notes``
``Projection(...)``         projected wall and bench time, printed before a long step
``Checkpoint(make, due)``   a place where the run may be saved, paused and later resumed

Long calls that are not generators (``calibrate``) report progress through ``ctx.progress`` instead.
The value a body returns is the run's result (``run.json`` ``result``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Largest seed a plan takes (numpy's SeedSequence takes any non-negative integer; 32 bits are plenty and portable).
SEED_MAX = 2**32 - 1


class ParamError(ValueError):
    """A parameter value is invalid; the message names the option."""


class MissedTarget(RuntimeError):
    """The run finished but missed a target the user set (e.g. ``--min-bits``); exit status 5."""


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Param:
    """One declared parameter: type, unit, default, allowed range, help (QCoDeS-style validator)."""

    name: str
    type: Callable[[Any], Any]
    default: Any
    help: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    #: True: the bound itself is not allowed (``lr > 0``).
    exclusive_min: bool = False
    choices: tuple[Any, ...] | None = None
    #: A boolean switch (``--refine``); ``negatable`` adds ``--no-refine``.
    flag: bool = False
    negatable: bool = False
    #: May change when a run is resumed (``epochs``: train further).
    on_resume: bool = False
    metavar: str | None = None

    def __post_init__(self) -> None:
        # every number a plan takes has a declared range: a user's 1e30 or -5 is refused here, for every plan
        if self.type in (int, float) and self.choices is None and not self.flag and (self.min is None
                                                                                      or self.max is None):
            raise TypeError(f"parameter {self.name}: a numeric parameter declares min and max")

    @property
    def option(self) -> str:
        return option(self.name)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": self.default, "help": self.help}
        if self.unit:
            out["unit"] = self.unit
        if self.min is not None or self.max is not None:
            out["range"] = [self.min, self.max]
        if self.choices:
            out["choices"] = list(self.choices)
        return out

    def check(self, value: Any) -> Any:
        """The value converted and range-checked; ParamError naming the option otherwise."""
        if value is None:
            if self.default is None:       # optional: None means "not given"
                return None
            raise ParamError(f"{self.option}: expected {'true or false' if self.flag else _type_name(self.type)}, "
                             "got nothing (null)")
        if self.flag:
            if not isinstance(value, bool):
                raise ParamError(f"{self.option}: expected true or false, got {value!r}")
            return value
        try:
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            converted = self.type(value.strip() if isinstance(value, str) and self.type in (int, float) else value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ParamError(f"{self.option}: {exc}" if str(exc).startswith("expected")
                             else f"{self.option}: expected {_type_name(self.type)}, got {value!r}") from None
        if isinstance(converted, str) and (not converted.strip() or "\x00" in converted):
            raise ParamError(f"{self.option}: expected a value, got {value!r}")
        if self.choices is not None and converted not in self.choices:
            raise ParamError(f"{self.option}: {converted!r} is not one of {', '.join(map(str, self.choices))}")
        if isinstance(converted, int | float) and not isinstance(converted, bool):
            unit = f" {self.unit}" if self.unit else ""
            if isinstance(converted, float) and not math.isfinite(converted):
                raise ParamError(f"{self.option}: {converted!r} is not a finite number")
            if self.min is not None and (converted < self.min or (self.exclusive_min and converted == self.min)):
                rel = ">" if self.exclusive_min else ">="
                raise ParamError(f"{self.option}: {converted:g}{unit} is out of range (must be {rel} "
                                 f"{self.min:g}{unit})")
            if self.max is not None and converted > self.max:
                raise ParamError(f"{self.option}: {converted:g}{unit} is out of range (must be <= {self.max:g}{unit})")
        return converted


def _type_name(kind: Callable[[Any], Any]) -> str:
    return {int: "an integer", float: "a number", str: "a string"}.get(kind, getattr(kind, "__name__", "a value"))


# -- messages --------------------------------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    total: int | None = None
    unit: str = "it"


@dataclass
class Advance:
    n: int = 1


@dataclass
class Data:
    stream: str
    row: Mapping[str, Any]


@dataclass
class Array:
    name: str
    value: Any
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    kind: str
    path: Any
    sha256: str | None = None
    note: str = ""


@dataclass
class Note:
    key: str
    value: Any


@dataclass
class Projection:
    """Projected times of what follows: ``wall_s`` on this computer, ``bench_s`` on the bench (None: unknown)."""

    what: str
    wall_s: float | None
    bench_s: float | None
    basis: str


@dataclass
class Checkpoint:
    """A place where the run may stop and later continue. ``make()`` builds the state (a
    :class:`labctl.runs.record.Checkpoint`); the engine calls it when ``due`` or when a pause was asked for.
    ``make`` None: a place to stop with nothing to save (a resume starts the step over, e.g. training after the
    run's calibration was saved). ``where`` says the position in words (``epoch 2, mini-batch 7``)."""

    make: Callable[[], Any] | None
    due: bool = False
    where: str = ""


Message = Step | Advance | Data | Array | Artifact | Note | Projection | Checkpoint
Body = Callable[..., Generator[Message, Any, Any]]


@dataclass(frozen=True)
class Plan:
    """A named procedure: parameters, body, and what the engine needs to know about it."""

    name: str
    help: str
    params: tuple[Param, ...]
    body: Body
    #: Whether the plan needs the bench (a function of the checked values, or a constant).
    needs_bench: bool | Callable[[dict[str, Any]], bool] = True
    #: Whether a stopped run can continue from its checkpoints (``--resume RUN``).
    resumable: bool = False
    #: Checks before anything is touched: output paths, input files, resume compatibility (raise ValueError).
    preflight: Callable[[Any], None] | None = None
    #: Operation counts and limit checks without hardware (``--dry-check``): a JSON-ready dict with ``lines``.
    dry_check: Callable[[Any], dict[str, Any]] | None = None
    #: Human-readable lines of the result.
    summarize: Callable[[dict[str, Any]], str] | None = None
    description: str = ""
    #: Write the run's report (figures + HTML) when the command finishes.
    report: bool = False

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def bench_needed(self, values: dict[str, Any]) -> bool:
        return self.needs_bench(values) if callable(self.needs_bench) else bool(self.needs_bench)

    def check(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value: given ones converted and range-checked, the others at their defaults."""
        known = {p.name for p in self.params}
        unknown = set(given) - known
        if unknown:
            raise ParamError(f"{self.name}: unknown parameter(s) {', '.join(sorted(unknown))}")
        return {p.name: p.check(given[p.name]) if p.name in given else p.default for p in self.params}

    def describe(self) -> dict[str, Any]:
        return {p.name: p.describe() for p in self.params}


PLANS: dict[str, Plan] = {}


def register(plan: Plan) -> Plan:
    PLANS[plan.name] = plan
    return plan


def jsonable_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values as recorded; keys starting with ``_`` are a plan's own scratch (a loaded dataset) and stay out."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items() if not str(k).startswith("_")}
