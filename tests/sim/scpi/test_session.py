"""The SCPI behaviour of an emulated instrument as a client on a connection sees it: framing (LF, CR LF, END),
compound messages, replies joined by ``;``, the error queue (with -350), *ESR/*STB, -410/-420, blocks, and the
labctl-independent spellings (long forms, lower case, units) of the issue's examples."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from labctl.sim import Chip, ChipSpec
from labctl.sim.connection import Connection, message_end
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments.keysight_models import KeysightLaserModel, KeysightPowerMeterModel
from labctl.sim.profiles.keysight import KEYSIGHT_N7745A, KEYSIGHT_N7778C

PORT_MAP = [(b, k) for b in range(4) for k in (0, 1)]


@pytest.fixture
def bench() -> Iterator[EmulatedBench]:
    chip = Chip(ChipSpec(), seed=0)
    emulated = EmulatedBench(chip, [
        SimulatedInstrument("laser", KEYSIGHT_N7778C, KeysightLaserModel("laser", channel=0)),
        SimulatedInstrument("meter", KEYSIGHT_N7745A, KeysightPowerMeterModel("meter", PORT_MAP)),
    ])
    yield emulated
    emulated.close()


def ask(connection: Connection, text: str | bytes, *, end: bool = False) -> bytes:
    """Send bytes as a client would and return everything the instrument answered."""
    connection.write(text.encode() if isinstance(text, str) else text, end=end)
    return connection.take(connection.waiting())


def errors(connection: Connection) -> list[int]:
    """Drain the error queue with :SYST:ERR? (codes, oldest first)."""
    codes = []
    while True:
        code = int(ask(connection, ":SYST:ERR?\n").split(b",")[0])
        if code == 0:
            return codes
        codes.append(code)


def test_lf_and_cr_lf_end_a_message_and_replies_end_in_lf(bench: EmulatedBench) -> None:
    laser = bench.connect("laser")
    assert ask(laser, "*IDN?\n") == b"Keysight Technologies,N7778C,DE59800324,V2.022\n"
    assert ask(laser, "*IDN?\r\n") == b"Keysight Technologies,N7778C,DE59800324,V2.022\n"
    assert ask(laser, "*IDN?") == b""                      # no terminator, no END: not a message yet
    assert ask(laser, "\n").startswith(b"Keysight")        # ... until its LF arrives
    # with END (GPIB EOI, as the in-process VISA resources), the last byte of a write ends the message
    gpib = bench.connect("laser", end_signal=True)
    assert ask(gpib, "*IDN?", end=True).startswith(b"Keysight")
    assert errors(laser) == [] and errors(gpib) == []


def test_issue_spellings_are_one_instrument(bench: EmulatedBench) -> None:
    """The issue's PyMeasure lines: no leading colon, lower case, unit suffixes, OUTP0? for :SOUR0:POW:STAT?."""
    laser = bench.connect("laser")
    ask(laser, "SOUR0:WAV 1550.5nm\n")
    ask(laser, "SOUR0:POW:UNIT 1\n")
    assert float(ask(laser, "sour0:wav?\n")) == pytest.approx(1550.5e-9, rel=1e-12)
    ask(laser, "SOUR0:POW 2.000000 mW\n")
    assert float(ask(laser, "SOUR0:POW?\n")) == pytest.approx(2e-3)
    ask(laser, "sour0:pow 0.0dBm\n")
    assert float(ask(laser, ":SOURce0:POWer:LEVel:IMMediate:AMPLitude?\n")) == pytest.approx(1e-3)
    ask(laser, "OUTP0:STAT 1\n")
    assert ask(laser, "OUTP0?\n") == b"1\n" and ask(laser, ":SOUR0:POW:STAT?\n") == b"1\n"
    assert errors(laser) == []
    chip = bench.chip
    assert chip.laser_on()[0] and chip.laser_power_w()[0] == pytest.approx(1e-3)
    assert chip.laser_wavelength_m()[0] == pytest.approx(1550.5e-9)


def test_compound_message_answers_each_query_joined_by_semicolons(bench: EmulatedBench) -> None:
    laser = bench.connect("laser")
    reply = ask(laser, ":SOUR0:WAV 1551NM;POW:UNIT 1;:SOUR0:WAV?;POW:UNIT?;*OPC?\n")
    wavelength, unit, opc = reply.rstrip(b"\n").split(b";")
    assert float(wavelength) == pytest.approx(1.551e-6) and unit == b"1" and opc == b"1"


