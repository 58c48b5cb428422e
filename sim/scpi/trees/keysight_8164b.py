"""Keysight 8164B mainframe: slot-0 tunable laser (81600B/81960A ...) and 81634B power sensors in slots 1-4.

[M] 8163A/B, 8164A/B & 8166A/B Mainframes Programming Guide: slots 0..4 on the 8164B, channel 1..2; an omitted
slot or channel number means the lowest possible one (slot 0, channel 1). Nodes are shared by all modules (the
parser accepts ``:SENS0:...`` as the real mainframe's parser does; that slot 0 holds no sensor is the model's
error, not a syntax one). See :mod:`.keysight_laser` and :mod:`.keysight_sensor` for per-command sources.
"""

from __future__ import annotations

from labctl.sim.scpi import common
from labctl.sim.scpi.tree import Cmd, Suffix, Tree
from labctl.sim.scpi.trees.keysight_laser import laser_commands, status_commands
from labctl.sim.scpi.trees.keysight_sensor import sensor_commands

_CHAN = "[:CHANnel[m]]"

SLOT_COMMANDS = (
    Cmd(":SLOT[n]:IDN", query="slot_identity", source="[M] 816x PG ':SLOTn:IDN?'; [D] labctl, LabExT"),
    Cmd(":SLOT[n]:EMPTy", query="slot_empty", source="[M] instruments.md §1.1 ':SLOT<n>:EMPT?'; [D] labctl"),
    Cmd(":SLOT[n]:OPTions", query="slot_options", source="816x PG [?]", confirmed=False),
)

TREE = Tree(
    "Keysight 8164B",
    (common.IDN, common.RST, common.CLS, common.OPC, common.ESE, common.ESR, common.SRE, common.STB, common.TST,
     common.WAI, common.OPT)
    + laser_commands("[:SOURce[n]]" + _CHAN, ":TRIGger[n]" + _CHAN, ":OUTPut[n]" + _CHAN,
                     wavelength_m=(1.2e-6, 1.7e-6), mainframe=True)
    + sensor_commands(_CHAN, wavelength_m=(0.8e-6, 1.7e-6), atime_s=(100e-6, 10.0), gain=False, mainframe=True)
    + SLOT_COMMANDS + status_commands(),
    suffixes={"n": Suffix(0, 4, 0), "m": Suffix(1, 2, 1)},
    source="8163A/B-8164A/B-8166A/B Mainframes Programming Guide; instruments.md §1.1-1.3, §2.2",
)
