"""Keysight DAQ970A-class scanning voltmeter: byte-exact protocol, scan order, integration time, strict readings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl.drivers.errors import InstrumentConnectionError, InstrumentReplyError, LimitError
from labctl.drivers.interfaces import ScanningVoltmeter
from labctl.drivers.keysight_daq970a import KeysightDAQ970A, channel_list, parse_channel_list
from labctl.drivers.testing import ScriptedTransport

IDN = "Keysight Technologies,DAQ970A,MY58000123,A.03.02-01.00-03.02-00.02-03-02"
CONNECT = [("*IDN?", IDN), ("*CLS", None), (":SYST:ERR?", '+0,"No error"')]
NO_ERROR = (":SYST:ERR?", '+0,"No error"')


def make(script, connect=CONNECT, **kwargs):
    transport = ScriptedTransport(list(connect) + list(script), settings=KeysightDAQ970A.line_settings,
                                  address="TCPIP0::daq::inst0::INSTR")
    return KeysightDAQ970A(transport, **kwargs), transport


def configured(script, channels=(101, 102, 103, 104), text="101:104", **kwargs):
    daq, t = make([
        (f"CONF:VOLT:DC 10,(@{text})", None),
        (f"ROUT:SCAN (@{text})", None),
        ("TRIG:SOUR IMM", None),
        ("TRIG:COUN 1", None),
        ("ROUT:SCAN:SIZE?", f"+{len(channels)}"),
        NO_ERROR,
        *script,
    ], **kwargs)
    daq.configure_scan(list(channels))
    return daq, t


def test_connect_identifies_clears_and_checks_errors():
    daq, t = make([])
    t.assert_done()
    assert isinstance(daq, ScanningVoltmeter)
    assert daq.model == "DAQ970A" and daq.identity_at_connect.serial == "MY58000123"


@pytest.mark.parametrize("idn", ["HEWLETT-PACKARD,34970A,0,13-2-2", "Agilent Technologies,34972A,MY49016664,1.16"])
def test_34970a_family_is_accepted(idn):
    daq, t = make([], [("*IDN?", idn), *CONNECT[1:]])
    t.assert_done()
    assert daq.spec.aperture_range_s == (400e-6, 4.0)


def test_other_instrument_is_refused():
    with pytest.raises(InstrumentConnectionError, match="expected one of"):
        make([], [("*IDN?", "Keysight Technologies,34465A,MY1,A.02")])


def test_scan_list_sorted_compacted_and_replies_mapped_back():
    daq, t = configured([("READ?", "+1.00000000E-01,+2.00000000E-01,+3.00000000E-01,+4.00000000E-01,"
                                   "+5.00000000E-01")],
                        channels=(201, 103, 101, 102, 104), text="101:104,201")
    volts = daq.read_scan_v()
    t.assert_done()
    # scanned 101, 102, 103, 104, 201; asked for 201, 103, 101, 102, 104
    assert volts.tolist() == [0.5, 0.3, 0.1, 0.2, 0.4]


def test_scan_size_mismatch_names_the_missing_module():
    daq, t = make([("CONF:VOLT:DC 10,(@101,301)", None), ("ROUT:SCAN (@101,301)", None), ("TRIG:SOUR IMM", None),
                   ("TRIG:COUN 1", None), ("ROUT:SCAN:SIZE?", "+1")])
    with pytest.raises(InstrumentReplyError, match="scan list holds 1 channels, expected 2.*module"):
        daq.configure_scan([301, 101])
    assert daq.channels == ()


@pytest.mark.parametrize("channels, match", [
    ([], "at least one"), ([101, 101], "twice"), ([100], "not a channel"), ([141], "not a channel"),
    ([401], "not a channel"), ([1.5], "not a channel number"), ([True], "not a channel number"),
])
def test_bad_channels_are_refused_before_anything_is_sent(channels, match):
    daq, t = make([])
    sent = len(t.sent)
    with pytest.raises(LimitError, match=match):
        daq.configure_scan(channels)
    assert len(t.sent) == sent


@pytest.mark.parametrize("requested, sent, actual", [
    (0.02 / 50, "0.02", 0.02 / 50),         # exactly 0.02 PLC
    (1e-3, "0.2", 0.2 / 50),                # 0.05 PLC rounds up to the next accepted value
    (0.02, "1", 0.02),                      # 1 PLC
    (0.021, "2", 0.04),
])
def test_integration_time_becomes_the_next_nplc(requested, sent, actual):
    daq, t = configured([(f"VOLT:DC:NPLC {sent},(@101:104)", None)])
    assert daq.set_integration_time_s(requested) == pytest.approx(actual)
    assert daq.integration_time_s == pytest.approx(actual)
    t.assert_done()


def test_integration_counts_in_the_given_line_frequency():
    daq, t = configured([("VOLT:DC:NPLC 1,(@101:104)", None)], line_frequency_hz=60.0)
    assert daq.set_integration_time_s(1 / 60) == pytest.approx(1 / 60)
    t.assert_done()


@pytest.mark.parametrize("requested, match", [
    (1e-4, r"outside 0.02..200 PLC"), (5.0, r"outside 0.02..200 PLC"), (float("nan"), "positive"),
    (0.0, "positive"), ("fast", "not a number"), (1.0, "reply timeout; open with a longer timeout_s"),
])
def test_integration_outside_the_instrument_or_the_timeout_is_refused(requested, match):
    daq, t = configured([])
    sent = len(t.sent)
    with pytest.raises(LimitError, match=match):
        daq.set_integration_time_s(requested)
    assert len(t.sent) == sent


def test_aperture_mode_rounds_to_the_model_step():
    daq, t = configured([("VOLT:DC:APER 1.234000E-03,(@101:104)", None)], integration="aperture")
    assert daq.set_integration_time_s(1.2341e-3) == pytest.approx(1.234e-3)
    with pytest.raises(LimitError, match=r"aperture 0.0002..1 s"):
        daq.set_integration_time_s(1e-4)
    t.assert_done()


def test_overload_and_malformed_scans_raise_naming_the_channel():
    daq, t = configured([
        ("READ?", "+1.0E-01,-9.90000000E+37,+1.0E-01,+1.0E-01"),
        ("READ?", "+1.0E-01,+1.0E-01,+1.0E-01"),
        ("READ?", "+1.0E-01,+1.0E-01,abc,+1.0E-01"),
        ("READ?", "+1.0E-01,+1.0E-01,+1.3E+01,+1.0E-01"),
    ])
    with pytest.raises(InstrumentReplyError, match="channel 102 overload"):
        daq.read_scan_v()
    with pytest.raises(InstrumentReplyError, match="expected 4 readings"):
        daq.read_scan_v()
    with pytest.raises(InstrumentReplyError, match="channel 103: 'abc'"):
        daq.read_scan_v()
    with pytest.raises(InstrumentReplyError, match="channel 103: 13 V is beyond the 10 V range"):
        daq.read_scan_v()
    t.assert_done()


def test_init_then_fetch_reads_the_same_scan():
    daq, t = configured([("INIT", None), ("FETC?", "+1.0E+00,+2.0E+00,+3.0E+00,+4.0E+00")])
    daq.start_scan()
    assert daq.fetch_scan_v().tolist() == [1.0, 2.0, 3.0, 4.0]
    t.assert_done()


def test_reading_before_configuring_is_refused():
    daq, t = make([])
    with pytest.raises(LimitError, match="configure_scan"):
        daq.read_scan_v()
    with pytest.raises(LimitError, match="configure_scan"):
        daq.set_integration_time_s(0.02)


@pytest.mark.parametrize("kwargs, match", [({"range_v": 5.0}, "range_v"), ({"integration": "fast"}, "integration"),
                                           ({"line_frequency_hz": 55.0}, "line_frequency_hz")])
def test_bad_options_are_refused_before_connecting(kwargs, match):
    transport = ScriptedTransport([], settings=KeysightDAQ970A.line_settings)
    with pytest.raises(LimitError, match=match):
        KeysightDAQ970A(transport, **kwargs)
    assert transport.sent == []


@given(st.sets(st.integers(101, 340), min_size=1, max_size=30))
def test_channel_list_round_trips(channels):
    ordered = sorted(channels)
    text = channel_list(ordered)
    assert parse_channel_list(text) == ordered
    assert len(text.split(",")) <= len(ordered)
