"""Bench files: one TOML file describes a bench (instruments, wiring, safety limits, emulated chip).

Validation is complete before anything connects: every problem is reported at once, each with its key path
(``instruments.heaters.address: field required``), and a file with any problem opens nothing. Limits are also held
against the instruments' full scales and a photonic chip's plausible bounds (:mod:`labctl.bench.full_scale`).
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Driver names a bench file may use, mapped to their classes (imported only when a bench opens).
DRIVERS: dict[str, str] = {
    "keysight_8164b": "labctl.drivers.keysight_8164b:Keysight8164B",
    "keysight_n777xc": "labctl.drivers.keysight_n777xc:KeysightN777xC",
    "keysight_n774xa": "labctl.drivers.keysight_n774xa:KeysightN774xA",
    "santec_tsl570": "labctl.drivers.santec_tsl570:SantecTSL570",
    "thorlabs_pm100": "labctl.drivers.thorlabs_pm100:ThorlabsPM100",
    "keithley_2400": "labctl.drivers.keithley_2400:Keithley2400",
    "qontrol": "labctl.drivers.qontrol:Qontrol",
    "greymatter": "labctl.drivers.greymatter:Greymatter",
    "keysight_daq970a": "labctl.drivers.keysight_daq970a:KeysightDAQ970A",
}


#: Drivers that read bank outputs as voltages on scan channels (TIAs into a DAQ): their detectors name a channel.
ADC_DRIVERS: frozenset[str] = frozenset({"keysight_daq970a"})


#: Largest channel, port, bank or ring index a bench file may give (beyond any instrument; keeps numbers in C ints).
MAX_INDEX = 65_535


class BenchConfigError(ValueError):
    """A bench file is invalid; ``problems`` lists (key path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        # one line (every problem, each naming its key), so a command line prints one error line
        listed = "; ".join(f"{path}: {' '.join(str(message).split())}" for path, message in problems)
        more = f" ({len(problems)} problems)" if len(problems) > 1 else ""
        super().__init__(f"invalid bench file {source}{more}: {listed}")


class _Strict(BaseModel):
    #: NaN and infinity are never a setting or a limit (``gt=0`` alone lets ``inf`` through)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InstrumentConfig(_Strict):
    driver: str = Field(description="driver name, one of labctl.bench.config.DRIVERS")
    address: str | None = Field(default=None, min_length=1,
                                description="VISA resource name or serial URL/port (real benches)")
    options: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments for the driver")
    #: The model the bench expects (``*IDN?`` model field, e.g. ``N7778C``; ``Q8iv`` for a Qontrol): limits are
    #: checked against its full scale before connecting, and the instrument must report it at connect.
    model: str | None = Field(default=None, min_length=1)

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value not in DRIVERS:
            raise ValueError(f"unknown driver {value!r}; known drivers: {', '.join(sorted(DRIVERS))}")
        return value


class HeaterWiring(_Strict):
    instrument: str
    mode: Literal["voltage", "current"] = "voltage"
    #: Heater channel of ring (bank, ring), row-major: channels[bank * rings + ring].
    channels: list[int] = Field(min_length=1)

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if any(not 0 <= c <= MAX_INDEX for c in value):
            raise ValueError(f"channel numbers must be 0..{MAX_INDEX}")
        if len(set(value)) != len(value):
            raise ValueError("a heater channel is wired to more than one ring")
        return value


class DetectorWiring(_Strict):
    """Where one bank's output is read: two power-meter ports, a source meter on a balanced photodiode, or the
    balanced photodiode's transimpedance amplifier (TIA) on one channel of a DAQ."""

    instrument: str
    #: 0-based interface ports of the power meter (front-panel port 1 is port 0).
    through_port: int | None = Field(default=None, ge=0, le=MAX_INDEX)
    drop_port: int | None = Field(default=None, ge=0, le=MAX_INDEX)
    #: DAQ channel number (slot x 100 + channel, e.g. 101) carrying this bank's TIA output.
    channel: int | None = Field(default=None, ge=101, le=9_999)
    #: TIA transimpedance, V/A (negative for an inverting amplifier): volts on the channel per amp of photocurrent.
    tia_gain_v_per_a: float | None = None
    #: TIA output with no photocurrent, V (measured with the lasers off); subtracted before dividing by the gain.
    tia_offset_v: float = 0.0
    #: Source meter only: the Trigger Link input line (1-4) that the sweeping laser's trigger output is cabled to;
    #: with it, spectra are continuous laser sweeps read into the meters' buffers instead of laser steps.
    trigger_line: int | None = Field(default=None, ge=1, le=4)

    @model_validator(mode="after")
    def _ports_together(self) -> DetectorWiring:
        if (self.through_port is None) != (self.drop_port is None):
            raise ValueError("give both through_port and drop_port (power meter) or neither (balanced detector)")
        if (self.channel is None) != (self.tia_gain_v_per_a is None):
            raise ValueError("give both channel and tia_gain_v_per_a (TIA into a DAQ) or neither")
        if self.channel is not None and self.through_port is not None:
            raise ValueError("a detector is either power-meter ports or a DAQ channel, not both")
        if self.trigger_line is not None and (self.channel is not None or self.through_port is not None):
            raise ValueError("trigger_line is for a source meter on a balanced photodiode (no ports, no channel)")
        if self.tia_gain_v_per_a is not None and not (math.isfinite(self.tia_gain_v_per_a)
                                                      and self.tia_gain_v_per_a != 0.0):
            raise ValueError(f"tia_gain_v_per_a must be finite and non-zero, got {self.tia_gain_v_per_a!r}")
        if not math.isfinite(self.tia_offset_v):
            raise ValueError(f"tia_offset_v must be finite, got {self.tia_offset_v!r}")
        return self


class Wiring(_Strict):
    banks: int = Field(ge=1, le=MAX_INDEX)
    rings: int = Field(ge=1, le=MAX_INDEX)
    heaters: HeaterWiring
    #: Laser instrument feeding each WDM channel, in channel order.
    lasers: list[str] = Field(min_length=1)
    #: Wavelength of each WDM channel (m), in channel order.
    wavelengths_m: list[float] = Field(min_length=1)
    inputs: Literal["laser_power"] = Field(
        default="laser_power", description="how input values are encoded on the channels")
    detectors: list[DetectorWiring] = Field(min_length=1)
    #: Linearity bound of the readout that reads the banks (dB, from its data sheet): what no reading on the bench
    #: can check (one meter cannot check itself), added by verification to the accuracy it reports. Default: 0.02 dB
    #: for power meters on the bank ports, 0 for source meters and DAQs on on-chip photodiodes.
    readout_linearity_db: float | None = Field(default=None, ge=0.0, le=3.0)


class Limits(_Strict):
    heater_max_voltage_v: float | list[float] | None = Field(default=None, description="per channel or scalar")
    heater_max_current_a: float | list[float] | None = None
    heater_max_power_w: float | list[float] = Field(description="per channel or scalar")
    total_heater_power_w: float = Field(gt=0)
    #: Lowest heater resistance to assume when turning a voltage into power for the checks (worst case).
    heater_min_resistance_ohm: float = Field(gt=0)
    #: Highest heater resistance (hot) to assume when turning a current into power for the checks (worst case).
    heater_max_resistance_ohm: float = Field(gt=0)
    laser_max_power_w: float = Field(gt=0)
    #: Largest photocurrent a source meter may let through an on-chip detector: set as its compliance at connect
    #: (readings at compliance are errors). None: the driver's default (10 mA).
    detector_max_current_a: float | None = Field(default=None, gt=0)
    #: Read the drive back after every heater write and fail beyond this difference (V or A); None: no read-back.
    heater_readback_tolerance: float | None = Field(default=None, gt=0)
    #: Largest heater step in one write when ramping (None: no ramping).
    heater_ramp_step: float | None = Field(default=None, gt=0)
    laser_ramp_step_w: float | None = Field(default=None, gt=0)
    #: Limit keys allowed beyond the plausible bounds for a photonic chip (labctl.bench.full_scale.PLAUSIBLE),
    #: e.g. ["laser_max_power_w"] for a bench that really needs more than +20 dBm per laser.
    force_implausible: list[str] = Field(default_factory=list)

    @field_validator("heater_max_voltage_v", "heater_max_current_a", "heater_max_power_w")
    @classmethod
    def _positive(cls, value: float | list[float] | None) -> float | list[float] | None:
        values = [] if value is None else value if isinstance(value, list) else [value]
        if any(not (v > 0 and v < float("inf")) for v in values):
            raise ValueError("limits must be finite and > 0")
        return value


class EmulatedChip(_Strict):
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    #: Overrides of :class:`labctl.sim.chip_spec.ChipSpec`, section by section.
    spec: dict[str, Any] = Field(default_factory=dict)


class BenchInfo(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["emulated", "real"]
    description: str = ""
    #: Wait after a heater change before reading (5 thermal time constants, at least 1 ms in practice).
    settle_time_s: float = Field(default=1e-3, ge=0)
    #: Identity of the chip on the bench (die / wafer label); calibration files are tied to it.
    chip_id: str = ""


class BenchConfig(_Strict):
    bench: BenchInfo
    instruments: dict[str, InstrumentConfig] = Field(min_length=1)
    wiring: Wiring
    limits: Limits
    chip: EmulatedChip | None = None
    #: Injected faults of an emulated bench (labctl.sim.faults: kind, instrument, match, after, probability, count,
    #: seed, delay_s, down_messages), for reliability tests; checked by the emulation root.
    faults: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def wiring_sha256(self) -> str:
        """Hash of the wiring: a calibration is valid for this wiring only. The trigger cabling of a sweep changes no
        path a calibration describes: kept out, so that calibrations stay valid when a bench gains (or loses) it; so
        is the readout's stated linearity bound (a figure of the data sheet, which only verification reads)."""
        import json

        wiring = self.wiring.model_dump(exclude={"detectors": {"__all__": {"trigger_line"}},
                                                 "readout_linearity_db": True})
        return hashlib.sha256(json.dumps(wiring, sort_keys=True).encode()).hexdigest()

    @property
    def chip_id(self) -> str:
        """The chip on the bench: the file's chip_id, else the emulated chip's seed."""
        return self.bench.chip_id or (f"emulated seed {self.chip.seed}" if self.chip is not None else "")

    @model_validator(mode="after")
    def _cross_checks(self) -> BenchConfig:
        problems: list[str] = []
        names = set(self.instruments)
        w = self.wiring
        if w.heaters.instrument not in names:
            problems.append(f"wiring.heaters.instrument: {w.heaters.instrument!r} is not an instrument")
        if len(w.heaters.channels) != w.banks * w.rings:
            problems.append(f"wiring.heaters.channels: {len(w.heaters.channels)} channels for "
                            f"{w.banks} x {w.rings} rings (wiring.banks x wiring.rings)")
        for i, laser in enumerate(w.lasers):
            if laser not in names:
                problems.append(f"wiring.lasers.{i}: {laser!r} is not an instrument")
        if len(w.wavelengths_m) != len(w.lasers):
            problems.append(f"wiring.wavelengths_m: {len(w.wavelengths_m)} wavelengths for {len(w.lasers)} lasers "
                            "(wiring.lasers)")
        for i, wl in enumerate(w.wavelengths_m):
            if not 1.0e-6 < wl < 2.0e-6:
                problems.append(f"wiring.wavelengths_m.{i}: {wl!r} m is not a plausible wavelength (give metres)")
        if len(w.detectors) != w.banks:
            problems.append(f"wiring.detectors: {len(w.detectors)} detectors for {w.banks} banks (wiring.banks)")
        adc_channels: dict[tuple[str, int], int] = {}
        for i, det in enumerate(w.detectors):
            if det.instrument not in names:
                problems.append(f"wiring.detectors.{i}.instrument: {det.instrument!r} is not an instrument")
                continue
            is_adc = self.instruments[det.instrument].driver in ADC_DRIVERS
            if is_adc and det.channel is None:
                problems.append(f"wiring.detectors.{i}.channel: {det.instrument!r} is a DAQ; give the channel and "
                                "tia_gain_v_per_a of this bank's TIA")
            elif not is_adc and det.channel is not None:
                problems.append(f"wiring.detectors.{i}.channel: {det.instrument!r} is not a DAQ "
                                f"({self.instruments[det.instrument].driver})")
            elif det.channel is not None:
                first = adc_channels.setdefault((det.instrument, det.channel), i)
                if first != i:
                    problems.append(f"wiring.detectors.{i}.channel: {det.instrument} channel {det.channel} already "
                                    f"reads detector {first}")
        kinds = {"power-meter ports" if d.through_port is not None else "DAQ channels" if d.channel is not None
                 else "source meters" for d in w.detectors}
        if len(kinds) > 1:
            problems.append(f"wiring.detectors: mixes {', '.join(sorted(kinds))}; one readout kind per bench")
        n_heaters = w.banks * w.rings
        for key in ("heater_max_voltage_v", "heater_max_current_a", "heater_max_power_w"):
            value = getattr(self.limits, key)
            if isinstance(value, list) and len(value) != n_heaters:
                problems.append(f"limits.{key}: {len(value)} values for {n_heaters} heaters (wiring.banks x wiring.rings)")
        if w.heaters.mode == "voltage" and self.limits.heater_max_voltage_v is None:
            problems.append("limits.heater_max_voltage_v: required for voltage-driven heaters")
        if w.heaters.mode == "current" and self.limits.heater_max_current_a is None:
            problems.append("limits.heater_max_current_a: required for current-driven heaters")
        if self.bench.kind == "emulated" and self.chip is None:
            problems.append("chip: an emulated bench needs a [chip] table (seed and optional overrides)")
        if self.bench.kind == "real" and self.chip is not None:
            problems.append("chip: only emulated benches have a [chip] table")
        if self.bench.kind == "real" and self.faults:
            problems.append("faults: only emulated benches take injected faults")
        for i, fault in enumerate(self.faults):
            target = fault.get("instrument")
            if isinstance(target, str) and target not in names:
                problems.append(f"faults.{i}.instrument: {target!r} is not an instrument")
        if self.bench.kind == "real":
            for name, inst in self.instruments.items():
                if inst.address is None:
                    problems.append(f"instruments.{name}.address: required for a real bench")
        if self.limits.heater_min_resistance_ohm > self.limits.heater_max_resistance_ohm:
            problems.append("limits.heater_min_resistance_ohm: larger than heater_max_resistance_ohm")
        if problems:
            raise ValueError("\n".join(problems))
        return self


_TYPE_TAGS = frozenset({"float", "int", "str", "bool", "none"})


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for error in exc.errors():
        # a union's branches (``float``, ``list[float]``) are not keys of the file: one problem per key
        path = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p)))
        if path in seen and error["type"] != "value_error":
            continue
        seen.add(path)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "value_error" and "\n" in message or message.startswith(("wiring.", "limits.",
                                                                                     "chip:", "faults")):
            for line in message.splitlines():
                key, _, text = line.partition(": ")
                out.append((key, text) if text else (path or "(top level)", line))
            continue
        out.append((path or "(top level)", message))
    return out


