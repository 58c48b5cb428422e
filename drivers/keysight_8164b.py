"""Keysight (Agilent) 8164B lightwave measurement system: tunable laser in slot 0, 81634B power sensors in the
front slots (instruments.md §1.1, §2.2, §4).

GPIB (or LAN, VXI-11 on later firmware), LF terminator. Slot 0 is the back-loaded tunable laser (81600B, 81960A,
...), driven through the ``SOUR0``/``TRIG0`` tree of :mod:`labctl.drivers.keysight_laser`; front slots 1..4 hold
modules addressed as ``SENS<n>:CHAN<m>`` (m = 1, or 2 on dual heads), driven through the power-sensor tree of
:mod:`labctl.drivers.keysight_sweep`.

One connection serves the whole frame, so :class:`Keysight8164B` owns it and offers two views:

* ``frame.laser``: the slot-0 laser as a :class:`~labctl.drivers.interfaces.TunableLaser`;
* ``frame.power_meter``: every power channel as one :class:`~labctl.drivers.interfaces.PowerReadout`; its ports
  follow ``:READ1:POW:ALL:CONF?`` (the order of ``:READ1:POW:ALL?``) and map to ``(slot, channel)`` pairs.

Closing a view does nothing: close the frame (which switches the laser off first). Connect: ``*IDN?`` (8164B),
``*CLS``, ``:SLOT<n>:EMPT?`` and ``:SLOT<n>:IDN?`` for slots 0..4, the laser set-up (``:LOCK?``,
``:SOUR0:POW:UNIT 1``, ``:SOUR0:WAV? MIN|MAX``), then, only when a front slot holds a module,
``:READ1:POW:ALL:CONF?``; ``:SENS<n>:CHAN<m>:POW:UNIT 1`` and ``:SENS<n>:CHAN<m>:POW:ATIM?`` per power channel;
then ``:SYST:ERR?`` must be clean.

Older frames. ``:READ[n]:POW:ALL:CONF?`` and ``:READ[n]:POW:ALL?`` exist from mainframe firmware v3.0x on ([M] 816x
programming guide, ":READ[n][:CHANnel[m]]:POWer:ALL:CONFig?", "affects: All power meters (v3.0x firmware or
later)"). A frame that does not answer the configuration query within :attr:`Keysight8164B.conf_probe_timeout_s`
still connects (a malformed answer is still an error): its error queue is cleared (``*CLS``), the power channels
come from the identified modules (:data:`SENSOR_CHANNELS`) and :meth:`Keysight8164BPowerMeter.read_all_w` reads them one
``:READ<n>:CHAN<m>:POW?`` at a time. A frame without front modules never asks.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
from labctl.drivers.clock import Clock
from labctl.drivers.errors import InstrumentReplyError, InstrumentTimeout, LimitError
from labctl.drivers.instrument import Channel, ScpiInstrument, Setting
from labctl.drivers.keysight_laser import DEFAULT_PIN, KeysightLaserTree
from labctl.drivers.keysight_sweep import (
    KeysightPowerSensor,
    KeysightSensorReadout,
    check_power_array,
)
from labctl.drivers.parsing import (
    Identity,
    in_range,
    parse_bool,
    parse_float,
    parse_idn,
)
from labctl.drivers.transport import BaseTransport, TransportSettings
from labctl.drivers.validators import OneOf, Range

log = logging.getLogger(__name__)

MAINFRAME_MODELS = ("8164B",)
LASER_SLOT = 0
SLOTS = (0, 1, 2, 3, 4)
SLOT_EMPTY_QUERY = ":SLOT{slot}:EMPT?"
SLOT_IDENTITY_QUERY = ":SLOT{slot}:IDN?"
#: Every power channel in one reading: float32 little-endian block, always watts (manual).
POWER_ALL_QUERY = ":READ1:POW:ALL?"
#: The order of that block: uint16 little-endian (slot, channel) pairs.
POWER_ALL_ORDER_QUERY = ":READ1:POW:ALL:CONF?"
#: Fixed power ranges of the 816x power sensors in dBm (+10 down to -70 in 10 dB steps).
SENSOR_RANGES_DBM = (10, 0, -10, -20, -30, -40, -50, -60, -70)
#: Power channels per front-slot module model, used only when :data:`POWER_ALL_ORDER_QUERY` is not answered
#: (firmware before v3.0x). Dual sensor 81635A and dual head interface 81619A have two channels ([M] the guide's
#: "dual sensors" notes); the single-channel list is Keysight's 816x power sensor line [?: not from a manual page].
SENSOR_CHANNELS: dict[str, int] = {"81630B": 1, "81632B": 1, "81633B": 1, "81634B": 1, "81636B": 1, "81618A": 1,
                                   "81635A": 2, "81619A": 2}


class Keysight81634BSensor(KeysightPowerSensor):
    """One power channel of an 81634B (or other 816x power sensor); ``{ch}`` is ``<slot>:CHAN<channel>``."""

    wavelength_m = Setting(
        ":SENS{ch}:POW:WAV?", ":SENS{ch}:POW:WAV {value:.8E}",
        "Calibration wavelength in metres (sent without suffix).",
        parse=in_range(parse_float, 0.8e-6, 1.7e-6), validator=Range(0.8e-6, 1.7e-6, " m"), reply="{:+.8E}",
        default=1.55e-6, unit="m")
    averaging_time_s = Setting(
        ":SENS{ch}:POW:ATIM?", ":SENS{ch}:POW:ATIM {value:.6E}", "Averaging time in seconds (sent without suffix).",
        parse=in_range(parse_float, 100e-6, 10.0), validator=Range(100e-6, 10.0, " s"), reply="{:+.6E}",
        default=1e-4, unit="s")
    range_dbm = Setting(
        ":SENS{ch}:POW:RANG?", ":SENS{ch}:POW:RANG {value:.0f}DBM", "Fixed power range in dBm (10 dB steps).",
        parse=in_range(parse_float, min(SENSOR_RANGES_DBM), max(SENSOR_RANGES_DBM)),
        validator=OneOf(SENSOR_RANGES_DBM), reply="{:+.6E}", default=0, unit="dBm")

    def __init__(self, parent: Keysight8164B, slot: int, channel: int) -> None:
        super().__init__(parent, f"{slot}:CHAN{channel}")
        self.slot = slot
        self.channel = channel
        # only the master channel of a dual head accepts the logging set-up; the slave follows it
        self.is_logging_master = channel == 1


class Keysight8164BLaser(KeysightLaserTree, Channel):
    """The slot-0 laser of an 8164B as a :class:`~labctl.drivers.interfaces.TunableLaser`."""

    has_trigger_configuration = True
    trigger_configuration = Setting(
        None, ":TRIG:CONF {value}",
        "Mainframe trigger routing: LOOP feeds the output trigger back to the input (laser + PM in one 8164B); "
        "DEF, PASS, DIS ([D] LabExT LaserMainframeKeysight: 'trig:conf loop' / 'trig:conf def').",
        validator=OneOf(("DIS", "DEF", "PASS", "LOOP")), default="DEF")

    def __init__(self, mainframe: Keysight8164B) -> None:
        super().__init__(mainframe, LASER_SLOT)
        self.mainframe = mainframe
        self.name = f"{mainframe.name}.laser"

    @property
    def transport(self) -> BaseTransport:
        return self.mainframe.transport

    def identity(self) -> Identity:
        """The laser module's ``:SLOT0:IDN?``."""
        return self.mainframe.slot_identity(LASER_SLOT)

    def check_errors(self) -> None:
        self.mainframe.check_errors()

    def operation_complete(self, timeout_s: float | None = None) -> None:
        self.mainframe.operation_complete(timeout_s)

    def close(self) -> None:
        """The frame owns the connection; close the :class:`Keysight8164B`."""
        log.debug("%s: close() on a view does nothing", self.name)

    def snapshot(self) -> dict[str, Any]:
        """The laser's settings read back now, power in W whatever ``:SOUR0:POW:UNIT`` says."""
        return {"settings": self.read_settings(), "power_w": self.get_power_w(),
                "wavelength_limits_m": list(self.wavelength_limits_m()), "locked": self.is_locked()}


