"""Qontrol Q8iv chain driver: byte-exact protocol (§3.1), strict parsing, limits, pyvisa-sim and a serial URL."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import (InstrumentConnectionError, InstrumentReplyError, InstrumentReportedError,
                                   InstrumentTimeout, LimitError)
from labctl.drivers.interfaces import HeaterDriver
from labctl.drivers.parsing import Identity
from labctl.drivers.qontrol import Qontrol, describe_error
from labctl.drivers.transport import TransportSettings
from labctl.sim.profiles.qontrol import PROFILES
from labctl.sim.protocol import render_text, yaml_path

from labctl.drivers.testing import Exchange, Late, ScriptedTransport

N = 16  # two Q8iv modules
ZEROS8 = ",".join(["0.0000"] * 8)


def lines(texts: list[str]) -> str:
    return "\n".join(texts)


CONFIRM = ("id?", "Q8iv-0001")  # the known answer the driver confirms with after losing step


def refused_twice(command: str, reply: str | None, confirm: Exchange = CONFIRM) -> list[Exchange]:
    """A reply that cannot answer ``command``, on the first attempt and on the one retry, each followed by the
    resynchronisation's known-answer query."""
    return [(command, reply), confirm, (command, reply), confirm]


def connect_script(vmax_v: list[float] | None = None, imax_ma: list[float] | None = None,
                   vmax_back: list[float] | None = None, chain: str = "Q8iv-0001: 0\nQ8iv-****: 1",
                   nchan: str = "8") -> list[Exchange]:
    vmax_v = vmax_v if vmax_v is not None else [12.0] * N
    imax_ma = imax_ma if imax_ma is not None else [24.0] * N
    vmax_back = vmax_back if vmax_back is not None else vmax_v
    return [
        ("nup=0", "\x06OK"),  # the recorded ACK byte before OK
        ("nupall?", chain),
        ("id?", "Q8iv-0001"),
        ("nchan?", nchan),
        ("vfull?", "+12.0000 V"),
        ("ifull?", "+24.0000 mA"),
        *((f"VMAX{ch}={v:.4f}", "OK") for ch, v in enumerate(vmax_v)),
        *((f"IMAX{ch}={i:.4f}", "OK") for ch, i in enumerate(imax_ma)),
        ("VMAXALL?", lines([f"{v:+.4f} V" for v in vmax_back])),
        ("IMAXALL?", lines([f"{i:+.4f} mA" for i in imax_ma])),
    ]


def open_scripted(extra: list[Exchange], *, mode: str = "voltage", vmax_v: list[float] | None = None,
                  imax_ma: list[float] | None = None) -> tuple[Qontrol, ScriptedTransport]:
    transport = ScriptedTransport(connect_script(vmax_v, imax_ma) + extra, name="qontrol", address="ASRL9::INSTR")
    driver = Qontrol(transport, mode=mode,  # type: ignore[arg-type]
                     max_voltage_v=None if vmax_v is None else np.array(vmax_v),
                     max_current_a=None if imax_ma is None else np.array(imax_ma) * 1e-3, quiet_s=0.0)
    return driver, transport


# -- connect and identify ----------------------------------------------------------------------------------------
def test_connect_enumerates_a_two_module_chain_and_sets_and_reads_back_limits() -> None:
    vmax = [7.0] * 8 + [6.5] * 8
    imax = [20.0] * 8 + [12.5] * 8
    driver, transport = open_scripted([], vmax_v=vmax, imax_ma=imax)
    transport.assert_done()
    assert isinstance(driver, HeaterDriver)
    assert driver.n_channels == N and driver.mode == "voltage"
    assert [(m.model, m.serial, m.first_channel, m.n_channels) for m in driver.modules] == [
        ("Q8iv", "0001", 0, 8), ("Q8iv", "****", 8, 8)]
    assert np.allclose(driver.max_drive(), vmax)
    assert driver.device_id == "Q8iv-0001"


def test_identity_from_id_and_firmware() -> None:
    driver, transport = open_scripted([("id?", "Q8iv-0001"), ("firmware?", "v2.4.1")])
    assert driver.identity() == Identity("Qontrol", "Q8iv", "0001", "v2.4.1")
    transport.assert_done()


