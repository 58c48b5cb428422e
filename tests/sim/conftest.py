"""Shared fixtures for the emulator tests."""

from __future__ import annotations

import pytest

from labctl.sim import Chip, ChipSpec


@pytest.fixture(scope="module")
def chip() -> Chip:
    """Default 4 x 10 chip, seed 0 (tests that mutate state build their own)."""
    return Chip(ChipSpec(), seed=0)


@pytest.fixture
def fresh_chip() -> Chip:
    return Chip(ChipSpec(), seed=0)


@pytest.fixture
def ideal_ring_spec() -> ChipSpec:
    """One bank, one ring, no fabrication spread: for line-shape tests."""
    return ChipSpec().with_overrides(
        {
            "layout": {"n_banks": 1, "n_rings": 1},
            "lasers": {"n_channels": 1},
            "fabrication": {"resonance_offset_m": 0.0, "coupling_spread": 0.0, "tuning_efficiency_spread": 0.0,
                            "heater_resistance_spread": 0.0},
        }
    )
