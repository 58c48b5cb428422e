"""Behaviour of one simulated instrument in front of the shared emulated chip.

A model receives whole program messages (the connection in front of it has framed the bytes: one line of a serial
protocol, one SCPI program message) and returns the reply, or None when the message asks for nothing. It owns the
instrument's state and charges the chip's virtual clock with what each message costs on the real instrument
(the reference timing table), so that a dry run knows its projected bench time.

Line-protocol instruments (Qontrol, greymatter) subclass :class:`DeviceModel` and implement :meth:`handle`; SCPI
instruments subclass :class:`labctl.sim.scpi.model.ScpiModel`, which parses with the instrument's command tree.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labctl.sim.emulated_bench import EmulatedBench
    from labctl.sim.protocol import SimProfile

log = logging.getLogger(__name__)

Reply = str | bytes | None


class DeviceModel:
    """Base class; line-protocol subclasses implement :meth:`handle` (and :meth:`latency_s`)."""

    #: Clock category for this instrument's messages.
    category = "scpi"
    #: What ends a reply on the wire.
    reply_termination = "\n"
    #: Whether messages may carry IEEE 488.2 definite-length blocks (SCPI), whose bytes the framer steps over.
    blocks_in_messages = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.bench: EmulatedBench | None = None
        self.profile: SimProfile | None = None
        self.connected = True
        #: Virtual time at which the reply to the last message is ready, when the instrument goes on working after
        #: the message arrived (a measurement, then the reply's transfer) while the host may talk to other
        #: instruments; None: ready at once. Reading the reply waits until then (:mod:`labctl.sim.connection`).
        self.reply_ready_s: float | None = None

    # -- wiring ----------------------------------------------------------------------------------------------
    def attach(self, bench: EmulatedBench, profile: SimProfile) -> None:
        """Join ``bench`` (its chip and clock) as the instrument ``profile`` describes (identity, static facts)."""
        self.bench = bench
        self.profile = profile

    @property
    def chip(self) -> Any:
        assert self.bench is not None, f"{self.name} is not attached to a bench"
        return self.bench.chip

    # -- behaviour ---------------------------------------------------------------------------------------------
    def exchange(self, message: str) -> Reply:
        """One whole program message (terminator removed) in, the reply (without terminator) or None out."""
        self.chip.clock.advance(self.latency_s(message), self.category)
        return self.handle(message)

    def handle(self, line: str) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

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
        return float(self.chip.spec.timing.scpi_query_s)

    # -- what the connection reports (IEEE 488.2 §6: SCPI models queue -410/-420; line protocols ignore it) ----
    def query_interrupted(self) -> bool:
        """A new message arrived while a reply was unread; True makes the connection discard that reply."""
        return False

    def query_unterminated(self) -> None:
        """The controller asked to read (GPIB-style read request) with no reply pending and none coming."""

    def clear(self) -> None:
        """Device clear (IEEE 488.2 §5.8): the connection has dropped its buffers; nothing else changes."""

    # -- static facts from the profile --------------------------------------------------------------------------
    def dialogue(self, query: str) -> str:
        """The profile's fixed reply to ``query`` (identity, installed options, ranges): one place for each fact."""
        assert self.profile is not None, f"{self.name} has no profile"
        if query == self.profile.identity_query:
            return self.profile.identity_reply
        for q, r in self.profile.dialogues:
            if q == query and r is not None:
                return r
        raise KeyError(f"{self.profile.device}: no fixed reply to {query!r} in its simulation profile")
