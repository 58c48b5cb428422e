"""Progress bars with rate and ETA on stderr (tqdm), for every step longer than a few seconds.

Bars appear only after ``DELAY_S`` (short steps stay silent), also in ``--json`` mode (stdout holds the report).
They are off with ``--quiet`` and when stderr is not a terminal in CI (``$CI`` set); elsewhere a non-terminal
(a log file) gets a bar update at most every ``LOG_INTERVAL_S``. A running bar is also redrawn every
``HEARTBEAT_S`` by a background thread when nothing else drew it (a step that reports rarely, or a long fit between
two reports), so a terminal and a log file alike get a line at least every 5 s saying what runs and how much is
left. Lines printed while a bar runs go through :meth:`Bars.write` so they do not tear it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

DELAY_S = 2.0
LOG_INTERVAL_S = 4.0
#: A running bar not drawn for this long is redrawn (elapsed time, rate, ETA and the step's postfix), s.
HEARTBEAT_S = 3.5


def bars_enabled(quiet: bool, stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return False
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return tty or not os.environ.get("CI")


class _Lines:
    """A non-terminal stream for tqdm: every draw becomes one whole line (tqdm redraws a bar in place with a
    carriage return, which a log file or a pipe reader would see as one endless line)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class Bars:
    """One bar at a time: a new step closes the previous one."""

    def __init__(self, enabled: bool, stream: TextIO | None = None, prefix: str = "") -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        self._bar: Any = None
        self._name: str | None = None
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()              # never set: the beat ends when no bar runs

    def step(self, name: str, total: int | None = None, unit: str = "it") -> None:
        self.close()
        self._name = name
        if not self.enabled:
            return
        from tqdm import tqdm

        desc = f"[{self.prefix}] {name}" if self.prefix else name
        with self._lock:
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream if self._tty else _Lines(self.stream),
                             delay=DELAY_S, leave=True, ascii=None if self._tty else True,
                             dynamic_ncols=True, mininterval=0.5 if self._tty else LOG_INTERVAL_S)
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is not None and self._heartbeat.is_alive():
                return
            self._heartbeat = threading.Thread(target=self._beat, name="labctl-progress", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        """Redraw the running bar when it has not been drawn for ``HEARTBEAT_S`` (and its delay has passed)."""
        while not self._stop.wait(min(0.5, HEARTBEAT_S / 4)):
            with self._lock:
                bar = self._bar
                if bar is None:
                    self._heartbeat = None            # no bar running: the next step starts a new beat
                    return
                if getattr(bar, "disable", False):
                    continue
                now = time.time()
                if now >= bar.start_t + DELAY_S and now - max(bar.last_print_t, bar.start_t) >= HEARTBEAT_S:
                    bar.refresh()
                    bar.last_print_t = now            # refresh() alone leaves it (tqdm sets it in update)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(n)

    def update(self, name: str, done: float, total: int | None) -> None:
        """Absolute progress of step ``name`` (``done`` of ``total``), from a callback."""
        if name != self._name or (self._bar is not None and total is not None and self._bar.total != total):
            self.step(name, total)
        with self._lock:
            if self._bar is not None:
                self._bar.update(done - self._bar.n)

    def postfix(self, text: str) -> None:
        """What the step is doing now (shown with the next draw; the heartbeat draws it within HEARTBEAT_S)."""
        with self._lock:
            if self._bar is not None:
                self._bar.set_postfix_str(text, refresh=False)

    def write(self, line: str) -> None:
        """A message line on stderr that does not tear a running bar."""
        with self._lock:
            self._write(line)

    def _write(self, line: str) -> None:
        bar = self._bar
        if bar is not None and bar.total is not None and bar.n >= bar.total:
            self._close_bar()                 # a finished step's bar ends before the next message
            bar = None
        if bar is not None and self._tty:
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
            return
        print(line, file=self.stream, flush=True)        # a non-terminal bar's draws are whole lines

    def close(self) -> None:
        with self._lock:
            self._close_bar()
        self._name = None

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
