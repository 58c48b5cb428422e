"""Simulation profiles, one module per instrument model; each module defines ``PROFILES`` (a list)."""

from __future__ import annotations

import importlib
import pkgutil

from labctl.sim.protocol import SimProfile


def _discover() -> list[SimProfile]:
    found: list[SimProfile] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "PROFILES", []))
    return found


ALL: list[SimProfile] = _discover()
