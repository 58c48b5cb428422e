"""Lines third-party drivers send, as they send them, and what the trees make of them.

Spellings are rendered from the sources read (format strings filled with typical values): PyMeasure 0.16
``keysight/keysightN7776C.py`` and ``keithley/keithley2400.py`` + ``buffer.py``, ``thorlabs/thorlabspm100usb.py``;
LabExT 2.3 ``LaserMainframeKeysight.py``, ``PowerMeterGenericKeysight.py``, ``PowerMeterN7744A.py`` (LabExT
builds ``<subsystem><channel><command>``, e.g. ``sour0`` + ``:wav 1550.0nm``); QMI 0.54
``santec/tsl_570.py`` and ``thorlabs/pm100d.py``; and the issue's own examples.
"""

from __future__ import annotations

import pytest

from labctl.sim.scpi import Keyword, Parsed, Parser, Quantity, ScpiError
from labctl.sim.scpi.trees import TREES

# (tree, line, expected actions in order)
THIRD_PARTY: list[tuple[str, str, list[str]]] = [
    # PyMeasure KeysightN7776C
    ("keysight_n777xc", "SOUR0:WAV 1550.5nm", ["set wavelength_m"]),
    ("keysight_n777xc", "sour0:wav 1550.500000nm", ["set wavelength_m"]),
    ("keysight_n777xc", "sour0:wav?", ["query wavelength_m"]),
    ("keysight_n777xc", "SOUR0:POW 1.000000 mW", ["set power"]),
    ("keysight_n777xc", "SOUR0:POW 3.000000 dBm", ["set power"]),
    ("keysight_n777xc", "SOUR0:POW?", ["query power"]),
    ("keysight_n777xc", "SOUR0:POW:UNIT 1", ["set power_unit"]),
    ("keysight_n777xc", "SOUR0:POW:STAT 1", ["set output"]),
    ("keysight_n777xc", "SOUR0:POW:STAT?", ["query output"]),
    ("keysight_n777xc", ":LOCK 0,1234", ["set lock"]),
    ("keysight_n777xc", ":LOCK?", ["query lock"]),
    ("keysight_n777xc", "TRIG0:OUTP STF", ["set trigger_output"]),
    ("keysight_n777xc", "TRIG0:INP SWS", ["set trigger_input"]),
    ("keysight_n777xc", "sour0:wav:swe:star 1540.000000nm", ["set sweep_start_m"]),
    ("keysight_n777xc", "sour0:wav:swe:stop?", ["query sweep_stop_m"]),
    ("keysight_n777xc", "sour0:wav:swe:step 0.001000nm", ["set sweep_step_m"]),
    ("keysight_n777xc", "sour0:wav:swe:speed 50.000000nm/s", ["set sweep_speed_m_per_s"]),
    ("keysight_n777xc", "sour0:wav:swe:mode CONT", ["set sweep_mode"]),
    ("keysight_n777xc", "sour0:wav:swe:rep TWOW", ["set sweep_repeat"]),
    ("keysight_n777xc", "sour0:wav:swe:chec?", ["query sweep_check"]),
    ("keysight_n777xc", "sour0:read:points? llog", ["query readout_points"]),
    ("keysight_n777xc", "sour0:read:data? llog", ["query readout_data"]),
    ("keysight_n777xc", "sour0:wav:swe 1", ["set sweep_state"]),
    ("keysight_n777xc", "SOUR0:WAV:SWE:LLOG 1", ["set lambda_logging"]),
    ("keysight_n777xc", "sour0:wav:swe:step:next", ["do sweep_step_next"]),
    ("keysight_n777xc", "sour0:wav:swe:step:prev", ["do sweep_step_previous"]),
    ("keysight_n777xc", "*IDN?", ["query identity"]),
    ("keysight_n777xc", "SYST:ERR?", ["query system_error"]),
    ("keysight_n777xc", "OUTP0?", ["query output"]),                     # the example [?]
    # LabExT on an N7776C/N7778C (channel 0)
    ("keysight_n777xc", "LOCK 0,1234", ["set lock"]),
    ("keysight_n777xc", "sour0:wav:swe:start? min", ["query sweep_start_m"]),
    ("keysight_n777xc", "sour0:wav:swe:pmax? 1540.0nm,1560.0nm", ["query sweep_power_max"]),
    ("keysight_n777xc", "sour0:wav:swe:step 10.0pm", ["set sweep_step_m"]),
    ("keysight_n777xc", "sour0:pow 0.0dBm", ["set power"]),
    ("keysight_n777xc", "*OPC?", ["query operation_complete"]),
    # LabExT power meters (N7744A, channel 1) and a 8164B frame (slot 2, channel 1)
    ("keysight_n774xa", ":SENS1:POW:WAV 1550.000000 nm", ["set sensor_wavelength_m"]),
    ("keysight_n774xa", ":SENS1:POW:ATIME 0.000100 s", ["set sensor_averaging_time_s"]),
    ("keysight_n774xa", ":SENS1:POW:RANG -20.000000", ["set sensor_range_dbm"]),
    ("keysight_n774xa", ":SENS1:POW:GAIN:AUTO 1", ["set sensor_auto_gain"]),
    ("keysight_n774xa", ":FETCH1:POW?", ["query fetch_power"]),
    ("keysight_n774xa", ":INIT1:CONT ON", ["set continuous"]),
    ("keysight_n774xa", ":INIT1:IMM", ["do initiate"]),
    ("keysight_n774xa", "sens1:func:par:logg 1001,0.000100s", ["set logging_parameters"]),
    ("keysight_n774xa", "trig1:inp sme", ["set trigger_input"]),
    ("keysight_n774xa", "trig1:outp dis", ["set trigger_output"]),
    ("keysight_8164b", ":SENS2:CHAN1:POW:WAV 1550.000000 nm", ["set sensor_wavelength_m"]),
    ("keysight_8164b", ":sens1:chan2:pow:wav?", ["query sensor_wavelength_m"]),  # the 816x guide's example
    ("keysight_8164b", "slot0:idn?", ["query slot_identity"]),
    ("keysight_8164b", "trig:conf?", ["query trigger_configuration"]),  # LabExT LaserMainframeKeysight (816x)
    # PyMeasure Keithley2400 (long forms throughout) and its buffer mixin
    ("keithley_2400", ":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS", ["set elements"]),
    ("keithley_2400", ":SOURCE:FUNCTION VOLT", ["set source_function"]),
    ("keithley_2400", ":SOUR:VOLT:RANG:AUTO 1", ["set source_voltage_autorange"]),
    ("keithley_2400", ":SENSE:CURRENT:PROTECTION 0.1", ["set compliance_current"]),
    ("keithley_2400", ":SOURCE:VOLTAGE 1.5", ["set source_voltage"]),
    ("keithley_2400", "OUTPUT 1", ["set output"]),
    ("keithley_2400", "OUTPUT?", ["query output"]),
    ("keithley_2400", ":MEASURE:CURRENT?", ["query measure_current"]),
    ("keithley_2400", ":SENS:FUNC 'CURR';:SENS:CURR:NPLC 1.000000;", ["set sense_functions", "set nplc"]),
    ("keithley_2400", ":SENS:CURR:RANG:AUTO 1;", ["set sense_current_autorange"]),
    ("keithley_2400", ":SENSE:CURRENT:NPLCYCLES 1", ["set nplc"]),
    ("keithley_2400", ":SENSE:FUNCTION:ALL", ["do sense_all_on"]),
    ("keithley_2400", ":READ?", ["query read"]),
    ("keithley_2400", ":SYSTEM:AZERO:STATE ONCE", ["set auto_zero"]),
    ("keithley_2400", ":OUTPUT:SMODE HIMP", ["set output_off_mode"]),
    ("keithley_2400", ":TRIGGER:COUNT 10", ["set trigger_count"]),
    ("keithley_2400", ":ARM:COUN 1;:TRIG:COUN 100", ["set arm_count", "set trigger_count"]),
    ("keithley_2400", ":ARM:SOUR TIM;:ARM:TIM 0.100", ["set arm_source", "set arm_timer_s"]),
    ("keithley_2400", ":TRIG:OUTP DEL;:TRIG:OLIN 2;", ["set trigger_output", "set trigger_output_line"]),
    ("keithley_2400", ":SYST:BEEP 1000, 0.5", ["do beep"]),
    ("keithley_2400", ":CALCULATE3:FORMAT MEAN;:CALCULATE3:DATA?;", ["set statistic", "query statistic_data"]),
    ("keithley_2400", ":STAT:PRES;*CLS;*SRE 1;:STAT:MEAS:ENAB 512;",
     ["do status_preset", "do clear_status", "set service_request_enable", "set measurement_enable"]),
    ("keithley_2400", ":TRAC:FEED SENSE;:TRAC:FEED:CONT NEXT;", ["set buffer_feed", "set buffer_control"]),
    ("keithley_2400", ":FORM:DATA ASCII", ["set data_format"]),
    ("keithley_2400", ":TRAC:DATA?", ["query buffer_data"]),
    ("keithley_2400", ":ROUTE:TERMINALS FRON", ["set terminals"]),
    ("keithley_2400", ":SOUR:VOLT:LEV 1;:SENS:CURR:PROT 0.01", ["set source_voltage", "set compliance_current"]),
    # QMI Santec TSL-570 and labctl's spellings
    ("santec_tsl570", ":WAV 1.55E-06", ["set wavelength_m"]),
    ("santec_tsl570", ":WAV:MIN?", ["query wavelength_min_m"]),
    ("santec_tsl570", ":WAV:FREQ 193.5THZ", ["set frequency_hz"]),
    ("santec_tsl570", ":WAV:SWE:STAT:REP", ["do sweep_repeat"]),
    ("santec_tsl570", ":TRIG:INP:SOFT", ["do software_trigger"]),
    ("santec_tsl570", ":READout:DATa?", ["query log_wavelengths"]),
    ("santec_tsl570", ":POW 3.00", ["set power"]),
    ("santec_tsl570", ":POW:ACT?", ["query power_monitor"]),
    ("santec_tsl570", ":SYST:ALER?", ["query system_alert"]),
    # PyMeasure ThorlabsPM100USB and QMI PM100D
    ("thorlabs_pm100", "SENSE:CORR:WAV 1550", ["set wavelength_m"]),
    ("thorlabs_pm100", "SYST:SENSOR:IDN?", ["query sensor_identity"]),
    ("thorlabs_pm100", "MEAS:ENER?", ["query measure_energy"]),
    ("thorlabs_pm100", "MEAS:CURR?", ["query measure_current"]),
    ("thorlabs_pm100", "SENS:POW:RANG?", ["query range_upper_w"]),
    ("thorlabs_pm100", "SENS:CORR:WAV? MAX", ["query wavelength_m"]),
]


