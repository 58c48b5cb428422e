"""Unit suffixes of numeric program data: IEEE 488.2 §7.7.3 multipliers, SCPI unit names, SI values.

``1550.5nm``, ``1550.5 NM``, ``2 mW``, ``-3 DBM``, ``100uA``, ``40NM/S`` all reduce to a value in the base unit
of a *family* (metre, watt, dBm, second, hertz, ...), so an action receives SI numbers whatever the client wrote.

Multipliers (488.2 Table 7-1): EX 1e18, PE 1e15, T 1e12, G 1e9, MA 1e6, K 1e3, M 1e-3, U 1e-6, N 1e-9,
P 1e-12, F 1e-15, A 1e-18. Suffixes are case-insensitive, so ``M`` is milli and ``MA`` mega, with two
exceptions kept for compatibility: ``MHZ`` is megahertz and ``MOHM`` megaohm (488.2 §7.7.3.4). A suffix that is
exactly a unit name is that unit (``M`` is the metre, ``A`` the ampere), which is why ``MA`` on a current is
milliampere and ``MM`` on a length millimetre.

An instrument may accept only some spellings: the Keysight N777xC/N774xC programming guides list, per unit,
"allowed mnemonics" (e.g. metres: PM, NM, UM, MM, M). A :class:`Unit` can carry that list; anything else is -131.
"""

from __future__ import annotations

from dataclasses import dataclass

from labctl.sim.scpi.errors import INVALID_SUFFIX, SUFFIX_TOO_LONG, ScpiError

#: Multiplier -> power of ten (kept as exponents so that ``1550NM`` is exactly ``1550 / 1e9``).
MULTIPLIERS: dict[str, int] = {
    "EX": 18, "PE": 15, "T": 12, "G": 9, "MA": 6, "K": 3, "M": -3, "U": -6, "N": -9, "P": -12, "F": -15, "A": -18,
}
#: Families where a leading M means mega, not milli (488.2 §7.7.3.4: MHZ, MOHM).
MEGA_M_FAMILIES = frozenset({"HZ", "OHM"})

#: Family -> the spellings of its base unit (upper case).
FAMILIES: dict[str, tuple[str, ...]] = {
    "M": ("M",),          # metre
    "M/S": ("M/S",),      # metre per second (sweep speed)
    "S": ("S",),          # second
    "W": ("W", "WATT"),   # watt ("Watt" is the Keysight spelling)
    "DBM": ("DBM",),      # dB referred to 1 mW
    "DB": ("DB",),        # decibel
    "HZ": ("HZ",),        # hertz
    "V": ("V",),          # volt
    "A": ("A",),          # ampere
    "OHM": ("OHM",),      # ohm
    "PCT": ("PCT",),      # percent
}
#: Longest suffix accepted before -134 "Suffix too long" (488.2 §7.7.3.2: at most 12 characters).
MAX_SUFFIX_LENGTH = 12


@dataclass(frozen=True)
class Unit:
    """The unit a numeric parameter accepts: a family, and optionally the exact spellings allowed."""

    family: str
    allowed: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown unit family {self.family!r}; known: {sorted(FAMILIES)}")


def exponent(suffix: str, family: str) -> int | None:
    """The power of ten that turns a value with ``suffix`` into the family's base unit, or None if not its unit."""
    text = suffix.upper()
    for base in FAMILIES[family]:
        if text == base:
            return 0
    for base in FAMILIES[family]:
        if not text.endswith(base):
            continue
        prefix = text[: -len(base)]
        if prefix == "M" and family in MEGA_M_FAMILIES:
            return 6
        if prefix in MULTIPLIERS:
            return MULTIPLIERS[prefix]
    return None


def scale(value: float, power: int) -> float:
    """``value * 10**power`` without the rounding of a negative power's binary fraction (1550e-9 vs 1550/1e9)."""
    return value * 10.0 ** power if power >= 0 else value / 10.0 ** -power


def resolve(suffix: str, units: tuple[Unit, ...]) -> tuple[int, str]:
    """(power of ten, family) of ``suffix`` among the parameter's units; -131 when no unit takes it."""
    if len(suffix) > MAX_SUFFIX_LENGTH:
        raise ScpiError(SUFFIX_TOO_LONG, f"suffix {suffix!r} is longer than {MAX_SUFFIX_LENGTH} characters")
    for unit in units:
        if unit.allowed is not None and suffix.upper() not in unit.allowed:
            continue
        power = exponent(suffix, unit.family)
        if power is not None:
            return power, unit.family
    names = ", ".join(unit.family for unit in units)
    raise ScpiError(INVALID_SUFFIX, f"{suffix!r} is not a unit of this parameter ({names})")