#: Driver arguments the bench sets itself; a bench file's ``options`` may not give them.
_RESERVED_OPTIONS = frozenset({"resource", "resource_manager", "name", "clock"})


def option_problems(config: BenchConfig) -> list[tuple[str, str]]:
    """Each instrument's ``options`` held against its driver's constructor: known names, and values of the type
    the driver's default has (a number for a number), so a typo fails here, not deep inside a connect."""
    import importlib
    import inspect

    problems: list[tuple[str, str]] = []
    for name, inst in config.instruments.items():
        if not inst.options:
            continue
        module, _, cls_name = DRIVERS[inst.driver].partition(":")
        params = inspect.signature(getattr(importlib.import_module(module), cls_name)).parameters
        known = sorted(p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in _RESERVED_OPTIONS)
        for key, value in inst.options.items():
            where = f"instruments.{name}.options.{key}"
            if key not in known:
                problems.append((where, f"not an option of driver {inst.driver} (options: {', '.join(known)})"))
                continue
            default = params[key].default
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    problems.append((where, f"expected true or false, got {value!r:.40}"))
            elif isinstance(default, int | float) or key.endswith(("_s", "_hz", "_v", "_a", "_w", "_m")):
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    problems.append((where, f"expected a finite number, got {value!r:.40}"))
                elif value < 0:
                    problems.append((where, f"must be >= 0, got {value!r}"))
    return problems


