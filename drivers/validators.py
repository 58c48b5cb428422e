"""Validators for settings, checked before a command is formatted (QCoDeS style): nothing out of range is sent."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from labctl.drivers.errors import LimitError


class Validator:
    """Checks a value and returns it (possibly normalised); raises :class:`LimitError` naming ``what``."""

    def __call__(self, value: Any, what: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The pyvisa-sim ``specs`` entry describing this validator (used to generate simulation YAML)."""
        return {}


@dataclass(frozen=True)
class Range(Validator):
    """A finite number within [lo, hi]."""

    lo: float
    hi: float
    unit: str = ""

    def __call__(self, value: Any, what: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise LimitError(f"{what}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise LimitError(f"{what}: {value!r} is not finite")
        if not self.lo <= number <= self.hi:
            raise LimitError(f"{what}: {number:g}{self.unit} is outside [{self.lo:g}, {self.hi:g}]{self.unit}")
        return number

    def spec(self) -> dict[str, Any]:
        return {"type": "float", "min": self.lo, "max": self.hi}


@dataclass(frozen=True)
class IntRange(Validator):
    """An integer within [lo, hi]."""

    lo: int
    hi: int

    def __call__(self, value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int,)) and not (
                isinstance(value, float) and value.is_integer()):
            raise LimitError(f"{what}: {value!r} is not an integer")
        number = int(value)
        if not self.lo <= number <= self.hi:
            raise LimitError(f"{what}: {number} is outside [{self.lo}, {self.hi}]")
        return number

    def spec(self) -> dict[str, Any]:
        return {"type": "int", "min": self.lo, "max": self.hi}


class OneOf(Validator):
    """One of a fixed set of values."""

    def __init__(self, values: Iterable[Any]) -> None:
        self.values = tuple(values)

    def __call__(self, value: Any, what: str) -> Any:
        if value not in self.values:
            raise LimitError(f"{what}: {value!r} is not one of {list(self.values)}")
        return value

    def spec(self) -> dict[str, Any]:
        kinds = {type(v) for v in self.values}
        kind = "int" if kinds <= {int, bool} else "float" if kinds <= {int, float} else "str"
        return {"type": kind, "valid": [int(v) if kind == "int" else v for v in self.values]}


class Boolean(Validator):
    """True/False, sent as 1/0."""

    def __call__(self, value: Any, what: str) -> bool:
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise LimitError(f"{what}: {value!r} is not a boolean")
        return bool(value)

    def spec(self) -> dict[str, Any]:
        return {"type": "int", "valid": [0, 1]}
