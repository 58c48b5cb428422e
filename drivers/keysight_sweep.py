"""Keysight swept-wavelength measurements: the power-sensor command tree with its logging function, shared by the
81634B (in an 8164B) and the N7744A/N7745A, and the swept insertion-loss recipe of instruments.md §1.3.

The 816x power-sensor subsystem (8163A/B-8164A/B-8166A/B programming guide) and the N774x one (N77xx programming
guide) are the same tree; the N774x simply has no ``CHAN`` level. A sensor channel therefore fills ``{ch}`` with
``<slot>:CHAN<channel>`` on the 8164B (``:SENS1:CHAN1:POW:WAV?``) and with ``<port>`` on the N774x
(``:SENS3:POW:WAV?``). Model-specific limits (wavelength range, averaging time, power ranges) are declared by the
subclasses in :mod:`~labctl.drivers.keysight_8164b` and :mod:`~labctl.drivers.keysight_n774xa`.

Interface port numbers (:class:`~labctl.drivers.interfaces.PowerReadout`) are 0-based indices into
``read_all_w()``: ``read_all_w()[p] == read_power_w(p)`` for every port ``p``. The instrument's own numbering is
kept on the sensor channels (``sensor.id``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from labctl.drivers.errors import (
    InstrumentError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeout,
    LimitError,
)
from labctl.drivers.instrument import Channel, Setting
from labctl.drivers.interfaces import PowerReadout, SweepSettings, TunableLaser
from labctl.drivers.parsing import in_range, parse_bool, parse_float
from labctl.drivers.validators import Boolean, IntRange, OneOf

log = logging.getLogger(__name__)

#: Plausible optical power in watts: a small negative reading is dark noise after zeroing; more than 0.1 W
#: (+20 dBm) is above every sensor's damage level, i.e. a unit mix-up or a corrupted value.
POWER_PLAUSIBLE_W = (-1e-6, 0.1)

# -- logging function (816x guide: SENSe:FUNCtion; N774x user guide: logging application) ------------------------------
LOGGING_STOP = ":SENS{ch}:FUNC:STAT LOGG,STOP"
LOGGING_START = ":SENS{ch}:FUNC:STAT LOGG,STAR"
LOGGING_PARAMETERS = ":SENS{ch}:FUNC:PAR:LOGG {points:d},{averaging_time_s:.6E}"
LOGGING_STATE_QUERY = ":SENS{ch}:FUNC:STAT?"
LOGGING_RESULT_QUERY = ":SENS{ch}:FUNC:RES?"
LOGGING_FUNCTIONS = ("NONE", "LOGGING_STABILITY", "MINMAX")
LOGGING_STATES = ("PROGRESS", "COMPLETE")


def parse_logging_state(text: str) -> tuple[str, str]:
    """``<function>,<state>`` from ``:SENS<n>:FUNC:STAT?``, e.g. ``LOGGING_STABILITY,COMPLETE``."""
    parts = [p.strip() for p in text.strip().split(",")]
    if len(parts) != 2 or parts[0] not in LOGGING_FUNCTIONS or parts[1] not in LOGGING_STATES:
        raise ValueError(f"expected '<{'|'.join(LOGGING_FUNCTIONS)}>,<{'|'.join(LOGGING_STATES)}>', got {text!r}")
    return parts[0], parts[1]


def parse_power_w(text: str) -> float:
    return in_range(parse_float, *POWER_PLAUSIBLE_W)(text)


def check_power_array(values: np.ndarray, *, expected: int | None, what: str, error: Any) -> np.ndarray:
    """Reject a power block of the wrong length or with non-finite / implausible values (no silent NaN)."""
    if expected is not None and values.size != expected:
        raise error(f"{what} holds {values.size} values, expected {expected}")
    lo, hi = POWER_PLAUSIBLE_W
    # the common case: every value in range (NaN fails both); for doubles, the least and the greatest (NaN makes
    # both NaN, which fails)
    if values.dtype == np.float64 and values.size:
        if lo <= np.minimum.reduce(values, axis=None) and np.maximum.reduce(values, axis=None) <= hi:
            return values.astype(np.float64)
    elif np.count_nonzero((values >= lo) & (values <= hi)) == values.size:
        return values.astype(np.float64)
    bad = ~np.isfinite(values) | (values < lo) | (values > hi)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise error(f"{what}: value {float(values[index])!r} at index {index} is an over-range marker or outside the "
                    f"plausible [{lo:g}, {hi:g}] W")
    return values.astype(np.float64)


class KeysightPowerSensor(Channel):
    """One Keysight power-sensor channel (816x module channel or N774x port); subclasses add the model limits.

    Subclasses declare ``wavelength_m``, ``averaging_time_s`` and ``range_dbm``.
    """

    unit_watt = Setting(
        ":SENS{ch}:POW:UNIT?", ":SENS{ch}:POW:UNIT {value:d}",
        "Reading unit: 0 = dBm, 1 = W (the drivers set W at connect so that readings come back in watts).",
        parse=parse_bool, validator=Boolean(), reply="{:d}", default=0)
    auto_range = Setting(
        ":SENS{ch}:POW:RANG:AUTO?", ":SENS{ch}:POW:RANG:AUTO {value:d}", "Automatic power ranging on (1) or off (0).",
        parse=parse_bool, validator=Boolean(), reply="{:d}", default=1)
    power_w = Setting(
        ":READ{ch}:POW?", None, "A new, self-triggered power reading in watts (over-range >1e20 is refused).",
        parse=parse_power_w, reply="{:+.6E}", default=1.0e-5, unit="W", snapshot=False)
    fetched_power_w = Setting(
        ":FETC{ch}:POW?", None, "The last power reading in watts (needs continuous triggering or :INIT:IMM).",
        parse=parse_power_w, reply="{:+.6E}", default=1.0e-5, unit="W", snapshot=False)
    continuous = Setting(
        None, ":INIT{ch}:CONT {value:d}", "Continuous software triggering (1) or single (0).",
        validator=Boolean(), default=1)
    trigger_input = Setting(
        None, ":TRIG{ch}:INP {value}",
        "Trigger input: SME = one logged sample per trigger, CME = one trigger starts the whole run, IGN, MME.",
        validator=OneOf(("IGN", "SME", "CME", "MME")), default="IGN")

    #: Whether this channel accepts the logging set-up (only the master channel of a dual head does).
    is_logging_master: bool = True
    #: The averaging time last read from or written to the channel, s (None: unknown, assume the longest).
    known_averaging_time_s: float | None = None

    def refresh_averaging_time(self) -> float:
        """Read ``:SENS<n>:POW:ATIM?`` into :attr:`known_averaging_time_s` (it bounds the reading timeout)."""
        self.known_averaging_time_s = float(self.averaging_time_s)  # type: ignore[attr-defined]
        return self.known_averaging_time_s

    def longest_averaging_time_s(self) -> float:
        """The longest averaging time this channel accepts, s (from its declared validator)."""
        return float(type(self).averaging_time_s.validator.hi)  # type: ignore[attr-defined]


@runtime_checkable
class LoggingPowerReadout(PowerReadout, Protocol):
    """A Keysight power readout whose logging can be cleaned up after a sweep (§1.3 step 9)."""

    def finish_logging(self, *, abort: bool = False) -> None: ...


class KeysightSensorReadout:
    """:class:`PowerReadout` over a list of :class:`KeysightPowerSensor` channels (port p = ``sensors[p]``).

    The host (an instrument, or a view on one) provides ``name``, ``address``, ``transport``, ``write``,
    ``query`` and ``check_errors``; subclasses provide ``read_all_w`` and ``identity``.
    """

    name: str
    address: str
    transport: Any
    #: Most points one logging run may hold.
    max_logging_points: ClassVar[int] = 1_000_000
    #: Seconds between logging-state polls (tests set 0).
    poll_interval_s: float = 0.1
    #: A reading takes up to this many averaging times beyond the line timeout (LabExT's ``power`` property sets
    #: its VISA timeout to 1.1 averaging times for the same reason).
    averaging_timeout_factor: ClassVar[float] = 1.1

    sensors: list[KeysightPowerSensor]
    _logging_points: int | None = None
    # provided by the host (annotations only, so that a host's methods are never shadowed)
    write: Callable[[str], None]
    check_errors: Callable[[], None]

    @property
    def n_ports(self) -> int:
        return len(self.sensors)

    @property
    def range_choices_dbm(self) -> tuple[float, ...]:
        """The fixed power ranges the sensors accept (dBm)."""
        if not self.sensors:
            return ()
        return tuple(type(self.sensors[0]).range_dbm.validator.values)  # type: ignore[attr-defined]

    def _targets(self, port: int | None) -> list[KeysightPowerSensor]:
        if port is None:
            return list(self.sensors)
        if isinstance(port, bool) or not isinstance(port, (int, np.integer)) or not 0 <= port < self.n_ports:
            raise LimitError(f"{self.name}: port {port!r} is not one of 0..{self.n_ports - 1}")
        return [self.sensors[int(port)]]

    def _logging_sensors(self) -> list[KeysightPowerSensor]:
        return [s for s in self.sensors if s.is_logging_master]

    def _send(self, commands: Sequence[str]) -> None:
        with self.transport.transaction():
            for command in commands:
                self.write(command)

    def _reply_error(self, message: str, command: str) -> InstrumentReplyError:
        return InstrumentReplyError(message, instrument=self.name, address=self.address, command=command)

    # -- settings ------------------------------------------------------------------------------------------------------
    def set_wavelength_m(self, wavelength_m: float, port: int | None = None) -> None:
        """Calibration wavelength of one port or of all (sent in metres)."""
        self._send([type(s).wavelength_m.format_command(s, wavelength_m)  # type: ignore[attr-defined]
                    for s in self._targets(port)])

    def set_averaging_time_s(self, averaging_time_s: float, port: int | None = None) -> None:
        """Averaging time of one port or all; remembered, because it bounds how long a reading may take."""
        targets = self._targets(port)
        self._send([type(s).averaging_time_s.format_command(s, averaging_time_s)  # type: ignore[attr-defined]
                    for s in targets])
        for s in targets:
            s.known_averaging_time_s = float(averaging_time_s)

    def reading_timeout_s(self, sensors: Sequence[KeysightPowerSensor] | None = None) -> float:
        """How long a reading of ``sensors`` (default all) may take: the line timeout plus
        :attr:`averaging_timeout_factor` times their longest averaging time (the longest the model accepts where
        it is unknown)."""
        chosen = self.sensors if sensors is None else sensors
        longest = max([s.known_averaging_time_s if s.known_averaging_time_s is not None
                       else s.longest_averaging_time_s() for s in chosen], default=0.0)  # (a list: every reading)
        return self.transport.settings.timeout_s + self.averaging_timeout_factor * longest

    def set_range_dbm(self, range_dbm: float | None, port: int | None = None) -> None:
        """A fixed range (``:RANG:AUTO 0`` then ``:RANG <dBm>DBM``), or auto range when ``range_dbm`` is None."""
        commands: list[str] = []
        for s in self._targets(port):
            if range_dbm is None:
                commands.append(type(s).auto_range.format_command(s, True))
            else:
                fixed = type(s).range_dbm.format_command(s, range_dbm)  # type: ignore[attr-defined]
                commands += [type(s).auto_range.format_command(s, False), fixed]
        self._send(commands)

    # -- readings ------------------------------------------------------------------------------------------------------
    def read_power_w(self, port: int) -> float:
        """``:READ<port>:POW?``: a fresh reading in watts (waits up to :meth:`reading_timeout_s`)."""
        (sensor,) = self._targets(port)
        with self.transport.timeout_for(self.reading_timeout_s([sensor])):
            return sensor.power_w

    def snapshot_ports(self) -> list[dict[str, Any]]:
        """Each port's settings read back now (unit, range, wavelength, averaging time...)."""
        return [{"id": s.id, "settings": s.read_settings()} for s in self.sensors]

    # -- logging (instruments.md §1.3 step 5, §2.1) --------------------------------------------------------------------
    def configure_logging(self, n_points: int, averaging_time_s: float, triggered: bool = True) -> None:
        """Stop logging everywhere, then per master channel: trigger input (SME or IGN), unit W and ``N,t_avg``.

        Set ranges and wavelengths before this: any settings change stops a running logging function.
        """
        points = IntRange(1, self.max_logging_points)(n_points, f"{self.name}.logging points")
        sensors = self._logging_sensors()
        if not sensors:
            raise LimitError(f"{self.name}: no power sensor to log on")
        validator = type(sensors[0]).averaging_time_s.validator  # type: ignore[attr-defined]
        t_avg = validator(averaging_time_s, f"{self.name}.logging averaging_time_s")
        commands = [s._fill(LOGGING_STOP) for s in sensors]
        for s in sensors:
            commands.append(type(s).trigger_input.format_command(s, "SME" if triggered else "IGN"))
            commands.append(type(s).unit_watt.format_command(s, True))  # the N774x logs in the selected unit
            commands.append(s._fill(LOGGING_PARAMETERS, points=points, averaging_time_s=t_avg))
        self._logging_points = None
        with self.transport.transaction():
            self._send(commands)
            self.check_errors()
        self._logging_points = points

    def start_logging(self) -> None:
        """``:SENS<n>:FUNC:STAT LOGG,STAR`` on every master channel (waits for triggers when triggered)."""
        if self._logging_points is None:
            raise LimitError(f"{self.name}: configure_logging() first")
        self._send([s._fill(LOGGING_START) for s in self._logging_sensors()])

    def wait_logging(self, timeout_s: float, *, poll_s: float | None = None) -> None:
        """Poll ``:SENS<n>:FUNC:STAT?`` until every logging channel reads COMPLETE."""
        pending = self._logging_sensors()
        delay = self.poll_interval_s if poll_s is None else poll_s
        deadline = time.monotonic() + timeout_s
        while True:
            still: list[KeysightPowerSensor] = []
            for s in pending:
                command = s._fill(LOGGING_STATE_QUERY)
                function, state = s.query_parsed(command, parse_logging_state)
                if function == "NONE":
                    raise InstrumentReportedError("no logging function is active (stopped by a settings change?)",
                                                  instrument=self.name, address=self.address, command=command)
                if state != "COMPLETE":
                    still.append(s)
            if not still:
                return
            if time.monotonic() > deadline:
                raise InstrumentTimeout(f"logging not complete after {timeout_s:g} s on "
                                        f"{[s.id for s in still]} (trigger cable or trigger routing?)",
                                        instrument=self.name, address=self.address,
                                        command=still[0]._fill(LOGGING_STATE_QUERY))
            pending = still
            if delay > 0:
                self.transport.sleep(delay)

    def logged_power_w(self, port: int) -> np.ndarray:
        """``:SENS<n>:FUNC:RES?``: float32 little-endian block, watts, one value per logged point."""
        (sensor,) = self._targets(port)
        command = sensor._fill(LOGGING_RESULT_QUERY)
        values = self.transport.query_binary(command, "f")
        return check_power_array(values, expected=self._logging_points, what="logged power",
                                 error=lambda m: self._reply_error(m, command))

    def stop_logging(self) -> None:
        self._send([s._fill(LOGGING_STOP) for s in self._logging_sensors()])

    def finish_logging(self, *, abort: bool = False) -> None:
        """§1.3 step 9 (meter): trigger input IGN, continuous triggering back on; ``abort`` stops logging first."""
        commands = [s._fill(LOGGING_STOP) for s in self._logging_sensors()] if abort else []
        commands += [type(s).trigger_input.format_command(s, "IGN") for s in self._logging_sensors()]
        commands += [type(s).continuous.format_command(s, True) for s in self._logging_sensors()]
        self._send(commands)

    def safe_state(self) -> None:
        """A power meter has nothing to switch off; stop a logging run so manual readings work again."""
        self.finish_logging(abort=True)


