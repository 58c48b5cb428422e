"""Keysight tunable-laser command tree (``SOUR0``/``TRIG0``), shared by the 8164B slot-0 laser and the N7776C/N7778C.

Manuals: Keysight 8163A/B, 8164A/B & 8166A/B Mainframes Programming Guide (SOURce/TRIGger subsystems, wavelength
sweeps with lambda logging); the N7776C/N7778C programming guide uses the same ``SOURce0``/``TRIGger0`` tree.
Reference: instruments.md §1.1 (commands), §1.2 (sweep-check codes), §1.3 (swept IL recipe), §4.

Unit conventions, chosen so that every value the driver sends reads back in the same unit (instruments.md §5.3
item 7), which is what lets one protocol simulation serve driver and tests:

* wavelengths (``:SOUR0:WAV``, sweep ``STAR``/``STOP``/``STEP``) are sent in metres without a suffix (metres is
  the default unit) and every wavelength query answers in metres;
* power is sent with an explicit unit, ``:SOUR0:POW <value>MW`` in milliwatts, so a front-panel change of
  ``:SOUR0:POW:UNIT`` cannot turn a watt value into dBm. MW is the unit the family's guides list for power values
  ([M] 816x guide unit set ``PW|NW|UW|MW|W|DBM``; N774xC guide: ``PW, NW, UW, MW, Watt``, so a bare ``W`` is not
  safe on the N77xx instruments) and the one public N777xC drivers send ([D] pymeasure ``KeysightN7776C``
  ``SOUR0:POW %f mW``, autosweep ``KeysightN777C.source_power_mw``). ``:SOUR0:POW?`` answers in the unit of
  ``:SOUR0:POW:UNIT`` (set to 1 = W at connect), so every power read-back also reads the unit and converts a dBm
  answer (autosweep asserts the unit before trusting the value, as here);
* sweep speed is sent with the documented ``NM/S`` suffix (the manual examples all carry it; whether a bare
  value means m/s is not confirmed), and ``:SOUR0:WAV:SWE:SPE?`` answers in m/s.

The trigger queries (``:TRIG0:INP?``, ``:TRIG0:OUTP?``, ``:TRIG:CONF?``) are not used: the spelling of their
replies (short or long mnemonic) is not confirmed, so the driver only sets them. ``:TRIG:CONF`` (mainframe trigger
routing) is a command of the 816x mainframes: LabExT's ``LaserMainframeKeysight`` (816x) sends ``trig:conf loop``
and ``trig:conf def``, pymeasure's ``KeysightN7776C`` has no such command and autosweep's ``KeysightN777C`` defines
it without ever sending it. Whether a stand-alone N777xC accepts it is unconfirmed [?], so only hosts that declare
:attr:`KeysightLaserTree.has_trigger_configuration` (the 8164B laser) send it; an N777xC never does.

Waits: ``*OPC?`` after a wavelength move is given :attr:`KeysightLaserTree.tune_timeout_s` (not the line timeout a
caller may have shortened); sweeps are bounded by their own duration (:meth:`KeysightLaserTree.wait_sweep`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from labctl.drivers.errors import (
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeout,
    LimitError,
)
from labctl.drivers.instrument import Setting
from labctl.drivers.interfaces import SweepSettings
from labctl.drivers.parsing import in_range, parse_bool, parse_float, parse_int
from labctl.drivers.validators import Boolean, IntRange, OneOf, Range

log = logging.getLogger(__name__)

# -- limits ------------------------------------------------------------------------------------------------------------
#: Wavelength envelope of the whole family (81600B/81960A/N777xC options span 1240-1650 nm). The unit's own
#: limits come from ``:SOUR0:WAV? MIN``/``MAX`` at connect and are checked as well.
WAVELENGTH_ENVELOPE_M = (1.2e-6, 1.7e-6)
#: Settable laser power (W); the bench's safety layer narrows this further.
POWER_LIMITS_W = (1e-6, 0.05)
#: Plausible dBm reply when ``:SOUR0:POW:UNIT`` is 0 (-60 dBm .. +20 dBm).
POWER_PLAUSIBLE_DBM = (-60.0, 20.0)
#: Plausible reply range for power queries (W).
POWER_PLAUSIBLE_W = (0.0, 0.1)
#: Sweep step (m): 0.1 pm is the finest step of the family.
SWEEP_STEP_LIMITS_M = (1e-13, 1e-7)
#: Sweep speeds (nm/s) the family offers; the model-specific set is checked by ``:SOUR0:WAV:SWE:CHEC?``.
SWEEP_SPEED_LIMITS_NM_PER_S = (0.5, 200.0)
#: Plausible number of lambda-logging points.
SWEEP_POINTS_PLAUSIBLE = (1, 2_000_000)

# -- commands that are not plain set/query pairs -----------------------------------------------------------------------
LOCK_QUERY = ":LOCK?"
LOCK_COMMAND = ":LOCK {state:d},{pin}"
DEFAULT_PIN = "1234"
WAVELENGTH_MIN_QUERY = ":SOUR0:WAV? MIN"
WAVELENGTH_MAX_QUERY = ":SOUR0:WAV? MAX"
SWEEP_CHECK_QUERY = ":SOUR0:WAV:SWE:CHEC?"
SWEEP_PMAX_QUERY = ":SOUR0:WAV:SWE:PMAX? {start_nm:.4f}NM,{stop_nm:.4f}NM"
SWEEP_EXPECTED_POINTS_QUERY = ":SOUR0:WAV:SWE:EXP?"
SWEEP_FLAG_QUERY = ":SOUR0:WAV:SWE:FLAG?"
SWEEP_SOFTWARE_TRIGGER = ":SOUR0:WAV:SWE:SOFT"
LAMBDA_LOG_DATA_QUERY = ":SOUR0:READ:DATA? LLOG"

#: ``:SOUR0:WAV:SWE:CHEC?`` codes (instruments.md §1.2, as pymeasure interprets them).
SWEEP_CHECK_CODES: dict[int, str] = {
    0: "OK",
    368: "stop wavelength <= start wavelength",
    369: "sweep time too short",
    370: "sweep time too long",
    371: "trigger frequency too high",
    372: "step too small",
    373: "too many triggers",
    374: "modulation source is not coherence control",
    375: "lambda logging needs :TRIG0:OUTP STF",
    376: "lambda logging needs continuous sweep mode",
    377: "step is not a multiple of the minimum step",
    378: "too many triggers",
    379: "continuous sweep with modulation on",
    380: "start wavelength too small",
    381: "stop wavelength too large",
}

SWEEP_STOP, SWEEP_START = 0, 1


# -- strict parsers ----------------------------------------------------------------------------------------------------
def parse_token(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A mnemonic reply that must be one of ``choices`` (exact, after stripping)."""

    def parse(text: str) -> str:
        token = text.strip()
        if token not in choices:
            raise ValueError(f"expected one of {list(choices)}, got {text!r}")
        return token

    return parse


