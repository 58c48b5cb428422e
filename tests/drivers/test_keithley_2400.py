"""Keithley 2400 SourceMeter: byte-exact protocol, list sweep bulk, strict parsing, limits, pyvisa-sim."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import (ComplianceError, InstrumentConnectionError, InstrumentReplyError,
                                   InstrumentReportedError, InstrumentTimeout, LimitError)
from labctl.drivers.interfaces import SourceMeter
from labctl.drivers.keithley_2400 import Keithley2400
from labctl.sim.profiles.keithley import PROFILES
from labctl.sim.protocol import render_text, yaml_path
from labctl.drivers.testing import Late, ScriptedTransport

LF = Keithley2400.line_settings
IDN = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1234567,C30   Mar 17 2006 09:29:29/A02  /K/J"
NO_ERROR = (":SYST:ERR?", '0,"No error"')
NPLC = "+1.000000E+00"


def connect_script(stale_errors: tuple[str, ...] = (), compliance: str = "1.000000E-02",
                   compliance_back: str = "+1.000000E-02") -> list[tuple[str, str | None]]:
    return [
        ("*IDN?", IDN),
        *((":SYST:ERR?", e) for e in stale_errors), NO_ERROR,    # drained (and logged) before anything is set
        (":SOUR:FUNC VOLT", None),
        (":SOUR:VOLT:MODE FIXED", None),
        (":SOUR:VOLT:RANG:AUTO 1", None),
        (":SENS:FUNC 'CURR'", None),
        (":SENS:CURR:RANG:AUTO 1", None),
        (":FORM:ELEM CURR,STAT", None),
        (f":SENS:CURR:PROT {compliance}", None), (":SENS:CURR:PROT?", compliance_back),
        (":SENS:CURR:NPLC?", NPLC),
        NO_ERROR,
    ]


CONNECT = connect_script()
#: Status words of readings: V-source and I-measure bits set (20480), and the same at real compliance (bit 3).
OK_STATUS, AT_COMPLIANCE = 20480.0, 20488.0


def make(script, connect=CONNECT):
    transport = ScriptedTransport(list(connect) + list(script), settings=LF, address="GPIB0::24::INSTR")
    return Keithley2400(transport), transport


def sci(values) -> str:
    return ",".join(f"{v:.6E}" for v in values)


def readings(currents, status=None) -> str:
    """``current,status`` per point, as :FORM:ELEM CURR,STAT makes the 2400 answer."""
    status = [OK_STATUS] * len(currents) if status is None else status
    return ",".join(f"{i:+.6E},{s:+.6E}" for i, s in zip(currents, status))


# -- connect / identify -------------------------------------------------------------------------------------------
def test_connect_configures_voltage_source_and_current_only_replies():
    smu, t = make([])
    t.assert_done()
    assert isinstance(smu, SourceMeter)
    assert t.sent[0] == b"*IDN?\n"


def test_connect_drains_stale_errors_sets_and_reads_back_the_compliance(caplog):
    stale = ('-113,"Undefined header"', '+802,"OUTPUT blocked by output enable"')
    transport = ScriptedTransport(connect_script(stale, "1.000000E-03", "+1.000000E-03"), settings=LF)
    with caplog.at_level("WARNING", logger="labctl.drivers.keithley_2400"):
        Keithley2400(transport, compliance_a=1e-3)
    transport.assert_done()
    assert sum("stale error" in r.getMessage() for r in caplog.records) == 2


def test_compliance_the_unit_did_not_take_is_refused_at_connect():
    transport = ScriptedTransport(connect_script(compliance_back="+1.050000E-01")[:-2], settings=LF)
    with pytest.raises(InstrumentReplyError, match="compliance reads back 0.105 A"):
        Keithley2400(transport)


def test_a_configuration_the_unit_refused_fails_the_connect():
    script = connect_script()[:-1] + [(":SYST:ERR?", '-222,"Parameter data out of range"'), NO_ERROR]
    with pytest.raises(InstrumentReportedError, match="-222"):
        Keithley2400(ScriptedTransport(script, settings=LF))


def test_other_instrument_is_refused():
    with pytest.raises(InstrumentConnectionError, match="not a Keithley 2400"):
        make([], [("*IDN?", "Thorlabs,PM100D,P0000001,2.4.0")])


def test_identity_fields():
    smu, t = make([("*IDN?", IDN)])
    ident = smu.identity()
    assert (ident.maker, ident.model, ident.serial) == ("KEITHLEY INSTRUMENTS INC.", "MODEL 2400", "1234567")
    t.assert_done()


def test_serial_line_settings_follow_the_instruments_terminator(fake_serial):
    """RS-232 at 9600 8N1; the 2400's terminator is set on its front panel, the driver is told the same one."""
    from tests.drivers import protocol_fakeinst

    replies = {b"*IDN?\r": (IDN + "\r").encode(), b":SYST:ERR?\r": b'0,"No error"\r',
               b":SENS:CURR:PROT?\r": b"+1.000000E-02\r", b":SENS:CURR:NPLC?\r": b"+1.000000E+00\r"}
    fake_serial["k2400"] = lambda line: replies.get(line)
    protocol_fakeinst.TERMINATORS["k2400"] = b"\r"
    smu = Keithley2400("fakeinst://k2400", termination="\r")
    assert smu.transport.settings.baud_rate == 9600
    assert smu.transport.settings.write_termination == "\r"
    assert smu.identity().model == "MODEL 2400"
    smu.close()


