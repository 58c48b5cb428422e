"""Physics models of the Keysight N7776C/N7778C tunable laser and the N7744A/N7745A multiport power meter.

Both sit in front of the bench's one emulated chip. The pyvisa-sim YAML (generated from the drivers) keeps the
static state and the plain set/query commands; these models answer what needs physics or state machines, using
the drivers' own command templates so that every spelling lives in :mod:`labctl.drivers`.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pyvisa_sim.component import NoResponse

from labctl.drivers.keysight_laser import (
    KeysightLaserTree,
    LAMBDA_LOG_DATA_QUERY,
    SWEEP_CHECK_CODES,
    SWEEP_CHECK_QUERY,
    SWEEP_EXPECTED_POINTS_QUERY,
    SWEEP_FLAG_QUERY,
    SWEEP_PMAX_QUERY,
    SWEEP_SOFTWARE_TRIGGER,
    WAVELENGTH_MAX_QUERY,
    WAVELENGTH_MIN_QUERY,
)
from labctl.drivers.keysight_n774xa import FETCH_ALL_CSV_QUERY, FETCH_ALL_QUERY, READ_ALL_QUERY, KeysightN774xPort
from labctl.drivers.keysight_sweep import (
    LOGGING_PARAMETERS,
    LOGGING_RESULT_QUERY,
    LOGGING_START,
    LOGGING_STATE_QUERY,
    LOGGING_STOP,
)

from ..detection import auto_range_dbm
from ..device_model import DeviceModel, Reply
from ..templates import match
from . import ModelEntry

if TYPE_CHECKING:
    from ..chip import Chip
    from ..emulated_bench import EmulatedBench

log = logging.getLogger(__name__)

#: IEEE 488.2 operation-complete query (the laser answers it when a power change has settled).
OPC_QUERY = "*OPC?"

#: A command line that the instrument answers with nothing (pyvisa-sim's marker; the bench passes it through).
NO_REPLY: Any = NoResponse

#: Value a Keysight meter sends for an over-range (or, in dBm, an unrepresentable) reading. The reference only
#: says "a huge value (>1e20)"; float32 max is used so that the marker survives the float32 blocks unchanged.
OVER_RANGE_MARKER_W = float(np.finfo(np.float32).max)

#: Finest sweep step of the N777xC family (0.1 pm): CHEC? code 377 when the step is not a multiple of it.
MIN_SWEEP_STEP_M = 1e-13

#: Standard SCPI errors the models push into the error queue (the YAML only knows -113 "Undefined header").
DATA_OUT_OF_RANGE = '-222,"Data out of range"'
SETTINGS_CONFLICT = '-221,"Settings conflict"'

#: Logging buffer of one N774x port (user guide: 1 M samples) and the logging defaults assumed before any
#: ``:SENS<n>:FUNC:PAR:LOGG`` (not documented; the drivers always set them).
LOGGING_MAX_POINTS = 1_000_000
LOGGING_DEFAULTS = (100, 1e-4)

#: Auto range: the most sensitive range whose top exceeds the signal by at least this margin (dB).
AUTO_RANGE_MARGIN_DB = 0.2


def ieee_block(payload: bytes) -> bytes:
    """IEEE 488.2 definite-length block ``#<d><len><payload>``."""
    length = str(len(payload))
    return f"#{len(length)}{length}".encode("ascii") + payload


def keysight_float(value: float, digits: int = 8) -> str:
    """Keysight's NR3 style with a three-digit exponent, e.g. ``+1.00000000E-002`` (as the static dialogues)."""
    mantissa, exponent = f"{value:+.{digits}E}".split("E")
    return f"{mantissa}E{int(exponent):+04d}"


def push_error(device: Any, entry: str) -> None:
    """Append ``<code>,"<text>"`` to the simulated device's SCPI error queue(s)."""
    for queue in device._error_queues.values():
        queue._queue.append(entry.encode("ascii"))


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