def parse_int_in(values: tuple[int, ...]) -> Callable[[str], int]:
    """An integer reply that must be one of ``values`` (``+1`` accepted)."""

    def parse(text: str) -> int:
        value = parse_int(text)
        if value not in values:
            raise ValueError(f"expected one of {list(values)}, got {text!r}")
        return value

    return parse


def parse_count(lo: int, hi: int) -> Callable[[str], int]:
    """An integer count within [lo, hi]."""

    def parse(text: str) -> int:
        value = parse_int(text)
        if not lo <= value <= hi:
            raise ValueError(f"count {value} is outside the plausible range [{lo}, {hi}]")
        return value

    return parse


def parse_sweep_check(text: str) -> tuple[int, str]:
    """``<code>,<text>`` from ``:SOUR0:WAV:SWE:CHEC?``; code 0 must come with ``OK``."""
    code_text, comma, message = text.strip().partition(",")
    if not comma:
        raise ValueError(f"expected '<code>,<text>', got {text!r}")
    code = parse_int(code_text)
    message = message.strip().strip('"')
    if code == 0 and message != "OK":
        raise ValueError(f"code 0 must come with 'OK', got {text!r}")
    return code, message


def parse_wavelength_m(text: str) -> float:
    return in_range(parse_float, *WAVELENGTH_ENVELOPE_M)(text)


def parse_power_w(text: str) -> float:
    return in_range(parse_float, *POWER_PLAUSIBLE_W)(text)


