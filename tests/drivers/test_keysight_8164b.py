"""Keysight 8164B frame: slot-0 laser and 81634B power sensors; byte-exact protocol, strict parsing, limits,
the §1.3 swept insertion loss in one frame (trigger loop), and pyvisa-sim."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import (InstrumentConnectionError, InstrumentReplyError, InstrumentReportedError,
                                   InstrumentTimeout, LimitError)
from labctl.drivers.interfaces import PowerReadout, SweepSettings, TunableLaser
from labctl.drivers.keysight_8164b import Keysight8164B
from labctl.drivers.keysight_sweep import swept_insertion_loss
from labctl.sim.profiles.keysight import KEYSIGHT_8164B, SIM_POWERS_W
from labctl.sim.protocol import render_text, yaml_path
from labctl.drivers.testing import ScriptedTransport, block
from tests.drivers.test_keysight_laser import (FRAME_FINISH_SCRIPT, LASER_SETUP, LF, NO_ERROR, POWER_READ, SHORT_SWEEP,
                                               START_SCRIPT, WAIT_SCRIPT, configure_script, f64_block)

IDN = "Keysight Technologies,8164B,MY48100123,V5.25(72637)"
LASER_IDN = "Keysight Technologies,81600B,DE41400321,V4.3(70310)"
PM_IDN = "Keysight Technologies,81634B,DE4120100{},V5.25(72637)"
OPC = ("*OPC?", "1")


def u16_block(values) -> bytes:
    return block(np.asarray(values, dtype="<u2").tobytes())


def f32_block(values) -> bytes:
    return block(np.asarray(values, dtype="<f4").tobytes())


def slots_script(filled: dict[int, str]) -> list[tuple[str, str | None]]:
    script: list[tuple[str, str | None]] = []
    for slot in range(5):
        if slot in filled:
            script += [(f":SLOT{slot}:EMPT?", "0"), (f":SLOT{slot}:IDN?", filled[slot])]
        else:
            script.append((f":SLOT{slot}:EMPT?", "1"))
    return script


FILLED = {0: LASER_IDN, 1: PM_IDN.format(1), 2: PM_IDN.format(2)}
ATIM = "+1.00000000E-004"


def channels_setup(channels: list[tuple[int, int]], atim: str = ATIM) -> list[tuple[str, str | None]]:
    """Unit W on every power channel, then each channel's averaging time read back."""
    return ([(f":SENS{slot}:CHAN{ch}:POW:UNIT 1", None) for slot, ch in channels]
            + [(f":SENS{slot}:CHAN{ch}:POW:ATIM?", atim) for slot, ch in channels])


CONNECT = [
    ("*IDN?", IDN), ("*CLS", None), *slots_script(FILLED), *LASER_SETUP,
    (":READ1:POW:ALL:CONF?", u16_block([1, 1, 2, 1])),
    *channels_setup([(1, 1), (2, 1)]),
    NO_ERROR,
]


def make(script=(), connect=CONNECT):
    transport = ScriptedTransport(list(connect) + list(script), settings=LF, address="GPIB0::20::INSTR")
    frame = Keysight8164B(transport, poll_interval_s=0, output_settle_s=0)
    return frame, transport


# -- connect / identify ------------------------------------------------------------------------------------------------
def test_connect_scans_slots_sets_up_laser_and_power_channels():
    frame, t = make()
    t.assert_done()
    assert frame.identity_at_connect.model == "8164B"
    assert {slot: m.model for slot, m in frame.modules.items()} == {0: "81600B", 1: "81634B", 2: "81634B"}
    assert isinstance(frame.laser, TunableLaser) and isinstance(frame.power_meter, PowerReadout)
    assert frame.power_meter.ports == [(1, 1), (2, 1)] and frame.power_meter.n_ports == 2
    assert frame.laser.wavelength_limits_m() == (1.49e-6, 1.64e-6)


def test_views_identify_through_the_frame():
    frame, t = make([(":SLOT0:IDN?", LASER_IDN), ("*IDN?", IDN)])
    assert frame.laser.identity().model == "81600B"
    assert frame.power_meter.identity().model == "8164B"
    t.assert_done()


