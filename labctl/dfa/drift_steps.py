"""The run's drift steps for photonic DFA: when to check the calibration, and the recalibration when it no longer
holds.

A :class:`DriftSteps` runs before every mini-batch (a trainer pre-batch hook). It asks the engine whether its options
call for a check now (before the first batch of a session, then every ``drift_every`` batches), runs the check, and
when the check says the recentered model still misses, runs the run's recalibration step (a new calibration through
the instruments with the options of the one it replaces; the procedure saves and records it) and hands the new
calibration to the engine. The engine measures and follows drift; it never recalibrates by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class DriftSteps:
    """Pre-batch hook: drift check when due, recalibration when the check says so (module docstring)."""

    def __init__(self, engine: Any, recalibrate: Callable[[Any], Any] | None) -> None:
        """``engine``: a photonic engine (``drift_check_due``, ``check_drift``, ``use_calibration``, ``cal``);
        ``recalibrate(previous_calibration) -> calibration``: the run's recalibration step (None: a needed
        recalibration stops the run with an error naming the drift)."""
        self.engine = engine
        self.recalibrate = recalibrate

    def __call__(self, trainer: Any = None) -> dict[str, Any] | None:
        """Run before a mini-batch; returns the drift event when a check ran."""
        engine = self.engine
        if not engine.drift_check_due():
            return None
        event = engine.check_drift()
        if event.get("needs_recalibration"):
            if self.recalibrate is None:
                raise RuntimeError(f"drift check at batch {event['batch']}: the recentered references miss by "
                                   f"{event['residual_rmse']:.4g} (limit {event['threshold']:.4g}) and this run has "
                                   "no recalibration step")
            log.warning("drift beyond the recalibration level at batch %d: recalibrating", event["batch"])
            engine.use_calibration(self.recalibrate(engine.cal))
        return event
