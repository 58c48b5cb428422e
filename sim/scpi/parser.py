"""The SCPI parser: a program message in, one :class:`Parsed` command (or the :class:`ScpiError` a real
instrument would queue) per program message unit out.

Header resolution follows SCPI-99 Vol. 1 §6.2 and IEEE 488.2 §A.1:

* mnemonics match in long or short form, any case; optional nodes may be left out; a node's numeric suffix may
  be left out when the tree gives it a default, and must lie in its range (-114 otherwise);
* compound messages: after ``;`` a header without a leading colon continues at the level of the previous
  command's last explicit mnemonic (``:SOUR0:WAV 1550NM;POW 1MW`` sets the power of source 0), a leading colon
  starts again at the root, and common commands (``*OPC``) leave the current level unchanged;
* a command error (-1xx) discards the rest of the message (488.2 §6.1.6); an execution error (-222 ...) only
  rejects its own unit.

The parser keeps no instrument state: what a unit means for the instrument is the bound action's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from labctl.sim.scpi.errors import (
    HEADER_SUFFIX_OUT_OF_RANGE,
    MISSING_PARAMETER,
    MNEMONIC_TOO_LONG,
    PARAMETER_NOT_ALLOWED,
    UNDEFINED_HEADER,
    ScpiError,
)
from labctl.sim.scpi.lexer import (
    MAX_CHARACTER_DATA,
    ProgramUnit,
    parse_unit,
    split_units,
)
from labctl.sim.scpi.params import Param
from labctl.sim.scpi.tree import Cmd, Node, Tree

Step = tuple[Node, "int | None", bool]  # node, suffix value, whether the client spelled it


@dataclass(frozen=True)
class Parsed:
    """One accepted program message unit."""

    action: str
    args: tuple[Any, ...]
    query: bool
    header: str
    suffixes: dict[str, int] = field(default_factory=dict)
    text: str = ""
    cmd: Cmd | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The action without its verb (``wavelength_m`` for ``set wavelength_m``)."""
        return self.action.split(" ", 1)[1]


def _split_mnemonic(word: str) -> tuple[str, int | None]:
    alpha = word.rstrip("0123456789")
    digits = word[len(alpha):]
    return alpha.upper(), (int(digits) if digits else None)


