"""Chip: one emulated photonic weight-bank chip, stateful for instruments and batch-vectorized for fast paths.

Simulated instruments (heater driver, lasers, power meters, source meters) all talk to ONE Chip. The instrument
side is stateful: heater drive with DAC quantization and first-order thermal settling in virtual time, laser
settings, readings that use the state at ``clock.now_s``. ``evaluate`` is the batch path (settled heaters, current
chip temperature, noise from the chip's noise stream). Chip reads never advance the clock; instruments charge
their own latencies (``spec.timing``) via ``chip.clock.advance``.

Power bookkeeping: each bank's bus input per channel is laser power * input facet transmission *
``optics.bank_split_fraction`` (default 1.0: every bank sees the full post-facet power). The on-chip balanced
detector sees bus powers; the through/drop ports add the output facet loss.

GROUND TRUTH: methods named ``truth_*`` expose hidden parameters and noise-free physics for tests, benchmarks and
reports ONLY. Calibration, training and procedure code must never call them; they must learn the chip through
the instruments like on a real bench.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import heaters as _heaters
from .chip_params import ChipParams, draw_chip_params, spawn_streams
from .chip_spec import ChipSpec
from .clock import VirtualClock
from .detection import (
    MeterReading,
    detector_noise_sigma_a,
    meter_reading,
    quantize_signed,
    rin_sigma,
)
from .drift import TemperatureDrift
from .optics import (
    BankConstants,
    build_constants,
    fast_port_transmissions,
    fields_f64,
    incoherent_transmissions_f64,
)

__all__ = ["Chip", "Evaluation"]

log = logging.getLogger(__name__)

BLOCK_POINTS = 4096  # points per drive -> resonance pass (bounded memory for any batch size)
SWEEP_CHUNK = 4096  # wavelengths per kernel call in port_spectrum_w
DEFAULT_CHUNK_POINTS = 160  # measured best on a 2-core EPYC: (R, B, W, n) working set stays in L2/L3


@dataclass(frozen=True)
class Evaluation:
    """Batch result: balanced detector current and optical port powers, each (N, B)."""

    balanced_current_a: np.ndarray
    through_power_w: np.ndarray
    drop_power_w: np.ndarray


class Chip:
    """Emulated chip with banks x rings add-drop microrings fed by WDM lasers (see module docstring)."""

    def __init__(self, spec: ChipSpec | None = None, seed: int = 0, threads: int | None = None) -> None:
        self._spec = spec if spec is not None else ChipSpec()
        self._seed = int(seed)
        fab_rng, self._noise_rng, drift_rng = spawn_streams(self._seed)
        self._params = draw_chip_params(self._spec, self._seed, fab_rng)
        self._clock = VirtualClock()
        th = self._spec.thermal
        self._drift = TemperatureDrift(th.drift_rms_k, th.drift_reference_time_s, drift_rng, self._clock)
        h, c = self.n_heaters, self.n_channels
        self._drive = np.zeros(h)
        self._is_current = np.zeros(h, dtype=bool)
        self._settling = _heaters.ThermalSettling(h, th.time_constant_s)
        self._last_drive_time_s = 0.0
        self._laser_commanded_m = np.array(self._spec.lasers.channel_wavelengths_m())
        self._laser_actual_m = self._laser_commanded_m.copy()
        self._laser_power_w = np.full(c, self._spec.lasers.power_w)
        self._laser_on = np.ones(c, dtype=bool)
        self._const_cache: dict[bytes, BankConstants] = {}
        # Measured: a 2-thread pool over chunks gives no gain on the 2-vCPU reference VM (each chunk is ~30 short
        # ufunc calls and the GIL hand-offs eat the overlap), so the default is 1; pass threads=2 to try.
        self._threads = threads if threads is not None else 1
        self._pool: ThreadPoolExecutor | None = None
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
        """Apply a drive (V or A) to all heaters or to ``channels``; quantized by the DAC, starts settling now."""
        fs = self._full_scale(mode)
        vals = np.asarray(values, dtype=float)
        idx = np.arange(self.n_heaters) if channels is None else np.asarray(channels, dtype=int).reshape(-1)
        vals = np.broadcast_to(vals, idx.shape) if vals.ndim == 0 else vals.reshape(-1)
        if vals.shape != idx.shape:
            raise ValueError(f"values must have shape {idx.shape}, got {vals.shape}")
        if not np.all(np.isfinite(vals)):
            raise ValueError("heater drive values must be finite")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_heaters):
            raise ValueError(f"heater channels must be in [0, {self.n_heaters}), got {idx.tolist()}")
        drive = self._drive.copy()
        is_current = self._is_current.copy()
        drive[idx] = _heaters.quantize_drive(vals, self._spec.heaters.dac_bits, fs)
        is_current[idx] = mode == "current"
        power = self._power_for(drive, is_current)
        self._drive, self._is_current = drive, is_current
        self._settling.command(power, self._clock.now_s)
        self._last_drive_time_s = self._clock.now_s
        hs = self._spec.heaters
        if np.any(power > hs.max_power_w) or power.sum() > hs.max_total_power_w:
            log.warning("heater power beyond the safe limits (max %.4g W, total %.4g W)", power.max(), power.sum())

    def _power_for(self, drive: np.ndarray, is_current: np.ndarray) -> np.ndarray:
        p = self._params
        volt = _heaters.power_from_voltage_w(np.where(is_current, 0.0, drive), p.heater_resistance_ohm,
                                             p.self_heating_per_w)
        curr = _heaters.power_from_current_w(np.where(is_current, drive, 0.0), p.heater_resistance_ohm,
                                             p.self_heating_per_w)
        return np.where(is_current, curr, volt)

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
    ) -> None:
        """Set per-channel laser wavelength (each set adds a +-repeatability error), power and on/off, (C,) each."""
        c = self.n_channels
        ls = self._spec.lasers
        if wavelength_m is not None:
            wl = np.broadcast_to(np.asarray(wavelength_m, dtype=float), (c,)).copy()
            if not np.all(np.isfinite(wl) & (wl > 0)):
                raise ValueError("laser wavelengths must be finite and > 0")
            err = ls.wavelength_repeatability_m * self._noise_rng.uniform(-1.0, 1.0, c)
            changed = wl != self._laser_commanded_m
            self._laser_actual_m = np.where(changed, wl + err, self._laser_actual_m)
            self._laser_commanded_m = wl
        if power_w is not None:
            pw = np.broadcast_to(np.asarray(power_w, dtype=float), (c,)).copy()
            if not np.all((pw >= ls.min_power_w) & (pw <= ls.max_power_w)):
                raise ValueError(f"laser power must be within [{ls.min_power_w}, {ls.max_power_w}] W, got {pw}")
            self._laser_power_w = pw
        if on is not None:
            self._laser_on = np.broadcast_to(np.asarray(on, dtype=bool), (c,)).copy()

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
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(balanced current, through bus power, drop bus power), each (B, N).

        ``resonances(s, e)`` gives the (H, e - s) resonances of points s..e; it is called once per block of
        BLOCK_POINTS points (inside the worker), and the kernel then runs over cache-sized chunks of the block. Noise is drawn for the whole batch
        up front, so results do not depend on chunking or threading.
        """
        nb = self.n_banks
        rin = gauss = None
        if noise:
            sig = rin_sigma(self._spec.lasers.rin_db_per_hz, averaging_time_s)
            rin = self._noise_rng.standard_normal(pin_cn.shape)
            rin *= sig
            rin += 1.0
            gauss = self._noise_rng.standard_normal((nb, n))
        thr = np.empty((nb, n))
        drop = np.empty((nb, n))
        step = DEFAULT_CHUNK_POINTS

        def work_block(bs: int) -> None:
            be = min(bs + BLOCK_POINTS, n)
            res_block = resonances(bs, be)  # drive -> power -> resonance once per block (amortises call overhead)
            for s in range(bs, be, step):
                e = min(s + step, be)
                t_bwn, d_bwn = fast_port_transmissions(k, res_block[:, s - bs : e - bs])
                pin = pin_cn[:, s:e] if rin is None else pin_cn[:, s:e] * rin[:, s:e]
                np.einsum("bcn,cn->bn", t_bwn, pin, out=thr[:, s:e])
                np.einsum("bcn,cn->bn", d_bwn, pin, out=drop[:, s:e])

        blocks = list(range(0, n, BLOCK_POINTS))
        workers = min(self._threads, len(blocks))
        if workers > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="labctl-sim")
            list(self._pool.map(work_block, blocks))
        else:
            for bs in blocks:
                work_block(bs)
        det = self._spec.detector
        resp = det.responsivity_a_per_w
        dark = self._params.dark_current_a
        i_drop = resp * drop + dark[:, 1:2]
        i_thr = resp * thr + dark[:, 0:1]
        current = i_drop - i_thr
        if gauss is not None:
            current += detector_noise_sigma_a(i_drop, i_thr, averaging_time_s, det) * gauss
        current = quantize_signed(current, det.readout_bits, det.readout_range_a)
        return current, thr, drop

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
    def _state_resonances_hn(self) -> np.ndarray:
        return self._resonances_hn(self._settling.effective_w(self._clock.now_s)[None, :])

    def _state_simulate(self, averaging_time_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = self._constants(self._laser_actual_m)
        res = self._state_resonances_hn()
        return self._simulate(k, lambda s, e: res, 1, self._state_pin_cn(), averaging_time_s, True)

    def _state_pin_cn(self) -> np.ndarray:
        return (self._laser_power_w * self._laser_on * self._input_factor)[:, None]

    def read_balanced_current_a(self, averaging_time_s: float) -> np.ndarray:
        """Balanced detector current per bank at the current virtual time (heater settling applies), (B,)."""
        cur, _, _ = self._state_simulate(averaging_time_s)
        return cur[:, 0]

    def read_port_power_w(self, averaging_time_s: float) -> np.ndarray:
        """Optical power at the [through, drop] ports per bank, with laser RIN but no meter model, (B, 2)."""
        _, thr, drop = self._state_simulate(averaging_time_s)
        return np.stack([thr[:, 0], drop[:, 0]], axis=1) * self._output_factor

    def meter_reading_w(
        self, power_w: np.ndarray, averaging_time_s: float, range_dbm: float, meter: np.ndarray | None = None
    ) -> MeterReading:
        """Power-meter model applied to optical powers.

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
        thr_s = np.empty((self.n_banks, wl.size, 1), dtype=np.float32)
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
        d = self._check_drive(drive)
        fs = self._full_scale(mode)
        n = d.shape[0]
        pin = self._pin_cn(self._laser_power_w if input_power_w is None else input_power_w, n)
        k = self._constants(self._laser_actual_m)
        if mode == "current":  # runaway check on the whole batch before any work
            self._drive_power_w(d, mode)
        p = self._params
        lsb = fs / (2**self._spec.heaters.dac_bits - 1)
        r0 = p.heater_resistance_ohm
        r0_sq, four_gamma_r0 = r0 * r0, 4.0 * p.self_heating_per_w * r0
        base = (p.base_resonance_m + self._drift_shift_m())[:, None]
        k_mat = p.crosstalk_m_per_w

        def resonances(s: int, e: int) -> np.ndarray:
            # Same maths as heaters.quantize_drive / power_from_voltage_w, with out= buffers, once per block.
            v = np.maximum(d[s:e], 0.0)
            np.minimum(v, fs, out=v)
            v *= 1.0 / lsb
            np.rint(v, out=v)
            v *= lsb
            if mode == "voltage":
                np.square(v, out=v)  # V^2
                root = v * four_gamma_r0
                root += r0_sq
                np.sqrt(root, out=root)
                root += r0
                v *= 2.0
                v /= root  # P = 2 V^2 / (R0 + sqrt(R0^2 + 4 gamma R0 V^2))
                power = v
            else:
                power = _heaters.power_from_current_w(v, r0, p.self_heating_per_w)
            res = k_mat @ power.T  # (H, n)
            res += base
            return res

        cur, thr, drop = self._simulate(k, resonances, n, pin, averaging_time_s, noise)
        f = self._output_factor
        return Evaluation(balanced_current_a=cur.T, through_power_w=thr.T * f, drop_power_w=drop.T * f)

    def close(self) -> None:
        """Stop the worker threads (optional; they are daemon-free but idle)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

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
