"""Bad-input cases tried against every parser of user input, and how each ended.

Runs the cases of tests/reliability/cases.py (the same hypothesis strategies and oracle as the test suite, here with
more examples per parser, still derandomized so the figures reproduce) and counts, per parser:

cases tried       inputs run (each a command line in-process, or one parser call)
accepted          inputs that passed every check (valid values; for commands: stopped where labctl would act)
clean errors      refusals in one line naming the offending field, instrument or command, before any hardware action
tracebacks        anything else: an exception escaping, another exit status, an error that does not name the field,
                  or a nonsense value accepted (must be 0)
hardware actions  refusals that came after an instrument driver was opened (must be 0)

    python bench/bad_input_cases.py [examples per parser, default 50]

``run_bad_input_cases()`` returns the same figures as a dict (bench/reliability.py quotes them).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))          # tests/reliability is imported from the repository, not the package


def run_bad_input_cases(examples_per_parser: int = 50) -> dict[str, Any]:
    """Figures of ``examples_per_parser`` cases per parser: totals and a per-parser breakdown."""
    import logging

    per_parser: dict[str, dict[str, Any]] = {}
    quiet = logging.getLogger("labctl")
    level = quiet.level
    quiet.setLevel(logging.ERROR)      # the cases' own warnings (a resynchronising Qontrol...) are not the figures
    try:
        _run_all(examples_per_parser, per_parser)
    finally:
        quiet.setLevel(level)
    totals = {k: sum(r[k] for r in per_parser.values())
              for k in ("cases_tried", "accepted", "clean_errors", "tracebacks", "hardware_actions")}
    return {**totals, "parsers": len(per_parser), "examples_per_parser": examples_per_parser,
            "per_parser": per_parser}


def _run_all(examples_per_parser: int, per_parser: dict[str, dict[str, Any]]) -> None:
    import contextlib
    import io

    from tests.reliability.cases import PARSERS, Fixtures

    with tempfile.TemporaryDirectory(prefix="labctl-bad-input-") as tmp:
        fixtures = Fixtures(Path(tmp))
        with contextlib.redirect_stdout(io.StringIO()):
            fixtures.calibration, fixtures.run_dir  # noqa: B018 - made once, before the clock starts
        for name, parser in PARSERS.items():
            row = {"cases_tried": 0, "accepted": 0, "clean_errors": 0, "tracebacks": 0, "hardware_actions": 0,
                   "examples": []}
            t0 = time.perf_counter()
            _try(parser, fixtures, row, examples_per_parser)
            row["wall_s"] = time.perf_counter() - t0
            per_parser[name] = row


def _try(parser: Any, fixtures: Any, row: dict[str, Any], examples: int) -> None:
    """Run ``examples`` cases of one parser, counting their outcomes into ``row``."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=parser.strategy())
    def one(case: Any) -> None:
        outcome = parser.run(case, fixtures)
        row["cases_tried"] += 1
        if outcome.hardware_action and outcome.kind != "accepted":
            row["hardware_actions"] += 1
        if not outcome.clean:
            row["tracebacks"] += 1
            if len(row["examples"]) < 3:
                row["examples"].append(outcome.explain())
        elif outcome.kind == "accepted":
            row["accepted"] += 1
        else:
            row["clean_errors"] += 1

    one()


def _table(figures: dict[str, Any]) -> str:
    head = f"{'parser':24s} {'cases':>6s} {'accepted':>9s} {'clean err':>10s} {'tracebacks':>11s} {'hw actions':>11s}" \
           f" {'wall s':>7s}"
    lines = [head, "-" * len(head)]
    for name, r in figures["per_parser"].items():
        lines.append(f"{name:24s} {r['cases_tried']:6d} {r['accepted']:9d} {r['clean_errors']:10d} "
                     f"{r['tracebacks']:11d} {r['hardware_actions']:11d} {r['wall_s']:7.1f}")
    lines.append("-" * len(head))
    lines.append(f"{'all ' + str(figures['parsers']) + ' parsers':24s} {figures['cases_tried']:6d} "
                 f"{figures['accepted']:9d} {figures['clean_errors']:10d} {figures['tracebacks']:11d} "
                 f"{figures['hardware_actions']:11d}")
    return "\n".join(lines)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    t0, c0 = time.perf_counter(), time.process_time()
    figures = run_bad_input_cases(n)
    print(f"bad-input cases: {n} hypothesis examples per parser (derandomized), counts of cases")
    print(_table(figures))
    print("accepted: valid input (commands stopped where labctl would act); clean err: one-line refusal naming the "
          "field, before any instrument opened; tracebacks and hw actions must be 0")
    for name, r in figures["per_parser"].items():
        for example in r["examples"]:
            print(f"  NOT CLEAN {name}: {example}")
    print(f"wall {time.perf_counter() - t0:.1f} s, CPU {time.process_time() - c0:.1f} s")


if __name__ == "__main__":
    main()