class KeysightLaserTree:
    """The ``SOUR0``/``TRIG0`` tunable-laser commands and the :class:`TunableLaser` methods built on them.

    A mixin: the host is an instrument (N777xC) or a channel of one (8164B slot 0). It needs ``write``,
    ``query``, ``query_parsed``, ``transport``, ``check_errors`` and ``operation_complete`` from the host.
    """

    name: str
    address: str
    transport: Any
    write: Callable[[str], None]
    query: Callable[[str], str]
    query_parsed: Callable[..., Any]
    check_errors: Callable[[], None]
    operation_complete: Callable[..., None]

    #: Seconds between status polls while arming or running a sweep (tests set 0).
    poll_interval_s: float = 0.1
    #: Longest wait for the sweep to report "armed" (``:SOUR0:WAV:SWE:FLAG?`` odd) after ``:SOUR0:WAV:SWE 1``.
    arm_timeout_s: float = 10.0
    #: Pause after switching the output on; LabExT waits about 1 s for the laser to stabilise.
    output_settle_s: float = 1.0
    #: Longest wait for ``*OPC?`` after a wavelength move, s. No tuning time is given in the guides consulted [?];
    #: 30 s bounds a full-range move with a wide margin and does not depend on the line timeout a caller chose.
    tune_timeout_s: float = 30.0
    #: Whether the host routes mainframe triggers (``:TRIG:CONF``): 816x frames only (module docstring).
    has_trigger_configuration: bool = False

    _limits_m: tuple[float, float] | None = None
    _expected_points: int | None = None

    power_unit_watt = Setting(
        ":SOUR0:POW:UNIT?", ":SOUR0:POW:UNIT {value:d}",
        "Power unit of set values without suffix and of queries: 0 = dBm, 1 = W (the driver sets 1 at connect).",
        parse=parse_bool, validator=Boolean(), reply="{:d}", default=0)
    wavelength_m = Setting(
        ":SOUR0:WAV?", ":SOUR0:WAV {value:.8E}",
        "Output wavelength in metres (sent without suffix: metres is the default unit).",
        parse=parse_wavelength_m, validator=Range(*WAVELENGTH_ENVELOPE_M, " m"), reply="{:+.8E}",
        default=1.55e-6, unit="m")
    power_mw = Setting(
        None, ":SOUR0:POW {value:.6E}MW",
        "Output power set in milliwatts with the unit written out (independent of :SOUR0:POW:UNIT).",
        validator=Range(POWER_LIMITS_W[0] * 1e3, POWER_LIMITS_W[1] * 1e3, " mW"), default=1.0, unit="mW")
    power_reading = Setting(
        ":SOUR0:POW?", None,
        "Output power as the laser answers it, in the unit of :SOUR0:POW:UNIT (read with get_power_w()).",
        parse=parse_float, reply="{:+.6E}", default=1e-3, snapshot=False)
    output_enabled = Setting(
        ":SOUR0:POW:STAT?", ":SOUR0:POW:STAT {value:d}", "Laser output on (1) or off (0).",
        parse=parse_bool, validator=Boolean(), reply="{:d}", default=0)
    sweep_mode = Setting(
        ":SOUR0:WAV:SWE:MODE?", ":SOUR0:WAV:SWE:MODE {value}",
        "Sweep mode: CONT (continuous, needed for lambda logging), STEP or MAN.",
        parse=parse_token(("CONT", "STEP", "MAN")), validator=OneOf(("CONT", "STEP", "MAN")), default="STEP")
    sweep_start_m = Setting(
        ":SOUR0:WAV:SWE:STAR?", ":SOUR0:WAV:SWE:STAR {value:.8E}", "Sweep start wavelength in metres.",
        parse=parse_wavelength_m, validator=Range(*WAVELENGTH_ENVELOPE_M, " m"), reply="{:+.8E}",
        default=1.53e-6, unit="m")
    sweep_stop_m = Setting(
        ":SOUR0:WAV:SWE:STOP?", ":SOUR0:WAV:SWE:STOP {value:.8E}", "Sweep stop wavelength in metres.",
        parse=parse_wavelength_m, validator=Range(*WAVELENGTH_ENVELOPE_M, " m"), reply="{:+.8E}",
        default=1.57e-6, unit="m")
    sweep_step_m = Setting(
        ":SOUR0:WAV:SWE:STEP?", ":SOUR0:WAV:SWE:STEP {value:.6E}",
        "Sweep step in metres: one output trigger and one lambda-log point per step.",
        parse=in_range(parse_float, *SWEEP_STEP_LIMITS_M), validator=Range(*SWEEP_STEP_LIMITS_M, " m"),
        reply="{:+.6E}", default=1e-11, unit="m")
    sweep_speed_nm_per_s = Setting(
        None, ":SOUR0:WAV:SWE:SPE {value:.4f}NM/S",
        "Sweep speed, sent in nm/s with the documented suffix (read it back with sweep_speed_m_per_s).",
        validator=Range(*SWEEP_SPEED_LIMITS_NM_PER_S, " nm/s"), default=40.0, unit="nm/s")
    sweep_speed_m_per_s = Setting(
        ":SOUR0:WAV:SWE:SPE?", None, "Sweep speed as the instrument reports it, in m/s.",
        parse=in_range(parse_float, SWEEP_SPEED_LIMITS_NM_PER_S[0] * 1e-9, SWEEP_SPEED_LIMITS_NM_PER_S[1] * 1e-9),
        reply="{:+.8E}", default=4e-8, unit="m/s")
    sweep_cycles = Setting(
        ":SOUR0:WAV:SWE:CYCL?", ":SOUR0:WAV:SWE:CYCL {value:d}", "Number of sweep cycles (1 for one sweep).",
        parse=parse_count(0, 65535), validator=IntRange(1, 65535), reply="{:d}", default=1)
    lambda_logging = Setting(
        ":SOUR0:WAV:SWE:LLOG?", ":SOUR0:WAV:SWE:LLOG {value:d}",
        "Lambda logging: record the wavelength at every output trigger of a continuous sweep.",
        parse=parse_bool, validator=Boolean(), reply="{:d}", default=0)
    sweep_state = Setting(
        ":SOUR0:WAV:SWE?", ":SOUR0:WAV:SWE {value:d}",
        "Sweep state: set 0 stop, 1 start, 2 pause, 3 continue; reads 0 idle, 1 running, 2 paused.",
        parse=parse_int_in((0, 1, 2)), validator=IntRange(0, 3), reply="{:+d}", default=0)
    trigger_input = Setting(
        None, ":TRIG0:INP {value}",
        "Laser trigger input: SWS = a trigger (or :SOUR0:WAV:SWE:SOFT) starts an armed sweep; NEXT; IGN.",
        validator=OneOf(("IGN", "NEXT", "SWS")), default="IGN")
    trigger_output = Setting(
        None, ":TRIG0:OUTP {value}",
        "Laser trigger output: STF = one pulse per sweep step finished (one per lambda-log point); DIS, SWF, SWST.",
        validator=OneOf(("DIS", "STF", "SWF", "SWST")), default="DIS")

    # -- helpers -------------------------------------------------------------------------------------------------------
    def _reply_error(self, message: str, command: str) -> InstrumentReplyError:
        return InstrumentReplyError(message, instrument=self.name, address=self.address, command=command)

    def _command(self, setting_name: str, value: Any) -> str:
        """Validate and render one declared command without sending it (LimitError leaves the line untouched)."""
        setting = getattr(type(self), setting_name)
        assert isinstance(setting, Setting)
        return setting.format_command(self, value)

    def _exchange(self) -> Any:
        """The transport's transaction (lock held, Ctrl-C deferred) around a multi-line exchange."""
        return self.transport.transaction()

    def _sleep(self, poll_s: float | None) -> None:
        delay = self.poll_interval_s if poll_s is None else poll_s
        if delay > 0:
            self.transport.sleep(delay)

    # -- connect-time preparation --------------------------------------------------------------------------------------
    def is_locked(self) -> bool:
        return bool(self.query_parsed(LOCK_QUERY, parse_bool))

    def unlock(self, pin: str = DEFAULT_PIN) -> None:
        """``:LOCK 0,<pin>``; a locked laser refuses even ``:SOUR0:POW:STAT 0``, so the driver unlocks at connect."""
        if not pin.isdigit():
            raise LimitError(f"{self.name}: lock pin must be digits, got {pin!r}")
        with self._exchange():
            self.write(LOCK_COMMAND.format(state=0, pin=pin))
            if self.is_locked():
                raise InstrumentReportedError("laser stayed locked after :LOCK 0,<pin> (wrong pin?)",
                                              instrument=self.name, address=self.address, command=LOCK_QUERY)

    def prepare_laser(self, pin: str = DEFAULT_PIN) -> None:
        """Connect-time set-up: unlock if locked, power unit W (for read-backs), read the wavelength limits."""
        with self._exchange():
            if self.is_locked():
                log.info("%s: laser is locked; unlocking", self.name)
                self.unlock(pin)
            self.power_unit_watt = True
            self.refresh_wavelength_limits()

    def refresh_wavelength_limits(self) -> tuple[float, float]:
        """Read ``:SOUR0:WAV? MIN`` and ``MAX`` (the installed laser's tuning range) and cache them."""
        lo = self.query_parsed(WAVELENGTH_MIN_QUERY, parse_wavelength_m)
        hi = self.query_parsed(WAVELENGTH_MAX_QUERY, parse_wavelength_m)
        if not lo < hi:
            raise self._reply_error(f"minimum wavelength {lo:g} m is not below maximum {hi:g} m",
                                    WAVELENGTH_MAX_QUERY)
        self._limits_m = (lo, hi)
        return lo, hi

    # -- TunableLaser --------------------------------------------------------------------------------------------------
    def wavelength_limits_m(self) -> tuple[float, float]:
        """The tuning range read at connect (``:SOUR0:WAV? MIN``/``MAX``)."""
        if self._limits_m is None:
            return self.refresh_wavelength_limits()
        return self._limits_m

    def _check_in_limits(self, what: str, wavelength_m: float) -> None:
        lo, hi = self.wavelength_limits_m()
        if not lo <= wavelength_m <= hi:
            raise LimitError(f"{self.name}.{what}: {wavelength_m:g} m is outside the laser's range "
                             f"[{lo:g}, {hi:g}] m")

    def set_wavelength_m(self, wavelength_m: float) -> None:
        """Tune, wait for the move to finish (``*OPC?``, up to :attr:`tune_timeout_s`), check the error queue."""
        command = self._command("wavelength_m", wavelength_m)
        self._check_in_limits("wavelength_m", float(wavelength_m))
        with self._exchange():
            self.write(command)
            self.operation_complete(self.tune_timeout_s)
            self.check_errors()

    def get_wavelength_m(self) -> float:
        return self.wavelength_m

    def set_power_w(self, power_w: float) -> None:
        """``:SOUR0:POW <mW>MW`` (explicit unit), ``*OPC?``, error queue."""
        try:
            power_mw = float(power_w) * 1e3
        except (TypeError, ValueError):
            raise LimitError(f"{self.name}.power_w: {power_w!r} is not a number") from None
        command = self._command("power_mw", power_mw)
        with self._exchange():
            self.write(command)
            self.operation_complete()
            self.check_errors()

    def start_power_w(self, power_w: float) -> None:
        """``:SOUR0:POW <mW>MW`` and return at once: the output settles on its own (timing table: 20 ms from the
        command) while the host sets other lasers or instruments. Follow with :meth:`wait_power_settled`, and
        :meth:`check_errors` before trusting what was measured (a refused value leaves the power unchanged)."""
        try:
            power_mw = float(power_w) * 1e3
        except (TypeError, ValueError):
            raise LimitError(f"{self.name}.power_w: {power_w!r} is not a number") from None
        self.write(self._command("power_mw", power_mw))

    def wait_power_settled(self) -> None:
        """``*OPC?``: returns once the last power command has completed (IEEE 488.2 operation complete). That the
        N777xC counts the output's settling to the new power as part of the operation is not stated in the guides
        consulted [?] (the emulator models it so); a bench that finds otherwise waits the settling time instead."""
        self.operation_complete()

    def get_power_w(self) -> float:
        """``:SOUR0:POW:UNIT?`` then ``:SOUR0:POW?``: the reply is taken in the unit the laser says it uses."""
        command = KeysightLaserTree.power_reading.query
        assert command is not None
        with self._exchange():
            unit_watt = self.power_unit_watt
            reply = self.query(command)
        if unit_watt:
            return self.parse_reply(command, reply, parse_power_w)
        power_dbm = self.parse_reply(command, reply, in_range(parse_float, *POWER_PLAUSIBLE_DBM))
        log.warning("%s: power unit is dBm (changed on the front panel?); converting %g dBm", self.name, power_dbm)
        return 1e-3 * 10.0 ** (power_dbm / 10.0)

    def set_output(self, enabled: bool) -> None:
        self._switch_output(enabled)
        if enabled and self.output_settle_s > 0:
            self.transport.sleep(self.output_settle_s)

    def start_output(self) -> float:
        """Output on without the stabilisation pause; returns the seconds to wait before a reading
        (:attr:`output_settle_s`). Lasers switched on together stabilise in parallel: the caller waits once for all
        (``labctl.drivers.laser_outputs.switch_on_together``)."""
        self._switch_output(True)
        return max(float(self.output_settle_s), 0.0)

    def _switch_output(self, enabled: bool) -> None:
        command = self._command("output_enabled", enabled)
        with self._exchange():
            self.write(command)
            self.operation_complete()
            self.check_errors()

    def get_output(self) -> bool:
        return self.output_enabled

    def safe_state(self) -> None:
        """Stop any sweep, output off, read back: a laser that stays on must not go unnoticed."""
        with self._exchange():
            self.sweep_state = SWEEP_STOP
            self.output_enabled = False
            if self.output_enabled:
                raise InstrumentReportedError("laser output still on after :SOUR0:POW:STAT 0", instrument=self.name,
                                              address=self.address, command=":SOUR0:POW:STAT?")

    # -- swept measurement (instruments.md §1.3, laser side) -----------------------------------------------------------
    def configure_sweep(self, sweep: SweepSettings, *, trigger_loop: bool = False) -> int:
        """§1.3 steps 1-4: trigger set-up, continuous sweep with lambda logging, consistency checks, point count.

        ``trigger_loop`` adds ``:TRIG:CONF LOOP`` (power meter in the same 8164B frame; refused on a host without
        mainframe trigger routing); otherwise the laser's trigger output must be cabled to the meter's trigger
        input. Returns ``:SOUR0:WAV:SWE:EXP?``, the number of triggers (and of lambda-log points) the sweep will
        produce.
        """
        if trigger_loop and not self.has_trigger_configuration:
            raise LimitError(f"{self.name}: a trigger loop (:TRIG:CONF LOOP) exists only in 816x mainframes; cable "
                             "the laser's trigger output to the meter instead")
        if not sweep.start_m < sweep.stop_m:
            raise LimitError(f"{self.name}: sweep start {sweep.start_m:g} m must be below stop {sweep.stop_m:g} m")
        if not 0 < sweep.step_m <= sweep.stop_m - sweep.start_m:
            raise LimitError(f"{self.name}: sweep step {sweep.step_m:g} m must be positive and within the span")
        self._check_in_limits("sweep start", sweep.start_m)
        self._check_in_limits("sweep stop", sweep.stop_m)
        commands = [self._command("trigger_input", "SWS")]
        if trigger_loop:
            commands.append(self._command("trigger_configuration", "LOOP"))
        commands += [
            self._command("trigger_output", "STF"),
            self._command("sweep_mode", "CONT"),
            self._command("sweep_start_m", sweep.start_m),
            self._command("sweep_stop_m", sweep.stop_m),
            self._command("sweep_step_m", sweep.step_m),
            self._command("sweep_speed_nm_per_s", sweep.speed_m_per_s * 1e9),
            self._command("sweep_cycles", 1),
            self._command("lambda_logging", True),
        ]
        pmax_query = SWEEP_PMAX_QUERY.format(start_nm=sweep.start_m * 1e9, stop_nm=sweep.stop_m * 1e9)
        self._expected_points = None
        with self._exchange():
            for command in commands:
                self.write(command)
            self.check_errors()
            self.check_sweep()
            pmax_w = self.query_parsed(pmax_query, parse_power_w)
            power_w = self.get_power_w()
            if power_w > pmax_w:
                raise InstrumentReportedError(
                    f"set power {power_w:g} W exceeds the {pmax_w:g} W the laser can hold over the sweep range",
                    instrument=self.name, address=self.address, command=pmax_query)
            points = self.query_parsed(SWEEP_EXPECTED_POINTS_QUERY, parse_count(*SWEEP_POINTS_PLAUSIBLE))
        if points != sweep.n_points:
            log.info("%s: sweep will log %d points (settings imply %d)", self.name, points, sweep.n_points)
        self._expected_points = points
        return points

    def check_sweep(self) -> None:
        """``:SOUR0:WAV:SWE:CHEC?`` must answer ``0,OK``; any other code is translated and raised."""
        code, message = self.query_parsed(SWEEP_CHECK_QUERY, parse_sweep_check)
        if code != 0:
            meaning = SWEEP_CHECK_CODES.get(code, "code not in the documented table")
            raise InstrumentReportedError(f"sweep parameters rejected: {code} {meaning} (instrument: {message!r})",
                                          errors=[(code, message)], instrument=self.name, address=self.address,
                                          command=SWEEP_CHECK_QUERY)

    def start_sweep(self, *, poll_s: float | None = None) -> None:
        """§1.3 step 6: start (arm), poll ``:SOUR0:WAV:SWE:FLAG?`` until odd, then the software trigger."""
        flag_parse = parse_count(0, 65535)
        with self._exchange():
            self.sweep_state = SWEEP_START
            deadline = time.monotonic() + self.arm_timeout_s
            while self.query_parsed(SWEEP_FLAG_QUERY, flag_parse) % 2 != 1:
                if time.monotonic() > deadline:
                    self.sweep_state = SWEEP_STOP
                    raise InstrumentTimeout(f"sweep not armed within {self.arm_timeout_s:g} s; sweep stopped",
                                            instrument=self.name, address=self.address, command=SWEEP_FLAG_QUERY)
                self._sleep(poll_s)
            self.write(SWEEP_SOFTWARE_TRIGGER)

    def wait_sweep(self, timeout_s: float, *, poll_s: float | None = None) -> None:
        """§1.3 step 7 (laser): poll ``:SOUR0:WAV:SWE?`` until 0; on timeout stop the sweep and raise."""
        deadline = time.monotonic() + timeout_s
        while self.sweep_state != SWEEP_STOP:
            if time.monotonic() > deadline:
                self.sweep_state = SWEEP_STOP
                raise InstrumentTimeout(f"sweep still running after {timeout_s:g} s; sweep stopped",
                                        instrument=self.name, address=self.address, command=":SOUR0:WAV:SWE?")
            self._sleep(poll_s)

    def logged_wavelengths_m(self) -> np.ndarray:
        """§1.3 step 8 (laser): ``:SOUR0:READ:DATA? LLOG``, float64 little-endian, metres, one per trigger."""
        command = LAMBDA_LOG_DATA_QUERY
        values = self.transport.query_binary(command, "d")
        if values.size == 0:
            raise self._reply_error("lambda log is empty (was lambda logging on during the sweep?)", command)
        if self._expected_points is not None and values.size != self._expected_points:
            raise self._reply_error(f"lambda log holds {values.size} points, :SOUR0:WAV:SWE:EXP? announced "
                                    f"{self._expected_points}", command)
        lo, hi = WAVELENGTH_ENVELOPE_M
        bad = ~np.isfinite(values) | (values < lo) | (values > hi)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise self._reply_error(f"logged wavelength {float(values[index])!r} at index {index} is outside "
                                    f"[{lo:g}, {hi:g}] m", command)
        return values.astype(np.float64)

    def finish_sweep(self, *, abort: bool = False) -> None:
        """§1.3 step 9 (laser): triggers back to idle (and, in an 816x frame, routing to default: ``:TRIG:CONF DEF``
        is never sent to a stand-alone laser); ``abort`` also stops a running sweep."""
        with self._exchange():
            if abort:
                self.sweep_state = SWEEP_STOP
            self.trigger_input = "IGN"
            self.trigger_output = "DIS"
            if self.has_trigger_configuration:
                self.write(self._command("trigger_configuration", "DEF"))
