"""Physics models of the Keysight N7776C/N7778C tunable laser and the N7744A/N7745A multiport power meter.

Both sit in front of the bench's one emulated chip and speak SCPI through the command trees written from their
programming guides (:mod:`labctl.sim.scpi.trees`): any client spelling the manual allows is understood (long or
short mnemonics, any case, optional nodes, units such as ``nm``, ``mW``, ``dBm``, ``MIN``/``MAX``), and what the
instrument refuses queues the standard error. Plain settings take their power-on value and reply format from the
drivers' declarations (:mod:`labctl.drivers.keysight_laser`, :mod:`labctl.drivers.keysight_n774xa`); the
installed laser's tuning range and identity come from the simulation profile.

Wiring is known only through the constructor arguments:

* :class:`KeysightLaserModel` ``(name, channel)``: the laser's output is WDM channel ``channel`` of the chip.
* :class:`KeysightPowerMeterModel` ``(name, port_map)``: interface port p (front-panel port p + 1) sees chip bank
  ``port_map[p][0]``, port ``port_map[p][1]`` (0 = through, 1 = drop), or nothing (dark) when ``None``.

Trigger cabling: every laser's trigger output is taken to be cabled to every power meter's trigger input on the
same bench (the §1.3 set-up with a BNC from the laser to the meter). While a sweep runs with ``:TRIG0:OUTP STF``
the laser hands a :class:`SweepRecord` (one step trigger per lambda-log point) to every model on the bench that
has a ``receive_sweep`` method; other simulated meters (e.g. an 8164B's 81634B) can implement the same method.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from labctl.drivers.keysight_laser import (
    SWEEP_CHECK_CODES,
    WAVELENGTH_MAX_QUERY,
    WAVELENGTH_MIN_QUERY,
    KeysightLaserTree,
)
from labctl.drivers.keysight_n774xa import KeysightN774xPort
from labctl.sim.device_model import Reply
from labctl.sim.instruments import ModelEntry
from labctl.sim.scpi.errors import (
    DATA_OUT_OF_RANGE,
    HEADER_SUFFIX_OUT_OF_RANGE,
    SETTINGS_CONFLICT,
    ScpiError,
)
from labctl.sim.scpi.model import ScpiModel, block, handles, limit_keyword
from labctl.sim.scpi.params import Keyword, Quantity
from labctl.sim.scpi.parser import Parsed
from labctl.sim.scpi.trees import keysight_n774x, keysight_n777xc

if TYPE_CHECKING:
    from labctl.sim.chip import Chip

log = logging.getLogger(__name__)

#: Value a Keysight meter sends for an over-range (or, in dBm, an unrepresentable) reading. The reference only
#: says "a huge value (>1e20)"; float32 max is used so that the marker survives the float32 blocks unchanged.
OVER_RANGE_MARKER_W = float(np.finfo(np.float32).max)

#: Finest sweep step of the N777xC family (0.1 pm): CHEC? code 377 when the step is not a multiple of it.
MIN_SWEEP_STEP_M = 1e-13

#: Logging buffer of one N774x port (user guide: 1 M samples) and the logging defaults assumed before any
#: ``:SENS<n>:FUNC:PAR:LOGG`` (not documented; the drivers always set them).
LOGGING_MAX_POINTS = 1_000_000
LOGGING_DEFAULTS = (100, 1e-4)

#: Auto range: the most sensitive range whose top exceeds the signal by at least this margin (dB).
AUTO_RANGE_MARGIN_DB = 0.2


def ieee_block(payload: bytes) -> bytes:
    """IEEE 488.2 definite-length block ``#<d><len><payload>``."""
    return block(payload)


def keysight_float(value: float, digits: int = 8) -> str:
    """Keysight's NR3 style with a three-digit exponent, e.g. ``+1.00000000E-002`` (as the static dialogues)."""
    text = f"{value:+.{digits}E}"
    if text[-4] == "E":  # two exponent digits (Python's least; a reading's every value): one more
        return f"{text[:-2]}0{text[-2:]}"
    mantissa, _, exponent = text.partition("E")
    return f"{mantissa}E{exponent[0]}{exponent[1:]:0>3}"


_FOUR_DIGIT_EXPONENT = re.compile(r"E[+-]0\d{3}")


def keysight_floats(values: list[float]) -> str:
    """``keysight_float`` of every value, comma-separated, in one format call: every exponent gets a leading 0 (two
    digits, as Python prints a reading's every value, become three); a value whose exponent had three digits
    already (or a non-finite one) sends the reading the value-by-value way."""
    text = (",".join(["%+.8E"] * len(values)) % tuple(values)).replace("E+", "E+0").replace("E-", "E-0")
    if _FOUR_DIGIT_EXPONENT.search(text) or not all(map(math.isfinite, values)):
        return ",".join(map(keysight_float, values))  # (a non-finite value fails as keysight_float fails)
    return text


def watts(value: float, unit: str | None, unit_watt: bool) -> float:
    """A power parameter in W: with its unit suffix, or bare in the instrument's ``:POW:UNIT`` (W or dBm)."""
    if unit == "W" or (unit is None and unit_watt):
        return float(value)
    return 1e-3 * 10.0 ** (float(value) / 10.0)


def dbm(power_w: float) -> float:
    return 10.0 * math.log10(max(power_w, 1e-12) / 1e-3)


