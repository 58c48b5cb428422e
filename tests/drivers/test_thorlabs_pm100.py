"""Thorlabs PM100D / PM100USB: byte-exact protocol, strict parsing, limits, no-logging, pyvisa-sim."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import (InstrumentConnectionError, InstrumentError, InstrumentReplyError,
                                   InstrumentReportedError, LimitError)
from labctl.drivers.interfaces import PowerReadout
from labctl.drivers.thorlabs_pm100 import NoLoggingError, ThorlabsPM100
from labctl.sim.profiles.thorlabs import PROFILES
from labctl.sim.protocol import render_text, yaml_path
from labctl.drivers.testing import ScriptedTransport

LF = ThorlabsPM100.line_settings
IDN = "Thorlabs,PM100D,P0012345,2.4.0"
SENSOR = "S122C,19012345,12-MAR-2019,1,2,33"
NO_ERROR = ("SYST:ERR?", '0,"No error"')
CONNECT = [
    ("*IDN?", IDN),
    NO_ERROR,                        # the queue is drained before anything is set
    ("SYST:SENS:IDN?", SENSOR),
    ("SENS:POW:UNIT W", None),
    ("SENS:CORR:WAV? MIN", "7.000000E+02"),
    ("SENS:CORR:WAV? MAX", "1.800000E+03"),
    NO_ERROR,                        # and must be clean after the set-up
]


def make(script, connect=CONNECT):
    transport = ScriptedTransport(list(connect) + list(script), settings=LF,
                                  address="USB0::0x1313::0x8078::P0012345::INSTR")
    return ThorlabsPM100(transport), transport


# -- connect / identify -------------------------------------------------------------------------------------------
def test_connect_reads_sensor_sets_watts_and_wavelength_range():
    meter, t = make([])
    t.assert_done()
    assert isinstance(meter, PowerReadout) and meter.n_ports == 1
    assert meter.sensor[:2] == ("S122C", "19012345")
    assert meter.wavelength_limits_m() == pytest.approx((700e-9, 1800e-9))
    assert t.sent[0] == b"*IDN?\n"


def test_quoted_sensor_fields_and_capital_maker_are_accepted():
    connect = [("*IDN?", "THORLABS,PM100USB,1907123,1.6.0"), NO_ERROR,
               ("SYST:SENS:IDN?", '"S130C","210921324","21-SEP-2021",1,3,33')] + CONNECT[3:]
    meter, t = make([], connect)
    assert meter.sensor[0] == "S130C"
    t.assert_done()


def test_no_sensor_is_a_clear_connection_error():
    connect = [("*IDN?", IDN), NO_ERROR, ("SYST:SENS:IDN?", "no sensor")]
    with pytest.raises(InstrumentConnectionError, match="no sensor head"):
        make([], connect)


def test_energy_only_head_is_refused():
    connect = [("*IDN?", IDN), NO_ERROR, ("SYST:SENS:IDN?", "ES111C,19000001,01-JAN-2019,3,1,2")]
    with pytest.raises(InstrumentConnectionError, match="cannot measure power"):
        make([], connect)


def test_fixed_wavelength_head_skips_the_range_queries():
    connect = [("*IDN?", IDN), NO_ERROR, ("SYST:SENS:IDN?", "S401C,19000002,01-JAN-2019,2,1,1"),
               ("SENS:POW:UNIT W", None), NO_ERROR]
    meter, t = make([], connect)
    t.assert_done()
    with pytest.raises(LimitError, match="fixed wavelength"):
        meter.set_wavelength_m(1.55e-6)
    assert len(t.sent) == 5


def test_stale_errors_are_drained_at_connect_and_a_refused_set_up_fails_it(caplog):
    stale = [("*IDN?", IDN), ("SYST:ERR?", '-113,"Undefined header"'), NO_ERROR]
    with caplog.at_level("WARNING", logger="labctl.drivers.thorlabs_pm100"):
        meter, t = make([], stale + CONNECT[2:])
    t.assert_done()
    assert any("stale error" in r.getMessage() for r in caplog.records)
    refused = CONNECT[:-1] + [("SYST:ERR?", '-222,"Data out of range"'), NO_ERROR]
    with pytest.raises(InstrumentReportedError, match="-222"):
        make([], refused)


@pytest.mark.parametrize("reply", ["S122C,19012345,12-MAR-2019,1,2", "S122C,1,x,one,2,33", ""])
def test_malformed_sensor_identity_is_a_reply_error(reply):
    with pytest.raises(InstrumentReplyError, match=r"SYST:SENS:IDN\?"):
        make([], [("*IDN?", IDN), NO_ERROR, ("SYST:SENS:IDN?", reply)])


def test_other_instrument_is_refused():
    with pytest.raises(InstrumentConnectionError, match="not a Thorlabs"):
        make([], [("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1,C30")])


# -- settings ----------------------------------------------------------------------------------------------------------
def test_wavelength_is_sent_in_nm():
    meter, t = make([("SENS:CORR:WAV 1550.0", None), ("SENS:CORR:WAV?", "1.550000E+03")])
    meter.set_wavelength_m(1.55e-6, port=1)
    assert meter.get_wavelength_m() == pytest.approx(1.55e-6)
    t.assert_done()


def test_averaging_time_maps_to_three_millisecond_samples():
    meter, t = make([("SENS:AVER:COUN 100", None), ("SENS:AVER:COUN 1", None), ("SENS:AVER:COUN?", "100")])
    meter.set_averaging_time_s(0.3)
    meter.set_averaging_time_s(1e-4)  # shorter than one sample: one sample
    assert meter.get_averaging_time_s() == pytest.approx(0.3)
    t.assert_done()


def test_range_auto_and_fixed_upper_in_watts():
    meter, t = make([("SENS:POW:RANG:AUTO 1", None), ("SENS:POW:RANG:AUTO 0", None),
                     ("SENS:POW:RANG:UPP 1.000000E-05", None), ("SENS:POW:RANG:AUTO?", "0"),
                     ("SENS:POW:RANG:UPP?", "1.210000E-05")])
    meter.set_range_dbm(None)
    meter.set_range_dbm(-20.0)
    assert meter.range_auto is False
    assert meter.range_upper_w == pytest.approx(1.21e-5)
    t.assert_done()


def test_power_unit_read_back():
    meter, t = make([("SENS:POW:UNIT?", "W")])
    assert meter.power_unit == "W"
    t.assert_done()


# -- readings ----------------------------------------------------------------------------------------------------------
def test_read_power_in_watts():
    meter, t = make([("MEAS:POW?", "1.234567E-04"), ("MEAS:POW?", "-2.1E-09")])
    assert meter.read_power_w(1) == pytest.approx(1.234567e-4)
    np.testing.assert_allclose(meter.read_all_w(), [-2.1e-9])
    t.assert_done()


@pytest.mark.parametrize("reply", ["9.91E+37", "NaN", "garbage", "", "1.0E+03", "-0.5", "1.2E-04,3.4E-04"])
def test_bad_power_replies_name_the_command(reply):
    meter, _ = make([("MEAS:POW?", reply)])
    with pytest.raises(InstrumentReplyError) as info:
        meter.read_power_w(1)
    assert info.value.command == "MEAS:POW?"
    assert "thorlabs_pm100" in str(info.value) and "0x1313" in str(info.value)


@pytest.mark.parametrize(("query", "reply", "name"), [
    ("SENS:CORR:WAV?", "abc", "wavelength_nm"),
    ("SENS:CORR:WAV?", "1.55E-06", "wavelength_nm"),  # metres where nm are due
    ("SENS:AVER:COUN?", "2.5", "average_count"),
    ("SENS:POW:RANG:AUTO?", "ON?", "range_auto"),
    ("SENS:POW:UNIT?", "MW", "power_unit"),
])
def test_bad_setting_replies_name_the_command(query, reply, name):
    meter, _ = make([(query, reply)])
    with pytest.raises(InstrumentReplyError, match=query.replace("?", r"\?")):
        getattr(meter, name)


# -- no logging --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda m: m.configure_logging(100, 0.01),
    lambda m: m.start_logging(),
    lambda m: m.wait_logging(1.0),
    lambda m: m.logged_power_w(1),
])
def test_logging_is_refused_clearly_without_io(call):
    meter, t = make([])
    with pytest.raises(NoLoggingError, match="no logging") as info:
        call(meter)
    assert isinstance(info.value, InstrumentError) and isinstance(info.value, NotImplementedError)
    t.assert_done()


# -- errors / close ----------------------------------------------------------------------------------------------------
def test_error_queue_is_drained():
    meter, t = make([("SYST:ERR?", '-222,"Data out of range"'), NO_ERROR, NO_ERROR])
    with pytest.raises(InstrumentReportedError) as info:
        meter.check_errors()
    assert info.value.errors == [(-222, "Data out of range")]
    meter.check_errors()
    t.assert_done()


def test_close():
    meter, t = make([])
    meter.close()
    assert not t.is_open
    with pytest.raises(InstrumentConnectionError):
        meter.read_power_w(1)


# -- limits: nothing is written ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [
    lambda m: m.set_wavelength_m(650e-9),  # below the S122C's 700 nm
    lambda m: m.set_wavelength_m(1.9e-6),
    lambda m: m.set_wavelength_m("red"),
    lambda m: m.set_wavelength_m(1.55e-6, port=2),
    lambda m: m.set_averaging_time_s(0.0),
    lambda m: m.set_averaging_time_s(-1.0),
    lambda m: m.set_averaging_time_s(10.0),  # 3334 samples: longer than the 3 s reply timeout
    lambda m: m.set_range_dbm(60.0),  # 1 kW
    lambda m: m.set_range_dbm(float("nan")),
    lambda m: m.read_power_w(2),
    lambda m: setattr(m, "average_count", 0),
    lambda m: setattr(m, "average_count", 2.5),
    lambda m: setattr(m, "power_unit", "mW"),
])
def test_out_of_range_settings_send_nothing(action):
    meter, t = make([])
    sent = list(t.sent)
    with pytest.raises(LimitError):
        action(meter)
    assert t.sent == sent


# -- pyvisa-sim --------------------------------------------------------------------------------------------------------
def test_shipped_yaml_matches_the_driver():
    assert yaml_path(PROFILES[0]).read_text() == render_text(PROFILES[0])


def test_pyvisa_sim_basic_operations(tmp_path: Path):
    pyvisa = pytest.importorskip("pyvisa")
    copy = tmp_path / "pm100.yaml"
    shutil.copy(yaml_path(PROFILES[0]), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    meter = ThorlabsPM100("USB0::0x1313::0x8078::P0000001::INSTR", resource_manager=rm)
    assert meter.identity().model == "PM100D"
    assert meter.sensor[0] == "S122C"
    assert meter.power_unit == "W"  # the simulated console powers up in dBm; connect switched it
    meter.set_wavelength_m(1.31e-6)
    assert meter.get_wavelength_m() == pytest.approx(1.31e-6)
    meter.set_averaging_time_s(0.03)
    assert meter.average_count == 10
    meter.set_range_dbm(-10.0)
    assert meter.range_auto is False and meter.range_upper_w == pytest.approx(1e-4)
    meter.set_range_dbm(None)
    assert meter.range_auto is True
    assert meter.read_power_w(1) == pytest.approx(1.234567e-4)
    with pytest.raises(LimitError):
        meter.set_wavelength_m(2.0e-6)
    meter.write("SENS:CORR:WAV 30000")  # past the console's limits: refused through the error queue
    with pytest.raises(InstrumentReportedError):
        meter.check_errors()
    meter.check_errors()
    snap = meter.snapshot()
    assert snap["settings"]["wavelength_nm"] == {"value": pytest.approx(1310.0), "unit": "nm"}
    assert snap["settings"]["power_unit"]["value"] == "W" and snap["sensor"][0] == "S122C"
    meter.close()
    rm.close()