class KeysightLaserModel(DeviceModel):
    """N7776C/N7778C whose output is WDM channel ``channel`` of the chip.

    Modelled: wavelength / power / output state pushed into ``chip.set_lasers`` (the instrument's state is taken
    from the chip when the bench is built, so both agree from the start); power outside the chip's laser limits
    and wavelengths outside ``:SOUR0:WAV? MIN``/``MAX`` are refused with -222 and leave the state unchanged;
    the continuous sweep with lambda logging of instruments.md §1.3 (CHEC? codes 368, 375, 376, 377, 380, 381;
    EXP?, FLAG?, PMAX?, ``:SOUR0:WAV:SWE 0|1``, ``:SOUR0:WAV:SWE:SOFT``, ``:SOUR0:READ:DATA? LLOG``).

    A sweep runs entirely when it is triggered (``:SOUR0:WAV:SWE:SOFT`` with ``:TRIG0:INP SWS``, or at once on
    ``:SOUR0:WAV:SWE 1`` with any other trigger input): the clock advances by (stop - start) / speed (category
    ``sweep``), step triggers go to the meters when ``:TRIG0:OUTP STF``, and ``:SOUR0:WAV:SWE?`` reads 0 again.
    The emitted wavelengths are the commanded grid plus one wavelength error per sweep, uniform within the chip's
    ``lasers.wavelength_repeatability_m``; the lambda log reports these emitted wavelengths (the log is the
    laser's own wavelength measurement, taken as exact). After a sweep the laser is back at its set wavelength.

    Power is set in mW (``:SOUR0:POW <v>MW``, the driver's explicit unit) and ``:SOUR0:POW?`` answers in the unit of
    ``:SOUR0:POW:UNIT`` (W, or dBm when set to 0). ``:TRIG:CONF`` is not known to this stand-alone laser (an 816x
    mainframe command; the YAML answers -113 to it).

    Not modelled: sweep cycles other than 1 (one cycle runs), pause/continue, dwell/repeat, CHEC? codes 369-374
    and 378-379 (limits not documented), the lock (``:LOCK?`` is always 0), and the wavelength averaging of a
    meter during one step (each trigger samples one wavelength).
    """

    category = "laser"

    def __init__(self, name: str, channel: int) -> None:
        super().__init__(name)
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or channel < 0:
            raise ValueError(f"{name}: channel must be a non-negative int, got {channel!r}")
        self.channel = int(channel)
        self._armed = False
        self._lambda_log_m = np.empty(0)
        self._limits_m = (0.0, math.inf)
        self._rng = np.random.default_rng()

    # -- wiring ------------------------------------------------------------------------------------------------------
    def attach(self, device: Any, bench: EmulatedBench) -> None:
        super().attach(device, bench)
        chip = self.chip
        if self.channel >= chip.n_channels:
            raise ValueError(f"{self.name}: channel {self.channel} is not one of the chip's 0..{chip.n_channels - 1}")
        self._rng = np.random.default_rng([chip.seed, 0x7778, self.channel])
        dialogues = device._dialogues
        self._limits_m = (float(dialogues[WAVELENGTH_MIN_QUERY.encode()]),
                          float(dialogues[WAVELENGTH_MAX_QUERY.encode()]))
        self.set_prop(_LASER.wavelength_m.name, float(chip.laser_wavelength_m()[self.channel]))
        self.set_prop(_LASER.power_reading.name, float(chip.laser_power_w()[self.channel]))
        self.set_prop(_LASER.power_mw.name, float(chip.laser_power_w()[self.channel]) * 1e3)
        self.set_prop(_LASER.output_enabled.name, int(chip.laser_on()[self.channel]))
        self.set_prop(_LASER.sweep_speed_m_per_s.name, self.prop(_LASER.sweep_speed_nm_per_s.name) * 1e-9)

    # -- behaviour ---------------------------------------------------------------------------------------------------
    def latency_s(self, line: str) -> float:
        timing = self.chip.spec.timing
        if match(_LASER.wavelength_m.command, line) is not None:
            return timing.laser_wavelength_change_s
        if line == OPC_QUERY:
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

    def handle(self, line: str) -> Reply:
        if line == SWEEP_CHECK_QUERY:
            code = self.sweep_check_code()
            return "0,OK" if code == 0 else f"{code},{SWEEP_CHECK_CODES[code]}"
        if line == SWEEP_EXPECTED_POINTS_QUERY:
            return f"{self._sweep_points():+d}"
        if line == SWEEP_FLAG_QUERY:
            return "+1" if self._armed else "+0"
        if line == SWEEP_SOFTWARE_TRIGGER:
            if self._armed:
                self._run_sweep()
            else:
                log.info("%s: software trigger while no sweep is armed (ignored)", self.name)
            return NO_REPLY
        if line == LAMBDA_LOG_DATA_QUERY:
            return ieee_block(self._lambda_log_m.astype("<f8").tobytes())
        if match(SWEEP_PMAX_QUERY, line) is not None:
            return keysight_float(self.chip.spec.lasers.max_power_w)
        if line == _LASER.power_reading.query:
            return self._power_reply()
        state = match(_LASER.sweep_state.command, line)
        if state is not None:
            return self._sweep_state_command(state["value"])
        return None

    def after(self, line: str) -> None:
        if match(_LASER.wavelength_m.command, line) is not None:
            value = float(self.prop(_LASER.wavelength_m.name))
            lo, hi = self._limits_m
            if not lo <= value <= hi:
                self._refuse(_LASER.wavelength_m.name, float(self.chip.laser_wavelength_m()[self.channel]))
                return
            self._push(wavelength_m=value)
        elif match(_LASER.power_mw.command, line) is not None:
            # set in mW (the unit written out), held and read back in W: two YAML properties, one setting
            value = float(self.prop(_LASER.power_mw.name)) * 1e-3
            lasers = self.chip.spec.lasers
            if not lasers.min_power_w <= value <= lasers.max_power_w:
                previous = float(self.chip.laser_power_w()[self.channel])
                self._refuse(_LASER.power_mw.name, previous * 1e3)
                return
            self.set_prop(_LASER.power_reading.name, value)
            self._push(power_w=value, power_ramp_s=self._power_ramp_s())
        elif match(_LASER.output_enabled.command, line) is not None:
            self._push(on=bool(self.prop(_LASER.output_enabled.name)))
        elif match(_LASER.sweep_speed_nm_per_s.command, line) is not None:
            # set in nm/s, read back in m/s: two YAML properties, one instrument setting
            self.set_prop(_LASER.sweep_speed_m_per_s.name, self.prop(_LASER.sweep_speed_nm_per_s.name) * 1e-9)

    # -- helpers -----------------------------------------------------------------------------------------------------
    def _power_reply(self) -> str:
        """``:SOUR0:POW?`` in the unit of ``:SOUR0:POW:UNIT`` (1 = W, 0 = dBm)."""
        power_w = float(self.prop(_LASER.power_reading.name))
        if bool(int(self.prop(_LASER.power_unit_watt.name))):
            return _LASER.power_reading.reply.format(power_w)
        return _LASER.power_reading.reply.format(10.0 * math.log10(max(power_w, 1e-12) / 1e-3))

    def _refuse(self, prop: str, previous: float) -> None:
        log.warning("%s: %s out of range; kept %g", self.name, prop, previous)
        self.set_prop(prop, previous)
        push_error(self.device, DATA_OUT_OF_RANGE)

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

    def _sweep_settings(self) -> tuple[float, float, float, float]:
        """(start, stop, step, speed) in m and m/s as the instrument holds them."""
        return (float(self.prop(_LASER.sweep_start_m.name)), float(self.prop(_LASER.sweep_stop_m.name)),
                float(self.prop(_LASER.sweep_step_m.name)), float(self.prop(_LASER.sweep_speed_m_per_s.name)))

    def _sweep_points(self) -> int:
        start, stop, step, _ = self._sweep_settings()
        if not (stop > start and step > 0):
            return 0
        return math.floor((stop - start) / step + 1e-6) + 1

    def sweep_check_code(self) -> int:
        """The ``:SOUR0:WAV:SWE:CHEC?`` code for the current settings (0 when consistent)."""
        start, stop, step, _ = self._sweep_settings()
        lo, hi = self._limits_m
        llog = bool(self.prop(_LASER.lambda_logging.name))
        ratio = step / MIN_SWEEP_STEP_M
        if stop <= start:
            return 368
        if start < lo:
            return 380
        if stop > hi:
            return 381
        if llog and self.prop(_LASER.sweep_mode.name) != "CONT":
            return 376
        if llog and self.prop(_LASER.trigger_output.name) != "STF":
            return 375
        if abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio):
            return 377
        return 0

    def _sweep_state_command(self, text: str) -> Reply:
        """``:SOUR0:WAV:SWE 0|1|2|3``: stop, start (arm or run), pause, continue."""
        try:
            value = int(text)
        except ValueError:
            return None  # the YAML answers it (-113, as for any malformed value)
        if value == 0:
            self._armed = False
            self.set_prop(_LASER.sweep_state.name, 0)
        elif value == 1:
            code = self.sweep_check_code()
            if code != 0:
                log.warning("%s: sweep start refused, CHEC? code %d", self.name, code)
                push_error(self.device, SETTINGS_CONFLICT)
                return NO_REPLY
            self._armed = True
            self.set_prop(_LASER.sweep_state.name, 1)
            if self.prop(_LASER.trigger_input.name) != "SWS":
                self._run_sweep()
        elif value in (2, 3):
            log.info("%s: sweep pause/continue has no effect (sweeps run when triggered)", self.name)
        else:
            return None
        return NO_REPLY

    def _run_sweep(self) -> None:
        start, stop, step, speed = self._sweep_settings()
        cycles = int(self.prop(_LASER.sweep_cycles.name))
        if cycles != 1:
            log.warning("%s: %d sweep cycles requested; the model runs one", self.name, cycles)
        n = self._sweep_points()
        chip = self.chip
        error_m = chip.spec.lasers.wavelength_repeatability_m * self._rng.uniform(-1.0, 1.0)
        emitted = start + step * np.arange(n) + error_m
        on = bool(self.prop(_LASER.output_enabled.name))
        record = SweepRecord(laser=self.name, channel=self.channel, t0_s=chip.clock.now_s,
                             step_period_s=step / speed, speed_m_per_s=speed, wavelengths_m=emitted,
                             power_w=float(self.prop(_LASER.power_reading.name)) if on else 0.0, chip=chip)
        if self.prop(_LASER.trigger_output.name) == "STF":
            assert self.bench is not None
            for inst in self.bench.instruments.values():
                receiver = getattr(inst.model, "receive_sweep", None)
                if inst.model is not self and receiver is not None:
                    receiver(record)
        self._lambda_log_m = emitted if bool(self.prop(_LASER.lambda_logging.name)) else np.empty(0)
        log.info("%s: swept %.4f-%.4f nm, %d points in %.3f s", self.name, start * 1e9, stop * 1e9, n,
                 (stop - start) / speed)
        chip.clock.advance((stop - start) / speed, "sweep")
        self._armed = False
        self.set_prop(_LASER.sweep_state.name, 0)


