"""Instrument snapshots for run records: what every instrument was set to, read back at the start and the end of a
run (as QCoDeS stores ``station.snapshot()`` with every dataset), so a record can answer "what range was the meter
on?". Drivers that offer ``snapshot()`` (a dict of their settings) are asked; for the others the record holds the
identity and says that no settings could be read.
"""

from __future__ import annotations

import logging
from typing import Any

from labctl.drivers.errors import InstrumentError

log = logging.getLogger(__name__)


def instrument_snapshot(bench: Any) -> dict[str, Any]:
    """Identity, driver, address and settings of every instrument of an open bench, and the safety layer's state."""
    out: dict[str, Any] = {}
    for name, driver in bench.instruments.items():
        entry: dict[str, Any] = {"driver": bench.config.instruments[name].driver,
                                 "address": getattr(driver, "address", None),
                                 "identity": bench.identities.get(name)}
        read = getattr(driver, "snapshot", None)
        if callable(read):
            try:
                entry["settings"] = read()
            except (InstrumentError, OSError, ValueError, RuntimeError) as exc:
                entry["settings"] = None
                entry["settings_error"] = str(exc)
                log.warning("snapshot of %s failed: %s", name, exc)
        else:
            entry["settings"] = None
            entry["settings_error"] = "driver has no snapshot()"
        out[name] = entry
    out["_safety"] = {"heater_drive_applied": bench.heaters.applied.tolist(),
                      "heater_unit": "V" if bench.heaters.mode == "voltage" else "A",
                      "bench_clock_s": float(bench.clock.now_s), "virtual_clock": bool(bench.clock.virtual)}
    return out
