"""Running one bad input through labctl and classifying what happened: the oracle of the bad-input suite.

A case is a command line (run in-process through ``labctl.cli.main.main``) or a call of a parser. Spies mark the
points where labctl would start to act on the input: opening an instrument driver (a hardware action), starting a
plan's run (everything was checked), starting a study. Each stops the command there with a sentinel, so an accepted
case costs nothing and touches nothing. The outcome is then one of

``accepted``   the input passed every check (the spy reached the point of acting)
``error``      refused: exit status 2 (or the parser's own error type) with a message
``traceback``  anything else: an exception escaped, or another exit status

and it is *clean* when it is accepted (and the input was not nonsense that must be refused) or refused in one line
that names the offending field, without a hardware action before the refusal.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock


class Reached(Exception):
    """A spy was reached: labctl would now act on the input (it was accepted)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


@dataclass
class Outcome:
    parser: str
    kind: str                      # accepted | error | traceback
    message: str                   # the error text (stderr), or what was reached
    field: str                     # what the message must name
    must_refuse: bool = False      # the input is nonsense: accepting it is a failure
    hardware_action: bool = False  # an instrument driver was opened before the outcome
    exit_code: int | None = None

    @property
    def one_line(self) -> bool:
        return len(self.message.strip().splitlines()) == 1

    @property
    def names_field(self) -> bool:
        """The message names the field (``field`` may list alternatives as ``a|b``)."""
        fields = [f for f in self.field.split("|") if f]
        return not fields or any(f.lower() in self.message.lower() for f in fields)

    @property
    def clean(self) -> bool:
        if self.kind == "accepted":
            return not self.must_refuse
        return (self.kind == "error" and self.one_line and self.names_field and not self.hardware_action
                and "Traceback" not in self.message)

    def explain(self) -> str:
        return (f"[{self.parser}] {self.kind} (exit {self.exit_code}, hardware action {self.hardware_action}, "
                f"must refuse {self.must_refuse}, must name {self.field!r}): {self.message!r}")


@contextlib.contextmanager
def spies() -> Iterator[dict[str, bool]]:
    """Patch the points where labctl starts acting: each raises :class:`Reached`; ``hardware`` records a driver."""
    seen = {"hardware": False}

    def driver(*args: Any, **kwargs: Any) -> Any:
        seen["hardware"] = True
        raise Reached("instrument driver opened")

    def bench(*args: Any, **kwargs: Any) -> Any:
        raise Reached("run record written, bench opening")

    def body(*args: Any, **kwargs: Any) -> Any:
        raise Reached("run record written, plan body starting")

    def study(*args: Any, **kwargs: Any) -> Any:
        raise Reached("study started")

    def scan(*args: Any, **kwargs: Any) -> Any:
        raise Reached("bench scan started (identity queries)")

    def serve(*args: Any, **kwargs: Any) -> Any:
        raise Reached("emulated bench served")

    with mock.patch("labctl.bench.bench._open_driver", driver), \
            mock.patch("labctl.runs.engine.RunEngine._open_bench", bench), \
            mock.patch("labctl.runs.engine.RunEngine._drive", body), \
            mock.patch("labctl.study.runner.run_study", study), \
            mock.patch("labctl.bench.scan.scan", scan), \
            mock.patch("labctl.bench.emulation.serve", serve), \
            mock.patch("labctl.study.runner.cluster_available", lambda: True):
        yield seen


def run_cli(parser: str, argv: list[str], field: str, *, must_refuse: bool = False,
            accept_exit: tuple[int, ...] = ()) -> Outcome:
    """``labctl ARGV`` in-process; stdout and stderr captured. ``accept_exit``: other statuses that mean the command
    ran to completion on a valid input without acting (``labctl show`` prints and exits 0)."""
    from labctl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    reached: str | None = None
    with spies() as seen, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2 if exc.code else 0
        except Reached as r:
            reached = r.where
        except Exception as exc:  # noqa: BLE001 - the oracle: any escaping exception is a traceback
            return Outcome(parser, "traceback", f"{type(exc).__name__}: {exc}\n{err.getvalue()}", field,
                           must_refuse, seen["hardware"], None)
    if reached is not None:
        return Outcome(parser, "accepted", reached, field, must_refuse, seen["hardware"], None)
    if code == 2:
        return Outcome(parser, "error", err.getvalue(), field, must_refuse, seen["hardware"], code)
    if code in accept_exit or code == 0:
        return Outcome(parser, "accepted", f"exit {code}", field, must_refuse, seen["hardware"], code)
    return Outcome(parser, "traceback", f"exit {code}: {err.getvalue()}", field, must_refuse, seen["hardware"], code)


def run_call(parser: str, call: Callable[[], Any], error: type[BaseException] | tuple[type[BaseException], ...],
             field: str, *, must_refuse: bool = False, check: Callable[[Any], None] | None = None) -> Outcome:
    """A parser called directly: its own ``error`` type is a refusal; ``check`` asserts what an accepted value
    must satisfy (an AssertionError there is an accepted nonsense value)."""
    with spies() as seen:
        try:
            value = call()
        except error as exc:
            return Outcome(parser, "error", str(exc), field, must_refuse, seen["hardware"])
        except Reached as r:
            return Outcome(parser, "accepted", r.where, field, must_refuse, seen["hardware"])
        except Exception as exc:  # noqa: BLE001 - the oracle
            return Outcome(parser, "traceback", f"{type(exc).__name__}: {exc}", field, must_refuse,
                           seen["hardware"])
    if check is not None:
        try:
            check(value)
        except AssertionError as exc:
            return Outcome(parser, "accepted", f"accepted nonsense: {exc}", field, True, seen["hardware"])
    return Outcome(parser, "accepted", "returned a value", field, must_refuse, seen["hardware"])
