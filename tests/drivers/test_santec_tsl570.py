"""Santec TSL-570 (SCPI command set): byte-exact protocol, strict parsing, limits, pyvisa-sim."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import (InstrumentConnectionError, InstrumentError, InstrumentReplyError,
                                   InstrumentReportedError, InstrumentTimeout, LimitError)
from labctl.drivers.interfaces import SweepSettings, TunableLaser
from labctl.drivers.santec_tsl570 import SantecTSL570
from labctl.sim.profiles.santec import PROFILES
from labctl.sim.protocol import render_text, yaml_path
from labctl.drivers.testing import ScriptedTransport

CR = SantecTSL570.line_settings
IDN = "SANTEC,TSL-570,21020001,0001.0000.0001"
CONNECT = [
    ("*IDN?", IDN),
    (":SYST:COMM:COD?", "1"),
    (":POW:UNIT 0", None),
    (":WAV:UNIT 0", None),
    (":WAV:MIN?", "1.4800000E-06"),
    (":WAV:MAX?", "1.6400000E-06"),
]
NO_ERROR = (":SYST:ERR?", '0,"No error"')


def make(script, **kwargs):
    transport = ScriptedTransport(CONNECT + list(script), settings=CR, address="TCPIP0::10.0.0.5::5000::SOCKET")
    return SantecTSL570(transport, poll_interval_s=0.001, **kwargs), transport


def cr_block(payload: bytes, terminator: bytes = b"\r") -> bytes:
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload + terminator


SWEEP = SweepSettings(start_m=1.50e-6, stop_m=1.51e-6, step_m=1e-12, speed_m_per_s=10e-9)
CONFIGURE = [
    (":WAV:SWE:MOD 1", None),
    (":WAV:SWE:SPE 10", None),
    (":WAV:SWE:STAR 1.5000000E-06", None),
    (":WAV:SWE:STOP 1.5100000E-06", None),
    (":WAV:SWE:STEP 1.0000000E-12", None),
    (":WAV:SWE:CYCL 1", None),
    (":TRIG:INP:EXT 0", None),
    (":TRIG:INP:STAN 0", None),
    (":TRIG:OUTP 3", None),
    (":TRIG:OUTP:SETT 0", None),       # periodic in wavelength, set explicitly
    (":TRIG:OUTP:STEP 1.0000000E-12", None),
]
OPC_DONE = ("*OPC?", "1")


# -- connect / identify ----------------------------------------------------------------------------------------
def test_connect_in_scpi_mode_sets_units_and_reads_range():
    laser, t = make([])
    t.assert_done()
    assert laser.wavelength_limits_m() == (1.48e-6, 1.64e-6)
    assert isinstance(laser, TunableLaser)
    assert t.sent[0] == b"*IDN?\r"


def test_connect_switches_legacy_unit_to_scpi_and_confirms():
    script = [("*IDN?", IDN), (":SYST:COMM:COD?", "0"), (":SYST:COMM:COD 1", None), (":SYST:COMM:COD?", "1")]
    t = ScriptedTransport(script + CONNECT[2:], settings=CR)
    SantecTSL570(t)
    t.assert_done()


def test_connect_fails_if_unit_stays_in_legacy_mode():
    script = [("*IDN?", IDN), (":SYST:COMM:COD?", "0"), (":SYST:COMM:COD 1", None), (":SYST:COMM:COD?", "0")]
    with pytest.raises(InstrumentConnectionError, match="SCPI"):
        SantecTSL570(ScriptedTransport(script, settings=CR))


def test_connect_refuses_another_instrument():
    t = ScriptedTransport([("*IDN?", "Keysight Technologies,N7776C,MY1,1.0")], settings=CR)
    with pytest.raises(InstrumentConnectionError, match="not a Santec"):
        SantecTSL570(t)


@pytest.mark.parametrize("reply", ["SANTEC,TSL-570", "garbage", ""])
def test_malformed_identity_is_a_reply_error(reply):
    with pytest.raises(InstrumentReplyError, match=r"\*IDN\?"):
        SantecTSL570(ScriptedTransport([("*IDN?", reply)], settings=CR))


def test_range_in_nm_means_legacy_and_is_refused():
    script = CONNECT[:4] + [(":WAV:MIN?", "1480.0000")]
    with pytest.raises(InstrumentReplyError, match=r":WAV:MIN\?.*Legacy"):
        SantecTSL570(ScriptedTransport(script, settings=CR))


def test_line_settings_per_transport():
    sock = SantecTSL570.line_settings_for("TCPIP0::192.168.1.155::5000::SOCKET")
    assert (sock.write_termination, sock.read_termination) == ("\r", "\r")
    gpib = SantecTSL570.line_settings_for("GPIB0::1::INSTR")
    assert (gpib.write_termination, gpib.read_termination) == ("\r\n", "")
    serial = SantecTSL570.line_settings_for("/dev/ttyUSB0")
    assert (serial.write_termination, serial.read_termination) == ("\r", "\r")


# -- plain settings ------------------------------------------------------------------------------------------------
def test_wavelength_in_metres_without_unit_waits_for_the_tune():
    laser, t = make([(":WAV 1.5500001E-06", None), ("*OPC?", "0"), ("*OPC?", "0"), OPC_DONE,
                     (":WAV?", "1.5500001E-06")])
    laser.set_wavelength_m(1.5500001e-6)
    assert laser.get_wavelength_m() == pytest.approx(1.5500001e-6, abs=1e-16)
    assert t.now_s == pytest.approx(2 * 0.001)   # two polls at poll_interval_s
    t.assert_done()


def test_a_tune_that_never_finishes_times_out_naming_opc():
    laser, t = make([(":WAV 1.5500001E-06", None), ("*OPC?", "0"), ("*OPC?", "0")])
    laser.tune_timeout_s = 0.0
    with pytest.raises(InstrumentTimeout, match=r"\*OPC\?"):
        laser.set_wavelength_m(1.5500001e-6)


def test_power_in_dbm_converted_to_watts():
    laser, t = make([(":POW 0.00", None), (":POW 3.01", None), (":POW:UNIT?", "0"), (":POW?", "-3.00"),
                     (":POW:ACT?", "-3.02")])
    laser.set_power_w(1e-3)
    laser.set_power_w(2e-3)
    assert laser.get_power_w() == pytest.approx(1e-3 * 10 ** -0.3)
    assert laser.measured_power_w() == pytest.approx(1e-3 * 10 ** -0.302)
    t.assert_done()


def test_power_read_back_in_mw_after_a_front_panel_unit_change_is_converted():
    laser, t = make([(":POW:UNIT?", "1"), (":POW?", "2.50")])
    assert laser.get_power_w() == pytest.approx(2.5e-3)
    t.assert_done()


def test_output_on_off():
    laser, t = make([(":POW:STAT 1", None), (":POW:STAT?", "1"), (":POW:STAT 0", None), (":POW:STAT?", "0")])
    laser.set_output(True)
    assert laser.get_output() is True
    laser.set_output(False)
    assert laser.get_output() is False
    t.assert_done()


def test_sweep_settings_read_back():
    laser, t = make([(":WAV:SWE:SPE?", "10"), (":WAV:SWE:MOD?", "1"), (":WAV:SWE:CYCL?", "1"),
                     (":TRIG:OUTP?", "3"), (":TRIG:OUTP:STEP?", "1.0000000E-12"), (":WAV:SWE:STAR?", "1.5E-06"),
                     (":WAV:SWE:RANG:MIN?", "1.4800000E-06"), (":WAV:SWE:RANG:MAX?", "1.6400000E-06")])
    assert laser.sweep_speed_nm_per_s == 10
    assert laser.sweep_mode == "continuous_one_way"
    assert laser.sweep_cycles == 1
    assert laser.trigger_output_mode == "step"
    assert laser.trigger_output_step_m == pytest.approx(1e-12)
    assert laser.sweep_start_m == pytest.approx(1.5e-6)
    assert laser.sweep_range_m() == (1.48e-6, 1.64e-6)
    t.assert_done()


# -- sweep and logging (bulk) ----------------------------------------------------------------------------------------
def test_configure_sweep_sequence_and_error_check():
    laser, t = make(CONFIGURE + [NO_ERROR])
    assert laser.configure_sweep(SWEEP) == 10001
    t.assert_done()


def test_configure_sweep_reports_values_the_laser_refused():
    laser, t = make(CONFIGURE + [(":SYST:ERR?", '-222,"Data out of range"'), NO_ERROR])
    with pytest.raises(InstrumentReportedError, match="Data out of range") as info:
        laser.configure_sweep(SWEEP)
    assert info.value.errors == [(-222, "Data out of range")]
    t.assert_done()


def test_start_and_wait_sweep_polls_status():
    laser, t = make(CONFIGURE + [NO_ERROR, (":WAV:SWE 1", None), (":WAV:SWE?", "4"), (":WAV:SWE?", "1"),
                                 (":WAV:SWE?", "1"), (":WAV:SWE?", "0")])
    laser.configure_sweep(SWEEP)
    laser.start_sweep()
    laser.wait_sweep(timeout_s=5.0)
    t.assert_done()


def test_wait_sweep_does_not_take_an_early_idle_status_for_completion():
    """A 10 nm sweep at 10 nm/s takes 1 s: a 0 read before any running state is not the end."""
    laser, t = make(CONFIGURE + [NO_ERROR, (":WAV:SWE 1", None), (":WAV:SWE?", "0"), (":WAV:SWE?", "1"),
                                 (":WAV:SWE?", "0")])
    laser.configure_sweep(SWEEP)
    laser.start_sweep()
    laser.wait_sweep(timeout_s=5.0)
    t.assert_done()


def test_wait_sweep_times_out_naming_the_status_query():
    laser, t = make([(":WAV:SWE 1", None), (":WAV:SWE?", "1")])
    laser.start_sweep()
    with pytest.raises(InstrumentTimeout, match=r":WAV:SWE\?"):
        laser.wait_sweep(timeout_s=0.0)


def test_unknown_sweep_status_is_a_reply_error():
    laser, _ = make([(":WAV:SWE?", "2")])
    with pytest.raises(InstrumentReplyError, match=r":WAV:SWE\?"):
        laser.sweep_status()


def _wavelengths_with_cr_byte(n: int) -> np.ndarray:
    """Realistic float32 wavelengths, at least one of which contains the CR byte 0x0D in its encoding."""
    grid = (1.50e-6 + np.arange(20000) * 1e-12).astype("<f4")
    with_cr = grid[[b"\r" in v.tobytes() for v in grid]]
    assert with_cr.size
    return np.concatenate([with_cr[:1], grid[: n - 1]])


def test_logged_wavelengths_float32_block():
    wl = _wavelengths_with_cr_byte(5)
    laser, t = make([(":READ:POIN?", "5"), (":READ:DAT?", cr_block(wl.tobytes())), OPC_DONE])
    got = laser.logged_wavelengths_m()
    np.testing.assert_allclose(got, wl.astype(float), rtol=0, atol=1e-18)
    assert got.dtype == np.float64
    t.assert_done()


def test_logged_wavelengths_float64_metres_block():
    wl = np.array([1.5e-6, 1.5000001e-6, 1.5000002e-6], dtype="<f8")
    laser, t = make([(":READ:POIN?", "3"), (":READ:DAT?", cr_block(wl.tobytes())), OPC_DONE])
    np.testing.assert_array_equal(laser.logged_wavelengths_m(), wl)
    t.assert_done()


def test_logged_wavelengths_legacy_int32_tenth_picometres():
    wl = np.array([15000000, 15000010, 15000020], dtype="<i4")  # 1500.0000 nm, +1 pm, +2 pm
    laser, t = make([(":READ:POIN?", "3"), (":READ:DAT?", cr_block(wl.tobytes())), OPC_DONE])
    np.testing.assert_allclose(laser.logged_wavelengths_m(), [1.5e-6, 1.500001e-6, 1.500002e-6], atol=1e-16)


def test_logged_wavelengths_in_nm_are_converted():
    wl = np.array([1500.0, 1500.5, 1501.0], dtype="<f4")
    laser, _ = make([(":READ:POIN?", "3"), (":READ:DAT?", cr_block(wl.tobytes())), OPC_DONE])
    np.testing.assert_allclose(laser.logged_wavelengths_m(), wl.astype(float) * 1e-9)


@pytest.mark.parametrize("trailing_cr", [True, False])
def test_block_with_or_without_terminator_leaves_the_line_in_step(trailing_cr):
    """Santec's sample reads the block without its terminator; a left-over CR must not shift later replies."""
    wl = _wavelengths_with_cr_byte(4)
    block = cr_block(wl.tobytes(), b"\r" if trailing_cr else b"")
    laser, t = make([(":READ:POIN?", "4"), (":READ:DAT?", block), OPC_DONE, (":WAV?", "1.5500000E-06")])
    np.testing.assert_allclose(laser.logged_wavelengths_m(), wl.astype(float), atol=1e-18)
    assert laser.get_wavelength_m() == pytest.approx(1.55e-6)
    assert t.settings.read_termination == "\r"
    t.assert_done()


