"""Measurement: per instrument, the size of its command tree, the fraction of the manual summary it was written
from (:mod:`.manual_summaries`) whose headers it resolves, and, where an emulated bench has a physics model of the
instrument, the fraction of the tree's actions that model emulates (a bound handler, plain state, or a common
command); the other actions are accepted and remembered without effect.

Run ``python -m labctl.sim.scpi.coverage`` (``--missing`` also lists the summary entries not implemented and the
actions not emulated).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from labctl.sim.scpi.manual_summaries import SUMMARIES
from labctl.sim.scpi.parser import Parser
from labctl.sim.scpi.trees import TREES


@dataclass(frozen=True)
class Coverage:
    instrument: str
    commands: int        # declared commands (node-path and common)
    nodes: int           # nodes of the compiled tree
    unconfirmed: int     # commands whose long form no source confirms
    summary: int         # entries of the manual summary worked from
    implemented: int     # of those, entries the tree resolves
    missing: tuple[str, ...]
    actions: int = 0     # set/do/query actions of the tree
    emulated: int = 0    # of those, actions the instrument's model emulates (0 actions: no model)
    not_emulated: tuple[str, ...] = ()

    @property
    def fraction(self) -> float:
        return self.implemented / self.summary if self.summary else float("nan")

    @property
    def emulated_fraction(self) -> float:
        return self.emulated / self.actions if self.actions else float("nan")


def measure(instrument: str) -> Coverage:
    tree = TREES[instrument]
    parser = Parser(tree)
    missing = tuple(entry for entry in SUMMARIES[instrument] if not parser.candidates(entry))
    n = len(SUMMARIES[instrument])
    actions, not_emulated = _emulation(instrument)
    return Coverage(instrument, len(tree.commands), len(tree.nodes()), len(tree.unconfirmed()), n, n - len(missing),
                    missing, len(actions) if actions else 0, len(actions) - len(not_emulated), not_emulated)


def _emulation(instrument: str) -> tuple[set[str], tuple[str, ...]]:
    """The tree's actions and those the emulated bench's model of this instrument does not emulate (no model: the
    instrument is simulated statically only, by its pyvisa-sim definition)."""
    from labctl.sim.instruments import MODELS
    from labctl.sim.scpi.model import _COMMON, ScpiModel

    entry = MODELS.get(instrument)
    if entry is None or not issubclass(entry.model, ScpiModel) or entry.model.tree is not TREES[instrument]:
        return set(), ()
    tree = TREES[instrument]
    actions = {a for cmd in tree.commands for a in (cmd.set_action, cmd.query_action) if a is not None}
    model = entry.model
    emulated = set(model._actions) | set(_COMMON) | {f"{verb} {name}" for name in model.plain
                                                     for verb in ("set", "query")}
    return actions, tuple(sorted(actions - emulated))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--missing", action="store_true", help="list the summary entries the tree does not resolve")
    args = ap.parse_args()
    print(f"{'instrument':16s} {'tree cmds':>9s} {'nodes':>6s} {'unconf.':>7s} {'summary':>8s} {'impl.':>6s} "
          f"{'fraction':>8s} {'actions':>8s} {'emulated':>9s}")
    for name in TREES:
        c = measure(name)
        emulated = f"{c.emulated:4d} {c.emulated_fraction:4.0%}" if c.actions else "no model"
        print(f"{name:16s} {c.commands:9d} {c.nodes:6d} {c.unconfirmed:7d} {c.summary:8d} {c.implemented:6d} "
              f"{c.fraction:8.0%} {c.actions or '-':>8} {emulated:>9s}")
        if args.missing and c.missing:
            print("    missing: " + ", ".join(c.missing))
        if args.missing and c.not_emulated:
            print("    not emulated: " + ", ".join(c.not_emulated))


if __name__ == "__main__":
    main()
