"""The safety layer: limit checks that nothing can bypass, and the safe state on every exit path.

The bench hands upper layers *wrapped* instruments that satisfy the same capability interfaces, so
calibration and training code cannot reach a heater or a laser except through these checks. Policy: whole
vectors are validated before anything is written, and out-of-limit requests raise; nothing is clipped silently.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from labctl.drivers import recoveries
from labctl.drivers.errors import InstrumentError, LimitError
from labctl.drivers.interfaces import HeaterDriver, SweepSettings, TunableLaser
from labctl.drivers.limits import HeaterLimits

log = logging.getLogger(__name__)

#: Wait before the second safe-state pass over the instruments whose first attempt failed, s (wall clock).
SAFE_RETRY_DELAY_S = 0.2


def check_heater_vector(values: Any, channels: np.ndarray, state: np.ndarray, limits: HeaterLimits,
                        who: str) -> np.ndarray:
    """Validate a heater write as a whole; returns the full channel vector after the write.

    ``state`` is the full vector currently applied; ``channels`` the indices written. The rule is the one of
    :class:`~labctl.drivers.limits.HeaterLimits`; raises :class:`LimitError` naming the channel and the limit for the
    first violation found, before any I/O.
    """
    array = np.asarray(values, dtype=float)
    if array.shape != channels.shape:
        raise LimitError(f"{who}: {array.size} values for {channels.size} channels")
    if channels.size and (np.minimum.reduce(channels) < 0 or np.maximum.reduce(channels) >= state.size):
        raise LimitError(f"{who}: channel index out of 0..{state.size - 1}")
    limits.check(array, channels, state=state, who=who)
    after = state.copy()
    after[channels] = array
    return after


class SafeHeaterDriver:
    """A :class:`HeaterDriver` that validates, optionally ramps, and reads back every write."""

    def __init__(self, inner: HeaterDriver, limits: HeaterLimits, *, readback_tolerance: float | None = None
                 ) -> None:
        if inner.mode != limits.mode:
            raise LimitError(f"{inner.name}: driver is in {inner.mode} mode but limits are for {limits.mode}")
        if limits.max_drive.shape != (inner.n_channels,) or (
                limits.max_power_w is not None and limits.max_power_w.shape != (inner.n_channels,)):
            raise LimitError(f"{inner.name}: limits given for {limits.max_drive.size} channels, driver has "
                             f"{inner.n_channels}")
        self.inner = inner
        self.limits = limits
        self.readback_tolerance = readback_tolerance
        self.name = inner.name
        self.address = inner.address
        self.n_channels = inner.n_channels
        self.mode = inner.mode
        self._state = np.zeros(inner.n_channels)
        self._lock = threading.RLock()

    # Identified
    def identity(self) -> Any:
        return self.inner.identity()

    def check_errors(self) -> None:
        self.inner.check_errors()

    def close(self) -> None:
        self.inner.close()

    @property
    def applied(self) -> np.ndarray:
        """The full drive vector as last written through this wrapper."""
        return self._state.copy()

    def set_drive(self, values: np.ndarray, channels: np.ndarray | None = None) -> None:
        with self._lock:
            idx = np.arange(self.n_channels) if channels is None else np.asarray(channels, dtype=int).ravel()
            target = check_heater_vector(np.asarray(values, dtype=float).ravel(), idx, self._state, self.limits,
                                         self.name)
            steps = (target,) if self.limits.ramp_step is None else self._ramp(self._state, target)
            for step in steps:
                if step is not target:
                    # every intermediate vector is itself validated (QCoDeS-style safe ramping)
                    check_heater_vector(step[idx], idx, self._state, self.limits, self.name)
                self.inner.set_drive(step[idx], idx)
                self._state = step
            if self.readback_tolerance is not None:
                self._verify(target)

    def _ramp(self, start: np.ndarray, target: np.ndarray) -> Iterator[np.ndarray]:
        step = self.limits.ramp_step
        if step is None:
            yield target
            return
        n = max(1, int(np.ceil(np.abs(target - start).max() / step)))
        for k in range(1, n + 1):
            yield start + (target - start) * (k / n)

    def _verify(self, target: np.ndarray) -> None:
        measured = np.asarray(self.inner.read_drive(), dtype=float)
        bad = np.abs(measured - target) > self.readback_tolerance
        if bad.any():
            ch = int(np.argmax(bad))
            raise InstrumentError(f"read-back of channel {ch} is {measured[ch]:g}, commanded {target[ch]:g}",
                                  instrument=self.name, address=self.address)

    def read_drive(self) -> np.ndarray:
        return self.inner.read_drive()

    def read_power_w(self) -> np.ndarray | None:
        return self.inner.read_power_w()

    def max_drive(self) -> np.ndarray:
        return np.minimum(self.inner.max_drive(), self.limits.max_drive)

    def safe_state(self) -> None:
        with self._lock:
            self.inner.safe_state()
            self._state = np.zeros(self.n_channels)


class SafeLaser:
    """A :class:`TunableLaser` whose power never exceeds the bench limit (optionally ramped)."""

    def __init__(self, inner: TunableLaser, max_power_w: float, ramp_step_w: float | None = None) -> None:
        self.inner = inner
        self.max_power_w = max_power_w
        self.ramp_step_w = ramp_step_w
        self.name = inner.name
        self.address = inner.address
        #: Switched on through this wrapper and not switched off since (see :meth:`set_output`).
        self.switched_on = False

    def _check_power(self, power_w: float) -> float:
        value = float(power_w)
        if not np.isfinite(value) or value < 0:
            raise LimitError(f"{self.name}: laser power {power_w!r} W is not a finite, non-negative number")
        if value > self.max_power_w:
            raise LimitError(f"{self.name}: laser power {value * 1e3:.4g} mW exceeds the bench limit "
                             f"{self.max_power_w * 1e3:.4g} mW")
        return value

    def set_power_w(self, power_w: float) -> None:
        target = self._check_power(power_w)
        if self.ramp_step_w is None:
            self.inner.set_power_w(target)
            return
        start = self.inner.get_power_w()
        n = max(1, int(np.ceil(abs(target - start) / self.ramp_step_w)))
        for k in range(1, n + 1):
            self.inner.set_power_w(self._check_power(start + (target - start) * k / n))

    def start_power_w(self, power_w: float) -> None:
        """Send a power change without waiting for it to settle (the same limit; not with ramping, which has to
        wait for each step)."""
        target = self._check_power(power_w)
        start = getattr(self.inner, "start_power_w", None)
        if self.ramp_step_w is not None or start is None:   # a laser that can only set and wait does just that
            self.set_power_w(target)
            return
        start(target)

    def wait_power_settled(self) -> None:
        """Wait for the power change started by :meth:`start_power_w` (nothing to wait for where it waited)."""
        wait = getattr(self.inner, "wait_power_settled", None)
        if wait is not None:
            wait()

    def __getattr__(self, name: str) -> Any:
        # Everything else (wavelength, sweeps, read-outs) carries no hazard beyond power; delegate.
        if name in ("inner",):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def set_output(self, enabled: bool) -> None:
        """Output on or off. Before switching off a laser this wrapper switched on, its state is read: a laser an
        interlock or key switch turned off meanwhile gave dark readings, and the run must not go on as if they
        were lit (it is switched off all the same and the error names it)."""
        if not enabled and self.switched_on:
            self.switched_on = False
            if not self.inner.get_output():
                self.inner.set_output(False)
                raise InstrumentError("output found off before the run switched it off (interlock, key switch, "
                                      "front panel?): readings since it went off were taken without this laser",
                                      instrument=self.name, address=self.address)
        self.inner.set_output(enabled)
        self.switched_on = bool(enabled)

    def start_output(self) -> float:
        """Output on without the stabilisation pause where the laser has one (returns the seconds to wait before a
        reading; 0 where :meth:`set_output` waited itself)."""
        start = getattr(self.inner, "start_output", None)
        if start is None:
            self.set_output(True)
            return 0.0
        settle_s = float(start())
        self.switched_on = True
        return settle_s

    def configure_sweep(self, sweep: SweepSettings) -> int:
        return self.inner.configure_sweep(sweep)

    def safe_state(self) -> None:
        self.inner.safe_state()


#: Guards armed in this process; while any is, SIGTERM becomes SystemExit (so ``finally`` blocks and atexit run).
_armed: list[SafeStateGuard] = []
_sigterm_previous: Any = None
_sigterm_installed = False


def _on_sigterm(signum: int, frame: Any) -> None:
    log.warning("SIGTERM received: making the bench safe and exiting")
    raise SystemExit(128 + signum)


def _watch_sigterm(guard: SafeStateGuard) -> None:
    global _sigterm_previous, _sigterm_installed
    _armed.append(guard)
    if _sigterm_installed:
        return
    if threading.current_thread() is not threading.main_thread():
        log.debug("bench guard armed outside the main thread: SIGTERM handler not installed (atexit still is)")
        return
    with contextlib.suppress(ValueError):
        _sigterm_previous = signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True


def _unwatch_sigterm(guard: SafeStateGuard) -> None:
    global _sigterm_previous, _sigterm_installed
    with contextlib.suppress(ValueError):
        _armed.remove(guard)
    if _armed or not _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:     # someone else's handler installed since: leave it
        signal.signal(signal.SIGTERM, _sigterm_previous)
    _sigterm_previous, _sigterm_installed = None, False


class SafeStateGuard:
    """Puts registered instruments in their safe state on every exit path.

    While armed: normal exit and exceptions (``with`` block), KeyboardInterrupt, SIGTERM (turned into SystemExit
    so that ``finally`` blocks run) and interpreter exit (atexit). ``arm``/``disarm`` nest (``with guard`` inside
    an armed guard keeps it armed afterwards); one SIGTERM handler serves every armed guard of the process and the
    previous handler is back when the last one is disarmed. Each instrument is made safe independently: one that
    has stopped answering is logged and skipped, the others are still made safe.
    """

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []
        self._depth = 0
        self.failures: list[tuple[str, Exception]] = []

    def register(self, name: str, action: Callable[[], None]) -> None:
        self._actions.append((name, action))

    def make_safe(self) -> list[tuple[str, Exception]]:
        """Run every safe-state action (heaters first, then lasers, as registered); returns the failures."""
        failures = self._attempt(self._actions)
        if failures:  # a link that dropped for a moment, a line out of step: one more pass for those that failed
            time.sleep(SAFE_RETRY_DELAY_S)
            first = dict(failures)
            failures = self._attempt([(name, action) for name, action in self._actions if name in first])
            for name in set(first) - {n for n, _ in failures}:
                recoveries.note(name, None, f"safe state failed: {first[name]}", "safe state reached on a second pass")
        self.failures = failures
        return failures

    @staticmethod
    def _attempt(actions: list[tuple[str, Callable[[], None]]]) -> list[tuple[str, Exception]]:
        failures: list[tuple[str, Exception]] = []
        for name, action in actions:
            try:
                action()
                log.info("safe state: %s done", name)
            except (InstrumentError, OSError, LimitError, RuntimeError, ValueError) as exc:
                log.error("safe state: %s failed: %s", name, exc)
                failures.append((name, exc))
        return failures

    @property
    def armed(self) -> bool:
        return self._depth > 0

    def arm(self) -> None:
        """Make safe at interpreter exit and on SIGTERM from now until the matching :meth:`disarm`."""
        self._depth += 1
        if self._depth == 1:
            atexit.register(self._atexit)
            _watch_sigterm(self)

    def disarm(self) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:
            atexit.unregister(self._atexit)
            _unwatch_sigterm(self)

    def _atexit(self) -> None:
        self.make_safe()    # the bench was never closed (heaters may have been set after an earlier make_safe)

    def __enter__(self) -> SafeStateGuard:
        self.arm()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.make_safe()
        finally:
            self.disarm()
