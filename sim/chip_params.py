"""Per-chip hidden parameters, drawn once from the chip seed.

``np.random.SeedSequence(seed)`` is spawned into three independent streams: fabrication (everything in this
module), noise (measurement noise, laser repeatability) and drift (chip temperature). Keeping them apart means
reading more samples never changes the chip, and the same seed always yields the same chip.

Ring r has global index b*R + i (bank b, position i along the input bus). Arrays over rings have shape (H,) with
H = B*R; the crosstalk matrix K[r, h] is the shift of ring r per watt in heater h (m/W), a full matrix covering all
heaters and rings, within and across banks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from labctl.sim.chip_spec import ChipSpec

__all__ = ["ChipParams", "draw_chip_params", "nominal_self_coupling", "spawn_streams"]


@dataclass(frozen=True, eq=False)
class ChipParams:
    """Hidden truth of one chip (tests, benchmarks and reports only)."""

    seed: int
    design_resonance_m: np.ndarray  # (H,) ring i: channel i wavelength + design detuning
    fabrication_offset_m: np.ndarray  # (H,)
    ring_length_m: np.ndarray  # (H,) round-trip length 2*pi*radius
    group_index: float
    round_trip_amplitude: np.ndarray  # (H,) a
    r_through: np.ndarray  # (H,) self-coupling r1 on the input/through bus
    r_drop: np.ndarray  # (H,) self-coupling r2 on the drop bus
    tuning_efficiency_m_per_w: np.ndarray  # (H,) own-ring shift per heater watt
    heater_resistance_ohm: np.ndarray  # (H,) R0
    self_heating_per_w: float  # gamma: R = R0 (1 + gamma P)
    crosstalk_m_per_w: np.ndarray  # (H, H) K[ring, heater], diagonal = tuning efficiency
    through_gap_length_m: np.ndarray  # (B, R) bus length after ring j on the through bus
    drop_gap_length_m: np.ndarray  # (B, R) bus length after ring j on the drop bus
    effective_index: float
    bus_loss_amplitude: float  # field transmission per gap (0.1 dB per ring passed)
    dark_current_a: np.ndarray  # (B, 2) [through diode, drop diode]
    meter_nonlinearity_db: np.ndarray  # (B, 2) amplitude of each port meter's nonlinearity, within +-linearity
    meter_nonlinearity_phase: np.ndarray  # (B, 2) rad

    @functools.cached_property
    def base_resonance_m(self) -> np.ndarray:
        """Unheated resonance at the reference chip temperature, (H,); read-only (made once: every reading adds it)."""
        base = self.design_resonance_m + self.fabrication_offset_m
        base.flags.writeable = False
        return base


def spawn_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent (fabrication, noise, drift) generators for one seed."""
    fab, noise, drift = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(fab), np.random.default_rng(noise), np.random.default_rng(drift)


def nominal_self_coupling(spec: ChipSpec) -> tuple[float, float]:
    """(r, a) with r1 = r2 = r giving the spec's loaded Q at the mean channel wavelength.

    Drop |d|^2 ~ 1/(1 - 2x cos(phi) + x^2), x = r1 r2 a; half maximum at cos(dphi/2) = (4x - 1 - x^2)/(2x), and
    Q = 2 pi n_g L / (lambda dphi). Solving the quadratic for x gives r = sqrt(x / a).
    """
    o = spec.optics
    length_m = 2 * math.pi * o.ring_radius_m
    a = 10 ** (-o.intrinsic_loss_db_per_cm * (length_m * 100) / 20)
    wl = float(np.mean(spec.lasers.channel_wavelengths_m()))
    dphi = 2 * math.pi * o.group_index * length_m / (wl * o.loaded_q)
    c = math.cos(dphi / 2)
    x = (2 - c) - math.sqrt((2 - c) ** 2 - 1)
    if not x < a:
        raise ValueError(
            f"optics.loaded_q={o.loaded_q} is not reachable with intrinsic_loss_db_per_cm={o.intrinsic_loss_db_per_cm}"
        )
    return math.sqrt(x / a), a