def test_frame_without_laser():
    connect = [("*IDN?", IDN), ("*CLS", None), *slots_script({3: PM_IDN.format(3)}),
               (":READ1:POW:ALL:CONF?", u16_block([3, 1])), *channels_setup([(3, 1)]), NO_ERROR]
    frame, t = make(connect=connect)
    assert frame.laser is None and frame.power_meter.ports == [(3, 1)]
    frame.safe_state()  # nothing to switch off
    t.assert_done()


def test_frame_without_power_modules_never_asks_for_the_channel_order():
    connect = [("*IDN?", IDN), ("*CLS", None), *slots_script({0: LASER_IDN}), *LASER_SETUP, NO_ERROR]
    frame, t = make(connect=connect)
    assert frame.laser is not None and frame.power_meter.n_ports == 0
    t.assert_done()


def test_older_firmware_without_the_channel_order_query_still_connects_its_laser():
    # firmware before v3.0x: :READ1:POW:ALL:CONF? is not answered (and leaves -113 in the queue)
    filled = {0: LASER_IDN, 1: PM_IDN.format(1), 2: "Keysight Technologies,81635A,DE2,V1.0",
              3: "Keysight Technologies,81689A,DE3,V1.0"}   # a compact laser module: not a power channel
    connect = [("*IDN?", IDN), ("*CLS", None), *slots_script(filled), *LASER_SETUP,
               (":READ1:POW:ALL:CONF?", None), ("*CLS", None),
               *channels_setup([(1, 1), (2, 1), (2, 2)]), NO_ERROR]
    frame, t = make([(":READ1:CHAN1:POW?", "+1.0E-005"), (":READ2:CHAN1:POW?", "+2.0E-005"),
                     (":READ2:CHAN2:POW?", "+3.0E-005")], connect=connect)
    assert frame.laser is not None
    assert frame.power_meter.ports == [(1, 1), (2, 1), (2, 2)] and not frame.power_meter.read_all_supported
    np.testing.assert_allclose(frame.power_meter.read_all_w(), [1e-5, 2e-5, 3e-5])
    t.assert_done()


def test_dual_head_logs_on_the_master_channel_only():
    connect = [("*IDN?", IDN), ("*CLS", None),
               *slots_script({1: "Keysight Technologies,81635A,DE1,V1.0"}),
               (":READ1:POW:ALL:CONF?", u16_block([1, 1, 1, 2])),
               *channels_setup([(1, 1), (1, 2)]), NO_ERROR]
    script = [(":SENS1:CHAN1:FUNC:STAT LOGG,STOP", None), (":TRIG1:CHAN1:INP SME", None),
              (":SENS1:CHAN1:POW:UNIT 1", None), (":SENS1:CHAN1:FUNC:PAR:LOGG 3,1.000000E-04", None), NO_ERROR,
              (":SENS1:CHAN2:FUNC:RES?", f32_block([1e-6, 2e-6, 3e-6]))]
    frame, t = make(script, connect=connect)
    frame.power_meter.configure_logging(3, 1e-4)
    np.testing.assert_allclose(frame.power_meter.logged_power_w(1), [1e-6, 2e-6, 3e-6], rtol=1e-6)
    t.assert_done()


def test_connect_refuses_another_instrument():
    t = ScriptedTransport([("*IDN?", "Keysight Technologies,N7745A,MY1,V1")], settings=LF)
    with pytest.raises(InstrumentConnectionError, match="8164B"):
        Keysight8164B(t)


@pytest.mark.parametrize("reply, match", [
    (u16_block([1, 1, 2]), "pairs"),
    (u16_block([0, 1]), "front-slot"),
    (u16_block([1, 3]), "front-slot"),
    (u16_block([3, 1]), "empty"),
    (u16_block([1, 1, 1, 1]), "duplicate"),
    (block(b"\x01\x00\x01"), "whole number"),
    (b"1,1,2,1\n", "block"),
])
def test_malformed_port_order_is_a_reply_error(reply, match):
    connect = [("*IDN?", IDN), ("*CLS", None), *slots_script(FILLED), *LASER_SETUP, (":READ1:POW:ALL:CONF?", reply)]
    t = ScriptedTransport(connect, settings=LF)
    with pytest.raises(InstrumentReplyError, match=match) as info:
        Keysight8164B(t)
    assert info.value.command == ":READ1:POW:ALL:CONF?"