def test_refusals_queue_the_standard_codes(bench: EmulatedBench) -> None:
    laser = bench.connect("laser")
    ask(laser, ":LABCTL:NOT:A:COMMAND\n")                   # -113 undefined header
    ask(laser, "SOUR0:WAV 0.0015505 km\n")                  # -131 a unit the units table does not list
    ask(laser, "SOUR0:WAV 1700nm\n")                        # -222 beyond the family envelope (parser)
    ask(laser, "SOUR0:WAV 1645nm\n")                        # -222 beyond this laser's MAX (the model)
    ask(laser, "SOUR0:POW 0.5 W\n")                         # -222 beyond the laser's power
    ask(laser, ":SOUR0:WAV:SWE:MODE SIDEWAYS\n")            # -224 not one of the choices
    assert errors(laser) == [-113, -131, -222, -222, -222, -224]
    # a command error discards the rest of its message (488.2 §6.1.6); an execution error does not
    reply = ask(laser, ":BOGUS;:SOUR0:POW:UNIT?\n")
    assert reply == b"" and errors(laser) == [-113]
    reply = ask(laser, ":SOUR0:POW 0.5 W;:SOUR0:POW:UNIT?\n")
    assert reply == b"0\n" and errors(laser) == [-222]


def test_error_queue_overflow_and_status_registers(bench: EmulatedBench) -> None:
    laser = bench.connect("laser")
    model = bench.model("laser")
    assert int(ask(laser, "*ESR?\n")) & 0x80                # power-on bit, cleared by reading
    assert int(ask(laser, "*ESR?\n")) == 0
    for _ in range(model.error_queue_size + 5):
        ask(laser, ":NOPE\n")
    assert int(ask(laser, "*STB?\n")) & 0x04                # error queue not empty
    codes = errors(laser)
    assert len(codes) == model.error_queue_size and codes[-1] == -350 and set(codes[:-1]) == {-113}
    assert int(ask(laser, "*ESR?\n")) == 0x20               # command error
    ask(laser, "*ESE 32;*SRE 32;:NOPE\n")
    assert int(ask(laser, "*STB?\n")) & 0x60 == 0x60        # ESB and MSS
    ask(laser, "*CLS\n")
    assert errors(laser) == [] and int(ask(laser, "*ESR?\n")) == 0
    ask(laser, "*OPC\n")
    assert int(ask(laser, "*ESR?\n")) == 1


def test_unread_reply_is_discarded_with_minus_410_and_an_empty_read_queues_minus_420(bench: EmulatedBench) -> None:
    laser = bench.connect("laser")
    laser.write(b"*IDN?\n")
    assert laser.waiting() > 0
    assert ask(laser, ":SOUR0:POW:UNIT?\n") == b"0\n"       # the *IDN? reply was never read
    assert errors(laser) == [-410]
    laser.read_request()                                    # a GPIB read after a command that asked nothing
    assert errors(laser) == [-420]
    laser.write(b"*IDN?\n")
    laser.take(laser.waiting())
    laser.write(b":SOUR0:POW 0.5 W\n")                     # refused (-222), and asks nothing: no reply to read
    laser.read_request()
    laser.write(b":SOUR0:POW? 17\n")                       # a query refused (-128): its read is no -420 ...
    laser.read_request()
    laser.read_request()                                    # ... but a second read is
    assert errors(laser) == [-222, -420, -128, -420]


def test_binary_block_replies_and_blocks_in_messages(bench: EmulatedBench) -> None:
    meter = bench.connect("meter")
    reply = ask(meter, ":FETC:POW:ALL?\n")
    assert reply[:2] == b"#2" and reply[2:4] == b"32" and reply[-1:] == b"\n"
    values = np.frombuffer(reply[4:36], dtype="<f4")
    assert values.shape == (8,) and np.all(np.isfinite(values))
    csv = ask(meter, ":fetch:power:all:csv?\n")
    assert len(csv.split(b",")) == 8
    # an LF inside a definite-length block does not end the message
    message = b":DATA #13\n\n\n;*IDN?\n"
    assert message_end(message, 0, True) == len(message) - 1 and message_end(message, 0, False) == 9
    assert message_end(b":DATA #13\n\n", 0, True) == -1


