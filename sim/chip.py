"""Chip: one emulated photonic weight-bank chip, stateful for instruments and batch-vectorized for fast paths.

Simulated instruments (heater driver, lasers, power meters, source meters) all talk to ONE Chip. The instrument
side is stateful: heater drive with DAC quantization and first-order thermal settling in virtual time, laser
settings, readings that use the state at ``clock.now_s``. ``evaluate`` is the batch path (settled heaters, current
chip temperature, noise from the chip's noise stream). Chip reads never advance the clock; instruments charge
their own latencies (``spec.timing``) via ``chip.clock.advance``. ``Chip(workers=N)`` evaluates large batches in N
processes (this one plus a lazily started pool), bit-identical to ``workers=1``.

Power bookkeeping: each bank's bus input per channel is laser power * input facet transmission *
``optics.bank_split_fraction`` (default 1.0: every bank sees the full post-facet power). The on-chip balanced
detector sees bus powers; the through/drop ports add the output facet loss.

GROUND TRUTH: methods named ``truth_*`` expose hidden parameters and noise-free physics for tests, benchmarks and
reports ONLY. Calibration, training and procedure code must never call them; they must learn the chip through
the instruments like on a real bench.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import mmap
import multiprocessing
import os
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from labctl.sim import heaters as _heaters
from labctl.sim.chip_params import ChipParams, draw_chip_params, spawn_streams
from labctl.sim.chip_spec import ChipSpec
from labctl.sim.clock import VirtualClock
from labctl.sim.detection import (
    MeterReading,
    bandwidth_hz,
    detector_noise_sigma_a,
    meter_model,
    meter_model_flat,
    meter_reading,
    quantize_signed,
    rin_sigma,
)
from labctl.sim.drift import TemperatureDrift
from labctl.sim.optics import (
    BankConstants,
    build_constants,
    bus_powers,
    fast_port_transmissions,
    fields_f64,
    incoherent_transmissions_f64,
    kernels,
)

__all__ = ["Chip", "Evaluation"]

log = logging.getLogger(__name__)

BLOCK_POINTS = 512  # points per drive -> resonance -> optics pass (one compiled optics call), and share granularity
# Points per crosstalk gemm: at most 163 keeps the 40x40xn gemm single-threaded in OpenBLAS (40*40*n <= 4*65536);
# measured on the loaded 2-core VM, one threaded gemm per 512-point block cost milliseconds.
GEMM_POINTS = 160
SWEEP_CHUNK = 4096  # wavelengths per kernel call in port_spectrum_w
METER_CHUNK_CONFIGS = 64  # meter_readings_configs: configurations per kernel call and noise stream
METER_THREADS = min(2, os.cpu_count() or 1)  # meter_readings_configs: chunks computed at once
PARENT_SHARE_WEIGHT = 1.0  # initial points of this process's share relative to a pool worker's share (then measured)
PARALLEL_MIN_POINTS = 2048  # smaller batches stay in-process (the process hand-off, ~1-2 ms, would dominate)


@dataclass(frozen=True)
class Evaluation:
    """Batch result: balanced detector current and optical port powers, each (N, B)."""

    balanced_current_a: np.ndarray
    through_power_w: np.ndarray
    drop_power_w: np.ndarray


@dataclass
class _Batch:
    """What a pool worker needs for a share of one evaluate batch (besides its share of drives and powers)."""

    wavelength_m: np.ndarray
    drive: np.ndarray
    mode: str
    full_scale: float
    lsb: float
    base_m: np.ndarray
    arena_offset: int = 0  # next free byte of the shared arena for this batch


class _DriveResonances:
    """resonances(s, e) -> (H, e - s) settled resonances for drives[s:e] (picklable, for process workers).

    Same maths as heaters.quantize_drive / power_from_*_w, once per block of points: voltage drive (the common case)
    in one compiled pass, current drive with numpy out= buffers.
    """

    def __init__(self, drive: np.ndarray, mode: str, full_scale: float, lsb: float, params: ChipParams,
                 base_m: np.ndarray) -> None:
        self.drive, self.mode, self.fs, self.lsb, self.params, self.base = drive, mode, full_scale, lsb, params, base_m
        r0 = np.ascontiguousarray(params.heater_resistance_ohm, dtype=np.float64)
        self.r0_terms = (r0, r0 * r0, 4.0 * params.self_heating_per_w * r0)  # R0, R0^2, 4 gamma R0

    def __call__(self, s: int, e: int) -> np.ndarray:
        p = self.params
        n = e - s
        if self.mode == "voltage":
            power = np.empty((n, p.heater_resistance_ohm.size))
            drive = np.array(self.drive[s:e], dtype=np.float64, order="C")  # writable C copy: one compiled variant
            kernels().voltage_heater_power(drive, float(self.fs), 1.0 / self.lsb, float(self.lsb), *self.r0_terms,
                                           power)
        else:
            v = np.maximum(self.drive[s:e], 0.0)
            np.minimum(v, self.fs, out=v)
            v *= 1.0 / self.lsb
            np.rint(v, out=v)
            v *= self.lsb
            power = _heaters.power_from_current_w(v, p.heater_resistance_ohm, p.self_heating_per_w)
        res = np.empty((power.shape[1], n))  # (H, n)
        for g in range(0, n, GEMM_POINTS):
            np.matmul(p.crosstalk_m_per_w, power[g : g + GEMM_POINTS].T, out=res[:, g : g + GEMM_POINTS])
        res += self.base
        return res


def _transmit_block(
    k: BankConstants,
    resonances: Callable[[int, int], np.ndarray],
    pin_cn: np.ndarray,
    rin: np.ndarray | None,
    thr: np.ndarray,
    drop: np.ndarray,
    bs: int,
) -> None:
    """Bus powers of points bs..bs+BLOCK_POINTS into thr/drop (B, n): resonances once, then one compiled optics
    pass (optics and channel sum). Every path (serial, threads, processes) runs exactly these calls on the same block
    boundaries, so results do not depend on how a batch is distributed."""
    be = min(bs + BLOCK_POINTS, thr.shape[1])
    res_block = resonances(bs, be)
    if rin is None:
        pin = np.ascontiguousarray(pin_cn[:, bs:be])
    else:
        pin = np.multiply(pin_cn[:, bs:be], rin[:, bs:be], order="C")
    thr[:, bs:be], drop[:, bs:be] = bus_powers(k, res_block, pin)


# ---- process workers (Chip(workers=N)): each holds the chip parameters and its BankConstants once ------------
ARENA_BYTES = 64 * 2**20  # shared input/output area per process pool (virtual; only touched pages use memory)
_WORKER: dict = {}


def _worker_init(params: ChipParams, n_banks: int, n_rings: int, arena: mmap.mmap | None) -> None:
    _WORKER.clear()
    _WORKER.update(params=params, n_banks=n_banks, n_rings=n_rings, constants={}, arena=arena)
    kernels().warm_up()  # instant after fork from a warmed parent; under spawn, loads the cached machine code here


def _share_transmissions(
    wavelength_m: np.ndarray, drive: np.ndarray, mode: str, full_scale: float, lsb: float, base_m: np.ndarray,
    pin_cn: np.ndarray, thr: np.ndarray, drop: np.ndarray,
) -> None:
    """(through, drop) bus powers into thr/drop (B, n) for one share of a batch (first point on a block boundary)."""
    params, nb, nr = _WORKER["params"], _WORKER["n_banks"], _WORKER["n_rings"]
    cache = _WORKER["constants"]
    key = wavelength_m.tobytes()
    k = cache.get(key)
    if k is None:
        if len(cache) > 8:
            cache.clear()
        k = cache[key] = build_constants(params, nb, nr, wavelength_m)
    res = _DriveResonances(drive, mode, full_scale, lsb, params, base_m)
    for bs in range(0, drive.shape[0], BLOCK_POINTS):
        _transmit_block(k, res, pin_cn, None, thr, drop, bs)


def _worker_transmissions(
    wavelength_m: np.ndarray, drive: np.ndarray, mode: str, full_scale: float, lsb: float, base_m: np.ndarray,
    pin_cn: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Share with pickled inputs and outputs: (through, drop, compute seconds)."""
    t0 = time.perf_counter()
    nb, n = _WORKER["n_banks"], drive.shape[0]
    thr, drop = np.empty((nb, n)), np.empty((nb, n))
    _share_transmissions(wavelength_m, drive, mode, full_scale, lsb, base_m, pin_cn, thr, drop)
    return thr, drop, time.perf_counter() - t0


