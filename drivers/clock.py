"""The clock a bench runs on: the wall clock on real instruments, the emulator's virtual clock on an emulated bench.

One object per bench. Transports sleep on it (instrument-imposed settling and polling), the bench session waits on
it (heater settling) and the photonic engine charges projected bench time to it. A virtual clock advances instead of
sleeping, so a dry run takes seconds and still reports the bench time real instruments would need.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What a transport, a session and an engine need of time."""

    #: True when time is simulated (sleeping advances the clock instead of waiting).
    virtual: bool

    @property
    def now_s(self) -> float:
        """Seconds since the clock started."""
        ...

    def sleep(self, seconds: float, category: str = "wait") -> None:
        """Let ``seconds`` pass; ``category`` names what the time was spent on (virtual clocks tally it)."""
        ...


class WallClock:
    """Real time: ``sleep`` blocks, ``now_s`` counts from construction."""

    virtual = False

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    @property
    def now_s(self) -> float:
        return time.monotonic() - self._t0

    def sleep(self, seconds: float, category: str = "wait") -> None:
        if seconds > 0:
            time.sleep(seconds)


#: The clock of a driver used on its own (no bench).
WALL_CLOCK = WallClock()