def test_nupall_unrecognised_falls_back_to_nup() -> None:
    script = connect_script()
    script[1:2] = [("nupall?", "E10:00"), ("nup?", "Q8iv-0001: 0\nQ8iv-0002: 1")]
    transport = ScriptedTransport(script)
    driver = Qontrol(transport, quiet_s=0.0)
    assert [m.serial for m in driver.modules] == ["0001", "0002"]
    transport.assert_done()


@pytest.mark.parametrize("chain, message", [
    ("Q8iv-0001: 0\nQ8iv-0002: 2", "chain index 2"),
    ("Z9x-0001: 0", "unsupported module type"),
])
def test_bad_chain_replies_are_refused(chain: str, message: str) -> None:
    transport = ScriptedTransport(connect_script(chain=chain)[:2])
    with pytest.raises(InstrumentReplyError, match=message) as info:
        Qontrol(transport, quiet_s=0.0)
    assert info.value.command == "nupall?"
    assert not transport.is_open  # a failed connect closes the port


def test_chain_reply_of_the_wrong_form_is_sent_again_then_refused() -> None:
    # before connect knows an answer to confirm with, the line is only drained between the attempts
    transport = ScriptedTransport([("nup=0", "OK"), ("nupall?", "Q8iv-0001 0"), ("nupall?", "Q8iv-0001 0")])
    with pytest.raises(InstrumentReplyError, match="cannot answer 'nupall[?]'") as info:
        Qontrol(transport, quiet_s=0.0)
    assert info.value.command == "nupall?"
    transport.assert_done()


def test_id_must_name_the_first_module_of_the_chain() -> None:
    script = connect_script()[:3]
    script[2] = ("id?", "Q8b-0007")
    transport = ScriptedTransport(script)
    with pytest.raises(InstrumentReplyError, match="module 0") as info:
        Qontrol(transport, quiet_s=0.0)
    assert info.value.command == "id?"


def test_nchan_must_agree_with_the_chain() -> None:
    transport = ScriptedTransport(connect_script(nchan="4")[:4])
    with pytest.raises(InstrumentReplyError, match="nchan"):
        Qontrol(transport, quiet_s=0.0)


def test_limit_read_back_that_differs_is_refused() -> None:
    back = [7.0] * N
    back[9] = 12.0
    transport = ScriptedTransport(connect_script([7.0] * N, vmax_back=back))
    with pytest.raises(InstrumentReplyError, match=r"channel 9 limit reads back 12 V, 7 V was set") as info:
        Qontrol(transport, max_voltage_v=7.0, quiet_s=0.0)
    assert info.value.command == "VMAXALL?"


def test_limits_of_unused_channels_are_read_back_not_rewritten() -> None:
    used = [0, 1, 2, 9]
    vmax_back = [7.0 if ch in used else 10.0 for ch in range(N)]   # someone set 10 V on the other outputs
    imax_back = [20.0 if ch in used else 24.0 for ch in range(N)]
    script = connect_script()[:6] + [
        *((f"VMAX{ch}=7.0000", "OK") for ch in used),
        *((f"IMAX{ch}=20.0000", "OK") for ch in used),
        ("VMAXALL?", lines([f"{v:+.4f} V" for v in vmax_back])),
        ("IMAXALL?", lines([f"{i:+.4f} mA" for i in imax_back])),
    ]
    transport = ScriptedTransport(script)
    driver = Qontrol(transport, max_voltage_v=7.0, max_current_a=0.020, used_channels=used, quiet_s=0.0)
    transport.assert_done()
    assert np.allclose(driver.max_drive(), vmax_back)   # what the firmware enforces, used or not
    assert driver.used_channels.tolist() == used


def test_used_channels_must_exist() -> None:
    transport = ScriptedTransport(connect_script()[:6])
    with pytest.raises(LimitError, match="channel 16 does not exist"):
        Qontrol(transport, used_channels=[0, 16], quiet_s=0.0)


