"""Coherent microring weight-bank optics, vectorized over banks, rings, wavelengths and operating points.

Ring r (bank b, position i) has round-trip phase phi = 2 pi n_g L (1/lambda - 1/lambda_res) (1/lambda form:
resonances at lambda_res and every FSR = lambda^2/(n_g L)). It factorises as
exp(i phi) = exp(i 2 pi n_g L / lambda) * exp(-i 2 pi n_g L / lambda_res): the first factor depends on (ring,
wavelength) only and is precomputed per wavelength set (``BankConstants``), the second on (point, ring) only, so
cos/sin are evaluated per (point, ring), never per (point, ring, wavelength). The same holds for exp(i phi/2).

Add-drop ring (Airy form), self-couplings r1 (input/through bus), r2 (drop bus), round-trip amplitude a,
z = exp(i phi), x = r1 r2 a:
    t  = (r1 - r2 a z) / (1 - x z)            through field seen from the input bus
    t' = (r2 - r1 a z) / (1 - x z)            through field for light on the drop bus
    d  = -sqrt((1-r1^2)(1-r2^2) a) exp(i phi/2) / (1 - x z)
Bank (counter-propagating drop bus): light enters the through bus and passes rings 0..R-1, each gap j adding the
bus phase theta_j = 2 pi n_eff l_j / lambda and field loss (0.1 dB per ring); light dropped by ring i returns
along the drop bus past rings i-1..0 (each applies t', gap phase theta'_j and loss). Light coupled from the drop
bus back into the input bus travels toward the input and is lost. Hence
    E_through = prod_j t_j exp(i theta_j) loss
    E_drop    = sum_i d_i prod_{j<i} t_j t'_j exp(i (theta_j + theta'_j)) loss^2
The incoherent cascade (same topology, powers instead of fields) is provided for comparison only.

Fast kernel algebra (float32/complex64, point axis last so every ufunc runs over long contiguous rows):
with h = exp(i phi/2) and q = 1/(1 - x h^2), t = 1/r1 - (kappa1/r1) q, t' = 1/r2 - (kappa2/r2) q and d = D h q.
The constant D_i and the bus phases are folded into t' as rho_j = D_{j+1}/D_j, so
E_drop = D_0 * sum_i (h q)_i prod_{j<i} t_j t'_j rho_j, which is evaluated as a log-depth tree reduction of the
pairs (g, e) -> (g_a g_b, e_a + g_a e_b) over the ring axis (no Python loop per ring).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from .chip_params import ChipParams

__all__ = [
    "BankConstants",
    "TreePlan",
    "plan_tree",
    "build_constants",
    "fast_port_transmissions",
    "fields_f64",
    "incoherent_transmissions_f64",
    "bus_phase_factors",
]


@dataclass(frozen=True)
class TreePlan:
    """Memory order of the ring axis and the slices of each level of the (g, e) tree reduction.

    Rings are stored evens-then-odds so the first (largest) level combines two contiguous row blocks.
    """

    order: np.ndarray  # memory row k holds ring order[k]
    levels: tuple[tuple[slice, slice, bool], ...]  # (a rows, b rows, update g of a)


def plan_tree(n_rings: int) -> TreePlan:
    """Simulate the pairwise reduction over rings 0..R-1 and express every level as row slices."""
    order = list(range(0, n_rings, 2)) + list(range(1, n_rings, 2))
    row_of = {ring: k for k, ring in enumerate(order)}
    items = [row_of[r] for r in range(n_rings)]  # memory row of each segment, in ring order
    levels = []
    while len(items) > 1:
        p = len(items) // 2
        a_rows, b_rows = items[0 : 2 * p : 2], items[1 : 2 * p : 2]
        new_items = a_rows + ([items[-1]] if len(items) % 2 else [])
        levels.append((_as_slice(a_rows), _as_slice(b_rows), len(new_items) > 1))
        items = new_items
    return TreePlan(order=np.array(order), levels=tuple(levels))


def _as_slice(rows: list[int]) -> slice:
    step = rows[1] - rows[0] if len(rows) > 1 else 1
    if step <= 0 or any(b - a != step for a, b in zip(rows, rows[1:])):
        raise AssertionError(f"tree rows {rows} are not an arithmetic progression")
    return slice(rows[0], rows[-1] + 1, step)


@dataclass(frozen=True, eq=False)
class BankConstants:
    """Per (ring, bank, wavelength) constants of the fast kernel for one set of wavelengths.

    Ring axis first, in the tree's memory order; shape (R, B, W, 1). ``tiled(n)`` gives contiguous
    (R, B, W, n) copies, because numpy runs much faster on contiguous operands than on stride-0 broadcasts.
    """

    n_banks: int
    n_rings: int
    wavelength_m: np.ndarray  # (W,)
    plan: TreePlan
    row_index: np.ndarray  # (R*B,) global ring index of each (memory row, bank)
    half_phase_coef: np.ndarray  # (R*B, 1) float64: pi n_g L
    half_phase_ref: np.ndarray  # (R*B, 1) float64: pi n_g L / lambda_ref (keeps cos/sin arguments small)
    ahs: np.ndarray  # sqrt(s x) exp(i pi n_g L (1/lambda - 1/lambda_ref)); x = r1 r2 a, s = 1/sqrt(1 - x^2)
    s: np.ndarray  # s (real), so s*den = s - ahs^2 zh^2
    c1: np.ndarray  # 1/r1
    k1: np.ndarray  # s kappa1/r1
    c2: np.ndarray  # rho/r2 (0 for the last ring: its g is never used)
    k2: np.ndarray  # s rho kappa2/r2
    d0: np.ndarray  # (B, W, 1) drop constant of ring 0 (with the sqrt(x), sqrt(s) scalings folded in)
    through_loss: float  # loss^(2R) in power

    def tiled(self, n: int) -> dict[str, np.ndarray]:
        """Contiguous (R, B, W, n) complex64 copies of the per-element constants, cached per n."""
        names = ("ahs", "s", "c1", "k1", "c2", "k2")
        if n == 1:  # already the right shape (wavelength sweeps put wavelengths on the W axis)
            return {name: getattr(self, name) for name in names}
        cache = self.__dict__.setdefault("_tiled", {})
        if n not in cache:
            shape = self.ahs.shape[:3] + (n,)
            cache[n] = {
                name: np.ascontiguousarray(np.broadcast_to(getattr(self, name), shape))
                for name in names
            }
        return cache[n]


def _ring_bank(arr: np.ndarray, n_banks: int, n_rings: int) -> np.ndarray:
    """(H, ...) with H = b*R + i -> (R, B, ...)."""
    return np.swapaxes(arr.reshape((n_banks, n_rings) + arr.shape[1:]), 0, 1)


def bus_phase_factors(params: ChipParams, wavelength_m: np.ndarray) -> np.ndarray:
    """exp(i (theta_j + theta'_j)) * loss^2 per (B, R, W): one round of through gap j and drop gap j."""
    lengths = params.through_gap_length_m + params.drop_gap_length_m  # (B, R)
    theta = 2 * math.pi * params.effective_index * lengths[:, :, None] / wavelength_m[None, None, :]
    return np.exp(1j * theta) * params.bus_loss_amplitude**2


def build_constants(params: ChipParams, n_banks: int, n_rings: int, wavelength_m: np.ndarray) -> BankConstants:
    """Precompute everything that depends only on (ring, wavelength) for the fast kernel (float64, then cast)."""
    wl = np.asarray(wavelength_m, dtype=float).reshape(-1)
    plan = plan_tree(n_rings)
    rb = lambda a: _ring_bank(np.asarray(a), n_banks, n_rings)  # noqa: E731
    r1, r2, a = params.r_through, params.r_drop, params.round_trip_amplitude
    k1sq, k2sq = 1 - r1**2, 1 - r2**2
    x = r1 * r2 * a
    sc = 1 / np.sqrt(1 - x**2)  # scales den so |s den| is centred on 1: keeps float32 products in range
    ngl = params.group_index * params.ring_length_m  # (H,)
    ref = params.design_resonance_m  # (H,)
    ahs = np.sqrt(sc * x)[:, None] * np.exp(1j * math.pi * ngl[:, None] * (1 / wl[None, :] - 1 / ref[:, None]))
    dmag = -np.sqrt(k1sq * k2sq * a * sc / x)  # (H,): d = dmag * hs / (s den), hs = sqrt(s x) h
    theta = rb(bus_phase_factors(params, wl).reshape(n_banks * n_rings, -1))  # (R, B, W)
    dmag_rb = rb(dmag)  # (R, B)
    rho = np.zeros((n_rings, n_banks, wl.size), dtype=complex)
    rho[:-1] = (dmag_rb[1:] / dmag_rb[:-1])[:, :, None] * theta[:-1]
    c64 = np.complex64
    perm = plan.order

    def per_elem(v: np.ndarray) -> np.ndarray:  # (R, B, W) -> memory order, (R, B, W, 1) complex64
        return np.ascontiguousarray(v[perm][..., None]).astype(c64)

    def per_ring(v: np.ndarray) -> np.ndarray:
        return per_elem(np.broadcast_to(rb(v)[:, :, None], (n_rings, n_banks, wl.size)))

    return BankConstants(
        n_banks=n_banks,
        n_rings=n_rings,
        wavelength_m=wl,
        plan=plan,
        row_index=rb(np.arange(n_banks * n_rings))[perm].reshape(-1),
        half_phase_coef=rb(math.pi * ngl)[perm].reshape(-1, 1),
        half_phase_ref=rb(math.pi * ngl / ref)[perm].reshape(-1, 1),
        ahs=per_elem(rb(ahs)),
        s=per_ring(sc),
        c1=per_ring(1 / r1),
        k1=per_ring(sc * k1sq / r1),
        c2=per_elem(rho / rb(r2)[:, :, None]),
        k2=per_elem(rho * (rb(sc * k2sq) / rb(r2))[:, :, None]),
        d0=np.broadcast_to(dmag_rb[0][:, None], (n_banks, wl.size))[..., None].astype(c64),
        through_loss=float(params.bus_loss_amplitude ** (2 * n_rings)),
    )


_workspaces = threading.local()


def _workspace(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per-thread scratch buffers for one (R, B, W, n) shape, reused across chunks (stays in cache)."""
    cache = _workspaces.__dict__.setdefault("by_shape", {})
    ws = cache.get(shape)
    if ws is None:
        if len(cache) > 8:
            cache.clear()
        c64 = np.complex64
        ws = {
            "h": np.empty(shape, c64),
            "q": np.empty(shape, c64),
            "t": np.empty(shape, c64),
            "g": np.empty(shape, c64),
            "m": np.empty(shape, np.float32),
            "tmp": np.empty(((shape[0] + 1) // 2,) + shape[1:], c64),
        }
        cache[shape] = ws
    return ws


def fast_port_transmissions(k: BankConstants, resonance_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|E_through|^2 and |E_drop|^2, each (B, W, n) float32, for resonances (H, n) (point axis last).

    This is the hot path: complex64 arithmetic on contiguous (R, B, W, n) arrays, cos/sin per (point, ring), and
    no per-element division: with D = s (1 - x z), t = t~/D and g = t t' rho = g~/D^2, each ring is the
    projective leaf (E~ = hs D, G~ = g~, Delta = D^2) and segments combine as
    (E~_A Delta_B + G~_A E~_B, G~_A G~_B, Delta_A Delta_B); one division per (bank, wavelength, point) at the end.
    """
    nr, nb = k.n_rings, k.n_banks
    n = resonance_m.shape[-1]
    narg = np.divide(k.half_phase_coef, resonance_m[k.row_index])  # (R*B, n) float64
    np.subtract(k.half_phase_ref, narg, out=narg)  # -(phi/2 reduced): small, float32 is enough for cos/sin
    narg32 = narg.astype(np.float32)
    zh = np.empty((nr * nb, n, 2), dtype=np.float32)
    np.cos(narg32, out=zh[..., 0])
    np.sin(narg32, out=zh[..., 1])
    zh = zh.view(np.complex64).reshape(nr, nb, 1, n)
    tc = k.tiled(n)
    shape = tc["ahs"].shape
    ws = _workspace(shape)
    h, den, t, g = ws["h"], ws["q"], ws["t"], ws["g"]
    np.multiply(tc["ahs"], zh, out=h)  # hs = sqrt(s x) exp(i phi/2)
    np.square(h, out=den)
    np.subtract(tc["s"], den, out=den)  # D = s (1 - x z)
    np.multiply(tc["c1"], den, out=t)
    np.subtract(t, tc["k1"], out=t)  # t~ = D/r1 - s kappa1/r1 = D t
    thr = np.multiply.reduce(t, axis=0)  # (B, W, n): prod t~
    np.multiply(tc["c2"], den, out=g)
    np.subtract(g, tc["k2"], out=g)
    np.multiply(g, t, out=g)  # g~ = D^2 t t' rho
    np.multiply(h, den, out=h)  # E~ = hs D
    np.square(den, out=den)  # Delta = D^2
    _tree_reduce(g, h, den, k.plan, ws["tmp"])
    delta_abs = np.abs(den[0])  # |prod D|^2
    np.reciprocal(delta_abs, out=delta_abs)
    thr_p = _abs2(thr)
    thr_p *= delta_abs
    thr_p *= np.float32(k.through_loss)
    drop_p = _abs2(h[0])
    drop_p *= np.square(delta_abs, out=delta_abs)
    drop_p *= np.abs(k.d0) ** 2
    return thr_p, drop_p


def _tree_reduce(g: np.ndarray, e: np.ndarray, delta: np.ndarray, plan: TreePlan, tmp: np.ndarray) -> None:
    """In place on row 0: the projective sum_i e_i prod_{j<i} g_j over the ring axis, log-depth, no ring loop."""
    for a, b, update_g in plan.levels:
        ea = e[a]
        out = tmp[: ea.shape[0]]
        np.multiply(g[a], e[b], out=out)
        ea *= delta[b]
        ea += out
        da = delta[a]
        da *= delta[b]
        if update_g:
            ga = g[a]
            ga *= g[b]


def _abs2(z: np.ndarray) -> np.ndarray:
    """|z|^2 as float32 via the interleaved float view."""
    v = z.view(np.float32)
    sq = np.square(v)
    return np.add(sq[..., 0::2], sq[..., 1::2])


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


def fields_f64(
    params: ChipParams, n_banks: int, n_rings: int, resonance_m: np.ndarray, wavelength_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coherent (E_through, E_drop), complex128 (N, B, W), for resonances (N, H). Reference accuracy, not speed."""
    wl = np.asarray(wavelength_m, dtype=float)
    t, tp, d = _ring_terms_f64(params, n_banks, n_rings, resonance_m, wl)
    theta_thr = np.exp(2j * math.pi * params.effective_index * params.through_gap_length_m[:, :, None] / wl)
    loss = params.bus_loss_amplitude
    e_thr = np.prod(t * theta_thr[None] * loss, axis=2)
    g = t * tp * bus_phase_factors(params, wl)[None]
    excl = np.cumprod(np.concatenate([np.ones_like(g[:, :, :1]), g[:, :, :-1]], axis=2), axis=2)
    e_drop = np.sum(d * excl, axis=2)
    return e_thr, e_drop


def incoherent_transmissions_f64(
    params: ChipParams, n_banks: int, n_rings: int, resonance_m: np.ndarray, wavelength_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Incoherent cascade (powers add, same topology): (|through|^2, drop power) each (N, B, W)."""
    t, tp, d = _ring_terms_f64(params, n_banks, n_rings, resonance_m, np.asarray(wavelength_m, dtype=float))
    loss2 = params.bus_loss_amplitude**2
    thr = np.prod(np.abs(t) ** 2 * loss2, axis=2)
    g = np.abs(t) ** 2 * np.abs(tp) ** 2 * loss2**2
    excl = np.cumprod(np.concatenate([np.ones_like(g[:, :, :1]), g[:, :, :-1]], axis=2), axis=2)
    return thr, np.sum(np.abs(d) ** 2 * excl, axis=2)
