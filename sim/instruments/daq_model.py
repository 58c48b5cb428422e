"""Physics model of a Keysight DAQ970A-class unit reading the bank photodiodes' transimpedance amplifiers.

Why a model: the YAML knows only fixed replies; here a scan reads the chip. Channel ``ch`` carries the TIA output
of bank ``channels[ch].bank``: ``V = gain_v_per_a * I_balanced + offset_v`` (the TIA gain and offset of the bench
file), and the DMM reads V with its own noise and resolution. Channels in the scan list that no bank is wired to
read the DMM noise around 0 V. The instrument speaks SCPI through the DAQ970A command tree
(:mod:`labctl.sim.scpi.trees.keysight_daq970a`); ``TRIG:SOUR``/``TRIG:COUN`` are plain state with the power-on values
and reply formats of the driver's declarations.

Measurement model (modelled, not measured: the choices where the manual gives no number):

* Integration time: NPLC / line frequency (``line_frequency_hz``, 50 Hz unless the bench says otherwise), or the
  aperture. The photocurrent is the chip's balanced detector current averaged over that time (its shot and TIA
  input noise scale with it, ``chip.read_balanced_current_a``).
* ADC noise: Gaussian with rms = the manual's resolution at that integration time times the range (34970A/34972A
  User's Guide table: 1e-4 x range at 0.02 PLC down to 2.2e-7 x range at 200 PLC; an aperture gets the entry of the
  largest listed PLC value it reaches), then quantized to the table's bit count over +-range. Offset and gain
  errors of the DMM itself and autozero are not modelled.
* Over-range: readings beyond 120 % of the range read ``+-9.9E+37`` (overload) [?: 20 % over-range assumed].
* Timing: a sweep through the scan list costs, per channel, ``channel_overhead_s`` (relay switching and channel
  delay: 10 ms by default, an assumption of an armature multiplexer, not a data-sheet figure) plus the integration
  time, charged to the virtual clock in category ``scpi``, on top of the message latency. The chip is read once per
  sweep, at the end of the first channel's integration: the milliseconds between channels matter neither to heater
  settling (finished before a reading) nor to drift (minutes).
* Channels: slot 1 holds a 20-channel multiplexer (101..120) unless ``installed`` says otherwise; a channel outside
  the installed modules queues ``-221,"Settings conflict"`` [?: the real text may differ] and changes nothing; a
  channel list that is not ``@<ch>[:<ch>][,...]`` queues ``-103,"Invalid separator"``. An
  NPLC value outside the list or an aperture outside the model's range queues ``-222,"Data out of range"``.
  ``READ?``/``FETC?`` with an empty scan list (or ``FETC?`` before any ``INIT``) queue ``-221`` and answer nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from labctl.drivers.keysight_daq970a import (
    MODELS,
    NPLC_RESOLUTION,
    NPLC_VALUES,
    OVER_RANGE_FRACTION,
    RANGES_V,
    KeysightDAQ970A,
    parse_channel_list,
)
from labctl.sim.device_model import Reply
from labctl.sim.instruments import ModelEntry
from labctl.sim.scpi.errors import (
    DATA_OUT_OF_RANGE,
    INVALID_SEPARATOR,
    SETTINGS_CONFLICT,
    ScpiError,
)
from labctl.sim.scpi.model import ScpiModel, handles
from labctl.sim.scpi.parser import Parsed
from labctl.sim.scpi.trees import keysight_daq970a

log = logging.getLogger(__name__)

DEFAULT_LINE_FREQUENCY_HZ = 50.0
DEFAULT_CHANNEL_OVERHEAD_S = 10e-3
OVERLOAD_REPLY_V = 9.9e37
DEFAULT_INSTALLED = tuple(range(101, 121))


@dataclass(frozen=True)
class TiaChannel:
    """The TIA on one DAQ channel: which bank's balanced photodiode it reads, its gain (V/A) and offset (V)."""

    bank: int
    gain_v_per_a: float
    offset_v: float = 0.0