def test_configured_limit_above_full_scale_is_refused_before_any_limit_is_written() -> None:
    transport = ScriptedTransport(connect_script()[:6])
    with pytest.raises(LimitError, match=r"max_voltage_v\[3\]: 13 V"):
        Qontrol(transport, max_voltage_v=[1.0] * 3 + [13.0] + [1.0] * 12, quiet_s=0.0)
    transport.assert_done()  # enumeration only: no VMAX line went out


# -- drive -----------------------------------------------------------------------------------------------------------
def test_full_vector_goes_out_as_one_vvec_per_module() -> None:
    values = np.linspace(0.5, 8.0, N)
    texts = [f"{v:.4f}" for v in values]
    driver, transport = open_scripted([
        ("VVEC0=" + ",".join(texts[:8]), "OK"),
        ("VVEC8=" + ",".join(texts[8:]), "\x06OK"),
    ])
    driver.set_drive(values)
    transport.assert_done()


def test_runs_within_a_module_use_vvec_and_isolated_channels_use_v() -> None:
    driver, transport = open_scripted([
        ("VVEC2=1.0000,1.2500,1.5000", "OK"),
        ("VVEC6=2.0000,2.1000", "OK"),   # 6,7 | 8,9: the run is split at the module boundary
        ("VVEC8=2.2000,2.3000", "OK"),
        ("V12=3.1416", "OK"),
    ])
    driver.set_drive(np.array([3.14159, 1.5, 1.0, 1.25, 2.2, 2.3, 2.0, 2.1]),
                     np.array([12, 4, 2, 3, 8, 9, 6, 7]))
    transport.assert_done()


def test_current_mode_speaks_milliamps_on_the_wire() -> None:
    driver, transport = open_scripted([
        ("IVEC0=1.0000,2.5000", "OK"),
        ("I5=10.0000", "OK"),
        ("IALL?", lines(["+1.0002 mA", "+2.4990 mA"] + ["-0.0036 mA"] * 14)),
    ], mode="current", imax_ma=[20.0] * N)
    assert np.allclose(driver.max_drive(), 0.020)
    driver.set_drive(np.array([1e-3, 2.5e-3, 10e-3]), np.array([0, 1, 5]))
    read = driver.read_drive()
    assert read.shape == (N,) and read[0] == pytest.approx(1.0002e-3) and read[5] == pytest.approx(-3.6e-6)
    transport.assert_done()


def test_read_drive_uses_vall_one_line_per_channel() -> None:
    readings = [0.2077 + 0.001 * ch for ch in range(N)]
    driver, transport = open_scripted([("VALL?", lines([f"{v:+.4f} V" for v in readings]))])
    assert np.allclose(driver.read_drive(), readings)
    transport.assert_done()


def test_read_power_parses_both_vipall_formats() -> None:
    replies = [f"{ch // 8},{ch % 8}: +0.2082 V, -0.0037 mA" for ch in range(N)]
    replies[13] = "1,5: +0.2048 V, +22.0300 mA,   4.5130 mW,      9 Ohm"
    driver, transport = open_scripted([("VIPALL?", lines(replies))])
    power = driver.read_power_w()
    assert power is not None and power.shape == (N,)
    assert power[13] == pytest.approx(4.5130e-3)           # power given by the module
    assert power[0] == pytest.approx(0.2082 * -0.0037e-3)  # V * I when it is not
    transport.assert_done()


def test_safe_state_zeroes_every_module_even_if_one_fails() -> None:
    driver, transport = open_scripted([
        ("VVEC0=" + ZEROS8, "E16:00"),
        ("VVEC8=" + ZEROS8, "OK"),
    ])
    with pytest.raises(InstrumentReportedError, match="timed out"):
        driver.safe_state()
    transport.assert_done()


def test_single_channel_settings() -> None:
    driver, transport = open_scripted([
        ("V3?", "+1.2346 V"),
        ("V3=2.5000", "OK"),
        ("IMAX3?", "+24.0000 mA"),
    ])
    channel = driver.channel(3)
    assert channel.voltage_v == pytest.approx(1.2346)
    channel.voltage_v = 2.5
    assert channel.imax_ma == 24.0
    transport.assert_done()


