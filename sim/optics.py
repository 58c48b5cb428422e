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

Fast kernel (float32/complex64, point axis last so every ufunc runs over long contiguous rows): the division-free
matrices are rescaled by constants -- a per-ring factor and a diagonal similarity diag(u_j, v_j) between
neighbouring rings, which cancel in the product up to per-(bank, wavelength) constants applied at the end -- so that
    M'_j = [[gamma_j w_j + alpha_j, h_j], [c_j h_j, w_j - 1]],     h_j = sqrt(x_j) s_j,   w_j = h_j^2 = x_j z_j
(w - 1 = -den; log|den| averages to 0 over a free spectral range, so long float32 products stay centred on 1).
Per (point, ring, wavelength) that is 1 broadcast product (h = constant * exp(i phi_point/2)), 1 square, 2 products
and 3 sums. The product M'_0 ... M'_{R-2} [h; w - 1]_{R-1} = [p'; q'] is a log-depth tree reduction over the ring
axis (``TreePlan``: each level absorbs the rightmost matrix into the vector and multiplies disjoint neighbouring
pairs as 2x2 matrix products; no Python loop per ring), and with k_j = sqrt(x_j)/kappa_j
    E_drop = p' / (k_0 q'),      E_through = prod_j (psi_j / r1_j) * prod_j (w_j - r1_j^2) / q',
with a single division, 1/|q'|^2, per (point, bank, wavelength) (the squares are taken in float64, out of reach of
float32 overflow).
Derivation: M'_j = sigma_j diag(u_j, v_j)^-1 (den M_j) diag(u_{j+1}, v_{j+1}) with sigma_j v_{j+1}/v_j = -1 (makes
the D entry w - 1) and sigma_j v_{j+1}/u_j = -sqrt(x_j)/kappa_j (makes the B entry h), hence v_j/u_j = k_j and
gamma_j = (k_j/k_{j+1}) Psi_j/(r1 r2), alpha_j = -(k_j/k_{j+1}) Psi_j r1 r2, c_j = -kappa_j Psi_j/(k_{j+1} sqrt(x_j)),
Psi_j = psi_j psi'_j; the product telescopes to [u_0 p'; v_0 q'] / (v_R prod sigma) with prod sigma v_{j+1}/v_j =
(-1)^R, which gives the two formulas above (the (-1)^R and the phases of constants drop out of |.|^2).
Accuracy: |E|^2 within a few 1e-6 of the float64 path on the default chip (float32 phase rounding, ~1e-7 rad, is
the main term; it is amplified near sharp coupled-ring features, up to ~1e-4 on a lossless close bank).
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
    "bus_factors",
]


@dataclass(frozen=True)
class TreePlan:
    """Memory order of the ring axis and the steps of each level of the matrix-product reduction.

    Rings 0..R-2 carry 2x2 matrices, ring R-1 only the starting vector (its second column), stored in the last
    memory row. Each level first absorbs the rightmost remaining matrix into the vector (``mv_row``), then
    multiplies disjoint neighbouring pairs (a row) := (a row) @ (b row). Rings paired at the first level are stored
    evens-then-odds so every level's a rows and b rows are arithmetic progressions (plain slices).
    """

    order: np.ndarray  # memory row k holds ring order[k]; order[-1] == R - 1
    levels: tuple[tuple[int, slice | None, slice | None], ...]  # (mv_row, a rows, b rows)


def plan_tree(n_rings: int) -> TreePlan:
    """Simulate the reduction M_0 ... M_{R-2} v over rings and express every level as rows and row slices."""
    m = n_rings - 1  # number of matrices
    if m <= 0:
        return TreePlan(order=np.arange(max(n_rings, 0)), levels=())
    paired = list(range(m - 1))  # rings paired at level 1 (ring m-1 is absorbed into the vector first)
    p = len(paired) // 2
    order = paired[0 : 2 * p : 2] + paired[1 : 2 * p : 2] + paired[2 * p :] + [m - 1, n_rings - 1]
    row_of = {ring: k for k, ring in enumerate(order)}
    items = [row_of[r] for r in range(m)]  # memory row of each matrix segment, in ring order
    levels = []
    while items:
        mv = items.pop()
        p = len(items) // 2
        a_rows, b_rows = items[0 : 2 * p : 2], items[1 : 2 * p : 2]
        levels.append((mv, _as_slice(a_rows) if p else None, _as_slice(b_rows) if p else None))
        items = a_rows + items[2 * p :]
    return TreePlan(order=np.array(order), levels=tuple(levels))


def _as_slice(rows: list[int]) -> slice:
    step = rows[1] - rows[0] if len(rows) > 1 else 1
    if step <= 0 or any(b - a != step for a, b in zip(rows, rows[1:])):
        raise AssertionError(f"tree rows {rows} are not an arithmetic progression")
    return slice(rows[0], rows[-1] + 1, step)