@pytest.mark.parametrize("query, reply", [(":SLOT1:EMPT?", "empty"), (":SLOT1:IDN?", "81634B")])
def test_malformed_slot_replies_name_the_command(query, reply):
    connect = [("*IDN?", IDN), ("*CLS", None), (":SLOT0:EMPT?", "1")]
    connect += [(":SLOT1:EMPT?", "0"), (query, reply)] if query.endswith("IDN?") else [(query, reply)]
    t = ScriptedTransport(connect, settings=LF)
    with pytest.raises(InstrumentReplyError) as info:
        Keysight8164B(t)
    assert info.value.command == query


# -- laser in slot 0 ---------------------------------------------------------------------------------------------------
def test_laser_commands_go_to_sour0_and_sync_through_the_frame():
    frame, t = make([(":SOUR0:WAV 1.55000000E-06", None), OPC, NO_ERROR, (":SOUR0:WAV?", "+1.55000000E-006"),
                     (":SOUR0:POW 1.000000E+00MW", None), OPC, NO_ERROR, *POWER_READ,
                     (":SOUR0:POW:STAT 1", None), OPC, NO_ERROR, (":SOUR0:POW:STAT?", "1")])
    laser = frame.laser
    laser.set_wavelength_m(1.55e-6)
    assert laser.get_wavelength_m() == 1.55e-6
    laser.set_power_w(1e-3)
    assert laser.get_power_w() == 1e-3
    laser.set_output(True)
    assert laser.get_output() is True
    t.assert_done()


def test_safe_state_and_close():
    off = [(":SOUR0:WAV:SWE 0", None), (":SOUR0:POW:STAT 0", None), (":SOUR0:POW:STAT?", "0")]
    frame, t = make(off + off)
    frame.laser.close()
    frame.power_meter.close()
    assert t.is_open  # views do not own the connection
    frame.safe_state()
    frame.close()  # a frame used alone switches its laser off on close, as the bench would
    assert not t.is_open
    t.assert_done()


def test_error_queue_is_drained_through_any_view():
    frame, t = make([(":SYST:ERR?", '-222,"Data out of range"'), NO_ERROR])
    with pytest.raises(InstrumentReportedError, match="-222"):
        frame.power_meter.check_errors()
    t.assert_done()


# -- 81634B power sensors ----------------------------------------------------------------------------------------------
def test_sensor_settings_per_port_and_for_all():
    frame, t = make([
        (":SENS1:CHAN1:POW:WAV 1.31000000E-06", None), (":SENS2:CHAN1:POW:WAV 1.31000000E-06", None),
        (":SENS2:CHAN1:POW:WAV 1.55000000E-06", None),
        (":SENS1:CHAN1:POW:ATIM 1.000000E-03", None), (":SENS2:CHAN1:POW:ATIM 1.000000E-03", None),
        (":SENS1:CHAN1:POW:RANG:AUTO 0", None), (":SENS1:CHAN1:POW:RANG -20DBM", None),
        (":SENS2:CHAN1:POW:RANG:AUTO 1", None),
        (":SENS1:CHAN1:POW:WAV?", "+1.31000000E-006"), (":SENS1:CHAN1:POW:RANG?", "-2.000000E+01"),
        (":SENS1:CHAN1:POW:RANG:AUTO?", "0"), (":SENS1:CHAN1:POW:ATIM?", "+1.00000000E-003"),
        (":SENS1:CHAN1:POW:UNIT?", "1"),
    ])
    pm = frame.power_meter
    pm.set_wavelength_m(1.31e-6)
    pm.set_wavelength_m(1.55e-6, port=1)
    pm.set_averaging_time_s(1e-3)
    pm.set_range_dbm(-20, port=0)
    pm.set_range_dbm(None, port=1)
    s = pm.sensor(1, 1)
    assert (s.wavelength_m, s.range_dbm, s.auto_range, s.averaging_time_s, s.unit_watt) == (
        1.31e-6, -20.0, False, 1e-3, True)
    t.assert_done()