# -- errors ------------------------------------------------------------------------------------------------------------
def test_error_line_raises_naming_channel_and_command() -> None:
    driver, transport = open_scripted([("V5=1.0000", "E01:05")])
    with pytest.raises(InstrumentReportedError) as info:
        driver.set_drive(np.array([1.0]), np.array([5]))
    assert info.value.command == "V5=1.0000"
    assert info.value.errors == [(1, "E01:05 over-voltage on channel 5")]
    assert "over-voltage on channel 5" in str(info.value)
    transport.assert_done()


def test_unknown_command_error() -> None:
    driver, transport = open_scripted([("BOGUS", "E10:00")])
    with pytest.raises(InstrumentReportedError, match="unrecognised command"):
        driver.write("BOGUS")
    transport.assert_done()


def test_comms_error_is_retried_once_then_succeeds() -> None:
    driver, transport = open_scripted([("V2=1.0000", "E15:01"), ("V2=1.0000", "OK")])
    driver.set_drive(np.array([1.0]), np.array([2]))
    transport.assert_done()


def test_comms_error_twice_is_reported() -> None:
    driver, transport = open_scripted([("V2=1.0000", "E15:00"), ("V2=1.0000", "E15:00")])
    with pytest.raises(InstrumentReportedError, match="serial communication error") as info:
        driver.set_drive(np.array([1.0]), np.array([2]))
    assert info.value.errors[0][0] == 15
    transport.assert_done()


def test_powered_up_notice_after_connect_is_a_module_reset_error() -> None:
    """After connect, E90 means a module reset: outputs at 0 V and the VMAX backstop at full scale; the drive the
    bench believes in is gone, so the command that meets the notice fails naming it (at connect it is a notice)."""
    driver, transport = open_scripted([("V2=1.0000", "E90:00\nOK")])
    with pytest.raises(InstrumentReportedError, match="powered up") as info:
        driver.set_drive(np.array([1.0]), np.array([2]))
    assert info.value.command == "V2=1.0000"
    transport.assert_done()


def test_asynchronous_error_lines_are_reported_by_check_errors() -> None:
    driver, transport = open_scripted([("V2=1.0000", "OK")])
    transport.queue_reply("E02:07")  # over-current, arriving on its own
    driver.set_drive(np.array([1.0]), np.array([2]))  # not blamed on this command
    with pytest.raises(InstrumentReportedError, match="over-current on channel 7") as info:
        driver.check_errors()
    assert info.value.errors == [(2, "E02:07 over-current on channel 7")]
    driver.check_errors()  # drained
    transport.assert_done()


def test_error_log() -> None:
    driver, transport = open_scripted([("log?", "#  0, E00:01, 2 m ago\n#  1, E10:00, 1 m ago")])
    assert driver.error_log() == ["#  0, E00:01, 2 m ago", "#  1, E10:00, 1 m ago"]
    transport.assert_done()


def test_error_log_refused_by_the_firmware_is_an_error_not_an_entry() -> None:
    driver, transport = open_scripted([("log?", "E10:00")])
    with pytest.raises(InstrumentReportedError, match="unrecognised command") as info:
        driver.error_log()
    assert info.value.command == "log?"
    transport.assert_done()


def test_check_ack_maps_error_lines() -> None:
    driver, _ = open_scripted([])
    with pytest.raises(InstrumentReportedError, match="unrecognised channel 99") as info:
        driver.check_ack("V99=1.0000", "E12:99", "OK")
    assert info.value.command == "V99=1.0000"
    driver.check_ack("V1=1.0000", "\x06OK", "OK")


def test_error_descriptions() -> None:
    assert describe_error(14, 1) == "E14:01 serial buffer overflow (single instruction too long)"
    assert describe_error(15, 11) == "E15:11 serial communication error (framing)"
    assert describe_error(20, 3) == "E20:03 interlock triggered on channel 3"
    assert describe_error(77, 0) == "E77:00 unrecognised error code"


# -- strict parsing ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_line", ["garbage", "+0.2077 mA", "nan V", "OK"])
def test_vall_line_of_the_wrong_form_is_never_accepted(bad_line: str) -> None:
    driver, transport = open_scripted(refused_twice("VALL?", lines(["+0.2077 V"] * 15 + [bad_line])))
    with pytest.raises(InstrumentReplyError, match="cannot answer 'VALL[?]'") as info:
        driver.read_drive()
    assert info.value.command == "VALL?"
    transport.assert_done()