def test_block_length_must_match_point_count():
    wl = np.full(3, 1.55e-6, dtype="<f4")
    laser, _ = make([(":READ:POIN?", "5"), (":READ:DAT?", cr_block(wl.tobytes())), OPC_DONE])
    with pytest.raises(InstrumentReplyError, match=r":READ:DAT\?.*5 points"):
        laser.logged_wavelengths_m()


@pytest.mark.parametrize("reply", [b"#3x1\r", b"#0\r", b"12345\r"])
def test_garbled_block_header_is_a_reply_error(reply):
    laser, _ = make([(":READ:POIN?", "5"), (":READ:DAT?", reply)])
    with pytest.raises(InstrumentReplyError, match=r":READ:DAT\?"):
        laser.logged_wavelengths_m()


def test_truncated_block_body_times_out_naming_the_command():
    """Announced 20 bytes, 12 arrive: on any real link that is a timeout (retries off: one exchange only)."""
    body = np.full(5, 1.55e-6, dtype="<f4").tobytes()
    t = ScriptedTransport(CONNECT + [(":READ:POIN?", "5"), (":READ:DAT?", b"#220" + body[:12])],
                          settings=replace(CR, retries=0))
    laser = SantecTSL570(t)
    with pytest.raises(InstrumentTimeout, match=r":READ:DAT\?"):
        laser.logged_wavelengths_m()


