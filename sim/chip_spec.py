"""ChipSpec: every physical and instrument parameter of the emulated chip, in SI units.

Defaults come from /work/shared/reference/reference-chip.md. The spec is a frozen tree of dataclasses so a bench
file can override any subset (``with_overrides``) and the exact parameters can be written next to every result
(``to_toml``). Validation names the dotted parameter path so a bad bench file points at its own line.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import tomli_w

__all__ = [
    "ChipSpecError",
    "LayoutSpec",
    "OpticsSpec",
    "FabricationSpec",
    "HeaterSpec",
    "ThermalSpec",
    "LaserSpec",
    "DetectorSpec",
    "PowerMeterSpec",
    "TimingSpec",
    "ChipSpec",
]


class ChipSpecError(ValueError):
    """A spec value is invalid; the message starts with the dotted parameter path."""


# check codes: "pos" > 0, "nonneg" >= 0, "frac" in [0, 1), "unit" in (0, 1], "any" finite, "neg" < 0
def _p(default: Any, check: str, doc: str) -> Any:
    """A spec field with its validation rule and documentation (unit in the doc)."""
    return field(default=default, metadata={"check": check, "doc": doc})


def _check_number(path: str, value: Any, check: str, integer: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ChipSpecError(f"{path} must be a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ChipSpecError(f"{path} must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ChipSpecError(f"{path} must be finite, got {value!r}")
    rules = {
        "pos": (lambda v: v > 0, "must be > 0"),
        "nonneg": (lambda v: v >= 0, "must be >= 0"),
        "neg": (lambda v: v < 0, "must be < 0"),
        "frac": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
        "unit": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
        "any": (lambda v: True, ""),
    }
    ok, msg = rules[check]
    if not ok(value):
        raise ChipSpecError(f"{path} {msg}, got {value!r}")


class _Section:
    """Mixin: validates every field of a section dataclass against its metadata rule."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            path = f"{self.section}.{f.name}"
            value = getattr(self, f.name)
            check = f.metadata.get("check", "any")
            hint = hints[f.name]
            if hint is int or hint is float:
                _check_number(path, value, check, integer=hint is int)
                if hint is float:
                    object.__setattr__(self, f.name, float(value))
            elif _is_tuple_hint(hint):
                if value is None:
                    continue
                if not isinstance(value, (tuple, list)):
                    raise ChipSpecError(f"{path} must be a 1-D list of numbers, got {value!r}")
                if len(value) == 0 or any(isinstance(v, (list, tuple)) for v in value):
                    raise ChipSpecError(f"{path} must be a non-empty 1-D list of numbers, got {value!r}")
                for k, v in enumerate(value):
                    _check_number(f"{path}[{k}]", v, check, integer=False)
                object.__setattr__(self, f.name, tuple(float(v) for v in value))
        self.validate()

    def validate(self) -> None:
        """Cross-field checks of one section (override)."""


def _is_tuple_hint(hint: Any) -> bool:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(typing.get_origin(a) is tuple for a in args)
    return typing.get_origin(hint) is tuple


@dataclass(frozen=True)
class LayoutSpec(_Section):
    """How many banks and rings; channel count lives in LaserSpec."""

    section: ClassVar[str] = "layout"
    n_banks: int = _p(4, "pos", "number of weight banks (each: through bus, drop bus, balanced detector)")
    n_rings: int = _p(10, "pos", "rings per bank; ring i is designed near channel i")


@dataclass(frozen=True)
class OpticsSpec(_Section):
    """Ring and bus optics (Airy add-drop model)."""

    section: ClassVar[str] = "optics"
    ring_radius_m: float = _p(8e-6, "pos", "ring radius, m; round-trip length L = 2*pi*radius")
    group_index: float = _p(4.2, "pos", "ring group index n_g; FSR = lambda^2/(n_g L) ~ 11.4 nm")
    effective_index: float = _p(2.4, "pos", "bus effective index, sets the wavelength-dependent bus phases")
    loaded_q: float = _p(8000.0, "pos", "loaded Q of a nominal ring (FWHM = lambda/Q ~ 0.19 nm)")
    intrinsic_loss_db_per_cm: float = _p(
        8.0, "nonneg",
        "ring round-trip loss, dB/cm (waveguide + bend + heater absorption); with Q=8000 and critical-ish coupling "
        "it gives ~20 dB extinction and ~0.84 drop peak, inside the reference 15-25 dB / 0.8-0.95 ranges",
    )
    design_detuning_m: float = _p(-0.3e-9, "any", "design resonance minus channel wavelength, m (blue: heaters red-shift)")
    bus_loss_db_per_ring: float = _p(0.1, "nonneg", "bus insertion loss per ring passed, dB (each bus)")
    facet_loss_db: float = _p(3.0, "nonneg", "fibre-to-chip loss per facet, dB (input and output ports)")
    bank_split_fraction: float = _p(
        1.0, "unit",
        "fraction of the post-facet laser power reaching each bank's bus; 1.0 = every bank sees the full "
        "post-facet power (idealised fan-out, the default), 1/n_banks = lossless passive splitter",
    )
    bus_gap_length_m: float = _p(30e-6, "pos", "nominal physical bus length between neighbouring rings, m")