def test_implausible_vall_reading_names_the_command() -> None:
    driver, _ = open_scripted([("VALL?", lines(["+0.2077 V"] * 15 + ["+99.0000 V"]))])
    with pytest.raises(InstrumentReplyError, match="implausible") as info:
        driver.read_drive()
    assert info.value.command == "VALL?"


def test_too_few_lines_time_out_naming_the_command() -> None:
    driver, transport = open_scripted(refused_twice("VALL?", lines(["+0.2077 V"] * 15)))
    with pytest.raises(InstrumentTimeout) as info:
        driver.read_drive()
    assert info.value.command == "VALL?"
    transport.assert_done()


@pytest.mark.parametrize("bad, message", [
    ("0,3: +0.2082 V, -0.0037 mA", "module,port"),
    ("0,0: +0.2082 V, -0.0037 mA, 999999.0 mW", "implausible"),
])
def test_malformed_vipall_replies(bad: str, message: str) -> None:
    replies = [f"{ch // 8},{ch % 8}: +0.2082 V, -0.0037 mA" for ch in range(N)]
    replies[0] = bad
    driver, _ = open_scripted([("VIPALL?", lines(replies))])
    with pytest.raises(InstrumentReplyError, match=message) as info:
        driver.read_power_w()
    assert info.value.command == "VIPALL?"


def test_vipall_line_of_the_wrong_form_is_never_accepted() -> None:
    replies = [f"{ch // 8},{ch % 8}: +0.2082 V, -0.0037 mA" for ch in range(N)]
    replies[0] = "0,0: +0.2082 V"
    driver, transport = open_scripted(refused_twice("VIPALL?", lines(replies)))
    with pytest.raises(InstrumentReplyError, match="cannot answer 'VIPALL[?]'"):
        driver.read_power_w()
    transport.assert_done()


def test_set_answered_with_something_else_than_ok_is_sent_again_after_resynchronising() -> None:
    driver, transport = open_scripted([("V2=1.0000", "+1.0000 V"), CONFIRM, ("V2=1.0000", "OK")])
    driver.set_drive(np.array([1.0]), np.array([2]))
    transport.assert_done()


def test_set_never_answered_ok_is_refused() -> None:
    driver, transport = open_scripted(refused_twice("V2=1.0000", "+1.0000 V"))
    with pytest.raises(InstrumentReplyError, match="cannot answer 'V2=1.0000'"):
        driver.set_drive(np.array([1.0]), np.array([2]))
    transport.assert_done()


def test_bad_identity_replies_are_confirmed_with_vfull() -> None:
    # id? itself failed, so a late id? reply must not pass for the confirmation: vfull? is used instead
    driver, transport = open_scripted(refused_twice("id?", "hello", confirm=("vfull?", "+12.0000 V")))
    with pytest.raises(InstrumentReplyError, match="id"):
        driver.identity()
    transport.assert_done()


# -- late replies (issue 14, item 1) -----------------------------------------------------------------------------
def open_late(extra: list[Exchange], **kwargs: object) -> tuple[Qontrol, ScriptedTransport]:
    """A chain on a scripted port with the driver's own line settings (0.2 s timeout), so late replies time out."""
    transport = ScriptedTransport(connect_script() + extra, name="qontrol", address="ASRL9::INSTR",
                                  settings=Qontrol.line_settings)
    return Qontrol(transport, quiet_s=0.05, **kwargs), transport  # type: ignore[arg-type]


def test_a_late_reply_is_drained_confirmed_and_the_query_sent_again() -> None:
    driver, transport = open_late([
        ("V3?", Late("+3.0000 V", 0.3)),   # arrives 0.1 s after the driver gave up waiting
        CONFIRM,
        ("V3?", "+3.0000 V"),
        ("V4?", "+4.0000 V"),
        ("V5?", "+5.0000 V"),
    ])
    assert driver.channel(3).voltage_v == 3.0
    assert driver.channel(4).voltage_v == 4.0   # not V3's late value
    assert driver.channel(5).voltage_v == 5.0   # not V4's
    transport.assert_done()