_TILED = ("lam", "gam", "alp", "cc", "nu")


@dataclass(frozen=True, eq=False)
class BankConstants:
    """Per (ring, bank, wavelength) constants of the fast kernel for one set of wavelengths.

    Ring axis first, in the tree's memory order; shape (R, B, W, 1) (``gam``, ``alp``, ``cc``: rings 0..R-2 only).
    ``tiled(n)`` gives contiguous (R, B, W, n) copies, because numpy runs much faster on contiguous operands than on
    stride-0 broadcasts.
    """

    n_banks: int
    n_rings: int
    wavelength_m: np.ndarray  # (W,)
    plan: TreePlan
    row_index: np.ndarray  # (R*B,) global ring index of each (memory row, bank)
    half_phase_coef: np.ndarray  # (R*B, 1) float64: pi n_g L
    half_phase_ref: np.ndarray  # (R*B, 1) float64: pi n_g L / lambda_ref (keeps cos/sin arguments small)
    lam: np.ndarray  # lambda exp(i pi n_g L (1/lambda - 1/lambda_ref)), lambda = sqrt(x): h = lam * zh
    gam: np.ndarray  # gamma_j = (k_j/k_{j+1}) Psi_j / (r1 r2)
    alp: np.ndarray  # alpha_j = -(k_j/k_{j+1}) Psi_j r1 r2
    cc: np.ndarray  # c_j = -kappa_j Psi_j / (k_{j+1} lambda_j)
    nu: np.ndarray  # r1^2: E_through factor (w - nu)
    drop_scale: np.ndarray  # (B, W, 1) float64: 1 / k_0^2
    through_scale: np.ndarray  # (B, W, 1) float64: prod_j |psi_j|^2 / r1_j^2

    def tiled(self, n: int) -> dict[str, np.ndarray]:
        """Contiguous (R, B, W, n) complex64 copies of the per-element constants, cached per n."""
        if n == 1:  # already the right shape (wavelength sweeps put wavelengths on the W axis)
            return {name: getattr(self, name) for name in _TILED}
        cache = self.__dict__.setdefault("_tiled", {})
        if n not in cache:
            if len(cache) > 4:
                cache.clear()
            cache[n] = {
                name: np.ascontiguousarray(np.broadcast_to(v, v.shape[:3] + (n,)))
                for name in _TILED
                for v in (getattr(self, name),)
            }
        return cache[n]

    def __getstate__(self) -> dict:
        """Pickle without the tiled caches (process workers rebuild them)."""
        state = dict(self.__dict__)
        state.pop("_tiled", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


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
    plan = plan_tree(n_rings)
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
    nu = np.broadcast_to(e(r1**2), (n_rings, n_banks, nw))
    perm = plan.order
    c64 = np.complex64

    def per_elem(v: np.ndarray, rows: int) -> np.ndarray:  # (R, B, W) -> memory order, (rows, B, W, 1)
        return np.ascontiguousarray(np.asarray(v)[perm][:rows, :, :, None]).astype(c64)

    m = max(n_rings - 1, 0)
    through_scale = np.prod(np.abs(psi) ** 2 / e(r1**2), axis=0)  # (B, W)
    drop_scale = np.broadcast_to(1 / k[0, :, None] ** 2, (n_banks, nw))
    return BankConstants(
        n_banks=n_banks,
        n_rings=n_rings,
        wavelength_m=wl,
        plan=plan,
        row_index=rb(np.arange(n_banks * n_rings))[perm].reshape(-1),
        half_phase_coef=(math.pi * ngl)[perm].reshape(-1, 1),
        half_phase_ref=(math.pi * ngl / ref)[perm].reshape(-1, 1),
        lam=per_elem(lam_c, n_rings),
        gam=per_elem(gam, m),
        alp=per_elem(alp, m),
        cc=per_elem(cc, m),
        nu=per_elem(nu, n_rings),
        drop_scale=np.ascontiguousarray(drop_scale[..., None]),
        through_scale=np.ascontiguousarray(through_scale[..., None]),
    )


_workspaces = threading.local()


def _view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape that must not copy (the kernel writes through these views)."""
    v = a.reshape(shape)
    if not np.shares_memory(v, a):
        raise AssertionError("reshape copied")
    return v


def _workspace(nr: int, nb: int, nw: int, n: int) -> dict[str, np.ndarray]:
    """Per-thread scratch buffers (and views into them) for one (R, B, W, n), reused across chunks."""
    cache = _workspaces.__dict__.setdefault("by_shape", {})
    key = (nr, nb, nw, n)
    ws = cache.get(key)
    if ws is None:
        if len(cache) > 8:
            cache.clear()
        c64 = np.complex64
        x = nb * nw * n
        m = nr - 1
        pairs = max((nr - 2) // 2, 1)
        rows_m = max(m, 1)  # A and C exist for rings 0..R-2 only (at least one row keeps the views uniform)
        mat = np.empty((nr, 2, 2, x), c64)  # per ring (memory order) [[A, B], [C, D]], X = B*W*n flattened
        fac = np.empty((nr, x), c64)  # through factors w - nu
        shp = (nr, nb, nw, n)
        ws = {
            "mat": mat,
            "fac": fac,
            "fac4": _view(fac, shp),
            "h": _view(mat[:, 0, 1], shp),  # B entry: h
            "w": _view(mat[:, 1, 1], shp),  # D entry: w, then w - 1
            "a": _view(mat[:rows_m, 0, 0], (rows_m,) + shp[1:]),
            "c": _view(mat[:rows_m, 1, 0], (rows_m,) + shp[1:]),
            "t1": np.empty((pairs, 2, 2, x), c64),
            "t2": np.empty((pairs, 2, 2, x), c64),
            "v1": np.empty((2, x), c64),
            "v2": np.empty((2, x), c64),
        }
        cache[key] = ws
    return ws


def fast_port_transmissions(k: BankConstants, resonance_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|E_through|^2 and |E_drop|^2, each (B, W, n) float64, for resonances (H, n) (point axis last).

    This is the hot path: complex64 arithmetic on contiguous rows, cos/sin per (point, ring), the 2x2 matrix
    product over rings as a log-depth tree (see the module docstring), and one division per (bank, wavelength,
    point) at the end: |.|^2 of the complex64 results and 1/|q'|^2 are taken in float64, so long banks cannot
    overflow the float32 range.
    """
    nr, nb = k.n_rings, k.n_banks
    n = resonance_m.shape[-1]
    nw = k.wavelength_m.size
    narg = np.divide(k.half_phase_coef, resonance_m[k.row_index])  # (R*B, n) float64
    np.subtract(k.half_phase_ref, narg, out=narg)  # -(phi/2 reduced): small, float32 is enough for cos/sin
    narg32 = narg.astype(np.float32)
    zh = np.empty((nr * nb, n, 2), dtype=np.float32)
    np.cos(narg32, out=zh[..., 0])
    np.sin(narg32, out=zh[..., 1])
    zh = zh.view(np.complex64).reshape(nr, nb, 1, n)
    tc = k.tiled(n)
    ws = _workspace(nr, nb, nw, n)
    mat, h, w = ws["mat"], ws["h"], ws["w"]
    np.multiply(tc["lam"], zh, out=h)  # h = lambda s
    np.square(h, out=w)  # w = lambda^2 z
    np.subtract(w, tc["nu"], out=ws["fac4"])  # through factor w - r1^2
    if nr > 1:
        m = nr - 1
        np.multiply(tc["gam"], w[:m], out=ws["a"])
        ws["a"] += tc["alp"]  # A = gamma w + alpha
        np.multiply(tc["cc"], h[:m], out=ws["c"])  # C = c h
    w -= np.complex64(1)  # D = w - 1
    thr = np.multiply.reduce(ws["fac"], axis=0)  # (X,) prod_j (w_j - nu_j)
    vec = mat[nr - 1, :, 1]  # (2, X): [h; D] of the last ring, the starting vector [p'; q']
    t1, t2, v1, v2 = ws["t1"], ws["t2"], ws["v1"], ws["v2"]
    for mv, a_rows, b_rows in k.plan.levels:
        mr = mat[mv]
        np.multiply(mr[:, 0], vec[0], out=v1)
        np.multiply(mr[:, 1], vec[1], out=v2)
        np.add(v1, v2, out=vec)
        if a_rows is not None:
            ma, mb = mat[a_rows], mat[b_rows]
            s = ma.shape[0]
            np.multiply(ma[:, :, 0:1], mb[:, None, 0], out=t1[:s])
            np.multiply(ma[:, :, 1:2], mb[:, None, 1], out=t2[:s])
            np.add(t1[:s], t2[:s], out=ma)
    out_shape = (nb, nw, n)
    sq = np.square(vec.view(np.float32), dtype=np.float64)  # (2, 2X); |.|^2 in float64 cannot overflow
    inv = np.add(sq[1, 0::2], sq[1, 1::2])
    np.reciprocal(inv, out=inv)  # the one division: 1/|q'|^2
    drop_p = np.add(sq[0, 0::2], sq[0, 1::2])
    drop_p *= inv
    st = np.square(thr.view(np.float32), dtype=np.float64)
    thr_p = np.add(st[0::2], st[1::2])
    thr_p *= inv
    thr_p = thr_p.reshape(out_shape)
    thr_p *= k.through_scale
    drop_p = drop_p.reshape(out_shape)
    drop_p *= k.drop_scale
    return thr_p, drop_p


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
