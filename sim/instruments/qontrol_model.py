"""Physics model of a Qontrol Q8iv daisy chain in front of the emulated chip (instruments.md §3.1).

Why a model and not the YAML: the shipped definition is a static two-module chain at power-on; a bench needs the
chain length, per-channel limits, drive state and read-backs (``VALL?``, ``VIPALL?`` with power from the chip's
heaters) to follow what was written. The spellings come from :mod:`labctl.drivers.qontrol`; the static single-line
facts (``nup=0``, ``id?``, ``firmware?``, ``nchan?``) and the reply to an unknown line (``E10:00``) come from the
simulation profile (:mod:`labctl.sim.profiles.qontrol`). Commands are case-insensitive, as the firmware takes them.

Wiring: ``heater_map[k]`` is the chip heater driven by instrument channel ``k`` (global across the chain), -1 for an
unconnected output. Every drive write becomes ONE heater command of the chip (``chip.command_heaters``, the
conversion-free form of ``set_heater_drive``; a ``VVEC`` line of 8 values is one call), in volts (``V``/``VVEC``)
or amps (``I``/``IVEC``, sent in mA).

Behaviour chosen where the reference is silent (documented here, tested in tests/sim/test_qontrol_model.py):

* A drive value above the channel's ``VMAX`` (``IMAX``) answers ``E01:<ch>`` (``E02:<ch>``) instead of ``OK`` and
  is **not applied**; a vector line with one bad value applies none of its values. Negative values are out of
  range too (E01/E02); unparsable values answer ``E11:<ch>``. A channel beyond the chain answers ``E12:<ch>``.
* ``VMAX``/``IMAX`` above the module full scale answer ``E11:<ch>``. Lowering a limit below the present output
  does not change the output (not modelled).
* Read-backs are what the module would measure on the chip: for a connected voltage-driven channel ``V`` is the
  applied (DAC-quantised) voltage and ``I = P / V`` with ``P = chip.heater_power_w()``; for a current-driven one
  ``I`` is the applied current and ``V = P / I``. An unconnected output carries no current (in current mode with a
  non-zero set current its voltage rails to ``min(VMAX, vfull)``).
* ``VIPALL?`` prints ``<module>,<port>: <V> V, <I> mA`` and appends ``, <P> mW, <R> Ohm`` (the recorded long
  form) only for channels carrying current; the short recorded form is used at zero current, where ``V/I`` is
  undefined.
* ``log?`` lists the errors this model answered (``#  0, E01:05, 2 m ago``, oldest first, age in whole minutes of
  virtual time); an empty history answers one empty line.
* Not modelled: ``IMAX`` limiting in voltage mode, serial buffer overflow (``E14``), comms errors (``E15``),
  binary mode, ``help?``/``lifetime?``, power-up notices.

Latency: ``chip.spec.timing.serial_line_s`` per command line (a vector write is one line), category ``serial``.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from functools import lru_cache
from typing import Any

import numpy as np
from labctl.drivers.qontrol import (
    CHAIN_QUERY,
    CHAIN_QUERY_OLD,
    ERROR_UNRECOGNISED,
    FIRMWARE_QUERY,
    IALL_QUERY,
    ID_QUERY,
    IFULL_QUERY,
    IMAXALL_QUERY,
    IVEC_SET,
    LOG_QUERY,
    NCHAN_QUERY,
    NUP_RESET,
    OK,
    VALL_QUERY,
    VFULL_QUERY,
    VIPALL_QUERY,
    VMAXALL_QUERY,
    VVEC_SET,
    QontrolChannel,
)
from labctl.sim.device_model import DeviceModel, Reply
from labctl.sim.instruments import ModelEntry
from labctl.sim.templates import template_regex

log = logging.getLogger(__name__)

CHANNELS_PER_MODULE = 8
MODULE_TYPE = "Q8iv"
#: Error codes of the Qontrol error lines (drivers/qontrol.py ERROR_MESSAGES).
E_OVER_VOLTAGE = 1
E_OVER_CURRENT = 2
E_BAD_PARAMETER = 11
E_BAD_CHANNEL = 12
#: Lines answered with the profile's fixed reply (static facts).
_STATIC_LINES = (NUP_RESET, ID_QUERY, FIRMWARE_QUERY, NCHAN_QUERY)


@lru_cache(maxsize=64)
def _pattern(template: str) -> re.Pattern[str]:
    """The driver template as a case-insensitive regex (the modules accept ``v0=`` and ``V0=``); every field
    other than ``values`` is an integer."""
    pattern = template_regex(template).pattern
    for name in ("start", "ch"):
        pattern = pattern.replace(f"(?P<{name}>.+?)", rf"(?P<{name}>\d+)")
    return re.compile(pattern, re.IGNORECASE)


def _greedy(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """A template pattern whose last field runs to the end of the line, matched greedily: the same groups for
    every line, without the lazy quantifier's step-by-step retries (four times faster on a vector line)."""
    return re.compile(pattern.pattern.replace(".+?)$", ".+)$"), pattern.flags)


