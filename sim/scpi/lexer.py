"""IEEE 488.2 §7 program-message syntax: split a message into program message units and each unit into a header
and its program data elements (numeric with suffix, character, string, block, non-decimal numeric, expression).

Terminators: LF ends a message; a CR before it is white space (488.2 §7.4.1: <white space> is any of 0-9, 11-32),
so ``*IDN?\\r\\n`` and ``*IDN?\\n`` are the same message. Separators inside quotes, blocks and parentheses do not
split. A unit that is empty (``:SENS:CURR:RANG:AUTO 1;`` ends in a separator, as PyMeasure's Keithley 2400
driver sends it) is dropped: real instruments accept the trailing ``;`` and it carries no command.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from labctl.sim.scpi.errors import (
    CHARACTER_DATA_TOO_LONG,
    EXPONENT_TOO_LARGE,
    HEADER_SEPARATOR_ERROR,
    INVALID_BLOCK_DATA,
    INVALID_CHARACTER_DATA,
    INVALID_CHARACTER_IN_NUMBER,
    INVALID_STRING_DATA,
    SYNTAX_ERROR,
    TOO_MANY_DIGITS,
    ScpiError,
)

#: 488.2 §7.7.1.2 / §7.7.2.2: character program data and mnemonics are at most 12 characters.
MAX_CHARACTER_DATA = 12
#: 488.2 §7.7.2.4: a device may refuse a mantissa of more than 255 digits (-124).
MAX_MANTISSA_DIGITS = 255

_WHITESPACE = "".join(chr(c) for c in range(0, 33) if c != 10)
_HEADER = re.compile(r"(\*[A-Za-z]+\??|:?[A-Za-z][A-Za-z0-9_]*(?::[A-Za-z][A-Za-z0-9_]*)*\??)")
_NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:[ \t]*[eE][ \t]*([+-]?\d+))?[ \t]*(.*)", re.DOTALL)
_SUFFIX = re.compile(r"[A-Za-z/][A-Za-z0-9/.]*")
_CHARACTER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NONDECIMAL = {"H": (16, "0123456789ABCDEF"), "Q": (8, "01234567"), "B": (2, "01")}


@dataclass(frozen=True)
class DataElement:
    """One program data element. ``value``: float (numeric, before the suffix), upper-case str (character),
    str (string content), bytes (block), int (non-decimal numeric) or the inner text (expression)."""

    kind: str
    text: str
    value: object
    suffix: str = ""


@dataclass(frozen=True)
class ProgramUnit:
    """``header`` as sent (leading ``:``/``*`` and trailing ``?`` kept) and its data elements."""

    text: str
    header: str
    data: tuple[DataElement, ...]

    @property
    def is_query(self) -> bool:
        return self.header.endswith("?")

    @property
    def is_common(self) -> bool:
        return self.header.startswith("*")


def strip_terminator(message: str) -> str:
    """Drop the program message terminator (LF, with any white space such as CR before it)."""
    text = message[:-1] if message.endswith("\n") else message
    return text.rstrip(_WHITESPACE)


def _scan(text: str, separator: str) -> list[str]:
    """Split at ``separator`` outside strings, blocks and parentheses."""
    parts: list[str] = []
    start = i = 0
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # doubled quote inside the string
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if c == "#" and i + 1 < n and text[i + 1].isdigit():
            digits = int(text[i + 1])
            if digits == 0:  # indefinite-length block runs to the end of the message
                i = n
                continue
            length_text = text[i + 2: i + 2 + digits]
            i = i + 2 + digits + (int(length_text) if length_text.isdigit() else 0)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif c == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def split_units(message: str) -> list[str]:
    """The program message units of one message (terminator removed, empty units dropped)."""
    body = strip_terminator(message)
    return [u for u in _scan(body, ";") if u.strip(_WHITESPACE)]


def parse_unit(text: str) -> ProgramUnit:
    """Header and data elements of one unit; raises :class:`ScpiError` for -1xx syntax problems."""
    body = text.lstrip(_WHITESPACE)
    found = _HEADER.match(body)
    if found is None:
        raise ScpiError(SYNTAX_ERROR, "no program header", text)
    header = found.group(0)
    rest = body[found.end():]
    if not rest.strip(_WHITESPACE):
        return ProgramUnit(text, header, ())
    if rest[0] not in _WHITESPACE:
        raise ScpiError(HEADER_SEPARATOR_ERROR, f"{rest[0]!r} right after the header", text)
    elements = [element(part, text) for part in _scan(rest, ",")]
    return ProgramUnit(text, header, tuple(elements))


def element(raw: str, unit: str = "") -> DataElement:
    """Classify and decode one program data element (488.2 §7.7)."""
    text = raw.strip(_WHITESPACE)
    if not text:
        raise ScpiError(SYNTAX_ERROR, "empty parameter", unit)
    first = text[0]
    if first in "\"'":
        return _string(text, unit)
    if first == "#":
        return _hash(text, unit)
    if first == "(":
        if not text.endswith(")"):
            raise ScpiError(SYNTAX_ERROR, f"unclosed expression {text!r}", unit)
        return DataElement("expression", text, text[1:-1])
    if first.isdigit() or first in "+-.":
        return _number(text, unit)
    if first.isalpha():
        if not _CHARACTER.fullmatch(text):
            raise ScpiError(INVALID_CHARACTER_DATA, f"{text!r}", unit)
        if len(text) > MAX_CHARACTER_DATA:
            raise ScpiError(CHARACTER_DATA_TOO_LONG, f"{text!r}", unit)
        return DataElement("character", text, text.upper())
    raise ScpiError(SYNTAX_ERROR, f"unexpected {first!r} in parameter {text!r}", unit)


def _string(text: str, unit: str) -> DataElement:
    quote = text[0]
    if len(text) < 2 or text[-1] != quote:
        raise ScpiError(INVALID_STRING_DATA, f"unterminated string {text!r}", unit)
    inner = text[1:-1]
    if quote in inner.replace(quote * 2, ""):
        raise ScpiError(INVALID_STRING_DATA, f"stray quote in {text!r}", unit)
    return DataElement("string", text, inner.replace(quote * 2, quote))


def _hash(text: str, unit: str) -> DataElement:
    if len(text) >= 2 and text[1].upper() in _NONDECIMAL:
        base, digits = _NONDECIMAL[text[1].upper()]
        body = text[2:].upper()
        if not body or any(c not in digits for c in body):
            raise ScpiError(INVALID_CHARACTER_IN_NUMBER, f"{text!r}", unit)
        return DataElement("nondecimal", text, int(body, base))
    if len(text) >= 2 and text[1].isdigit():
        n_digits = int(text[1])
        if n_digits == 0:
            return DataElement("block", text, text[2:].encode("latin-1"))
        length_text = text[2: 2 + n_digits]
        payload = text[2 + n_digits:]
        if len(length_text) != n_digits or not length_text.isdigit() or int(length_text) != len(payload):
            raise ScpiError(INVALID_BLOCK_DATA, "block length does not match its header", unit)
        return DataElement("block", text, payload.encode("latin-1"))
    raise ScpiError(SYNTAX_ERROR, f"{text!r} is neither a block nor #H/#Q/#B data", unit)


def _number(text: str, unit: str) -> DataElement:
    found = _NUMBER.fullmatch(text)
    if found is None:
        raise ScpiError(INVALID_CHARACTER_IN_NUMBER, f"{text!r}", unit)
    mantissa, exponent, suffix = found.groups()
    if sum(c.isdigit() for c in mantissa) > MAX_MANTISSA_DIGITS:
        raise ScpiError(TOO_MANY_DIGITS, f"{text[:20]!r}...", unit)
    if suffix and not _SUFFIX.fullmatch(suffix):
        raise ScpiError(INVALID_CHARACTER_IN_NUMBER, f"{text!r}", unit)
    value = float(mantissa + (f"e{exponent}" if exponent else ""))
    if math.isinf(value):
        raise ScpiError(EXPONENT_TOO_LARGE, f"{text!r}", unit)
    return DataElement("numeric", text, value, suffix)
