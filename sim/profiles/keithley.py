"""Keithley 2400 SourceMeter on GPIB (factory address 24)."""

from __future__ import annotations

from labctl.drivers import keithley_2400 as k
from labctl.sim.protocol import SimProfile

#: The 2400 answers an empty queue with ``0,"No error"`` (instruments.md §0).
KEITHLEY_ERROR_QUEUE = (k.Keithley2400.error_query, '0,"No error"', '-113,"Undefined header"')

PROFILES = [
    SimProfile(
        device="Keithley 2400",
        driver=k.Keithley2400,
        resources=("GPIB0::24::INSTR",),
        identity_query=k.IDN_QUERY,
        identity_reply="KEITHLEY INSTRUMENTS INC.,MODEL 2400,1234567,C30   Mar 17 2006 09:29:29/A02  /K/J",
        dialogues=(
            ("*OPC?", "1"),
            ("*CLS", None),
            (k.SOURCE_FIXED_MODE, None),
            (k.SOURCE_VOLTAGE_AUTORANGE, None),
            (k.SENSE_CURRENT, None),
            (k.SENSE_CURRENT_AUTORANGE, None),
            (k.FORMAT_READINGS, None),
            # One reading with :FORM:ELEM CURR,STAT: the current and the status word (V-source, I-measure, not in
            # compliance). A static value; list sweeps need the bench emulator, their protocol is checked byte for
            # byte in tests/drivers/test_keithley_2400.py.
            (k.READ_QUERY, "+1.234560E-06,+2.048000E+04"),
        ),
        error_queue=KEITHLEY_ERROR_QUEUE,
        defaults={"source_function": "current"},
    ),
]