def daq_reading_v(volts: np.ndarray, range_v: float | np.ndarray, nplc: float | np.ndarray,
                  normals: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(reading V, overload mask) of the DMM for true input ``volts`` at ``nplc`` line cycles of integration
    (``range_v`` and ``nplc`` broadcast against ``volts``).

    ``normals`` (standard normals shaped like ``volts``) gives the noise; None reads noise-free. Shared by the
    instrument model and the photonic fast path, so that both read with one measurement model.
    """
    keys = np.array(NPLC_VALUES)
    table = np.array([NPLC_RESOLUTION[k] for k in NPLC_VALUES])           # (resolution x range, bits)
    index = np.clip(np.searchsorted(keys, np.asarray(nplc, dtype=float) * (1 + 1e-9), side="right") - 1,
                    0, keys.size - 1)
    resolution, bits = table[index, 0], table[index, 1]
    r = np.asarray(range_v, dtype=float)
    v = np.asarray(volts, dtype=float)
    if normals is not None:
        v = v + resolution * r * normals
    lsb = 2.0 * r / 2.0**bits
    reading = np.round(v / lsb) * lsb
    overload = np.abs(v) > OVER_RANGE_FRACTION * r
    return reading, overload


class DAQ970AModel(ScpiModel):
    """A DAQ970A-class DMM scanning the TIA outputs of the banks' balanced photodiodes."""

    category = "scpi"
    tree = keysight_daq970a.TREE
    plain = {
        "trigger_source": KeysightDAQ970A.trigger_source,
        "trigger_count": KeysightDAQ970A.trigger_count,
    }

    def __init__(self, name: str, channels: dict[int, TiaChannel] | None = None, *, model: str = "DAQ970A",
                 installed: Iterable[int] = DEFAULT_INSTALLED, line_frequency_hz: float = DEFAULT_LINE_FREQUENCY_HZ,
                 channel_overhead_s: float = DEFAULT_CHANNEL_OVERHEAD_S) -> None:
        super().__init__(name)
        if model not in MODELS:
            raise ValueError(f"{name}: model must be one of {list(MODELS)}, got {model!r}")
        if line_frequency_hz <= 0 or channel_overhead_s < 0:
            raise ValueError(f"{name}: line_frequency_hz must be > 0 and channel_overhead_s >= 0")
        self.spec = MODELS[model]
        self.wired = dict(channels or {})
        self.installed = frozenset(int(c) for c in installed)
        missing = sorted(set(self.wired) - self.installed)
        if missing:
            raise ValueError(f"{name}: channels {missing} are wired but not on an installed module")
        for ch, tia in self.wired.items():
            if not (math.isfinite(tia.gain_v_per_a) and tia.gain_v_per_a != 0 and math.isfinite(tia.offset_v)):
                raise ValueError(f"{name}: channel {ch}: TIA gain must be finite and non-zero, offset finite")
        self.line_frequency_hz = float(line_frequency_hz)
        self.channel_overhead_s = float(channel_overhead_s)
        self.range_v: dict[int, float] = {}
        self.integration_s: dict[int, float] = {}
        self.scan_list: list[int] = []
        self.memory: list[str] | None = None

    def attach(self, bench: object, profile: object) -> None:
        super().attach(bench, profile)
        bad = [ch for ch, tia in self.wired.items() if not 0 <= tia.bank < self.chip.n_banks]
        if bad:
            raise ValueError(f"{self.name}: channels {bad} read banks the chip does not have ({self.chip.n_banks})")

    def reset(self) -> None:
        super().reset()
        self.range_v.clear()
        self.integration_s.clear()
        self.scan_list = []
        self.memory = None

    # -- dispatch ------------------------------------------------------------------------------------------------
    @handles("query read")
    def _read_query(self, call: Parsed) -> Reply:
        return self._read()

    @handles("do initiate")
    def _initiate(self, call: Parsed) -> None:
        if self._check_scan():
            self.memory = self._sweeps()

    @handles("query fetch")
    def _fetch(self, call: Parsed) -> Reply:
        if self.memory is None:
            raise ScpiError(SETTINGS_CONFLICT, "FETC? before any INIT")
        return ",".join(self.memory)

    @handles("query scan_size")
    def _scan_size(self, call: Parsed) -> Reply:
        return f"{len(self.scan_list):+d}"

    @handles("do configure_dc_volts")
    def _configure_command(self, call: Parsed) -> None:
        self._configure(self._channels(call.args[1]), call.args[0])

    @handles("set nplc")
    def _nplc_command(self, call: Parsed) -> None:
        self._nplc(self._channels(call.args[1]), call.args[0])

    @handles("set aperture_s")
    def _aperture_command(self, call: Parsed) -> None:
        self._aperture(self._channels(call.args[1]), call.args[0])

    @handles("set scan_list")
    def _scan_list_command(self, call: Parsed) -> None:
        self._scan_list(self._channels(call.args[0]))

    @handles("query scan_list")
    def _scan_list_query(self, call: Parsed) -> Reply:
        return "(@" + ",".join(str(ch) for ch in self.scan_list) + ")"

    def _channels(self, text: str) -> list[int]:
        """The channels of a channel-list expression's inner text, e.g. ``@101:104,110``."""
        body = text.strip()
        try:
            if not body.startswith("@"):
                raise ValueError(body)
            channels = parse_channel_list(body[1:]) if body[1:].strip() else []
        except ValueError:
            raise ScpiError(INVALID_SEPARATOR, f"channel list {text!r}") from None
        if any(ch not in self.installed for ch in channels):
            raise ScpiError(SETTINGS_CONFLICT, f"channels {channels} not on an installed module")
        return channels

    # -- configuration commands ---------------------------------------------------------------------------------------
    def _configure(self, channels: list[int], range_value: object) -> None:
        range_v = float(range_value) if isinstance(range_value, float) else math.nan  # AUTO/MIN/MAX: not modelled
        if range_v not in RANGES_V:
            raise ScpiError(DATA_OUT_OF_RANGE, f"range {range_value!r} V is not one of {RANGES_V}")
        for ch in channels:
            self.range_v[ch] = range_v
            self.integration_s[ch] = 1.0 / self.line_frequency_hz  # CONFigure sets 1 PLC
        self.scan_list = sorted(set(channels))  # CONFigure redefines the scan list
        self.memory = None

    def _nplc(self, channels: list[int], nplc_value: object) -> None:
        nplc = float(nplc_value) if isinstance(nplc_value, float) else math.nan
        if not ch_ok(channels, self.range_v):
            raise ScpiError(SETTINGS_CONFLICT, "a channel without a measurement function")
        if not any(math.isclose(nplc, n) for n in NPLC_VALUES):
            raise ScpiError(DATA_OUT_OF_RANGE, f"NPLC {nplc_value!r} is not one of {NPLC_VALUES}")
        for ch in channels:
            self.integration_s[ch] = nplc / self.line_frequency_hz

    def _aperture(self, channels: list[int], aperture_value: object) -> None:
        lo, hi = self.spec.aperture_range_s
        aperture = float(aperture_value) if isinstance(aperture_value, float) else math.nan
        if not ch_ok(channels, self.range_v):
            raise ScpiError(SETTINGS_CONFLICT, "a channel without a measurement function")
        if not lo <= aperture <= hi:
            raise ScpiError(DATA_OUT_OF_RANGE, f"aperture {aperture_value!r} s outside {lo}..{hi} s")
        step = self.spec.aperture_step_s
        for ch in channels:
            self.integration_s[ch] = round(aperture / step) * step

    def _scan_list(self, channels: list[int]) -> None:
        if not ch_ok(channels, self.range_v):
            raise ScpiError(SETTINGS_CONFLICT, "a channel without a measurement function")
        self.scan_list = sorted(set(channels))  # sequential scanning: ascending order, duplicates dropped
        self.memory = None

    # -- scanning ---------------------------------------------------------------------------------------------------
    def _check_scan(self) -> bool:
        if not self.scan_list:
            raise ScpiError(SETTINGS_CONFLICT, "empty scan list")
        return True

    def _read(self) -> Reply:
        self._check_scan()
        self.memory = self._sweeps()
        return ",".join(self.memory)

    def _sweeps(self) -> list[str]:
        """``TRIG:COUN`` sweeps through the scan list; the clock moves between sweeps."""
        count = int(self.value("trigger_count"))
        out: list[str] = []
        for _ in range(count):
            out.extend(self._sweep())
        return out

    def _sweep(self) -> list[str]:
        chans = self.scan_list
        times = np.array([self.integration_s[ch] for ch in chans])
        ranges = np.array([self.range_v[ch] for ch in chans])
        clock = self.chip.clock
        clock.advance(self.channel_overhead_s + times[0], self.category)
        volts = np.zeros(len(chans))
        wired = np.array([k for k, ch in enumerate(chans) if ch in self.wired], dtype=int)
        if wired.size:
            tias = [self.wired[chans[k]] for k in wired]
            current = self.chip.read_balanced_current_a(float(times[wired[0]]))
            volts[wired] = (np.array([t.gain_v_per_a for t in tias]) * current[[t.bank for t in tias]]
                            + np.array([t.offset_v for t in tias]))
        reading, overload = daq_reading_v(volts, ranges, times * self.line_frequency_hz,
                                          self.chip.instrument_normals(len(chans)))
        values = np.where(overload, np.copysign(OVERLOAD_REPLY_V, reading), reading)
        replies = [f"{value:+.8E}" for value in values]
        rest = float(np.sum(times[1:])) + self.channel_overhead_s * (len(chans) - 1)
        clock.advance(rest, self.category)
        return replies


def ch_ok(channels: list[int], configured: dict[int, float]) -> bool:
    """Every channel has a measurement function (was configured with CONFigure)."""
    return all(ch in configured for ch in channels)


REGISTRY = {
    "keysight_daq970a": ModelEntry(device="Keysight DAQ970A", model=DAQ970AModel),
}