def parse_bench(data: dict[str, Any], source: str = "<dict>") -> BenchConfig:
    """Validate a bench description; raises :class:`BenchConfigError` listing every problem."""
    try:
        config = BenchConfig.model_validate(data)
    except ValidationError as exc:
        raise BenchConfigError(source, _problems(exc)) from None
    from labctl.bench.full_scale import limit_problems

    problems = option_problems(config) or limit_problems(config)
    if problems:
        raise BenchConfigError(source, problems)
    if config.chip is not None:
        from labctl.bench.emulation import check_chip_spec   # the emulation root knows the chip's parameters

        try:
            check_chip_spec(config.chip.spec)
        except ValueError as exc:
            raise BenchConfigError(source, [("chip.spec", str(exc))]) from None
    if config.faults:
        from labctl.bench.emulation import fault_problems   # the emulation root knows the fault kinds

        problems = [(f"faults.{i}.{key}", message) for i, entry in enumerate(config.faults)
                    for key, message in fault_problems(entry)]
        if problems:
            raise BenchConfigError(source, problems)
    return config


def load_bench(path: str | Path | None = None) -> tuple[BenchConfig, str]:
    """Read and validate a bench file (the embedded default when ``path`` is None); returns (config, sha256)."""
    if path is None:
        text = (resources.files("labctl.bench") / "benches" / "default.toml").read_text()
        source = "embedded default bench"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise BenchConfigError(str(path), [("(file)", f"cannot read: {exc.strerror or exc}")]) from None
        except UnicodeDecodeError as exc:
            raise BenchConfigError(str(path), [("(file)", f"not a text file (byte {exc.start} is not UTF-8)")]) \
                from None
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchConfigError(source, [("(syntax)", str(exc))]) from None
    return parse_bench(data, source), hashlib.sha256(text.encode()).hexdigest()


def example_bench_paths() -> list[Path]:
    """Example bench files for real instrument sets (addresses are placeholders), shipped with labctl."""
    return sorted(Path(str(resources.files("labctl.bench") / "examples")).glob("*.toml"))


def embedded_bench_path(name: str) -> Path:
    return Path(str(resources.files("labctl.bench") / "benches" / f"{name}.toml"))