def _crosstalk_fractions(spec: ChipSpec, rng: np.random.Generator) -> np.ndarray:
    """(H, H) fractions of heater h's own-ring shift seen by ring r, with log-normal scatter off the diagonal."""
    nb, nr = spec.layout.n_banks, spec.layout.n_rings
    th = spec.thermal
    bank = np.repeat(np.arange(nb), nr)
    pos = np.tile(np.arange(nr), nb)
    d_ring = np.abs(pos[:, None] - pos[None, :])
    d_bank = np.abs(bank[:, None] - bank[None, :])
    same = th.crosstalk_nearest * th.crosstalk_decay_per_ring ** -(np.maximum(d_ring, 1) - 1.0)
    other = th.crosstalk_adjacent_bank * th.crosstalk_decay_per_bank ** -(np.maximum(d_bank, 1) - 1.0)
    frac = np.where(d_bank == 0, same, other)
    scatter = np.exp(spec.fabrication.crosstalk_spread * rng.standard_normal(frac.shape))
    frac = frac * scatter
    np.fill_diagonal(frac, 1.0)
    return frac


def draw_chip_params(spec: ChipSpec, seed: int, rng: np.random.Generator) -> ChipParams:
    """Draw all fabrication randomness of one chip from the fabrication stream ``rng``."""
    nb, nr, h = spec.layout.n_banks, spec.layout.n_rings, spec.n_heaters
    fab, o = spec.fabrication, spec.optics
    pos = np.tile(np.arange(nr), nb)
    lasers = spec.lasers
    if lasers.wavelengths_m is not None and nr <= lasers.n_channels:
        channel_wl = np.asarray(lasers.wavelengths_m)[pos]
    else:
        channel_wl = lasers.first_wavelength_m + pos * lasers.channel_spacing_m
    design = channel_wl + o.design_detuning_m
    r_nom, a = nominal_self_coupling(spec)
    kappa_nom = 1.0 - r_nom**2
    u = lambda n, spread: 1.0 + spread * rng.uniform(-1.0, 1.0, n)  # noqa: E731
    offset = fab.resonance_offset_m * rng.uniform(-1.0, 1.0, h)
    kappa1 = np.clip(kappa_nom * u(h, fab.coupling_spread), 1e-9, 1 - 1e-9)
    kappa2 = np.clip(kappa_nom * u(h, fab.coupling_spread), 1e-9, 1 - 1e-9)
    eta = spec.heaters.tuning_efficiency_m_per_w * u(h, fab.tuning_efficiency_spread)
    r0 = spec.heaters.resistance_ohm * u(h, fab.heater_resistance_spread)
    frac = _crosstalk_fractions(spec, rng)
    gaps = o.bus_gap_length_m + fab.bus_length_spread_m * rng.uniform(-1.0, 1.0, (2, nb, nr))
    dark = spec.detector.dark_current_a * u((nb, 2), fab.dark_current_mismatch)
    lin = spec.power_meter.linearity_db * rng.uniform(-1.0, 1.0, (nb, 2))
    phase = rng.uniform(0, 2 * math.pi, (nb, 2))
    return ChipParams(
        seed=seed,
        design_resonance_m=design,
        fabrication_offset_m=offset,
        ring_length_m=np.full(h, 2 * math.pi * o.ring_radius_m),
        group_index=o.group_index,
        round_trip_amplitude=np.full(h, a),
        r_through=np.sqrt(1.0 - kappa1),
        r_drop=np.sqrt(1.0 - kappa2),
        tuning_efficiency_m_per_w=eta,
        heater_resistance_ohm=r0,
        self_heating_per_w=spec.heaters.gamma_per_w,
        crosstalk_m_per_w=frac * eta[None, :],
        through_gap_length_m=gaps[0],
        drop_gap_length_m=gaps[1],
        effective_index=o.effective_index,
        bus_loss_amplitude=10 ** (-o.bus_loss_db_per_ring / 20),
        dark_current_a=dark,
        meter_nonlinearity_db=lin,
        meter_nonlinearity_phase=phase,
    )
