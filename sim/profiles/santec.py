"""Santec TSL-570 (SCPI command set) on its LAN raw socket (CR terminators) and on GPIB."""

from __future__ import annotations

from labctl.drivers import santec_tsl570 as tsl
from labctl.sim.protocol import LF_EOM, SimProfile

#: Santec answers an empty error queue with ``0,"No error"`` (QMI santec driver, instruments.md §1.5).
SANTEC_ERROR_QUEUE = (tsl.SantecTSL570.error_query, '0,"No error"', '-113,"Undefined header"')

PROFILES = [
    SimProfile(
        device="Santec TSL-570",
        driver=tsl.SantecTSL570,
        resources=("TCPIP0::127.0.0.1::5000::SOCKET", "GPIB0::1::INSTR"),
        identity_query=tsl.IDN_QUERY,
        identity_reply="SANTEC,TSL-570,21020001,0001.0000.0001",
        dialogues=(
            (tsl.OPC_QUERY, "1"),
            ("*CLS", None),
            (tsl.WAVELENGTH_MIN_QUERY, "1.4800000E-06"),
            (tsl.WAVELENGTH_MAX_QUERY, "1.6400000E-06"),
            (tsl.SWEEP_RANGE_MIN_QUERY, "1.4800000E-06"),
            (tsl.SWEEP_RANGE_MAX_QUERY, "1.6400000E-06"),
            (tsl.POWER_MONITOR_QUERY, "-0.02"),
            (tsl.SWEEP_START, None),
            (tsl.SWEEP_STOP, None),
            (tsl.SWEEP_STATUS_QUERY, "0"),
            (tsl.LOG_POINTS_QUERY, "0"),
            (tsl.ALERT_QUERY, "No alerts."),
        ),
        error_queue=SANTEC_ERROR_QUEUE,
        # LAN raw socket: CR both ways. GPIB: the driver writes CR+LF and reads to EOI; the unit answers CR+LF.
        eom={"TCPIP SOCKET": ("\r", "\r"), "GPIB INSTR": ("\r\n", "\r\n"), "ASRL INSTR": ("\r", "\r"),
             "USB INSTR": LF_EOM["USB INSTR"]},
    ),
]
