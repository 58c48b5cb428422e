"""One emulated chip behind simulated instruments, reachable through the ordinary transports.

VISA instruments are resources of an in-process pyvisa backend (:mod:`labctl.sim.visa_library`): every open
resource is a connection that frames the bytes into program messages and hands them to the instrument's model (a
SCPI model parses them with the command tree written from the manual). Serial instruments are reached through the
``labctlsim://`` pyserial URL handler, with the same kind of connection in front of their line-protocol models.
Drivers run unchanged: only the resource manager or URL differs. All instruments share the chip, its virtual
clock and one lock (so that connections served from several threads take turns on the chip).
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

import serial
from labctl.sim import visa_library
from labctl.sim.chip import Chip
from labctl.sim.connection import Connection, ExchangeLog
from labctl.sim.device_model import DeviceModel
from labctl.sim.faults import FaultPlan
from labctl.sim.protocol import SimProfile
from labctl.sim.urlhandler import protocol_labctlsim

log = logging.getLogger(__name__)

if "labctl.sim.urlhandler" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("labctl.sim.urlhandler")

_IDS = itertools.count(1)


@dataclass
class SimulatedInstrument:
    """An instrument of the emulated bench: its protocol profile (identity, static facts), its model, and whether
    it is reached over a serial line."""

    name: str
    profile: SimProfile
    model: DeviceModel
    serial: bool = False


class EmulatedBench:
    """The chip plus its simulated instruments; gives drivers a resource manager and serial URLs."""

    def __init__(self, chip: Chip, instruments: list[SimulatedInstrument], *,
                 exchange_log: ExchangeLog | None = None, faults: FaultPlan | None = None) -> None:
        self.chip = chip
        #: Injected faults (:mod:`labctl.sim.faults`): every connection asks this plan about every message.
        self.faults = faults if faults is not None else FaultPlan()
        self.id = f"bench{next(_IDS)}"
        self.instruments = {inst.name: inst for inst in instruments}
        if len(self.instruments) != len(instruments):
            raise ValueError("simulated instrument names must be unique")
        #: One chip: every connection runs its messages under this lock.
        self.lock = threading.RLock()
        self.exchange_log = exchange_log
        self.addresses: dict[str, str] = {}
        resources: dict[str, Any] = {}
        gpib = itertools.count(1)
        for inst in instruments:
            inst.model.attach(self, inst.profile)
            if inst.serial:
                self.addresses[inst.name] = protocol_labctlsim.register(self.id, inst.name,
                                                                        self._factory(inst.model, end_signal=False))
            else:
                address = f"GPIB0::{next(gpib)}::INSTR"
                resources[address] = self._factory(inst.model, end_signal=True)
                self.addresses[inst.name] = address
        visa_library.register(self.id, resources)

        import pyvisa

        self._visa = visa_library.EmulatedVisaLibrary(self.id)
        self.resource_manager = pyvisa.ResourceManager(self._visa)
        log.info("emulated bench %s with %d instruments", self.id, len(instruments))

    def connect(self, name: str, *, end_signal: bool = False) -> Connection:
        """A new connection to instrument ``name`` (what a socket or pseudo-terminal server hands its client)."""
        return self._factory(self.instruments[name].model, end_signal=end_signal)()

    def _factory(self, model: DeviceModel, *, end_signal: bool) -> Any:
        def connect() -> Connection:
            # the bench's exchange_log is looked up at every exchange (settable at any time), without a call of
            # its own when it is None
            return Connection(model, end_signal=end_signal, log_source=self, lock=self.lock, faults=self.faults)

        return connect

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
        visa_library.unregister(self.id)
        try:
            self.resource_manager.close()
        finally:
            import pyvisa.highlevel

            pyvisa.highlevel.VisaLibraryBase._registry.pop((type(self._visa), self._visa.library_path), None)
