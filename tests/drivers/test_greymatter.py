"""greymatter DAC controller driver: byte-exact protocol (instruments.md appendix), strict parsing, limits, pyvisa-sim,
and the real firmware's console (echo, prompt, banner) through a pyserial URL."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import InstrumentReplyError, InstrumentReportedError, InstrumentTimeout, LimitError
from labctl.drivers.greymatter import Greymatter, current_span_for, decode_faults, voltage_span_for
from labctl.drivers.interfaces import HeaterDriver
from labctl.drivers.parsing import Identity
from labctl.drivers.transport import TransportSettings
from labctl.sim.profiles.greymatter import PROFILES
from labctl.sim.protocol import render_text, yaml_path

from labctl.drivers.testing import Exchange, ScriptedTransport

IDN = "greymatter,DAC Controller,001,0.1"
CURRENT_IDS = [f"BOARD0:DAC{d}:CH{c}" for d in (0, 1) for c in range(5)]  # channels 0..9 of board 0


def current_connect(span: int = 4, res: tuple[str, str] = ("16", "16")) -> list[Exchange]:
    """One board in current mode: identify, resolutions, spans (before any code), zero codes, one load."""
    return [
        ("*IDN?", IDN),
        ("BOARD0:DAC0:RES?", res[0]),
        ("BOARD0:DAC1:RES?", res[1]),
        (f"BOARD0:DAC0:SPAN:ALL {span}", "OK"),
        (f"BOARD0:DAC1:SPAN:ALL {span}", "OK"),
        *((f"{out}:CODE 0", "OK") for out in CURRENT_IDS),
        ("LDAC", "OK"),
    ]


def open_current(extra: list[Exchange], *, max_current_a: float | list[float] = 0.02,
                 connect: list[Exchange] | None = None) -> tuple[Greymatter, ScriptedTransport]:
    transport = ScriptedTransport((connect if connect is not None else current_connect()) + extra,
                                  name="greymatter", address="ASRL8::INSTR")
    return Greymatter(transport, n_boards=1, max_current_a=max_current_a), transport


# -- connect -------------------------------------------------------------------------------------------------------
def test_connect_current_mode_byte_exact() -> None:
    driver, transport = open_current([])
    transport.assert_done()
    assert isinstance(driver, HeaterDriver)
    assert driver.n_channels == 10 and driver.mode == "current"
    assert np.all(driver.max_drive() == 0.02)
    assert np.all(driver.span_full_scale() == 0.025)  # 20 mA -> span 4 (25 mA)
    assert np.all(driver.read_drive() == 0.0)


def test_channel_map() -> None:
    driver, _ = open_current([])
    assert [driver.address_of(k) for k in (0, 4, 5, 9)] == [(0, 0, 0), (0, 0, 4), (0, 1, 0), (0, 1, 4)]
    with pytest.raises(LimitError, match="channel 10 does not exist"):
        driver.address_of(10)


def test_mixed_limits_give_per_channel_spans() -> None:
    limits = [0.003] * 5 + [0.02] * 4 + [0.15]
    script = current_connect()[:3] + [
        ("BOARD0:DAC0:SPAN:ALL 1", "OK"),        # all five at 3 mA -> 3.125 mA span
        *((f"BOARD0:DAC1:CH{c}:SPAN 4", "OK") for c in range(4)),
        ("BOARD0:DAC1:CH4:SPAN 7", "OK"),        # 150 mA -> 200 mA span
        *((f"{out}:CODE 0", "OK") for out in CURRENT_IDS),
        ("LDAC", "OK"),
    ]
    driver, transport = open_current([], max_current_a=limits, connect=script)
    transport.assert_done()
    assert driver.span_full_scale()[[0, 5, 9]] == pytest.approx([3.125e-3, 25e-3, 200e-3])


def test_voltage_mode_connect_keeps_zero_volts_mid_scale() -> None:
    script: list[Exchange] = [
        ("*IDN?", IDN),
        ("BOARD0:DAC2:RES?", "16"),
        ("BOARD0:DAC2:SPAN:ALL 2", "OK"),  # 4 V limit -> +/-5 V, written before any code
        *((f"BOARD0:DAC2:CH{c}:CODE 32768", "OK") for c in range(4)),  # mid-scale: 0 V in that bipolar span
        ("LDAC", "OK"),
        ("BOARD0:DAC2:CH1:CODE 45875", "OK"),  # 2 V: floor((2 + 5) / 10 * 65535 + 0.5)
        ("LDAC", "OK"),
    ]
    transport = ScriptedTransport(script)
    driver = Greymatter(transport, mode="voltage", n_boards=1, max_voltage_v=4.0)
    assert driver.n_channels == 4
    driver.set_drive(np.array([2.0]), np.array([1]))
    assert driver.read_drive()[1] == pytest.approx(2.0, abs=2e-4)
    transport.assert_done()


def test_identity() -> None:
    driver, transport = open_current([("*IDN?", IDN)])
    assert driver.identity() == Identity("greymatter", "DAC Controller", "001", "0.1")
    transport.assert_done()


def test_banner_echo_and_prompt_are_skipped_at_connect() -> None:
    script = current_connect()
    script[0] = ("*IDN?", "*IDN?\r\n" + IDN + "\r\n> ")
    transport = ScriptedTransport(script)
    for banner in ("", "greymatter DAC Controller v0.1", "Mode: Multi-board (8 boards, 24 DACs, IO expander CS)",
                   "Ready. Enter SCPI commands:"):
        transport.queue_reply(banner + "\r")
    driver = Greymatter(transport, n_boards=1, max_current_a=0.02)
    assert driver.n_channels == 10
    assert transport.step == len(script)


def test_console_echo_and_prompt_on_every_command() -> None:
    driver, transport = open_current([("BOARD0:DAC0:RES?", "> BOARD0:DAC0:RES?\r\n16\r")])
    assert driver.dac(0, 0).resolution == 16
    transport.assert_done()


def test_connect_asks_again_when_the_controller_was_still_starting() -> None:
    script = current_connect()
    script.insert(0, ("*IDN?", None))  # flushed by the starting firmware
    transport = ScriptedTransport(script)
    Greymatter(transport, n_boards=1, max_current_a=0.02)
    transport.assert_done()


def test_wrong_instrument_is_refused() -> None:
    transport = ScriptedTransport([("*IDN?", "Keysight Technologies,N7744A,MY1,1.0")])
    with pytest.raises(InstrumentReplyError, match="not a greymatter") as info:
        Greymatter(transport, n_boards=1, max_current_a=0.02)
    assert info.value.command == "*IDN?"
    assert not transport.is_open


@pytest.mark.parametrize("reply, message", [("14", "resolution 14"), ("sixteen", "expected an integer")])
def test_bad_resolution_reply(reply: str, message: str) -> None:
    transport = ScriptedTransport([("*IDN?", IDN), ("BOARD0:DAC0:RES?", reply)])
    with pytest.raises(InstrumentReplyError, match=message) as info:
        Greymatter(transport, n_boards=1, max_current_a=0.02)
    assert info.value.command == "BOARD0:DAC0:RES?"


def test_twelve_bit_dacs_scale_codes_to_4095() -> None:
    driver, transport = open_current([
        ("BOARD0:DAC0:CH0:CODE 2048", "OK"),   # 12.5 mA of 25 mA: floor(0.5 * 4095 + 0.5)
        ("BOARD0:DAC1:CH0:CODE 32768", "OK"),  # same current on a 16-bit DAC
        ("LDAC", "OK"),
    ], connect=current_connect(res=("12", "16")))
    driver.set_drive(np.array([0.0125, 0.0125]), np.array([0, 5]))
    transport.assert_done()


# -- drive -----------------------------------------------------------------------------------------------------------
def test_set_drive_writes_codes_then_one_ldac() -> None:
    values = np.linspace(0.0, 0.02, 10)
    codes = np.floor(values / 0.025 * 65535 + 0.5).astype(int)
    driver, transport = open_current([
        *((f"{out}:CODE {code}", "OK") for out, code in zip(CURRENT_IDS, codes)),
        ("LDAC", "OK"),
    ])
    driver.set_drive(values)
    transport.assert_done()
    assert np.allclose(driver.read_drive(), codes / 65535 * 0.025)
    assert np.allclose(driver.read_drive(), values, atol=0.025 / 65535)
    assert driver.read_power_w() is None


def test_single_output_current_write_is_immediate_and_tracked() -> None:
    driver, transport = open_current([("BOARD0:DAC1:CH2:CURR 12.5000", "OK")])
    driver.output(7).current_ma = 12.5
    assert driver.read_drive()[7] == pytest.approx(0.0125)
    transport.assert_done()


def test_safe_state_zeroes_every_output_then_loads_even_after_a_failure() -> None:
    driver, transport = open_current([
        ("BOARD0:DAC0:CH0:CODE 0", "ERROR:DAC not initialized"),
        *((f"{out}:CODE 0", "OK") for out in CURRENT_IDS[1:]),
        ("LDAC", "OK"),
    ])
    with pytest.raises(InstrumentReportedError, match="DAC not initialized") as info:
        driver.safe_state()
    assert info.value.command == "BOARD0:DAC0:CH0:CODE 0"
    transport.assert_done()


def test_reset_reconfigures() -> None:
    driver, transport = open_current([("*RST", "OK"), *current_connect()[1:]])
    driver.reset()
    transport.assert_done()


# -- errors ------------------------------------------------------------------------------------------------------------
def test_error_reply_names_the_command() -> None:
    driver, transport = open_current([("BOARD0:DAC0:CH0:CODE 26214", "ERROR:Code exceeds max (4095 for 12-bit)")])
    with pytest.raises(InstrumentReportedError, match="Code exceeds max") as info:
        driver.set_drive(np.array([0.01]), np.array([0]))
    assert info.value.command == "BOARD0:DAC0:CH0:CODE 26214"
    transport.assert_done()


def test_check_errors_clean() -> None:
    driver, transport = open_current([("SYST:ERR?", '0,"No error"'), ("FAULT?", "OK")])
    driver.check_errors()
    transport.assert_done()


def test_queue_errors_are_drained_and_reported() -> None:
    driver, transport = open_current([("SYST:ERR?", "-100,Command error"), ("SYST:ERR?", "0,No error")])
    with pytest.raises(InstrumentReportedError, match="-100: Command error") as info:
        driver.check_errors()
    assert info.value.errors == [(-100, "Command error")] and info.value.command == "SYST:ERR?"
    transport.assert_done()


def test_fault_mask_is_decoded_to_board_and_dac() -> None:
    driver, transport = open_current([("SYST:ERR?", "0,No error"), ("FAULT?", "FAULT:0x800005")])
    with pytest.raises(InstrumentReportedError) as info:
        driver.check_errors()
    assert [code for code, _ in info.value.errors] == [0, 2, 23]
    text = str(info.value)
    assert "board 0 DAC0" in text and "board 0 DAC2" in text and "board 7 DAC2" in text
    assert info.value.command == "FAULT?"
    transport.assert_done()


def test_decode_faults() -> None:
    assert decode_faults(0x000001) == [(0, 0)]
    assert decode_faults(0x000004) == [(0, 2)]
    assert decode_faults(0x800000) == [(7, 2)]
    assert decode_faults(0x000018) == [(1, 0), (1, 1)]


def test_single_board_fault_reply() -> None:
    driver, _ = open_current([("FAULT?", "FAULT:ACTIVE")])
    assert driver.read_faults()[0][0] == -1


@pytest.mark.parametrize("reply", ["FAULT:0xZZ", "FAULT:0x1000000", "FAULT:0x000000", "fault", ""])
def test_malformed_fault_replies(reply: str) -> None:
    driver, _ = open_current([("FAULT?", reply + "\n")] if reply == "" else [("FAULT?", reply)])
    with pytest.raises((InstrumentReplyError, InstrumentTimeout)) as info:
        driver.read_faults()
    assert info.value.command == "FAULT?"


def test_malformed_error_queue_reply() -> None:
    driver, _ = open_current([("SYST:ERR?", "No error at all")])
    with pytest.raises(InstrumentReplyError) as info:
        driver.check_errors()
    assert info.value.command == "SYST:ERR?"


@pytest.mark.parametrize("reply", ["greymatter,DAC Controller", "greymatter,,001,0.1,extra", "garbage"])
def test_malformed_identity_reply(reply: str) -> None:
    driver, _ = open_current([("*IDN?", reply)])
    with pytest.raises(InstrumentReplyError) as info:
        driver.identity()
    assert info.value.command == "*IDN?"


def test_close() -> None:
    driver, transport = open_current([])
    driver.close()
    assert not transport.is_open


def test_set_answered_with_something_else_than_ok() -> None:
    driver, _ = open_current([("BOARD0:DAC0:CH0:CODE 0", "16"), ])
    with pytest.raises(InstrumentReplyError, match="expected 'OK'"):
        driver.set_drive(np.array([0.0]), np.array([0]))


# -- limits: refused before anything is written ------------------------------------------------------------------
@pytest.mark.parametrize("values, channels, message", [
    ([0.001, 0.021], [0, 9], r"channel 9 \(board 0 DAC1 CH4\): drive 0.021 A exceeds the limit 0.02 A"),
    ([-0.001], [3], "channel 3"),
    ([np.inf], [3], "channel 3"),
    ([0.001], [10], "channel 10 does not exist"),
    ([0.001, 0.002], [4, 4], "twice"),
    ([0.001] * 9, None, "9 values for 10 channels"),
])
def test_out_of_range_drive_is_refused_before_any_write(values: list[float], channels: list[int] | None,
                                                        message: str) -> None:
    driver, transport = open_current([])
    before = transport.write_count
    with pytest.raises(LimitError, match=message):
        driver.set_drive(np.array(values), None if channels is None else np.array(channels))
    with pytest.raises(LimitError, match="channel 2"):
        driver.output(2).current_ma = 20.5
    assert transport.write_count == before
    transport.assert_done()


@pytest.mark.parametrize("kwargs, message", [
    ({"max_current_a": 0.5}, r"channel 0 limit 0.5 A is outside \[0, 0.3\] A"),
    ({}, "max_current_a is required"),
    ({"max_current_a": [0.01] * 3}, "3 limits for 10 channels"),
    ({"mode": "voltage", "max_voltage_v": 12.0}, "outside"),
])
def test_bad_limits_are_refused_before_the_port_is_touched(kwargs: dict, message: str) -> None:
    transport = ScriptedTransport([])
    with pytest.raises(LimitError, match=message):
        Greymatter(transport, n_boards=1, **kwargs)
    assert transport.write_count == 0


def test_span_choice() -> None:
    assert current_span_for(3.125) == 1 and current_span_for(3.2) == 2 and current_span_for(100.0) == 6
    assert current_span_for(250.0) == 15
    assert voltage_span_for(2.0) == 4 and voltage_span_for(5.0) == 2 and voltage_span_for(7.0) == 3
    with pytest.raises(LimitError):
        current_span_for(301.0)


def test_serial_settings_follow_the_guide() -> None:
    settings = Greymatter.line_settings
    assert (settings.write_termination, settings.read_termination, settings.baud_rate) == ("\n", "\n", 115200)
    assert isinstance(settings, TransportSettings)


# -- pyvisa-sim ----------------------------------------------------------------------------------------------------
def test_shipped_yaml_is_current() -> None:
    assert yaml_path(PROFILES[0]).read_text() == render_text(PROFILES[0])


def _sim(tmp_path: Path) -> object:
    import pyvisa

    copy = tmp_path / "greymatter.yaml"
    shutil.copy(yaml_path(PROFILES[0]), copy)
    return pyvisa.ResourceManager(f"{copy}@sim")


def test_pyvisa_sim_all_boards(tmp_path: Path) -> None:
    rm = _sim(tmp_path)
    driver = Greymatter("ASRL2::INSTR", resource_manager=rm, timeout_s=0.2, max_current_a=0.02)
    assert driver.identity().maker == "greymatter"
    assert driver.n_channels == 80
    driver.check_errors()
    values = np.linspace(0.0, 0.02, 80)
    driver.set_drive(values)
    assert np.allclose(driver.read_drive(), values, atol=0.025 / 65535)
    driver.output(79).current_ma = 1.5
    assert driver.dac(7, 1).resolution == 16
    before = driver.transport.write_count
    with pytest.raises(LimitError):
        driver.set_drive(np.array([0.03]), np.array([0]))
    assert driver.transport.write_count == before
    with pytest.raises(InstrumentReportedError, match="Unknown command") as info:
        driver.write("NOT:A:COMMAND")
    assert info.value.command == "NOT:A:COMMAND"
    driver.safe_state()
    assert np.all(driver.read_drive() == 0.0)
    driver.check_errors()
    snap = driver.snapshot()
    assert snap["identity"]["maker"] == "greymatter" and snap["mode"] == "current"
    assert snap["resolution_bits"]["BOARD7:DAC1"] == 16 and len(snap["resolution_bits"]) == 16
    assert snap["commanded"]["read_back"] is False and snap["commanded"]["spans"] == [4] * 80
    driver.close()


def test_pyvisa_sim_voltage_outputs(tmp_path: Path) -> None:
    rm = _sim(tmp_path)
    driver = Greymatter("ASRL2::INSTR", resource_manager=rm, timeout_s=0.2, mode="voltage", n_boards=2,
                        max_voltage_v=2.0)
    driver.set_drive(np.array([0.5, 1.5]), np.array([0, 7]))
    assert driver.read_drive()[[0, 7]] == pytest.approx([0.5, 1.5], abs=1e-4)
    driver.output(3).voltage_v = 1.0
    driver.safe_state()
    driver.close()


# -- pyserial URL: the firmware console (banner, echo, prompt) -------------------------------------------------------
class FakeConsole:
    """The released firmware's console: banner on connect, each command echoed, CRLF, then a ``> `` prompt."""

    BANNER = ("\r\ngreymatter DAC Controller v0.1\r\nMode: Multi-board (8 boards, 24 DACs, IO expander CS)\r\n"
              "SPI clock: 10000000 Hz\r\nInitializing...\r\nAll DACs initialized.\r\nNo faults detected.\r\n"
              "Ready. Enter SCPI commands:\r\n> ")

    def __init__(self) -> None:
        self.received: list[str] = []
        self.codes: dict[str, int] = {}
        self.spans: dict[str, int] = {}
        self.banner_sent = False

    def __call__(self, raw: bytes) -> bytes:
        line = raw.decode("ascii").strip()
        self.received.append(line)
        banner = "" if self.banner_sent else self.BANNER
        self.banner_sent = True
        return (banner + line + "\r\n" + self.answer(line) + "\r\n> ").encode("ascii")

    def answer(self, line: str) -> str:
        fixed = {"*IDN?": IDN, "LDAC": "OK", "SYST:ERR?": '0,"No error"', "FAULT?": "OK"}
        if line.upper() in fixed:
            return fixed[line.upper()]
        if re.fullmatch(r"BOARD\d:DAC[0-2]:RES\?", line):
            return "16"
        match = re.fullmatch(r"(BOARD\d:DAC[0-2](?::CH\d)?):(CODE|SPAN|SPAN:ALL) (\d+)", line)
        if match:
            (self.codes if match[2] == "CODE" else self.spans)[match[1]] = int(match[3])
            return "OK"
        return "ERROR:Unknown command"


def test_opens_through_a_serial_url_against_the_firmware_console(fake_serial: dict) -> None:
    console = FakeConsole()
    fake_serial["greymatter"] = console
    driver = Greymatter("fakeinst://greymatter", n_boards=2, max_current_a=0.005)
    assert driver.transport.address == "fakeinst://greymatter"
    assert console.spans == {f"BOARD{b}:DAC{d}": 2 for b in (0, 1) for d in (0, 1)}  # 5 mA -> 6.25 mA span
    driver.set_drive(np.full(20, 0.003125))
    assert set(console.codes.values()) == {32768} and console.received[-1] == "LDAC"
    assert driver.identity().serial == "001"
    driver.check_errors()
    with pytest.raises(InstrumentReportedError, match="Unknown command"):
        driver.write("BOARD0:DAC0:CH0:CURR? ")
    driver.safe_state()
    assert set(console.codes.values()) == {0}
    driver.close()