@dataclass(frozen=True)
class FabricationSpec(_Section):
    """Spreads of the per-chip hidden parameters drawn from the seed (set to 0 for an ideal chip)."""

    section: ClassVar[str] = "fabrication"
    resonance_offset_m: float = _p(0.5e-9, "nonneg", "fabrication resonance offset, uniform within +-this, m")
    coupling_spread: float = _p(0.05, "frac", "relative spread of each bus power coupling (1-r^2), uniform +-")
    tuning_efficiency_spread: float = _p(0.10, "frac", "relative spread of heater tuning efficiency, uniform +-")
    heater_resistance_spread: float = _p(0.05, "frac", "relative spread of heater resistance, uniform +-")
    crosstalk_spread: float = _p(0.2, "nonneg", "log-normal sigma of each off-diagonal crosstalk coefficient")
    bus_length_spread_m: float = _p(1e-6, "nonneg", "bus gap length spread, uniform +-, m (randomises bus phases)")
    dark_current_mismatch: float = _p(0.1, "frac", "relative spread of each photodiode's dark current, uniform +-")


@dataclass(frozen=True)
class HeaterSpec(_Section):
    """Heater electrical model, DAC and safe limits (limits are documented here; the bench enforces them)."""

    section: ClassVar[str] = "heaters"
    tuning_efficiency_m_per_w: float = _p(0.25e-6, "pos", "own-ring red shift per heater power, m/W (0.25 nm/mW)")
    resistance_ohm: float = _p(1000.0, "pos", "heater resistance at room temperature, ohm")
    self_heating_rise: float = _p(0.04, "nonneg", "relative resistance rise at the reference power (self-heating)")
    self_heating_reference_power_w: float = _p(0.030, "pos", "power at which resistance rises by self_heating_rise, W")
    dac_bits: int = _p(16, "pos", "heater driver DAC resolution, bits")
    dac_full_scale_v: float = _p(12.0, "pos", "voltage-mode DAC full scale, V (Qontrol-class)")
    dac_full_scale_a: float = _p(0.024, "pos", "current-mode DAC full scale, A")
    max_power_w: float = _p(0.040, "pos", "safe limit per heater, W")
    max_total_power_w: float = _p(0.600, "pos", "safe limit, all heaters, W")
    max_voltage_v: float = _p(7.0, "pos", "safe limit per channel, V")

    @property
    def gamma_per_w(self) -> float:
        """Self-heating coefficient: R = R0 (1 + gamma P)."""
        return self.self_heating_rise / self.self_heating_reference_power_w


@dataclass(frozen=True)
class ThermalSpec(_Section):
    """Thermal crosstalk, settling and chip temperature drift."""

    section: ClassVar[str] = "thermal"
    crosstalk_nearest: float = _p(0.08, "frac", "shift of the nearest ring as a fraction of the own-ring shift")
    crosstalk_decay_per_ring: float = _p(3.0, "pos", "factor by which crosstalk falls per further ring")
    crosstalk_adjacent_bank: float = _p(0.005, "frac", "crosstalk fraction onto rings of an adjacent bank")
    crosstalk_decay_per_bank: float = _p(3.0, "pos", "factor by which inter-bank crosstalk falls per further bank")
    time_constant_s: float = _p(10e-6, "pos", "first-order heater thermal time constant, s")
    drift_rms_k: float = _p(0.010, "nonneg", "chip temperature random walk, rms K per drift_reference_time_s")
    drift_reference_time_s: float = _p(600.0, "pos", "time over which the drift reaches drift_rms_k, s")
    temperature_coefficient_m_per_k: float = _p(83e-12, "any", "resonance shift per K of chip temperature, m/K")


