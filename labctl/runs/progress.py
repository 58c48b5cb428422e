"""Progress bars with rate and ETA on stderr (tqdm), for every step longer than a few seconds.

Bars appear only after ``DELAY_S`` (short steps stay silent), also in ``--json`` mode (stdout holds the report).
They are off with ``--quiet`` and when stderr is not a terminal in CI (``$CI`` set); elsewhere a non-terminal
(a log file) gets a bar update at most every ``LOG_INTERVAL_S``. Lines printed while a bar runs go through
:meth:`Bars.write` so they do not tear it.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

DELAY_S = 2.0
LOG_INTERVAL_S = 15.0


def bars_enabled(quiet: bool, stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return False
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return tty or not os.environ.get("CI")


class Bars:
    """One bar at a time: a new step closes the previous one."""

    def __init__(self, enabled: bool, stream: TextIO | None = None, prefix: str = "") -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        self._bar: Any = None
        self._name: str | None = None
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, name: str, total: int | None = None, unit: str = "it") -> None:
        self.close()
        self._name = name
        if not self.enabled:
            return
        from tqdm import tqdm

        desc = f"[{self.prefix}] {name}" if self.prefix else name
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, delay=DELAY_S, leave=True,
                         dynamic_ncols=True, mininterval=0.5 if self._tty else LOG_INTERVAL_S)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def update(self, name: str, done: int, total: int | None) -> None:
        """Absolute progress of step ``name`` (``done`` of ``total``), from a callback."""
        if name != self._name or (self._bar is not None and total is not None and self._bar.total != total):
            self.step(name, total)
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def write(self, line: str) -> None:
        """A message line on stderr that does not tear a running bar."""
        bar = self._bar
        if bar is not None and bar.total is not None and bar.n >= bar.total:
            self.close()                      # a finished step's bar ends before the next message
            bar = None
        if bar is not None and self._tty:
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
            return
        if bar is not None and bar.last_print_t > bar.start_t:
            self.stream.write("\n")          # end the bar's line; it goes on below
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            bar = self._bar
            shown = bar.last_print_t > bar.start_t
            bar.close()
            if shown and not self._tty:       # tqdm ends a non-terminal bar without a newline
                self.stream.write("\n")
                self.stream.flush()
            self._bar = None
        self._name = None