# -- the sweep as the laser's trigger output sees it ------------------------------------------------------------------
@dataclass
class SweepRecord:
    """One continuous sweep of a laser: a step trigger at each logged wavelength, for the meters on the bench.

    ``wavelengths_m`` are the wavelengths actually emitted at the triggers (commanded grid plus the sweep's
    wavelength error); the port powers come from the chip at the heater state of the sweep start.
    """

    laser: str
    channel: int
    t0_s: float
    step_period_s: float
    speed_m_per_s: float
    wavelengths_m: np.ndarray
    power_w: float
    chip: Chip
    _cache: dict[float, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_triggers(self) -> int:
        return int(self.wavelengths_m.size)

    @property
    def duration_s(self) -> float:
        return (self.n_triggers - 1) * self.step_period_s

    def trigger_times_s(self, n: int) -> np.ndarray:
        return self.t0_s + self.step_period_s * np.arange(n)

    def port_powers_w(self, averaging_time_s: float) -> np.ndarray:
        """(n_triggers, B, 2) optical port powers at the triggers (laser RIN for that averaging time)."""
        key = float(averaging_time_s)
        if key not in self._cache:
            self._cache[key] = self.port_powers_at_w(self.wavelengths_m, key)
        return self._cache[key]

    def port_powers_at_w(self, wavelengths_m: np.ndarray, averaging_time_s: float) -> np.ndarray:
        return self.chip.port_spectrum_w(wavelengths_m, self.power_w, channel=self.channel,
                                         averaging_time_s=averaging_time_s, noise=True)

    def wavelength_at(self, t_s: np.ndarray) -> np.ndarray:
        """Emitted wavelength at virtual times ``t_s`` (held at the ends outside the sweep)."""
        elapsed = np.clip(np.asarray(t_s, dtype=float) - self.t0_s, 0.0, self.duration_s)
        return self.wavelengths_m[0] + self.speed_m_per_s * elapsed


# -- laser ------------------------------------------------------------------------------------------------------------
_LASER = KeysightLaserTree
_STATE_CODES = {"STOP": 0, "STAR": 1, "PAUS": 2, "CONT": 3}


class KeysightLaserModel(ScpiModel):
    """N7776C/N7778C whose output is WDM channel ``channel`` of the chip.

    Modelled: wavelength / power / output state pushed into ``chip.set_lasers`` (the instrument's state is taken
    from the chip when the bench is built, so both agree from the start); power outside the chip's laser limits
    and wavelengths outside ``:SOUR0:WAV? MIN``/``MAX`` (the profile's tuning range) are refused with -222 and leave
    the state unchanged; the continuous sweep with lambda logging of instruments.md §1.3 (CHEC? codes 368, 375, 376,
    377, 380, 381; EXP?, FLAG?, PMAX?, ``:SOUR0:WAV:SWE 0|1``, ``:SOUR0:WAV:SWE:SOFT``, ``:SOUR0:READ:DATA? LLOG``,
    ``:SOUR0:READ:POIN? LLOG``); ``:LOCK``.

    A sweep runs entirely when it is triggered (``:SOUR0:WAV:SWE:SOFT`` with ``:TRIG0:INP SWS``, or at once on
    ``:SOUR0:WAV:SWE 1`` with any other trigger input): the clock advances by (stop - start) / speed (category
    ``sweep``), step triggers go to the meters when ``:TRIG0:OUTP STF``, and ``:SOUR0:WAV:SWE?`` reads 0 again.
    The emitted wavelengths are the commanded grid plus one wavelength error per sweep, uniform within the chip's
    ``lasers.wavelength_repeatability_m``; the lambda log reports these emitted wavelengths (the log is the
    laser's own wavelength measurement, taken as exact). After a sweep the laser is back at its set wavelength.

    Power: ``:SOUR0:POW <v>MW`` / ``<v>DBM`` / ``<v>W`` in the unit written, a bare value in the unit of
    ``:SOUR0:POW:UNIT`` (0 = dBm, 1 = W); ``:SOUR0:POW?`` answers in that unit. ``*RST`` switches the output off.
    A power command costs one SCPI exchange; the output then ramps linearly to the new power and has settled
    ``laser_power_change_s`` after the command was sent (``chip.set_lasers(power_ramp_s=...)``), while the host may
    talk to other instruments; ``*OPC?`` answers once the ramp is over (that the N777xC counts the settling as part
    of the operation is not confirmed by the guides consulted [?]).

    Not modelled: sweep cycles other than 1 (one cycle runs), pause/continue, dwell/repeat, CHEC? codes 369-374
    and 378-379 (limits not documented), the lock's effect on other commands, and the wavelength averaging of a
    meter during one step (each trigger samples one wavelength).
    """

    category = "laser"
    tree = keysight_n777xc.TREE
    plain = {
        "sweep_mode": _LASER.sweep_mode,
        "sweep_start_m": _LASER.sweep_start_m,
        "sweep_stop_m": _LASER.sweep_stop_m,
        "sweep_step_m": _LASER.sweep_step_m,
        "sweep_speed_m_per_s": _LASER.sweep_speed_m_per_s,
        "sweep_cycles": _LASER.sweep_cycles,
        "lambda_logging": _LASER.lambda_logging,
        "trigger_input": _LASER.trigger_input,
        "trigger_output": _LASER.trigger_output,
    }

    def __init__(self, name: str, channel: int) -> None:
        super().__init__(name)
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or channel < 0:
            raise ValueError(f"{name}: channel must be a non-negative int, got {channel!r}")
        self.channel = int(channel)
        self._armed = False
        self._lambda_log_m = np.empty(0)
        self._limits_m = (0.0, math.inf)
        self._limit_replies = ("", "")
        self._rng = np.random.default_rng()
        self.wavelength_m = float(_LASER.wavelength_m.default)
        self.power_w = float(_LASER.power_reading.default)
        self.output_on = False
        self.power_unit_watt = bool(_LASER.power_unit_watt.default)
        self.sweep_state = int(_LASER.sweep_state.default)
        self.locked = False

    # -- wiring ------------------------------------------------------------------------------------------------------
    def attach(self, bench: Any, profile: Any) -> None:
        super().attach(bench, profile)
        chip = self.chip
        if self.channel >= chip.n_channels:
            raise ValueError(f"{self.name}: channel {self.channel} is not one of the chip's 0..{chip.n_channels - 1}")
        self._rng = np.random.default_rng([chip.seed, 0x7778, self.channel])
        self._limit_replies = (self.dialogue(WAVELENGTH_MIN_QUERY), self.dialogue(WAVELENGTH_MAX_QUERY))
        self._limits_m = (float(self._limit_replies[0]), float(self._limit_replies[1]))
        self.locked = bool(int(self.dialogue(":LOCK?")))
        self._take_chip_state()

    def _take_chip_state(self) -> None:
        chip = self.chip
        self.wavelength_m = float(chip.laser_wavelength_m()[self.channel])
        self.power_w = float(chip.laser_power_w()[self.channel])
        self.output_on = bool(chip.laser_on()[self.channel])

    def reset(self) -> None:
        super().reset()
        self._armed = False
        self.sweep_state = 0
        self.power_unit_watt = bool(_LASER.power_unit_watt.default)
        if self.output_on:
            self.output_on = False
            self._push(on=False)

    def latency_s(self, call: Parsed) -> float:  # type: ignore[override]
        timing = self.chip.spec.timing
        if call.action == "set wavelength_m":
            return timing.laser_wavelength_change_s
        if call.action == "query operation_complete":
            # *OPC? answers once a power change has settled (the laser keeps settling while the host talks to
            # other instruments: that is what lets ten lasers settle at once)
            settled = float(self.chip.laser_power_settled_s()[self.channel])
            return max(settled - self.chip.clock.now_s, 0.0) + timing.scpi_query_s
        return timing.scpi_query_s

    def _power_ramp_s(self) -> float:
        """A power command's output settles ``laser_power_change_s`` after the command is sent (the timing table's
        "laser power change"); the command's own transfer (``scpi_query_s``) is the first part of that time."""
        timing = self.chip.spec.timing
        return max(timing.laser_power_change_s - timing.scpi_query_s, 0.0)

    # -- wavelength, power, output -------------------------------------------------------------------------------------
    @handles("set wavelength_m")
    def _set_wavelength(self, call: Parsed) -> None:
        value = call.args[0]
        if isinstance(value, Keyword):
            value = self._limit(value, float(_LASER.wavelength_m.default))
        lo, hi = self._limits_m
        if not lo <= float(value) <= hi:
            log.warning("%s: wavelength %g m outside %g..%g m; kept %g", self.name, value, lo, hi, self.wavelength_m)
            raise ScpiError(DATA_OUT_OF_RANGE)
        self.wavelength_m = float(value)
        self._push(wavelength_m=self.wavelength_m)

    @handles("query wavelength_m")
    def _wavelength(self, call: Parsed) -> Reply:
        keyword = limit_keyword(call)
        if keyword is Keyword.MIN:
            return self._limit_replies[0]
        if keyword is Keyword.MAX:
            return self._limit_replies[1]
        value = float(_LASER.wavelength_m.default) if keyword is Keyword.DEF else self.wavelength_m
        return _LASER.wavelength_m.reply.format(value)

    def _limit(self, keyword: Keyword, default: float) -> float:
        return {Keyword.MIN: self._limits_m[0], Keyword.MAX: self._limits_m[1]}.get(keyword, default)

    @handles("set power")
    def _set_power(self, call: Parsed) -> None:
        lasers = self.chip.spec.lasers
        value = call.args[0]
        if isinstance(value, Keyword):
            power_w = {Keyword.MIN: lasers.min_power_w, Keyword.MAX: lasers.max_power_w}.get(value, lasers.power_w)
        else:
            assert isinstance(value, Quantity)
            power_w = watts(value, value.unit, self.power_unit_watt)
        if not lasers.min_power_w <= power_w <= lasers.max_power_w:
            log.warning("%s: power %g W outside %g..%g W; kept %g W", self.name, power_w, lasers.min_power_w,
                        lasers.max_power_w, self.power_w)
            raise ScpiError(DATA_OUT_OF_RANGE)
        self.power_w = power_w
        self._push(power_w=power_w, power_ramp_s=self._power_ramp_s())

    @handles("query power")
    def _power(self, call: Parsed) -> Reply:
        """``:SOUR0:POW?`` in the unit of ``:SOUR0:POW:UNIT`` (1 = W, 0 = dBm)."""
        lasers = self.chip.spec.lasers
        keyword = limit_keyword(call)
        power_w = {Keyword.MIN: lasers.min_power_w, Keyword.MAX: lasers.max_power_w,
                   Keyword.DEF: lasers.power_w}.get(keyword, self.power_w)  # type: ignore[arg-type]
        return _LASER.power_reading.reply.format(power_w if self.power_unit_watt else dbm(power_w))

    @handles("set power_unit")
    def _set_power_unit(self, call: Parsed) -> None:
        self.power_unit_watt = call.args[0] == "W"

    @handles("query power_unit")
    def _power_unit(self, call: Parsed) -> Reply:
        return _LASER.power_unit_watt.reply.format(int(self.power_unit_watt))

    @handles("set output")
    def _set_output(self, call: Parsed) -> None:
        self.output_on = bool(call.args[0])
        self._push(on=self.output_on)

    def interlock_off(self) -> None:
        """The output switches off by itself (interlock, key switch): what the fault "laser_off" does."""
        self.output_on = False
        self._push(on=False)

    @handles("query output")
    def _output(self, call: Parsed) -> Reply:
        return _LASER.output_enabled.reply.format(int(self.output_on))

    @handles("set lock")
    def _set_lock(self, call: Parsed) -> None:
        self.locked = bool(call.args[0])

    @handles("query lock")
    def _lock(self, call: Parsed) -> Reply:
        return f"{int(self.locked):d}"

    def _push(self, *, wavelength_m: float | None = None, power_w: float | None = None,
              on: bool | None = None, power_ramp_s: float = 0.0) -> None:
        """Full-vector update of the chip's lasers with this channel changed."""
        chip, ch = self.chip, self.channel
        kwargs: dict[str, np.ndarray] = {}
        if wavelength_m is not None:
            kwargs["wavelength_m"] = chip.laser_wavelength_m()
            kwargs["wavelength_m"][ch] = wavelength_m
        if power_w is not None:
            kwargs["power_w"] = chip.laser_power_w()
            kwargs["power_w"][ch] = power_w
        if on is not None:
            kwargs["on"] = chip.laser_on()
            kwargs["on"][ch] = on
        chip.set_lasers(**kwargs, power_ramp_s=power_ramp_s)

    # -- sweep settings ------------------------------------------------------------------------------------------------
    @handles("query sweep_start_m", "query sweep_stop_m")
    def _sweep_limit_or_value(self, call: Parsed) -> Reply:
        keyword = limit_keyword(call)
        if keyword in (Keyword.MIN, Keyword.MAX):
            return self.plain[call.name].reply.format(self._limit(keyword, 0.0))  # type: ignore[arg-type]
        return self.run_plain(call)

    def _sweep_settings(self) -> tuple[float, float, float, float]:
        """(start, stop, step, speed) in m and m/s as the instrument holds them."""
        return (float(self.value("sweep_start_m")), float(self.value("sweep_stop_m")),
                float(self.value("sweep_step_m")), float(self.value("sweep_speed_m_per_s")))

    def _sweep_points(self) -> int:
        start, stop, step, _ = self._sweep_settings()
        if not (stop > start and step > 0):
            return 0
        return math.floor((stop - start) / step + 1e-6) + 1

    def sweep_check_code(self) -> int:
        """The ``:SOUR0:WAV:SWE:CHEC?`` code for the current settings (0 when consistent)."""
        start, stop, step, _ = self._sweep_settings()
        lo, hi = self._limits_m
        llog = bool(self.value("lambda_logging"))
        ratio = step / MIN_SWEEP_STEP_M
        if stop <= start:
            return 368
        if start < lo:
            return 380
        if stop > hi:
            return 381
        if llog and self.value("sweep_mode") != "CONT":
            return 376
        if llog and self.value("trigger_output") != "STF":
            return 375
        if abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio):
            return 377
        return 0

    @handles("query sweep_check")
    def _sweep_check(self, call: Parsed) -> Reply:
        code = self.sweep_check_code()
        return "0,OK" if code == 0 else f"{code},{SWEEP_CHECK_CODES[code]}"

    @handles("query sweep_expected_points")
    def _expected_points(self, call: Parsed) -> Reply:
        return f"{self._sweep_points():+d}"

    @handles("query sweep_flag")
    def _sweep_flag(self, call: Parsed) -> Reply:
        return "+1" if self._armed else "+0"

    @handles("query sweep_power_max")
    def _sweep_power_max(self, call: Parsed) -> Reply:
        return keysight_float(self.chip.spec.lasers.max_power_w)

    @handles("query readout_data")
    def _readout_data(self, call: Parsed) -> Reply:
        if call.args[0] != "LLOG":
            return self._unmodelled_action(call)
        return ieee_block(self._lambda_log_m.astype("<f8").tobytes())

    @handles("query readout_points")
    def _readout_points(self, call: Parsed) -> Reply:
        if call.args[0] != "LLOG":
            return self._unmodelled_action(call)
        return f"{self._lambda_log_m.size:+d}"

    # -- sweep state machine -------------------------------------------------------------------------------------------
    @handles("query sweep_state")
    def _sweep_state_query(self, call: Parsed) -> Reply:
        return _LASER.sweep_state.reply.format(self.sweep_state)

    @handles("set sweep_state")
    def _sweep_state_command(self, call: Parsed) -> None:
        """``:SOUR0:WAV:SWE 0|1|2|3`` (STOP|STARt|PAUSe|CONTinue): stop, start (arm or run), pause, continue."""
        value = _STATE_CODES[call.args[0]]
        if value == 0:
            self._armed = False
            self.sweep_state = 0
        elif value == 1:
            code = self.sweep_check_code()
            if code != 0:
                log.warning("%s: sweep start refused, CHEC? code %d", self.name, code)
                raise ScpiError(SETTINGS_CONFLICT)
            self._armed = True
            self.sweep_state = 1
            if self.value("trigger_input") != "SWS":
                self._run_sweep()
        else:
            log.info("%s: sweep pause/continue has no effect (sweeps run when triggered)", self.name)

    @handles("do sweep_software_trigger")
    def _software_trigger(self, call: Parsed) -> None:
        if self._armed:
            self._run_sweep()
        else:
            log.info("%s: software trigger while no sweep is armed (ignored)", self.name)

    def _run_sweep(self) -> None:
        start, stop, step, speed = self._sweep_settings()
        cycles = int(self.value("sweep_cycles"))
        if cycles != 1:
            log.warning("%s: %d sweep cycles requested; the model runs one", self.name, cycles)
        n = self._sweep_points()
        chip = self.chip
        error_m = chip.spec.lasers.wavelength_repeatability_m * self._rng.uniform(-1.0, 1.0)
        emitted = start + step * np.arange(n) + error_m
        record = SweepRecord(laser=self.name, channel=self.channel, t0_s=chip.clock.now_s,
                             step_period_s=step / speed, speed_m_per_s=speed, wavelengths_m=emitted,
                             power_w=self.power_w if self.output_on else 0.0, chip=chip)
        if self.value("trigger_output") == "STF":
            assert self.bench is not None
            for inst in self.bench.instruments.values():
                receiver = getattr(inst.model, "receive_sweep", None)
                if inst.model is not self and receiver is not None:
                    receiver(record)
        self._lambda_log_m = emitted if bool(self.value("lambda_logging")) else np.empty(0)
        log.info("%s: swept %.4f-%.4f nm, %d points in %.3f s", self.name, start * 1e9, stop * 1e9, n,
                 (stop - start) / speed)
        chip.clock.advance((stop - start) / speed, "sweep")
        self._armed = False
        self.sweep_state = 0