def test_single_readings_and_trigger_settings():
    frame, t = make([(":READ2:CHAN1:POW?", "+1.23400000E-005"), (":FETC1:CHAN1:POW?", "-2.0E-010"),
                     (":INIT1:CHAN1:CONT 0", None), (":TRIG2:CHAN1:INP CME", None)])
    assert frame.power_meter.read_power_w(1) == pytest.approx(1.234e-5)
    s1, s2 = frame.power_meter.sensors
    assert s1.fetched_power_w == pytest.approx(-2e-10)  # dark noise after zeroing is a valid reading
    s1.continuous = False
    s2.trigger_input = "CME"
    t.assert_done()


def test_read_all_is_one_float32_block_in_port_order():
    values = np.array([1.5e-5, 2.5e-7], dtype="<f4")
    frame, t = make([(":READ1:POW:ALL?", f32_block(values))])
    np.testing.assert_array_equal(frame.power_meter.read_all_w(), values.astype(float))
    t.assert_done()


@pytest.mark.parametrize("payload, match", [
    ([1e-5], "holds 1 values, expected 2"),
    ([1e-5, 2e-5, 3e-5], "holds 3"),
    ([1e-5, np.nan], "nan"),
    ([1e-5, 9.91e37], "over-range"),
    ([1e-5, np.inf], "inf"),
    ([-30.0, -40.0], "plausible"),            # dBm, not W
])
def test_bad_bulk_reading_is_a_reply_error(payload, match):
    frame, t = make([(":READ1:POW:ALL?", f32_block(payload))])
    with pytest.raises(InstrumentReplyError, match=match) as info:
        frame.power_meter.read_all_w()
    assert info.value.command == ":READ1:POW:ALL?"


def test_truncated_bulk_block_times_out_naming_the_command():
    frame, t = make([(":READ1:POW:ALL?", b"#18" + b"\x00" * 4 + b"\n")])
    with pytest.raises(InstrumentTimeout) as info:
        frame.power_meter.read_all_w()
    assert info.value.command == ":READ1:POW:ALL?"


@pytest.mark.parametrize("query, reply, read", [
    (":READ1:CHAN1:POW?", "+9.91E+37", lambda pm: pm.read_power_w(0)),
    (":READ1:CHAN1:POW?", "NaN", lambda pm: pm.read_power_w(0)),
    (":READ1:CHAN1:POW?", "-23.5", lambda pm: pm.read_power_w(0)),      # dBm, not W
    (":READ1:CHAN1:POW?", "", lambda pm: pm.read_power_w(0)),
    (":SENS1:CHAN1:POW:RANG?", "+3.0E+01", lambda pm: pm.sensors[0].range_dbm),
    (":SENS1:CHAN1:POW:WAV?", "1550", lambda pm: pm.sensors[0].wavelength_m),
    (":SENS1:CHAN1:POW:UNIT?", "W", lambda pm: pm.sensors[0].unit_watt),
])
def test_malformed_sensor_replies_name_the_command(query, reply, read):
    frame, t = make([(query, reply)])
    with pytest.raises(InstrumentReplyError) as info:
        read(frame.power_meter)
    assert info.value.command == query
    t.assert_done()


# -- logging -----------------------------------------------------------------------------------------------------------
CONFIGURE_LOGGING = [
    (":SENS1:CHAN1:FUNC:STAT LOGG,STOP", None), (":SENS2:CHAN1:FUNC:STAT LOGG,STOP", None),
    (":TRIG1:CHAN1:INP SME", None), (":SENS1:CHAN1:POW:UNIT 1", None),
    (":SENS1:CHAN1:FUNC:PAR:LOGG 5,1.000000E-04", None),
    (":TRIG2:CHAN1:INP SME", None), (":SENS2:CHAN1:POW:UNIT 1", None),
    (":SENS2:CHAN1:FUNC:PAR:LOGG 5,1.000000E-04", None),
    NO_ERROR,
]
START_LOGGING = [(":SENS1:CHAN1:FUNC:STAT LOGG,STAR", None), (":SENS2:CHAN1:FUNC:STAT LOGG,STAR", None)]
WAIT_LOGGING = [(":SENS1:CHAN1:FUNC:STAT?", "LOGGING_STABILITY,PROGRESS"),
                (":SENS2:CHAN1:FUNC:STAT?", "LOGGING_STABILITY,COMPLETE"),
                (":SENS1:CHAN1:FUNC:STAT?", "LOGGING_STABILITY,COMPLETE")]
