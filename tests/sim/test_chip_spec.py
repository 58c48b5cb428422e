"""ChipSpec: defaults, TOML round trip, overrides and errors naming the parameter path."""

from __future__ import annotations

import math

import pytest

from labctl.sim.chip_spec import ChipSpec, ChipSpecError


def test_defaults_match_reference_chip() -> None:
    s = ChipSpec()
    assert (s.layout.n_banks, s.layout.n_rings, s.lasers.n_channels) == (4, 10, 10)
    assert s.optics.loaded_q == 8000.0
    assert s.thermal.temperature_coefficient_m_per_k == 83e-12
    assert s.heaters.max_power_w == 0.040 and s.heaters.max_voltage_v == 7.0
    assert s.detector.responsivity_a_per_w == 0.9
    assert s.lasers.rin_db_per_hz == -145.0
    assert s.lasers.channel_wavelengths_m()[1] == pytest.approx(1551e-9)


def test_toml_round_trip_exact(tmp_path) -> None:
    s = ChipSpec().with_overrides({"optics.loaded_q": 7000.5, "lasers": {"wavelengths_m": [1.55e-6 + k * 1.1e-9
                                                                                          for k in range(10)]}})
    text = s.to_toml()
    assert ChipSpec.from_toml(text) == s
    path = tmp_path / "chip.toml"
    path.write_text(text)
    assert ChipSpec.from_toml(path) == s
    assert ChipSpec.from_toml(str(path)) == s
    assert ChipSpec.from_dict(s.to_dict()) == s


def test_overrides_nested_and_dotted() -> None:
    s = ChipSpec().with_overrides({"thermal": {"time_constant_s": 2e-5}, "heaters.dac_bits": 12})
    assert s.thermal.time_constant_s == 2e-5 and s.heaters.dac_bits == 12
    assert s.optics == ChipSpec().optics


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"optics": {"loaded_q": -5.0}}, "optics.loaded_q must be > 0, got -5.0"),
        ({"optics": {"loaded_q": math.nan}}, "optics.loaded_q must be finite"),
        ({"heaters": {"resistance_ohm": math.inf}}, "heaters.resistance_ohm must be finite"),
        ({"lasers": {"wavelengths_m": [1.55e-6, 1.551e-6]}}, "lasers.wavelengths_m must have shape (10,)"),
        ({"power_meter": {"ranges_dbm": [[0.0, 1.0]]}}, "power_meter.ranges_dbm must be a non-empty 1-D"),
        ({"layout": {"n_banks": 2.5}}, "layout.n_banks must be an integer"),
        ({"optics": {"loaded_q": "high"}}, "optics.loaded_q must be a number"),
        ({"optics": {"foo": 1.0}}, "optics.foo: unknown key"),
        ({"opticks": {"loaded_q": 1.0}}, "opticks: unknown key"),
        ({"fabrication": {"coupling_spread": 1.5}}, "fabrication.coupling_spread must be in [0, 1)"),
    ],
)
def test_bad_values_name_the_path(override: dict, message: str) -> None:
    with pytest.raises(ChipSpecError) as err:
        ChipSpec().with_overrides(override)
    assert message in str(err.value)


def test_unknown_toml_key_named() -> None:
    with pytest.raises(ChipSpecError, match=r"detector\.gain: unknown key"):
        ChipSpec.from_toml("[detector]\ngain = 3.0\n")


def test_chipspec_error_is_value_error() -> None:
    assert issubclass(ChipSpecError, ValueError)
