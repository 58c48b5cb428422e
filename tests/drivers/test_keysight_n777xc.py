"""Keysight N7776C/N7778C: byte-exact connect and settings, strict parsing, limits, pyvisa-sim."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labctl.drivers.errors import (InstrumentConnectionError, InstrumentReplyError, InstrumentReportedError,
                                   LimitError)
from labctl.drivers.interfaces import SweepSettings, TunableLaser
from labctl.drivers.laser_outputs import switch_on_together
from labctl.drivers.keysight_n777xc import KeysightN777xC
from labctl.sim.profiles.keysight import KEYSIGHT_N7778C
from labctl.sim.protocol import render_text, yaml_path
from labctl.drivers.testing import ScriptedTransport
from tests.drivers.test_keysight_laser import LASER_SETUP, LF, N777X_CONNECT, N7778C_IDN, NO_ERROR, make

OPC = ("*OPC?", "1")


# -- connect / identify ------------------------------------------------------------------------------------------------
def test_connect_identifies_sets_watts_reads_limits_and_checks_errors():
    laser, t = make()
    t.assert_done()
    assert isinstance(laser, TunableLaser)
    assert laser.model == "N7778C"
    assert laser.identity_at_connect.serial == "DE59800324"
    assert laser.wavelength_limits_m() == (1.49e-6, 1.64e-6)


def test_connect_unlocks_a_locked_laser():
    connect = [("*IDN?", N7778C_IDN), ("*CLS", None), (":LOCK?", "1"), (":LOCK 0,1234", None), (":LOCK?", "0"),
               *LASER_SETUP[1:], NO_ERROR]
    _, t = make(connect=connect)
    t.assert_done()


def test_connect_with_another_pin():
    connect = [("*IDN?", N7778C_IDN), ("*CLS", None), (":LOCK?", "1"), (":LOCK 0,4321", None), (":LOCK?", "0"),
               *LASER_SETUP[1:], NO_ERROR]
    t = ScriptedTransport(connect, settings=LF)
    KeysightN777xC(t, pin="4321")
    t.assert_done()


def test_connect_fails_when_the_pin_is_wrong():
    connect = [("*IDN?", N7778C_IDN), ("*CLS", None), (":LOCK?", "1"), (":LOCK 0,1234", None), (":LOCK?", "1")]
    t = ScriptedTransport(connect, settings=LF)
    with pytest.raises(InstrumentReportedError, match="locked") as info:
        KeysightN777xC(t)
    assert info.value.command == ":LOCK?"
    t.assert_done()


def test_connect_accepts_the_n7776c():
    t = ScriptedTransport([("*IDN?", "Keysight Technologies,N7776C,DE1,V1.0"), *N777X_CONNECT[1:]], settings=LF)
    assert KeysightN777xC(t).model == "N7776C"


def test_connect_refuses_another_instrument():
    t = ScriptedTransport([("*IDN?", "Keysight Technologies,N7744A,MY1,V1.0")], settings=LF)
    with pytest.raises(InstrumentConnectionError, match="N7744A") as info:
        KeysightN777xC(t)
    assert info.value.command == "*IDN?"
    t.assert_done()


@pytest.mark.parametrize("reply", ["Keysight Technologies,N7778C", "", "garbage"])
def test_malformed_identity_is_a_reply_error(reply):
    t = ScriptedTransport([("*IDN?", reply)], settings=LF)
    with pytest.raises(InstrumentReplyError) as info:
        KeysightN777xC(t)
    assert info.value.command == "*IDN?"


def test_connect_reports_errors_raised_during_set_up():
    connect = N777X_CONNECT[:-1] + [(":SYST:ERR?", '-221,"Settings conflict"'), NO_ERROR]
    t = ScriptedTransport(connect, settings=LF)
    with pytest.raises(InstrumentReportedError, match="-221"):
        KeysightN777xC(t)
    t.assert_done()


# -- settings ----------------------------------------------------------------------------------------------------------
def test_wavelength_sent_in_metres_waits_for_opc_and_checks_errors():
    laser, t = make([(":SOUR0:WAV 1.55123450E-06", None), OPC, NO_ERROR, (":SOUR0:WAV?", "+1.55123450E-006")])
    laser.set_wavelength_m(1.5512345e-6)
    assert laser.get_wavelength_m() == pytest.approx(1.5512345e-6, abs=1e-16)
    t.assert_done()


def test_power_is_sent_with_its_unit_and_read_back_in_the_unit_the_laser_reports():
    laser, t = make([(":SOUR0:POW 2.500000E+00MW", None), OPC, NO_ERROR,
                     (":SOUR0:POW:UNIT?", "1"), (":SOUR0:POW?", "+2.50000000E-003")])
    laser.set_power_w(2.5e-3)
    assert laser.get_power_w() == pytest.approx(2.5e-3)
    t.assert_done()


def test_power_read_back_in_dbm_after_a_front_panel_unit_change_is_converted():
    # the bug of a bare ":SOUR0:POW <W>": with :SOUR0:POW:UNIT 0 the same number would mean dBm
    laser, t = make([(":SOUR0:POW:UNIT?", "0"), (":SOUR0:POW?", "+3.97940009E+000")])
    assert laser.get_power_w() == pytest.approx(2.5e-3, rel=1e-6)
    t.assert_done()


def test_output_on_off():
    laser, t = make([(":SOUR0:POW:STAT 1", None), OPC, NO_ERROR, (":SOUR0:POW:STAT?", "1"),
                     (":SOUR0:POW:STAT 0", None), OPC, NO_ERROR, (":SOUR0:POW:STAT?", "+0")])
    laser.set_output(True)
    assert laser.get_output() is True
    laser.set_output(False)
    assert laser.get_output() is False
    t.assert_done()


def test_output_on_waits_to_stabilise_unless_started_for_a_shared_wait():
    """set_output(True) pauses output_settle_s (LabExT's 1 s); start_output sends the same commands and returns that
    pause instead of sleeping it, so lasers switched on together wait once (switch_on_together)."""
    on = [(":SOUR0:POW:STAT 1", None), OPC, NO_ERROR]
    laser, t = make(on * 2)
    laser.output_settle_s = 1.0
    laser.set_output(True)
    assert t.now_s == pytest.approx(1.0)
    assert laser.start_output() == 1.0 and t.now_s == pytest.approx(1.0)
    t.assert_done()


class _PlainLaser:
    """A laser without start_output: switched on with its own set_output."""

    def __init__(self) -> None:
        self.on = False

    def set_output(self, enabled: bool) -> None:
        self.on = enabled


def test_lasers_switched_on_together_share_one_stabilisation_wait():
    lasers = [make([(":SOUR0:POW:STAT 1", None), OPC, NO_ERROR]) for _ in range(3)]
    for k, (laser, _) in enumerate(lasers):
        laser.output_settle_s = 0.5 + 0.25 * k
    plain = _PlainLaser()
    waits: list[float] = []
    switch_on_together([laser for laser, _ in lasers] + [plain], waits.append)
    assert waits == [1.0] and plain.on                 # the slowest of the three, once
    for _, t in lasers:
        assert t.now_s == 0.0                          # none slept on its own
        t.assert_done()
    switch_on_together([], waits.append)
    assert waits == [1.0]                              # nothing switched on: no wait


def test_refused_setting_surfaces_from_the_error_queue():
    laser, t = make([(":SOUR0:POW:STAT 1", None), OPC, (":SYST:ERR?", '-300,"Laser locked"'), NO_ERROR])
    with pytest.raises(InstrumentReportedError, match="Laser locked") as info:
        laser.set_output(True)
    assert info.value.errors == [(-300, "Laser locked")]
    t.assert_done()


def test_sweep_settings_read_back():
    laser, t = make([
        (":SOUR0:WAV:SWE:MODE?", "CONT"), (":SOUR0:WAV:SWE:STAR?", "+1.52000000E-006"),
        (":SOUR0:WAV:SWE:STOP?", "+1.58000000E-006"), (":SOUR0:WAV:SWE:STEP?", "+1.00000000E-011"),
        (":SOUR0:WAV:SWE:SPE?", "+4.00000000E-008"), (":SOUR0:WAV:SWE:CYCL?", "+1"),
        (":SOUR0:WAV:SWE:LLOG?", "1"), (":SOUR0:WAV:SWE?", "+0"), (":SOUR0:POW:UNIT?", "+1"), (":LOCK?", "0"),
    ])
    assert laser.sweep_mode == "CONT"
    assert (laser.sweep_start_m, laser.sweep_stop_m) == (1.52e-6, 1.58e-6)
    assert laser.sweep_step_m == pytest.approx(1e-11)
    assert laser.sweep_speed_m_per_s == pytest.approx(40e-9)
    assert (laser.sweep_cycles, laser.lambda_logging, laser.sweep_state) == (1, True, 0)
    assert laser.power_unit_watt is True and laser.is_locked() is False
    t.assert_done()


def test_plain_setting_spellings():
    laser, t = make([(":SOUR0:WAV:SWE:MODE STEP", None), (":SOUR0:WAV:SWE:SPE 0.5000NM/S", None),
                     (":TRIG0:OUTP SWF", None), (":SOUR0:WAV:SWE 2", None),
                     (":SOUR0:WAV:SWE:CYCL 3", None)])
    laser.sweep_mode = "STEP"
    laser.sweep_speed_nm_per_s = 0.5
    laser.trigger_output = "SWF"
    assert not hasattr(type(laser), "trigger_configuration")  # :TRIG:CONF is an 816x mainframe command
    laser.sweep_state = 2
    laser.sweep_cycles = 3
    t.assert_done()


def test_lock_and_unlock():
    laser, t = make([(":LOCK 0,1234", None), (":LOCK?", "0")])
    laser.unlock()
    t.assert_done()


# -- errors, safe state, close -----------------------------------------------------------------------------------------
def test_error_queue_is_drained():
    laser, t = make([(":SYST:ERR?", '-222,"Data out of range"'), (":SYST:ERR?", '-113,"Undefined header"'),
                     NO_ERROR])
    with pytest.raises(InstrumentReportedError) as info:
        laser.check_errors()
    assert info.value.errors == [(-222, "Data out of range"), (-113, "Undefined header")]
    t.assert_done()


def test_garbage_error_reply_is_a_reply_error():
    laser, t = make([(":SYST:ERR?", "whatever")])
    with pytest.raises(InstrumentReplyError) as info:
        laser.check_errors()
    assert info.value.command == ":SYST:ERR?"


def test_safe_state_stops_sweep_and_switches_off_with_read_back():
    laser, t = make([(":SOUR0:WAV:SWE 0", None), (":SOUR0:POW:STAT 0", None), (":SOUR0:POW:STAT?", "0")])
    laser.safe_state()
    t.assert_done()


def test_safe_state_raises_if_the_output_stays_on():
    laser, t = make([(":SOUR0:WAV:SWE 0", None), (":SOUR0:POW:STAT 0", None), (":SOUR0:POW:STAT?", "1")])
    with pytest.raises(InstrumentReportedError, match="still on"):
        laser.safe_state()


def test_closing_a_laser_used_alone_switches_it_off_first():
    laser, t = make([(":SOUR0:WAV:SWE 0", None), (":SOUR0:POW:STAT 0", None), (":SOUR0:POW:STAT?", "0")])
    laser.close()
    assert not t.is_open
    t.assert_done()


def test_close_still_closes_when_the_safe_state_fails_and_says_so():
    laser, t = make([(":SOUR0:WAV:SWE 0", None), (":SOUR0:POW:STAT 0", None), (":SOUR0:POW:STAT?", "1")])
    with pytest.raises(InstrumentReportedError, match="still on"):
        laser.close()
    assert not t.is_open


# -- strict parsing ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query, reply, read", [
    (":SOUR0:WAV?", "abc", lambda l: l.get_wavelength_m()),
    (":SOUR0:WAV?", "", lambda l: l.get_wavelength_m()),
    (":SOUR0:WAV?", "+9.91E+37", lambda l: l.get_wavelength_m()),
    (":SOUR0:WAV?", "+1550.000", lambda l: l.get_wavelength_m()),          # nm, not m
    (":SOUR0:WAV?", "+1.55E-006,+1.56E-006", lambda l: l.get_wavelength_m()),
    (":SOUR0:POW?", "NaN", lambda l: l.get_power_w()),
    (":SOUR0:POW?", "+5.0E-001", lambda l: l.get_power_w()),             # 0.5 W is implausible
    (":SOUR0:POW?", "-3.0", lambda l: l.get_power_w()),                  # a negative power in W
    (":SOUR0:POW:STAT?", "2", lambda l: l.get_output()),
    (":SOUR0:WAV:SWE:MODE?", "CONTINUOUS", lambda l: l.sweep_mode),
    (":SOUR0:WAV:SWE:SPE?", "+40", lambda l: l.sweep_speed_m_per_s),    # nm/s, not m/s
    (":LOCK?", "maybe", lambda l: l.is_locked()),
])
def test_malformed_replies_name_the_command(query, reply, read):
    unit = [(":SOUR0:POW:UNIT?", "1")] if query == ":SOUR0:POW?" else []
    laser, t = make(unit + [(query, reply)])
    with pytest.raises(InstrumentReplyError) as info:
        read(laser)
    assert info.value.command == query
    assert query in str(info.value)
    t.assert_done()


@pytest.mark.parametrize("reply", ["+1.9E-006", "abc"])
def test_malformed_limits_at_connect_name_the_command(reply):
    connect = [("*IDN?", N7778C_IDN), ("*CLS", None), (":LOCK?", "0"), (":SOUR0:POW:UNIT 1", None),
               (":SOUR0:WAV? MIN", reply)]
    t = ScriptedTransport(connect, settings=LF)
    with pytest.raises(InstrumentReplyError) as info:
        KeysightN777xC(t)
    assert info.value.command == ":SOUR0:WAV? MIN"


def test_inverted_limits_are_a_reply_error():
    connect = [("*IDN?", N7778C_IDN), ("*CLS", None), (":LOCK?", "0"), (":SOUR0:POW:UNIT 1", None),
               (":SOUR0:WAV? MIN", "+1.64E-006"), (":SOUR0:WAV? MAX", "+1.49E-006")]
    with pytest.raises(InstrumentReplyError, match="not below"):
        KeysightN777xC(ScriptedTransport(connect, settings=LF))


# -- limits: nothing is sent -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [
    lambda l: l.set_wavelength_m(1.65e-6),          # inside the family envelope, beyond this unit's MAX
    lambda l: l.set_wavelength_m(1.48e-6),
    lambda l: l.set_wavelength_m(2e-6),
    lambda l: l.set_wavelength_m(float("nan")),
    lambda l: l.set_power_w(0.2),
    lambda l: l.set_power_w(0.0),
    lambda l: l.set_power_w("1 mW"),
    lambda l: l.set_output(2),
    lambda l: setattr(l, "sweep_mode", "FAST"),
    lambda l: setattr(l, "trigger_input", "BOGUS"),
    lambda l: setattr(l, "power_mw", 60.0),
    lambda l: setattr(l, "sweep_cycles", 0),
    lambda l: setattr(l, "sweep_state", 4),
    lambda l: setattr(l, "sweep_speed_nm_per_s", 1000),
    lambda l: l.unlock("12a4"),
])
def test_out_of_range_settings_send_nothing(action):
    laser, t = make()
    with pytest.raises(LimitError):
        action(laser)
    t.assert_done()


# -- pyvisa-sim --------------------------------------------------------------------------------------------------------
def test_shipped_yaml_matches_the_driver():
    assert yaml_path(KEYSIGHT_N7778C).read_text() == render_text(KEYSIGHT_N7778C)


@pytest.fixture
def sim_rm(tmp_path: Path):
    pyvisa = pytest.importorskip("pyvisa")
    copy = tmp_path / KEYSIGHT_N7778C.filename
    shutil.copy(yaml_path(KEYSIGHT_N7778C), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    yield rm
    rm.close()


@pytest.mark.parametrize("resource", KEYSIGHT_N7778C.resources)
def test_pyvisa_sim_basic_operations(sim_rm, resource):
    laser = KeysightN777xC(resource, resource_manager=sim_rm, poll_interval_s=0, output_settle_s=0)
    assert laser.identity().model == "N7778C"
    assert laser.power_unit_watt is True
    assert laser.wavelength_limits_m() == (1.49e-6, 1.64e-6)
    laser.set_wavelength_m(1.5512345e-6)
    assert laser.get_wavelength_m() == pytest.approx(1.5512345e-6, abs=1e-16)
    laser.set_power_w(2e-3)  # the static simulation accepts it; its read-back stays at the profile's 1 mW
    assert laser.get_power_w() == pytest.approx(1e-3)
    laser.set_output(True)
    assert laser.get_output() is True
    # the canonical sweep of the profile: CHEC?, PMAX? and EXP? are static dialogues
    assert laser.configure_sweep(SweepSettings(1.52e-6, 1.58e-6, 1e-11, 40e-9)) == 6001
    assert (laser.sweep_mode, laser.sweep_cycles, laser.lambda_logging) == ("CONT", 1, True)
    assert (laser.sweep_start_m, laser.sweep_stop_m) == (1.52e-6, 1.58e-6)
    assert laser.sweep_step_m == pytest.approx(1e-11)
    laser.start_sweep()
    assert laser.sweep_state == 1
    laser.finish_sweep(abort=True)
    assert laser.sweep_state == 0
    with pytest.raises(LimitError):
        laser.set_wavelength_m(1.65e-6)
    laser.write(":SOUR0:WAV 1.8E-06")  # past the simulated limits: refused through the error queue
    with pytest.raises(InstrumentReportedError, match="-113"):
        laser.check_errors()
    laser.check_errors()
    laser.safe_state()
    assert laser.get_output() is False
    snap = laser.snapshot()
    assert snap["identity"]["model"] == "N7778C" and snap["power_w"] == pytest.approx(1e-3)
    assert snap["settings"]["wavelength_m"] == {"value": pytest.approx(1.5512345e-6), "unit": "m"}
    assert snap["settings"]["output_enabled"]["value"] is False
    laser.close()



def test_a_power_change_can_be_sent_and_waited_for_later():
    """``start_power_w`` sends the command alone (the laser settles while the host sets the other lasers),
    ``wait_power_settled`` is the ``*OPC?`` that ends the wait; limits are checked before anything is sent."""
    laser, t = make([(":SOUR0:POW 1.250000E+00MW", None), OPC])
    laser.start_power_w(1.25e-3)
    laser.wait_power_settled()
    with pytest.raises(LimitError):
        laser.start_power_w(0.2)
    t.assert_done()