FINISH_LOGGING = [(":TRIG1:CHAN1:INP IGN", None), (":TRIG2:CHAN1:INP IGN", None),
                  (":INIT1:CHAN1:CONT 1", None), (":INIT2:CHAN1:CONT 1", None)]
POWERS = np.array([[1.0e-5, 1.1e-5, 1.2e-5, 1.3e-5, 1.4e-5], [2.0e-6, 2.1e-6, 2.2e-6, 2.3e-6, 2.4e-6]], dtype="<f4")


def test_logging_configure_start_wait_and_results():
    frame, t = make(CONFIGURE_LOGGING + START_LOGGING + WAIT_LOGGING
                    + [(":SENS2:CHAN1:FUNC:RES?", f32_block(POWERS[1]))] + FINISH_LOGGING)
    pm = frame.power_meter
    pm.configure_logging(5, 1e-4, triggered=True)
    pm.start_logging()
    pm.wait_logging(timeout_s=5.0)
    np.testing.assert_array_equal(pm.logged_power_w(1), POWERS[1].astype(float))
    pm.finish_logging()
    t.assert_done()


def test_untriggered_logging_ignores_the_trigger_input():
    script = [(":SENS1:CHAN1:FUNC:STAT LOGG,STOP", None), (":SENS2:CHAN1:FUNC:STAT LOGG,STOP", None),
              (":TRIG1:CHAN1:INP IGN", None), (":SENS1:CHAN1:POW:UNIT 1", None),
              (":SENS1:CHAN1:FUNC:PAR:LOGG 10,1.000000E-03", None),
              (":TRIG2:CHAN1:INP IGN", None), (":SENS2:CHAN1:POW:UNIT 1", None),
              (":SENS2:CHAN1:FUNC:PAR:LOGG 10,1.000000E-03", None), NO_ERROR]
    frame, t = make(script)
    frame.power_meter.configure_logging(10, 1e-3, triggered=False)
    t.assert_done()


def test_logging_that_is_not_running_is_reported():
    frame, t = make(CONFIGURE_LOGGING + [(":SENS1:CHAN1:FUNC:STAT?", "NONE,PROGRESS")])
    frame.power_meter.configure_logging(5, 1e-4)
    with pytest.raises(InstrumentReportedError, match="no logging function") as info:
        frame.power_meter.wait_logging(5.0)
    assert info.value.command == ":SENS1:CHAN1:FUNC:STAT?"


def test_logging_timeout_names_the_state_query():
    frame, t = make(CONFIGURE_LOGGING + [(":SENS1:CHAN1:FUNC:STAT?", "LOGGING_STABILITY,COMPLETE"),
                                         (":SENS2:CHAN1:FUNC:STAT?", "LOGGING_STABILITY,PROGRESS")])
    frame.power_meter.configure_logging(5, 1e-4)
    with pytest.raises(InstrumentTimeout, match="trigger") as info:
        frame.power_meter.wait_logging(-1.0)
    assert info.value.command == ":SENS2:CHAN1:FUNC:STAT?"


@pytest.mark.parametrize("reply", ["LOGGING_STABILITY", "LOGGING,COMPLETE", "LOGGING_STABILITY,DONE", "1"])
def test_malformed_logging_state_is_a_reply_error(reply):
    frame, t = make(CONFIGURE_LOGGING + [(":SENS1:CHAN1:FUNC:STAT?", reply)])
    frame.power_meter.configure_logging(5, 1e-4)
    with pytest.raises(InstrumentReplyError) as info:
        frame.power_meter.wait_logging(5.0)
    assert info.value.command == ":SENS1:CHAN1:FUNC:STAT?"