def test_the_stream_stays_in_step_when_the_retry_is_late_too() -> None:
    driver, transport = open_late([
        ("V3?", Late("+3.0000 V", 0.3)), CONFIRM,
        ("V3?", Late("+3.0000 V", 0.3)), CONFIRM,
        ("V4?", "+4.0000 V"),
    ])
    with pytest.raises(InstrumentTimeout) as info:
        driver.channel(3).voltage_v
    assert info.value.command == "V3?"
    assert driver.channel(4).voltage_v == 4.0
    transport.assert_done()


def test_a_late_multi_line_reply_is_discarded_before_the_confirmation() -> None:
    late_vall = lines([f"{0.1 * ch:+.4f} V" for ch in range(N)])
    fresh_vall = lines([f"{0.2 * ch:+.4f} V" for ch in range(N)])
    driver, transport = open_late([("VALL?", Late(late_vall, 0.5)), CONFIRM, ("VALL?", fresh_vall)])
    assert np.allclose(driver.read_drive(), 0.2 * np.arange(N))
    transport.assert_done()


def test_a_late_set_acknowledge_does_not_pass_for_the_next_reply() -> None:
    driver, transport = open_late([
        ("V2=1.0000", Late("OK", 0.25)), CONFIRM, ("V2=1.0000", "OK"),
        ("V2?", "+1.0000 V"),
    ])
    driver.set_drive(np.array([1.0]), np.array([2]))
    assert driver.channel(2).voltage_v == 1.0
    transport.assert_done()


def test_error_lines_met_while_resynchronising_are_kept_for_check_errors() -> None:
    driver, transport = open_late([("V3?", Late("E02:07\n+3.0000 V", 0.3)), CONFIRM, ("V3?", "+3.0000 V")])
    assert driver.channel(3).voltage_v == 3.0
    with pytest.raises(InstrumentReportedError, match="over-current on channel 7"):
        driver.check_errors()
    transport.assert_done()


def test_no_known_answer_while_resynchronising_means_reconnect() -> None:
    driver, transport = open_late([("V3?", Late("+3.0000 V", 0.3)), ("id?", None)])
    with pytest.raises(InstrumentConnectionError, match="lost step"):
        driver.channel(3).voltage_v


def test_retries_can_be_switched_off() -> None:
    driver, transport = open_late([("V3?", None), CONFIRM], retries=0)
    with pytest.raises(InstrumentTimeout):
        driver.channel(3).voltage_v
    transport.assert_done()


# -- limits: refused before anything is written ------------------------------------------------------------------
@pytest.mark.parametrize("values, channels, message", [
    ([1.0, 7.5], [0, 9], r"channel 9: drive 7.5 V exceeds the limit 7 V"),
    ([1.0, -0.1], [0, 1], "channel 1"),
    ([1.0, np.nan], [0, 1], "channel 1"),
    ([1.0], [16], "channel 16 does not exist"),
    ([1.0, 2.0], [3, 3], "twice"),
    ([1.0, 2.0], [3], "2 values for 1 channels"),
    ([1.0] * 15, None, "15 values for 16 channels"),
])
def test_out_of_range_drive_is_refused_before_any_write(values: list[float], channels: list[int] | None,
                                                        message: str) -> None:
    driver, transport = open_scripted([], vmax_v=[7.0] * N)
    before = transport.write_count
    with pytest.raises(LimitError, match=message):
        driver.set_drive(np.array(values), None if channels is None else np.array(channels))
    assert transport.write_count == before
    transport.assert_done()


def test_single_channel_setting_is_held_to_the_configured_limit() -> None:
    driver, transport = open_scripted([], vmax_v=[7.0] * N)
    before = transport.write_count
    with pytest.raises(LimitError, match="channel 4"):
        driver.channel(4).voltage_v = 8.0
    with pytest.raises(LimitError, match="channel 4"):
        driver.channel(4).current_a = 0.03
    assert transport.write_count == before


def test_close() -> None:
    driver, transport = open_scripted([])
    driver.close()
    assert not transport.is_open


# -- pyvisa-sim ----------------------------------------------------------------------------------------------------
def test_shipped_yaml_is_current() -> None:
    assert yaml_path(PROFILES[0]).read_text() == render_text(PROFILES[0])


