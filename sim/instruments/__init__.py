"""Physics models of the simulated instruments, one module per instrument family.

Each module defines ``REGISTRY``: bench-file driver name -> :class:`ModelEntry` (the protocol profile's device
name, the model class, whether the instrument is reached over a serial URL). They are collected in
:data:`MODELS`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from labctl.sim.device_model import DeviceModel


@dataclass(frozen=True)
class ModelEntry:
    device: str
    model: type[DeviceModel]
    serial: bool = False


def _discover() -> dict[str, ModelEntry]:
    found: dict[str, ModelEntry] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.update(getattr(module, "REGISTRY", {}))
    return found


MODELS: dict[str, ModelEntry] = _discover()