#: The hot path's patterns: a vector write (one line per module and drive write), voltage first.
_VECTOR_LINES = ((_greedy(_pattern(VVEC_SET)), "voltage"), (_greedy(_pattern(IVEC_SET)), "current"))


def _fields(template: str | None, line: str) -> dict[str, str] | None:
    if template is None:
        return None
    found = _pattern(template).match(line)
    return None if found is None else found.groupdict()


class QontrolModel(DeviceModel):
    """A chain of ``n_modules`` Q8iv modules (8 channels each) driving chip heaters through ``heater_map``."""

    category = "serial"

    def __init__(self, name: str, heater_map: np.ndarray | list[int], n_modules: int, vfull_v: float = 12.0,
                 ifull_ma: float = 24.0) -> None:
        super().__init__(name)
        if n_modules < 1:
            raise ValueError(f"{name}: n_modules must be >= 1, got {n_modules}")
        if not (vfull_v > 0 and ifull_ma > 0):
            raise ValueError(f"{name}: full scales must be > 0, got {vfull_v} V, {ifull_ma} mA")
        n = n_modules * CHANNELS_PER_MODULE
        wiring = np.asarray(heater_map, dtype=int).reshape(-1)
        if wiring.size > n:
            raise ValueError(f"{name}: heater_map has {wiring.size} entries for {n} channels")
        wiring = np.concatenate([wiring, np.full(n - wiring.size, -1, dtype=int)])
        connected = wiring[wiring >= 0]
        if np.unique(connected).size != connected.size:
            raise ValueError(f"{name}: a heater appears twice in heater_map {wiring.tolist()}")
        if np.any(wiring < -1):
            raise ValueError(f"{name}: heater_map entries must be heater indices or -1")
        self.n_modules = n_modules
        self.n_channels = n
        self.heater_map = wiring
        #: (start, stop) of a write -> (chip heaters, all wired, wired mask, wired heaters): the wiring is fixed
        self._routes: dict[tuple[int, int], tuple[np.ndarray, bool, np.ndarray, np.ndarray]] = {}
        self.vfull_v = float(vfull_v)
        self.ifull_ma = float(ifull_ma)
        self.vmax_v = np.full(n, self.vfull_v)
        self.imax_ma = np.full(n, self.ifull_ma)
        self.voltage_v = np.zeros(n)
        self.current_ma = np.zeros(n)
        self.current_mode = np.zeros(n, dtype=bool)
        #: (code, channel, virtual time) of every error line answered, for ``log?``.
        self.error_history: list[tuple[int, int, float]] = []

    def attach(self, bench: Any, profile: Any) -> None:
        super().attach(bench, profile)
        self._static = {line.lower(): self.dialogue(line) for line in _STATIC_LINES}
        self._unrecognised = str(profile.error_reply)
        self._line_s = float(self.chip.spec.timing.serial_line_s)  # every line costs the same (the chip's spec is fixed)
        self._advance = self.chip.clock.advance
        self._chip = self.chip  # (the property's look-up once: every line commands the chip)
        too_big = self.heater_map >= self.chip.n_heaters
        if np.any(too_big):
            raise ValueError(f"{self.name}: heater_map names heaters {self.heater_map[too_big].tolist()}, the chip "
                             f"has {self.chip.n_heaters}")

    def latency_s(self, line: str) -> float:
        return self._line_s

    def power_cycle(self) -> None:
        """The modules reset (a brown-out): every output at 0 V in voltage mode, limits at full scale (what the
        fault "heater_reset" does; the power-up notice line is the fault layer's to send)."""
        self.voltage_v[:] = 0.0
        self.current_ma[:] = 0.0
        self.current_mode[:] = False
        self.vmax_v[:] = self.vfull_v
        self.imax_ma[:] = self.ifull_ma
        heaters = self.heater_map[self.heater_map >= 0]
        self.chip.set_heater_drive(np.zeros(heaters.size), mode="voltage", channels=heaters)

    def exchange(self, message: str) -> Reply:
        """:meth:`DeviceModel.exchange` with this model's one latency (the hot path: one call per command line)."""
        self._advance(self._line_s, self.category)
        return self.handle(message)

    # -- dispatch ------------------------------------------------------------------------------------------------
    def handle(self, line: str) -> Reply:
        text = line.strip()
        if text[:4] in ("VVEC", "IVEC", "vvec", "ivec"):  # the hot path: one vector line per module and write
            for pattern, kind in _VECTOR_LINES:
                found = pattern.match(text)
                if found is not None:
                    return self._write(int(found["start"]), found["values"].split(","), kind)
        low = text.lower()
        static = self._static.get(low)
        if static is not None:
            return static
        if low in (CHAIN_QUERY.lower(), CHAIN_QUERY_OLD.lower()):
            return "\n".join(f"{MODULE_TYPE}-{m + 1:04d}: {m}" for m in range(self.n_modules))
        if low == VFULL_QUERY.lower():
            return f"{self.vfull_v:+.4f} V"
        if low == IFULL_QUERY.lower():
            return f"{self.ifull_ma:+.4f} mA"
        if low == LOG_QUERY.lower():
            return self._log_reply()
        if low in (VALL_QUERY.lower(), IALL_QUERY.lower(), VMAXALL_QUERY.lower(), IMAXALL_QUERY.lower(),
                   VIPALL_QUERY.lower()):
            return self._bulk_reply(low)
        for template, kind in ((VVEC_SET, "voltage"), (IVEC_SET, "current")):
            fields = _fields(template, text)
            if fields is not None:
                return self._write(int(fields["start"]), fields["values"].split(","), kind)
        reply = self._channel_command(text)
        if reply is None:
            # unrecognised command: answered E10:00 and kept in the module's history, as the firmware does
            self._record(ERROR_UNRECOGNISED, 0)
            return self._unrecognised
        return reply

    def _channel_command(self, text: str) -> Reply:
        """Per-channel ``VMAX``/``IMAX``/``V``/``I`` set and get (limits first: ``V{ch}`` must not take ``VMAX``)."""
        limits = ((QontrolChannel.vmax_v, self.vmax_v, self.vfull_v, "V"),
                  (QontrolChannel.imax_ma, self.imax_ma, self.ifull_ma, "mA"))
        for setting, table, full, unit in limits:
            fields = _fields(setting.query, text)
            if fields is not None:
                ch = int(fields["ch"])
                return self._error(E_BAD_CHANNEL, ch) if ch >= self.n_channels else f"{table[ch]:+.4f} {unit}"
            fields = _fields(setting.command, text)
            if fields is not None:
                return self._set_limit(int(fields["ch"]), fields["value"], table, full)
        for setting, kind in ((QontrolChannel.voltage_v, "voltage"), (QontrolChannel.current_ma, "current")):
            fields = _fields(setting.query, text)
            if fields is not None:
                ch = int(fields["ch"])
                if ch >= self.n_channels:
                    return self._error(E_BAD_CHANNEL, ch)
                volts, milliamps = self._measured()
                return f"{volts[ch]:+.4f} V" if kind == "voltage" else f"{milliamps[ch]:+.4f} mA"
            fields = _fields(setting.command, text)
            if fields is not None:
                return self._write(int(fields["ch"]), [fields["value"]], kind)
        return None

    # -- errors ----------------------------------------------------------------------------------------------------
    def _record(self, code: int, ch: int) -> None:
        self.error_history.append((code, ch, self.chip.clock.now_s))

    def _error(self, code: int, ch: int) -> str:
        """An error line ``E<code>:<ch>`` answered instead of ``OK``, remembered for ``log?``."""
        self._record(code, ch)
        log.debug("%s: answering E%02d:%02d", self.name, code, ch)
        return f"E{code:02d}:{ch:02d}"

    def _log_reply(self) -> str:
        now = self.chip.clock.now_s
        return "\n".join(f"#{k:3d}, E{code:02d}:{ch:02d}, {int((now - t) // 60)} m ago"
                         for k, (code, ch, t) in enumerate(self.error_history))

    # -- setters -----------------------------------------------------------------------------------------------------
    def _set_limit(self, ch: int, text: str, table: np.ndarray, full: float) -> str:
        if ch >= self.n_channels:
            return self._error(E_BAD_CHANNEL, ch)
        value = _number(text)
        if value is None or not 0.0 <= value <= full:
            return self._error(E_BAD_PARAMETER, ch)
        table[ch] = value
        return OK

    def _write(self, start: int, texts: list[str], kind: str) -> str:
        """``V``/``I`` (one value) or ``VVEC``/``IVEC`` (consecutive channels): all-or-nothing, then one chip call.

        Plain Python on the few values of one line (numpy's per-call cost would dominate)."""
        stop = start + len(texts)
        if stop > self.n_channels:
            return self._error(E_BAD_CHANNEL, max(start, self.n_channels))
        try:
            values = list(map(float, texts))
        except ValueError:
            values = [math.nan]
        part = slice(start, stop)
        limits = (self.vmax_v if kind == "voltage" else self.imax_ma)[part].tolist()
        # one test for the common case: a non-finite value fails it too (NaN every comparison, -inf the least value,
        # +inf its limit), so the finiteness check below runs only when it fails, still before the range check
        if not (min(values) >= 0.0 and all(map(operator.le, values, limits))):
            if not all(map(math.isfinite, values)):  # the first value the firmware cannot take, named by its channel
                bad = next(k for k, text in enumerate(texts) if _number(text) is None)
                return self._error(E_BAD_PARAMETER, start + bad)
            for k, (value, limit) in enumerate(zip(values, limits)):  # the first value out of range
                if not 0.0 <= value <= limit:
                    return self._error(E_OVER_VOLTAGE if kind == "voltage" else E_OVER_CURRENT, start + k)
        array = np.array(values)
        if kind == "voltage":
            self.voltage_v[part] = array
            self.current_mode[part] = False
        else:
            self.current_ma[part] = array
            self.current_mode[part] = True
            array *= 1e-3
        route = self._routes.get((start, stop))
        if route is None:  # the chip heaters behind channels start..stop-1, and which of them are wired
            heaters = self.heater_map[part]
            route = self._routes[(start, stop)] = (heaters, bool(np.all(heaters >= 0)), heaters >= 0,
                                                   heaters[heaters >= 0])
        heaters, all_wired, wired, wired_heaters = route
        if all_wired:
            self._chip.command_heaters(array, heaters, kind == "current")  # float64 and int, one length
        elif wired_heaters.size:
            self._chip.command_heaters(array[wired], wired_heaters, kind == "current")
        return OK

    # -- read-backs --------------------------------------------------------------------------------------------------
    def _measured(self) -> tuple[np.ndarray, np.ndarray]:
        """(volts, milliamps) per channel as the module measures them on the chip's heaters."""
        railed = self.current_mode & (self.current_ma > 0)  # a current source into an open output rails
        volts = np.where(railed, np.minimum(self.vmax_v, self.vfull_v), np.where(self.current_mode, 0.0,
                                                                                  self.voltage_v))
        amps = np.zeros(self.n_channels)
        wired = np.flatnonzero(self.heater_map >= 0)
        if wired.size:
            heaters = self.heater_map[wired]
            drive = self.chip.heater_drive()[heaters]
            power = self.chip.heater_power_w()[heaters]
            is_current = self.current_mode[wired]
            safe_drive = np.where(drive > 0, drive, 1.0)
            volts[wired] = np.where(is_current, np.where(drive > 0, power / safe_drive, 0.0), drive)
            amps[wired] = np.where(is_current, drive, np.where(drive > 0, power / safe_drive, 0.0))
        return volts, amps * 1e3

    def _bulk_reply(self, low: str) -> str:
        if low == VMAXALL_QUERY.lower():
            return "\n".join(f"{v:+.4f} V" for v in self.vmax_v)
        if low == IMAXALL_QUERY.lower():
            return "\n".join(f"{i:+.4f} mA" for i in self.imax_ma)
        volts, milliamps = self._measured()
        if low == VALL_QUERY.lower():
            return "\n".join(f"{v:+.4f} V" for v in volts)
        if low == IALL_QUERY.lower():
            return "\n".join(f"{i:+.4f} mA" for i in milliamps)
        lines = []
        for ch in range(self.n_channels):
            module, port = divmod(ch, CHANNELS_PER_MODULE)
            line = f"{module},{port}: {volts[ch]:+.4f} V, {milliamps[ch]:+.4f} mA"
            if milliamps[ch] > 0.0:
                power_mw = volts[ch] * milliamps[ch]
                line += f", {power_mw:8.4f} mW, {volts[ch] / milliamps[ch] * 1e3:6.0f} Ohm"
            lines.append(line)
        return "\n".join(lines)


def _number(text: str) -> float | None:
    """A decimal value as the firmware parses it, or None (not a finite number)."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


REGISTRY = {
    "qontrol": ModelEntry(device="Qontrol Q8iv", model=QontrolModel, serial=True),
}
