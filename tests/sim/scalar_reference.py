"""Plain scalar reference of the emulator physics: Python loops and cmath, straight from the formulas.

Reads the hidden parameters through ``chip.truth_params()``; used by the tests and by bench/emulator_throughput.py
to check the vectorized float32 kernel. Deliberately slow and obvious.
"""

from __future__ import annotations

import cmath
import math
from typing import Any, Sequence


def heater_power_w(drive: float, mode: str, r0_ohm: float, gamma_per_w: float) -> float:
    """Self-heating power for one heater."""
    if mode == "voltage":
        # gamma R0 P^2 + R0 P - V^2 = 0
        a, b, c = gamma_per_w * r0_ohm, r0_ohm, -drive * drive
        return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) if a > 0 else drive * drive / r0_ohm
    return drive * drive * r0_ohm / (1 - gamma_per_w * drive * drive * r0_ohm)


def quantize(value: float, bits: int, full_scale: float) -> float:
    lsb = full_scale / (2**bits - 1)
    return round(min(max(value, 0.0), full_scale) / lsb) * lsb


def resonances_m(chip: Any, drive: Sequence[float], mode: str = "voltage") -> list[float]:
    """Settled resonance of every ring (global index), at the chip's current temperature."""
    p = chip.truth_params()
    hs = chip.spec.heaters
    fs = hs.dac_full_scale_v if mode == "voltage" else hs.dac_full_scale_a
    h = len(drive)
    power = [
        heater_power_w(quantize(drive[k], hs.dac_bits, fs), mode, float(p.heater_resistance_ohm[k]),
                       p.self_heating_per_w)
        for k in range(h)
    ]
    drift = chip.truth_temperature_offset_k() * chip.spec.thermal.temperature_coefficient_m_per_k
    out = []
    for r in range(h):
        shift = sum(float(p.crosstalk_m_per_w[r, k]) * power[k] for k in range(h))
        out.append(float(p.design_resonance_m[r] + p.fabrication_offset_m[r]) + shift + drift)
    return out


def bank_fields(chip: Any, resonance: Sequence[float], wavelength_m: float, bank: int) -> tuple[complex, complex]:
    """(E_through, E_drop) of one bank at one wavelength."""
    p = chip.truth_params()
    nr = chip.n_rings
    loss = p.bus_loss_amplitude
    e_thr = 1 + 0j
    e_drop = 0j
    path = 1 + 0j  # prod_{j<i} t_j t'_j exp(i(theta_j + theta'_j)) loss^2
    for i in range(nr):
        g = bank * nr + i
        r1, r2, a = float(p.r_through[g]), float(p.r_drop[g]), float(p.round_trip_amplitude[g])
        ngl = p.group_index * float(p.ring_length_m[g])
        phi = 2 * math.pi * ngl * (1 / wavelength_m - 1 / resonance[g])
        z = cmath.exp(1j * phi)
        den = 1 - r1 * r2 * a * z
        t = (r1 - r2 * a * z) / den
        tp = (r2 - r1 * a * z) / den
        d = -math.sqrt((1 - r1 * r1) * (1 - r2 * r2) * a) * cmath.exp(0.5j * phi) / den
        theta = 2 * math.pi * p.effective_index * float(p.through_gap_length_m[bank, i]) / wavelength_m
        theta_d = 2 * math.pi * p.effective_index * float(p.drop_gap_length_m[bank, i]) / wavelength_m
        e_drop += d * path
        e_thr *= t * cmath.exp(1j * theta) * loss
        path *= t * tp * cmath.exp(1j * (theta + theta_d)) * loss * loss
    return e_thr, e_drop


def port_powers_w(
    chip: Any, drive: Sequence[float], input_power_w: Sequence[float], mode: str = "voltage"
) -> tuple[list[float], list[float], list[float]]:
    """Noise-free (balanced current before readout quantization, through port, drop port) per bank."""
    spec = chip.spec
    res = resonances_m(chip, drive, mode)
    facet = 10 ** (-spec.optics.facet_loss_db / 10)
    split = spec.optics.bank_split_fraction
    wl = chip.truth_laser_wavelength_m()
    p = chip.truth_params()
    current, thr_port, drop_port = [], [], []
    for b in range(chip.n_banks):
        thr = drop = 0.0
        for c in range(chip.n_channels):
            e_t, e_d = bank_fields(chip, res, float(wl[c]), b)
            pin = input_power_w[c] * facet * split
            thr += pin * abs(e_t) ** 2
            drop += pin * abs(e_d) ** 2
        resp = spec.detector.responsivity_a_per_w
        current.append(resp * (drop - thr) + float(p.dark_current_a[b, 1] - p.dark_current_a[b, 0]))
        thr_port.append(thr * facet)
        drop_port.append(drop * facet)
    return current, thr_port, drop_port
