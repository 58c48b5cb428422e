"""Python behaviour of one simulated instrument in front of the shared emulated chip.

The pyvisa-sim definition (generated from the driver) keeps the static state and the plain set/query commands;
a :class:`DeviceModel` sees every message first and answers what needs physics (readings, bulk and binary
replies, sweeps), and after the YAML has handled a setter it pushes the new state into the chip. Every message
advances the chip's virtual clock by the instrument's latency, so a dry run knows its projected bench time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulated_bench import EmulatedBench

log = logging.getLogger(__name__)

Reply = str | bytes | None


class DeviceModel:
    """Base class; subclasses implement :meth:`handle` and :meth:`after` for their instrument."""

    #: Clock category for this instrument's messages.
    category = "scpi"

    def __init__(self, name: str) -> None:
        self.name = name
        self.device: Any = None
        self.bench: EmulatedBench | None = None
        self.connected = True
        #: Virtual time at which the reply to the last message is ready, when the instrument goes on working after
        #: the message arrived (a measurement, then the reply's transfer) while the host may talk to other
        #: instruments; None: ready at once. Reading the reply waits until then (``EmulatedBench``).
        self.reply_ready_s: float | None = None

    # -- wiring ----------------------------------------------------------------------------------------------
    def attach(self, device: Any, bench: EmulatedBench) -> None:
        self.device = device
        self.bench = bench

    @property
    def chip(self) -> Any:
        assert self.bench is not None, f"{self.name} is not attached to a bench"
        return self.bench.chip

    # -- behaviour ---------------------------------------------------------------------------------------------
    def handle(self, line: str) -> Reply:
        """Answer ``line`` from the physics, or return None to let the YAML answer it."""
        return None

    def after(self, line: str) -> None:
        """Called after the YAML handled ``line`` (typically a setter): push state into the chip."""

    def wait_for_reply(self) -> None:
        """The host reads the reply: let virtual time reach :attr:`reply_ready_s` (then ready at once)."""
        ready = self.reply_ready_s
        if ready is not None:
            self.reply_ready_s = None
            wait = ready - self.chip.clock.now_s
            if wait > 0:
                self.chip.clock.advance(wait, self.category)

    def latency_s(self, line: str) -> float:
        """Virtual time the host waits for one message before it can go on (instrument timing table of the
        reference chip); a reply that comes later still is announced in :attr:`reply_ready_s`."""
        timing = self.chip.spec.timing
        return timing.scpi_query_s

    # -- pyvisa-sim state helpers ------------------------------------------------------------------------------
    def prop(self, name: str) -> Any:
        return self.device._properties[name].get_value()

    def set_prop(self, name: str, value: Any) -> None:
        self.device._properties[name]._value = value

    def channel_prop(self, group: str, channel: str, name: str) -> Any:
        return self.device._channels[group]._properties[name]._value[str(channel)]

    def set_channel_prop(self, group: str, channel: str, name: str, value: Any) -> None:
        self.device._channels[group]._properties[name]._value[str(channel)] = value
