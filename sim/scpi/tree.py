"""Declarative SCPI command trees: each command in the manual's long form with its optional parts, its
parameters, and the abstract action it stands for.

A declaration reads like the manual::

    Cmd("[:SOURce[n]][:CHANnel[m]]:WAVelength[:CW|:FIXed]",
        set="wavelength_m", params=(Num("wavelength", units=(METRE,), bare_unit="M", ...),),
        query="wavelength_m", query_params=(Choice("limit", ("MINimum", "MAXimum", "DEFault"), optional=True),),
        source="816x PG, WAVelength[:CW]")

Header grammar: ``:NAMe`` a required node, ``[:NAMe]`` an optional one, ``[:CW|:FIXed]`` optional alternatives;
``NAMe[n]`` takes a numeric suffix named ``n`` (range and default are the tree's, e.g. slot 0..4, default 0),
``NAMe3`` requires the suffix 3 and ``NAMe[1]`` accepts only 1 (also when omitted). ``*IDN`` declares a common
command. The command form's action is ``set <name>`` (or ``do <name>`` for events such as ``*RST``), the query
form's ``query <name>``; a physics model later binds a handler to each action name.

``confirmed=False`` marks a node whose spelling no manual excerpt or public driver seen so far confirms.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from labctl.sim.scpi.mnemonic import Mnemonic
from labctl.sim.scpi.params import Param

_ELEMENT = re.compile(r"\[(:(?:[^\[\]]|\[[A-Za-z0-9]+\])+)\]|(:[A-Za-z][A-Za-z0-9_]*(?:\[[A-Za-z0-9]+\])?)")
_MNEMONIC = re.compile(r"([A-Za-z][A-Za-z_]*?)(\d*)(?:\[([A-Za-z]|\d+)\])?$")


@dataclass(frozen=True)
class Cmd:
    """One command of a tree (see the module docstring for the header grammar)."""

    header: str
    set: str | None = None
    do: str | None = None
    params: tuple[Param, ...] = ()
    query: str | None = None
    query_params: tuple[Param, ...] = ()
    source: str = ""
    confirmed: bool = True

    def __post_init__(self) -> None:
        if self.set is not None and self.do is not None:
            raise ValueError(f"{self.header}: give set= or do=, not both")
        if self.set is None and self.do is None and self.query is None:
            raise ValueError(f"{self.header}: a command needs a set/do action, a query action, or both")

    @property
    def set_action(self) -> str | None:
        if self.set is not None:
            return f"set {self.set}"
        if self.do is not None:
            return f"do {self.do}"
        return None

    @property
    def query_action(self) -> str | None:
        return None if self.query is None else f"query {self.query}"

    @property
    def is_common(self) -> bool:
        return self.header.startswith("*")


@dataclass(frozen=True)
class NodeSpec:
    """One header element: its mnemonic, whether it is optional, and its numeric-suffix rule."""

    mnemonic: Mnemonic
    optional: bool
    #: Name of the variable suffix (``n`` in ``SOURce[n]``), or None.
    variable: str | None = None
    #: A literal suffix (``3`` in ``CALCulate3``), or None.
    fixed: int | None = None
    #: Whether the literal suffix may be left out (``CALCulate[1]``).
    fixed_optional: bool = False

    @property
    def key(self) -> tuple[object, ...]:
        return (self.mnemonic.long, self.optional, self.variable, self.fixed, self.fixed_optional)

    def long_form(self, suffix: int | None) -> str:
        text = self.mnemonic.declared
        return text + (str(suffix) if suffix is not None else "")


def _mnemonic_spec(text: str, optional: bool) -> NodeSpec:
    found = _MNEMONIC.fullmatch(text)
    if found is None:
        raise ValueError(f"bad mnemonic {text!r}")
    word, digits, bracket = found.groups()
    if digits and bracket:
        raise ValueError(f"{text!r}: a literal suffix and a [suffix] together")
    mnemonic = Mnemonic.parse(word)
    if bracket is None:
        return NodeSpec(mnemonic, optional, fixed=int(digits) if digits else None)
    if bracket.isdigit():
        return NodeSpec(mnemonic, optional, fixed=int(bracket), fixed_optional=True)
    return NodeSpec(mnemonic, optional, variable=bracket)


def parse_header(header: str) -> list[list[NodeSpec]]:
    """Header pattern -> a list of positions, each a list of alternative node specs."""
    if header.startswith("*"):
        raise ValueError("common commands have no node path")
    text = header if header.startswith((":", "[")) else ":" + header
    positions: list[list[NodeSpec]] = []
    pos = 0
    for found in _ELEMENT.finditer(text):
        if found.start() != pos:
            raise ValueError(f"cannot read {text[pos:found.start()]!r} in header {header!r}")
        pos = found.end()
        optional_group, required = found.groups()
        if required is not None:
            positions.append([_mnemonic_spec(required[1:], False)])
        else:
            alternatives = [a.strip() for a in optional_group.split("|")]
            positions.append([_mnemonic_spec(a.lstrip(":"), True) for a in alternatives])
    if pos != len(text) or not positions:
        raise ValueError(f"cannot read header pattern {header!r}")
    return positions


@dataclass
class Node:
    """A node of the compiled tree; ``cmd`` is the command whose header can end here."""

    spec: NodeSpec | None
    children: list[Node] = field(default_factory=list)
    cmd: Cmd | None = None

    def child(self, spec: NodeSpec) -> Node:
        for existing in self.children:
            if existing.spec is not None and existing.spec.key == spec.key:
                return existing
        node = Node(spec)
        self.children.append(node)
        return node

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Suffix:
    """Range and default of a variable numeric suffix (e.g. slot ``n``: 0..4, default 0 on the 8164B)."""

    lo: int
    hi: int
    default: int


class Tree:
    """A compiled command tree for one instrument family."""

    def __init__(self, name: str, commands: tuple[Cmd, ...], *, suffixes: dict[str, Suffix] | None = None,
                 source: str = "") -> None:
        self.name = name
        self.source = source
        self.suffixes = dict(suffixes or {})
        self.commands = commands
        self.root = Node(None)
        self.common: dict[str, Cmd] = {}
        for cmd in commands:
            if cmd.is_common:
                key = cmd.header.lstrip("*").upper()
                if key in self.common:
                    raise ValueError(f"{name}: common command {cmd.header} declared twice")
                self.common[key] = cmd
                continue
            self._add(cmd)

    def _add(self, cmd: Cmd) -> None:
        positions = parse_header(cmd.header)
        for spec in (s for alternatives in positions for s in alternatives):
            if spec.variable is not None and spec.variable not in self.suffixes:
                raise ValueError(f"{self.name}: {cmd.header} uses suffix {spec.variable!r}, not declared by the tree")
        ends: list[Node] = []

        def place(node: Node, index: int) -> None:
            if index == len(positions):
                ends.append(node)
                return
            for spec in positions[index]:
                place(node.child(spec), index + 1)

        place(self.root, 0)
        for end in ends:
            if end.cmd is not None and end.cmd is not cmd:
                raise ValueError(f"{self.name}: {cmd.header} and {end.cmd.header} end on the same node")
            end.cmd = cmd

    # -- introspection (for the coverage measurement and docs) -----------------------------------------------------
    def nodes(self) -> list[Node]:
        return [n for n in self.root.walk() if n.spec is not None]

    def endpoints(self) -> list[Cmd]:
        """Every command of the tree (node-path commands and common commands), each once."""
        return list(self.commands)

    def unconfirmed(self) -> list[Cmd]:
        return [c for c in self.commands if not c.confirmed]