def test_junk_after_the_block_is_a_reply_error():
    wl = np.full(2, 1.55e-6, dtype="<f4")
    laser, _ = make([(":READ:POIN?", "2"), (":READ:DAT?", cr_block(wl.tobytes(), b"X")), OPC_DONE])
    with pytest.raises(InstrumentReplyError, match=r"\*OPC\?"):
        laser.logged_wavelengths_m()


@pytest.mark.parametrize("values", [np.array([1.55e-6, np.nan], "<f4"), np.array([0.0, 1.0], "<f4"),
                                    np.array([1.55e-6, 1.9e-6], "<f4")])
def test_implausible_logged_values_are_refused(values):
    laser, _ = make([(":READ:POIN?", "2"), (":READ:DAT?", cr_block(values.tobytes())), OPC_DONE])
    with pytest.raises(InstrumentReplyError, match=r":READ:DAT\?.*not wavelengths"):
        laser.logged_wavelengths_m()


@pytest.mark.parametrize("reply", ["many", "600000", "-1", "3.5"])
def test_bad_point_count_is_a_reply_error(reply):
    laser, _ = make([(":READ:POIN?", reply)])
    with pytest.raises(InstrumentReplyError, match=r":READ:POIN\?"):
        laser.logged_wavelengths_m()


def test_empty_log_is_an_error_not_an_empty_array():
    laser, _ = make([(":READ:POIN?", "0")])
    with pytest.raises(InstrumentError, match="no points"):
        laser.logged_wavelengths_m()


