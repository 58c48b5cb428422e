"""SCPI header rules over every command of every tree, and the error codes of rejected messages."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.sim.scpi import Parsed, Parser, Quantity, ScpiError
from labctl.sim.scpi.trees import TREES

from .spelling import spellings

#: Trees whose manual prints several optional roots (Keithley 2400: [:SOURce[1]] and [:SENSe[1]]).
AMBIGUOUS_ROOTS = {"keithley_2400"}
CASES = [(name, cmd) for name, tree in TREES.items() for cmd in tree.commands]


@pytest.mark.parametrize("name, cmd", CASES, ids=[f"{n}:{c.header}" for n, c in CASES])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_legal_spelling_reaches_its_command(name: str, cmd: object, data: st.DataObject) -> None:
    """Short/long, any case, optional nodes and default suffixes in or out: the same command and suffixes."""
    tree = TREES[name]
    spelled = data.draw(spellings(tree, cmd))
    result = Parser(tree).parse(spelled.text)
    assert len(result) == 1 and isinstance(result[0], Parsed), f"{spelled.text!r}: {result}"
    parsed = result[0]
    if parsed.cmd is not cmd:  # only where the manual's optional roots make the spelling ambiguous
        assert cmd in Parser(tree).candidates(spelled.text), f"{spelled.text!r} cannot reach {cmd.header}"
        assert name in AMBIGUOUS_ROOTS, f"{spelled.text!r} resolved to {parsed.cmd.header if parsed.cmd else None}"
        return
    assert parsed.query == spelled.query
    for var, value in spelled.suffixes.items():
        assert parsed.suffixes[var] == value, spelled.text


def test_trees_declare_every_action_with_a_source() -> None:
    for name, tree in TREES.items():
        for cmd in tree.commands:
            assert cmd.source, f"{name}: {cmd.header} does not say where its spelling comes from"


# -- compound messages (SCPI-99 Vol. 1 §6.2.4) -----------------------------------------------------------------------
def _parse(tree: str, message: str) -> list[Parsed | ScpiError]:
    return Parser(TREES[tree]).parse(message)


def test_header_without_colon_after_semicolon_continues_at_the_previous_level() -> None:
    a, b = _parse("keysight_n777xc", ":SOUR0:WAV 1550NM;POW 1MW")
    assert isinstance(a, Parsed) and isinstance(b, Parsed)
    assert (a.action, b.action) == ("set wavelength_m", "set power")
    assert b.header.startswith(":SOURce0:POWer")
    assert b.args == (Quantity(1e-3, "W"),)


def test_level_is_the_parent_of_the_last_mnemonic_written() -> None:
    """After ``:SOUR0:WAV:SWE:STAR 1540NM`` the level is SWEep, so ``STOP`` is the sweep stop."""
    units = _parse("keysight_n777xc", ":SOUR0:WAV:SWE:STAR 1540NM;STOP 1560NM;SPE 40NM/S")
    assert [u.action for u in units if isinstance(u, Parsed)] == ["set sweep_start_m", "set sweep_stop_m",
                                                                   "set sweep_speed_m_per_s"]


def test_leading_colon_returns_to_the_root_and_common_commands_keep_the_level() -> None:
    units = _parse("keithley_2400", ":SOUR:VOLT:LEV 1;*OPC;RANG:AUTO 1;:SENS:CURR:PROT 0.01")
    assert [u.action for u in units if isinstance(u, Parsed)] == [
        "set source_voltage", "do operation_complete_flag", "set source_voltage_autorange", "set compliance_current"]


def test_relative_header_unknown_at_the_current_level_is_113() -> None:
    units = _parse("keysight_n777xc", ":SOUR0:WAV:SWE:STAR 1540NM;LOCK 0,1234")
    assert isinstance(units[0], Parsed)
    assert isinstance(units[1], ScpiError) and units[1].code == -113


def test_command_error_discards_the_rest_of_the_message_execution_error_does_not() -> None:
    units = _parse("keysight_n777xc", ":SOUR0:WAVE 1;:SOUR0:POW?")
    assert len(units) == 1 and isinstance(units[0], ScpiError) and units[0].code == -113
    units = _parse("keysight_n777xc", ":SOUR0:WAV 3NM;POW?")
    assert isinstance(units[0], ScpiError) and units[0].code == -222
    assert isinstance(units[1], Parsed) and units[1].action == "query power"  # the level moved all the same


# -- rejections with their standard codes ------------------------------------------------------------------------
@pytest.mark.parametrize("tree, message, code", [
    ("keysight_n777xc", ":SOUR0:WAVE 1550NM", -113),          # not a short or long form
    ("keysight_n777xc", ":SOUR0:WAVELENGT 1550NM", -113),     # truncated long form
    ("keysight_n777xc", ":SOUR1:WAV 1550NM", -114),           # the N777xC has only source 0
    ("keysight_8164b", ":SOUR7:WAV?", -114),                  # slots 0..4
    ("keysight_8164b", ":SENS1:CHAN3:POW:WAV?", -114),        # channels 1..2
    ("keysight_n777xc", ":SOUR0:WAV", -109),                  # missing parameter
    ("keysight_n777xc", ":SOUR0:WAV 1550NM,1", -108),         # one parameter too many
    ("keysight_n777xc", ":SOUR0:POW:STAT? 1", -108),          # query takes no parameter
    ("keysight_n777xc", ":SOUR0:WAV 1550KG", -131),           # not a length unit
    ("keysight_n777xc", ":SOUR0:WAV 1550KM", -131),           # a length unit Keysight does not list
    ("keysight_n777xc", ":SOUR0:WAV 1550NM/S", -131),         # a speed is not a wavelength
    ("keysight_n777xc", ":SOUR0:WAV 1550", -222),             # bare metres: 1550 m is out of range
    ("keysight_n777xc", ":SOUR0:WAV 3NM", -222),
    ("keysight_n777xc", ":SOUR0:POW:STAT MAYBE", -224),       # not ON/OFF
    ("keysight_n777xc", ":SOUR0:WAV:SWE:MODE FAST", -224),    # not a sweep mode
    ("keysight_n777xc", ":SOUR0:WAV:SWE:MODE 2", -128),       # a number where only mnemonics are allowed
    ("keysight_n777xc", ":SOUR0:WAV 'x'", -158),              # string data not allowed
    ("keysight_n777xc", ":SOUR0:WAV ON", -148),               # character data not allowed (MIN/MAX/DEF are)
    ("keysight_n777xc", ":SOUR0:WAV:SWE:CHEC", -113),         # query-only header used as a command
    ("keysight_n777xc", ":SOUR0:WAV:SWE:SOFT?", -113),        # event without a query form
    ("keysight_n777xc", "*IDN", -113),                        # *IDN is query-only
    ("keysight_n777xc", "*FOO?", -113),
    ("keysight_n777xc", ":SOUR0:WAV,1550NM", -111),
    ("keysight_n777xc", ":SOUR0:WAV 1550..5NM", -121),
    ("keithley_2400", ":SOUR:VOLT 1V", -138),                 # the 2400 takes no unit suffix [?]
    ("keithley_2400", ":SOUR:VOLT 300", -222),                # ±210 V
    ("keithley_2400", ":SENS:CURR:NPLC 20", -222),            # 0.01..10
    ("keithley_2400", ":SENS:FUNC 'POWER'", -224),            # not a sense function
    ("keithley_2400", ":SENS:FUNC CURR", -148),               # the function is string data
    ("keithley_2400", ":SOUR:CURR:PROT 0.01", -113),          # compliance is SENSe:CURRent:PROTection
    ("keithley_2400", ":TRIG:COUN 2501", -222),
    ("santec_tsl570", ":WAV:SWE:SPE 10NM/S", -138),           # speed in nm/s without suffix [?]
    ("santec_tsl570", ":POW:ATT 31", -222),                   # attenuator 0..30 dB
    ("thorlabs_pm100", "SENS:AVER:COUN 0", -222),
    ("thorlabs_pm100", "SENS:POW:UNIT MW", -224),
])
def test_rejections_get_the_standard_code(tree: str, message: str, code: int) -> None:
    units = _parse(tree, message)
    assert len(units) == 1 and isinstance(units[0], ScpiError), units
    assert units[0].code == code, units[0]
    assert units[0].queue_entry().startswith(f"{code},\"")


def test_min_max_def_keywords_and_booleans() -> None:
    parser = Parser(TREES["keysight_n777xc"])
    assert parser.parse_one(":SOUR0:WAV? MIN").args == ("MIN",)
    assert parser.parse_one(":SOUR0:WAV:SWE:STAR? maximum").args == ("MAX",)
    assert parser.parse_one(":SOUR0:WAV DEF").args[0].name == "DEF"
    for text, value in (("ON", True), ("off", False), ("1", True), ("0", False), ("0.4", False), ("2", True)):
        assert parser.parse_one(f":SOUR0:POW:STAT {text}").args == (value,)