@pytest.mark.parametrize("payload, match", [
    (POWERS[0][:4], "holds 4 values, expected 5"),
    (np.array([1e-5, 1e-5, np.nan, 1e-5, 1e-5]), "nan"),
    (np.array([1e-5, 1e-5, 1e-5, 3.4e38, 1e-5]), "over-range"),
])
def test_bad_logging_results_are_reply_errors(payload, match):
    frame, t = make(CONFIGURE_LOGGING + [(":SENS1:CHAN1:FUNC:RES?", f32_block(payload))])
    frame.power_meter.configure_logging(5, 1e-4)
    with pytest.raises(InstrumentReplyError, match=match) as info:
        frame.power_meter.logged_power_w(0)
    assert info.value.command == ":SENS1:CHAN1:FUNC:RES?"


def test_logging_results_of_a_wrong_dtype_block_are_refused():
    frame, t = make([(":SENS1:CHAN1:FUNC:RES?", block(b"\x00" * 6))])
    with pytest.raises(InstrumentReplyError, match="whole number"):
        frame.power_meter.logged_power_w(0)


# -- §1.3 swept insertion loss in one frame ----------------------------------------------------------------------------
def sensor_setup(range_dbm: str, centre: str) -> list[tuple[str, str | None]]:
    script: list[tuple[str, str | None]] = []
    for slot in (1, 2):
        script += [(f":SENS{slot}:CHAN1:POW:RANG:AUTO 0", None), (f":SENS{slot}:CHAN1:POW:RANG {range_dbm}DBM", None),
                   (f":SENS{slot}:CHAN1:POW:WAV {centre}", None)]
    return script


def test_swept_insertion_loss_in_one_frame_uses_the_trigger_loop():
    wavelengths = np.linspace(SHORT_SWEEP.start_m, SHORT_SWEEP.stop_m, 5) + 1e-14
    script = (configure_script(SHORT_SWEEP, 5, loop=True)
              + POWER_READ          # range from the set power: 0 dBm
              + sensor_setup("0", "1.55002000E-06")
              + CONFIGURE_LOGGING + START_LOGGING + START_SCRIPT + WAIT_SCRIPT + WAIT_LOGGING
              + [(":SENS1:CHAN1:FUNC:RES?", f32_block(POWERS[0])), (":SENS2:CHAN1:FUNC:RES?", f32_block(POWERS[1])),
                 (":SOUR0:READ:DATA? LLOG", f64_block(wavelengths))]
              + FINISH_LOGGING + FRAME_FINISH_SCRIPT)
    frame, t = make(script)
    wl, p = swept_insertion_loss(frame.laser, frame.power_meter, [0, 1], SHORT_SWEEP, 1e-4, 0.0)
    np.testing.assert_array_equal(wl, wavelengths)
    np.testing.assert_array_equal(p, POWERS.astype(float))
    assert p.shape == (2, 5)
    t.assert_done()


def test_swept_insertion_loss_with_an_explicit_range_and_one_port():
    wavelengths = np.linspace(SHORT_SWEEP.start_m, SHORT_SWEEP.stop_m, 5)
    script = (configure_script(SHORT_SWEEP, 5, loop=True)
              + [(":SENS2:CHAN1:POW:RANG:AUTO 0", None), (":SENS2:CHAN1:POW:RANG -10DBM", None),
                 (":SENS2:CHAN1:POW:WAV 1.55002000E-06", None)]
              + CONFIGURE_LOGGING + START_LOGGING + START_SCRIPT + WAIT_SCRIPT + WAIT_LOGGING
              + [(":SENS2:CHAN1:FUNC:RES?", f32_block(POWERS[1])), (":SOUR0:READ:DATA? LLOG", f64_block(wavelengths))]
              + FINISH_LOGGING + FRAME_FINISH_SCRIPT)
    frame, t = make(script)
    wl, p = swept_insertion_loss(frame.laser, frame.power_meter, [1], SHORT_SWEEP, 1e-4, 0.0, range_dbm=-10)
    assert p.shape == (1, 5)
    t.assert_done()