class Keysight8164BPowerMeter(KeysightSensorReadout):
    """Every power channel of an 8164B as one :class:`~labctl.drivers.interfaces.PowerReadout`.

    Port p is ``sensors[p]``, at position p of ``:READ1:POW:ALL?``; ``ports[p]`` is its ``(slot, channel)``.
    """

    #: The 816x frames log up to about 10 001 points (LabExT note).
    max_logging_points: ClassVar[int] = 10_001

    def __init__(self, mainframe: Keysight8164B, sensors: list[Keysight81634BSensor],
                 read_all_supported: bool = True) -> None:
        self.mainframe = mainframe
        self.sensors = list(sensors)
        self.name = f"{mainframe.name}.power"
        self.address = mainframe.address
        #: Whether the frame answers ``:READ1:POW:ALL?`` (firmware v3.0x or later); else channel by channel.
        self.read_all_supported = read_all_supported

    @property
    def ports(self) -> list[tuple[int, int]]:
        return [(s.slot, s.channel) for s in self.sensors]  # type: ignore[attr-defined]

    @property
    def transport(self) -> BaseTransport:
        return self.mainframe.transport

    def write(self, command: str) -> None:
        self.mainframe.write(command)

    def query(self, command: str) -> str:
        return self.mainframe.query(command)

    def check_errors(self) -> None:
        self.mainframe.check_errors()

    def identity(self) -> Identity:
        return self.mainframe.identity()

    def sensor(self, slot: int, channel: int = 1) -> Keysight81634BSensor:
        """The power channel in ``slot``/``channel`` (front-panel numbering)."""
        for s in self.sensors:
            if (s.slot, s.channel) == (slot, channel):  # type: ignore[attr-defined]
                assert isinstance(s, Keysight81634BSensor)
                return s
        raise LimitError(f"{self.name}: no power channel in slot {slot}, channel {channel}; have {self.ports}")

    def read_all_w(self) -> np.ndarray:
        """``:READ1:POW:ALL?``: every power channel in one self-triggered reading, watts, in port order; on a
        frame without it, ``:READ<n>:CHAN<m>:POW?`` per channel (module docstring)."""
        with self.transport.timeout_for(self.reading_timeout_s()):
            if self.read_all_supported:
                command = POWER_ALL_QUERY
                values = self.transport.query_binary(command, "f")
            else:
                command = str(Keysight81634BSensor.power_w.query)  # per channel, :READ<n>:CHAN<m>:POW?
                values = np.array([s.power_w for s in self.sensors])
        return check_power_array(values, expected=self.n_ports, what="power block",
                                 error=lambda m: InstrumentReplyError(m, instrument=self.name, address=self.address,
                                                                      command=command))

    def close(self) -> None:
        """The frame owns the connection; close the :class:`Keysight8164B`."""
        log.debug("%s: close() on a view does nothing", self.name)