@dataclass(frozen=True)
class LaserSpec(_Section):
    """WDM lasers, one per channel."""

    section: ClassVar[str] = "lasers"
    n_channels: int = _p(10, "pos", "number of WDM channels (lasers)")
    first_wavelength_m: float = _p(1550e-9, "pos", "channel 0 wavelength, m")
    channel_spacing_m: float = _p(1.0e-9, "pos", "channel spacing, m")
    wavelengths_m: tuple[float, ...] | None = _p(None, "pos", "explicit channel wavelengths, m, shape (n_channels,)")
    power_w: float = _p(1e-3, "pos", "default laser output power per channel, W")
    min_power_w: float = _p(1e-5, "pos", "lowest settable power, W")
    max_power_w: float = _p(1e-2, "pos", "highest settable power, W")
    rin_db_per_hz: float = _p(-145.0, "neg", "relative intensity noise, dB/Hz")
    power_stability_db: float = _p(0.01, "nonneg", "slow power drift, dB (documented, not modelled)")
    wavelength_repeatability_m: float = _p(1e-12, "nonneg", "uniform +- error added each time a wavelength is set, m")

    def validate(self) -> None:
        if not self.min_power_w <= self.power_w <= self.max_power_w:
            raise ChipSpecError(
                f"lasers.power_w must be within [min_power_w, max_power_w] = "
                f"[{self.min_power_w!r}, {self.max_power_w!r}], got {self.power_w!r}"
            )
        if self.wavelengths_m is not None and len(self.wavelengths_m) != self.n_channels:
            raise ChipSpecError(
                f"lasers.wavelengths_m must have shape ({self.n_channels},), got ({len(self.wavelengths_m)},)"
            )

    def channel_wavelengths_m(self) -> tuple[float, ...]:
        """Nominal channel wavelengths, m."""
        if self.wavelengths_m is not None:
            return self.wavelengths_m
        return tuple(self.first_wavelength_m + k * self.channel_spacing_m for k in range(self.n_channels))


@dataclass(frozen=True)
class DetectorSpec(_Section):
    """On-chip balanced photodetector and its readout."""

    section: ClassVar[str] = "detector"
    responsivity_a_per_w: float = _p(0.9, "pos", "photodiode responsivity, A/W")
    dark_current_a: float = _p(10e-9, "nonneg", "dark current per diode, A")
    input_noise_a_per_rthz: float = _p(5e-12, "nonneg", "thermal/TIA input noise current density, A/sqrt(Hz)")
    readout_bits: int = _p(16, "pos", "readout ADC bits over [-range, +range]")
    readout_range_a: float = _p(5e-3, "pos", "readout full scale, +- A")


@dataclass(frozen=True)
class PowerMeterSpec(_Section):
    """Off-chip optical power meters on the through and drop ports (N7744A-class)."""

    section: ClassVar[str] = "power_meter"
    noise_w: float = _p(1e-12, "nonneg", "noise rms at the reference averaging time, W")
    noise_reference_time_s: float = _p(1e-4, "pos", "averaging time of noise_w, s (noise scales as 1/sqrt(t))")
    linearity_db: float = _p(0.02, "nonneg", "fixed per-meter nonlinearity bound, +- dB")
    nonlinearity_period_db: float = _p(30.0, "pos", "period of the nonlinearity pattern in power, dB")
    readout_bits: int = _p(16, "pos", "readout bits over [0, range]")
    ranges_dbm: tuple[float, ...] = _p(
        (10.0, 0.0, -10.0, -20.0, -30.0, -40.0, -50.0, -60.0, -70.0, -80.0), "any", "selectable range tops, dBm"
    )


@dataclass(frozen=True)
class TimingSpec(_Section):
    """Instrument latencies charged to the virtual clock by the simulated instruments."""

    section: ClassVar[str] = "timing"
    scpi_query_s: float = _p(2e-3, "nonneg", "SCPI query over GPIB or LAN, s")
    serial_line_s: float = _p(1e-3, "nonneg", "serial command line (vector writes count as one), s")
    settle_time_constants: float = _p(5.0, "nonneg", "heater settle before a reading, in time constants")
    min_settle_s: float = _p(1e-3, "nonneg", "heater settle before a reading, lower bound in practice, s")
    meter_overhead_s: float = _p(1e-3, "nonneg", "power meter reading overhead on top of averaging time, s")
    laser_wavelength_change_s: float = _p(0.1, "nonneg", "laser wavelength step, s")
    sweep_rate_m_per_s: float = _p(10e-9, "pos", "continuous sweep rate, m/s")
    sweep_step_m: float = _p(1e-12, "pos", "sweep logging step, m")
    laser_power_change_s: float = _p(0.02, "nonneg", "laser power change, s")