# -- power meter ------------------------------------------------------------------------------------------------------
_PORT = KeysightN774xPort
_PORT_SETTING_COMMANDS = tuple(s.command for s in _PORT.settings_declared() if s.command is not None)
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


class KeysightPowerMeterModel(DeviceModel):
    """N7744A/N7745A whose interface port p reads chip bank ``port_map[p][0]``, port ``port_map[p][1]``.

    Readings: ``:READ<n>:POW?``, ``:FETC<n>:POW?`` and ``:FETC:POW:ALL?`` take ``chip.read_port_power_w`` at the
    port's averaging time through ``chip.meter_reading_w`` (meter index bank*2 + port) at the port's range; auto
    range picks the most sensitive range of ``spec.power_meter.ranges_dbm`` that holds the signal with 0.2 dB to
    spare. Over-range readings come back as float32 max (> 1e20, the Keysight marker); in dBm a reading <= 0 W
    does too. ``:FETC`` returns the last reading when continuous triggering is off (a fresh one otherwise).
    Latency: averaging time + meter overhead per reading; the all-port fetches measure all ports in parallel
    (the longest averaging time + overhead). ``:FETC:POW:ALL?`` (binary) is always in W (the manual's statement);
    ``:FETC:POW:ALL:CSV?`` answers each port in its selected unit, ``+1.23456789E-006`` style, comma-separated
    (the CSV unit is not documented in the excerpts consulted: an assumption of this model).

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

    Not modelled: ``:READ:POW:ALL?``/``:INIT:IMM``/``:TRIG NODEA`` (not in the driver), a range query that
    reports the auto-selected range, and time-resolved heater changes during a logging run.
    """

    category = "power_meter"

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
        self._ports: list[str] = []
        self._logs: list[_PortLog] = []
        self._last_w: dict[int, float] = {}
        self._auto_range: dict[int, float] = {}
        self._logging_parameters = LOGGING_DEFAULTS

    # -- wiring ------------------------------------------------------------------------------------------------------
    def attach(self, device: Any, bench: EmulatedBench) -> None:
        super().attach(device, bench)
        self._ports = [str(i) for i in device._channels["port"]._ids]
        if len(self.port_map) > len(self._ports):
            raise ValueError(f"{self.name}: port_map has {len(self.port_map)} entries but the instrument has "
                             f"{len(self._ports)} ports")
        for p, entry in enumerate(self.port_map):
            if entry is not None and entry[0] >= self.chip.n_banks:
                raise ValueError(f"{self.name}: port_map[{p}] names bank {entry[0]}; the chip has "
                                 f"{self.chip.n_banks}")
        self._logs = [_PortLog() for _ in self._ports]

    # -- per-port state ----------------------------------------------------------------------------------------------
    def _port_index(self, fields: dict[str, str] | None) -> int | None:
        if fields is None or fields.get("ch") not in self._ports:
            return None
        return self._ports.index(fields["ch"])

    def _port_prop(self, p: int, setting: Any) -> Any:
        return self.channel_prop("port", self._ports[p], setting.name)

    def _averaging_s(self, p: int) -> float:
        return float(self._port_prop(p, _PORT.averaging_time_s))

    def _fixed_range_dbm(self, p: int) -> float:
        return float(self._port_prop(p, _PORT.range_dbm))

    def _wiring(self, p: int) -> tuple[int, int] | None:
        return self.port_map[p] if p < len(self.port_map) else None

    def _meter_index(self, p: int) -> int:
        wiring = self._wiring(p)
        return 0 if wiring is None else wiring[0] * 2 + wiring[1]

    def _pick_range(self, power_w: float) -> float:
        """Auto range: the most sensitive range whose top holds ``power_w`` with the margin to spare."""
        return float(auto_range_dbm(np.asarray(power_w), self.chip.spec.power_meter.ranges_dbm,
                                    AUTO_RANGE_MARGIN_DB))

    # -- readings ----------------------------------------------------------------------------------------------------
    def _optical_w(self, ports: Sequence[int], averaging_s: Sequence[float], window_start_s: float | None = None
                   ) -> np.ndarray:
        """Optical power at each port (dark ports 0), one chip read per distinct averaging time: now, or averaged
        over a window that starts at ``window_start_s`` (evaluated at its middle: heater settling and laser power
        ramps still in progress show)."""
        reads: dict[float, np.ndarray] = {}
        out = np.zeros(len(ports))
        for i, (p, t) in enumerate(zip(ports, averaging_s)):
            wiring = self._wiring(p)
            if wiring is None:
                continue
            if t not in reads:
                at = None if window_start_s is None else window_start_s + 0.5 * t
                reads[t] = self.chip.read_port_power_w(t, at_s=at)
            out[i] = reads[t][wiring]
        return out

    def _meter(self, optical_w: np.ndarray, ports: Sequence[int], averaging_s: Sequence[float],
               ranges_dbm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Meter model per port, grouped by (averaging time, range): (reading W, over-range)."""
        power = np.zeros(optical_w.shape)
        over = np.zeros(optical_w.shape, dtype=bool)
        groups: dict[tuple[float, float], list[int]] = {}
        for i, key in enumerate(zip(averaging_s, ranges_dbm)):
            groups.setdefault(key, []).append(i)
        for (t, r), idx in groups.items():
            meters = np.array([self._meter_index(ports[i]) for i in idx])
            reading = self.chip.meter_reading_w(optical_w[idx], t, r, meter=meters)
            power[idx], over[idx] = reading.power_w, reading.over_range
        return power, over

    def _measure(self, ports: Sequence[int], window_start_s: float | None = None) -> np.ndarray:
        """Fresh readings in W (over-range already replaced by the marker) for ``ports`` (taken now, or over the
        averaging window that starts at ``window_start_s``)."""
        averaging = [self._averaging_s(p) for p in ports]
        optical = self._optical_w(ports, averaging, window_start_s)
        ranges: list[float] = []
        for p, w in zip(ports, optical):
            if bool(self._port_prop(p, _PORT.auto_range)):
                self._auto_range[p] = self._pick_range(float(w))
                ranges.append(self._auto_range[p])
            else:
                ranges.append(self._fixed_range_dbm(p))
        power, over = self._meter(optical, ports, averaging, ranges)
        power = np.where(over, OVER_RANGE_MARKER_W, power)
        for p, w in zip(ports, power):
            self._last_w[p] = float(w)
        return power

    def _fetch(self, ports: Sequence[int]) -> np.ndarray:
        fresh = [p for p in ports if bool(self._port_prop(p, _PORT.continuous)) or p not in self._last_w]
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
            dbm = 10 * np.log10(np.where(marker, 1.0, p) / 1e-3)
        return np.where(marker, OVER_RANGE_MARKER_W, dbm)

    def _format_reading(self, p: int, power_w: float) -> str:
        value = float(self._in_unit(np.array([power_w]), bool(self._port_prop(p, _PORT.unit_watt)))[0])
        return _PORT.power_w.reply.format(value)

    # -- logging -----------------------------------------------------------------------------------------------------
    def _stop(self, p: int) -> None:
        self._logs[p].active = False

    def _start(self, p: int) -> None:
        points, t_avg = self._logging_parameters
        range_dbm = self._fixed_range_dbm(p)
        if bool(self._port_prop(p, _PORT.auto_range)):
            # auto ranging stops while logging: the range is the one it sits in for the present signal
            range_dbm = self._pick_range(float(self._optical_w([p], [t_avg])[0]))
            self._auto_range[p] = range_dbm
        state = _PortLog(active=True, trigger=str(self._port_prop(p, _PORT.trigger_input)), points=points,
                         averaging_time_s=t_avg, range_dbm=range_dbm,
                         unit_watt=bool(self._port_prop(p, _PORT.unit_watt)))
        self._logs[p] = state
        if state.trigger == "IGN":
            optical = self._optical_w([p], [t_avg])[0]
            self._log_samples(p, np.full(points, optical))
            state.complete_at_s = self.chip.clock.now_s + points * t_avg
        elif state.trigger == "MME":
            log.warning("%s: trigger input MME is not modelled; port %s will not complete", self.name,
                        self._ports[p])

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

    def _logging_state(self, p: int) -> str:
        state = self._logs[p]
        if not state.active:
            return "NONE,COMPLETE"
        return f"{_LOGGING_FUNCTION},{'COMPLETE' if state.complete(self.chip.clock.now_s) else 'PROGRESS'}"

    def _logging_parameters_command(self, fields: dict[str, str]) -> Reply:
        try:
            points, t_avg = int(fields["points"]), float(fields["averaging_time_s"])
        except ValueError:
            return None
        if not (1 <= points <= LOGGING_MAX_POINTS and 1e-6 <= t_avg <= 10.0):
            push_error(self.device, DATA_OUT_OF_RANGE)
            return NO_REPLY
        now_s = self.chip.clock.now_s
        for p, state in enumerate(self._logs):
            if state.in_progress(now_s):
                self._stop(p)
        self._logging_parameters = (points, t_avg)
        return NO_REPLY

    # -- behaviour ---------------------------------------------------------------------------------------------------
    def latency_s(self, line: str) -> float:
        timing = self.chip.spec.timing
        p = self._port_index(match(_PORT.power_w.query, line))
        if p is not None:
            return self._averaging_s(p) + timing.meter_overhead_s
        p = self._port_index(match(_PORT.fetched_power_w.query, line))
        if p is not None and bool(self._port_prop(p, _PORT.continuous)):
            return self._averaging_s(p) + timing.meter_overhead_s
        if line in (FETCH_ALL_QUERY, FETCH_ALL_CSV_QUERY) or (line == READ_ALL_QUERY and self._any_continuous()):
            return max(self._averaging_s(p) for p in range(len(self._ports))) + timing.meter_overhead_s
        if line == READ_ALL_QUERY:
            return 0.0      # a self-triggered measurement: the reply comes later (_read_all_triggered)
        return timing.scpi_query_s

    def _any_continuous(self) -> bool:
        return any(bool(self._port_prop(p, _PORT.continuous)) for p in range(len(self._ports)))

    def _read_all_triggered(self) -> bytes:
        """``:READ:POW:ALL?`` with continuous triggering off: every port measures over the averaging window that
        starts now; the block is ready after the window plus the meter's overhead (timing table: "power meter
        reading: averaging time + 1 ms"), and the host may talk to other instruments meanwhile. A heater or laser
        command landing inside the window disturbs the reading (the chip counts it)."""
        ports = range(len(self._ports))
        chip = self.chip
        now = chip.clock.now_s
        window_s = max(self._averaging_s(p) for p in ports)
        chip.open_reading_window(now + window_s)
        values = self._measure(ports, window_start_s=now)
        self.reply_ready_s = now + window_s + chip.spec.timing.meter_overhead_s
        return ieee_block(values.astype("<f4").tobytes())

    def handle(self, line: str) -> Reply:
        if line == READ_ALL_QUERY:
            if not self._any_continuous():
                return self._read_all_triggered()
            line = FETCH_ALL_QUERY           # with continuous triggering on, :READ equals :FETC
        if line == FETCH_ALL_QUERY:
            values = self._fetch(range(len(self._ports)))
            return ieee_block(values.astype("<f4").tobytes())
        if line == FETCH_ALL_CSV_QUERY:
            ports = range(len(self._ports))
            values = self._fetch(ports)
            unit_watt = np.array([bool(self._port_prop(p, _PORT.unit_watt)) for p in ports])
            shown = np.where(unit_watt, values, self._in_unit(values, False))
            return ",".join(keysight_float(v) for v in shown.tolist())
        p = self._port_index(match(_PORT.power_w.query, line))
        if p is not None:
            return self._format_reading(p, float(self._measure([p])[0]))
        p = self._port_index(match(_PORT.fetched_power_w.query, line))
        if p is not None:
            return self._format_reading(p, float(self._fetch([p])[0]))
        p = self._port_index(match(LOGGING_STATE_QUERY, line))
        if p is not None:
            return self._logging_state(p)
        p = self._port_index(match(LOGGING_RESULT_QUERY, line))
        if p is not None:
            state = self._logs[p]
            return ieee_block(self._in_unit(state.values(), state.unit_watt).astype("<f4").tobytes())
        p = self._port_index(match(LOGGING_START, line))
        if p is not None:
            self._start(p)
            return NO_REPLY
        p = self._port_index(match(LOGGING_STOP, line))
        if p is not None:
            self._stop(p)
            return NO_REPLY
        fields = match(LOGGING_PARAMETERS, line)
        if self._port_index(fields) is not None:
            assert fields is not None
            return self._logging_parameters_command(fields)
        return None

    def after(self, line: str) -> None:
        # the N774x stops a running logging function on any settings change
        for template in _PORT_SETTING_COMMANDS:
            p = self._port_index(match(template, line))
            if p is not None:
                if self._logs[p].in_progress(self.chip.clock.now_s):
                    log.info("%s: settings change on port %s stops logging", self.name, self._ports[p])
                    self._stop(p)
                return


REGISTRY = {
    "keysight_n777xc": ModelEntry(device="Keysight N7778C", model=KeysightLaserModel),
    "keysight_n774xa": ModelEntry(device="Keysight N7745A", model=KeysightPowerMeterModel),
}