def _sim(tmp_path: Path) -> object:
    import pyvisa

    copy = tmp_path / "qontrol.yaml"
    shutil.copy(yaml_path(PROFILES[0]), copy)
    return pyvisa.ResourceManager(f"{copy}@sim")


def test_pyvisa_sim_two_module_chain(tmp_path: Path) -> None:
    rm = _sim(tmp_path)
    driver = Qontrol("ASRL1::INSTR", resource_manager=rm, timeout_s=0.2, quiet_s=0.02)
    assert driver.identity() == Identity("Qontrol", "Q8iv", "0001", "v2.4.1")
    assert driver.n_channels == 16 and np.all(driver.max_drive() == 12.0)
    driver.check_errors()

    driver.set_drive(np.array([1.5, 2.25]), np.array([3, 11]))  # isolated channels: V3=, V11=
    assert driver.channel(3).voltage_v == 1.5 and driver.channel(11).voltage_v == 2.25
    driver.channel(12).current_a = 0.0125
    assert driver.channel(12).current_ma == pytest.approx(12.5)
    driver.channel(5).vmax_v = 6.0
    assert driver.channel(5).vmax_v == 6.0

    before = driver.transport.write_count
    with pytest.raises(LimitError):
        driver.set_drive(np.array([12.5]), np.array([3]))
    assert driver.transport.write_count == before

    assert np.array_equal(driver.read_drive(), np.zeros(16))   # static VALL? of the simulation
    power = driver.read_power_w()
    assert power is not None and np.array_equal(power, np.zeros(16))
    with pytest.raises(InstrumentReportedError, match="unrecognised command") as info:
        driver.write("NOT_A_COMMAND")
    assert info.value.command == "NOT_A_COMMAND"
    driver.safe_state()
    driver.check_errors()
    snap = driver.snapshot()
    assert snap["identity"] == {"maker": "Qontrol", "model": "Q8iv", "serial": "0001", "firmware": "v2.4.1"}
    assert [m["serial"] for m in snap["modules"]] == ["0001", "0002"] and snap["used_channels"] == list(range(16))
    assert snap["vmax_v"] == [12.0] * 16 and snap["drive"] == {"values": [0.0] * 16, "unit": "V"}
    driver.close()


def test_pyvisa_sim_refuses_limits_the_chain_does_not_read_back(tmp_path: Path) -> None:
    rm = _sim(tmp_path)
    with pytest.raises(InstrumentReplyError, match="VMAXALL"):
        Qontrol("ASRL1::INSTR", resource_manager=rm, timeout_s=0.2, quiet_s=0.02, max_voltage_v=7.0)


# -- pyserial URL (SerialTransport) --------------------------------------------------------------------------------
class FakeChain:
    """A two-module Q8iv chain answering like the recordings (1 kOhm heaters, power reported)."""

    def __init__(self) -> None:
        self.v = [0.0] * N
        self.vmax = [12.0] * N
        self.imax = [24.0] * N
        self.received: list[str] = []
        self.first = True

    def __call__(self, raw: bytes) -> bytes:
        line = raw.decode("ascii").strip()
        self.received.append(line)
        reply = self.answer(line)
        if self.first:  # the power-up notice is still waiting when the driver starts
            self.first, reply = False, "E90:00\n" + reply
        return (reply + "\n").encode("ascii")

    def answer(self, line: str) -> str:
        fixed = {"nup=0": "\x06OK", "nupall?": "Q8iv-0001: 0\nQ8iv-0002: 1", "id?": "Q8iv-0001",
                 "firmware?": "v2.4.1", "nchan?": "8", "vfull?": "+12.0000 V", "ifull?": "+24.0000 mA"}
        if line in fixed:
            return fixed[line]
        if line == "VALL?":
            return "\n".join(f"{v:+.4f} V" for v in self.v)
        if line == "VMAXALL?":
            return "\n".join(f"{v:+.4f} V" for v in self.vmax)
        if line == "IMAXALL?":
            return "\n".join(f"{i:+.4f} mA" for i in self.imax)
        if line == "VIPALL?":
            return "\n".join(f"{ch // 8},{ch % 8}: {v:+.4f} V, {v:+.4f} mA, {v * v:9.4f} mW, {1000:6d} Ohm"
                             for ch, v in enumerate(self.v))
        match = re.fullmatch(r"(VMAX|IMAX|V)(\d+)=([-+.\d]+)", line, re.IGNORECASE)
        if match:
            ch, value = int(match[2]), float(match[3])
            if ch >= N:
                return f"E12:{ch:02d}"
            target = {"VMAX": self.vmax, "IMAX": self.imax, "V": self.v}[match[1].upper()]
            if target is self.v and value > self.vmax[ch]:
                return f"E01:{ch:02d}"
            target[ch] = value
            return "OK"
        match = re.fullmatch(r"VVEC(\d+)=([-+.,\d]+)", line, re.IGNORECASE)
        if match:
            start, values = int(match[1]), [float(v) for v in match[2].split(",")]
            self.v[start:start + len(values)] = values
            return "OK"
        return "E10:00"


