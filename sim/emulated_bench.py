"""One emulated chip behind simulated instruments, reachable through the ordinary transports.

VISA instruments go through a pyvisa-sim library built from the shipped YAML files (the drivers' own command
spellings and static state); every device's matcher is wrapped so that its :class:`DeviceModel` sees each
message first and answers from the chip. Serial instruments reach the same devices through the
``labctlsim://`` pyserial URL handler. Drivers run unchanged: only the resource manager or URL differs.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial
import yaml

from .chip import Chip
from .device_model import DeviceModel
from .protocol import SimProfile, yaml_path
from .urlhandler import protocol_labctlsim

log = logging.getLogger(__name__)

if "labctl.sim.urlhandler" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("labctl.sim.urlhandler")

_IDS = itertools.count(1)


@dataclass
class SimulatedInstrument:
    """An instrument of the emulated bench: its protocol profile, its physics model and its resource name."""

    name: str
    profile: SimProfile
    model: DeviceModel
    #: The resource of the profile's YAML this instrument uses (e.g. ``ASRL1::INSTR``); renamed per bench.
    resource: str | None = None
    serial: bool = False
    #: Channel ids per channel group, overriding the profile's (e.g. 40 outputs for a 5-module Qontrol chain).
    channel_ids: dict[str, list[str]] | None = None


class _SerialEndpoint:
    """Adapter from the URL handler to a pyvisa-sim device."""

    def __init__(self, device: Any, model: DeviceModel) -> None:
        self.device = device
        self.model = model

    @property
    def connected(self) -> bool:
        return self.model.connected

    def write(self, data: bytes) -> None:
        self.device.write(data)

    def waiting(self) -> int:
        return sum(len(b) for b in self.device._output_buffers)

    def take(self, n: int) -> bytes:
        self.model.wait_for_reply()
        out = bytearray()
        buffers = self.device._output_buffers
        while buffers and len(out) < n:
            head = buffers[0]
            chunk = head[: n - len(out)]
            out.extend(chunk)
            del head[: len(chunk)]
            if not head:
                buffers.popleft()
        return bytes(out)


class EmulatedBench:
    """The chip plus its simulated instruments; gives drivers a resource manager and serial URLs."""

    def __init__(self, chip: Chip, instruments: list[SimulatedInstrument]) -> None:
        self.chip = chip
        self.id = f"bench{next(_IDS)}"
        self.instruments = {inst.name: inst for inst in instruments}
        if len(self.instruments) != len(instruments):
            raise ValueError("simulated instrument names must be unique")
        self._dir = Path(tempfile.mkdtemp(prefix=f"labctl-{self.id}-"))
        self.addresses: dict[str, str] = {}
        resources: dict[str, Any] = {}
        gpib = itertools.count(1)
        asrl = itertools.count(1)
        for inst in instruments:
            source = yaml_path(inst.profile)
            local = self._dir / source.name
            if not local.exists():
                shutil.copy(source, local)
            kind = "ASRL" if inst.serial or (inst.resource or inst.profile.resources[0]).startswith("ASRL") \
                else "GPIB"
            address = f"ASRL{next(asrl)}::INSTR" if kind == "ASRL" else f"GPIB0::{next(gpib)}::INSTR"
            resources[address] = {"device": inst.profile.device, "filename": str(local)}
            if inst.channel_ids:
                resources[address]["channel_ids"] = {k: [str(i) for i in v] for k, v in inst.channel_ids.items()}
            self.addresses[inst.name] = address
        combined = self._dir / "bench.yaml"
        combined.write_text(yaml.safe_dump({"spec": "1.1", "resources": resources}, sort_keys=False))

        import pyvisa

        self.resource_manager = pyvisa.ResourceManager(f"{combined}@sim")
        devices = self.resource_manager.visalib.devices
        for inst in instruments:
            address = self.addresses[inst.name]
            device = devices[address]
            inst.model.attach(device, self)
            device._match = self._wrap(device._match, inst.model)
            device.read = self._wrap_read(device.read, inst.model)
            if inst.serial:
                self.addresses[inst.name] = protocol_labctlsim.register(self.id, inst.name,
                                                                        _SerialEndpoint(device, inst.model))
        log.info("emulated bench %s with %d instruments", self.id, len(instruments))

    def _wrap(self, original: Callable[[bytes], Any], model: DeviceModel) -> Callable[[bytes], Any]:
        from pyvisa_sim.component import NoResponse

        clock = self.chip.clock

        def matched(query: bytes) -> Any:
            if not model.connected:
                return NoResponse
            line = query.decode("ascii", "replace")
            clock.advance(model.latency_s(line), model.category)
            reply = model.handle(line)
            if reply is None:
                reply = original(query)
                model.after(line)
                return reply
            return reply.encode("latin-1") if isinstance(reply, str) else reply

        return matched

    @staticmethod
    def _wrap_read(original: Callable[[], Any], model: DeviceModel) -> Callable[[], Any]:
        """Reading a reply waits (virtual time) until the instrument has it ready (``DeviceModel.reply_ready_s``)."""

        def read() -> Any:
            model.wait_for_reply()
            return original()

        return read

    def address(self, name: str) -> str:
        """The VISA resource name or serial URL of a simulated instrument."""
        return self.addresses[name]

    def model(self, name: str) -> DeviceModel:
        return self.instruments[name].model

    def disconnect(self, name: str) -> None:
        """Simulate a lost instrument: it stops answering (serial ports report the device gone)."""
        self.instruments[name].model.connected = False

    def close(self) -> None:
        protocol_labctlsim.unregister(self.id)
        try:
            self.resource_manager.close()
        finally:
            import pyvisa.highlevel

            pyvisa.highlevel.VisaLibraryBase._registry.pop(
                (type(self.resource_manager.visalib), self.resource_manager.visalib.library_path), None)
            shutil.rmtree(self._dir, ignore_errors=True)
