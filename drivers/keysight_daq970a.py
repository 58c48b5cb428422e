"""Keysight DAQ970A / DAQ973A and 34970A / 34972A data acquisition units as a scanning DC voltmeter.

Why this instrument: on benches with on-chip photodiodes, each photocurrent (here: each bank's balanced current)
goes through a transimpedance amplifier (TIA) into one channel of a multiplexed DMM. One scan reads every channel
in one transaction; the bank readout (:class:`labctl.bench.readout.AdcBanks`) turns volts back into amps with the
per-channel TIA gain and offset of the bench file.

Connection: LAN (VXI-11 ``TCPIP0::<ip>::inst0::INSTR``), USB-TMC or GPIB (34970A: GPIB or RS-232), LF terminators.
Channel numbers are ``<slot><channel>``: 101..140 for slot 1, 201.. for slot 2, 301.. for slot 3.

Command spellings and where each is confirmed ([M] manual page, [D] public code, [?] not confirmed):

* ``*IDN?`` -> ``Keysight Technologies,DAQ970A,<sn>,<fw>`` / ``HEWLETT-PACKARD,34970A,0,13-2-2`` /
  ``Agilent Technologies,34972A,...``  [D: public identity checks quoting these strings]
* ``CONF:VOLT:DC <range>,(@<ch_list>)``: DC volts on the listed channels, range in volts, resolution left at its
  default (the range-only form, as in a public 34970A example ``Conf:volt:DC Auto,(@101)``). CONFigure also
  replaces the scan list and switches off the units/time/channel/alarm fields of the readings, so ``READ?``
  answers bare numbers.  [M: 34970A/34972A User's Guide "Reading format" and "To build a scan list"; D]
* ``VOLT:DC:NPLC <plc>,(@<ch_list>)``: integration time in power-line cycles, one of 0.02, 0.2, 1, 2, 10, 20,
  100, 200.  [M: 34970A/34972A User's Guide "Custom A/D integration time"; D: public drivers send
  ``SENS:VOLT:DC:NPLC <n>,(@<ch>)``]
* ``VOLT:DC:APER <s>,(@<ch_list>)``: integration time in seconds (aperture mode; 34970A: 400 us..4 s in 10 us
  steps [M User's Guide]; DAQ970A: 200 us..1 s in 2 us steps, sending it enables aperture mode [M DAQ970A
  Programming Guide, documented there for CURRent and RESistance]). The VOLTage spelling itself is [?]: used only
  when the bench asks for ``integration = "aperture"``.
* ``ROUT:SCAN (@<ch_list>)``, ``ROUT:SCAN:SIZE?`` -> ``+4``.  [M: 34970A User's Guide ch. 5; DAQ970A Programming
  Guide p.215]
* ``TRIG:SOUR IMM``, ``TRIG:COUN 1``: one sweep through the scan list per ``READ?``/``INIT``.  [M: TRIGger:SOURce
  {BUS|IMMediate|EXTernal|ALARm|TIMer}; D: public DAQ970A workflow ``TRIG:COUN 10``]. The reply format of
  ``TRIG:COUN?`` is [?] (parsed as any number that is an integer).
* ``READ?`` (= ``INIT`` then ``FETC?``): runs one scan and answers the readings, comma separated, in scan order.
  Channels are scanned in ascending channel order, so the driver sorts its list and maps the replies back.
  [M: 34970A User's Guide "To initiate a scan, execute MEASure?, READ? or INITiate ... FETCh? to retrieve"]
* Overload: a reading beyond the range reads ``+/-9.9E+37``.  [M: 34980A reference, same DMM family] The driver
  raises naming the channel rather than returning a number.
* ``SYST:ERR?`` -> ``+0,"No error"``.  [D: public 34970A driver reads ``SYST:ERR?`` until code 0]

The timeout must cover a whole scan: the driver refuses an integration time whose scan would take more than 80 %
of the transport timeout (at an assumed worst-case ``CHANNEL_OVERHEAD_S`` per channel for the relay switching and
automatic channel delay), and says which option to raise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from labctl.drivers.clock import Clock
from labctl.drivers.errors import InstrumentReplyError, LimitError
from labctl.drivers.instrument import ScpiInstrument, Setting
from labctl.drivers.parsing import Identity, parse_float, parse_int
from labctl.drivers.transport import BaseTransport, TransportSettings
from labctl.drivers.validators import IntRange

log = logging.getLogger(__name__)

IDN_QUERY = "*IDN?"
CONFIGURE_VOLTAGE = "CONF:VOLT:DC {range},(@{channels})"
NPLC_SET = "VOLT:DC:NPLC {nplc},(@{channels})"
APERTURE_SET = "VOLT:DC:APER {aperture},(@{channels})"
SCAN_LIST_SET = "ROUT:SCAN (@{channels})"
SCAN_SIZE_QUERY = "ROUT:SCAN:SIZE?"
READ_QUERY = "READ?"
INITIATE = "INIT"
FETCH_QUERY = "FETC?"

#: Integration times the DMM accepts in power-line cycles, with the resolution (x range) and bits of each
#: (34970A/34972A User's Guide, "Custom A/D integration time"; the DAQ970A lists the same PLC values).
NPLC_RESOLUTION: dict[float, tuple[float, int]] = {
    0.02: (1e-4, 15), 0.2: (1e-5, 18), 1.0: (3e-6, 20), 2.0: (2.2e-6, 21),
    10.0: (1e-6, 24), 20.0: (8e-7, 25), 100.0: (3e-7, 26), 200.0: (2.2e-7, 26),
}
NPLC_VALUES: tuple[float, ...] = tuple(sorted(NPLC_RESOLUTION))
#: DC voltage ranges, V (100 mV .. 300 V); readings are valid up to 120 % of the range [?: 20 % over-range].
RANGES_V: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 300.0)
OVER_RANGE_FRACTION = 1.2
#: Overload reply (+/-9.9E+37); anything at or beyond this magnitude is an overload, not a reading.
OVERLOAD_THRESHOLD_V = 9.0e37
#: Channel numbers within a slot (the largest multiplexer, the 34908A, has 40 channels).
CHANNELS_PER_SLOT = 40
#: Assumed worst-case time per channel on top of the integration (armature relay switching and the automatic
#: channel delay), used only to check that a scan fits in the reply timeout. Not a data-sheet figure.
CHANNEL_OVERHEAD_S = 0.02


@dataclass(frozen=True)
class DaqModel:
    """What differs between the supported mainframes."""

    slots: int
    aperture_range_s: tuple[float, float]
    aperture_step_s: float


#: Models this driver accepts (``*IDN?`` field 2).
MODELS: dict[str, DaqModel] = {
    "DAQ970A": DaqModel(3, (200e-6, 1.0), 2e-6),
    "DAQ973A": DaqModel(3, (200e-6, 1.0), 2e-6),
    "34970A": DaqModel(3, (400e-6, 4.0), 10e-6),
    "34972A": DaqModel(3, (400e-6, 4.0), 10e-6),
}

Integration = Literal["nplc", "aperture"]


def channel_list(channels: Sequence[int]) -> str:
    """SCPI channel list text for ascending distinct channels: runs as ``a:b``, others comma separated."""
    parts: list[str] = []
    values = list(channels)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if j == i else f"{values[i]}:{values[j]}")
        i = j + 1
    return ",".join(parts)


def parse_channel_list(text: str) -> list[int]:
    """The channels of a ``101:104,201`` list (the inverse of :func:`channel_list`, in the given order)."""
    out: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition(":")
        lo, hi = int(first), int(last or first)
        if hi < lo:
            raise ValueError(f"descending range {part!r}")
        out.extend(range(lo, hi + 1))
    return out


def _parse_integer_number(text: str) -> int:
    value = parse_float(text)
    if not float(value).is_integer():
        raise ValueError(f"expected an integer count, got {text!r}")
    return int(value)


class KeysightDAQ970A(ScpiInstrument):
    """A DAQ970A-class unit as a :class:`~labctl.drivers.interfaces.ScanningVoltmeter` (DC volts per channel)."""

    label: ClassVar[str] = "DAQ970A"
    line_settings: ClassVar[TransportSettings] = TransportSettings(timeout_s=10.0)
    error_query: ClassVar[str] = ":SYST:ERR?"

    trigger_source = Setting("TRIG:SOUR?", "TRIG:SOUR {value}", "What starts a sweep through the scan list.",
                             mapping={"immediate": "IMM", "bus": "BUS", "external": "EXT", "timer": "TIM"},
                             default="immediate")
    trigger_count = Setting("TRIG:COUN?", "TRIG:COUN {value:d}", "Sweeps through the scan list per READ?/INIT.",
                            parse=_parse_integer_number, validator=IntRange(1, 50000), reply="{:+.8E}",
                            default=1)

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None, range_v: float = 10.0,
                 integration: Integration = "nplc",
                 line_frequency_hz: float = 50.0) -> None:
        if range_v not in RANGES_V:
            raise LimitError(f"{name or self.label}.range_v: {range_v!r} V is not one of {list(RANGES_V)}")
        if integration not in ("nplc", "aperture"):
            raise LimitError(f"{name or self.label}.integration: {integration!r} is not 'nplc' or 'aperture'")
        if line_frequency_hz not in (50.0, 60.0):
            raise LimitError(f"{name or self.label}.line_frequency_hz: {line_frequency_hz!r} is not 50 or 60")
        super().__init__(resource, resource_manager=resource_manager, name=name, timeout_s=timeout_s,
                         clock=clock)
        #: DC range of every scanned channel, V (a fixed range: autoranging would cost time on every channel).
        self.range_v = float(range_v)
        self.integration: Integration = integration
        #: Mains frequency the NPLC integration time counts in (the unit measures it at power-on; give the same).
        self.line_frequency_hz = float(line_frequency_hz)
        #: Scanned channels in instrument (ascending) order, and the caller's order as indices into it.
        self.channels: tuple[int, ...] = ()
        self._order = np.zeros(0, dtype=int)
        self.integration_time_s: float | None = None
        self.identity_at_connect = self.connect_or_close(resource, self._connect)

    def _connect(self) -> Identity:
        identity = self.expect_model(MODELS)
        self.model = identity.model
        self.spec = MODELS[identity.model]
        self.clear_status()
        self.check_errors()
        log.info("%s: %s", self.name, identity)
        return identity

    # -- scan list ------------------------------------------------------------------------------------------------
    def _check_channels(self, channels: Sequence[int]) -> list[int]:
        values: list[int] = []
        for ch in channels:
            if isinstance(ch, bool) or not isinstance(ch, (int, np.integer)):
                raise LimitError(f"{self.name}.channels: {ch!r} is not a channel number")
            slot, number = divmod(int(ch), 100)
            if not (1 <= slot <= self.spec.slots and 1 <= number <= CHANNELS_PER_SLOT):
                raise LimitError(f"{self.name}.channels: {ch} is not a channel (slot 1..{self.spec.slots}, "
                                 f"channel 01..{CHANNELS_PER_SLOT}: 101..{self.spec.slots}{CHANNELS_PER_SLOT})")
            values.append(int(ch))
        if not values:
            raise LimitError(f"{self.name}.channels: at least one channel is needed")
        if len(set(values)) != len(values):
            raise LimitError(f"{self.name}.channels: {values} lists a channel twice")
        return values

    def configure_scan(self, channels: Sequence[int]) -> None:
        """DC volts at ``range_v`` on ``channels``, which become the scan list; one sweep per read.

        Readings come back in the order of ``channels`` whatever order the instrument scans them in.
        """
        wanted = self._check_channels(channels)
        ordered = sorted(wanted)
        text = channel_list(ordered)
        with self.transport.transaction():
            self.write(CONFIGURE_VOLTAGE.format(range=f"{self.range_v:g}", channels=text))
            self.write(SCAN_LIST_SET.format(channels=text))
            self.trigger_source = "immediate"
            self.trigger_count = 1
            size = self.query_parsed(SCAN_SIZE_QUERY, parse_int)
        if size != len(ordered):
            raise InstrumentReplyError(f"scan list holds {size} channels, expected {len(ordered)} ({text}); "
                                       "is a multiplexer module missing from a slot?", instrument=self.name,
                                       address=self.address, command=SCAN_SIZE_QUERY)
        self.check_errors()
        self.channels = tuple(ordered)
        self._order = np.array([ordered.index(ch) for ch in wanted], dtype=int)
        self.integration_time_s = 1.0 / self.line_frequency_hz  # CONFigure sets 1 PLC
        log.info("%s: scanning %s at the %g V range", self.name, text, self.range_v)

    # -- integration time -----------------------------------------------------------------------------------------
    def integration_for(self, time_s: float) -> tuple[Integration, float, float]:
        """(mode, value sent, integration time in s) for at least ``time_s`` of integration; refuses times
        below the shortest or above the longest integration, and scans that would outlast the reply timeout."""
        what = f"{self.name}.integration_time_s"
        try:
            t = float(time_s)
        except (TypeError, ValueError):
            raise LimitError(f"{what}: {time_s!r} is not a number") from None
        if not (math.isfinite(t) and t > 0):
            raise LimitError(f"{what}: {time_s!r} s must be positive")
        if not self.channels:
            raise LimitError(f"{self.name}: configure_scan() first")
        if self.integration == "nplc":
            wanted = t * self.line_frequency_hz
            fits = [n for n in NPLC_VALUES if n >= wanted * (1 - 1e-9)]
            if wanted < NPLC_VALUES[0] * (1 - 1e-9) or not fits:
                raise LimitError(f"{what}: {t:g} s is outside {NPLC_VALUES[0]:g}..{NPLC_VALUES[-1]:g} PLC at "
                                 f"{self.line_frequency_hz:g} Hz ({NPLC_VALUES[0] / self.line_frequency_hz:g}.."
                                 f"{NPLC_VALUES[-1] / self.line_frequency_hz:g} s)")
            value = fits[0]
            actual = value / self.line_frequency_hz
        else:
            lo, hi = self.spec.aperture_range_s
            step = self.spec.aperture_step_s
            value = round(t / step) * step
            if not lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9):
                raise LimitError(f"{what}: {t:g} s is outside the {self.model} aperture {lo:g}..{hi:g} s")
            actual = value
        scan_s = len(self.channels) * (actual + CHANNEL_OVERHEAD_S)
        if scan_s > 0.8 * self.transport.settings.timeout_s:
            raise LimitError(f"{what}: a scan of {len(self.channels)} channels at {actual:g} s would take about "
                             f"{scan_s:.3g} s, beyond the {self.transport.settings.timeout_s:g} s reply timeout; "
                             "open with a longer timeout_s")
        return self.integration, value, actual

    def set_integration_time_s(self, time_s: float) -> float:
        """Integrate every scanned channel for at least ``time_s`` (the next NPLC value, or the aperture rounded
        to its step); returns the integration time actually set, s."""
        mode, value, actual = self.integration_for(time_s)
        text = channel_list(self.channels)
        if mode == "nplc":
            self.write(NPLC_SET.format(nplc=f"{value:g}", channels=text))
        else:
            self.write(APERTURE_SET.format(aperture=f"{value:.6E}", channels=text))
        self.integration_time_s = actual
        if not math.isclose(actual, float(time_s), rel_tol=1e-6):
            log.info("%s: integration %.4g s for the requested %.4g s", self.name, actual, float(time_s))
        return actual

    # -- readings -------------------------------------------------------------------------------------------------
    def _parse_scan(self, command: str) -> Any:
        channels = self.channels

        def parse(text: str) -> np.ndarray:
            fields = text.strip().split(",")
            if len(fields) != len(channels):
                raise ValueError(f"expected {len(channels)} readings (channels {channel_list(channels)}), "
                                 f"got {len(fields)}")
            values = np.empty(len(fields))
            for k, field in enumerate(fields):
                token = field.strip()
                try:
                    number = float(token)
                except ValueError:
                    raise ValueError(f"channel {channels[k]}: {token!r} is not a number") from None
                if abs(number) >= OVERLOAD_THRESHOLD_V:
                    raise ValueError(f"channel {channels[k]} overload ({token}): beyond the {self.range_v:g} V "
                                     "range (TIA output too large?)")
                values[k] = parse_float(token)
                if abs(values[k]) > OVER_RANGE_FRACTION * self.range_v:
                    raise ValueError(f"channel {channels[k]}: {values[k]:g} V is beyond the {self.range_v:g} V range")
            return values

        return parse

    def read_scan_v(self) -> np.ndarray:
        """One sweep through the scan list (``READ?``): volts in the order given to :meth:`configure_scan`."""
        if not self.channels:
            raise LimitError(f"{self.name}: configure_scan() first")
        reply = self.query(READ_QUERY)
        return self.parse_reply(READ_QUERY, reply, self._parse_scan(READ_QUERY))[self._order]

    def start_scan(self) -> None:
        """Start one sweep (``INIT``); readings go to the reading memory for :meth:`fetch_scan_v`."""
        if not self.channels:
            raise LimitError(f"{self.name}: configure_scan() first")
        self.write(INITIATE)

    def fetch_scan_v(self) -> np.ndarray:
        """The readings of the last sweep (``FETC?`` waits for it to finish), in :meth:`configure_scan` order."""
        reply = self.query(FETCH_QUERY)
        return self.parse_reply(FETCH_QUERY, reply, self._parse_scan(FETCH_QUERY))[self._order]
