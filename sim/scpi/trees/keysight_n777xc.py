"""Keysight N7776C / N7778C stand-alone tunable laser.

[M] N777xC Series Tunable Laser Family Programming Guide (N7770-90C02, ed. 2.1): commands are printed as
``:SOURce0:...`` (laser slot 0). Whether ``SOURce``/its suffix may be left out as on the 8164B is not confirmed:
the tree accepts ``[:SOURce[n]]`` with n = 0 only and 0 as default (as the 816x rule "lowest number" gives) [?].
There is no CHANnel level in the excerpts read. Option ranges 1240-1650 nm (autosweep comment, Keysight data
sheet) bound the wavelength at parse level; the unit's ``MIN``/``MAX`` is the model's.
"""

from __future__ import annotations

from labctl.sim.scpi import common
from labctl.sim.scpi.tree import Suffix, Tree
from labctl.sim.scpi.trees.keysight_laser import laser_commands, status_commands

TREE = Tree(
    "Keysight N777xC",
    (common.IDN, common.RST, common.CLS, common.OPC, common.ESE, common.ESR, common.SRE, common.STB, common.TST,
     common.WAI, common.OPT)
    + laser_commands("[:SOURce[n]]", ":TRIGger[n]", ":OUTPut[n]", wavelength_m=(1.24e-6, 1.65e-6), mainframe=False)
    + status_commands(),
    suffixes={"n": Suffix(0, 0, 0)},
    source="N777xC Series Tunable Laser Family Programming Guide; instruments.md §1.2",
)