def test_swept_insertion_loss_cleans_up_and_aborts_when_a_step_fails():
    script = (configure_script(SHORT_SWEEP, 5, loop=True)[:-5] + [(":SOUR0:WAV:SWE:CHEC?", "372,Stepsize too small")]
              + [(f":SENS{slot}:CHAN1:FUNC:STAT LOGG,STOP", None) for slot in (1, 2)] + FINISH_LOGGING
              + [(":SOUR0:WAV:SWE 0", None)] + FRAME_FINISH_SCRIPT)
    frame, t = make(script)
    with pytest.raises(InstrumentReportedError, match="step too small"):
        swept_insertion_loss(frame.laser, frame.power_meter, [0, 1], SHORT_SWEEP, 1e-4, 0.0)
    t.assert_done()


class DroppingTransport(ScriptedTransport):
    """The link drops once the script ends: every later write fails like a dead instrument."""

    def _write(self, command: str) -> None:
        if self.step >= len(self.script):
            raise InstrumentConnectionError("link dropped", instrument=self.name, address=self.address,
                                            command=command)
        super()._write(command)


def test_swept_insertion_loss_keeps_the_original_error_when_clean_up_fails_too():
    script = (configure_script(SHORT_SWEEP, 5, loop=True)[:-5] + [(":SOUR0:WAV:SWE:CHEC?", "380,Start too small")])
    t = DroppingTransport(CONNECT + script, settings=LF)
    frame = Keysight8164B(t, poll_interval_s=0)
    with pytest.raises(InstrumentReportedError, match="start wavelength too small"):
        swept_insertion_loss(frame.laser, frame.power_meter, [0], SHORT_SWEEP, 1e-4, 0.0)
    t.assert_done()


def test_swept_insertion_loss_raises_a_clean_up_failure_after_a_good_sweep():
    wavelengths = np.linspace(SHORT_SWEEP.start_m, SHORT_SWEEP.stop_m, 5)
    script = (configure_script(SHORT_SWEEP, 5, loop=True) + sensor_setup("-10", "1.55002000E-06")
              + CONFIGURE_LOGGING + START_LOGGING + START_SCRIPT + WAIT_SCRIPT + WAIT_LOGGING
              + [(":SENS1:CHAN1:FUNC:RES?", f32_block(POWERS[0])), (":SENS2:CHAN1:FUNC:RES?", f32_block(POWERS[1])),
                 (":SOUR0:READ:DATA? LLOG", f64_block(wavelengths))])
    t = DroppingTransport(CONNECT + script, settings=LF)
    frame = Keysight8164B(t, poll_interval_s=0)
    with pytest.raises(InstrumentConnectionError, match="link dropped"):
        swept_insertion_loss(frame.laser, frame.power_meter, [0, 1], SHORT_SWEEP, 1e-4, 0.0, range_dbm=-10)
    t.assert_done()


@pytest.mark.parametrize("kwargs", [
    {"averaging_time_s": 2.5e-4},                      # equal to the step time
    {"averaging_time_s": 0.0},
    {"ports": [2]},
    {"ports": []},
    {"sweep": SweepSettings(1.45e-6, 1.55e-6, 1e-11, 40e-9)},
    {"sweep": SweepSettings(1.55e-6, 1.56e-6, 1e-11, 0.0)},
])
def test_swept_insertion_loss_refuses_bad_arguments_before_sending(kwargs):
    frame, t = make()
    args = {"ports": [0], "sweep": SHORT_SWEEP, "averaging_time_s": 1e-4} | kwargs
    with pytest.raises(LimitError):
        swept_insertion_loss(frame.laser, frame.power_meter, args["ports"], args["sweep"], args["averaging_time_s"],
                             0.0)
    t.assert_done()


