"""Plain scalar reference of the emulator physics: Python loops and cmath, straight from the formulas.

Reads the hidden parameters through ``chip.truth_params()``; used by the tests and by bench/emulator_throughput.py
to check the vectorized float32 kernel. Deliberately slow and obvious: each bank is solved as the linear system of
its per-ring scattering relations (independent of the Moebius/transfer-matrix algebra used in sim/optics.py).
"""

from __future__ import annotations

import cmath
import math
from typing import Any, Sequence

import numpy as np


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


def _ring_coefficients(p: Any, g: int, resonance_m: float, wavelength_m: float) -> tuple[complex, complex, complex]:
    """(t, t', d) of global ring g: Airy add-drop ring, straight from the formulas."""
    r1, r2, a = float(p.r_through[g]), float(p.r_drop[g]), float(p.round_trip_amplitude[g])
    ngl = p.group_index * float(p.ring_length_m[g])
    phi = 2 * math.pi * ngl * (1 / wavelength_m - 1 / resonance_m)
    z = cmath.exp(1j * phi)
    den = 1 - r1 * r2 * a * z
    t = (r1 - r2 * a * z) / den
    tp = (r2 - r1 * a * z) / den
    d = -math.sqrt((1 - r1 * r1) * (1 - r2 * r2) * a) * cmath.exp(0.5j * phi) / den
    return t, tp, d


def bank_fields(chip: Any, resonance: Sequence[float], wavelength_m: float, bank: int) -> tuple[complex, complex]:
    """(E_through, E_drop) of one bank at one wavelength, from the per-ring scattering relations.

    Unknowns: a_1..a_R (right-moving through-bus field arriving at ring j; a_R is the through port) and c_0..c_{R-1}
    (left-moving drop-bus field leaving ring j toward the drop port; c_0 is the drop port). With a_0 = 1,
    c_in_j = psi'_j c_{j+1} (c_in_{R-1} = 0) and per ring j
        a_{j+1} = psi_j (t_j a_j + d_j c_in_j),        c_j = d_j a_j + t'_j c_in_j,
    i.e. 2R linear equations, solved directly (numpy.linalg.solve on a small complex128 matrix).
    """
    p = chip.truth_params()
    nr = chip.n_rings
    loss = p.bus_loss_amplitude
    n = 2 * nr
    col_a = lambda j: j - 1  # noqa: E731  column of a_j, j = 1..R
    col_c = lambda j: nr + j  # noqa: E731  column of c_j, j = 0..R-1
    mat = np.zeros((n, n), dtype=complex)
    rhs = np.zeros(n, dtype=complex)
    for j in range(nr):
        g = bank * nr + j
        t, tp, d = _ring_coefficients(p, g, resonance[g], wavelength_m)
        psi = cmath.exp(2j * math.pi * p.effective_index * float(p.through_gap_length_m[bank, j]) / wavelength_m) * loss
        psi_d = cmath.exp(2j * math.pi * p.effective_index * float(p.drop_gap_length_m[bank, j]) / wavelength_m) * loss
        row_a, row_c = j, nr + j
        # a_{j+1} - psi t a_j - psi d psi' c_{j+1} = 0
        mat[row_a, col_a(j + 1)] += 1
        if j == 0:
            rhs[row_a] += psi * t  # a_0 = 1
        else:
            mat[row_a, col_a(j)] -= psi * t
        # c_j - d a_j - t' psi' c_{j+1} = 0
        mat[row_c, col_c(j)] += 1
        if j == 0:
            rhs[row_c] += d
        else:
            mat[row_c, col_a(j)] -= d
        if j < nr - 1:  # nothing enters the drop bus beyond the last ring
            mat[row_a, col_c(j + 1)] -= psi * d * psi_d
            mat[row_c, col_c(j + 1)] -= tp * psi_d
    sol = np.linalg.solve(mat, rhs)
    return complex(sol[col_a(nr)]), complex(sol[col_c(0)])


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
