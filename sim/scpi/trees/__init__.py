"""One command tree per VISA instrument family labctl drives, keyed by the bench-file driver name."""

from __future__ import annotations

from labctl.sim.scpi.tree import Tree
from labctl.sim.scpi.trees import (
    keithley_2400,
    keysight_8164b,
    keysight_daq970a,
    keysight_n774x,
    keysight_n777xc,
    santec_tsl570,
    thorlabs_pm100,
)

TREES: dict[str, Tree] = {
    "keysight_8164b": keysight_8164b.TREE,
    "keysight_n777xc": keysight_n777xc.TREE,
    "keysight_n774xa": keysight_n774x.TREE,
    "santec_tsl570": santec_tsl570.TREE,
    "thorlabs_pm100": thorlabs_pm100.TREE,
    "keithley_2400": keithley_2400.TREE,
    "keysight_daq970a": keysight_daq970a.TREE,
}