# -- limits: nothing is sent -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [
    lambda f: f.slot_identity(7),
    lambda f: f.slot_empty(True),
    lambda f: f.power_meter.read_power_w(2),
    lambda f: f.power_meter.read_power_w(-1),
    lambda f: f.power_meter.sensor(3, 1),
    lambda f: f.power_meter.set_range_dbm(-25),
    lambda f: f.power_meter.set_range_dbm(20, port=0),
    lambda f: f.power_meter.set_wavelength_m(1.8e-6),
    lambda f: f.power_meter.set_wavelength_m(1.55e-6, port=5),
    lambda f: f.power_meter.set_averaging_time_s(1e-6),       # the 81634B averages 100 us at least
    lambda f: f.power_meter.configure_logging(0, 1e-4),
    lambda f: f.power_meter.configure_logging(20_000, 1e-4),  # the 816x frames log about 10 001 points
    lambda f: f.power_meter.configure_logging(100, 20.0),
    lambda f: f.power_meter.start_logging(),                  # not configured
    lambda f: f.laser.set_wavelength_m(1.66e-6),
    lambda f: f.laser.set_power_w(1.0),
])
def test_out_of_range_settings_send_nothing(action):
    frame, t = make()
    with pytest.raises(LimitError):
        action(frame)
    t.assert_done()


# -- pyvisa-sim --------------------------------------------------------------------------------------------------------
def test_shipped_yaml_matches_the_driver():
    assert yaml_path(KEYSIGHT_8164B).read_text() == render_text(KEYSIGHT_8164B)


@pytest.fixture
def sim_rm(tmp_path: Path):
    pyvisa = pytest.importorskip("pyvisa")
    copy = tmp_path / KEYSIGHT_8164B.filename
    shutil.copy(yaml_path(KEYSIGHT_8164B), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    yield rm
    rm.close()


def test_pyvisa_sim_basic_operations(sim_rm):
    frame = Keysight8164B("GPIB0::20::INSTR", resource_manager=sim_rm, poll_interval_s=0, output_settle_s=0)
    assert frame.identity().model == "8164B"
    assert frame.laser.identity().model == "81600B"
    assert frame.power_meter.ports == [(1, 1), (2, 1)]
    laser, pm = frame.laser, frame.power_meter
    laser.set_wavelength_m(1.5512345e-6)
    assert laser.get_wavelength_m() == pytest.approx(1.5512345e-6, abs=1e-16)
    laser.set_power_w(3e-3)  # accepted; the static simulation's read-back stays at its 1 mW
    assert laser.get_power_w() == pytest.approx(1e-3)
    laser.set_output(True)
    assert laser.get_output() is True
    assert laser.configure_sweep(SweepSettings(1.52e-6, 1.58e-6, 1e-11, 40e-9), trigger_loop=True) == 6001
    assert laser.sweep_mode == "CONT" and laser.lambda_logging is True
    # sensors: every plain setting reads back, per channel
    pm.set_wavelength_m(1.31e-6, port=1)
    assert (pm.sensors[0].wavelength_m, pm.sensors[1].wavelength_m) == (1.55e-6, 1.31e-6)
    pm.set_range_dbm(-30, port=0)
    assert (pm.sensors[0].range_dbm, pm.sensors[0].auto_range, pm.sensors[1].auto_range) == (-30.0, False, True)
    pm.set_averaging_time_s(1e-3)
    assert pm.sensors[1].averaging_time_s == pytest.approx(1e-3)
    assert pm.sensors[0].unit_watt is True
    assert pm.read_power_w(1) == pytest.approx(1e-5)
    np.testing.assert_array_equal(pm.read_all_w(), SIM_POWERS_W[:2].astype(float))
    with pytest.raises(LimitError):
        pm.set_range_dbm(-35)
    frame.write(":SENS1:CHAN1:POW:RANG -35DBM")  # not a range: the simulated frame refuses it
    with pytest.raises(InstrumentReportedError):
        frame.check_errors()
    frame.check_errors()
    frame.safe_state()
    assert laser.get_output() is False
    snap = frame.snapshot()
    assert snap["identity"]["model"] == "8164B" and snap["modules"]["1"].startswith("Keysight Technologies 81634B")
    assert snap["laser"]["power_w"] == pytest.approx(1e-3) and snap["laser"]["locked"] is False
    assert [(c["slot"], c["channel"]) for c in snap["power_channels"]] == [(1, 1), (2, 1)]
    assert snap["power_channels"][0]["settings"]["range_dbm"]["value"] == -30.0
    frame.close()
