"""Units and "allowed mnemonics" of the Keysight photonic instruments.

[M] N777xC Tunable Laser Family Programming Guide and N774xC Multiport Power Meter Programming Guide, ch. 1
"Units" (Table 2, identical in both): metres M (PM, NM, UM, MM, M); decibel DB (MDB, DB); second S (NS, US, MS,
S); dBm DBM (MDBM, DBM); hertz HZ (HZ, KHZ, MHZ, GHZ, THZ); watt "Watt" (PW, NW, UW, MW, Watt); metres per
second M/S (NM/S, UM/S, MM/S, M/S). The 8163/8164 programming guide uses the same unit conventions.
Plain ``W`` is not in that table; it is accepted here because instruments.md §0 lists it among the Keysight
suffixes [?].
"""

from __future__ import annotations

from labctl.sim.scpi.units import Unit

METRE = Unit("M", ("PM", "NM", "UM", "MM", "M"))
DECIBEL = Unit("DB", ("MDB", "DB"))
SECOND = Unit("S", ("NS", "US", "MS", "S"))
DBM = Unit("DBM", ("MDBM", "DBM"))
HERTZ = Unit("HZ", ("HZ", "KHZ", "MHZ", "GHZ", "THZ"))
WATT = Unit("W", ("PW", "NW", "UW", "MW", "WATT", "W"))
METRE_PER_SECOND = Unit("M/S", ("NM/S", "UM/S", "MM/S", "M/S"))
