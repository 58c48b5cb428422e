"""Reliability figures: the fault scenario matrix of tests/reliability/scenarios.py, counted, and the bad-input cases.

    .venv/bin/python bench/reliability.py [--only PROCEDURE ...] [--faults CASE ...] [--bad-input-examples N]

Every scenario runs a procedure through the command line on a tiny emulated bench with one injected fault and is
judged on the bench's end state (emulator truth), the commands the instruments received (against the bench
limits), the replies the drivers accepted (against the instruments' journal), the run record, and resume. Printed:
scenario count, how the runs ended (recovered by themselves / finished without needing to / stopped safely naming
the fault), and the counts that must be 0.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tqdm import tqdm  # noqa: E402

from tests.reliability import scenarios as S  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(S.PROCEDURES), help="procedures to run (default: all)")
    parser.add_argument("--faults", nargs="*", choices=[c.name for c in S.FAULTS], help="fault cases (default: all)")
    parser.add_argument("--bad-input-examples", type=int, default=50, help="examples per parser (bad-input cases)")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per scenario")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)          # the runs' own warnings are what the scenarios provoke
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="labctl-reliability-") as tmp:
        root = Path(tmp)
        os.environ["LABCTL_LOCK_DIR"] = str(root / "locks")     # emulated benches take no lock; kept apart anyway
        lab = S.make_lab(root / "lab")
        chosen = [s for s in S.scenarios() if (not args.only or s.procedure in args.only)
                  and (not args.faults or s.case.name in args.faults)]
        groups = collections.defaultdict(list)
        for s in chosen:
            groups[s.procedure].append(s)
        results: list[S.Result] = []
        for procedure, group in groups.items():
            bar = tqdm(group, desc=f"{procedure:12s}", unit="scenario", file=sys.stderr, leave=True)
            for k, scenario in enumerate(bar):
                result = S.run_scenario(lab, scenario, root / "work" / procedure / f"{k:03d}")
                results.append(result)
                if args.verbose or not result.ok:
                    tqdm.write(f"  {'ok ' if result.ok else 'BAD'} {result.scenario}: {result.outcome}"
                               f"{'' if result.fired else ' (fault not reached)'}"
                               f"{'' if result.ok else ' ' + str(problems(result))}", file=sys.stderr)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    outcomes = collections.Counter(r.outcome for r in results)
    fired = [r for r in results if r.fired]
    print(f"fault scenarios: {len(results)} ({len({r.case for r in results})} faults x {len(groups)} procedures x up to "
          f"{len(S.POINTS)} points; the fault fired in {len(fired)})")
    print(f"  faults survived (run recovered by itself and recorded it): {outcomes['recovered']}")
    print(f"  runs finished without needing a recovery (fault harmless or after the work): {outcomes['finished']}")
    print(f"  runs stopped safely, the record naming the fault: {outcomes['failed-safe']}")
    print(f"  unsafe end states (heater not at 0 V or laser on, unreported): {sum(bool(r.unsafe) for r in results)}")
    print(f"  limit violations (commands beyond the bench limits received): {sum(len(r.violations) for r in results)}")
    print(f"  misattributed readings (replies taken for another command's): "
          f"{sum(len(r.misattributed) for r in results)}")
    print(f"  records unreadable or silent about the fault: {sum(bool(r.record_problems) for r in results)}")
    resumable = [r for r in results if r.resumed is not None]
    print(f"  resumable runs that stopped and resumed to the end: {sum(bool(r.resumed) for r in resumable)} "
          f"of {len(resumable)}")
    print(f"  time: {wall:.0f} s wall, {cpu:.0f} s CPU of this process")
    print("  outcome per fault (recovered / finished / stopped safely / fault not reached):")
    by_case: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        by_case[r.case].update([r.outcome if r.fired else "not reached"])
    for case, counts in by_case.items():
        print(f"    {case:20s} {counts['recovered']:3d} / {counts['finished']:3d} / {counts['failed-safe']:3d} / "
              f"{counts['not reached']:3d}")
    for r in results:
        if not r.ok:
            print(f"  FAILED {r.scenario}: {r.outcome}; {'; '.join(problems(r))}")
    bad_input(args.bad_input_examples)
    return 0 if all(r.ok for r in results) else 1


def problems(result: S.Result) -> list[str]:
    return [*result.unsafe, *result.violations, *result.misattributed, *result.record_problems,
            *([] if result.resumed is not False else ["did not resume"])]


def bad_input(examples: int = 50) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from bad_input_cases import run_bad_input_cases  # type: ignore[import-not-found]
    except ImportError:
        print("bad-input cases: not available")
        return
    figures = run_bad_input_cases(examples_per_parser=examples)
    print(f"bad-input cases tried: {figures.get('cases_tried')} (clean one-line errors {figures.get('clean_errors')}, "
          f"tracebacks {figures.get('tracebacks')}, hardware actions {figures.get('hardware_actions')})")


if __name__ == "__main__":
    sys.exit(main())