def test_ports_answer_per_port_and_a_missing_port_is_minus_114(bench: EmulatedBench) -> None:
    meter = bench.connect("meter")
    ask(meter, ":SENS3:POW:ATIME 2ms;:SENSe3:POWer:UNIT W\n")
    assert float(ask(meter, ":SENS3:POW:ATIM?\n")) == pytest.approx(2e-3)
    assert float(ask(meter, ":SENS1:POW:ATIM?\n")) == pytest.approx(1e-4)
    assert ask(meter, ":SENS3:POW:UNIT?;:SENS1:POW:UNIT?\n") == b"1;0\n"
    assert ask(meter, ":SENS8:POW:ATIM MIN;:SENS8:POW:ATIM?\n") == b"+1.000000E-06\n"
    assert ask(meter, ":SENS9:POW:ATIM?\n") == b""          # the parser knows ports 1..8 of the family
    assert errors(meter) == [-114]


def test_actions_not_emulated_are_remembered_or_refused(bench: EmulatedBench) -> None:
    laser = bench.connect("laser")
    assert ask(laser, "sour0:wav:swe:rep?\n") == b""        # never set: the model cannot answer it
    assert errors(laser) == [-200]
    ask(laser, "sour0:wav:swe:rep TWOW\n")                  # accepted, no effect on the physics
    assert ask(laser, "sour0:wav:swe:rep?\n") == b"TWOW\n"


def test_plain_pyvisa_and_pymeasure_through_the_emulated_resource_manager(bench: EmulatedBench) -> None:
    """The issue's first findings, in-process: pyvisa with every default (CR LF written, END ends the read) and
    PyMeasure's N7776C, whose queries used to time out."""
    import warnings

    from pymeasure.instruments.keysight import KeysightN7776C

    resource = bench.resource_manager.open_resource(bench.address("laser"))
    try:
        assert resource.query("*IDN?") == "Keysight Technologies,N7778C,DE59800324,V2.022\n"
    finally:
        resource.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        laser = KeysightN7776C(bench.address("laser"), visa_library=bench.resource_manager.visalib,
                               read_termination="\n")
    laser.wavelength = 1550.5
    laser.output_power_mW = 1.5
    laser.output_enabled = True
    assert laser.wavelength == pytest.approx(1550.5, abs=1e-9) and laser.output_power_mW == pytest.approx(1.5)
    assert laser.output_enabled is True and laser.check_errors() == []
    assert bench.chip.laser_power_w()[0] == pytest.approx(1.5e-3) and bench.chip.laser_on()[0]


def test_coverage_counts_what_each_model_emulates() -> None:
    from labctl.sim.scpi.coverage import measure

    laser = measure("keysight_n777xc")
    assert 0 < laser.emulated < laser.actions and laser.emulated + len(laser.not_emulated) == laser.actions
    assert "set wavelength_m" not in laser.not_emulated and "do sweep_step_next" in laser.not_emulated
    assert measure("santec_tsl570").actions == 0      # simulated statically only (pyvisa-sim), no physics model


def test_a_remembered_coded_choice_answers_its_number() -> None:
    """Settings the model only remembers still answer as SCPI does: booleans and coded choices by number
    (PyMeasure's Keithley2400.auto_zero_enabled writes 1 and reads 1 back)."""
    from labctl.sim.instruments.keithley_model import Keithley2400Model
    from labctl.sim.profiles import ALL

    profile = {p.device: p for p in ALL}["Keithley 2400"]
    emulated = EmulatedBench(Chip(ChipSpec(), seed=0),
                             [SimulatedInstrument("smu", profile, Keithley2400Model("smu", 0))])
    try:
        smu = emulated.connect("smu")
        assert ask(smu, ":SYSTEM:AZERO:STATE 1;:SYST:AZER?\n") == b"1\n"
        assert ask(smu, ":SYST:AZER OFF;:SYST:AZER:STAT?\n") == b"0\n"
        assert ask(smu, ":DISP:ENAB ON;:DISPLAY:ENABLE?\n") == b"1\n"
        assert errors(smu) == []
    finally:
        emulated.close()