@pytest.mark.parametrize("tree, line, actions", THIRD_PARTY, ids=[c[1] for c in THIRD_PARTY])
def test_third_party_lines_parse_to_their_actions(tree: str, line: str, actions: list[str]) -> None:
    results = Parser(TREES[tree]).parse(line)
    errors = [r for r in results if isinstance(r, ScpiError)]
    assert not errors, errors
    assert [r.action for r in results if isinstance(r, Parsed)] == actions


def test_pymeasure_values_arrive_in_si() -> None:
    laser = Parser(TREES["keysight_n777xc"])
    assert laser.parse_one("SOUR0:WAV 1550.5nm").args == (Quantity(1.5505e-6, "M"),)
    assert laser.parse_one("SOUR0:POW 1.000000 mW").args == (Quantity(1e-3, "W"),)
    assert laser.parse_one("SOUR0:POW 3.000000 dBm").args == (Quantity(3.0, "DBM"),)
    assert laser.parse_one("SOUR0:POW 0.002").args[0].unit is None  # the instrument's :POW:UNIT decides
    assert laser.parse_one("sour0:wav:swe:step 10.0pm").args == (pytest.approx(1e-11),)
    assert laser.parse_one("sour0:wav:swe:start? min").args == (Keyword.MIN.value,)
    smu = Parser(TREES["keithley_2400"])
    parsed = smu.parse(":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS")[0]
    assert isinstance(parsed, Parsed) and parsed.args == (("VOLT", "CURR", "RES", "TIME", "STAT"),)
    assert smu.parse_one(":SENS:FUNC 'CURR:DC'").args == (("CURR",),)
    assert smu.parse_one(":SOUR:FUNC CURR").action == "set source_function"  # character data: the source


