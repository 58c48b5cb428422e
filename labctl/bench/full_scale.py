"""Limits of a bench file against what its instruments can do and what a photonic chip can take, before anything
connects.

Two checks, each a one-line problem with its key path (collected by :func:`labctl.bench.config.parse_bench`):

* **Full scale.** A limit beyond the driver's full scale is a mistake (``limits.heater_max_voltage_v: 15 V exceeds
  the Qontrol Q8iv full scale 12 V``). The full scales are read from the drivers' own declarations (the validator
  of the drive or power setting, or the driver's per-model table), so each stays in one place. An instrument
  entry may name its ``model``: the check then uses that model's full scale, otherwise the largest of the driver's
  models. Not overridable: the instrument could not honour the limit anyway.
* **Plausibility.** Limits far beyond what a silicon-photonic chip takes are refused unless the bench file lists
  the key in ``limits.force_implausible`` (``PLAUSIBLE`` below gives the bounds and why).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.bench.config import BenchConfig

#: Upper bounds a photonic-chip bench file may set without ``limits.force_implausible`` naming the key.
PLAUSIBLE: dict[str, tuple[float, str, str]] = {
    # key: (bound, unit, why)
    "heater_max_power_w": (0.1, "W", "a thermo-optic microheater needs tens of mW for a full FSR (reference chip "
                                     "40 mW); 100 mW per heater is already past it"),
    "total_heater_power_w": (3.0, "W", "more than a few watts of heat on one die defeats its temperature control"),
    "laser_max_power_w": (0.1, "W", "+20 dBm per laser into a chip: above it silicon waveguides absorb nonlinearly "
                                    "and fibre-to-chip facets risk damage"),
    "heater_max_resistance_ohm": (1e6, "Ohm", "metal and doped-silicon heaters are 10 Ohm .. 100 kOhm"),
}
#: Lower bounds, same rule.
PLAUSIBLE_MIN: dict[str, tuple[float, str, str]] = {
    "heater_min_resistance_ohm": (10.0, "Ohm", "metal and doped-silicon heaters are 10 Ohm .. 100 kOhm; a few "
                                               "ohms is a short, and the power estimate would be meaningless"),
}


@dataclass(frozen=True)
class FullScale:
    """One instrument's full scale for one quantity, and how to name it in a message."""

    value: float
    unit: str
    label: str


def _fmt(value: float, unit: str) -> str:
    if unit == "A" and abs(value) < 1:
        return f"{value * 1e3:g} mA"
    if unit == "W" and abs(value) < 1:
        return f"{value * 1e3:g} mW"
    return f"{value:g} {unit}"


def _qontrol(mode: str, model: str | None) -> FullScale:
    from labctl.drivers import qontrol

    table = qontrol.FULL_SCALE
    index = 0 if mode == "voltage" else 1
    if model in table:
        return FullScale(table[model][index], "V" if index == 0 else "A", f"Qontrol {model}")
    return FullScale(max(v[index] for v in table.values()), "V" if index == 0 else "A",
                     "largest Qontrol (" + ", ".join(table) + ")")


def _greymatter(mode: str, model: str | None) -> FullScale:
    from labctl.drivers.greymatter import CurrentOutput, VoltageOutput

    if mode == "voltage":
        hi = VoltageOutput.voltage_v.validator.hi  # type: ignore[union-attr]
        return FullScale(float(hi), "V", "greymatter LTC2664 (+-10 V span)")
    hi_ma = CurrentOutput.current_ma.validator.hi  # type: ignore[union-attr]
    return FullScale(float(hi_ma) * 1e-3, "A", "greymatter LTC2662 (300 mA span)")


#: Heater drivers: driver name -> (mode, model) -> full scale of the drive (V or A).
HEATER_FULL_SCALE: dict[str, Callable[[str, str | None], FullScale]] = {
    "qontrol": _qontrol,
    "greymatter": _greymatter,
}


def _keysight_laser(model: str | None) -> FullScale:
    from labctl.drivers.keysight_laser import POWER_LIMITS_W

    return FullScale(float(POWER_LIMITS_W[1]), "W", f"Keysight {model or 'laser'} power setting")


def _santec(model: str | None) -> FullScale:
    from labctl.drivers.santec_tsl570 import POWER_RANGE_DBM

    return FullScale(1e-3 * 10 ** (POWER_RANGE_DBM[1] / 10), "W",
                     f"Santec {model or 'TSL-570'} power setting (+{POWER_RANGE_DBM[1]:g} dBm)")