_SECTIONS: dict[str, type] = {
    "layout": LayoutSpec,
    "optics": OpticsSpec,
    "fabrication": FabricationSpec,
    "heaters": HeaterSpec,
    "thermal": ThermalSpec,
    "lasers": LaserSpec,
    "detector": DetectorSpec,
    "power_meter": PowerMeterSpec,
    "timing": TimingSpec,
}


@dataclass(frozen=True)
class ChipSpec:
    """The whole emulated chip and bench: nested frozen sections, SI units, validated on construction."""

    layout: LayoutSpec = field(default_factory=LayoutSpec)
    optics: OpticsSpec = field(default_factory=OpticsSpec)
    fabrication: FabricationSpec = field(default_factory=FabricationSpec)
    heaters: HeaterSpec = field(default_factory=HeaterSpec)
    thermal: ThermalSpec = field(default_factory=ThermalSpec)
    lasers: LaserSpec = field(default_factory=LaserSpec)
    detector: DetectorSpec = field(default_factory=DetectorSpec)
    power_meter: PowerMeterSpec = field(default_factory=PowerMeterSpec)
    timing: TimingSpec = field(default_factory=TimingSpec)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ChipSpecError(f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        self.validate()

    def validate(self) -> None:
        """Checks spanning sections."""
        fsr_m = self.lasers.first_wavelength_m**2 / (self.optics.group_index * 2 * math.pi * self.optics.ring_radius_m)
        if self.lasers.wavelength_repeatability_m >= fsr_m:
            raise ChipSpecError(f"lasers.wavelength_repeatability_m must be < FSR {fsr_m!r} (the free spectral range "
                                "from optics.ring_radius_m and optics.group_index)")

    # ---- derived quantities -------------------------------------------------------------------------------
    @property
    def n_heaters(self) -> int:
        """One heater per ring."""
        return self.layout.n_banks * self.layout.n_rings

    # ---- dict / TOML --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (tuples as lists, None omitted) that round-trips through from_dict exactly."""
        out: dict[str, dict[str, Any]] = {}
        for name in _SECTIONS:
            section = getattr(self, name)
            d: dict[str, Any] = {}
            for f in dataclasses.fields(section):
                v = getattr(section, f.name)
                if v is None:
                    continue
                d[f.name] = list(v) if isinstance(v, tuple) else v
            out[name] = d
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ChipSpec":
        """Build from a nested dict; unknown keys are rejected naming their path; missing keys take defaults."""
        if not isinstance(d, Mapping):
            raise ChipSpecError(f"chip spec must be a table, got {type(d).__name__}")
        sections: dict[str, Any] = {}
        for name, value in d.items():
            if name not in _SECTIONS:
                raise ChipSpecError(f"{name}: unknown key (known sections: {', '.join(_SECTIONS)})")
            sec_cls = _SECTIONS[name]
            if not isinstance(value, Mapping):
                raise ChipSpecError(f"{name} must be a table, got {value!r}")
            known = {f.name for f in dataclasses.fields(sec_cls)}
            for key in value:
                if key not in known:
                    raise ChipSpecError(f"{name}.{key}: unknown key")
            sections[name] = sec_cls(**dict(value))
        return cls(**sections)

    def to_toml(self) -> str:
        """TOML text (one table per section)."""
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, path_or_text: str | Path) -> "ChipSpec":
        """Parse a TOML file (Path, or str naming a file) or TOML text (str containing '=' or a newline)."""
        if isinstance(path_or_text, Path) or ("=" not in path_or_text and "\n" not in path_or_text):
            text = Path(path_or_text).read_text(encoding="utf-8")
        else:
            text = path_or_text
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ChipSpecError(f"invalid TOML: {exc}") from exc
        return cls.from_dict(data)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "ChipSpec":
        """A copy with a subset replaced: nested {"optics": {"loaded_q": 5000}} or dotted {"optics.loaded_q": 5000}."""
        base = self.to_dict()
        for key, value in overrides.items():
            if "." in key:
                section, _, name = key.partition(".")
                if section not in _SECTIONS:
                    raise ChipSpecError(f"{section}: unknown key (in override {key!r})")
                base[section][name] = value
            elif isinstance(value, Mapping):
                if key not in _SECTIONS:
                    raise ChipSpecError(f"{key}: unknown key (known sections: {', '.join(_SECTIONS)})")
                base[key].update(value)
            else:
                raise ChipSpecError(f"{key}: override must be a table or a dotted key")
        return ChipSpec.from_dict(base)