# -- plain settings ----------------------------------------------------------------------------------------------------
def test_source_voltage_compliance_nplc_output():
    smu, t = make([(":SOUR:VOLT -1.500000E+00", None), (":SOUR:VOLT?", "-1.500000E+00"),
                   (":SENS:CURR:PROT 1.000000E-03", None), (":SENS:CURR:PROT?", "+1.000000E-03"),
                   (":SENS:CURR:PROT?", "+1.000000E-03"),
                   (":SENS:CURR:NPLC 0.1", None), (":SENS:CURR:NPLC?", "+1.000000E-01"),
                   (":OUTP 1", None), (":OUTP?", "1"), (":SOUR:FUNC?", "VOLT")])
    smu.set_voltage_v(-1.5)
    assert smu.get_voltage_v() == -1.5
    smu.set_compliance_a(1e-3)
    assert smu.compliance_a == pytest.approx(1e-3)
    smu.set_nplc(0.1)
    assert smu.nplc == pytest.approx(0.1)
    smu.set_output(True)
    assert smu.get_output() is True
    assert smu.source_function == "voltage"
    t.assert_done()


def test_measure_current_reads_one_current():
    smu, t = make([(":READ?", readings([-2.345678e-9]))])
    assert smu.measure_current_a() == pytest.approx(-2.345678e-9)
    t.assert_done()


def test_a_reading_at_compliance_is_flagged_and_raised_not_returned():
    smu, t = make([(":READ?", readings([1e-2], [AT_COMPLIANCE])), (":SENS:CURR:PROT?", "+1.000000E-02"),
                   (":READ?", readings([1e-2], [AT_COMPLIANCE])),
                   (":READ?", readings([3e-3], [OK_STATUS + (1 << 16)]))])   # range compliance (bit 16)
    with pytest.raises(ComplianceError, match="compliance") as info:
        smu.measure_current_a()
    assert info.value.command == ":READ?"
    assert smu.read_current() == (pytest.approx(1e-2), True)
    assert smu.read_current() == (pytest.approx(3e-3), True)
    t.assert_done()


# -- list sweep (bulk) -------------------------------------------------------------------------------------------------
def test_list_sweep_short_list_in_one_command():
    volts = np.array([0.0, -0.5, -1.0])
    amps = np.array([1.2e-10, -3.4e-7, -8.9e-7])
    smu, t = make([(":OUTP?", "0"), (":SOUR:LIST:VOLT " + sci(volts), None), (":SOUR:VOLT:MODE LIST", None),
                   (":TRIG:COUN 3", None), (":OUTP 1", None), (":READ?", readings(amps)),
                   (":SOUR:VOLT:MODE FIXED", None), (":TRIG:COUN 1", None), (":OUTP 0", None)])
    np.testing.assert_allclose(smu.list_sweep_current_a(volts), amps, rtol=1e-6)
    t.assert_done()