# -- power meter ------------------------------------------------------------------------------------------------------
_PORT = KeysightN774xPort
_LOGGING_FUNCTION = "LOGGING_STABILITY"


@dataclass
class _PortLog:
    """Logging state of one meter port."""

    active: bool = False
    trigger: str = "IGN"
    points: int = 0
    averaging_time_s: float = 1e-4
    range_dbm: float = 0.0
    unit_watt: bool = True
    samples: list[np.ndarray] = field(default_factory=list)
    count: int = 0
    complete_at_s: float | None = None

    def values(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.empty(0)

    def complete(self, now_s: float) -> bool:
        return self.complete_at_s is not None and now_s >= self.complete_at_s

    def in_progress(self, now_s: float) -> bool:
        return self.active and not self.complete(now_s)


class KeysightPowerMeterModel(ScpiModel):
    """N7744A/N7745A whose interface port p reads chip bank ``port_map[p][0]``, port ``port_map[p][1]``.

    Readings: ``:READ<n>:POW?``, ``:FETC<n>:POW?`` and ``:FETC:POW:ALL[:CSV]?`` take ``chip.read_port_power_w`` at
    the port's averaging time through ``chip.meter_reading_w`` (meter index bank*2 + port) at the port's range; auto
    range picks the most sensitive range of ``spec.power_meter.ranges_dbm`` that holds the signal with 0.2 dB to
    spare. Over-range readings come back as float32 max (> 1e20, the Keysight marker); in dBm a reading <= 0 W
    does too. ``:FETC`` returns the last reading when continuous triggering is off (a fresh one otherwise);
    ``:INIT<n>:IMM`` takes one. Latency: averaging time + meter overhead per reading; the all-port fetches measure all
    ports in parallel (the longest averaging time + overhead). ``:FETC:POW:ALL?`` (binary) is always in W (the
    manual's statement); ``:FETC:POW:ALL:CSV?`` answers each port in its selected unit, ``+1.23456789E-006`` style,
    comma-separated (the CSV unit is not documented in the excerpts consulted: an assumption of this model). A port
    number beyond the unit's ports (5..8 on an N7744A) is -114; a fixed range that is not one of the meter's
    ranges is -222. ``:READ:POW:ALL?`` with continuous triggering off is self-triggered: every port averages over
    the window that starts when the query arrives (evaluated at its middle, so a ring still settling shows), the
    host is free meanwhile and its read waits until the window plus the meter overhead is over (``reply_ready_s``);
    a heater or laser command inside the window disturbs the reading (``Chip.disturbed_readings``). With continuous
    triggering on it answers as ``:FETC:POW:ALL?``.

    Logging: ``:SENS<n>:FUNC:PAR:LOGG N,t`` (shared by all ports, as on the N774x), ``:FUNC:STAT LOGG,STAR``
    arms the port with its trigger input at that moment: SME logs one sample per laser step trigger (a sweep
    with more triggers than N fills the first N; with fewer, the port keeps waiting for more triggers); IGN
    logs N samples of the current static port power at once, complete after N*t of virtual time (laser RIN is
    drawn once, meter noise per sample); CME starts free-running on the first trigger (samples every t along the
    sweep); MME is not modelled (the port stays in PROGRESS). Range and unit are frozen at the start (with auto
    range on: the range auto ranging picks for the signal at that moment). Any port setting changed while logging
    is in progress stops the logging (``NONE``).
    ``:FUNC:STAT?`` answers ``LOGGING_STABILITY,PROGRESS|COMPLETE`` or ``NONE,COMPLETE``; ``:FUNC:RES?`` is a
    float32 LE block of the samples logged so far.

    Not modelled: ``:READ:POW:ALL:CSV?``, ``:TRIG NODEA``, a range query that reports the auto-selected range, and
    time-resolved heater changes during a logging run.
    """

    category = "power_meter"
    tree = keysight_n774x.TREE
    state_suffixes = ("n",)
    plain = {
        "sensor_wavelength_m": _PORT.wavelength_m,
        "sensor_averaging_time_s": _PORT.averaging_time_s,
        "sensor_auto_range": _PORT.auto_range,
        "continuous": _PORT.continuous,
        "trigger_input": _PORT.trigger_input,
    }

    def __init__(self, name: str, port_map: Sequence[tuple[int, int] | None]) -> None:
        super().__init__(name)
        wiring: list[tuple[int, int] | None] = []
        for p, entry in enumerate(port_map):
            if entry is None:
                wiring.append(None)
                continue
            bank, port = (int(x) for x in entry)
            if bank < 0 or port not in (0, 1):
                raise ValueError(f"{name}: port_map[{p}] = {entry!r}; expected (bank >= 0, 0 | 1) or None")
            wiring.append((bank, port))
        self.port_map = wiring
        self.n_ports = 0
        self._logs: list[_PortLog] = []
        self._last_w: dict[int, float] = {}
        self._logging_parameters = LOGGING_DEFAULTS
        self._range_table: tuple[np.ndarray, np.ndarray, float] | None = None
        self._unit_watt: list[bool] = []
        self._range_dbm: list[float] = []

    # -- wiring ------------------------------------------------------------------------------------------------------
    def attach(self, bench: Any, profile: Any) -> None:
        super().attach(bench, profile)
        self.n_ports = len(profile.channels["port"][1])
        if len(self.port_map) > self.n_ports:
            raise ValueError(f"{self.name}: port_map has {len(self.port_map)} entries but the instrument has "
                             f"{self.n_ports} ports")
        for p, entry in enumerate(self.port_map):
            if entry is not None and entry[0] >= self.chip.n_banks:
                raise ValueError(f"{self.name}: port_map[{p}] names bank {entry[0]}; the chip has "
                                 f"{self.chip.n_banks}")
        #: Per port: the flat index bank*2 + side of the chip port it sees (-1: dark) and the meter model index.
        self._flat_port = [-1 if w is None else w[0] * 2 + w[1] for w in map(self._wiring, range(self.n_ports))]
        self._meter_of_port = np.array([max(f, 0) for f in self._flat_port], dtype=int)
        self._flat_port_index = np.array(self._flat_port, dtype=np.intp)  # the gather of an all-port reading
        self._all_wired = bool(self._flat_port) and min(self._flat_port) >= 0
        self._all_ports = list(range(self.n_ports))
        self._timing = self.chip.spec.timing  # (the chip's fixed timing table: every message's latency)
        self._power_on()

    def _power_on(self) -> None:
        n = self.n_ports
        #: Per-port copies of the plain state the readings use (kept by :meth:`store`): the hot path reads lists.
        self._averaging = [float(self._declared_default(_PORT.averaging_time_s))] * n
        self._auto_on = [bool(self._declared_default(_PORT.auto_range))] * n
        self._continuous_on = [bool(self._declared_default(_PORT.continuous))] * n
        self._logs = [_PortLog() for _ in range(self.n_ports)]
        self._unit_watt = [bool(self._declared_default(_PORT.unit_watt))] * self.n_ports
        self._range_dbm = [float(self._declared_default(_PORT.range_dbm))] * self.n_ports
        self._last_w.clear()
        self._logging_parameters = LOGGING_DEFAULTS

    def reset(self) -> None:
        super().reset()
        self._power_on()

    # -- per-port state ----------------------------------------------------------------------------------------------
    def _port(self, call: Parsed) -> int:
        """0-based interface port of a unit's ``n`` suffix (-114 beyond this unit's ports)."""
        n = call.suffixes.get("n", 1)
        if not 1 <= n <= self.n_ports:
            raise ScpiError(HEADER_SUFFIX_OUT_OF_RANGE, f"port {n} of a {self.n_ports}-port meter")
        return n - 1

    def store(self, name: str, value: Any, **suffixes: int) -> None:
        super().store(name, value, **suffixes)
        p = suffixes["n"] - 1
        if name == "sensor_averaging_time_s":
            self._averaging[p] = float(value)
        elif name == "sensor_auto_range":
            self._auto_on[p] = bool(value)
        elif name == "continuous":
            self._continuous_on[p] = bool(value)

    def _averaging_s(self, p: int) -> float:
        return self._averaging[p]

    def _auto(self, p: int) -> bool:
        return self._auto_on[p]

    def _continuous(self, p: int) -> bool:
        return self._continuous_on[p]

    def _wiring(self, p: int) -> tuple[int, int] | None:
        return self.port_map[p] if p < len(self.port_map) else None

    def _meter_index(self, p: int) -> int:
        wiring = self._wiring(p)
        return 0 if wiring is None else wiring[0] * 2 + wiring[1]

    def _pick_range(self, power_w: float) -> float:
        """Auto range: the most sensitive range whose top holds ``power_w`` with the margin to spare."""
        return float(self._pick_ranges(np.asarray([power_w]))[0])

    def _pick_ranges(self, power_w: np.ndarray) -> np.ndarray:
        """:func:`~labctl.sim.detection.auto_range_dbm` with the meter's range table prepared once."""
        if self._range_table is None:
            ranges = np.sort(np.asarray(self.chip.spec.power_meter.ranges_dbm, dtype=float))
            self._range_table = (ranges, 1e-3 * 10 ** (ranges / 10), 10 ** (AUTO_RANGE_MARGIN_DB / 10))
        ranges, tops, margin = self._range_table
        return ranges[np.minimum(tops.searchsorted(power_w * margin, side="left"), ranges.size - 1)]

    def run_plain(self, call: Parsed) -> Reply:
        if not call.query:
            self._settings_changed(self._port(call))
        return super().run_plain(call)

    def _settings_changed(self, p: int) -> None:
        """The N774x stops a running logging function on any settings change of the port."""
        if self._logs[p].in_progress(self.chip.clock.now_s):
            log.info("%s: settings change on port %d stops logging", self.name, p + 1)
            self._stop(p)

    @handles("set sensor_unit")
    def _set_unit(self, call: Parsed) -> None:
        p = self._port(call)
        self._settings_changed(p)
        self._unit_watt[p] = call.args[0] == "W"

    @handles("query sensor_unit")
    def _unit(self, call: Parsed) -> Reply:
        return _PORT.unit_watt.reply.format(int(self._unit_watt[self._port(call)]))

    @handles("set sensor_range_dbm")
    def _set_range(self, call: Parsed) -> None:
        p = self._port(call)
        ranges = self.chip.spec.power_meter.ranges_dbm
        value = call.args[0]
        if isinstance(value, Keyword):
            value = {Keyword.MIN: min(ranges), Keyword.MAX: max(ranges)}.get(value, _PORT.range_dbm.default)
        if float(value) not in ranges:
            raise ScpiError(DATA_OUT_OF_RANGE, f"{value} dBm is not one of the ranges {ranges}")
        self._settings_changed(p)
        self._range_dbm[p] = float(value)

    @handles("query sensor_range_dbm")
    def _range(self, call: Parsed) -> Reply:
        ranges = self.chip.spec.power_meter.ranges_dbm
        keyword = limit_keyword(call)
        value = {Keyword.MIN: min(ranges), Keyword.MAX: max(ranges)}.get(
            keyword, self._range_dbm[self._port(call)])  # type: ignore[arg-type]
        return _PORT.range_dbm.reply.format(value)

    # -- readings ----------------------------------------------------------------------------------------------------
    def _optical_w(self, ports: Sequence[int], averaging_s: Sequence[float], window_start_s: float | None = None
                   ) -> np.ndarray:
        """Optical power at each port (dark ports 0), one chip read per distinct averaging time (in the order the
        times first appear among the wired ports): now, or averaged over a window that starts at ``window_start_s``
        (evaluated at its middle: heater settling and laser power ramps still in progress show)."""
        flat = self._flat_port if ports is self._all_ports or ports == self._all_ports \
            else [self._flat_port[p] for p in ports]
        if flat is self._flat_port and self._all_wired and averaging_s.count(averaging_s[0]) == len(averaging_s):
            # every port, every one wired, one averaging time (a bench's reading): one chip read, one gather
            t = averaging_s[0]
            return self.chip.read_port_power_w(t, at_s=None if window_start_s is None else window_start_s + 0.5 * t
                                               ).reshape(-1)[self._flat_port_index]
        # one chip read per distinct averaging time among the wired ports, in the order the times first appear
        wired = min(flat, default=0) >= 0
        times = dict.fromkeys(averaging_s if wired else (t for f, t in zip(flat, averaging_s) if f >= 0))
        reads = {t: self.chip.read_port_power_w(t, at_s=None if window_start_s is None else window_start_s + 0.5 * t
                                                ).reshape(-1) for t in times}
        out = np.zeros(len(ports))
        if len(reads) == 1 and wired:  # every port wired, one averaging time: one gather
            out[:] = next(iter(reads.values()))[self._flat_port_index if flat is self._flat_port else flat]
            return out
        for i, (f, t) in enumerate(zip(flat, averaging_s)):
            if f >= 0:
                out[i] = reads[t][f]
        return out

    def _measure(self, ports: Sequence[int], window_start_s: float | None = None) -> np.ndarray:
        """Fresh readings in W (over-range already replaced by the marker) for ``ports`` (taken now, or over the
        averaging window that starts at ``window_start_s``): the meter model per port at its averaging time and
        range, in one pass (:meth:`Chip.meter_reading_groups_w`)."""
        if type(ports) is not list:
            ports = list(ports)
        every = ports is self._all_ports or ports == self._all_ports
        averaging = self._averaging if every else [self._averaging[p] for p in ports]
        optical = self._optical_w(ports, averaging, window_start_s)
        auto = self._auto_on if every else [self._auto_on[p] for p in ports]
        if all(auto):
            ranges = self._pick_ranges(optical)
        else:
            ranges = np.array([self._range_dbm[p] for p in ports])
            if any(auto):
                mask = np.array(auto)
                ranges[mask] = self._pick_ranges(optical[mask])
        meters = self._meter_of_port if every else self._meter_of_port[ports]
        reading = self.chip.meter_reading_groups_w(optical, np.array(averaging), ranges, meters)
        over = reading.over_range
        # (np.where only when a reading is over range: otherwise it would copy the same values)
        power = np.where(over, OVER_RANGE_MARKER_W, reading.power_w) if np.count_nonzero(over) \
            else reading.power_w
        self._last_w.update(zip(ports, power.tolist()))
        return power

    def _fetch(self, ports: Sequence[int]) -> np.ndarray:
        if type(ports) is not list:
            ports = list(ports)
        if all(self._continuous_on):  # every port measures continuously: every reading is fresh
            return self._measure(ports)
        fresh = [p for p in ports if self._continuous_on[p] or p not in self._last_w]
        if len(fresh) == len(ports):
            return self._measure(ports)
        if fresh:
            self._measure(fresh)
        return np.array([self._last_w[p] for p in ports])

    @staticmethod
    def _in_unit(power_w: np.ndarray, unit_watt: bool) -> np.ndarray:
        """Readings in the selected unit; the over-range marker stays, dBm of <= 0 W becomes the marker."""
        p = np.asarray(power_w, dtype=float)
        if unit_watt:
            return p
        marker = (p <= 0) | (p >= OVER_RANGE_MARKER_W)
        with np.errstate(divide="ignore", invalid="ignore"):
            dbm_values = 10 * np.log10(np.where(marker, 1.0, p) / 1e-3)
        return np.where(marker, OVER_RANGE_MARKER_W, dbm_values)

    def _format_reading(self, p: int, power_w: float) -> str:
        value = float(self._in_unit(np.array([power_w]), self._unit_watt[p])[0])
        return _PORT.power_w.reply.format(value)

    @handles("query read_power")
    def _read_power(self, call: Parsed) -> Reply:
        p = self._port(call)
        return self._format_reading(p, float(self._measure([p])[0]))

    @handles("query fetch_power")
    def _fetch_power(self, call: Parsed) -> Reply:
        p = self._port(call)
        return self._format_reading(p, float(self._fetch([p])[0]))

    @handles("do initiate")
    def _initiate(self, call: Parsed) -> None:
        self._measure([self._port(call)])

    @handles("query fetch_power_all")
    def _fetch_all(self, call: Parsed) -> Reply:
        return ieee_block(self._fetch(self._all_ports).astype("<f4").tobytes())

    @handles("query read_power_all")
    def _read_all(self, call: Parsed) -> Reply:
        if any(self._continuous_on):
            return self._fetch_all(call)  # with continuous triggering on, :READ equals :FETC
        return self._read_all_triggered()

    def _read_all_triggered(self) -> bytes:
        """``:READ:POW:ALL?`` with continuous triggering off: every port measures over the averaging window that
        starts now; the block is ready after the window plus the meter's overhead (timing table: "power meter
        reading: averaging time + 1 ms"), and the host may talk to other instruments meanwhile. A heater or laser
        command landing inside the window disturbs the reading (the chip counts it)."""
        chip = self.chip
        now = chip.clock.now_s
        window_s = max(self._averaging)
        chip.open_reading_window(now + window_s)
        values = self._measure(self._all_ports, window_start_s=now)
        self.reply_ready_s = now + window_s + chip.spec.timing.meter_overhead_s
        return ieee_block(values.astype("<f4").tobytes())

    @handles("query fetch_power_all_csv")
    def _fetch_all_csv(self, call: Parsed) -> Reply:
        values = self._fetch(self._all_ports)
        if not all(self._unit_watt):
            values = np.where(np.array(self._unit_watt), values, self._in_unit(values, False))
        return keysight_floats(values.tolist())

    def latency_s(self, call: Parsed) -> float:  # type: ignore[override]
        timing = self._timing
        action = call.action
        if action in ("query read_power", "query fetch_power") and self._port_ok(call):
            p = call.suffixes.get("n", 1) - 1
            if action == "query read_power" or self._continuous(p):
                return self._averaging_s(p) + timing.meter_overhead_s
        if action in ("query fetch_power_all", "query fetch_power_all_csv") or (
                action == "query read_power_all" and any(self._continuous_on)):
            return max(self._averaging) + timing.meter_overhead_s  # every port's averaging time
        if action == "query read_power_all":
            return 0.0  # a self-triggered measurement: the reply comes later (_read_all_triggered)
        return timing.scpi_query_s

    def _port_ok(self, call: Parsed) -> bool:
        return 1 <= call.suffixes.get("n", 1) <= self.n_ports

    # -- logging -----------------------------------------------------------------------------------------------------
    def _stop(self, p: int) -> None:
        self._logs[p].active = False

    def _start(self, p: int) -> None:
        points, t_avg = self._logging_parameters
        range_dbm = self._range_dbm[p]
        if self._auto(p):
            # auto ranging stops while logging: the range is the one it sits in for the present signal
            range_dbm = self._pick_range(float(self._optical_w([p], [t_avg])[0]))
        state = _PortLog(active=True, trigger=str(self.value("trigger_input", n=p + 1)), points=points,
                         averaging_time_s=t_avg, range_dbm=range_dbm, unit_watt=self._unit_watt[p])
        self._logs[p] = state
        if state.trigger == "IGN":
            optical = self._optical_w([p], [t_avg])[0]
            self._log_samples(p, np.full(points, optical))
            state.complete_at_s = self.chip.clock.now_s + points * t_avg
        elif state.trigger == "MME":
            log.warning("%s: trigger input MME is not modelled; port %d will not complete", self.name, p + 1)

    def _log_samples(self, p: int, optical_w: np.ndarray) -> None:
        """Pass logged optical powers through the port's meter model (range frozen at the start) and keep them."""
        state = self._logs[p]
        reading = self.chip.meter_reading_w(optical_w, state.averaging_time_s, state.range_dbm,
                                            meter=np.full(optical_w.shape, self._meter_index(p)))
        state.samples.append(np.where(reading.over_range, OVER_RANGE_MARKER_W, reading.power_w))
        state.count += optical_w.size

    def receive_sweep(self, record: SweepRecord) -> None:
        """Step triggers of a laser sweep reach this meter's trigger input (see the module docstring)."""
        for p, state in enumerate(self._logs):
            if not state.active or state.count >= state.points:
                continue
            wiring = self._wiring(p)
            if state.trigger == "SME":
                take = min(state.points - state.count, record.n_triggers)
                if wiring is None:
                    optical = np.zeros(take)
                else:
                    optical = record.port_powers_w(state.averaging_time_s)[:take, wiring[0], wiring[1]]
                self._log_samples(p, np.asarray(optical, dtype=float))
                if state.count >= state.points:
                    state.complete_at_s = float(record.trigger_times_s(take)[-1]) + state.averaging_time_s
            elif state.trigger == "CME" and state.count == 0:
                times = record.t0_s + state.averaging_time_s * np.arange(state.points)
                if wiring is None:
                    optical = np.zeros(state.points)
                else:
                    spectrum = record.port_powers_at_w(record.wavelength_at(times), state.averaging_time_s)
                    optical = spectrum[:, wiring[0], wiring[1]]
                self._log_samples(p, np.asarray(optical, dtype=float))
                state.complete_at_s = float(times[-1]) + state.averaging_time_s

    @handles("query function_state")
    def _function_state(self, call: Parsed) -> Reply:
        state = self._logs[self._port(call)]
        if not state.active:
            return "NONE,COMPLETE"
        return f"{_LOGGING_FUNCTION},{'COMPLETE' if state.complete(self.chip.clock.now_s) else 'PROGRESS'}"

    @handles("set function_state")
    def _set_function_state(self, call: Parsed) -> None:
        p = self._port(call)
        function, action = call.args
        if action == "STOP":
            self._stop(p)
        elif function == "LOGG":
            self._start(p)
        else:
            log.warning("%s: function %s is not modelled", self.name, function)
            raise ScpiError(SETTINGS_CONFLICT)

    @handles("query function_result")
    def _function_result(self, call: Parsed) -> Reply:
        state = self._logs[self._port(call)]
        return ieee_block(self._in_unit(state.values(), state.unit_watt).astype("<f4").tobytes())

    @handles("set logging_parameters")
    def _set_logging_parameters(self, call: Parsed) -> None:
        self._port(call)
        points, t_avg = int(call.args[0]), float(call.args[1])
        if not (1 <= points <= LOGGING_MAX_POINTS and 1e-6 <= t_avg <= 10.0):
            raise ScpiError(DATA_OUT_OF_RANGE)
        now_s = self.chip.clock.now_s
        for p, state in enumerate(self._logs):
            if state.in_progress(now_s):
                self._stop(p)
        self._logging_parameters = (points, t_avg)

    @handles("query logging_parameters")
    def _logging_parameters_query(self, call: Parsed) -> Reply:
        points, t_avg = self._logging_parameters
        return f"{points:+d},{t_avg:+.6E}"


REGISTRY = {
    "keysight_n777xc": ModelEntry(device="Keysight N7778C", model=KeysightLaserModel),
    "keysight_n774xa": ModelEntry(device="Keysight N7745A", model=KeysightPowerMeterModel),
}
