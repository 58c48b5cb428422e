"""The IEEE 488.2 status model of one emulated instrument: the SCPI error queue and the status registers.

Why here and not per connection: on a real instrument the error queue and the event status register belong to the
instrument, whichever interface a command came in on; every connection to an emulated instrument sees one.

* Error queue (SCPI-99 Vol. 1 §21.8, IEEE 488.2 §11.5.1.1.8): first in, first out, ``:SYST:ERR?`` removes the
  oldest entry and answers ``0,"No error"`` (in the instrument's own spelling) when empty. When the queue is full
  the last entry is replaced by ``-350,"Queue overflow"`` and further errors are lost.
* Standard event status register (488.2 §11.5.1): bit 0 OPC, bit 2 query error (-4xx), bit 3 device-dependent
  error (-3xx and instrument-specific positive codes), bit 4 execution error (-2xx), bit 5 command error (-1xx),
  bit 7 power on (set at construction). ``*ESR?`` reads and clears it; ``*ESE`` masks it into status byte bit 5.
* Status byte (488.2 §11.2): bit 2 error queue not empty (SCPI-99 §9), bit 4 MAV (a reply waits in the output
  queue of the asking connection), bit 5 ESB, bit 6 MSS (summary of the bits enabled by ``*SRE``).
"""

from __future__ import annotations

import logging
from collections import deque

from labctl.sim.scpi.errors import MESSAGES

log = logging.getLogger(__name__)

QUEUE_OVERFLOW = -350

ESR_OPC = 1 << 0
ESR_QUERY_ERROR = 1 << 2
ESR_DEVICE_ERROR = 1 << 3
ESR_EXECUTION_ERROR = 1 << 4
ESR_COMMAND_ERROR = 1 << 5
ESR_POWER_ON = 1 << 7

STB_ERROR_QUEUE = 1 << 2
STB_MAV = 1 << 4
STB_ESB = 1 << 5
STB_MSS = 1 << 6


def esr_bit(code: int) -> int:
    """The event status bit an error code sets (488.2 §11.5.1.1)."""
    if -199 <= code <= -100:
        return ESR_COMMAND_ERROR
    if -299 <= code <= -200:
        return ESR_EXECUTION_ERROR
    if -499 <= code <= -400:
        return ESR_QUERY_ERROR
    return ESR_DEVICE_ERROR


class StatusModel:
    """Error queue and status registers; ``no_error`` is the instrument's empty-queue reply (``+0,"No error"`` on
    the Keysight photonic instruments, ``0,"No error"`` on the Keithley 2400: their profiles say which)."""

    def __init__(self, *, no_error: str = '0,"No error"', size: int = 30) -> None:
        if size < 2:
            raise ValueError("an error queue holds at least two entries (SCPI-99 §21.8)")
        self.no_error = no_error
        self.size = size
        self.queue: deque[str] = deque()
        self.esr = ESR_POWER_ON
        self.ese = 0
        self.sre = 0

    # -- errors ------------------------------------------------------------------------------------------------
    def push(self, code: int, text: str | None = None) -> None:
        """Queue ``<code>,"<text>"`` (the standard text when None) and set its event status bit."""
        self.esr |= esr_bit(code)
        text = MESSAGES.get(code, "Error") if text is None else text
        self.push_entry(f'{code:+d},"{text}"' if code > 0 else f'{code},"{text}"')

    def push_entry(self, entry: str) -> None:
        """Queue an entry already spelled as the instrument answers it (e.g. ``+803,"Not permitted ..."``)."""
        if len(self.queue) >= self.size:
            self.queue[-1] = f'{QUEUE_OVERFLOW},"{MESSAGES[QUEUE_OVERFLOW]}"'
            log.debug("error queue full; %s lost", entry)
            return
        self.queue.append(entry)

    def pop(self) -> str:
        """``:SYST:ERR?``: the oldest entry, or the empty-queue reply."""
        return self.queue.popleft() if self.queue else self.no_error

    # -- registers ---------------------------------------------------------------------------------------------
    def read_esr(self) -> int:
        """``*ESR?``: the register, cleared by reading."""
        value, self.esr = self.esr, 0
        return value

    def clear(self) -> None:
        """``*CLS``: empty the error queue and the event register (the enable registers stay)."""
        self.queue.clear()
        self.esr = 0

    def status_byte(self, message_available: bool) -> int:
        stb = (STB_ERROR_QUEUE if self.queue else 0) | (STB_MAV if message_available else 0)
        if self.esr & self.ese:
            stb |= STB_ESB
        if stb & self.sre & ~STB_MSS:
            stb |= STB_MSS
        return stb