def test_list_sweep_of_250_points_appends_in_chunks_of_100_and_keeps_output_on():
    volts = np.linspace(-2.0, 0.5, 250)
    amps = np.linspace(-1e-6, 1e-7, 250)
    script = [(":OUTP?", "1"), (":SOUR:LIST:VOLT " + sci(volts[:100]), None),
              (":SOUR:LIST:VOLT:APP " + sci(volts[100:200]), None),
              (":SOUR:LIST:VOLT:APP " + sci(volts[200:]), None), (":SOUR:VOLT:MODE LIST", None),
              (":TRIG:COUN 250", None), (":OUTP 1", None), (":READ?", readings(amps)),
              (":SOUR:VOLT:MODE FIXED", None), (":TRIG:COUN 1", None)]
    smu, t = make(script)
    got = smu.list_sweep_current_a(volts)
    assert got.shape == (250,)
    np.testing.assert_allclose(got, amps, rtol=1e-6)
    t.assert_done()


def test_list_sweep_of_2500_points_uses_25_commands():
    volts = np.linspace(0.0, -5.0, 2500)
    smu, t = make([(":OUTP?", "1")] + [
        ((":SOUR:LIST:VOLT " if i == 0 else ":SOUR:LIST:VOLT:APP ") + sci(volts[i:i + 100]), None)
        for i in range(0, 2500, 100)] + [
        (":SOUR:VOLT:MODE LIST", None), (":TRIG:COUN 2500", None), (":OUTP 1", None),
        (":READ?", readings(np.full(2500, 1e-9))), (":SOUR:VOLT:MODE FIXED", None), (":TRIG:COUN 1", None)])
    assert smu.list_sweep_current_a(volts).size == 2500
    t.assert_done()


LIST_PREFIX = [(":OUTP?", "0"), (":SOUR:LIST:VOLT 0.000000E+00,1.000000E+00", None),
               (":SOUR:VOLT:MODE LIST", None), (":TRIG:COUN 2", None), (":OUTP 1", None)]
LIST_RESTORE = [(":SOUR:VOLT:MODE FIXED", None), (":TRIG:COUN 1", None), (":OUTP 0", None)]


@pytest.mark.parametrize("reply", ["+1.0E-06,0", "+1.0E-06,0,+2.0E-06,0,+3.0E-06,0", "+1.0E-06,0,+9.910000E+37,0",
                                   "+1.0E-06,0,abc,0", "+1.0E-06,0,,", "+1.0E-06,0,+2.5E+00,0", "",
                                   "+1.0E-06,0,+2.0E-06,0.5", "+1.0E-06,-1,+2.0E-06,0"])
def test_list_sweep_bad_replies_raise_after_restoring_fixed_mode(reply):
    smu, t = make(LIST_PREFIX + [(":READ?", reply)] + LIST_RESTORE)
    with pytest.raises(InstrumentReplyError, match=r":READ\?"):
        smu.list_sweep_current_a(np.array([0.0, 1.0]))
    t.assert_done()


def test_list_sweep_timeout_is_not_retried_and_restores_fixed_mode():
    smu, t = make(LIST_PREFIX + [(":READ?", None)] + LIST_RESTORE)
    with pytest.raises(InstrumentTimeout, match=r":READ\?"):
        smu.list_sweep_current_a(np.array([0.0, 1.0]))
    t.assert_done()


def test_list_sweep_points_at_compliance_raise_naming_the_points():
    smu, t = make(LIST_PREFIX + [(":READ?", readings([1e-6, 1e-2], [OK_STATUS, AT_COMPLIANCE]))] + LIST_RESTORE
                  + [(":SENS:CURR:PROT?", "+1.000000E-02")])
    with pytest.raises(ComplianceError, match=r"point \[1\]"):
        smu.list_sweep_current_a(np.array([0.0, 1.0]))
    t.assert_done()


