"""Keysight N7744A/N7745A multiport power meter: byte-exact protocol, strict parsing, limits, the §1.3 swept
insertion loss with a separate N7778C laser (trigger cable, no loop), and pyvisa-sim."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import (InstrumentConnectionError, InstrumentError, InstrumentReplyError,
                                   InstrumentReportedError, InstrumentTimeout, LimitError)
from labctl.drivers.interfaces import PowerReadout
from labctl.drivers.keysight_n774xa import KeysightN774xA
from labctl.drivers import keysight_sweep
from labctl.drivers.keysight_sweep import swept_insertion_loss
from labctl.sim.profiles.keysight import KEYSIGHT_N7744A, KEYSIGHT_N7745A, SIM_POWERS_W
from labctl.sim.protocol import render_text, yaml_path
from labctl.drivers.testing import Late, ScriptedTransport, block
from tests.drivers.test_keysight_laser import (FINISH_SCRIPT, LF, NO_ERROR, POWER_READ, SHORT_SWEEP, START_SCRIPT,
                                               WAIT_SCRIPT, configure_script, f64_block)
from tests.drivers.test_keysight_laser import make as make_laser

IDN = {4: "Keysight Technologies,N7744A,MY55100044,V1.250", 8: "Keysight Technologies,N7745A,MY55100045,V1.250"}


def each(template: str, ports, reply: str | None = None) -> list[tuple[str, str | None]]:
    return [(template.format(n=n), reply) for n in ports]


def connect_script(n_ports: int = 4, idn: str | None = None,
                   atim: str = "+1.00000000E-004") -> list[tuple[str, str | None]]:
    ports = range(1, n_ports + 1)
    return [("*IDN?", idn or IDN[n_ports]), ("*CLS", None), *each(":SENS{n}:POW:UNIT 1", ports),
            *each(":INIT{n}:CONT 1", ports), *each(":SENS{n}:POW:ATIM?", ports, atim), NO_ERROR]


def make(script=(), n_ports: int = 4, read_all: str = "csv", atim: str = "+1.00000000E-004"):
    transport = ScriptedTransport(connect_script(n_ports, atim=atim) + list(script), settings=LF,
                                  address="TCPIP0::10.0.0.44::inst0::INSTR")
    return KeysightN774xA(transport, poll_interval_s=0, read_all=read_all), transport


def csv(values) -> str:
    return ",".join(f"{v:+.8E}" for v in values)


def f32_block(values) -> bytes:
    return block(np.asarray(values, dtype="<f4").tobytes())


# -- connect / identify ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_ports", [4, 8])
def test_connect_sets_watts_and_continuous_on_every_port(n_ports):
    meter, t = make(n_ports=n_ports)
    t.assert_done()
    assert isinstance(meter, PowerReadout)
    assert meter.n_ports == n_ports and meter.model == IDN[n_ports].split(",")[1]
    assert [p.id for p in meter.sensors] == list(range(1, n_ports + 1))


def test_connect_accepts_the_c_version():
    t = ScriptedTransport(connect_script(8, "Keysight Technologies,N7745C,MY1,V1.0"), settings=LF)
    assert KeysightN774xA(t).n_ports == 8


def test_connect_refuses_another_instrument():
    t = ScriptedTransport([("*IDN?", "Keysight Technologies,N7778C,DE1,V2.0")], settings=LF)
    with pytest.raises(InstrumentConnectionError, match="N7778C"):
        KeysightN774xA(t)


@pytest.mark.parametrize("reply", ["N7744A", "Keysight Technologies,,MY1,V1", ""])
def test_malformed_identity_is_a_reply_error(reply):
    t = ScriptedTransport([("*IDN?", reply)], settings=LF)
    with pytest.raises(InstrumentReplyError) as info:
        KeysightN774xA(t)
    assert info.value.command == "*IDN?"


# -- per-port settings and readings ------------------------------------------------------------------------------------
def test_settings_for_all_ports_and_one_port():
    meter, t = make([
        *each(":SENS{n}:POW:WAV 1.31000000E-06", range(1, 5)),
        (":SENS3:POW:WAV 1.55000000E-06", None),
        *each(":SENS{n}:POW:ATIM 2.000000E-04", range(1, 5)),
        (":SENS2:POW:RANG:AUTO 0", None), (":SENS2:POW:RANG -30DBM", None),
        *each(":SENS{n}:POW:RANG:AUTO 1", range(1, 5)),
        (":SENS3:POW:WAV?", "+1.55000000E-006"), (":SENS2:POW:RANG?", "-3.000000E+01"),
        (":SENS2:POW:RANG:AUTO?", "1"), (":SENS4:POW:ATIM?", "+2.00000000E-004"), (":SENS1:POW:UNIT?", "+1"),
    ])
    meter.set_wavelength_m(1.31e-6)
    meter.set_wavelength_m(1.55e-6, port=2)
    meter.set_averaging_time_s(2e-4)
    meter.set_range_dbm(-30, port=1)
    meter.set_range_dbm(None)
    assert meter.port(3).wavelength_m == 1.55e-6
    assert meter.port(2).range_dbm == -30.0 and meter.port(2).auto_range is True
    assert meter.port(4).averaging_time_s == 2e-4 and meter.port(1).unit_watt is True
    t.assert_done()


def test_single_readings_trigger_and_continuous():
    meter, t = make([(":READ3:POW?", "+1.25000000E-005"), (":FETC4:POW?", "+3.0E-007"),
                     (":INIT2:CONT 0", None), (":TRIG1:INP MME", None)])
    assert meter.read_power_w(2) == pytest.approx(1.25e-5)
    assert meter.port(4).fetched_power_w == pytest.approx(3e-7)
    meter.port(2).continuous = False
    meter.port(1).trigger_input = "MME"
    t.assert_done()


def test_read_all_uses_the_csv_spelling_of_public_code_by_default():
    values = [1e-5, 2e-5, 3e-6, 4e-9]
    meter, t = make([(":FETC:POW:ALL:CSV?", csv(values))])
    np.testing.assert_allclose(meter.read_all_w(), values)
    t.assert_done()


@pytest.mark.parametrize("reply, match", [
    (csv([1e-5, 2e-5, 3e-5]), "holds 3 values, expected 4"),
    (csv([1e-5, 2e-5, 9.91e37, 1e-5]), "over-range"),
    (csv([-10.0, -20.0, -30.0, -40.0]), "plausible"),        # dBm, not W
    ("1e-5;2e-5;3e-5;4e-5", "expected a number"),
    ("", "expected"),
])
def test_bad_csv_reading_is_a_reply_error(reply, match):
    meter, t = make([(":FETC:POW:ALL:CSV?", reply)])
    with pytest.raises(InstrumentReplyError, match=match) as info:
        meter.read_all_w()
    assert info.value.command == ":FETC:POW:ALL:CSV?"


def test_unknown_read_all_mode_is_refused():
    with pytest.raises(ValueError, match="read_all"):
        KeysightN774xA(ScriptedTransport([], settings=LF), read_all="fast")  # type: ignore[arg-type]


def test_readings_wait_as_long_as_the_averaging_time_needs():
    # 10 s averaging (read at connect) against the 10 s line timeout: the reply at 10.5 s must still be read
    meter, t = make([(":FETC:POW:ALL:CSV?", Late(csv([1e-5] * 4), 10.5)),
                     (":READ2:POW?", Late("+1.00000000E-005", 10.5))], atim="+1.00000000E+001")
    np.testing.assert_allclose(meter.read_all_w(), [1e-5] * 4)
    assert meter.read_power_w(1) == pytest.approx(1e-5)
    assert meter.transport.timeout_s == LF.timeout_s   # only for those readings
    t.assert_done()


def test_a_shorter_averaging_time_set_through_the_driver_shortens_the_wait():
    meter, t = make([*each(":SENS{n}:POW:ATIM 1.000000E-03", range(1, 5)),
                     (":READ1:POW?", Late("+1.00000000E-005", 10.5))], atim="+1.00000000E+001")
    meter.set_averaging_time_s(1e-3)
    with pytest.raises(InstrumentTimeout):
        meter.read_power_w(0)


def test_read_all_binary_option_is_one_float32_block_in_watts():
    values = np.array([1e-5, 2e-5, 3e-6, 4e-9], dtype="<f4")
    meter, t = make([(":FETC:POW:ALL?", f32_block(values))], read_all="binary")
    np.testing.assert_array_equal(meter.read_all_w(), values.astype(float))
    t.assert_done()


@pytest.mark.parametrize("payload, match", [
    ([1e-5, 2e-5, 3e-5], "holds 3 values, expected 4"),
    ([1e-5] * 8, "holds 8"),                                  # an N7745A block on an N7744A
    ([1e-5, 2e-5, np.nan, 1e-5], "nan"),
    ([1e-5, 2e-5, 9.91e37, 1e-5], "over-range"),
    ([-10.0, -20.0, -30.0, -40.0], "plausible"),              # dBm, not W
])
def test_bad_bulk_reading_is_a_reply_error(payload, match):
    meter, t = make([(":FETC:POW:ALL?", f32_block(payload))], read_all="binary")
    with pytest.raises(InstrumentReplyError, match=match) as info:
        meter.read_all_w()
    assert info.value.command == ":FETC:POW:ALL?"
    assert "10.0.0.44" in str(info.value)


@pytest.mark.parametrize("reply", [block(b"\x00" * 15), b"1e-5,2e-5,3e-5,4e-5\n", b"#216" + b"\x00" * 16 + b"!"])
def test_malformed_bulk_block_is_a_reply_error(reply):
    meter, t = make([(":FETC:POW:ALL?", reply)], read_all="binary")
    with pytest.raises(InstrumentReplyError) as info:
        meter.read_all_w()
    assert info.value.command == ":FETC:POW:ALL?"


def test_truncated_bulk_block_times_out_naming_the_command():
    meter, t = make([(":FETC:POW:ALL?", b"#216" + b"\x00" * 8 + b"\n")], read_all="binary")
    with pytest.raises(InstrumentTimeout) as info:
        meter.read_all_w()
    assert info.value.command == ":FETC:POW:ALL?"


@pytest.mark.parametrize("query, reply, read", [
    (":READ1:POW?", "+9.91E+37", lambda m: m.read_power_w(0)),
    (":READ1:POW?", "-inf", lambda m: m.read_power_w(0)),
    (":READ1:POW?", "-12.5", lambda m: m.read_power_w(0)),       # dBm, not W
    (":READ1:POW?", "+1.0E-005,+2.0E-005", lambda m: m.read_power_w(0)),
    (":SENS1:POW:RANG?", "+2.0E+01", lambda m: m.port(1).range_dbm),
    (":SENS1:POW:ATIM?", "100US", lambda m: m.port(1).averaging_time_s),
    (":SENS1:POW:RANG:AUTO?", "AUTO", lambda m: m.port(1).auto_range),
])
def test_malformed_replies_name_the_command(query, reply, read):
    meter, t = make([(query, reply)])
    with pytest.raises(InstrumentReplyError) as info:
        read(meter)
    assert info.value.command == query
    t.assert_done()


# -- logging -----------------------------------------------------------------------------------------------------------
def configure_logging(points: int, t_avg: str, ports=range(1, 5), trigger: str = "SME"):
    script = each(":SENS{n}:FUNC:STAT LOGG,STOP", ports)
    for n in ports:
        script += [(f":TRIG{n}:INP {trigger}", None), (f":SENS{n}:POW:UNIT 1", None),
                   (f":SENS{n}:FUNC:PAR:LOGG {points},{t_avg}", None)]
    return script + [NO_ERROR]


START_LOGGING = each(":SENS{n}:FUNC:STAT LOGG,STAR", range(1, 5))
WAIT_LOGGING = (each(":SENS{n}:FUNC:STAT?", range(1, 5), "LOGGING_STABILITY,PROGRESS")
                + each(":SENS{n}:FUNC:STAT?", range(1, 5), "LOGGING_STABILITY,COMPLETE"))
FINISH_LOGGING = each(":TRIG{n}:INP IGN", range(1, 5)) + each(":INIT{n}:CONT 1", range(1, 5))
POWERS = np.array([[1.0e-5, 1.1e-5, 1.2e-5, 1.3e-5, 1.4e-5], [3.0e-6, 3.1e-6, 3.2e-6, 3.3e-6, 3.4e-6]], dtype="<f4")


def test_logging_configure_start_wait_and_results():
    meter, t = make(configure_logging(5, "1.000000E-04") + START_LOGGING + WAIT_LOGGING
                    + [(":SENS3:FUNC:RES?", f32_block(POWERS[1]))] + FINISH_LOGGING)
    meter.configure_logging(5, 1e-4)
    meter.start_logging()
    meter.wait_logging(5.0)
    np.testing.assert_array_equal(meter.logged_power_w(2), POWERS[1].astype(float))
    meter.finish_logging()
    t.assert_done()


def test_free_running_logging():
    meter, t = make(configure_logging(1000, "1.000000E-03", trigger="IGN"))
    meter.configure_logging(1000, 1e-3, triggered=False)
    t.assert_done()


def test_logging_results_must_match_the_configured_count():
    meter, t = make(configure_logging(5, "1.000000E-04") + [(":SENS1:FUNC:RES?", f32_block(POWERS[0][:3]))])
    meter.configure_logging(5, 1e-4)
    with pytest.raises(InstrumentReplyError, match="holds 3 values, expected 5") as info:
        meter.logged_power_w(0)
    assert info.value.command == ":SENS1:FUNC:RES?"


def test_logging_refused_by_the_meter_is_reported():
    script = configure_logging(5, "1.000000E-04")[:-1] + [(":SYST:ERR?", '-221,"Settings conflict"'), NO_ERROR]
    meter, t = make(script)
    with pytest.raises(InstrumentReportedError, match="-221"):
        meter.configure_logging(5, 1e-4)
    with pytest.raises(LimitError, match="configure_logging"):
        meter.start_logging()  # the failed set-up does not count as configured
    t.assert_done()


def test_error_queue_is_drained():
    meter, t = make([(":SYST:ERR?", '-113,"Undefined header"'), (":SYST:ERR?", '-222,"Data out of range"'),
                     NO_ERROR])
    with pytest.raises(InstrumentReportedError) as info:
        meter.check_errors()
    assert [code for code, _ in info.value.errors] == [-113, -222]
    t.assert_done()


def test_safe_state_stops_logging_and_restores_triggers():
    meter, t = make(each(":SENS{n}:FUNC:STAT LOGG,STOP", range(1, 5)) + FINISH_LOGGING)
    meter.safe_state()
    t.assert_done()


def test_close_closes_the_transport():
    meter, t = make()
    meter.close()
    assert not t.is_open


# -- §1.3 with a separate laser ----------------------------------------------------------------------------------------
def meter_setup(ports, range_dbm: str, centre: str):
    script = []
    for n in ports:
        script += [(f":SENS{n}:POW:RANG:AUTO 0", None), (f":SENS{n}:POW:RANG {range_dbm}DBM", None),
                   (f":SENS{n}:POW:WAV {centre}", None)]
    return script


def test_swept_insertion_loss_with_a_separate_laser_uses_the_trigger_cable():
    wavelengths = np.linspace(SHORT_SWEEP.start_m, SHORT_SWEEP.stop_m, 5)
    laser, lt = make_laser(configure_script(SHORT_SWEEP, 5, loop=False) + POWER_READ
                           + START_SCRIPT + WAIT_SCRIPT + [(":SOUR0:READ:DATA? LLOG", f64_block(wavelengths))]
                           + FINISH_SCRIPT)
    meter, mt = make(meter_setup((1, 3), "0", "1.55002000E-06") + configure_logging(5, "1.000000E-04")
                     + START_LOGGING + WAIT_LOGGING
                     + [(":SENS1:FUNC:RES?", f32_block(POWERS[0])), (":SENS3:FUNC:RES?", f32_block(POWERS[1]))]
                     + FINISH_LOGGING)
    wl, p = swept_insertion_loss(laser, meter, [0, 2], SHORT_SWEEP, 1e-4, 0.0)
    np.testing.assert_array_equal(wl, wavelengths)
    np.testing.assert_array_equal(p, POWERS.astype(float))
    lt.assert_done()
    mt.assert_done()


def test_swept_insertion_loss_logging_timeout_aborts_both_instruments(monkeypatch):
    laser, lt = make_laser(configure_script(SHORT_SWEEP, 5) + START_SCRIPT + WAIT_SCRIPT
                           + [(":SOUR0:WAV:SWE 0", None)] + FINISH_SCRIPT)
    meter, mt = make(meter_setup((2,), "-10", "1.55002000E-06") + configure_logging(5, "1.000000E-04")
                     + START_LOGGING + each(":SENS{n}:FUNC:STAT?", range(1, 5), "LOGGING_STABILITY,PROGRESS")
                     + each(":SENS{n}:FUNC:STAT LOGG,STOP", range(1, 5)) + FINISH_LOGGING)
    monkeypatch.setattr(keysight_sweep, "LOGGING_GRACE_S", -1.0)  # the trigger never arrives: time out at once
    with pytest.raises(InstrumentTimeout, match="logging not complete"):
        swept_insertion_loss(laser, meter, [1], SHORT_SWEEP, 1e-4, 0.0, range_dbm=-10)
    lt.assert_done()
    mt.assert_done()


@pytest.mark.parametrize("ports", [[4], [-1]])
def test_swept_insertion_loss_refuses_unknown_ports(ports):
    laser, lt = make_laser()
    meter, mt = make()
    with pytest.raises(LimitError):
        swept_insertion_loss(laser, meter, ports, SHORT_SWEEP, 1e-4, 0.0)
    lt.assert_done()
    mt.assert_done()


# -- limits: nothing is sent -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [
    lambda m: m.set_range_dbm(-40),                 # the N774x ranges stop at -30 dBm
    lambda m: m.set_range_dbm(5),
    lambda m: m.set_range_dbm(-20, port=4),
    lambda m: m.set_wavelength_m(1.2e-6),
    lambda m: m.set_wavelength_m(1.55e-6, port=True),
    lambda m: m.set_averaging_time_s(20.0),
    lambda m: m.set_averaging_time_s(1e-7),
    lambda m: m.read_power_w(4),
    lambda m: m.logged_power_w(7),
    lambda m: m.port(0),
    lambda m: m.port(5),
    lambda m: m.configure_logging(2_000_000, 1e-4),
    lambda m: m.configure_logging(1.5, 1e-4),
    lambda m: setattr(m.port(1), "trigger_input", "PRE"),
])
def test_out_of_range_settings_send_nothing(action):
    meter, t = make()
    with pytest.raises(LimitError):
        action(meter)
    t.assert_done()


# -- pyvisa-sim --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", [KEYSIGHT_N7744A, KEYSIGHT_N7745A], ids=lambda p: p.device)
def test_shipped_yaml_matches_the_driver(profile):
    assert yaml_path(profile).read_text() == render_text(profile)


@pytest.mark.parametrize("profile, resource", [(p, r) for p in (KEYSIGHT_N7744A, KEYSIGHT_N7745A)
                                               for r in p.resources])
def test_pyvisa_sim_basic_operations(tmp_path: Path, profile, resource):
    pyvisa = pytest.importorskip("pyvisa")
    copy = tmp_path / profile.filename
    shutil.copy(yaml_path(profile), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    meter = KeysightN774xA(resource, resource_manager=rm, poll_interval_s=0)
    n = meter.n_ports
    assert meter.identity().model == profile.device.split()[-1] and n in (4, 8)
    assert all(port.unit_watt for port in meter.sensors)
    meter.set_wavelength_m(1.31e-6, port=n - 1)
    assert (meter.port(n).wavelength_m, meter.port(1).wavelength_m) == (1.31e-6, 1.55e-6)
    meter.set_range_dbm(-20, port=0)
    assert (meter.port(1).range_dbm, meter.port(1).auto_range, meter.port(2).auto_range) == (-20.0, False, True)
    meter.set_range_dbm(None, port=0)
    assert meter.port(1).auto_range is True
    meter.set_averaging_time_s(5e-4, port=1)
    assert meter.port(2).averaging_time_s == pytest.approx(5e-4)
    assert meter.read_power_w(0) == pytest.approx(1e-5)
    np.testing.assert_allclose(meter.read_all_w(), np.resize(SIM_POWERS_W, n).astype(float), rtol=1e-7)
    snap = meter.snapshot()
    assert snap["read_all"] == "csv" and len(snap["ports"]) == n
    assert snap["ports"][1]["settings"]["averaging_time_s"] == {"value": pytest.approx(5e-4), "unit": "s"}
    assert "power_w" not in snap["ports"][0]["settings"]   # a snapshot never triggers a reading
    with pytest.raises(LimitError):
        meter.set_range_dbm(-40)
    meter.write(":SENS1:POW:RANG -40DBM")  # not an N774x range: the simulated meter refuses it
    with pytest.raises(InstrumentReportedError):
        meter.check_errors()
    meter.check_errors()
    meter.close()
    rm.close()


def test_a_reading_started_now_is_collected_later_with_single_triggering():
    """``start_read_all`` switches every port to single triggering once (``:READ`` then measures from the moment it
    arrives) and sends ``:READ:POW:ALL?`` alone; ``finish_read_all`` reads the block; the all-port fetch turns
    continuous triggering back on. At most one reading is outstanding."""
    values = np.array([1e-5, 2e-5, 3e-6, 4e-9], dtype="<f4")
    meter, t = make([*each(":INIT{n}:CONT 0", range(1, 5)), (":READ:POW:ALL?", f32_block(values)),
                     (":READ:POW:ALL?", f32_block(values[::-1])),
                     *each(":INIT{n}:CONT 1", range(1, 5)), (":FETC:POW:ALL:CSV?", csv(values))])
    meter.start_read_all()
    with pytest.raises(InstrumentError, match="outstanding"):
        meter.start_read_all()
    np.testing.assert_array_equal(meter.finish_read_all(), values.astype(float))
    meter.start_read_all()                             # already single-triggered: the query alone
    np.testing.assert_array_equal(meter.finish_read_all(), values[::-1].astype(float))
    with pytest.raises(InstrumentError, match="no reading outstanding"):
        meter.finish_read_all()
    np.testing.assert_allclose(meter.read_all_w(), values.astype(float), rtol=1e-6)
    t.assert_done()


def test_a_bad_started_reading_is_a_reply_error_naming_the_query():
    meter, t = make([*each(":INIT{n}:CONT 0", range(1, 5)), (":READ:POW:ALL?", f32_block([1e-5, 9.91e37, 0, 0]))])
    meter.start_read_all()
    with pytest.raises(InstrumentReplyError, match="over-range") as info:
        meter.finish_read_all()
    assert info.value.command == ":READ:POW:ALL?"
