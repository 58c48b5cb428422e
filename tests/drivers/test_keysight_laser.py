"""The shared Keysight SOUR0/TRIG0 laser tree: sweep recipe (§1.3 steps 1-4, 6-8, 9), checks, strict parsing.

The tree is exercised through the N7778C driver (the 8164B slot-0 view is covered in test_keysight_8164b.py).
Script fragments defined here are reused by the other Keysight test modules.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from labctl.drivers.errors import InstrumentReplyError, InstrumentReportedError, InstrumentTimeout, LimitError
from labctl.drivers.interfaces import SweepSettings
from labctl.drivers.keysight_laser import SWEEP_CHECK_CODES, parse_sweep_check
from labctl.drivers.keysight_n777xc import KeysightN777xC
from labctl.drivers.testing import ScriptedTransport, block

#: Line settings for scripted tests: no retries, so a missing reply surfaces at once instead of a re-send.
LF = replace(KeysightN777xC.line_settings, retries=0)
NO_ERROR = ":SYST:ERR?", '+0,"No error"'
N7778C_IDN = "Keysight Technologies,N7778C,DE59800324,V2.022"

#: The laser part of every connect: not locked, power unit W, tuning range.
LASER_SETUP = [
    (":LOCK?", "0"),
    (":SOUR0:POW:UNIT 1", None),
    (":SOUR0:WAV? MIN", "+1.49000000E-006"),
    (":SOUR0:WAV? MAX", "+1.64000000E-006"),
]
N777X_CONNECT = [("*IDN?", N7778C_IDN), ("*CLS", None), *LASER_SETUP, NO_ERROR]

SWEEP = SweepSettings(start_m=1.52e-6, stop_m=1.58e-6, step_m=1e-11, speed_m_per_s=40e-9)
#: A five-point sweep for the end-to-end recipes (step time 250 us).
SHORT_SWEEP = SweepSettings(start_m=1.55e-6, stop_m=1.55004e-6, step_m=1e-11, speed_m_per_s=40e-9)


def sweep_settings_script(sweep: SweepSettings, *, loop: bool) -> list[tuple[str, str | None]]:
    """§1.3 steps 1-2 as the driver must send them."""
    return [
        (":TRIG0:INP SWS", None),
        *([(":TRIG:CONF LOOP", None)] if loop else []),
        (":TRIG0:OUTP STF", None),
        (":SOUR0:WAV:SWE:MODE CONT", None),
        (f":SOUR0:WAV:SWE:STAR {sweep.start_m:.8E}", None),
        (f":SOUR0:WAV:SWE:STOP {sweep.stop_m:.8E}", None),
        (f":SOUR0:WAV:SWE:STEP {sweep.step_m:.6E}", None),
        (f":SOUR0:WAV:SWE:SPE {sweep.speed_m_per_s * 1e9:.4f}NM/S", None),
        (":SOUR0:WAV:SWE:CYCL 1", None),
        (":SOUR0:WAV:SWE:LLOG 1", None),
        NO_ERROR,
    ]


#: Every power read-back: the unit first, then the value in that unit (1 mW here).
POWER_READ = [(":SOUR0:POW:UNIT?", "1"), (":SOUR0:POW?", "+1.00000000E-003")]


def configure_script(sweep: SweepSettings, points: int, *, loop: bool = False) -> list[tuple[str, str | None]]:
    """§1.3 steps 1-4: settings, error check, CHEC?, PMAX? against the set power, EXP?."""
    return sweep_settings_script(sweep, loop=loop) + [
        (":SOUR0:WAV:SWE:CHEC?", "0,OK"),
        (f":SOUR0:WAV:SWE:PMAX? {sweep.start_m * 1e9:.4f}NM,{sweep.stop_m * 1e9:.4f}NM", "+1.00000000E-002"),
        *POWER_READ,
        (":SOUR0:WAV:SWE:EXP?", f"+{points}"),
    ]


START_SCRIPT = [
    (":SOUR0:WAV:SWE 1", None),
    (":SOUR0:WAV:SWE:FLAG?", "+0"),
    (":SOUR0:WAV:SWE:FLAG?", "+1"),
    (":SOUR0:WAV:SWE:SOFT", None),
]
WAIT_SCRIPT = [(":SOUR0:WAV:SWE?", "+1"), (":SOUR0:WAV:SWE?", "+0")]
#: §1.3 step 9 on a stand-alone laser: no :TRIG:CONF (an 816x mainframe command); FRAME_FINISH_SCRIPT in a frame.
FINISH_SCRIPT = [(":TRIG0:INP IGN", None), (":TRIG0:OUTP DIS", None)]
FRAME_FINISH_SCRIPT = FINISH_SCRIPT + [(":TRIG:CONF DEF", None)]


def f64_block(values: np.ndarray) -> bytes:
    return block(np.asarray(values, dtype="<f8").tobytes())


def make(script=(), connect=N777X_CONNECT):
    transport = ScriptedTransport(list(connect) + list(script), settings=LF, address="TCPIP0::10.0.0.7::inst0::INSTR")
    laser = KeysightN777xC(transport, poll_interval_s=0, output_settle_s=0)
    return laser, transport


# -- sweep configuration -----------------------------------------------------------------------------------------------
def test_configure_sweep_follows_the_recipe_and_returns_expected_points():
    laser, t = make(configure_script(SWEEP, 6001))
    assert laser.configure_sweep(SWEEP) == 6001
    t.assert_done()


def test_a_stand_alone_laser_refuses_a_trigger_loop_before_sending_anything():
    laser, t = make()
    with pytest.raises(LimitError, match="816x"):
        laser.configure_sweep(SWEEP, trigger_loop=True)
    t.assert_done()


@pytest.mark.parametrize("code", sorted(c for c in SWEEP_CHECK_CODES if c))
def test_sweep_check_codes_are_translated(code):
    reply = f"{code},Sweep parameter problem"
    laser, t = make(sweep_settings_script(SWEEP, loop=False) + [(":SOUR0:WAV:SWE:CHEC?", reply)])
    with pytest.raises(InstrumentReportedError, match=SWEEP_CHECK_CODES[code]) as info:
        laser.configure_sweep(SWEEP)
    assert info.value.command == ":SOUR0:WAV:SWE:CHEC?"
    assert info.value.errors == [(code, "Sweep parameter problem")]
    t.assert_done()


def test_unknown_sweep_check_code_is_reported_as_such():
    laser, t = make(sweep_settings_script(SWEEP, loop=False) + [(":SOUR0:WAV:SWE:CHEC?", "399,Something new")])
    with pytest.raises(InstrumentReportedError, match="not in the documented table"):
        laser.configure_sweep(SWEEP)
    t.assert_done()


def test_refused_sweep_setting_is_caught_before_the_check():
    script = sweep_settings_script(SWEEP, loop=False)[:-1] + [
        (":SYST:ERR?", '-222,"Data out of range"'), NO_ERROR]
    laser, t = make(script)
    with pytest.raises(InstrumentReportedError, match="-222"):
        laser.configure_sweep(SWEEP)
    t.assert_done()


def test_power_above_pmax_over_the_sweep_range_is_refused():
    script = sweep_settings_script(SWEEP, loop=False) + [
        (":SOUR0:WAV:SWE:CHEC?", "0,OK"),
        (":SOUR0:WAV:SWE:PMAX? 1520.0000NM,1580.0000NM", "+5.00000000E-004"),
        *POWER_READ,
    ]
    laser, t = make(script)
    with pytest.raises(InstrumentReportedError, match="exceeds") as info:
        laser.configure_sweep(SWEEP)
    assert info.value.command == ":SOUR0:WAV:SWE:PMAX? 1520.0000NM,1580.0000NM"
    t.assert_done()


@pytest.mark.parametrize("sweep", [
    SweepSettings(1.58e-6, 1.52e-6, 1e-11, 40e-9),     # start above stop
    SweepSettings(1.52e-6, 1.65e-6, 1e-11, 40e-9),     # stop beyond :SOUR0:WAV? MAX
    SweepSettings(1.48e-6, 1.52e-6, 1e-11, 40e-9),     # start below :SOUR0:WAV? MIN
    SweepSettings(1.52e-6, 1.58e-6, 0.0, 40e-9),       # no step
    SweepSettings(1.52e-6, 1.58e-6, 1e-14, 40e-9),     # below the 0.1 pm resolution
    SweepSettings(1.52e-6, 1.58e-6, 1e-11, 1e-6),      # 1000 nm/s
    SweepSettings(1.52e-6, 1.58e-6, 1e-11, float("nan")),
])
def test_bad_sweep_settings_send_nothing(sweep):
    laser, t = make()
    with pytest.raises(LimitError):
        laser.configure_sweep(sweep)
    t.assert_done()


# -- running the sweep -------------------------------------------------------------------------------------------------
def test_start_arms_then_software_triggers_and_wait_polls_until_idle():
    laser, t = make(START_SCRIPT + WAIT_SCRIPT)
    laser.start_sweep()
    laser.wait_sweep(timeout_s=5.0)
    t.assert_done()


def test_arming_timeout_stops_the_sweep():
    laser, t = make([(":SOUR0:WAV:SWE 1", None), (":SOUR0:WAV:SWE:FLAG?", "+0"), (":SOUR0:WAV:SWE 0", None)])
    laser.arm_timeout_s = -1.0
    with pytest.raises(InstrumentTimeout, match="not armed") as info:
        laser.start_sweep()
    assert info.value.command == ":SOUR0:WAV:SWE:FLAG?"
    t.assert_done()


def test_sweep_timeout_stops_the_sweep_and_names_the_query():
    laser, t = make([(":SOUR0:WAV:SWE?", "+1"), (":SOUR0:WAV:SWE 0", None)])
    with pytest.raises(InstrumentTimeout, match="still running") as info:
        laser.wait_sweep(timeout_s=-1.0)
    assert info.value.command == ":SOUR0:WAV:SWE?"
    t.assert_done()


def test_logged_wavelengths_float64_block_in_metres():
    wavelengths = np.linspace(SHORT_SWEEP.start_m, SHORT_SWEEP.stop_m, 5)
    laser, t = make(configure_script(SHORT_SWEEP, 5) + [(":SOUR0:READ:DATA? LLOG", f64_block(wavelengths))])
    laser.configure_sweep(SHORT_SWEEP)
    logged = laser.logged_wavelengths_m()
    assert logged.dtype == np.float64
    np.testing.assert_array_equal(logged, wavelengths)
    t.assert_done()


def test_finish_sweep_cleans_up_triggers_and_abort_stops_first():
    laser, t = make(FINISH_SCRIPT + [(":SOUR0:WAV:SWE 0", None)] + FINISH_SCRIPT)
    laser.finish_sweep()
    laser.finish_sweep(abort=True)
    t.assert_done()


# -- strict parsing of the sweep replies -------------------------------------------------------------------------------
@pytest.mark.parametrize("payload, match", [
    (np.linspace(1.55e-6, 1.55004e-6, 4), "4 points"),                   # fewer points than EXP? announced
    (np.array([1.55e-6, np.nan, 1.55e-6, 1.55e-6, 1.55e-6]), "nan"),
    (np.array([1.55e-6, 1.55e-6, 9.91e37, 1.55e-6, 1.55e-6]), "outside"),
    (np.array([1550.0, 1550.01, 1550.02, 1550.03, 1550.04]), "outside"),  # nanometres, not metres
])
def test_bad_lambda_log_is_a_reply_error(payload, match):
    laser, t = make(configure_script(SHORT_SWEEP, 5) + [(":SOUR0:READ:DATA? LLOG", f64_block(payload))])
    laser.configure_sweep(SHORT_SWEEP)
    with pytest.raises(InstrumentReplyError, match=match) as info:
        laser.logged_wavelengths_m()
    assert info.value.command == ":SOUR0:READ:DATA? LLOG"
    t.assert_done()


@pytest.mark.parametrize("reply", [
    block(b"\x00" * 12),                               # not a whole number of float64
    b"#0" + b"\x00" * 8 + b"\n",                       # indefinite length
    b"1.55E-06,1.56E-06\n",                            # ASCII instead of a block
    b"#18" + b"\x00" * 8 + b"X",                       # not followed by the terminator
    block(b""),                                        # empty
])
def test_malformed_lambda_log_block_is_a_reply_error(reply):
    laser, t = make([(":SOUR0:READ:DATA? LLOG", reply)])
    with pytest.raises(InstrumentReplyError) as info:
        laser.logged_wavelengths_m()
    assert info.value.command == ":SOUR0:READ:DATA? LLOG"


def test_truncated_lambda_log_block_times_out_naming_the_command():
    laser, t = make([(":SOUR0:READ:DATA? LLOG", b"#240" + b"\x00" * 32 + b"\n")])
    with pytest.raises(InstrumentTimeout) as info:
        laser.logged_wavelengths_m()
    assert info.value.command == ":SOUR0:READ:DATA? LLOG"


@pytest.mark.parametrize("query, reply, call", [
    (":SOUR0:WAV:SWE:CHEC?", "OK", "configure"),
    (":SOUR0:WAV:SWE:CHEC?", "0,Bad", "configure"),
    (":SOUR0:WAV:SWE:CHEC?", "x,OK", "configure"),
    (":SOUR0:WAV:SWE:EXP?", "+0", "configure"),
    (":SOUR0:WAV:SWE:EXP?", "6001.5", "configure"),
    (":SOUR0:WAV:SWE:EXP?", "", "configure"),
    (":SOUR0:WAV:SWE:PMAX? 1520.0000NM,1580.0000NM", "9.91E+37", "configure"),
    (":SOUR0:WAV:SWE:FLAG?", "armed", "start"),
    (":SOUR0:WAV:SWE?", "+5", "wait"),
    (":SOUR0:WAV:SWE?", "running", "wait"),
])
def test_malformed_sweep_replies_name_the_command(query, reply, call):
    if call == "configure":
        full = configure_script(SWEEP, 6001)
        index = next(i for i, (sent, _) in enumerate(full) if sent == query)
        script = full[:index] + [(query, reply)]
    elif call == "start":
        script = [(":SOUR0:WAV:SWE 1", None), (query, reply)]
    else:
        script = [(query, reply)]
    laser, t = make(script)
    with pytest.raises(InstrumentReplyError) as info:
        {"configure": lambda: laser.configure_sweep(SWEEP), "start": laser.start_sweep,
         "wait": lambda: laser.wait_sweep(5.0)}[call]()
    assert info.value.command == query
    assert query in str(info.value) and "10.0.0.7" in str(info.value)
    t.assert_done()


def test_parse_sweep_check():
    assert parse_sweep_check("0,OK") == (0, "OK")
    assert parse_sweep_check('+368,"End Wavelength <= Start Wavelength"') == (368, "End Wavelength <= Start Wavelength")
    for bad in ("", "0", "OK,0", "0,NOT OK"):
        with pytest.raises(ValueError):
            parse_sweep_check(bad)
