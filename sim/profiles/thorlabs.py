"""Thorlabs PM100D console over USB-TMC with an S122C germanium photodiode head (700-1800 nm)."""

from __future__ import annotations

from labctl.drivers import thorlabs_pm100 as pm
from labctl.sim.protocol import SimProfile

#: Thorlabs answers an empty queue with ``0,"No error"`` (instruments.md §0).
THORLABS_ERROR_QUEUE = (pm.ThorlabsPM100.error_query, '0,"No error"', '-113,"Undefined header"')

PROFILES = [
    SimProfile(
        device="Thorlabs PM100D",
        driver=pm.ThorlabsPM100,
        resources=("USB0::0x1313::0x8078::P0000001::INSTR",),
        identity_query=pm.IDN_QUERY,
        identity_reply="Thorlabs,PM100D,P0000001,2.4.0",
        dialogues=(
            ("*OPC?", "1"),
            ("*CLS", None),
            # S122C: photodiode (type 1, subtype 2), flags 33 = power sensor + wavelength settable.
            (pm.SENSOR_IDN_QUERY, "S122C,19012345,12-MAR-2019,1,2,33"),
            (pm.WAVELENGTH_MIN_QUERY, "7.000000E+02"),
            (pm.WAVELENGTH_MAX_QUERY, "1.800000E+03"),
            (pm.MEASURE_POWER_QUERY, "1.234567E-04"),
        ),
        error_queue=THORLABS_ERROR_QUEUE,
    ),
]
