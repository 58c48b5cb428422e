"""Random but legal spellings of a tree's commands, the way different clients write them: short or long
mnemonics in any case, optional nodes left out or written, default suffixes left out or written, with or
without the leading colon, and a valid sample value for each parameter."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import strategies as st

from labctl.sim.scpi import Bool, Block, Choice, Cmd, Expr, Num, Str, Tree
from labctl.sim.scpi.mnemonic import Mnemonic
from labctl.sim.scpi.tree import NodeSpec, parse_header


@dataclass(frozen=True)
class Spelled:
    text: str
    query: bool
    suffixes: dict[str, int]


def _case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.lower() if f else c.upper() for c, f in zip(word, flips))


def _mnemonic(draw: st.DrawFn, mnemonic: Mnemonic) -> str:
    return _case(draw, draw(st.sampled_from(sorted({mnemonic.short, mnemonic.long}))))


def _node(draw: st.DrawFn, spec: NodeSpec, tree: Tree, suffixes: dict[str, int]) -> str:
    word = _mnemonic(draw, spec.mnemonic)
    if spec.variable is not None:
        rule = tree.suffixes[spec.variable]
        value = draw(st.one_of(st.none(), st.integers(rule.lo, rule.hi)))
        suffixes[spec.variable] = rule.default if value is None else value
        return word + ("" if value is None else str(value))
    if spec.fixed is not None and not (spec.fixed_optional and draw(st.booleans())):
        return word + str(spec.fixed)
    return word


def sample_value(draw: st.DrawFn, param: object) -> str:
    if isinstance(param, Num):
        lo = param.lo if math.isfinite(param.lo) else -1.0
        hi = param.hi if math.isfinite(param.hi) else 1.0
        value = draw(st.floats(min_value=lo, max_value=hi, allow_nan=False))
        if param.integer:
            value = float(math.floor(value)) if math.floor(value) >= lo else float(math.ceil(value))
            return str(int(value))
        if param.bare != 1.0:
            return repr(value / param.bare)
        return repr(value)
    if isinstance(param, Bool):
        return draw(st.sampled_from(["ON", "off", "1", "0"]))
    if isinstance(param, Choice):
        return _mnemonic(draw, Mnemonic.parse(draw(st.sampled_from(param.options))))
    if isinstance(param, Str):
        if param.paths:
            path = draw(st.sampled_from(param.paths))
            return "'" + path.split("[")[0] + "'"
        return "'text'"
    if isinstance(param, Block):
        return "#13abc"
    if isinstance(param, Expr):
        return "(1:2)"
    raise TypeError(param)


@st.composite
def spellings(draw: st.DrawFn, tree: Tree, cmd: Cmd) -> Spelled:
    suffixes: dict[str, int] = {}
    forms = [q for q, action in ((False, cmd.set_action), (True, cmd.query_action)) if action is not None]
    query = draw(st.sampled_from(forms))
    params = cmd.query_params if query else cmd.params
    if cmd.is_common:
        header = cmd.header.upper()
    else:
        words: list[str] = []
        for alternatives in parse_header(cmd.header):
            spec = draw(st.sampled_from(alternatives))
            if spec.optional and draw(st.booleans()):
                if spec.variable is not None:
                    suffixes[spec.variable] = tree.suffixes[spec.variable].default
                continue
            words.append(_node(draw, spec, tree, suffixes))
        header = (":" if draw(st.booleans()) else "") + ":".join(words)
    values = [sample_value(draw, p) for p in params if not p.optional or draw(st.booleans())]
    text = header + ("?" if query else "") + ((" " + ",".join(values)) if values else "")
    return Spelled(text, query, suffixes)
