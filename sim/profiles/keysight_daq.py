"""Keysight DAQ970A data acquisition unit (LAN or GPIB).

Plain set/query commands come from the driver's Setting declarations; the dialogues below answer the connect
sequence and one canonical scan (channels 101..104 at the 10 V range, 1 PLC), so the driver can be exercised on the
YAML alone. On an emulated bench the scan commands are answered by :mod:`labctl.sim.instruments.daq_model`.
"""

from __future__ import annotations

from labctl.drivers import keysight_daq970a as d
from labctl.sim.protocol import SimProfile

CANONICAL = "101:104"

PROFILES = [
    SimProfile(
        device="Keysight DAQ970A",
        driver=d.KeysightDAQ970A,
        resources=("TCPIP0::127.0.0.1::inst0::INSTR", "GPIB0::9::INSTR"),
        identity_query=d.IDN_QUERY,
        identity_reply="Keysight Technologies,DAQ970A,MY58000123,A.03.02-01.00-03.02-00.02-03-02",
        dialogues=(
            ("*CLS", None),
            ("*OPC?", "1"),
            (d.CONFIGURE_VOLTAGE.format(range="10", channels=CANONICAL), None),
            (d.SCAN_LIST_SET.format(channels=CANONICAL), None),
            (d.NPLC_SET.format(nplc="1", channels=CANONICAL), None),
            (d.SCAN_SIZE_QUERY, "+4"),
            (d.READ_QUERY, "+1.00000000E-01,+2.00000000E-01,+3.00000000E-01,+4.00000000E-01"),
        ),
    ),
]