def _arena_views(arena: mmap.mmap, offset: int, n: int, n_heaters: int, n_channels: int, n_banks: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(drive (n, H), pin (C, n), thr (B, n), drop (B, n)) float64 views of one share's slot in the arena."""
    out = []
    for shape in ((n, n_heaters), (n_channels, n), (n_banks, n), (n_banks, n)):
        out.append(np.ndarray(shape, dtype=np.float64, buffer=arena, offset=offset))
        offset += 8 * shape[0] * shape[1]
    return out[0], out[1], out[2], out[3]


def _arena_bytes(n: int, n_heaters: int, n_channels: int, n_banks: int) -> int:
    return 8 * n * (n_heaters + n_channels + 2 * n_banks)


def _worker_transmissions_shared(
    wavelength_m: np.ndarray, offset: int, n: int, n_channels: int, mode: str, full_scale: float, lsb: float,
    base_m: np.ndarray,
) -> float:
    """Share whose inputs and outputs live in the shared arena (fork workers: no pickling of the arrays); returns
    the compute seconds."""
    t0 = time.perf_counter()
    drive, pin, thr, drop = _arena_views(_WORKER["arena"], offset, n, base_m.shape[0], n_channels,
                                         _WORKER["n_banks"])
    _share_transmissions(wavelength_m, drive, mode, full_scale, lsb, base_m, pin, thr, drop)
    return time.perf_counter() - t0


def _shutdown_pool(pool: ProcessPoolExecutor, arena: mmap.mmap | None) -> None:
    pool.shutdown(wait=True, cancel_futures=True)
    if arena is not None:
        try:
            arena.close()
        except BufferError:  # views of an interrupted batch still alive: the mapping goes when they do
            pass


def _channel_vector(value: object, n: int, dtype: type) -> np.ndarray:
    """A per-channel vector (n,) of its own: a copy of an (n,) array, or a scalar broadcast."""
    array = np.asarray(value, dtype=dtype)
    if array.shape == (n,):
        return array.copy()
    return np.broadcast_to(array, (n,)).copy()


class Chip:
    """Emulated chip with banks x rings add-drop microrings fed by WDM lasers (see module docstring)."""

    def __init__(
        self, spec: ChipSpec | None = None, seed: int = 0, threads: int | None = None, workers: int = 1
    ) -> None:
        """``workers`` > 1: ``evaluate`` splits batches of >= PARALLEL_MIN_POINTS points into ``workers`` shares on
        block boundaries; this process computes the first share while a persistent process pool (``workers`` - 1
        processes, started lazily on first use, each holding the chip parameters and the BankConstants once)
        computes the others. All noise is drawn here, so results are bit-identical to ``workers=1``. Call
        ``close()`` (or drop the chip) to stop the pool."""
        self._spec = spec if spec is not None else ChipSpec()
        self._seed = int(seed)
        fab_rng, self._noise_rng, drift_rng = spawn_streams(self._seed)
        self._params = draw_chip_params(self._spec, self._seed, fab_rng)
        self._meter_nl = np.ascontiguousarray(self._params.meter_nonlinearity_db.reshape(-1))  # by meter b*2 + port
        self._meter_phase = np.ascontiguousarray(self._params.meter_nonlinearity_phase.reshape(-1))
        self._clock = VirtualClock()
        th = self._spec.thermal
        self._drift = TemperatureDrift(th.drift_rms_k, th.drift_reference_time_s, drift_rng, self._clock)
        h, c = self.n_heaters, self.n_channels
        self._drive = np.zeros(h)
        self._is_current = np.zeros(h, dtype=bool)
        self._all_heaters = np.arange(h)
        self._command_scratch = np.empty((2, h + 1))  # heater_command's work space (and its max/sum of powers)
        self._dac_steps = float(2**self._spec.heaters.dac_bits - 1)
        self._settling = _heaters.ThermalSettling(h, th.time_constant_s)
        self._last_drive_time_s = 0.0
        self._laser_commanded_m = np.array(self._spec.lasers.channel_wavelengths_m())
        self._laser_actual_m = self._laser_commanded_m.copy()
        self._laser_power_w = np.full(c, self._spec.lasers.power_w)
        # power ramps: channel k moves linearly from _ramp_from_w[k] at _ramp_t0_s[k] to its set power at _ramp_t1_s[k]
        self._ramp_from_w = self._laser_power_w.copy()
        self._ramp_t0_s = np.zeros(c)
        self._ramp_t1_s = np.zeros(c)
        self._laser_on = np.ones(c, dtype=bool)
        #: (time from which the lasers emit their set powers, bank input powers (C, 1) then), until they change
        self._settled_pin: tuple[float, np.ndarray] | None = None
        #: End of the averaging window of the reading in progress (instrument side); a command landing before it
        #: disturbs that reading (counted in :attr:`disturbed_readings`).
        self._window_end_s = -math.inf
        self.disturbed_readings = 0
        self._const_cache: dict[bytes, BankConstants] = {}
        #: (averaging times, ranges) of an instrument's readings (bytes) -> :meth:`_meter_plan`
        self._meter_plans: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        self._rin_sigmas: dict[float, float] = {}  # averaging time -> laser RIN rms of a reading
        # Measured: a 2-thread pool over chunks gives no gain on the 2-vCPU reference VM (each chunk is ~30 short
        # ufunc calls and the GIL hand-offs eat the overlap), so the default is 1; pass threads=2 to try.
        self._threads = threads if threads is not None else 1
        self._pool: ThreadPoolExecutor | None = None
        self._meter_pool: ThreadPoolExecutor | None = None   # meter_readings_configs: chunks in parallel
        self._meter_pool_threads = 0
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self._workers = int(workers)
        self._proc_pool: ProcessPoolExecutor | None = None
        self._arena: mmap.mmap | None = None
        self._parent_weight = PARENT_SHARE_WEIGHT
        self._proc_finalizer: weakref.finalize | None = None
        o = self._spec.optics
        self._input_factor = 10 ** (-o.facet_loss_db / 10) * o.bank_split_fraction
        self._output_factor = 10 ** (-o.facet_loss_db / 10)

    # ---- sizes and state ------------------------------------------------------------------------------------
    @property
    def spec(self) -> ChipSpec:
        return self._spec

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def clock(self) -> VirtualClock:
        return self._clock

    @property
    def n_banks(self) -> int:
        return self._spec.layout.n_banks

    @property
    def n_rings(self) -> int:
        return self._spec.layout.n_rings

    @property
    def n_channels(self) -> int:
        return self._spec.lasers.n_channels

    @property
    def n_heaters(self) -> int:
        return self._spec.n_heaters

    # ---- heaters (instrument side) --------------------------------------------------------------------------
    def _full_scale(self, mode: str) -> float:
        hs = self._spec.heaters
        if mode == "voltage":
            return hs.dac_full_scale_v
        if mode == "current":
            return hs.dac_full_scale_a
        raise ValueError(f"mode must be 'voltage' or 'current', got {mode!r}")

    def set_heater_drive(self, values: np.ndarray, mode: str = "voltage", channels: np.ndarray | None = None) -> None:
        """Apply a drive (V or A) to all heaters or to ``channels``; quantized by the DAC, starts settling now.

        One compiled pass (``kernels.heater_command``, the arithmetic of :mod:`.heaters` in the same order): only the
        written heaters' powers are computed, the others keep the commanded power they have (elementwise formulas:
        the same bits as recomputing every heater). Nothing changes when a current is beyond thermal runaway."""
        fs = self._full_scale(mode)
        vals = np.asarray(values, dtype=float)
        idx = self._all_heaters if channels is None else np.asarray(channels, dtype=int).reshape(-1)
        vals = np.broadcast_to(vals, idx.shape) if vals.ndim == 0 else vals.reshape(-1)
        if vals.shape != idx.shape:
            raise ValueError(f"values must have shape {idx.shape}, got {vals.shape}")
        self.command_heaters(np.ascontiguousarray(vals, dtype=np.float64), idx, mode == "current")

    def command_heaters(self, vals: np.ndarray, idx: np.ndarray, current: bool) -> None:
        """:meth:`set_heater_drive` for a caller that holds its values as a contiguous float64 vector and its
        heaters as an int vector of the same length (a heater instrument model, once per command line): the same
        command, without the argument conversions."""
        fs = self._spec.heaters.dac_full_scale_a if current else self._spec.heaters.dac_full_scale_v
        n = self._drive.size
        if idx.size > self._command_scratch.shape[1] - 1:
            self._command_scratch = np.empty((2, idx.size + 1))
        now = self._clock.now_s
        if now < self._window_end_s:
            self._check_window("heater command")
        p = self._params
        settling = self._settling
        start, target, decay = settling.command_state(now)
        scratch = self._command_scratch
        # one compiled call validates (finite values, heater indices) and applies the whole command, or nothing
        outcome = kernels().heater_command(
            idx, vals, current, fs, fs / self._dac_steps,
            p.heater_resistance_ohm, 4.0 * p.self_heating_per_w, p.self_heating_per_w, decay,
            self._drive, self._is_current, start, target, scratch)
        if outcome == -2:
            raise ValueError("heater drive values must be finite")
        if outcome == -3:
            raise ValueError(f"heater channels must be in [0, {n}), got {idx.tolist()}")
        if outcome >= 0:
            raise _heaters.HeaterRunawayError(f"current drive beyond thermal runaway on heater {outcome}")
        settling.restarted(now)
        self._last_drive_time_s = now
        hs = self._spec.heaters
        k = idx.size
        # the kernel's max is exact; its sequential sum may differ from numpy's in the last bit: numpy decides near
        # the budget
        if scratch[0, k] > hs.max_power_w or (scratch[1, k] > hs.max_total_power_w * (1 - 1e-9)
                                               and np.add.reduce(target) > hs.max_total_power_w):
            log.warning("heater power beyond the safe limits (max %.4g W, total %.4g W)", target.max(), target.sum())

    def heater_drive(self) -> np.ndarray:
        """Drive values actually applied (after DAC quantization), (H,)."""
        return self._drive.copy()

    def heater_modes(self) -> tuple[str, ...]:
        """Drive mode per heater."""
        return tuple("current" if c else "voltage" for c in self._is_current)

    def heater_power_w(self) -> np.ndarray:
        """Electrical power dissipated per heater for the applied drive (settled self-heating), (H,)."""
        return self._settling.target_w

    @property
    def last_drive_time_s(self) -> float:
        """Virtual time of the last heater command."""
        return self._last_drive_time_s

    # ---- lasers ----------------------------------------------------------------------------------------------
    def set_lasers(
        self,
        wavelength_m: np.ndarray | None = None,
        power_w: np.ndarray | None = None,
        on: np.ndarray | None = None,
        power_ramp_s: float = 0.0,
    ) -> None:
        """Set per-channel laser wavelength (each set adds a +-repeatability error), power and on/off, (C,) each.

        ``power_ramp_s`` > 0: a changed power moves linearly from the power emitted now to the new one over that
        time (the laser settling after a power command); readings taken meanwhile see the power in between."""
        c = self.n_channels
        ls = self._spec.lasers
        self._settled_pin = None
        if not (math.isfinite(power_ramp_s) and power_ramp_s >= 0):
            raise ValueError(f"power_ramp_s must be finite and >= 0, got {power_ramp_s!r}")
        if wavelength_m is not None:
            wl = _channel_vector(wavelength_m, c, float)
            if not np.all(np.isfinite(wl) & (wl > 0)):
                raise ValueError("laser wavelengths must be finite and > 0")
            err = ls.wavelength_repeatability_m * self._noise_rng.uniform(-1.0, 1.0, c)
            changed = wl != self._laser_commanded_m
            if np.any(changed):
                self._check_window("laser wavelength change")
            self._laser_actual_m = np.where(changed, wl + err, self._laser_actual_m)
            self._laser_commanded_m = wl
        if power_w is not None:
            pw = _channel_vector(power_w, c, float)
            if not np.all((pw >= ls.min_power_w) & (pw <= ls.max_power_w)):
                raise ValueError(f"laser power must be within [{ls.min_power_w}, {ls.max_power_w}] W, got {pw}")
            changed = pw != self._laser_power_w
            if np.any(changed):
                self._check_window("laser power change")
                now = self._clock.now_s
                self._ramp_from_w = np.where(changed, self._laser_power_at(now), self._ramp_from_w)
                self._ramp_t0_s = np.where(changed, now, self._ramp_t0_s)
                self._ramp_t1_s = np.where(changed, now + power_ramp_s, self._ramp_t1_s)
            self._laser_power_w = pw
        if on is not None:
            state = _channel_vector(on, c, bool)
            if np.any(state != self._laser_on):
                self._check_window("laser output switched")
            self._laser_on = state

    def _laser_power_at(self, t_s: float) -> np.ndarray:
        """Power each laser emits at time ``t_s`` (>= the last power command): on its ramp, or settled."""
        if t_s >= np.maximum.reduce(self._ramp_t1_s):
            return self._laser_power_w  # every ramp over (the common case of a reading: no arithmetic per channel)
        span = self._ramp_t1_s - self._ramp_t0_s
        frac = np.where(span > 0, np.clip((t_s - self._ramp_t0_s) / np.where(span > 0, span, 1.0), 0.0, 1.0), 1.0)
        return self._ramp_from_w + (self._laser_power_w - self._ramp_from_w) * frac

    def laser_power_settled_s(self) -> np.ndarray:
        """Virtual time at which each laser's power has settled after its last power command, (C,)."""
        return self._ramp_t1_s.copy()

    # ---- reading windows (instrument side) ---------------------------------------------------------------------
    def open_reading_window(self, end_s: float) -> None:
        """A reading now averages the chip's output until ``end_s``: a heater or laser command landing before
        then disturbs it (the instrument has no way to know; the emulator counts it and warns)."""
        self._window_end_s = max(self._window_end_s, float(end_s))

    def _check_window(self, what: str) -> None:
        if self._clock.now_s < self._window_end_s:
            self.disturbed_readings += 1
            log.warning("%s at t=%.6f s lands inside a reading's averaging window (ends %.6f s): that reading is "
                        "disturbed", what, self._clock.now_s, self._window_end_s)

    def laser_wavelength_m(self) -> np.ndarray:
        """Commanded wavelengths, (C,)."""
        return self._laser_commanded_m.copy()

    def laser_power_w(self) -> np.ndarray:
        """Set powers, (C,)."""
        return self._laser_power_w.copy()

    def laser_on(self) -> np.ndarray:
        """On/off per channel, (C,)."""
        return self._laser_on.copy()

    # ---- physics core ----------------------------------------------------------------------------------------
    def _constants(self, wavelength_m: np.ndarray) -> BankConstants:
        key = np.ascontiguousarray(wavelength_m, dtype=float).tobytes()
        k = self._const_cache.get(key)
        if k is None:
            if len(self._const_cache) > 8:
                self._const_cache.clear()
            k = build_constants(self._params, self.n_banks, self.n_rings, np.asarray(wavelength_m, dtype=float))
            self._const_cache[key] = k
        return k

    def _drift_shift_m(self) -> float:
        return self._drift.offset_k * self._spec.thermal.temperature_coefficient_m_per_k

    def _resonances_hn(self, power_nh: np.ndarray) -> np.ndarray:
        """(H, N) resonances for heater powers (N, H), at the current chip temperature."""
        p = self._params
        res = p.crosstalk_m_per_w @ power_nh.T
        res += (p.base_resonance_m + self._drift_shift_m())[:, None]
        return res

    def _simulate(
        self,
        k: BankConstants,
        resonances: Callable[[int, int], np.ndarray],
        n: int,
        pin_cn: np.ndarray,
        averaging_time_s: float,
        noise: bool,
        share_job: Callable[[int, int, np.ndarray], Callable[[], tuple[np.ndarray, np.ndarray, float]]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(balanced current, through bus power, drop bus power), each (B, N).

        ``resonances(s, e)`` gives the (H, e - s) resonances of points s..e; it is called once per block of
        BLOCK_POINTS points, and the kernel then runs over cache-sized chunks of the block. Noise is drawn for the
        whole batch up front, so results do not depend on chunking, threads or processes. ``share_job(s, e, pin)``,
        if given, hands points s..e (with effective input powers ``pin``) to the process pool and returns a callable
        that waits for their (through, drop) bus powers and the worker's compute time; the measured speeds of this
        process and the workers set the next batch's split (any split on block boundaries gives the same bits).
        """
        nb = self.n_banks
        rin = gauss = None
        if noise:
            sig = rin_sigma(self._spec.lasers.rin_db_per_hz, averaging_time_s)
            rin = self._noise_rng.standard_normal(pin_cn.shape)
            rin *= sig
            rin += 1.0
        thr = np.empty((nb, n))
        drop = np.empty((nb, n))
        bounds = self._share_bounds(n) if share_job is not None else [0, n]
        futures = []
        for s, e in itertools.pairwise(bounds[1:]):  # shares 1.. go to the pool, share 0 stays here
            pin = pin_cn[:, s:e] if rin is None else pin_cn[:, s:e] * rin[:, s:e]
            try:
                futures.append((s, e, share_job(s, e, pin)))
            except BrokenProcessPool:
                futures.append((s, e, None))
        t_parent = time.perf_counter()
        if noise:
            gauss = self._noise_rng.standard_normal((nb, n))
        n0 = bounds[1]
        blocks = list(range(0, n0, BLOCK_POINTS))
        threads = min(self._threads, len(blocks))
        if threads > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="labctl-sim")
            list(self._pool.map(lambda bs: _transmit_block(k, resonances, pin_cn, rin, thr, drop, bs), blocks))
        else:
            t0, d0 = thr[:, :n0], drop[:, :n0]
            for bs in blocks:
                _transmit_block(k, resonances, pin_cn, rin, t0, d0, bs)
        t_parent = time.perf_counter() - t_parent
        worker_rates = []
        for s, e, fut in futures:
            try:
                if fut is None:
                    raise BrokenProcessPool("could not start the emulator process pool")
                thr[:, s:e], drop[:, s:e], seconds = fut()
                worker_rates.append((e - s) / max(seconds, 1e-9))
            except BrokenProcessPool:  # a worker died (killed, out of memory): finish here, restart the pool later
                log.warning("emulator process pool broke; computing points %d..%d in-process", s, e)
                self._discard_process_pool()
                for bs in range(s, e, BLOCK_POINTS):
                    _transmit_block(k, resonances, pin_cn, rin, thr, drop, bs)
        if worker_rates and n0 > 0:  # balance the next batch: parent share / worker share = parent rate / worker rate
            ratio = (n0 / max(t_parent, 1e-9)) / (sum(worker_rates) / len(worker_rates))
            self._parent_weight = min(max(0.5 * self._parent_weight + 0.5 * ratio, 0.2), 5.0)
        dark = self._params.dark_current_a
        current = self._balanced_current(thr, drop, dark[:, 0:1], dark[:, 1:2], averaging_time_s, gauss)
        return current, thr, drop

    def _balanced_current(self, thr: np.ndarray, drop: np.ndarray, dark_thr: np.ndarray, dark_drop: np.ndarray,
                          averaging_time_s: float, gauss: np.ndarray | None) -> np.ndarray:
        """Balanced detector current from bus powers: responsivity, dark currents, shot and thermal noise
        (``gauss``: standard normals, or None for noise-free), clipped and quantized by the readout."""
        det = self._spec.detector
        i_drop = det.responsivity_a_per_w * drop + dark_drop
        i_thr = det.responsivity_a_per_w * thr + dark_thr
        current = i_drop - i_thr
        if gauss is not None:
            current += detector_noise_sigma_a(i_drop, i_thr, averaging_time_s, det) * gauss
        return quantize_signed(current, det.readout_bits, det.readout_range_a)

    def _share_bounds(self, n: int) -> list[int]:
        """Share boundaries on block boundaries: [0, b_1, ..., n]. Share 0 (this process, which also draws the noise
        and hands the other shares over) gets ``_parent_weight`` times the points of a pool share; the weight
        follows the speeds measured on the previous batches (vCPUs of a loaded VM do not run at the same speed)."""
        w = self._workers
        if w <= 1 or n < PARALLEL_MIN_POINTS:
            return [0, n]
        pw = self._parent_weight
        total = pw + (w - 1)
        cuts = {min(round(n * (pw + i - 1) / total / BLOCK_POINTS) * BLOCK_POINTS, n) for i in range(1, w)}
        return [0] + sorted(c for c in cuts if 0 < c < n) + [n]

    def _process_pool(self) -> ProcessPoolExecutor:
        if self._proc_pool is None:
            # fork where available: fast to start, the workers inherit the shared arena (batch shares then travel
            # without pickling) and, unlike spawn/forkserver, it does not re-run the caller's main script in the
            # workers (scripts without an `if __name__ == "__main__"` guard keep working).
            methods = multiprocessing.get_all_start_methods()
            fork = "fork" in methods
            kernels().warm_up()  # compiled kernels before the fork: the workers inherit them
            arena = mmap.mmap(-1, ARENA_BYTES) if fork and ARENA_BYTES > 0 else None
            pool = ProcessPoolExecutor(
                max_workers=self._workers - 1,
                mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
                initializer=_worker_init,
                initargs=(self._params, self.n_banks, self.n_rings, arena),
            )
            self._proc_pool, self._arena = pool, arena
            self._proc_finalizer = weakref.finalize(self, _shutdown_pool, pool, arena)
        return self._proc_pool

    def _pool_share(
        self, batch: _Batch, s: int, e: int, pin_share: np.ndarray
    ) -> Callable[[], tuple[np.ndarray, np.ndarray, float]]:
        """Hand points s..e of ``batch`` to the process pool; returns a callable that waits for (through, drop,
        worker compute seconds)."""
        try:
            return self._submit_share(batch, s, e, pin_share)
        except BrokenProcessPool:  # a worker died since the last batch: start a fresh pool, once
            self._discard_process_pool()
            batch.arena_offset = 0
            return self._submit_share(batch, s, e, pin_share)

    def _submit_share(
        self, batch: _Batch, s: int, e: int, pin_share: np.ndarray
    ) -> Callable[[], tuple[np.ndarray, np.ndarray, float]]:
        pool, arena = self._process_pool(), self._arena
        dims = (self.n_heaters, self.n_channels, self.n_banks)
        nbytes = _arena_bytes(e - s, *dims)
        if arena is not None and batch.arena_offset + nbytes <= len(arena):  # shared memory: no pickling
            offset = batch.arena_offset
            drv, pin_v, thr_v, drop_v = _arena_views(arena, offset, e - s, *dims)
            drv[...] = batch.drive[s:e]
            pin_v[...] = pin_share
            batch.arena_offset += nbytes
            fut = pool.submit(_worker_transmissions_shared, batch.wavelength_m, offset, e - s, self.n_channels,
                              batch.mode, batch.full_scale, batch.lsb, batch.base_m)
            return lambda: (thr_v, drop_v, fut.result())
        fut = pool.submit(_worker_transmissions, batch.wavelength_m, batch.drive[s:e], batch.mode, batch.full_scale,
                          batch.lsb, batch.base_m, pin_share)
        return fut.result

    def _discard_process_pool(self) -> None:
        if self._proc_finalizer is not None:
            self._proc_finalizer()  # shuts the pool down (once); a later evaluate starts a new one
        self._proc_finalizer = None
        self._proc_pool = self._arena = None

    def _pin_cn(self, input_power_w: np.ndarray, n: int) -> np.ndarray:
        c = self.n_channels
        p = np.asarray(input_power_w, dtype=float)
        if p.shape == (c,):
            p = np.broadcast_to(p[:, None], (c, n))
        elif p.shape == (n, c):
            p = p.T
        else:
            raise ValueError(f"input_power_w must have shape ({c},) or ({n}, {c}), got {p.shape}")
        return p * self._input_factor

    def _check_drive(self, drive: np.ndarray) -> np.ndarray:
        d = np.asarray(drive, dtype=float)
        if d.ndim == 1:
            d = d[None, :]
        if d.ndim != 2 or d.shape[1] != self.n_heaters:
            raise ValueError(f"drive must have shape (N, {self.n_heaters}), got {np.shape(drive)}")
        return d

    def _drive_power_w(self, drive: np.ndarray, mode: str) -> np.ndarray:
        d = _heaters.quantize_drive(self._check_drive(drive), self._spec.heaters.dac_bits, self._full_scale(mode))
        p = self._params
        return _heaters.drive_to_power_w(d, mode, p.heater_resistance_ohm, p.self_heating_per_w)

    # ---- readings (instrument side) ----------------------------------------------------------------------------
    def _state_resonances_hn(self, at_s: float | None = None) -> np.ndarray:
        t = self._clock.now_s if at_s is None else at_s
        return self._resonances_hn(self._settling.effective_w(t)[None, :])

    def _state_simulate(self, averaging_time_s: float, at_s: float | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = self._constants(self._laser_actual_m)
        res = self._state_resonances_hn(at_s)
        return self._simulate(k, lambda s, e: res, 1, self._state_pin_cn(at_s), averaging_time_s, True)

    def _state_pin_cn(self, at_s: float | None = None) -> np.ndarray:
        t = self._clock.now_s if at_s is None else at_s
        settled = self._settled_pin
        if settled is not None and t >= settled[0]:
            return settled[1]
        power = self._laser_power_at(t)
        pin = (power * self._laser_on * self._input_factor)[:, None]
        if power is self._laser_power_w:  # every ramp over: the same until the lasers change (read-only, shared)
            pin.flags.writeable = False
            self._settled_pin = (float(np.maximum.reduce(self._ramp_t1_s)), pin)
        return pin

    def _reading_time(self, at_s: float | None) -> float | None:
        if at_s is not None and at_s < self._clock.now_s:
            raise ValueError(f"a reading cannot look back in time (at_s={at_s} s, now {self._clock.now_s} s)")
        return at_s

    def read_balanced_current_a(self, averaging_time_s: float, at_s: float | None = None) -> np.ndarray:
        """Balanced detector current per bank at the current virtual time, or at ``at_s`` (>= now, nothing
        commanded meanwhile): heater settling and laser power ramps apply, (B,)."""
        cur, _, _ = self._state_simulate(averaging_time_s, self._reading_time(at_s))
        return cur[:, 0]

    def instrument_normals(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Standard normals from the chip's noise stream, for instrument noise that the chip does not model itself
        (e.g. a DAQ's ADC noise): drawn here so that a checkpoint of the chip (``state_dict``) covers it."""
        return self._noise_rng.standard_normal(shape)

    def read_port_power_w(self, averaging_time_s: float, at_s: float | None = None) -> np.ndarray:
        """Optical power at the [through, drop] ports per bank, with laser RIN but no meter model, (B, 2); at the
        current virtual time or at ``at_s`` (as :meth:`read_balanced_current_a`).

        The same computation as the one-point :meth:`_simulate`, without the balanced detector it does not report;
        the detector's noise is still drawn (and dropped) so that the noise stream, hence every later reading, is
        the same whichever reading an instrument takes."""
        at_s = self._reading_time(at_s)
        k = self._constants(self._laser_actual_m)
        res = self._state_resonances_hn(at_s)
        c = self.n_channels
        sigma = self._rin_sigmas.get(averaging_time_s)
        if sigma is None:
            sigma = self._rin_sigmas[averaging_time_s] = rin_sigma(self._spec.lasers.rin_db_per_hz,
                                                                   averaging_time_s)
        # the RIN normals (C) and the unreported detector's (B) in one draw: the same stream, the same values
        normals = self._noise_rng.standard_normal(c + self.n_banks)
        rin = normals[:c].reshape(c, 1)
        rin *= sigma
        rin += 1.0
        thr, drop = bus_powers(k, res, np.multiply(self._state_pin_cn(at_s), rin, order="C"))
        out = np.concatenate((thr, drop), axis=1)
        out *= self._output_factor
        return out

    def meter_reading_w(
        self, power_w: np.ndarray, averaging_time_s: float, range_dbm: float | np.ndarray,
        meter: np.ndarray | None = None
    ) -> MeterReading:
        """Power-meter model applied to optical powers (``range_dbm`` a scalar or one range per element).

        Meter identity sets the fixed nonlinearity: if ``power_w`` ends in shape (B, 2) each element uses the meter
        on that bank/port; otherwise ``meter`` gives flat indices b*2 + port (default 0) broadcast against power_w.
        """
        p = np.asarray(power_w, dtype=float)
        nl = self._params.meter_nonlinearity_db
        ph = self._params.meter_nonlinearity_phase
        if meter is None and p.shape[-2:] == nl.shape:
            nl_b, ph_b = nl, ph
        else:
            m = np.zeros(p.shape, dtype=int) if meter is None else np.asarray(meter, dtype=int)
            nl_b, ph_b = nl.reshape(-1)[m], ph.reshape(-1)[m]
        return meter_reading(p, averaging_time_s, range_dbm, nl_b, ph_b, self._spec.power_meter, self._noise_rng)

    def meter_reading_groups_w(self, power_w: np.ndarray, averaging_time_s: np.ndarray, range_dbm: np.ndarray,
                               meter: np.ndarray) -> MeterReading:
        """The power-meter model on readings that differ in averaging time and range, element by element.

        The same numbers, noise draws included, as calling :meth:`meter_reading_w` once per distinct (averaging
        time, range) pair, in the order the pairs first appear, on that pair's elements; but one pass (an
        instrument reading all its ports at once pays the model's call overhead once)."""
        p = np.ascontiguousarray(power_w, dtype=float).reshape(-1)
        t = np.ascontiguousarray(averaging_time_s, dtype=float).reshape(-1)
        r = np.ascontiguousarray(range_dbm, dtype=float).reshape(-1)
        m = np.asarray(meter, dtype=int).reshape(-1)
        spec = self._spec.power_meter
        # an instrument repeats a few (averaging times, ranges) patterns: each one's plan is made once
        key = (t.tobytes(), r.tobytes())
        plan = self._meter_plans.get(key)
        if plan is None:
            plan = self._meter_plan(t, r)
            if len(self._meter_plans) >= 4096:
                self._meter_plans.clear()
            self._meter_plans[key] = plan
        top, sigma, order = plan
        if spec.noise_w > 0:
            noise = self._noise_rng.standard_normal(p.size)
            if order is not None:  # the draws go to the groups in the order the groups first appear
                draws, noise = noise, np.empty(p.size)
                noise[order] = draws
            noise *= sigma
        else:
            noise = np.zeros(p.size)
        return meter_model_flat(p, self._meter_nl[m], self._meter_phase[m], noise, top, spec)

    def _meter_plan(self, t: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Range tops (W) and noise rms (W) per element of readings at averaging times ``t`` and ranges ``r``
        (each pair validated), and where the noise draws go: None in element order (one group), else the
        elements group by group, the groups in the order they first appear (a stable sort)."""
        spec = self._spec.power_meter
        keys = list(zip(t.tolist(), r.tolist()))
        pairs: dict[tuple[float, float], tuple[float, float]] = {}
        for t_g, r_g in keys:
            if (t_g, r_g) in pairs:
                continue
            if r_g not in spec.ranges_dbm:
                raise ValueError(f"range_dbm must be one of {spec.ranges_dbm}, got {r_g!r}")
            bandwidth_hz(t_g)
            pairs[(t_g, r_g)] = (1e-3 * 10 ** (r_g / 10), spec.noise_w * math.sqrt(spec.noise_reference_time_s / t_g))
        top = np.array([pairs[key][0] for key in keys])
        sigma = np.array([pairs[key][1] for key in keys])
        group = {key: g for g, key in enumerate(pairs)}
        order = None if len(pairs) <= 1 else np.array(sorted(range(len(keys)), key=lambda i: group[keys[i]]))
        return top, sigma, order

    def port_spectrum_w(
        self,
        wavelength_m: np.ndarray,
        power_w: float,
        channel: int = 0,
        averaging_time_s: float = 1e-4,
        noise: bool = True,
    ) -> np.ndarray:
        """Port powers (W, B, 2) [through, drop] while laser ``channel`` sweeps ``wavelength_m`` at ``power_w``.

        The swept laser replaces channel ``channel``; the other channels stay as currently set (on/off, power,
        wavelength) and add their constant contribution, as on a bench where the instrument layer decides whether
        to switch them off. Heaters are at their current effective state; laser RIN per sample, no meter model.
        """
        wl = np.asarray(wavelength_m, dtype=float).reshape(-1)
        res = self._state_resonances_hn()
        thr_s = np.empty((self.n_banks, wl.size, 1))
        drop_s = np.empty_like(thr_s)
        for s in range(0, wl.size, SWEEP_CHUNK):  # bounded working set for long sweeps
            part = wl[s : s + SWEEP_CHUNK]
            ks = build_constants(self._params, self.n_banks, self.n_rings, part)
            thr_s[:, s : s + part.size], drop_s[:, s : s + part.size] = fast_port_transmissions(ks, res)
        pin_s = power_w * self._input_factor
        others = self._state_pin_cn()[:, 0].copy()
        others[channel] = 0.0
        kc = self._constants(self._laser_actual_m)
        thr_c, drop_c = fast_port_transmissions(kc, res)  # (B, C, 1)
        w = wl.size
        if noise:
            sig = rin_sigma(self._spec.lasers.rin_db_per_hz, averaging_time_s)
            eps_s = 1.0 + sig * self._noise_rng.standard_normal(w)
            eps_c = 1.0 + sig * self._noise_rng.standard_normal((w, self.n_channels))
        else:
            eps_s = np.ones(w)
            eps_c = np.ones((w, self.n_channels))
        thr = pin_s * eps_s[:, None] * thr_s[:, :, 0].T + (eps_c * others) @ thr_c[:, :, 0].T
        drop = pin_s * eps_s[:, None] * drop_s[:, :, 0].T + (eps_c * others) @ drop_c[:, :, 0].T
        return np.stack([thr, drop], axis=2) * self._output_factor

    def balanced_spectrum_a(self, wavelength_m: np.ndarray, power_w: float, channel: int = 0,
                            averaging_time_s: float = 1e-4, noise: bool = True) -> np.ndarray:
        """Balanced detector current (W, B) of every bank while laser ``channel`` sweeps ``wavelength_m`` at
        ``power_w``: the bus powers of :meth:`port_spectrum_w` (before the output facet: the detectors are on
        chip) through the same detector model as every other reading (responsivity, dark currents, shot and
        thermal noise for ``averaging_time_s``, readout clipping and quantization)."""
        ports = self.port_spectrum_w(wavelength_m, power_w, channel=channel, averaging_time_s=averaging_time_s,
                                     noise=noise) / self._output_factor
        thr, drop = ports[:, :, 0].T, ports[:, :, 1].T                       # (B, W) bus powers
        gauss = self._noise_rng.standard_normal(thr.shape) if noise else None
        dark = self._params.dark_current_a
        return self._balanced_current(thr, drop, dark[:, 0:1], dark[:, 1:2], averaging_time_s, gauss).T

    # ---- batch path ------------------------------------------------------------------------------------------
    def evaluate(
        self,
        drive: np.ndarray,
        input_power_w: np.ndarray | None = None,
        averaging_time_s: float = 1e-4,
        mode: str = "voltage",
        noise: bool = True,
    ) -> Evaluation:
        """Settled response for N operating points: drive (N, H), laser powers (C,) or (N, C) (default: as set,
        ignoring on/off), at the current laser wavelengths and chip temperature; noise from the chip's stream."""
        d = np.ascontiguousarray(self._check_drive(drive))
        fs = self._full_scale(mode)
        n = d.shape[0]
        pin = self._pin_cn(self._laser_power_w if input_power_w is None else input_power_w, n)
        k = self._constants(self._laser_actual_m)
        if mode == "current":  # runaway check on the whole batch before any work
            self._drive_power_w(d, mode)
        lsb = fs / (2**self._spec.heaters.dac_bits - 1)
        base = (self._params.base_resonance_m + self._drift_shift_m())[:, None]
        resonances = _DriveResonances(d, mode, fs, lsb, self._params, base)
        share_job = None
        if self._workers > 1 and n >= PARALLEL_MIN_POINTS:
            batch = _Batch(np.ascontiguousarray(self._laser_actual_m, dtype=float), d, mode, fs, lsb, base)
            share_job = functools.partial(self._pool_share, batch)
        cur, thr, drop = self._simulate(k, resonances, n, pin, averaging_time_s, noise, share_job)
        f = self._output_factor
        return Evaluation(balanced_current_a=cur.T, through_power_w=thr.T * f, drop_power_w=drop.T * f)

    def evaluate_configs(
        self,
        drive: np.ndarray,
        input_power_w: np.ndarray,
        averaging_time_s: float = 1e-4,
        mode: str = "voltage",
        noise: bool = True,
        detector: bool = True,
    ) -> Evaluation:
        """Settled response of T heater configurations, each read at N laser-power settings: drive (T, H), powers
        (T, N, C) or (N, C); results (T, N, B). ``detector=False`` skips the balanced detector (port powers only).

        Why a separate path: the optics is linear in the (mutually incoherent) WDM channel powers, so a heater
        configuration's channel transmissions are computed once and every power setting costs a small matrix
        product; laser RIN, detector noise and quantization are drawn per reading exactly as in ``evaluate``.
        """
        d = np.ascontiguousarray(self._check_drive(drive))
        p = self._config_powers(input_power_w, d.shape[0])
        thr_t, drop_t = self._config_transmissions(d, mode)
        pin = p * self._input_factor
        if noise:  # RIN ~1e-4 relative: float32 draws are exact enough and twice as fast for big batches
            rin = self._noise_rng.standard_normal(pin.shape, dtype=np.float32)
            rin *= np.float32(rin_sigma(self._spec.lasers.rin_db_per_hz, averaging_time_s))
            pin = pin * rin
            pin += p * self._input_factor
        thr = np.matmul(pin, thr_t.transpose(2, 1, 0))   # (T, N, C) @ (T, C, B)
        drop = np.matmul(pin, drop_t.transpose(2, 1, 0))
        f = self._output_factor
        if not detector:  # port powers only (off-chip meters); the on-chip balanced current is left empty
            return Evaluation(balanced_current_a=np.empty((0,)), through_power_w=thr * f, drop_power_w=drop * f)
        dark = self._params.dark_current_a
        gauss = self._noise_rng.standard_normal(thr.shape) if noise else None
        current = self._balanced_current(thr, drop, dark[:, 0], dark[:, 1], averaging_time_s, gauss)
        return Evaluation(balanced_current_a=current, through_power_w=thr * f, drop_power_w=drop * f)

    def _config_powers(self, input_power_w: np.ndarray, t_cfg: int) -> np.ndarray:
        """Laser powers (T, N, C) for T configurations from (T, N, C), or (N, C) shared by all of them."""
        c = self.n_channels
        p = np.asarray(input_power_w, dtype=float)
        if p.ndim == 2:
            p = np.broadcast_to(p, (t_cfg, *p.shape))
        if p.ndim != 3 or p.shape[0] != t_cfg or p.shape[2] != c:
            raise ValueError(f"input_power_w must have shape (N, {c}) or ({t_cfg}, N, {c}), got {p.shape}")
        return p

    def _config_transmissions(self, d: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Settled channel transmissions (B, C, T) of T drives at the current laser wavelengths and temperature."""
        fs = self._full_scale(mode)
        if mode == "current":
            self._drive_power_w(d, mode)
        lsb = fs / (2**self._spec.heaters.dac_bits - 1)
        base = (self._params.base_resonance_m + self._drift_shift_m())[:, None]
        res = _DriveResonances(d, mode, fs, lsb, self._params, base)(0, d.shape[0])  # (H, T)
        return fast_port_transmissions(self._constants(self._laser_actual_m), res)

    def meter_readings_configs(
        self,
        drive: np.ndarray,
        input_power_w: np.ndarray,
        averaging_time_s: float,
        auto_range_margin_db: float,
        mode: str = "voltage",
        power_index: np.ndarray | None = None,
    ) -> np.ndarray:
        """Balanced power-meter readings (drop - through, W) of T configurations at N power settings, (T, N, B).

        What an off-chip bench reads with one meter per port in auto range (meter b*2 + port): laser RIN and meter
        noise per reading, the meter's nonlinearity and quantization, fused in one compiled pass
        (``meter_kernel``) because a photonic-DFA batch is hundreds of thousands of readings.

        ``input_power_w``: (T, N, C), (N, C) shared by every configuration, or, with ``power_index`` (T,), K
        settings (K, N, C) of which configuration t reads ``input_power_w[power_index[t]]`` (photonic DFA: one
        encoding per column block, without a (T, N, C) copy).

        The configurations go in chunks of ``METER_CHUNK_CONFIGS``, each with its own noise stream (seeded from one
        draw of the chip's noise stream and the chunk's position), so chunks run on ``METER_THREADS`` threads
        (normals and kernel both release the GIL) and the readings still depend on the seed only, never on the
        thread count or timing.
        """
        from labctl.sim.meter_kernel import arg_constants, meter_bank_readings

        d = np.ascontiguousarray(self._check_drive(drive))
        t_cfg = d.shape[0]
        if power_index is None:   # (N, C): one setting for all, K = 1; (T, N, C): one per configuration
            p = np.asarray(input_power_w, dtype=float)
            shared = p.ndim == 2
            p = self._config_powers(p, 1 if shared else t_cfg)
            blk = np.zeros(t_cfg, dtype=np.int64) if shared else np.arange(t_cfg)
        else:
            p = np.asarray(input_power_w, dtype=float)
            blk = np.asarray(power_index).astype(np.int64, copy=False)
            if (p.ndim != 3 or p.shape[2] != self.n_channels or blk.shape != (t_cfg,)
                    or (t_cfg and not 0 <= blk.min() <= blk.max() < p.shape[0])):
                raise ValueError(f"input_power_w {p.shape} with power_index {blk.shape}: need (K, N, "
                                 f"{self.n_channels}) and ({t_cfg},) indices in 0..K-1")
        thr_t, drop_t = self._config_transmissions(d, mode)
        pin = np.ascontiguousarray(p * self._input_factor)
        n, n_ch, n_b = pin.shape[1], self.n_channels, self.n_banks
        pm = self._spec.power_meter
        bandwidth_hz(averaging_time_s)
        noise_sigma = float(pm.noise_w * np.sqrt(pm.noise_reference_time_s / averaging_time_s))
        tops = np.sort(1e-3 * 10 ** (np.asarray(pm.ranges_dbm, dtype=float) / 10))
        k_arg, c_arg = arg_constants(pm.nonlinearity_period_db)
        out = np.empty((t_cfg, n, n_b))
        fixed = (np.ascontiguousarray(thr_t), np.ascontiguousarray(drop_t), float(self._output_factor),
                 np.ascontiguousarray(self._params.meter_nonlinearity_db, dtype=float),
                 np.ascontiguousarray(self._params.meter_nonlinearity_phase, dtype=float))
        tail = (noise_sigma, tops, float(10 ** (auto_range_margin_db / 10)), float(2**pm.readout_bits), k_arg, c_arg,
                out)
        sigma_rin = float(rin_sigma(self._spec.lasers.rin_db_per_hz, averaging_time_s))
        batch_seed = int(self._noise_rng.integers(2**63))

        def chunk(t0: int) -> None:
            m = min(METER_CHUNK_CONFIGS, t_cfg - t0)
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(batch_seed, spawn_key=(t0,))))
            rin = rng.standard_normal((m, n, n_ch), dtype=np.float32)
            noise = rng.standard_normal((m, n, n_b, 2), dtype=np.float32)
            meter_bank_readings(pin, blk, t0, rin, sigma_rin, *fixed, noise, *tail)

        starts = list(range(0, t_cfg, METER_CHUNK_CONFIGS))
        threads = min(METER_THREADS, len(starts))
        if threads <= 1:
            for t0 in starts:
                chunk(t0)
            return out
        if self._meter_pool is None or self._meter_pool_threads < threads:
            if self._meter_pool is not None:
                self._meter_pool.shutdown()
            self._meter_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="labctl-sim-meter")
            self._meter_pool_threads = threads
        for future in [self._meter_pool.submit(chunk, t0) for t0 in starts]:
            future.result()
        return out

    def state_dict(self) -> dict:
        """The chip's changing state (noise and drift streams, clock, temperature, heaters, lasers) as JSON-able
        values, so a run on an emulated bench can be checkpointed and resumed bit-identically."""
        return {
            "seed": self._seed,
            "noise_rng": self._noise_rng.bit_generator.state,
            "drift": self._drift.state_dict(),
            "clock": self._clock.state_dict(),
            "drive": self._drive.tolist(),
            "is_current": self._is_current.tolist(),
            "settling": self._settling.state_dict(),
            "last_drive_time_s": self._last_drive_time_s,
            "laser_commanded_m": self._laser_commanded_m.tolist(),
            "laser_actual_m": self._laser_actual_m.tolist(),
            "laser_power_w": self._laser_power_w.tolist(),
            "laser_ramp": {"from_w": self._ramp_from_w.tolist(), "t0_s": self._ramp_t0_s.tolist(),
                           "t1_s": self._ramp_t1_s.tolist()},
            "laser_on": self._laser_on.tolist(),
            "window_end_s": self._window_end_s if math.isfinite(self._window_end_s) else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` of a chip with the same seed and spec."""
        if int(state["seed"]) != self._seed:
            raise ValueError(f"chip state is for seed {state['seed']}, this chip has seed {self._seed}")
        self._noise_rng.bit_generator.state = state["noise_rng"]
        self._drift.load_state_dict(state["drift"])
        self._clock.load_state_dict(state["clock"])
        self._drive = np.array(state["drive"], dtype=float)
        self._is_current = np.array(state["is_current"], dtype=bool)
        self._settling.load_state_dict(state["settling"])
        self._last_drive_time_s = float(state["last_drive_time_s"])
        self._laser_commanded_m = np.array(state["laser_commanded_m"], dtype=float)
        self._laser_actual_m = np.array(state["laser_actual_m"], dtype=float)
        self._laser_power_w = np.array(state["laser_power_w"], dtype=float)
        ramp = state.get("laser_ramp")   # absent in checkpoints made before power ramps were modelled: settled
        self._ramp_from_w = np.array(ramp["from_w"], dtype=float) if ramp else self._laser_power_w.copy()
        self._ramp_t0_s = np.array(ramp["t0_s"], dtype=float) if ramp else np.zeros(self.n_channels)
        self._ramp_t1_s = np.array(ramp["t1_s"], dtype=float) if ramp else np.zeros(self.n_channels)
        self._laser_on = np.array(state["laser_on"], dtype=bool)
        self._settled_pin = None
        window = state.get("window_end_s")
        self._window_end_s = -math.inf if window is None else float(window)

    def warm_up(self) -> None:
        """Load (or compile) the compiled kernels now, not at the first heater write or reading: a served bench must
        answer its first messages within a client's timeout (numba import and cache load take about a second)."""
        kernels().warm_up()
        meter_model(np.zeros(1), np.zeros(1), np.zeros(1), 0.0, 1.0, self._spec.power_meter)
        meter_model_flat(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.ones(1), self._spec.power_meter)

    def close(self) -> None:
        """Stop the worker threads and processes (optional: an unreferenced chip stops its processes too)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._meter_pool is not None:
            self._meter_pool.shutdown()
            self._meter_pool = None
        self._discard_process_pool()

    # ---- ground truth: tests, benchmarks, reports ONLY -------------------------------------------------------
    def truth_params(self) -> ChipParams:
        """TRUTH. The hidden per-chip parameters. Never use in calibration or training code."""
        return self._params

    def truth_crosstalk_m_per_w(self) -> np.ndarray:
        """TRUTH. K[ring, heater], m/W, (H, H). Never use in calibration or training code."""
        return self._params.crosstalk_m_per_w.copy()

    def truth_heater_power_w(self, drive: np.ndarray, mode: str = "voltage") -> np.ndarray:
        """TRUTH. Settled heater power for drives (N, H) after DAC quantization. Never use in calibration code."""
        return self._drive_power_w(drive, mode)

    def truth_laser_wavelength_m(self) -> np.ndarray:
        """TRUTH. Actual laser wavelengths including the repeatability error, (C,)."""
        return self._laser_actual_m.copy()

    def truth_laser_power_w(self) -> np.ndarray:
        """TRUTH. Power each laser emits right now (on its ramp after a power command), (C,)."""
        return self._laser_power_at(self._clock.now_s) * self._laser_on

    def truth_effective_heater_power_w(self) -> np.ndarray:
        """TRUTH. Heater power the rings feel right now (first-order settling toward heater_power_w), (H,)."""
        return self._settling.effective_w(self._clock.now_s)

    def truth_temperature_offset_k(self) -> float:
        """TRUTH. Current chip temperature offset from the reference, K."""
        return self._drift.offset_k

    def truth_resonances_m(self, drive: np.ndarray, mode: str = "voltage") -> np.ndarray:
        """TRUTH. Settled resonances (N, B, R) at the current chip temperature. Never use in calibration code."""
        res = self._resonances_hn(self._drive_power_w(drive, mode)).T
        return res.reshape(-1, self.n_banks, self.n_rings)

    def _truth_wl(self, wavelength_m: np.ndarray | None) -> np.ndarray:
        return self._laser_actual_m if wavelength_m is None else np.asarray(wavelength_m, dtype=float).reshape(-1)

    def truth_fields(
        self, drive: np.ndarray, mode: str = "voltage", wavelength_m: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """TRUTH. Coherent (E_through, E_drop) complex128 (N, B, W) relative to the bus input (float64 path)."""
        res = self._resonances_hn(self._drive_power_w(drive, mode)).T
        return fields_f64(self._params, self.n_banks, self.n_rings, res, self._truth_wl(wavelength_m))

    def truth_weights(
        self, drive: np.ndarray, mode: str = "voltage", wavelength_m: np.ndarray | None = None
    ) -> np.ndarray:
        """TRUTH. Noise-free weights |E_drop|^2 - |E_through|^2 (N, B, W), coherent cascade, float64."""
        e_thr, e_drop = self.truth_fields(drive, mode, wavelength_m)
        return np.abs(e_drop) ** 2 - np.abs(e_thr) ** 2

    def truth_incoherent_weights(
        self, drive: np.ndarray, mode: str = "voltage", wavelength_m: np.ndarray | None = None
    ) -> np.ndarray:
        """TRUTH. Same as truth_weights but for the incoherent cascade (powers add); for comparison only."""
        res = self._resonances_hn(self._drive_power_w(drive, mode)).T
        thr, drop = incoherent_transmissions_f64(
            self._params, self.n_banks, self.n_rings, res, self._truth_wl(wavelength_m)
        )
        return drop - thr