def test_opens_through_a_serial_url(fake_serial: dict) -> None:
    chain = FakeChain()
    fake_serial["qontrol"] = chain
    driver = Qontrol("fakeinst://qontrol", quiet_s=0.01, max_voltage_v=7.0, max_current_a=0.02)
    assert driver.transport.address == "fakeinst://qontrol"
    assert chain.vmax == [7.0] * N and chain.imax == [20.0] * N
    values = np.linspace(0.0, 6.0, N)
    driver.set_drive(values)
    assert chain.received[-2:] == ["VVEC0=" + ",".join(f"{v:.4f}" for v in values[:8]),
                                   "VVEC8=" + ",".join(f"{v:.4f}" for v in values[8:])]
    assert np.allclose(driver.read_drive(), values, atol=1e-4)
    power = driver.read_power_w()
    assert power is not None and np.allclose(power, values ** 2 * 1e-3, atol=1e-6)
    with pytest.raises(InstrumentReportedError, match="over-voltage on channel 3"):
        driver.channel(3).vmax_v = 1.0
        driver.channel(3).voltage_v = 2.0
    driver.safe_state()
    assert chain.v == [0.0] * N
    driver.check_errors()
    driver.close()


def test_serial_settings_follow_the_manual() -> None:
    assert Qontrol.line_settings == TransportSettings(write_termination="\n", read_termination="\n",
                                                      timeout_s=0.2, retries=0, baud_rate=115200)


@pytest.mark.parametrize("command", ["VVEC0=1.0000,2.0000", "vvec8=0.5000", "V3=1.2500", "IVEC0=0.1000,0.2000",
                                     "VMAX3=4.0000", "V3=1\n2", "VVEC0=", "=1", "3V=1", "V 3=1", "v3?", "vall?",
                                     "VIPALL?", "id?", "nupall?", "nchan?", "firmware?", "log?", "VVEC0=1=2",
                                     " VVEC0=1.0000 ", "V3?=1"])
def test_reply_shape_by_header_is_the_shape_the_patterns_give(command: str) -> None:
    """A set's reply shape is looked up by its header (the part up to "="): the same shape as matching the whole
    line against every pattern in order."""
    from labctl.drivers.qontrol import _REPLY_SHAPES, reply_shape

    expected = next((shape for pattern, shape in _REPLY_SHAPES if pattern.fullmatch(command.strip())), None)
    assert reply_shape(command) is expected


def test_vector_lines_carry_value_format_digits() -> None:
    """The printf-style vector line writes every value as VALUE_FORMAT does (rounding, zero, -0, tiny, large)."""
    from labctl.drivers.qontrol import IVEC_SET, VALUE_FORMAT, VVEC_SET, _vector_format

    rng = np.random.default_rng(3)
    for template in (VVEC_SET, IVEC_SET):
        for _ in range(500):
            values = (rng.uniform(0, 20, 8) * 10.0 ** rng.integers(-6, 4)).tolist()
            values[:4] = [0.0, -0.0, 0.00005, 0.00015]
            expected = template.format(start=8, values=",".join(VALUE_FORMAT.format(v) for v in values))
            assert _vector_format(template, 8, 8) % tuple(values) == expected
