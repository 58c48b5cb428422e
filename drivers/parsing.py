"""Strict reply parsers: a malformed or out-of-range reply raises, it never becomes a silent NaN or zero.

Each parser takes the reply text and returns a value or raises ``ValueError`` with a short reason; the
instrument layer wraps that into an :class:`~labctl.drivers.errors.InstrumentReplyError` naming the instrument,
address and command.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_LIST_NUMBER = r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*"
#: A comma-separated list of numbers as parse_float takes each (checked in one pass before the values are converted)
_FLOAT_LIST_RE = re.compile(rf"{_LIST_NUMBER}(?:,{_LIST_NUMBER})*")
_INT_RE = re.compile(r"^[+-]?\d+$")

#: SCPI "not a number" sentinel (Keithley 2400, B2900) and the Keysight over/under-range marker threshold.
SCPI_NAN = 9.91e37
OVER_RANGE_THRESHOLD = 1e20


def parse_float(text: str) -> float:
    """A finite decimal number (SCPI NR1/NR2/NR3); rejects empty text, NaN, inf and the 9.91e37 sentinel."""
    stripped = text.strip()
    if not _FLOAT_RE.match(stripped):
        raise ValueError(f"expected a number, got {text!r}")
    value = float(stripped)
    if not math.isfinite(value) or abs(value) >= OVER_RANGE_THRESHOLD:
        raise ValueError(f"reply {text!r} is an over-range or not-a-number marker")
    return value


def parse_int(text: str) -> int:
    """An integer, with optional sign (``+1`` is accepted, as some units format ``*OPC?`` that way)."""
    stripped = text.strip()
    if not _INT_RE.match(stripped):
        raise ValueError(f"expected an integer, got {text!r}")
    return int(stripped)


def parse_bool(text: str) -> bool:
    """A SCPI boolean reply: ``0``/``1`` (also ``+0``/``+1``, ``ON``/``OFF``)."""
    stripped = text.strip().upper()
    if stripped in ("1", "+1", "ON"):
        return True
    if stripped in ("0", "+0", "OFF"):
        return False
    raise ValueError(f"expected 0 or 1, got {text!r}")


def parse_float_list(text: str, *, separator: str = ",") -> list[float]:
    """A separated list of finite numbers (every element must parse)."""
    stripped = text.strip()
    parts = stripped.split(separator)
    if not parts or parts == [""]:
        raise ValueError("expected a list of numbers, got an empty reply")
    if separator == "," and _FLOAT_LIST_RE.fullmatch(stripped):  # the common case in one pass
        try:
            values = list(map(float, parts))
        except ValueError:
            values = [math.inf]
        if max(map(abs, values)) < OVER_RANGE_THRESHOLD:
            return values
    return [parse_float(p) for p in parts]  # names the element that fails


def parse_with_unit(unit: str) -> Callable[[str], float]:
    """A number followed by a unit word, e.g. Qontrol's ``+8.2702 V`` (the unit must match)."""

    def parse(text: str) -> float:
        parts = text.strip().split()
        if len(parts) != 2 or parts[1] != unit:
            raise ValueError(f"expected '<number> {unit}', got {text!r}")
        return parse_float(parts[0])

    return parse


def in_range(parse: Callable[[str], float], lo: float, hi: float) -> Callable[[str], float]:
    """Wrap a parser so that a value outside [lo, hi] is refused as implausible for this instrument."""

    def checked(text: str) -> float:
        value = parse(text)
        if not lo <= value <= hi:
            raise ValueError(f"reply {value:g} is outside the plausible range [{lo:g}, {hi:g}]")
        return value

    return checked


@dataclass(frozen=True)
class Identity:
    """The four ``*IDN?`` fields (or their equivalent for non-SCPI instruments)."""

    maker: str
    model: str
    serial: str
    firmware: str

    def __str__(self) -> str:
        return f"{self.maker} {self.model} (serial {self.serial}, firmware {self.firmware})"


def parse_idn(text: str) -> Identity:
    """``maker,model,serial,firmware``: exactly four comma-separated, non-empty-model fields."""
    fields = [f.strip() for f in text.strip().split(",")]
    if len(fields) != 4 or not fields[0] or not fields[1]:
        raise ValueError(f"expected '*IDN?' reply 'maker,model,serial,firmware', got {text!r}")
    return Identity(*fields)


_SCPI_ERROR_RE = re.compile(r'^\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*$')


def parse_scpi_error(text: str) -> tuple[int, str]:
    """``<code>,"<text>"`` from ``:SYST:ERR?`` (quotes optional, as Keysight, Thorlabs and Keithley differ)."""
    match = _SCPI_ERROR_RE.match(text)
    if not match:
        raise ValueError(f"expected '<code>,\"<message>\"', got {text!r}")
    return int(match.group(1)), match.group(2)