def test_a_long_list_sweep_is_given_as_long_as_it_takes():
    # 2500 points at NPLC 10 (50 Hz) take minutes; the reply comes after 600 s, far past the 5 s line timeout
    volts = np.zeros(2500)
    smu, t = make([(":SENS:CURR:NPLC 10", None), (":OUTP?", "1")] + [
        ((":SOUR:LIST:VOLT " if i == 0 else ":SOUR:LIST:VOLT:APP ") + sci(volts[i:i + 100]), None)
        for i in range(0, 2500, 100)] + [
        (":SOUR:VOLT:MODE LIST", None), (":TRIG:COUN 2500", None), (":OUTP 1", None),
        (":READ?", Late(readings(np.full(2500, 1e-9)), 600.0)), (":SOUR:VOLT:MODE FIXED", None),
        (":TRIG:COUN 1", None)])
    smu.set_nplc(10)
    assert smu.sweep_timeout_s(2500) > 600.0
    assert smu.list_sweep_current_a(volts).size == 2500
    t.assert_done()


# -- strict parsing ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reply", ["+9.910000E+37,0", "-9.91E37,0", "garbage", "", "+1.0E-06,0,+2.0E-06,0",
                                   "+5.000000E+00,0", "nan,0", "+1.0E-06"])
def test_bad_current_readings_name_the_command(reply):
    smu, _ = make([(":READ?", reply)])
    with pytest.raises(InstrumentReplyError) as info:
        smu.measure_current_a()
    assert info.value.command == ":READ?"
    assert "keithley_2400" in str(info.value) and "GPIB0::24::INSTR" in str(info.value)


@pytest.mark.parametrize(("query", "reply", "name"), [
    (":SOUR:VOLT?", "+2.500000E+02", "source_voltage_v"),
    (":SOUR:VOLT?", "+9.910000E+37", "source_voltage_v"),
    (":SENS:CURR:PROT?", "-1.0E-03", "compliance_a"),
    (":SENS:CURR:NPLC?", "+1.000000E+02", "nplc"),
    (":OUTP?", "ON?", "output"),
    (":SOUR:FUNC?", "MEM", "source_function"),
])
def test_bad_setting_replies_name_the_command(query, reply, name):
    smu, _ = make([(query, reply)])
    with pytest.raises(InstrumentReplyError, match=query.replace("?", r"\?")):
        getattr(smu, name)


# -- errors, safe state, close -----------------------------------------------------------------------------------------
def test_error_queue_is_drained():
    smu, t = make([(":SYST:ERR?", '-222,"Parameter data out of range"'),
                   (":SYST:ERR?", '+802,"OUTPUT blocked by output enable"'), NO_ERROR])
    with pytest.raises(InstrumentReportedError) as info:
        smu.check_errors()
    assert info.value.errors == [(-222, "Parameter data out of range"), (802, "OUTPUT blocked by output enable")]
    t.assert_done()


def test_garbage_error_reply_is_a_reply_error():
    smu, _ = make([(":SYST:ERR?", "???")])
    with pytest.raises(InstrumentReplyError, match=r":SYST:ERR\?"):
        smu.check_errors()


def test_safe_state_zero_before_output_off():
    smu, t = make([(":SOUR:VOLT:MODE FIXED", None), (":SOUR:VOLT 0.000000E+00", None), (":OUTP 0", None)])
    smu.safe_state()
    t.assert_done()


def test_safe_state_on_a_dead_link_raises():
    smu, t = make([])
    t.close()
    with pytest.raises(InstrumentConnectionError):
        smu.safe_state()


def test_close():
    smu, t = make([])
    smu.close()
    assert not t.is_open