class Keysight8164B(ScpiInstrument):
    """The 8164B frame: owns the connection, identifies the modules, offers ``laser`` and ``power_meter``."""

    label: ClassVar[str] = "8164B"
    #: Closing the frame switches its laser off first (a frame used without the bench is left safe).
    safe_on_close: ClassVar[bool] = True
    #: How long connect waits for ``:READ1:POW:ALL:CONF?`` before treating the frame as older firmware, s.
    conf_probe_timeout_s: ClassVar[float] = 3.0
    #: LF both ways; old power modules are slow to answer and ``*OPC?`` waits for wavelength moves.
    line_settings: ClassVar[TransportSettings] = TransportSettings(timeout_s=10.0)

    laser: Keysight8164BLaser | None
    power_meter: Keysight8164BPowerMeter
    modules: dict[int, Identity]

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None, pin: str = DEFAULT_PIN,
                 poll_interval_s: float | None = None,
                 output_settle_s: float | None = None) -> None:
        super().__init__(resource, resource_manager=resource_manager, name=name, timeout_s=timeout_s,
                         clock=clock)
        self.identity_at_connect = self.connect_or_close(resource, lambda: self._connect(pin))
        for view in (self.laser, self.power_meter):
            if view is not None and poll_interval_s is not None:
                view.poll_interval_s = poll_interval_s
        if self.laser is not None and output_settle_s is not None:
            self.laser.output_settle_s = output_settle_s

    def _connect(self, pin: str) -> Identity:
        identity = self.expect_model(MAINFRAME_MODELS, "an 8164B")
        self.clear_status()
        self.modules = {slot: self.slot_identity(slot) for slot in SLOTS if not self.slot_empty(slot)}
        self.laser = Keysight8164BLaser(self) if LASER_SLOT in self.modules else None
        if self.laser is not None:
            self.laser.prepare_laser(pin)
        order, read_all = self._power_channels()
        sensors = [Keysight81634BSensor(self, slot, channel) for slot, channel in order]
        self.power_meter = Keysight8164BPowerMeter(self, sensors, read_all_supported=read_all)
        with self.transport.transaction():
            for sensor in sensors:
                sensor.unit_watt = True
            for sensor in sensors:
                sensor.refresh_averaging_time()
        self.check_errors()
        log.info("%s: %s; modules %s", self.name, identity,
                 {slot: module.model for slot, module in self.modules.items()})
        return identity

    def slot_empty(self, slot: int) -> bool:
        """``:SLOT<n>:EMPT?``: 1 when the slot holds no module."""
        return self.query_parsed(SLOT_EMPTY_QUERY.format(slot=self._slot(slot)), parse_bool)

    def slot_identity(self, slot: int) -> Identity:
        """``:SLOT<n>:IDN?``: maker, model (e.g. 81634B), serial, firmware of the module in ``slot``."""
        return self.query_parsed(SLOT_IDENTITY_QUERY.format(slot=self._slot(slot)), parse_idn)

    def _slot(self, slot: int) -> int:
        if isinstance(slot, bool) or not isinstance(slot, int) or slot not in SLOTS:
            raise LimitError(f"{self.name}: slot {slot!r} is not one of {list(SLOTS)}")
        return slot

    def _power_channels(self) -> tuple[list[tuple[int, int]], bool]:
        """(slot, channel) of every power channel and whether the all-channel queries exist (module docstring)."""
        front = {slot: module for slot, module in self.modules.items() if slot != LASER_SLOT}
        if not front:
            return [], False
        try:
            with self.transport.timeout_for(self.conf_probe_timeout_s):
                return self.power_channel_order(retries=0), True
        except InstrumentTimeout as exc:
            log.warning("%s: %s not answered (%s): firmware before v3.0x? Reading power channels one by one",
                        self.name, POWER_ALL_ORDER_QUERY, exc.detail)
            self.clear_status()  # the unknown query left -113 in the error queue
        order: list[tuple[int, int]] = []
        for slot, module in sorted(front.items()):
            channels = SENSOR_CHANNELS.get(module.model)
            if channels is None:
                log.warning("%s: slot %d holds %s, not a known power sensor; not used", self.name, slot,
                            module.model)
                continue
            order += [(slot, channel) for channel in range(1, channels + 1)]
        return order, False

    def power_channel_order(self, retries: int | None = None) -> list[tuple[int, int]]:
        """``:READ1:POW:ALL:CONF?``: the (slot, channel) of each value of ``:READ1:POW:ALL?``, in order."""
        command = POWER_ALL_ORDER_QUERY
        raw = self.transport.query_binary(command, "H", retries=retries)

        def bad(message: str) -> InstrumentReplyError:
            return InstrumentReplyError(message, instrument=self.name, address=self.address, command=command)

        if raw.size % 2:
            raise bad(f"expected (slot, channel) pairs, got {raw.size} uint16 values")
        pairs = [(int(s), int(c)) for s, c in raw.reshape(-1, 2)]
        for slot, channel in pairs:
            if slot not in SLOTS[1:] or channel not in (1, 2):
                raise bad(f"(slot {slot}, channel {channel}) is not a front-slot power channel")
            if slot not in self.modules:
                raise bad(f"slot {slot} is listed as a power channel but :SLOT{slot}:EMPT? said empty")
        if len(set(pairs)) != len(pairs):
            raise bad(f"duplicate channels in {pairs}")
        return pairs

    def safe_state(self) -> None:
        """Laser output off (and read back); the power sensors have nothing to switch off."""
        if self.laser is not None:
            self.laser.safe_state()

    def _snapshot_extra(self) -> dict[str, Any]:
        return {
            "modules": {str(slot): str(module) for slot, module in self.modules.items()},
            "laser": None if self.laser is None else self.laser.snapshot(),
            "power_channels": [{"slot": s.slot, "channel": s.channel, "settings": s.read_settings()}
                               for s in self.power_meter.sensors],  # type: ignore[attr-defined]
            "read_all_supported": self.power_meter.read_all_supported,
        }
