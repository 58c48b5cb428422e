"""Keysight N7744A (4 ports) / N7745A (8 ports) multiport power meter.

[M] N774xC Series Multiport Power Meter Programming Guide (units table; ``:READ:POW:ALL:CONF?``), N7744A user
guide (logging); instruments.md §2.1. Port n = 1..8 is the SENSe/READ/FETCh/INITiate/TRIGger suffix, with no
CHANnel level [D LabExT PowerMeterN7744A]. Default port when the suffix is omitted: 1, by the 816x rule "the
lowest possible number" [?] (labctl's ``:FETC:POW:ALL?`` carries none and means the whole instrument).
A 4-port unit refusing ports 5-8 is the model's business (the parser takes the family's 1..8).
"""

from __future__ import annotations

from labctl.sim.scpi import common
from labctl.sim.scpi.params import Choice
from labctl.sim.scpi.tree import Cmd, Suffix, Tree
from labctl.sim.scpi.trees.keysight_laser import status_commands
from labctl.sim.scpi.trees.keysight_sensor import sensor_commands

TRIGGER_COMMANDS = (
    Cmd(":TRIGger[n]:INPut", set="trigger_input",
        params=(Choice("response", options=("IGNore", "SMEasure", "CMEasure", "MMEasure", "PREtrigger")),),
        query="trigger_input", confirmed=False,
        source="[D] labctl 'IGN|SME|CME|MME', LabExT; PRE per instruments.md §2.1; long forms [?]"),
    Cmd(":TRIGger[n]:OUTPut", set="trigger_output",
        params=(Choice("event", options=("DISabled", "AVGover", "MEASure")),), query="trigger_output",
        confirmed=False, source="[D] LabExT ':outp dis'; AVG/MEAS per instruments.md §2.1 [?]"),
    Cmd(":TRIGger", do="trigger_node", params=(Choice("node", options=("NODEA", "NODEB")),), confirmed=False,
        source="instruments.md §2.1 ':TRIG NODEA|NODEB' [?]"),
)

TREE = Tree(
    "Keysight N774x",
    (common.IDN, common.RST, common.CLS, common.OPC, common.ESE, common.ESR, common.SRE, common.STB, common.TST,
     common.WAI, common.OPT)
    + sensor_commands("", wavelength_m=(1.25e-6, 1.65e-6), atime_s=(1e-6, 10.0), gain=True, mainframe=False)
    + TRIGGER_COMMANDS + status_commands(),
    suffixes={"n": Suffix(1, 8, 1)},
    source="N774xC Series Multiport Power Meter Programming Guide; instruments.md §2.1",
)
