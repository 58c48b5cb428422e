"""Parameter declarations of a command tree: what a command accepts, converted to what an action receives.

Each type turns one lexed :class:`~.lexer.DataElement` into a Python value or raises the standard error a SCPI
instrument gives for that mistake:

* :class:`Num`: NR1/NR2/NR3 (and #H/#Q/#B) numbers with unit suffixes, ``MIN``/``MAX``/``DEF``; the action gets
  a :class:`Quantity` (a float in the family's base unit, e.g. metres, that remembers which unit family the
  client used, or None when it sent a bare number) or a :class:`Keyword`.
* :class:`Bool`: ``ON``/``OFF`` or a number (rounded; non-zero is true, SCPI-99 Vol. 1 §7.3).
* :class:`Choice`: character data from a list of mnemonics (long or short form, any case); the action gets the
  short form in upper case (``CONTinuous`` -> ``"CONT"``), the spelling instruments answer with.
* :class:`Str`: string data (either quote); optionally restricted to mnemonic paths (Keithley ``'CURR:DC'``).
* :class:`Block`, :class:`Expr`: definite/indefinite blocks and parenthesised expressions, passed through.

Wrong kinds of data get the specific "not allowed" codes of 488.2 (-128 numeric, -148 character, -158 string,
-168 block, -178 expression); values outside the documented range -222; an unknown choice -224; a suffix where
none is allowed -138, an unknown one -131.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from labctl.sim.scpi.errors import (
    BLOCK_DATA_NOT_ALLOWED,
    CHARACTER_DATA_NOT_ALLOWED,
    DATA_OUT_OF_RANGE,
    EXPRESSION_DATA_NOT_ALLOWED,
    ILLEGAL_PARAMETER_VALUE,
    NUMERIC_DATA_NOT_ALLOWED,
    STRING_DATA_NOT_ALLOWED,
    SUFFIX_NOT_ALLOWED,
    ScpiError,
)
from labctl.sim.scpi.lexer import DataElement
from labctl.sim.scpi.mnemonic import Mnemonic
from labctl.sim.scpi.units import Unit, resolve, scale

_NOT_ALLOWED = {
    "numeric": NUMERIC_DATA_NOT_ALLOWED,
    "nondecimal": NUMERIC_DATA_NOT_ALLOWED,
    "character": CHARACTER_DATA_NOT_ALLOWED,
    "string": STRING_DATA_NOT_ALLOWED,
    "block": BLOCK_DATA_NOT_ALLOWED,
    "expression": EXPRESSION_DATA_NOT_ALLOWED,
}


class Keyword(enum.Enum):
    """Numeric keywords (SCPI-99 Vol. 1 §7.2.1.1): the instrument substitutes its own limit or default."""

    MIN = "MIN"
    MAX = "MAX"
    DEF = "DEF"


_KEYWORDS = {Mnemonic.parse("MINimum"): Keyword.MIN, Mnemonic.parse("MAXimum"): Keyword.MAX,
             Mnemonic.parse("DEFault"): Keyword.DEF}


class Quantity(float):
    """A number in the base unit of ``unit`` (``"M"`` metres, ``"W"``, ``"DBM"`` ...); ``unit`` is None when the
    client sent no suffix and the parameter leaves the unit to the instrument's state (e.g. ``:SOUR0:POW:UNIT``)."""

    unit: str | None

    def __new__(cls, value: float, unit: str | None) -> Quantity:
        obj = super().__new__(cls, value)
        obj.unit = unit
        return obj

    def __repr__(self) -> str:
        return f"Quantity({float(self)!r}, {self.unit!r})"


def _wrong_kind(el: DataElement, unit: str) -> ScpiError:
    return ScpiError(_NOT_ALLOWED[el.kind], f"{el.text!r}", unit)


