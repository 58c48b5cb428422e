"""IEEE 488.2 data elements and unit suffixes: what a client may write and the value an action receives."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl.sim.scpi import ScpiError
from labctl.sim.scpi.lexer import element, parse_unit, split_units, strip_terminator
from labctl.sim.scpi.units import MULTIPLIERS, Unit, exponent, resolve, scale


@pytest.mark.parametrize("message", ["*IDN?\n", "*IDN?\r\n", "*IDN?", "*IDN? \r\n", "*IDN?\t\n"])
def test_lf_and_cr_lf_terminate_the_same_message(message: str) -> None:
    assert strip_terminator(message) == "*IDN?"
    assert split_units(message) == ["*IDN?"]


def test_units_split_on_semicolons_outside_strings_blocks_and_expressions() -> None:
    message = ":SENS:FUNC 'A;B';:STAT:QUE:ENAB (-110:-222;x);:DATA #15ab;cd;*OPC?;"
    assert split_units(message) == [":SENS:FUNC 'A;B'", ":STAT:QUE:ENAB (-110:-222;x)", ":DATA #15ab;cd", "*OPC?"]


def test_trailing_semicolon_is_an_empty_unit_and_dropped() -> None:
    assert split_units(":SENS:CURR:RANG:AUTO 1;") == [":SENS:CURR:RANG:AUTO 1"]


@pytest.mark.parametrize("text, value", [("1", 1.0), ("+1550", 1550.0), ("-0.5", -0.5), (".5", 0.5), ("5.", 5.0),
                                          ("1.55E-6", 1.55e-6), ("1.55e-006", 1.55e-6), ("+1.0E+03", 1e3),
                                          ("2 E 3", 2e3)])
def test_nr1_nr2_nr3_numbers(text: str, value: float) -> None:
    el = element(text)
    assert el.kind == "numeric" and el.suffix == "" and el.value == pytest.approx(value)


@pytest.mark.parametrize("text, value", [("#H1F", 31), ("#hff", 255), ("#Q17", 15), ("#B101", 5)])
def test_non_decimal_numbers(text: str, value: int) -> None:
    el = element(text)
    assert el.kind == "nondecimal" and el.value == value


@pytest.mark.parametrize("text, code", [("1550..5", -121), ("#H1G", -121), ("1E99999", -123), ("'abc", -151),
                                        ("ABCDEFGHIJKLM", -144), ("@1", -102), ("#3ab", -161)])
def test_malformed_data_gets_its_standard_code(text: str, code: int) -> None:
    with pytest.raises(ScpiError) as info:
        element(text)
    assert info.value.code == code


def test_strings_in_either_quote_with_doubled_quotes() -> None:
    assert element("'CURR'").value == "CURR"
    assert element('"say ""hi"""').value == 'say "hi"'
    assert element("'it''s'").value == "it's"


def test_definite_block() -> None:
    assert element("#15hello").value == b"hello"
    assert element("#0anything").value == b"anything"


def test_header_needs_white_space_before_data() -> None:
    with pytest.raises(ScpiError) as info:
        parse_unit(":SOUR0:WAV,1")
    assert info.value.code == -111
    unit = parse_unit(":SOUR0:WAV\t 1550nm , 2")
    assert [e.text for e in unit.data] == ["1550nm", "2"]


# -- unit suffixes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix, family, power", [
    ("nm", "M", -9), ("PM", "M", -12), ("um", "M", -6), ("MM", "M", -3), ("m", "M", 0),
    ("mW", "W", -3), ("uW", "W", -6), ("Watt", "W", 0), ("DBM", "DBM", 0), ("mdbm", "DBM", -3),
    ("uA", "A", -6), ("MA", "A", -3), ("nA", "A", -9), ("MAV", "V", 6), ("kV", "V", 3),
    ("MHZ", "HZ", 6), ("MAHZ", "HZ", 6), ("THz", "HZ", 12), ("MOHM", "OHM", 6), ("kohm", "OHM", 3),
    ("ms", "S", -3), ("us", "S", -6), ("NM/S", "M/S", -9), ("mm/s", "M/S", -3),
])
def test_suffix_multipliers_per_488_2(suffix: str, family: str, power: int) -> None:
    """M is milli except in MHZ/MOHM (mega); MA is mega, except that MA on a current is the milliampere."""
    assert exponent(suffix, family) == power


def test_unknown_suffix_is_131_and_overlong_is_134() -> None:
    with pytest.raises(ScpiError) as info:
        resolve("KG", (Unit("M"),))
    assert info.value.code == -131
    with pytest.raises(ScpiError) as info:
        resolve("NMNMNMNMNMNMNM", (Unit("M"),))
    assert info.value.code == -134


def test_allowed_spellings_restrict_the_suffix() -> None:
    keysight_metre = Unit("M", ("PM", "NM", "UM", "MM", "M"))
    assert resolve("nm", (keysight_metre,)) == (-9, "M")
    with pytest.raises(ScpiError) as info:
        resolve("KM", (keysight_metre,))
    assert info.value.code == -131


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.sampled_from(sorted(MULTIPLIERS)))
def test_scaled_value_equals_the_decimal_meaning(value: float, prefix: str) -> None:
    power = MULTIPLIERS[prefix]
    assert math.isclose(scale(value, power), value * 10.0 ** power, rel_tol=1e-15, abs_tol=0.0) or value == 0.0


def test_nanometres_are_exact() -> None:
    """1550 nm must be the float nearest 1.55e-6 (a driver compares with what it set)."""
    assert scale(1550.0, -9) == 1.55e-6
    assert scale(1550.5, -9) == 1.5505e-6
