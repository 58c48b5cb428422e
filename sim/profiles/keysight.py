"""Simulation profiles of the Keysight optical instruments: 8164B (laser in slot 0, 81634B in slots 1 and 2),
N7778C, N7744A and N7745A.

Plain set/query commands come from the drivers' Setting declarations. The static dialogues below answer the
fixed queries of the connect sequence and of one canonical sweep (1520-1580 nm, 10 pm steps: 6001 points). Binary
replies are included where every byte can be written in pyvisa-sim 0.7 YAML (all bytes < 0x80, no terminator
byte): the 8164B port order (uint16 pairs) and the bulk power reads (float32 values chosen so that their bytes
stay below 0x80). The lambda log (float64 near 1.55e-6 m always contains a byte >= 0x80) and the logging results
are covered by the byte-exact tests instead.
"""

from __future__ import annotations

import numpy as np
from labctl.drivers.keysight_8164b import (
    Keysight8164B,
    Keysight8164BLaser,
    Keysight81634BSensor,
)
from labctl.drivers.keysight_n774xa import (
    FETCH_ALL_CSV_QUERY,
    FETCH_ALL_QUERY,
    KeysightN774xA,
    KeysightN774xPort,
)
from labctl.drivers.keysight_n777xc import KeysightN777xC
from labctl.sim.protocol import SimProfile


def static_block(values: np.ndarray) -> str:
    """An IEEE definite-length block as YAML-safe text (refuses bytes pyvisa-sim 0.7 cannot carry)."""
    payload = np.ascontiguousarray(values).tobytes()
    if any(b >= 0x80 for b in payload) or b"\n" in payload or b"\r" in payload:
        raise ValueError(f"{values!r} cannot be written as a pyvisa-sim 0.7 reply")
    length = str(len(payload))
    return f"#{len(length)}{length}" + payload.decode("ascii")


#: float32 powers whose little-endian bytes are all < 0x80 (about 9.95e-6, 2.86e-6, 3.81e-5, 4.77e-7 W).
SIM_POWERS_W = np.array([0x37270000, 0x36400000, 0x38200000, 0x35000000], dtype="<u4").view("<f4")

#: Canonical sweep answered by the static dialogues: 1520-1580 nm in 10 pm steps.
SIM_SWEEP = {"start_m": 1.52e-6, "stop_m": 1.58e-6, "step_m": 1e-11, "speed_m_per_s": 4e-8, "points": 6001}

LASER_DIALOGUES: tuple[tuple[str, str | None], ...] = (
    ("*CLS", None),
    ("*OPC?", "1"),
    (":LOCK?", "0"),
    (":LOCK 0,1234", None),
    (":SOUR0:WAV? MIN", "+1.49000000E-006"),
    (":SOUR0:WAV? MAX", "+1.64000000E-006"),
    (":SOUR0:WAV:SWE:CHEC?", "0,OK"),
    (":SOUR0:WAV:SWE:PMAX? 1520.0000NM,1580.0000NM", "+1.00000000E-002"),
    (":SOUR0:WAV:SWE:EXP?", "+6001"),
    (":SOUR0:WAV:SWE:FLAG?", "+1"),
    (":SOUR0:WAV:SWE:SOFT", None),
)

KEYSIGHT_8164B = SimProfile(
    device="Keysight 8164B",
    driver=Keysight8164B,
    resources=("GPIB0::20::INSTR",),
    identity_reply="Keysight Technologies,8164B,MY48100123,V5.25(72637)",
    dialogues=LASER_DIALOGUES + (
        (":SLOT0:EMPT?", "0"),
        (":SLOT0:IDN?", "Keysight Technologies,81600B,DE41400321,V4.3(70310)"),
        (":SLOT1:EMPT?", "0"),
        (":SLOT1:IDN?", "Keysight Technologies,81634B,DE41201001,V5.25(72637)"),
        (":SLOT2:EMPT?", "0"),
        (":SLOT2:IDN?", "Keysight Technologies,81634B,DE41201002,V5.25(72637)"),
        (":SLOT3:EMPT?", "1"),
        (":SLOT4:EMPT?", "1"),
        (":READ1:POW:ALL:CONF?", static_block(np.array([1, 1, 2, 1], dtype="<u2"))),
        (":READ1:POW:ALL?", static_block(SIM_POWERS_W[:2])),
    ),
    # the laser group comes first so that ':TRIG0:INP …' is never taken for a sensor channel '0'
    channels={
        "laser": (Keysight8164BLaser, ("0",)),
        "sensor": (Keysight81634BSensor, ("1:CHAN1", "2:CHAN1")),
    },
)

KEYSIGHT_N7778C = SimProfile(
    device="Keysight N7778C",
    driver=KeysightN777xC,
    resources=("TCPIP0::127.0.0.1::inst0::INSTR", "GPIB0::21::INSTR"),
    identity_reply="Keysight Technologies,N7778C,DE59800324,V2.022",
    dialogues=LASER_DIALOGUES,
)


def _n774x(model: str, n_ports: int, host: str, serial: str) -> SimProfile:
    return SimProfile(
        device=f"Keysight {model}",
        driver=KeysightN774xA,
        resources=(f"TCPIP0::{host}::inst0::INSTR", f"USB0::0x0957::0x3718::{serial}::INSTR"),
        identity_reply=f"Keysight Technologies,{model},{serial},V1.250",
        dialogues=(
            ("*CLS", None),
            ("*OPC?", "1"),
            (FETCH_ALL_QUERY, static_block(np.resize(SIM_POWERS_W, n_ports))),
            (FETCH_ALL_CSV_QUERY, ",".join(f"{v:+.8E}" for v in np.resize(SIM_POWERS_W, n_ports).tolist())),
        ),
        channels={"port": (KeysightN774xPort, tuple(str(n) for n in range(1, n_ports + 1)))},
    )


KEYSIGHT_N7744A = _n774x("N7744A", 4, "127.0.0.2", "MY55100044")
KEYSIGHT_N7745A = _n774x("N7745A", 8, "127.0.0.3", "MY55100045")

PROFILES = [KEYSIGHT_8164B, KEYSIGHT_N7778C, KEYSIGHT_N7744A, KEYSIGHT_N7745A]