def test_what_the_instruments_refuse_from_third_party_habits() -> None:
    # QMI writes the Santec wavelength in nm; in the SCPI command set a bare number is metres: -222
    result = Parser(TREES["santec_tsl570"]).parse(":WAV 1550.000")
    assert isinstance(result[0], ScpiError) and result[0].code == -222
    # a unit suffix the manual's units table does not list (Keysight: metres are PM, NM, UM, MM, M)
    result = Parser(TREES["keysight_n777xc"]).parse("SOUR0:WAV 1.5505 um")
    assert isinstance(result[0], Parsed)
    result = Parser(TREES["keysight_n777xc"]).parse("SOUR0:WAV 0.0015505 km")
    assert isinstance(result[0], ScpiError) and result[0].code == -131
    # QMI's Santec range query spelling in a compound message, then an illegal sweep mode: -222 for the mode only
    results = Parser(TREES["santec_tsl570"]).parse(":WAV:MIN?;:WAV:SWE:MOD 4")
    assert isinstance(results[0], Parsed) and isinstance(results[1], ScpiError) and results[1].code == -222


def test_coverage_measurement_counts_only_resolvable_summary_entries() -> None:
    from labctl.sim.scpi.coverage import measure
    from labctl.sim.scpi.lexer import parse_unit
    from labctl.sim.scpi.manual_summaries import SUMMARIES

    for name in TREES:
        c = measure(name)
        assert c.summary == len(SUMMARIES[name]) > 10 and c.implemented + len(c.missing) == c.summary
        parser = Parser(TREES[name])
        for entry in SUMMARIES[name]:
            parse_unit(entry)  # every entry is a well-formed header
            assert bool(parser.candidates(entry)) == (entry not in c.missing)