#: Laser drivers: driver name -> model -> full scale of the output power (W).
LASER_FULL_SCALE: dict[str, Callable[[str | None], FullScale]] = {
    "keysight_n777xc": _keysight_laser,
    "keysight_8164b": _keysight_laser,
    "santec_tsl570": _santec,
}


def known_models(driver: str) -> tuple[str, ...] | None:
    """Models a driver accepts at connect (None: the driver does not keep a list)."""
    from labctl.drivers import keysight_8164b, keysight_daq970a, keysight_n774xa, keysight_n777xc, qontrol

    lists: dict[str, tuple[str, ...]] = {
        "qontrol": tuple(qontrol.FULL_SCALE), "keysight_n777xc": tuple(keysight_n777xc.MODELS),
        "keysight_n774xa": tuple(keysight_n774xa.PORTS_BY_MODEL),
        "keysight_8164b": tuple(keysight_8164b.MAINFRAME_MODELS),
        "keysight_daq970a": tuple(keysight_daq970a.MODELS),
    }
    return lists.get(driver)


def _values(value: float | list[float] | None) -> list[float]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def limit_problems(config: BenchConfig) -> list[tuple[str, str]]:
    """Every full-scale and plausibility problem of ``config``'s limits, as (key path, message)."""
    problems: list[tuple[str, str]] = []
    limits, wiring = config.limits, config.wiring
    for name, inst in config.instruments.items():
        models = known_models(inst.driver)
        if inst.model is not None and models is not None and inst.model not in models:
            problems.append((f"instruments.{name}.model", f"{inst.model!r} is not a model the {inst.driver} driver "
                             f"drives ({', '.join(models)})"))
    heaters = config.instruments.get(wiring.heaters.instrument)
    if heaters is not None:
        if heaters.driver not in HEATER_FULL_SCALE:
            problems.append(("wiring.heaters.instrument", f"{wiring.heaters.instrument!r} ({heaters.driver}) is not "
                             f"a heater driver ({', '.join(HEATER_FULL_SCALE)})"))
        else:
            scale = HEATER_FULL_SCALE[heaters.driver](wiring.heaters.mode, heaters.model)
            key = "heater_max_voltage_v" if wiring.heaters.mode == "voltage" else "heater_max_current_a"
            problems += _against(f"limits.{key}", getattr(limits, key), scale)
    for i, laser in enumerate(wiring.lasers):
        inst = config.instruments.get(laser)
        if inst is None:
            continue
        if inst.driver not in LASER_FULL_SCALE:
            problems.append((f"wiring.lasers.{i}", f"{laser!r} ({inst.driver}) is not a laser driver "
                             f"({', '.join(LASER_FULL_SCALE)})"))
            continue
        problems += _against("limits.laser_max_power_w", limits.laser_max_power_w, LASER_FULL_SCALE[inst.driver](
            inst.model), what=f" of {laser}")
    forced = set(limits.force_implausible)
    for key in sorted(forced - set(PLAUSIBLE) - set(PLAUSIBLE_MIN)):
        problems.append(("limits.force_implausible", f"{key!r} has no plausibility bound to force "
                         f"({', '.join(sorted({*PLAUSIBLE, *PLAUSIBLE_MIN}))})"))
    for table, above in ((PLAUSIBLE, True), (PLAUSIBLE_MIN, False)):
        for key, (bound, unit, why) in table.items():
            if key in forced:
                continue
            for k, v in enumerate(_values(getattr(limits, key))):
                if (v > bound) if above else (v < bound):
                    index = f".{k}" if isinstance(getattr(limits, key), list) else ""
                    word = "above" if above else "below"
                    problems.append((f"limits.{key}{index}", f"{_fmt(v, unit)} is {word} the plausible "
                                     f"{_fmt(bound, unit)} for a photonic chip ({why}); list {key!r} in "
                                     "limits.force_implausible if this bench really needs it"))
                    break
    return problems


def _against(key: str, value: float | list[float] | None, scale: FullScale, what: str = "") -> list[tuple[str, str]]:
    for k, v in enumerate(_values(value)):
        if math.isfinite(v) and v > scale.value * (1 + 1e-9):
            index = f".{k}" if isinstance(value, list) else ""
            return [(f"{key}{index}", f"{_fmt(v, scale.unit)}{what} exceeds the {scale.label} full scale "
                     f"{_fmt(scale.value, scale.unit)}")]
    return []