# -- limits: nothing is written ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [
    lambda s: s.set_voltage_v(210.5),
    lambda s: s.set_voltage_v(-250.0),
    lambda s: s.set_voltage_v(float("inf")),
    lambda s: s.set_compliance_a(1.2),
    lambda s: s.set_compliance_a(0.0),
    lambda s: s.set_nplc(0.001),
    lambda s: s.set_nplc(20),
    lambda s: s.list_sweep_current_a(np.array([])),
    lambda s: s.list_sweep_current_a(np.zeros(2501)),
    lambda s: s.list_sweep_current_a(np.array([0.0, 211.0])),
    lambda s: s.list_sweep_current_a(np.array([0.0, np.nan])),
    lambda s: s.list_sweep_current_a(["a", "b"]),
    lambda s: setattr(s, "source_function", "resistance"),
])
def test_out_of_range_settings_send_nothing(action):
    smu, t = make([])
    sent = list(t.sent)
    with pytest.raises(LimitError):
        action(smu)
    assert t.sent == sent


# -- pyvisa-sim --------------------------------------------------------------------------------------------------------
def test_shipped_yaml_matches_the_driver():
    assert yaml_path(PROFILES[0]).read_text() == render_text(PROFILES[0])


def test_pyvisa_sim_basic_operations(tmp_path: Path):
    pyvisa = pytest.importorskip("pyvisa")
    copy = tmp_path / "k2400.yaml"
    shutil.copy(yaml_path(PROFILES[0]), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    smu = Keithley2400("GPIB0::24::INSTR", resource_manager=rm)
    assert smu.identity().model == "MODEL 2400"
    assert smu.source_function == "voltage"  # the simulated unit powers up sourcing current
    smu.set_voltage_v(-1.5)
    assert smu.get_voltage_v() == -1.5
    smu.set_compliance_a(1e-3)
    assert smu.compliance_a == pytest.approx(1e-3)
    smu.set_nplc(0.1)
    assert smu.nplc == pytest.approx(0.1)
    smu.set_output(True)
    assert smu.get_output() is True
    assert smu.measure_current_a() == pytest.approx(1.23456e-6)
    with pytest.raises(LimitError):
        smu.set_voltage_v(300.0)
    smu.write(":SOUR:VOLT 300")  # past the 2400's range: refused through its error queue
    with pytest.raises(InstrumentReportedError):
        smu.check_errors()
    smu.check_errors()
    smu.safe_state()
    assert smu.get_output() is False and smu.get_voltage_v() == 0.0
    snap = smu.snapshot()
    assert snap["identity"]["model"] == "MODEL 2400"
    assert snap["settings"]["compliance_a"] == {"value": pytest.approx(1e-3), "unit": "A"}
    assert snap["settings"]["output"]["value"] is False and snap["reading_elements"] == ["CURR", "STAT"]
    smu.close()
    rm.close()


def test_a_reading_started_now_is_collected_later():
    """``start_read_current`` sends ``:READ?`` alone (the 2400 measures when it arrives), ``finish_read_current``
    reads and checks the reply; one reading outstanding at most; compliance raises as for a plain reading."""
    smu, t = make([(":READ?", readings([-2.5e-9])), (":READ?", readings([1e-2], [AT_COMPLIANCE])),
                   (":SENS:CURR:PROT?", "+1.000000E-02")])
    smu.start_read_current()
    with pytest.raises(InstrumentReplyError, match="outstanding"):
        smu.start_read_current()
    assert smu.finish_read_current() == pytest.approx(-2.5e-9)
    with pytest.raises(InstrumentReplyError, match="no reading outstanding"):
        smu.finish_read_current()
    smu.start_read_current()
    with pytest.raises(ComplianceError):
        smu.finish_read_current()
    t.assert_done()


# -- triggered buffered readings (Trigger Link, :TRACe buffer) ---------------------------------------------------------
TRIGGERED_SETUP = [(":SOUR:DEL:AUTO 0", None), (":SOUR:DEL 0", None), (":TRIG:DEL 0", None), (":ARM:SOUR IMM", None),
                   (":ARM:COUN 1", None), (":TRAC:FEED SENS", None), (":TRIG:ILIN 1", None), (":TRIG:SOUR TLIN", None)]


def armed(n: int) -> list[tuple[str, None]]:
    return [(":TRAC:CLE", None), (f":TRAC:POIN {n}", None), (f":TRIG:COUN {n}", None), (":TRAC:FEED:CONT NEXT", None),
            (":INIT", None)]


TRIGGERED_END = [(":ABOR", None), (":TRIG:SOUR IMM", None), (":TRIG:COUN 1", None), (":SOUR:DEL:AUTO 1", None)]


def test_triggered_readings_set_up_once_arm_per_sweep_and_read_the_buffer_in_one_transfer():
    """2400 manual §11 trigger model, p. 18-119 (TLINk trigger layer), Table 18-10 (:TRACe); PyMeasure spellings."""
    first, second = np.array([-1e-4, -2e-4, 3e-5]), np.array([1e-6, 2e-6])
    smu, t = make(TRIGGERED_SETUP + armed(3) + [(":TRAC:DATA?", readings(first))] + armed(2)
                  + [(":TRAC:DATA?", readings(second))] + TRIGGERED_END)
    smu.arm_triggered(3, line=1)
    np.testing.assert_allclose(smu.fetch_triggered_a(3), first, rtol=1e-6)
    smu.arm_triggered(2, line=1)                       # the set-up stays: only the buffer and count per sweep
    np.testing.assert_allclose(smu.fetch_triggered_a(2), second, rtol=1e-6)
    smu.end_triggered()
    smu.end_triggered()                                # nothing armed: nothing sent
    t.assert_done()


def test_a_short_buffer_means_lost_triggers_and_raises():
    smu, t = make(TRIGGERED_SETUP + armed(3) + [(":TRAC:DATA?", readings([1e-6, 2e-6]))])
    smu.arm_triggered(3)
    with pytest.raises(InstrumentReplyError, match=r"TRAC:DATA\?.*holds 2 readings, 3 were armed"):
        smu.fetch_triggered_a(3)
    t.assert_done()


def test_a_buffered_reading_at_compliance_raises():
    smu, t = make(TRIGGERED_SETUP + armed(2) + [(":TRAC:DATA?", readings([1e-6, 1e-2], [OK_STATUS, AT_COMPLIANCE])),
                                                (":SENS:CURR:PROT?", "+1.000000E-02")])
    smu.arm_triggered(2)
    with pytest.raises(ComplianceError, match=r"point \[1\]"):
        smu.fetch_triggered_a(2)
    t.assert_done()


@pytest.mark.parametrize("n, line", [(0, 1), (2501, 1), (10, 0), (10, 5)])
def test_triggered_arguments_out_of_range_send_nothing(n, line):
    smu, t = make([])
    with pytest.raises(LimitError):
        smu.arm_triggered(n, line)
    t.assert_done()


def test_safe_state_disarms_a_triggered_session_first():
    smu, t = make(TRIGGERED_SETUP + armed(5) + TRIGGERED_END
                  + [(":SOUR:VOLT:MODE FIXED", None), (":SOUR:VOLT 0.000000E+00", None), (":OUTP 0", None)])
    smu.arm_triggered(5)
    smu.safe_state()
    t.assert_done()


def test_min_trigger_period_follows_the_integration_time():
    smu, t = make([(":SENS:CURR:NPLC 0.01", None), (":SENS:CURR:NPLC 1", None)])
    smu.set_nplc(0.01)
    fast = smu.min_trigger_period_s()
    smu.set_nplc(1.0)
    assert fast < 1e-3 < 20e-3 < smu.min_trigger_period_s()      # 50 Hz: 0.2 ms and 20 ms integrations
    t.assert_done()


def test_repeated_readings_come_in_one_transfer_and_the_count_returns_to_one():
    amps = np.array([1e-4, 1.00001e-4, 0.99999e-4])
    smu, t = make([(":TRIG:COUN 3", None), (":READ?", readings(amps)), (":TRIG:COUN 1", None)])
    np.testing.assert_allclose(smu.read_repeated_a(3), amps, rtol=1e-6)
    t.assert_done()


def test_repeated_readings_timeout_still_restores_the_count():
    smu, t = make([(":TRIG:COUN 2", None), (":READ?", None), (":TRIG:COUN 1", None)])
    with pytest.raises(InstrumentTimeout, match=r":READ\?"):
        smu.read_repeated_a(2)
    t.assert_done()
