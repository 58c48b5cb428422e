"""Coherent microring weight-bank optics, vectorized over banks, rings, wavelengths and operating points.

Ring r (bank b, position j) has round-trip phase phi = 2 pi n_g L (1/lambda - 1/lambda_res) (1/lambda form:
resonances at lambda_res and every FSR = lambda^2/(n_g L)). It factorises as
exp(i phi) = exp(i 2 pi n_g L / lambda) * exp(-i 2 pi n_g L / lambda_res): the first factor depends on (ring,
wavelength) only and is precomputed per wavelength set (``BankConstants``), the second on (point, ring) only, so
cos/sin are evaluated per (point, ring), never per (point, ring, wavelength). The same holds for s = exp(i phi/2).

Add-drop ring (Airy form), self-couplings r1 (input/through bus), r2 (drop bus), round-trip amplitude a,
z = s^2 = exp(i phi), x = r1 r2 a, kappa = sqrt((1-r1^2)(1-r2^2) a), den = 1 - x z:
    t  = (r1 - r2 a z) / den          through bus -> through bus
    t' = (r2 - r1 a z) / den          drop bus -> drop bus
    d  = -kappa s / den               through bus -> drop bus, and (reciprocity) drop bus -> through bus
(for a = 1 the ring's 2x2 scattering matrix [[t, d], [d, t']] is unitary).

Bank topology: light enters the through bus and travels right past rings 0..R-1 to the through port; the drop bus
carries light left, from ring R-1 toward the drop port beside the input. Gap j (after ring j) has through-bus factor
psi_j = exp(i theta_j) * loss and drop-bus factor psi'_j = exp(i theta'_j) * loss (theta = 2 pi n_eff l / lambda,
0.1 dB per ring passed on each bus). Per ring, with a_j the right-moving field arriving at ring j and c_in the
left-moving drop-bus field arriving at it from ring j+1:
    through-bus out (right) = t a_j + d c_in,        drop-bus out (left, toward the drop port) = d a_j + t' c_in.
Light on the drop bus that passes ring j couples into the SAME ring mode as the input and leaves on the through
bus travelling forward, toward rings j+1.. and the through port. The two counter-propagating buses therefore form
a two-point boundary-value problem (a_0 = 1, nothing enters the drop bus beyond ring R-1), solved exactly:

Gamma_j = (drop-bus field leaving ring j) / (field arriving at ring j) obeys the Moebius (Riccati) recursion
    Gamma_R = 0,   X_j = psi_j psi'_j Gamma_{j+1},   Gamma_j = (d + (t t' - d^2) X_j) / (1 - d X_j),
i.e. Gamma_j = p_j/q_j with [p_j; q_j] = M_j [p_{j+1}; q_{j+1}], M_j = [[t t' - d^2, d], [-d, 1]] diag(psi psi', 1).
The forward gain of ring j is g_j = t_j psi_j / (1 - d_j X_j) and prod_j (1 - d_j X_j) = q_0 / q_R telescopes, so
    E_drop = Gamma_0 = p_0 / q_0,       E_through = prod_j (t_j psi_j) / q_0,     [p_0; q_0] = M_0 ... M_{R-1} [0; 1].
Since t t' - d^2 = (r1 r2 - a z)/den, den M_j = [[(r1 r2 - a z) psi psi', -kappa s], [kappa s psi psi', den]] is
division-free, and with these matrices E_through = prod_j ((r1 - r2 a z) psi_j) / q_0. ``fields_f64`` evaluates
the recursion directly in float64 (the truth path); ``incoherent_transmissions_f64`` is the same recursion for
powers (|t|^2, |t'|^2, |d|^2, |psi|^2: every inter-ring path adds in power), the incoherent counterpart of the
same two-bus bank, for comparison only.

Fast kernel (float32, compiled with numba in ``kernels``): the division-free matrices are rescaled by
constants -- a per-ring factor and a diagonal similarity diag(u_j, v_j) between neighbouring rings, which cancel in
the product up to per-(bank, wavelength) constants applied at the end -- so that
    M'_j = [[gamma_j w_j + alpha_j, h_j], [c_j h_j, w_j - 1]],     h_j = sqrt(x_j) s_j,   w_j = h_j^2 = x_j z_j
(w - 1 = -den; log|den| averages to 0 over a free spectral range, so long float32 products stay centred on 1).
Per (point, ring, wavelength) that is 1 product (h = constant * exp(i phi_point/2)), 1 square, 2 products and
3 sums, then the 2x2 matrix-vector product: [p'; q'] = M'_0 ... M'_{R-2} [h; w - 1]_{R-1} is accumulated ring by
ring from the far end, with the state in registers and the point (or wavelength) loop vectorized, and with
k_j = sqrt(x_j)/kappa_j
    E_drop = p' / (k_0 q'),      E_through = prod_j (psi_j / r1_j) * prod_j (w_j - r1_j^2) / q',
with a single division, 1/|q'|^2, per (point, bank, wavelength) (the squares are taken in float64, out of reach of
float32 overflow). The bank's bus powers sum |E|^2 times the channel powers in channel order, in the same loop.
Derivation: M'_j = sigma_j diag(u_j, v_j)^-1 (den M_j) diag(u_{j+1}, v_{j+1}) with sigma_j v_{j+1}/v_j = -1 (makes
the D entry w - 1) and sigma_j v_{j+1}/u_j = -sqrt(x_j)/kappa_j (makes the B entry h), hence v_j/u_j = k_j and
gamma_j = (k_j/k_{j+1}) Psi_j/(r1 r2), alpha_j = -(k_j/k_{j+1}) Psi_j r1 r2, c_j = -kappa_j Psi_j/(k_{j+1} sqrt(x_j)),
Psi_j = psi_j psi'_j; the product telescopes to [u_0 p'; v_0 q'] / (v_R prod sigma) with prod sigma v_{j+1}/v_j =
(-1)^R, which gives the two formulas above (the (-1)^R and the phases of constants drop out of |.|^2).
Accuracy: |E|^2 within ~1e-5 of the float64 path on the default chip (float32 phase rounding, ~1e-7 rad, is the
main term; it is amplified near sharp coupled-ring features, up to ~1e-4 on a lossless close bank).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from labctl.sim.chip_params import ChipParams

__all__ = [
    "BankConstants",
    "build_constants",
    "bus_factors",
    "bus_powers",
    "fast_port_transmissions",
    "fields_f64",
    "incoherent_transmissions_f64",
    "kernels",
]


_N_CONST = 8  # cst rows: lam, gam, alp, cc, each as (real, imag)


@dataclass(frozen=True, eq=False)
class BankConstants:
    """Per (bank, ring, wavelength) constants of the fast kernel for one set of wavelengths (float64 maths, then
    cast once to the kernel's float32). Ring index h = b*R + j, as everywhere else."""

    n_banks: int
    n_rings: int
    wavelength_m: np.ndarray  # (W,)
    half_phase_coef: np.ndarray  # (H,) float64: pi n_g L
    half_phase_ref: np.ndarray  # (H,) float64: pi n_g L / lambda_ref (keeps cos/sin arguments small)
    cst: np.ndarray  # (8, B, R, W) float32: re/im of lam, gam, alp, cc (gam, alp, cc unused for the last ring)
    nu: np.ndarray  # (B, R) float32: r1^2, E_through factor (w - nu)
    drop_scale: np.ndarray  # (B, W) float64: 1 / k_0^2
    through_scale: np.ndarray  # (B, W) float64: prod_j |psi_j|^2 / r1_j^2


def _ring_bank(arr: np.ndarray, n_banks: int, n_rings: int) -> np.ndarray:
    """(H, ...) with H = b*R + i -> (R, B, ...)."""
    return np.swapaxes(arr.reshape((n_banks, n_rings) + arr.shape[1:]), 0, 1)


def bus_factors(params: ChipParams, wavelength_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(psi, psi') per (B, R, W): field factor of through-bus gap j and drop-bus gap j (phase and loss)."""
    wl = np.asarray(wavelength_m, dtype=float)
    k = 2 * math.pi * params.effective_index / wl
    loss = params.bus_loss_amplitude
    psi = np.exp(1j * params.through_gap_length_m[:, :, None] * k) * loss
    psi_d = np.exp(1j * params.drop_gap_length_m[:, :, None] * k) * loss
    return psi, psi_d


def build_constants(params: ChipParams, n_banks: int, n_rings: int, wavelength_m: np.ndarray) -> BankConstants:
    """Precompute everything that depends only on (ring, wavelength) for the fast kernel (float64, then cast)."""
    wl = np.asarray(wavelength_m, dtype=float).reshape(-1)
    nw = wl.size
    rb = lambda v: _ring_bank(np.asarray(v), n_banks, n_rings)  # noqa: E731
    r1, r2, a = rb(params.r_through), rb(params.r_drop), rb(params.round_trip_amplitude)  # (R, B)
    x = r1 * r2 * a
    kappa = np.sqrt((1 - r1**2) * (1 - r2**2) * a)
    lam = np.sqrt(x)  # |h| = sqrt(x), D = w - 1 = -den: log|den| averages to 0 over a FSR (Jensen)
    k = x / (kappa * lam)  # v_j / u_j of the diagonal similarity that makes the B entry exactly h
    ngl = rb(params.group_index * params.ring_length_m)  # (R, B)
    ref = rb(params.design_resonance_m)
    psi, psi_d = bus_factors(params, wl)  # (B, R, W)
    psi, psi_d = np.swapaxes(psi, 0, 1), np.swapaxes(psi_d, 0, 1)  # (R, B, W)
    big_psi = psi * psi_d
    e = lambda v: v[:, :, None]  # noqa: E731  (R, B) -> (R, B, 1)
    ratio = np.ones_like(k)
    ratio[:-1] = k[:-1] / k[1:]  # k_j / k_{j+1}
    k_next = np.ones_like(k)
    k_next[:-1] = k[1:]
    lam_c = e(lam) * np.exp(1j * math.pi * e(ngl) * (1 / wl[None, None, :] - 1 / e(ref)))
    gam = e(ratio) * big_psi / e(r1 * r2)
    alp = -e(ratio * r1 * r2) * big_psi
    cc = -e(kappa / (k_next * lam)) * big_psi
    cst = np.empty((_N_CONST, n_banks, n_rings, nw), np.float32)
    for q, v in enumerate((lam_c, gam, alp, cc)):
        v = np.swapaxes(v, 0, 1).astype(np.complex64)  # (B, R, W), rounded as complex64 (re and im separately)
        cst[2 * q], cst[2 * q + 1] = v.real, v.imag
    through_scale = np.prod(np.abs(psi) ** 2 / e(r1**2), axis=0)  # (B, W)
    drop_scale = np.broadcast_to(1 / k[0, :, None] ** 2, (n_banks, nw))
    return BankConstants(
        n_banks=n_banks,
        n_rings=n_rings,
        wavelength_m=wl,
        half_phase_coef=np.ascontiguousarray((math.pi * ngl).T).reshape(-1),
        half_phase_ref=np.ascontiguousarray((math.pi * ngl / ref).T).reshape(-1),
        cst=cst,
        nu=np.ascontiguousarray((r1**2).T, dtype=np.float32),
        drop_scale=np.ascontiguousarray(drop_scale, dtype=np.float64),
        through_scale=np.ascontiguousarray(through_scale, dtype=np.float64),
    )


@functools.cache
def kernels() -> ModuleType:
    """The compiled kernels (``labctl.sim.kernels``), imported on first use: importing numba costs ~0.5 s that code
    paths without the chip optics should not pay."""
    from labctl.sim import kernels as compiled

    return compiled


def _kernel_f64(a: np.ndarray) -> np.ndarray:
    """C-contiguous, writable float64 (a copy only when needed): the one argument type the kernels are compiled for
    (a read-only or strided array would trigger another compilation, seconds in every fresh process)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    return a if a.flags.writeable else a.copy()


def _half_phase_cos_sin(k: BankConstants, resonance_m: np.ndarray) -> np.ndarray:
    """(2, B, R, n) float32 cos and sin of the per-(ring, point) half phase -(phi/2 reduced) for resonances (H, n).

    float64 up to the reduced argument (small: float32 is then enough), then numpy's SIMD float32 sin and cos.
    """
    res = _kernel_f64(resonance_m)
    nh = k.n_banks * k.n_rings
    if res.ndim != 2 or res.shape[0] != nh:
        raise ValueError(f"resonance_m must have shape ({nh}, n), got {res.shape}")
    z = np.empty((2,) + res.shape, dtype=np.float32)
    kernels().half_phase_args(res, k.half_phase_coef, k.half_phase_ref, z[0])
    np.sin(z[0], out=z[1])
    np.cos(z[0], out=z[0])
    return z.reshape(2, k.n_banks, k.n_rings, res.shape[1])


def fast_port_transmissions(k: BankConstants, resonance_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|E_through|^2 and |E_drop|^2, each (B, W, n) float64, for resonances (H, n) (point axis last).

    Compiled float32 kernel (see the module docstring); many points vectorize over points, a spectrum (few points,
    many wavelengths) over wavelengths, with the same bits either way.
    """
    z = _half_phase_cos_sin(k, resonance_m)
    shape = (k.n_banks, k.wavelength_m.size, z.shape[3])
    thr, drop = np.empty(shape), np.empty(shape)
    kernels().bank_powers(z, k.cst, k.nu, k.through_scale, k.drop_scale, np.empty((0, z.shape[3])), thr, drop)
    return thr, drop


def bus_powers(k: BankConstants, resonance_m: np.ndarray, pin_wn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bus powers (through, drop), each (B, n) float64: sum over channels c of |E|^2 (b, c, point) * pin_wn[c, point].

    The hot path of ``Chip.evaluate``: the optics and the channel sum in one compiled pass, so the (B, W, n)
    transmissions are never stored. Each point's result depends only on that point's inputs.
    """
    z = _half_phase_cos_sin(k, resonance_m)
    n = z.shape[3]
    pin = _kernel_f64(pin_wn)
    if pin.shape != (k.wavelength_m.size, n):
        raise ValueError(f"pin_wn must have shape ({k.wavelength_m.size}, {n}), got {pin.shape}")
    thr, drop = np.zeros((k.n_banks, 1, n)), np.zeros((k.n_banks, 1, n))
    if pin.shape[0] == 0:  # no channels, no light (the kernel reads an empty pin as "per-channel output")
        return thr[:, 0], drop[:, 0]
    kernels().bank_powers(z, k.cst, k.nu, k.through_scale, k.drop_scale, pin, thr, drop)
    return thr[:, 0], drop[:, 0]


# ---- float64 reference path (truth functions, tests) ----------------------------------------------------------
def _ring_terms_f64(
    params: ChipParams, n_banks: int, n_rings: int, resonance_m: np.ndarray, wavelength_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """t, t', d as complex128 (N, B, R, W) straight from the formulas."""
    wl = np.asarray(wavelength_m, dtype=float)
    ngl = (params.group_index * params.ring_length_m).reshape(n_banks, n_rings)[None, :, :, None]
    res = resonance_m.reshape(-1, n_banks, n_rings)[..., None]
    phi = 2 * math.pi * ngl * (1 / wl - 1 / res)
    z = np.exp(1j * phi)
    shape = (1, n_banks, n_rings, 1)
    r1 = params.r_through.reshape(shape)
    r2 = params.r_drop.reshape(shape)
    a = params.round_trip_amplitude.reshape(shape)
    den = 1 - r1 * r2 * a * z
    t = (r1 - r2 * a * z) / den
    tp = (r2 - r1 * a * z) / den
    d = -np.sqrt((1 - r1**2) * (1 - r2**2) * a) * np.exp(0.5j * phi) / den
    return t, tp, d


def _two_bus_recursion(
    t: np.ndarray, tp: np.ndarray, d: np.ndarray, psi: np.ndarray, psi_d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(through, drop) of the two-bus bank from per-ring terms (N, B, R, W) and gap factors (B, R, W).

    Backward Riccati recursion from the far end (Gamma_R = 0): X = psi psi' Gamma_{j+1},
    Gamma_j = (d + (t t' - d^2) X) / (1 - d X), forward gain g_j = t psi / (1 - d X); through = prod g, drop = Gamma_0.
    Works for fields (complex) and, fed with |.|^2 of everything, for powers.
    """
    gamma = np.zeros(np.broadcast_shapes(t[:, :, 0].shape, d[:, :, 0].shape), dtype=np.result_type(t, d, psi))
    thr = np.ones_like(gamma)
    for j in range(t.shape[2] - 1, -1, -1):
        x = psi[:, j] * psi_d[:, j] * gamma
        den = 1 - d[:, :, j] * x
        gamma = (d[:, :, j] + (t[:, :, j] * tp[:, :, j] - d[:, :, j] ** 2) * x) / den
        thr = thr * (t[:, :, j] * psi[:, j] / den)
    return thr, gamma


def fields_f64(
    params: ChipParams, n_banks: int, n_rings: int, resonance_m: np.ndarray, wavelength_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coherent (E_through, E_drop), complex128 (N, B, W), for resonances (N, H). Reference accuracy, not speed."""
    wl = np.asarray(wavelength_m, dtype=float)
    t, tp, d = _ring_terms_f64(params, n_banks, n_rings, resonance_m, wl)
    psi, psi_d = bus_factors(params, wl)
    return _two_bus_recursion(t, tp, d, psi, psi_d)


def incoherent_transmissions_f64(
    params: ChipParams, n_banks: int, n_rings: int, resonance_m: np.ndarray, wavelength_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Incoherent two-bus bank (same topology, every inter-ring path adds in power): (through, drop) powers (N, B, W).

    Same recursion as ``fields_f64`` with |t|^2, |t'|^2, |d|^2 and |psi|^2, |psi'|^2 (no bus phases).
    """
    wl = np.asarray(wavelength_m, dtype=float)
    t, tp, d = _ring_terms_f64(params, n_banks, n_rings, resonance_m, wl)
    psi, psi_d = bus_factors(params, wl)
    p2 = lambda v: np.abs(v) ** 2  # noqa: E731
    return _two_bus_recursion(p2(t), p2(tp), p2(d), p2(psi), p2(psi_d))