# -- errors, alerts, safe state, close --------------------------------------------------------------------------------
def test_error_queue_is_drained():
    laser, t = make([(":SYST:ERR?", '-113,"Undefined header"'), (":SYST:ERR?", '-222,"Data out of range"'),
                     NO_ERROR])
    with pytest.raises(InstrumentReportedError) as info:
        laser.check_errors()
    assert info.value.errors == [(-113, "Undefined header"), (-222, "Data out of range")]
    t.assert_done()


def test_garbage_error_reply_is_a_reply_error():
    laser, _ = make([(":SYST:ERR?", "banana")])
    with pytest.raises(InstrumentReplyError, match=r":SYST:ERR\?"):
        laser.check_errors()


def test_alerts():
    laser, t = make([(":SYST:ALER?", "No alerts."), (":SYST:ALER?", "No05.,Wavelength Error"),
                     (":SYST:ALER?", "No07.,Inter lock detection"), (":SYST:ALER?", "No alerts.")])
    laser.check_alerts()
    with pytest.raises(InstrumentReportedError, match="wavelength error.*interlock") as info:
        laser.check_alerts()
    assert [code for code, _ in info.value.errors] == [5, 7]
    t.assert_done()


def test_alert_reported_as_a_state_does_not_loop_forever():
    laser, t = make([(":SYST:ALER?", "No25.,Shutter Error"), (":SYST:ALER?", "No25.,Shutter Error")])
    assert laser.read_alerts() == [(25, "shutter error")]
    t.assert_done()


