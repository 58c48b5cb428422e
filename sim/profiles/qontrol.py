"""Protocol simulation of a two-module Qontrol Q8iv chain (16 channels) on a serial port (instruments.md §3.1).

Per-channel ``V``/``I``/``VMAX``/``IMAX`` come from the driver's channel Settings. The multi-line replies are static
dialogues (pyvisa-sim cannot compute), so ``VALL?`` and friends show the power-on state: 0 V, 0 mA and the full
scale as limits; a driver configured with lower limits is therefore (correctly) refused by its read-back check.
Unknown commands answer ``E10:00`` (unrecognised command), as the modules do.
"""

from __future__ import annotations

from labctl.drivers.qontrol import (
    CHAIN_QUERY,
    CHAIN_QUERY_OLD,
    FIRMWARE_QUERY,
    IALL_QUERY,
    ID_QUERY,
    IFULL_QUERY,
    IMAXALL_QUERY,
    NCHAN_QUERY,
    NUP_RESET,
    VALL_QUERY,
    VALUE_FORMAT,
    VFULL_QUERY,
    VIPALL_QUERY,
    VMAXALL_QUERY,
    VVEC_SET,
    Qontrol,
    QontrolChannel,
)
from labctl.sim.protocol import SimProfile

MODULES = 2
PER_MODULE = 8
CHANNELS = MODULES * PER_MODULE
CHAIN = "\n".join(f"Q8iv-000{m + 1}: {m}" for m in range(MODULES))


def _lines(text: str) -> str:
    return "\n".join([text] * CHANNELS)


_ZEROS = ",".join([VALUE_FORMAT.format(0.0)] * PER_MODULE)

PROFILES = [
    SimProfile(
        device="Qontrol Q8iv",
        driver=Qontrol,
        resources=("ASRL1::INSTR",),
        identity_query=ID_QUERY,
        identity_reply="Q8iv-0001",
        dialogues=(
            (NUP_RESET, "\x06OK"),  # the recorded ACK byte in front of OK
            (CHAIN_QUERY, CHAIN),
            (CHAIN_QUERY_OLD, CHAIN),
            (FIRMWARE_QUERY, "v2.4.1"),
            (NCHAN_QUERY, str(PER_MODULE)),
            (VFULL_QUERY, "+12.0000 V"),
            (IFULL_QUERY, "+24.0000 mA"),
            (VALL_QUERY, _lines("+0.0000 V")),
            (IALL_QUERY, _lines("+0.0000 mA")),
            (VMAXALL_QUERY, _lines("+12.0000 V")),
            (IMAXALL_QUERY, _lines("+24.0000 mA")),
            (VIPALL_QUERY, "\n".join(f"{ch // PER_MODULE},{ch % PER_MODULE}: +0.0000 V, +0.0000 mA"
                                     for ch in range(CHANNELS))),
            # safe_state zeroes each module with one vector line
            *((VVEC_SET.format(start=m * PER_MODULE, values=_ZEROS), "OK") for m in range(MODULES)),
        ),
        channels={"outputs": (QontrolChannel, tuple(str(ch) for ch in range(CHANNELS)))},
        error_queue=None,
        error_reply="E10:00",
        eom={"ASRL INSTR": ("\n", "\n")},
    ),
]
