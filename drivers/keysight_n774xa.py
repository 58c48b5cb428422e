"""Keysight N7744A (4 ports) / N7745A (8 ports) multiport optical power meter (instruments.md §2.1, §4).

LAN (VXI-11 ``TCPIP0::<ip>::inst0::INSTR``) or USB-TMC, LF terminator. Port n = 1..4 or 1..8 is the
``SENS<n>``/``READ<n>``/``FETC<n>``/``TRIG<n>``/``INIT<n>`` suffix; there is no ``CHAN`` level. The sensor
commands and the logging function are the Keysight power-sensor tree in :mod:`labctl.drivers.keysight_sweep`.

Connect: ``*IDN?`` (model gives the port count), ``*CLS``, then per port ``:SENS<n>:POW:UNIT 1`` (readings and
logged data in watts), ``:INIT<n>:CONT 1`` (so that the all-port fetch returns fresh values) and
``:SENS<n>:POW:ATIM?`` (the averaging time bounds how long a reading may take), then ``:SYST:ERR?`` must be clean.
Interface ports are 0-based: interface port p is instrument port p + 1.

Every port in one transaction (``read_all``):

* ``"csv"`` (default): ``:FETC:POW:ALL:CSV?``, the short form of ``:FETCh:POWer:ALL:CSV?`` that public code sends to
  the N774x ([D] two public lab scripts reading an 8-port Keysight multiport meter with
  ``fetch:power:all:csv?`` / ``FETCh:POWer:ALL:CSV?`` and splitting the reply on commas). The reply is ASCII, one
  number per port; the values are taken in the unit set at connect (W) [?: the guide excerpt consulted does not
  state the CSV unit];
* ``"binary"``: ``:FETC:POW:ALL?``, a float32 little-endian block (autosweep's ``KeysightN7745C.fetch_power_all``
  sends it; its own comment doubts the guide's "always W"). Kept as an option: not confirmed by the guide excerpts
  consulted [?].
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np
from labctl.drivers.clock import Clock
from labctl.drivers.errors import InstrumentError, LimitError
from labctl.drivers.instrument import ScpiInstrument, Setting
from labctl.drivers.keysight_sweep import (
    KeysightPowerSensor,
    KeysightSensorReadout,
    check_power_array,
)
from labctl.drivers.parsing import Identity, in_range, parse_float, parse_float_list
from labctl.drivers.transport import BaseTransport, TransportSettings
from labctl.drivers.validators import OneOf, Range

log = logging.getLogger(__name__)

#: Port count per model (``*IDN?`` field 2); the C versions share the command set.
PORTS_BY_MODEL: dict[str, int] = {"N7744A": 4, "N7745A": 8, "N7744C": 4, "N7745C": 8}

#: ``:FETC:POW:ALL:CSV?``: every port's last value as comma-separated ASCII, ordered by port (module docstring).
FETCH_ALL_CSV_QUERY = ":FETC:POW:ALL:CSV?"
#: ``:FETC:POW:ALL?``: one float32 little-endian value per port, ordered by port [?] (module docstring).
FETCH_ALL_QUERY = ":FETC:POW:ALL?"
READ_ALL_MODES = ("csv", "binary")
#: ``:READ:POW:ALL?``: a fresh, self-triggered measurement on every port, answered as one float32 little-endian block
#: in W ([M] instruments.md §2.1, N774xC programming guide: ``:FETC:POW:ALL?`` / ``:READ:POW:ALL?``). The meter
#: starts measuring when the query arrives, so the host may send it, talk to other instruments while the meter
#: averages and answers, and read the block afterwards (:meth:`KeysightN774xA.start_read_all`).
READ_ALL_QUERY = ":READ:POW:ALL?"

#: Fixed power ranges in dBm (10 dB steps).
RANGES_DBM = (10, 0, -10, -20, -30)


class KeysightN774xPort(KeysightPowerSensor):
    """One N774x port; ``{ch}`` is the port number 1..8."""

    wavelength_m = Setting(
        ":SENS{ch}:POW:WAV?", ":SENS{ch}:POW:WAV {value:.8E}",
        "Calibration wavelength in metres (sent without suffix).",
        parse=in_range(parse_float, 1.25e-6, 1.65e-6), validator=Range(1.25e-6, 1.65e-6, " m"), reply="{:+.8E}",
        default=1.55e-6, unit="m")
    averaging_time_s = Setting(
        ":SENS{ch}:POW:ATIM?", ":SENS{ch}:POW:ATIM {value:.6E}",
        "Averaging time in seconds (logging runs at one sample per averaging time).",
        parse=in_range(parse_float, 1e-6, 10.0), validator=Range(1e-6, 10.0, " s"), reply="{:+.6E}",
        default=1e-4, unit="s")
    range_dbm = Setting(
        ":SENS{ch}:POW:RANG?", ":SENS{ch}:POW:RANG {value:.0f}DBM",
        "Fixed power range in dBm (10 dB steps); the query always answers in dBm.",
        parse=in_range(parse_float, min(RANGES_DBM), max(RANGES_DBM)), validator=OneOf(RANGES_DBM),
        reply="{:+.6E}", default=0, unit="dBm")


class KeysightN774xA(KeysightSensorReadout, ScpiInstrument):
    """N7744A/N7745A as a :class:`~labctl.drivers.interfaces.PowerReadout` (interface port p = instrument port p+1)."""

    label: ClassVar[str] = "N774xA"
    line_settings: ClassVar[TransportSettings] = TransportSettings(timeout_s=10.0)

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None, poll_interval_s: float | None = None,
                 read_all: Literal["csv", "binary"] = "csv") -> None:
        if read_all not in READ_ALL_MODES:
            raise ValueError(f"read_all must be one of {READ_ALL_MODES}, got {read_all!r}")
        self.read_all_mode = read_all
        self._read_pending = False
        self._continuous = True     # set at connect
        super().__init__(resource, resource_manager=resource_manager, name=name, timeout_s=timeout_s,
                         clock=clock)
        if poll_interval_s is not None:
            self.poll_interval_s = poll_interval_s
        self.identity_at_connect = self.connect_or_close(resource, self._connect)

    def _connect(self) -> Identity:
        identity = self.expect_model(PORTS_BY_MODEL)
        self.model = identity.model
        self.sensors = [KeysightN774xPort(self, n) for n in range(1, PORTS_BY_MODEL[identity.model] + 1)]
        self.clear_status()
        with self.transport.transaction():
            for port in self.sensors:
                port.unit_watt = True
            for port in self.sensors:
                port.continuous = True
            for port in self.sensors:
                port.refresh_averaging_time()
        self.check_errors()
        log.info("%s: %s with %d ports", self.name, identity, self.n_ports)
        return identity

    def port(self, number: int) -> KeysightN774xPort:
        """The instrument's port ``number`` (1-based, as on the front panel)."""
        if not 1 <= number <= self.n_ports:
            raise LimitError(f"{self.name}: port number {number!r} is not one of 1..{self.n_ports}")
        sensor = self.sensors[number - 1]
        assert isinstance(sensor, KeysightN774xPort)
        return sensor

    def read_all_w(self) -> np.ndarray:
        """Every port's last reading in watts, one transaction, ordered by port (``read_all`` chooses the
        spelling: ``:FETC:POW:ALL:CSV?`` or ``:FETC:POW:ALL?``)."""
        self._set_continuous(True)
        with self.transport.timeout_for(self.reading_timeout_s()):
            if self.read_all_mode == "csv":
                command = FETCH_ALL_CSV_QUERY
                values = np.array(self.query_parsed(command, parse_float_list))
            else:
                command = FETCH_ALL_QUERY
                values = self.transport.query_binary(command, "f")
        return check_power_array(values, expected=self.n_ports, what="power reply",
                                 error=lambda m: self._reply_error(m, command))

    def start_read_all(self) -> None:
        """Send ``:READ:POW:ALL?`` and return at once: every port starts one averaging-time measurement now.

        The reply (one float32 LE block in W) waits in the meter's output queue until :meth:`finish_read_all`;
        meanwhile the host may talk to other instruments (a heater driver on its serial line), but to no other
        instrument on this meter's bus and not to this meter. At most one reading is outstanding."""
        if self._read_pending:
            raise InstrumentError("a reading is already outstanding (finish_read_all first)", instrument=self.name,
                                  address=self.address, command=READ_ALL_QUERY)
        self._set_continuous(False)
        self.transport.write(READ_ALL_QUERY)
        self._read_pending = True

    def _set_continuous(self, on: bool) -> None:
        """``:INIT<n>:CONT 0|1`` on every port where it differs. With continuous triggering off, ``:READ`` is a
        software trigger followed by a fetch, i.e. a measurement that starts when the query arrives; with it on,
        ``:READ`` equals ``:FETC`` (the last completed measurement) and the all-port fetch returns fresh values
        (816x/N77xx programming guides, ``:READ...POW?`` description [M])."""
        if self._continuous == on:
            return
        with self.transport.transaction():
            for port in self.sensors:
                port.continuous = on
        self._continuous = on

    def finish_read_all(self) -> np.ndarray:
        """The block that answers :meth:`start_read_all`: every port in W, ordered by port."""
        if not self._read_pending:
            raise InstrumentError("no reading outstanding (start_read_all first)", instrument=self.name,
                                  address=self.address, command=READ_ALL_QUERY)
        self._read_pending = False
        with self.transport.timeout_for(self.reading_timeout_s()):
            values = self.transport.read_binary("f", command=READ_ALL_QUERY)
        return check_power_array(values, expected=self.n_ports, what="power reply",
                                 error=lambda m: self._reply_error(m, READ_ALL_QUERY))

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"read_all": self.read_all_mode, "ports": self.snapshot_ports()}