def test_safe_state_stops_sweep_then_output_off():
    laser, t = make([(":WAV:SWE 0", None), (":POW:STAT 0", None)])
    laser.safe_state()
    t.assert_done()


def test_safe_state_on_a_dead_link_raises():
    laser, t = make([])
    t.close()
    with pytest.raises(InstrumentConnectionError):
        laser.safe_state()


def test_closing_a_laser_used_alone_switches_it_off_first():
    laser, t = make([(":WAV:SWE 0", None), (":POW:STAT 0", None)])
    laser.close()
    assert not t.is_open
    t.assert_done()


# -- strict parsing ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "reply", "call"), [
    (":WAV?", "garbage", lambda laser: laser.get_wavelength_m()),
    (":WAV?", "1550.0000", lambda laser: laser.get_wavelength_m()),
    (":WAV?", "9.91E37", lambda laser: laser.get_wavelength_m()),
    (":POW?", "", lambda laser: laser.get_power_w()),
    (":POW?", "+99.00", lambda laser: laser.get_power_w()),
    (":POW:ACT?", "-INF", lambda laser: laser.measured_power_w()),
    (":POW:STAT?", "2", lambda laser: laser.get_output()),
    (":WAV:SWE:CYCL?", "1.5", lambda laser: laser.sweep_cycles),
    (":TRIG:OUTP?", "7", lambda laser: laser.trigger_output_mode),
])
def test_malformed_replies_name_the_command(query, reply, call):
    unit = [(":POW:UNIT?", "0")] if query == ":POW?" else []
    laser, _ = make(unit + [(query, reply)])
    with pytest.raises(InstrumentReplyError) as info:
        call(laser)
    assert info.value.command == query
    assert "santec_tsl570" in str(info.value) and "SOCKET" in str(info.value)