class Parser:
    """Parses messages for one tree; ``parse`` is pure, so one parser can serve many connections."""

    #: Headers whose resolution is remembered (a bench sends the same few headers with ever new values).
    RESOLUTION_CACHE = 4096

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._chains: dict[tuple[object, ...], tuple[list[tuple[Cmd, list[Step], dict[str, int], str]], set[int]]] = {}

    # -- messages ------------------------------------------------------------------------------------------------
    def parse(self, message: str) -> list[Parsed | ScpiError]:
        """Every unit of ``message`` in order; stops after the first command error (-1xx)."""
        results: list[Parsed | ScpiError] = []
        path: list[Step] = []
        for text in split_units(message):
            try:
                unit = parse_unit(text)
                if unit.is_common:
                    results.append(self._common(unit))
                    continue
                parsed, path = self._resolve(unit, path)
                results.append(parsed)
            except ScpiError as exc:
                exc.unit = exc.unit or text.strip()
                results.append(exc)
                path = getattr(exc, "level", path)
                if exc.is_command_error:
                    break
        return results

    def parse_one(self, unit_text: str) -> Parsed:
        """One unit (no ``;``), raising its :class:`ScpiError`: convenient for tests and referees."""
        results = self.parse(unit_text)
        if len(results) != 1:
            raise ValueError(f"{unit_text!r} holds {len(results)} program message units")
        result = results[0]
        if isinstance(result, ScpiError):
            raise result
        return result

    def candidates(self, unit_text: str) -> list[Cmd]:
        """Every command a (root-level, non-common) unit's header could mean, in the order the parser tries them;
        more than one means the manual's optional nodes make the spelling ambiguous."""
        unit = parse_unit(unit_text)
        words = [_split_mnemonic(w) for w in unit.header.rstrip("?").lstrip(":").split(":")]
        found: list[Cmd] = []
        for chain in self._walk(self.tree.root, words, 0, [], unit.is_query, set()):
            cmd = chain[-1][0].cmd
            if cmd is not None and cmd not in found:
                found.append(cmd)
        return found

    # -- common commands -----------------------------------------------------------------------------------------
    def _common(self, unit: ProgramUnit) -> Parsed:
        key = unit.header.lstrip("*").rstrip("?").upper()
        cmd = self.tree.common.get(key)
        if cmd is None:
            raise ScpiError(UNDEFINED_HEADER, f"{unit.header} is not a common command of {self.tree.name}")
        action = cmd.query_action if unit.is_query else cmd.set_action
        if action is None:
            raise ScpiError(UNDEFINED_HEADER, f"{unit.header} has no {'query' if unit.is_query else 'command'} form")
        params = cmd.query_params if unit.is_query else cmd.params
        return Parsed(action, self._args(unit, params), unit.is_query, cmd.header + ("?" if unit.is_query else ""),
                      {}, unit.text.strip(), cmd)

    # -- node path commands --------------------------------------------------------------------------------------
    def _resolve(self, unit: ProgramUnit, path: list[Step]) -> tuple[Parsed, list[Step]]:
        """The command a header means and the new current level. Where optional roots make a header fit several
        commands (Keithley 2400 ``[:SOURce]``/``[:SENSe]``), the first, in declaration order, whose parameters
        are accepted wins: ``:FUNC 'CURR'`` is the sense function, ``:FUNC CURR`` the source function [?]."""
        header = unit.header.rstrip("?")
        absolute = header.startswith(":")
        words = [_split_mnemonic(w) for w in header.lstrip(":").split(":")]
        start = [] if absolute else path
        node = start[-1][0] if start else self.tree.root
        key = (header.upper(), unit.is_query, tuple((id(n), s, spelled) for n, s, spelled in start))
        cached = self._chains.get(key)
        if cached is None:
            found: set[int] = set()
            cached = ([self._prepared(chain) for chain in self._walk(node, words, 0, list(start), unit.is_query,
                                                                     found)], found)
            if len(self._chains) >= self.RESOLUTION_CACHE:
                self._chains.clear()
            self._chains[key] = cached
        candidates, problems = cached
        first_error: ScpiError | None = None
        for cmd, level, suffixes, canonical in candidates:
            try:
                return self._bind(unit, cmd, suffixes, canonical), level
            except ScpiError as exc:
                if first_error is None:
                    first_error, first_level = exc, level
        if first_error is not None:
            first_error.level = first_level  # the header was valid: the level moves even if the data is refused
            raise first_error
        if HEADER_SUFFIX_OUT_OF_RANGE in problems:
            raise ScpiError(HEADER_SUFFIX_OUT_OF_RANGE, f"{unit.header}")
        if any(len(w) > MAX_CHARACTER_DATA for w, _ in words):
            raise ScpiError(MNEMONIC_TOO_LONG, f"{unit.header}")
        where = "" if absolute or not path else f" (relative to {self._header(path)})"
        raise ScpiError(UNDEFINED_HEADER, f"{unit.header}{where}")

    def _walk(self, node: Node, words: list[tuple[str, int | None]], i: int, chain: list[Step], query: bool,
              problems: set[int]) -> Iterator[list[Step]]:
        if i == len(words) and chain and node.cmd is not None and self._has_form(node.cmd, query):
            yield chain
        for child in node.children:
            spec = child.spec
            assert spec is not None
            if i < len(words) and spec.mnemonic.matches(words[i][0]):
                suffix = self._suffix(spec, words[i][1], problems)
                if suffix is not False:
                    yield from self._walk(child, words, i + 1, chain + [(child, suffix, True)], query, problems)
            if spec.optional:
                default = self._suffix(spec, None, problems)
                yield from self._walk(child, words, i, chain + [(child, default, False)], query, problems)

    def _suffix(self, spec: Any, given: int | None, problems: set[int]) -> Any:
        """The suffix value of a matched node, or False when the given suffix is not acceptable."""
        if spec.variable is not None:
            rule = self.tree.suffixes[spec.variable]
            if given is None:
                return rule.default
            if rule.lo <= given <= rule.hi:
                return given
        elif spec.fixed is not None:
            if given == spec.fixed or (given is None and spec.fixed_optional):
                return spec.fixed
        elif given is None:
            return None
        problems.add(HEADER_SUFFIX_OUT_OF_RANGE)
        return False

    @staticmethod
    def _has_form(cmd: Cmd, query: bool) -> bool:
        return (cmd.query_action if query else cmd.set_action) is not None

    @staticmethod
    def _header(chain: list[Step]) -> str:
        out = []
        for node, suffix, _ in chain:
            assert node.spec is not None
            out.append(node.spec.long_form(suffix if node.spec.variable or node.spec.fixed is not None else None))
        return ":" + ":".join(out)

    def _prepared(self, chain: list[Step]) -> tuple[Cmd, list[Step], dict[str, int], str]:
        """What binding a unit to ``chain`` needs besides its data: the command, the level the next unit of the
        message continues at, the suffix values and the canonical header (computed once per header spelling)."""
        cmd = chain[-1][0].cmd
        assert cmd is not None
        explicit = [i for i, (_, _, spelled) in enumerate(chain) if spelled]
        suffixes = {node.spec.variable: value for node, value, _ in chain
                    if node.spec is not None and node.spec.variable is not None}
        return cmd, chain[: explicit[-1]], suffixes, self._header(chain)

    def _bind(self, unit: ProgramUnit, cmd: Cmd, suffixes: dict[str, int], canonical: str) -> Parsed:
        action = cmd.query_action if unit.is_query else cmd.set_action
        assert action is not None
        params = cmd.query_params if unit.is_query else cmd.params
        header = canonical + ("?" if unit.is_query else "")
        return Parsed(action, self._args(unit, params), unit.is_query, header, dict(suffixes), unit.text.strip(),
                      cmd)

    # -- parameters ----------------------------------------------------------------------------------------------
    @staticmethod
    def _args(unit: ProgramUnit, params: tuple[Param, ...]) -> tuple[Any, ...]:
        data = list(unit.data)
        if len(data) > len(params) and not (params and params[-1].repeat):
            raise ScpiError(PARAMETER_NOT_ALLOWED, f"{len(data)} parameters, {len(params)} accepted")
        args: list[Any] = []
        for index, param in enumerate(params):
            if param.repeat:
                rest = data[index:]
                if not rest and not param.optional:
                    raise ScpiError(MISSING_PARAMETER, f"{param.name} expected")
                args.append(tuple(param.convert(el, unit.text) for el in rest))
                return tuple(args)
            if index >= len(data):
                if not param.optional:
                    raise ScpiError(MISSING_PARAMETER, f"{param.name} expected")
                args.append(None)
                continue
            args.append(param.convert(data[index], unit.text))
        return tuple(args)
