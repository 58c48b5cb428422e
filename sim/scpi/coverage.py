"""Measurement: per instrument, the size of its command tree and the fraction of the manual summary it was
written from (:mod:`.manual_summaries`) whose headers it resolves.

Run ``python -m labctl.sim.scpi.coverage`` (``--missing`` also lists the summary entries not implemented).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .manual_summaries import SUMMARIES
from .parser import Parser
from .trees import TREES


@dataclass(frozen=True)
class Coverage:
    instrument: str
    commands: int        # declared commands (node-path and common)
    nodes: int           # nodes of the compiled tree
    unconfirmed: int     # commands whose long form no source confirms
    summary: int         # entries of the manual summary worked from
    implemented: int     # of those, entries the tree resolves
    missing: tuple[str, ...]

    @property
    def fraction(self) -> float:
        return self.implemented / self.summary if self.summary else float("nan")


def measure(instrument: str) -> Coverage:
    tree = TREES[instrument]
    parser = Parser(tree)
    missing = tuple(entry for entry in SUMMARIES[instrument] if not parser.candidates(entry))
    n = len(SUMMARIES[instrument])
    return Coverage(instrument, len(tree.commands), len(tree.nodes()), len(tree.unconfirmed()), n, n - len(missing),
                    missing)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--missing", action="store_true", help="list the summary entries the tree does not resolve")
    args = ap.parse_args()
    print(f"{'instrument':16s} {'tree cmds':>9s} {'nodes':>6s} {'unconf.':>7s} {'summary':>8s} {'impl.':>6s} "
          f"{'fraction':>8s}")
    for name in TREES:
        c = measure(name)
        print(f"{name:16s} {c.commands:9d} {c.nodes:6d} {c.unconfirmed:7d} {c.summary:8d} {c.implemented:6d} "
              f"{c.fraction:8.0%}")
        if args.missing and c.missing:
            print("    missing: " + ", ".join(c.missing))


if __name__ == "__main__":
    main()
