"""Protocol simulation of a greymatter DAC controller with all 8 boards on a serial port (instruments.md appendix).

Per-output ``CURR``/``VOLT``/``CODE``/``SPAN`` and per-DAC ``RES``/``SPAN:ALL`` come from the driver's Settings; the
system commands are static dialogues. The firmware has no output read-back, so neither has the simulation. Unknown
commands answer the firmware's in-line ``ERROR:Unknown command``; there is no error queue to fill (``SYST:ERR?``
always answers ``0,No error``, as documented). Bare reply lines, as the reference documents them (no console echo).
"""

from __future__ import annotations

from labctl.drivers.greymatter import (
    BOARDS,
    CURRENT_CHANNELS,
    CURRENT_DACS,
    DAC_ID,
    ERROR_QUERY,
    FAULT_QUERY,
    LOAD_ALL,
    OK,
    OUTPUT_ID,
    RESET,
    UPDATE_ALL,
    VOLTAGE_CHANNELS,
    VOLTAGE_DAC,
    CurrentDac,
    CurrentOutput,
    Greymatter,
    VoltageDac,
    VoltageOutput,
)
from labctl.sim.protocol import SimProfile

CURRENT_OUTPUTS = tuple(OUTPUT_ID.format(board=b, dac=d, ch=c)
                        for b in range(BOARDS) for d in CURRENT_DACS for c in range(CURRENT_CHANNELS))
VOLTAGE_OUTPUTS = tuple(OUTPUT_ID.format(board=b, dac=VOLTAGE_DAC, ch=c)
                        for b in range(BOARDS) for c in range(VOLTAGE_CHANNELS))

PROFILES = [
    SimProfile(
        device="greymatter",
        driver=Greymatter,
        resources=("ASRL2::INSTR",),
        identity_reply="greymatter,DAC Controller,001,0.1",
        dialogues=(
            (ERROR_QUERY, "0,No error"),
            (FAULT_QUERY, OK),
            (LOAD_ALL, OK),
            (UPDATE_ALL, OK),
            (RESET, OK),
        ),
        channels={
            "current_outputs": (CurrentOutput, CURRENT_OUTPUTS),
            "voltage_outputs": (VoltageOutput, VOLTAGE_OUTPUTS),
            "current_dacs": (CurrentDac, tuple(DAC_ID.format(board=b, dac=d)
                                               for b in range(BOARDS) for d in CURRENT_DACS)),
            "voltage_dacs": (VoltageDac, tuple(DAC_ID.format(board=b, dac=VOLTAGE_DAC) for b in range(BOARDS))),
        },
        error_queue=None,
        error_reply="ERROR:Unknown command",
        eom={"ASRL INSTR": ("\n", "\n")},
        # heater limits the bench would pass: 20 mA per channel (span 4, 25 mA), as for the reference chip
        open_kwargs={"max_current_a": 0.02},
    ),
]