@dataclass(frozen=True)
class Param:
    """Base: a named parameter; ``optional`` ones may be left out; ``repeat`` takes every remaining element."""

    name: str
    optional: bool = field(default=False, kw_only=True)
    repeat: bool = field(default=False, kw_only=True)

    def convert(self, el: DataElement, unit: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Num(Param):
    """A number. ``units``: the unit families (and spellings) it accepts; ``bare``/``bare_unit``: how a number
    without suffix is read (factor to the base unit, and the family it is then in; None = the instrument's
    current unit). ``lo``/``hi`` bound the value in the base unit of ``bare_unit`` or of the first unit;
    ``ranges`` gives bounds for other families. ``integer`` rounds (IEEE 488.2 §7.7.2.4: the device rounds)."""

    units: tuple[Unit, ...] = ()
    bare: float = 1.0
    bare_unit: str | None = None
    lo: float = -math.inf
    hi: float = math.inf
    ranges: tuple[tuple[str, float, float], ...] = ()
    integer: bool = False
    keywords: bool = True
    #: Further character data the number accepts, returned as the short form (e.g. ``INFinite`` -> ``"INF"``).
    specials: tuple[str, ...] = ()

    def _bounds(self, family: str | None) -> tuple[float, float]:
        for name, lo, hi in self.ranges:
            if name == family:
                return lo, hi
        return self.lo, self.hi

    def convert(self, el: DataElement, unit: str) -> Any:
        if el.kind == "character" and self.keywords:
            for mnemonic, keyword in _KEYWORDS.items():
                if mnemonic.matches(el.value):  # type: ignore[arg-type]
                    return keyword
        if el.kind == "character":
            for special in self.specials:
                if Mnemonic.parse(special).matches(el.value):  # type: ignore[arg-type]
                    return Mnemonic.parse(special).short
        if el.kind == "nondecimal":
            value, family = float(el.value), self.bare_unit  # type: ignore[arg-type]
        elif el.kind == "numeric":
            assert isinstance(el.value, float)
            if el.suffix:
                if not self.units:
                    raise ScpiError(SUFFIX_NOT_ALLOWED, f"{el.text!r}", unit)
                power, family = resolve(el.suffix, self.units)
                value = scale(el.value, power)
            else:
                value, family = el.value * self.bare, self.bare_unit
        else:
            raise _wrong_kind(el, unit)
        lo, hi = self._bounds(family if family is not None else (self.units[0].family if self.units else None))
        if family is None and self.units and self.bare_unit is None and not self.ranges:
            lo, hi = -math.inf, math.inf  # unit unknown until the instrument applies its current one
        if not lo <= value <= hi:
            raise ScpiError(DATA_OUT_OF_RANGE, f"{value:g} is outside [{lo:g}, {hi:g}]", unit)
        if self.integer:
            return int(round(value))
        return Quantity(value, family)

    def spec(self) -> str:
        units = "|".join(u.family for u in self.units)
        kind = "integer" if self.integer else "numeric"
        return f"<{self.name}:{kind}{'[' + units + ']' if units else ''}>"


@dataclass(frozen=True)
class Bool(Param):
    """``ON|OFF|1|0`` (any number, rounded: non-zero is ON)."""

    def convert(self, el: DataElement, unit: str) -> Any:
        if el.kind == "character":
            if el.value == "ON":
                return True
            if el.value == "OFF":
                return False
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{el.text!r} is not ON or OFF", unit)
        if el.kind == "numeric":
            if el.suffix:
                raise ScpiError(SUFFIX_NOT_ALLOWED, f"{el.text!r}", unit)
            return round(float(el.value)) != 0  # type: ignore[arg-type]
        if el.kind == "nondecimal":
            return int(el.value) != 0  # type: ignore[call-overload]
        raise _wrong_kind(el, unit)

    def spec(self) -> str:
        return f"<{self.name}:ON|OFF|1|0>"


@dataclass(frozen=True)
class Choice(Param):
    """Character data from ``options`` (declared with SCPI case: upper case is the short form). ``codes`` maps
    numbers the instrument also accepts to options (Keysight ``:SOUR0:POW:UNIT 0|1|DBM|Watt``)."""

    options: tuple[str, ...] = ()
    codes: tuple[tuple[int, str], ...] = ()

    def _mnemonics(self) -> list[Mnemonic]:
        return [Mnemonic.parse(o) for o in self.options]

    def convert(self, el: DataElement, unit: str) -> Any:
        if el.kind == "character":
            for mnemonic in self._mnemonics():
                if mnemonic.matches(el.value):  # type: ignore[arg-type]
                    return mnemonic.short
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{el.text!r} is not one of {list(self.options)}", unit)
        if el.kind == "numeric" and self.codes and not el.suffix:
            number = float(el.value)  # type: ignore[arg-type]
            for code, option in self.codes:
                if number == code:
                    return Mnemonic.parse(option).short
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{el.text!r} is not one of {[c for c, _ in self.codes]}",
                            unit)
        raise _wrong_kind(el, unit)

    def spec(self) -> str:
        codes = [str(c) for c, _ in self.codes]
        return f"<{self.name}:{'|'.join(list(self.options) + codes)}>"


@dataclass(frozen=True)
class Str(Param):
    """String data. With ``paths`` (e.g. ``("CURRent[:DC]", "VOLTage[:DC]")``) the content must name one of them
    in long or short form (Keithley ``:SENS:FUNC 'CURR'``); the action then gets the short path, e.g. ``CURR``."""

    paths: tuple[str, ...] = ()

    def convert(self, el: DataElement, unit: str) -> Any:
        if el.kind != "string":
            raise _wrong_kind(el, unit)
        text = str(el.value)
        if not self.paths:
            return text
        words = [w for w in text.strip().split(":") if w]
        for path in self.paths:
            parts = [(Mnemonic.parse(p.strip("[]:")), p.startswith("[")) for p in _path_elements(path)]
            if _path_matches(parts, words):
                return ":".join(m.short for m, optional in parts if not optional)
        raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{text!r} is not one of {list(self.paths)}", unit)

    def spec(self) -> str:
        return f"<{self.name}:string>"


def _path_elements(path: str) -> list[str]:
    out: list[str] = []
    for part in path.replace("[:", "\0[").split("\0"):
        out += [p for p in (part.split(":") if not part.startswith("[") else [part]) if p]
    return out


def _path_matches(parts: list[tuple[Mnemonic, bool]], words: list[str]) -> bool:
    if not parts:
        return not words
    (mnemonic, optional), rest = parts[0], parts[1:]
    if words and mnemonic.matches(words[0].upper()) and _path_matches(rest, words[1:]):
        return True
    return optional and _path_matches(rest, words)


@dataclass(frozen=True)
class Block(Param):
    """Arbitrary block program data (``#<d><len><bytes>`` or ``#0...``)."""

    def convert(self, el: DataElement, unit: str) -> Any:
        if el.kind != "block":
            raise _wrong_kind(el, unit)
        return el.value

    def spec(self) -> str:
        return f"<{self.name}:block>"


@dataclass(frozen=True)
class Expr(Param):
    """Expression program data, e.g. a Keithley numlist ``(-110:-222)``; the inner text is passed through."""

    def convert(self, el: DataElement, unit: str) -> Any:
        if el.kind != "expression":
            raise _wrong_kind(el, unit)
        return el.value

    def spec(self) -> str:
        return f"<{self.name}:expression>"