# -- limits: nothing is written ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [
    lambda laser: laser.set_wavelength_m(1.45e-6),  # inside the family window, outside this unit's band
    lambda laser: laser.set_wavelength_m(float("nan")),
    lambda laser: laser.set_power_w(0.1),  # +20 dBm
    lambda laser: laser.set_power_w(1e-6),  # -30 dBm
    lambda laser: laser.set_power_w(0.0),
    lambda laser: laser.set_power_w(-1e-3),
    lambda laser: laser.configure_sweep(SweepSettings(1.50e-6, 1.51e-6, 1e-12, 3e-9)),  # 3 nm/s
    lambda laser: laser.configure_sweep(SweepSettings(1.51e-6, 1.50e-6, 1e-12, 10e-9)),  # start > stop
    lambda laser: laser.configure_sweep(SweepSettings(1.50e-6, 1.51e-6, 1e-14, 10e-9)),  # step < 0.1 pm
    lambda laser: laser.configure_sweep(SweepSettings(1.50e-6, 1.51e-6, 2e-8, 10e-9)),  # step > span
    lambda laser: laser.configure_sweep(SweepSettings(1.48e-6, 1.64e-6, 1e-13, 10e-9)),  # 1.6 M points
    lambda laser: laser.configure_sweep(SweepSettings(1.40e-6, 1.51e-6, 1e-12, 10e-9)),  # below the band
    lambda laser: setattr(laser, "sweep_cycles", 1000),
    lambda laser: setattr(laser, "sweep_speed_nm_per_s", 500),
    lambda laser: setattr(laser, "trigger_output_step_m", 0.0),
    lambda laser: setattr(laser, "sweep_mode", "zigzag"),
])
def test_out_of_range_settings_send_nothing(action):
    laser, t = make([])
    sent = list(t.sent)
    with pytest.raises(LimitError):
        action(laser)
    assert t.sent == sent
    t.assert_done()


# -- pyvisa-sim --------------------------------------------------------------------------------------------------------
def test_shipped_yaml_matches_the_driver():
    assert yaml_path(PROFILES[0]).read_text() == render_text(PROFILES[0])


@pytest.fixture
def sim_rm(tmp_path: Path):
    pyvisa = pytest.importorskip("pyvisa")
    copy = tmp_path / "santec.yaml"
    shutil.copy(yaml_path(PROFILES[0]), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    yield rm
    rm.close()


@pytest.mark.parametrize("resource", ["TCPIP0::127.0.0.1::5000::SOCKET", "GPIB0::1::INSTR"])
def test_pyvisa_sim_basic_operations(sim_rm, resource):
    laser = SantecTSL570(resource, resource_manager=sim_rm, poll_interval_s=0.001)
    assert laser.identity().model == "TSL-570"
    assert laser.command_set == "scpi"  # the simulated unit powers up in Legacy mode; connect switched it
    assert laser.power_unit == "dBm" and laser.wavelength_unit == "nm"
    assert laser.wavelength_limits_m() == (1.48e-6, 1.64e-6)
    laser.set_wavelength_m(1.5500001e-6)
    assert laser.get_wavelength_m() == pytest.approx(1.5500001e-6, abs=1e-16)
    laser.set_power_w(1e-3)
    assert laser.get_power_w() == pytest.approx(1e-3)
    laser.set_output(True)
    assert laser.get_output() is True
    assert laser.configure_sweep(SweepSettings(1.50e-6, 1.51e-6, 1e-12, 200e-9)) == 10001
    assert (laser.sweep_speed_nm_per_s, laser.sweep_mode, laser.trigger_output_mode) == (
        200, "continuous_one_way", "step")
    assert laser.trigger_output_period == "wavelength"  # the simulated unit powers up "time"
    assert laser.trigger_output_step_m == pytest.approx(1e-12)
    laser.start_sweep()
    laser.wait_sweep(timeout_s=2.0)
    with pytest.raises(LimitError):
        laser.set_wavelength_m(1.7e-6)
    laser.write(":WAV 1.8E-06")  # past the limits: the unit refuses it through its error queue
    with pytest.raises(InstrumentReportedError):
        laser.check_errors()
    laser.check_errors()
    laser.check_alerts()
    with pytest.raises(InstrumentError, match="no points"):
        laser.logged_wavelengths_m()
    laser.safe_state()
    assert laser.get_output() is False
    snap = laser.snapshot()
    assert snap["settings"]["trigger_output_period"]["value"] == "wavelength"
    assert snap["power_w"] == pytest.approx(1e-3) and snap["identity"]["model"] == "TSL-570"
    laser.close()
