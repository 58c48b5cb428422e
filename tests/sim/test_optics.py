"""Optics: Airy line shape, extinction/drop defaults, energy conservation of the two-bus bank, coherent vs
incoherent cascade, and the compiled float32 kernel against the float64 truth path for any ring count."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from labctl.sim import Chip, ChipSpec
from labctl.sim.optics import (
    build_constants,
    bus_powers,
    fast_port_transmissions,
    fields_f64,
)

log = logging.getLogger(__name__)

BAND = np.linspace(1548e-9, 1561e-9, 4000)


def close_bank_spec(n_rings: int = 3) -> ChipSpec:
    """One bank of closely spaced rings (0.2 nm apart, about one FWHM): strongly overlapping line shapes."""
    return ChipSpec().with_overrides(
        {
            "layout": {"n_banks": 1, "n_rings": n_rings},
            "lasers": {"n_channels": n_rings, "channel_spacing_m": 0.2e-9},
            "fabrication": {"resonance_offset_m": 0.0},
        }
    )


def test_lone_ring_peak_at_resonance_and_fwhm(ideal_ring_spec: ChipSpec) -> None:
    chip = Chip(ideal_ring_spec, seed=3)
    res = float(chip.truth_resonances_m(np.zeros((1, 1)))[0, 0, 0])
    wl = np.linspace(res - 1e-9, res + 1e-9, 40001)
    _, e_drop = chip.truth_fields(np.zeros((1, 1)), wavelength_m=wl)
    drop = np.abs(e_drop[0, 0]) ** 2
    assert wl[np.argmax(drop)] == pytest.approx(res, abs=0.1e-12)
    above = wl[drop >= drop.max() / 2]
    fwhm = above[-1] - above[0]
    assert fwhm == pytest.approx(res / ideal_ring_spec.optics.loaded_q, rel=0.01)


def test_default_extinction_and_drop_peak(chip: Chip) -> None:
    p = chip.truth_params()
    r1, r2, a = p.r_through, p.r_drop, p.round_trip_amplitude
    x = r1 * r2 * a
    extinction_db = -20 * np.log10(np.abs((r1 - r2 * a) / (1 - x)))
    drop_peak = (1 - r1**2) * (1 - r2**2) * a / (1 - x) ** 2
    assert 15 <= np.median(extinction_db) <= 25
    assert np.all(extinction_db >= 15)
    assert np.all((drop_peak >= 0.8) & (drop_peak <= 0.95))


def test_energy_bound_for_separated_rings() -> None:
    """drop + through <= input when neighbouring rings are >= 3 FWHM apart (no fabrication offsets)."""
    spec = ChipSpec().with_overrides({"fabrication": {"resonance_offset_m": 0.0}})
    chip = Chip(spec, seed=1)
    wl = np.linspace(1548e-9, 1561e-9, 6000)
    e_t, e_d = chip.truth_fields(np.zeros((1, chip.n_heaters)), wavelength_m=wl)
    total = np.abs(e_t) ** 2 + np.abs(e_d) ** 2
    assert total.max() <= 1.0 + 1e-9


def test_energy_bound_for_overlapping_rings(chip: Chip) -> None:
    """Default chip (fabrication offsets make neighbours overlap), unheated and for random drives."""
    rng = np.random.default_rng(5)
    drive = np.vstack([np.zeros((1, chip.n_heaters)), rng.uniform(0, 6, (6, chip.n_heaters))])
    e_t, e_d = chip.truth_fields(drive, wavelength_m=BAND)
    total = np.abs(e_t) ** 2 + np.abs(e_d) ** 2
    log.info("default chip: max drop + through over the band = %.4f", total.max())
    assert total.max() <= 1.0 + 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_energy_bound_close_bank_random_drives(seed: int) -> None:
    """Rings one FWHM apart, randomly detuned on top of each other: f64 truth and float32 kernel both <= 1."""
    chip = Chip(close_bank_spec(3), seed=seed)
    rng = np.random.default_rng(10 + seed)
    drive = rng.uniform(0, 3, (16, chip.n_heaters))
    wl = np.linspace(1549.0e-9, 1551.5e-9, 2501)
    e_t, e_d = chip.truth_fields(drive, wavelength_m=wl)
    assert (np.abs(e_t) ** 2 + np.abs(e_d) ** 2).max() <= 1.0 + 1e-9
    res = chip.truth_resonances_m(drive).reshape(drive.shape[0], -1).T.copy()
    k = build_constants(chip.truth_params(), 1, 3, wl)
    thr, drop = fast_port_transmissions(k, res)
    assert (thr + drop).max() <= 1.0 + 1e-5


@pytest.mark.parametrize("spec", [ChipSpec(), close_bank_spec(3)], ids=["default", "close3"])
def test_port_powers_never_exceed_input(spec: ChipSpec) -> None:
    chip = Chip(spec, seed=4)
    rng = np.random.default_rng(4)
    n = 500
    drive = rng.uniform(0, 6, (n, chip.n_heaters))
    pin = rng.uniform(1e-4, 2e-3, (n, chip.n_channels))
    ev = chip.evaluate(drive, pin, noise=False)
    o = spec.optics
    facet = 10 ** (-o.facet_loss_db / 10)
    available = pin.sum(axis=1, keepdims=True) * facet * o.bank_split_fraction * facet  # input and output facets
    assert np.all(ev.through_power_w + ev.drop_power_w <= available * (1 + 1e-5))


def test_lossless_bank_conserves_energy_exactly() -> None:
    """No ring or bus loss: the bank is unitary, so drop + through = input at every wavelength (f64 and f32)."""
    spec = close_bank_spec(4).with_overrides({"optics": {"intrinsic_loss_db_per_cm": 0.0, "bus_loss_db_per_ring": 0.0}})
    chip = Chip(spec, seed=6)
    rng = np.random.default_rng(6)
    drive = rng.uniform(0, 3, (4, chip.n_heaters))
    wl = np.linspace(1549.0e-9, 1551.5e-9, 3001)
    e_t, e_d = chip.truth_fields(drive, wavelength_m=wl)
    np.testing.assert_allclose(np.abs(e_t) ** 2 + np.abs(e_d) ** 2, 1.0, rtol=0, atol=1e-12)
    res = chip.truth_resonances_m(drive).reshape(drive.shape[0], -1).T.copy()
    thr, drop = fast_port_transmissions(build_constants(chip.truth_params(), 1, 4, wl), res)
    # float32: ~1e-7 rad phase rounding, amplified by the narrow coupled-resonator supermodes of this lossless bank
    np.testing.assert_allclose(thr + drop, 1.0, rtol=0, atol=1e-4)


def test_lone_ring_coherent_equals_incoherent(ideal_ring_spec: ChipSpec) -> None:
    """With one ring there is no inter-ring path, so both cascades must coincide."""
    chip = Chip(ideal_ring_spec, seed=3)
    wl = np.linspace(1549e-9, 1551e-9, 2001)
    drive = np.zeros((1, 1))
    np.testing.assert_allclose(chip.truth_weights(drive, wavelength_m=wl),
                               chip.truth_incoherent_weights(drive, wavelength_m=wl), rtol=0, atol=1e-12)


def test_coherent_and_incoherent_cascades_differ(chip: Chip) -> None:
    drive = np.zeros((1, chip.n_heaters))
    diff_default = np.abs(chip.truth_weights(drive, wavelength_m=BAND)
                          - chip.truth_incoherent_weights(drive, wavelength_m=BAND))
    close = Chip(close_bank_spec(3), seed=2)
    wl = np.linspace(1549.0e-9, 1551.0e-9, 4000)
    d3 = np.zeros((1, 3))
    diff_close = np.abs(close.truth_weights(d3, wavelength_m=wl) - close.truth_incoherent_weights(d3, wavelength_m=wl))
    log.info("max |coherent - incoherent| weight: default chip %.3f, 3-ring close bank %.3f",
             diff_default.max(), diff_close.max())
    assert diff_close.max() > 0.05
    assert diff_default.max() > 0.01
    # both cascades are energy-bounded, so the difference is a redistribution, not a gain
    e_t, e_d = close.truth_fields(d3, wavelength_m=wl)
    assert (np.abs(e_t) ** 2 + np.abs(e_d) ** 2).max() <= 1 + 1e-9


def test_every_ring_affects_every_channel(fresh_chip: Chip) -> None:
    base = np.zeros((1, fresh_chip.n_heaters))
    bumped = base.copy()
    bumped[0, 9] = 3.0  # last ring of bank 0, far from channel 0
    w0 = fresh_chip.truth_weights(base)[0, 0]
    w1 = fresh_chip.truth_weights(bumped)[0, 0]
    assert np.all(np.abs(w1 - w0) > 0)


@pytest.mark.parametrize("n_rings", [1, 2, 3, 4, 5, 6, 7, 10, 13, 24, 40])
def test_kernel_matches_f64_for_any_ring_count(n_rings: int) -> None:
    """Compiled float32 kernel vs the float64 recursion over a sweep, for short and long banks."""
    spec = ChipSpec().with_overrides(
        {"layout": {"n_banks": 2, "n_rings": n_rings}, "lasers": {"n_channels": max(n_rings, 1)}}
    )
    chip = Chip(spec, seed=n_rings)
    p = chip.truth_params()
    rng = np.random.default_rng(n_rings)
    drive = rng.uniform(0, 4, (5, chip.n_heaters))
    res = chip.truth_resonances_m(drive).reshape(5, -1)
    lo, hi = p.design_resonance_m.min() - 1e-9, p.design_resonance_m.max() + 1e-9
    wl = np.linspace(lo, hi, 301)
    e_t, e_d = fields_f64(p, 2, n_rings, res, wl)
    thr, drop = fast_port_transmissions(build_constants(p, 2, n_rings, wl), res.T.copy())
    np.testing.assert_allclose(thr.transpose(2, 0, 1), np.abs(e_t) ** 2, rtol=0, atol=2e-5)
    np.testing.assert_allclose(drop.transpose(2, 0, 1), np.abs(e_d) ** 2, rtol=0, atol=2e-5)


def test_kernel_loop_orders_and_chunking_give_the_same_bits(chip: Chip) -> None:
    """A spectrum (one point, many wavelengths: wavelength loop innermost) and a batch (point loop innermost) run the
    same float32 operations per element; a point's bus powers do not depend on the batch it is computed in."""
    p = chip.truth_params()
    rng = np.random.default_rng(11)
    drive = rng.uniform(0, 4, (600, chip.n_heaters))
    res = chip.truth_resonances_m(drive).reshape(600, -1).T.copy()  # (H, n)
    wl = np.linspace(1549e-9, 1552e-9, 37)
    k = build_constants(p, chip.n_banks, chip.n_rings, wl)
    thr, drop = fast_port_transmissions(k, res)  # point loop innermost
    for i in (0, 257, 599):
        t1, d1 = fast_port_transmissions(k, res[:, i : i + 1])  # wavelength loop innermost
        np.testing.assert_array_equal(t1[:, :, 0], thr[:, :, i])
        np.testing.assert_array_equal(d1[:, :, 0], drop[:, :, i])
    pin = rng.uniform(1e-4, 2e-3, (wl.size, 600))
    bt, bd = bus_powers(k, res, pin)
    np.testing.assert_allclose(bt, np.einsum("bcn,cn->bn", thr, pin), rtol=1e-12, atol=0)
    np.testing.assert_allclose(bd, np.einsum("bcn,cn->bn", drop, pin), rtol=1e-12, atol=0)
    for s, e in ((0, 1), (1, 300), (300, 599), (599, 600)):
        pt, pd = bus_powers(k, res[:, s:e], pin[:, s:e])
        np.testing.assert_array_equal(pt, bt[:, s:e])
        np.testing.assert_array_equal(pd, bd[:, s:e])


def test_bus_powers_rejects_mismatched_channel_powers(chip: Chip) -> None:
    k = build_constants(chip.truth_params(), chip.n_banks, chip.n_rings, chip.truth_laser_wavelength_m())
    res = chip.truth_resonances_m(np.zeros((3, chip.n_heaters))).reshape(3, -1).T.copy()
    with pytest.raises(ValueError, match="pin_wn"):
        bus_powers(k, res, np.ones((chip.n_channels + 1, 3)))
    with pytest.raises(ValueError, match="resonance_m"):
        bus_powers(k, res[:-1], np.ones((chip.n_channels, 3)))