# -- the recipe --------------------------------------------------------------------------------------------------------
#: Seconds the meter may still need after the laser reports the sweep finished (LabExT allows 3 s), on top of
#: one averaging time per point.
LOGGING_GRACE_S = 3.0

def _same_frame(laser: Any, meter: Any) -> bool:
    frame = getattr(laser, "mainframe", None)
    return frame is not None and frame is getattr(meter, "mainframe", None)


def _range_for_power_dbm(power_w: float, ranges_dbm: Sequence[float]) -> float:
    """The most sensitive fixed range that still holds ``power_w`` (the DUT cannot add power)."""
    power_dbm = 10.0 * math.log10(max(power_w, 1e-12) / 1e-3)
    fitting = [r for r in sorted(ranges_dbm) if r >= power_dbm]
    return fitting[0] if fitting else max(ranges_dbm)


def swept_insertion_loss(laser: Any, meter: LoggingPowerReadout, ports: Sequence[int], sweep: SweepSettings,
                         averaging_time_s: float, poll_s: float, *, range_dbm: float | None = None,
                         timeout_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the §1.3 swept-wavelength recipe on a Keysight laser and a Keysight power readout.

    ``laser`` is a :class:`~labctl.drivers.keysight_laser.KeysightLaserTree` (8164B slot 0 or N777xC) and
    ``meter`` an 8164B power meter or an N774x. When both live in the same 8164B the mainframe's trigger loop is
    used (``:TRIG:CONF LOOP``); otherwise the laser's trigger output must be cabled to the meter's trigger input.
    The laser output is not switched here: the bench decides that. ``range_dbm`` defaults to the most sensitive
    range that holds the laser's set power. Returns ``(wavelengths_m[n], powers_w[len(ports), n])``; the
    triggers are cleaned up on every exit path.
    """
    if not isinstance(laser, TunableLaser) or not hasattr(laser, "finish_sweep"):
        raise TypeError(f"{laser!r} is not a Keysight tunable laser")
    ports = [int(p) for p in ports]
    if not ports:
        raise LimitError("swept_insertion_loss: no ports given")
    for p in ports:
        if not 0 <= p < meter.n_ports:
            raise LimitError(f"{meter.name}: port {p} is not one of 0..{meter.n_ports - 1}")
    if not (sweep.step_m > 0 and sweep.speed_m_per_s > 0):
        raise LimitError(f"sweep step {sweep.step_m:g} m and speed {sweep.speed_m_per_s:g} m/s must be positive")
    step_time_s = sweep.step_m / sweep.speed_m_per_s
    if not 0 < averaging_time_s < step_time_s:
        raise LimitError(f"averaging time {averaging_time_s:g} s must be positive and below the step time "
                         f"{step_time_s:g} s (step / speed)")
    lo, hi = laser.wavelength_limits_m()
    if not (lo <= sweep.start_m < sweep.stop_m <= hi):
        raise LimitError(f"sweep {sweep.start_m:g}-{sweep.stop_m:g} m is outside the laser's range "
                         f"[{lo:g}, {hi:g}] m")
    if timeout_s is None:
        timeout_s = 2.0 * (sweep.stop_m - sweep.start_m) / sweep.speed_m_per_s + 10.0
    centre_m = 0.5 * (sweep.start_m + sweep.stop_m)

    completed = False
    try:
        n_points = laser.configure_sweep(sweep, trigger_loop=_same_frame(laser, meter))
        if range_dbm is None:
            range_dbm = _range_for_power_dbm(laser.get_power_w(), meter.range_choices_dbm)  # type: ignore[attr-defined]
        for p in ports:
            meter.set_range_dbm(range_dbm, p)
            meter.set_wavelength_m(centre_m, p)
        meter.configure_logging(n_points, averaging_time_s, triggered=True)
        meter.start_logging()
        laser.start_sweep(poll_s=poll_s)
        laser.wait_sweep(timeout_s, poll_s=poll_s)
        meter.wait_logging(LOGGING_GRACE_S + n_points * averaging_time_s, poll_s=poll_s)  # type: ignore[call-arg]
        powers_w = np.vstack([meter.logged_power_w(p) for p in ports])
        wavelengths_m = laser.logged_wavelengths_m()
        completed = True
    finally:
        failures: list[InstrumentError] = []
        for cleanup in (lambda: meter.finish_logging(abort=not completed),
                        lambda: laser.finish_sweep(abort=not completed)):
            try:
                cleanup()
            except InstrumentError as exc:
                log.error("sweep clean-up failed: %s", exc)
                failures.append(exc)
        if completed and failures:
            raise failures[0]
    return wavelengths_m, powers_w
