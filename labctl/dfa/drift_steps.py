"""The run's drift steps for photonic DFA: when to check the calibration, and the recalibration when it no longer
holds.

A :class:`DriftSteps` runs before every mini-batch (a trainer pre-batch hook). It asks the engine whether its options
call for a check now (before the first batch of a session, then every ``drift_every`` batches), runs the check, and
when the check says the recentered model still misses, recalibrates in proportion to what drifted: first a partial
recalibration through the instruments (resonance map, weight model and drift references measured again, the heater
model kept: ``Calibration.recalibrate(scope="weights")``), confirmed on the targets the previous calibration was
checked with; only when that still misses them by more than the recalibration level beyond what the previous
calibration itself missed them by when it was made, a full one. Each step's bench time is recorded on the event. The run's step makes,
saves and records each calibration; the engine measures and follows drift, and never recalibrates by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class DriftSteps:
    """Pre-batch hook: drift check when due, recalibration when the check says so (module docstring)."""

    def __init__(self, engine: Any, recalibrate: Callable[..., Any] | None, *, partial_first: bool = True) -> None:
        """``engine``: a photonic engine (``drift_check_due``, ``check_drift``, ``use_calibration``,
        ``confirm_targets``, ``cal``); ``recalibrate(previous_calibration, scope="full"|"weights") ->
        calibration``: the run's recalibration step (None: a needed recalibration stops the run with an error
        naming the drift); ``partial_first``: try the partial recalibration before a full one."""
        self.engine = engine
        self.recalibrate = recalibrate
        self.partial_first = partial_first

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
            wall0 = time.perf_counter()
            hw = engine.hw
            bench0, tx0 = hw.elapsed_s(), hw.transaction_count()
            previous = engine.cal
            limit = engine.options.recalibrate_rmse if engine.options.recalibrate_rmse is not None \
                else event["threshold"]
            scope = "full"
            if self.partial_first and previous.drift_reference is not None:
                log.warning("drift beyond the recalibration level at batch %d: recalibrating (heater model kept)",
                            event["batch"])
                engine.use_calibration(self.recalibrate(previous, scope="weights"))
                residual = engine.confirm_targets(previous.drift_reference.targets)
                partial_s = hw.elapsed_s()
                # bench time of the partial recalibration and its confirmation (None on a real bench)
                event["partial_recalibration_time_s"] = None if bench0 is None or partial_s is None \
                    else partial_s - bench0
                # the previous calibration's own error at those targets when it was made: a new one is enough
                # when it sets them within the trip level of that (the model error, not drift, on coarse benches)
                ref = previous.drift_reference
                baseline = float(np.sqrt(np.mean((np.asarray(ref.measured) - np.asarray(ref.targets)) ** 2)))
                event["confirmation_baseline_rmse"] = baseline
                scope = "weights" if residual <= baseline + limit else "full"
                if scope == "full":
                    log.warning("the partial recalibration misses the previous references by %.4g (the previous "
                                "calibration: %.4g; limit %.4g more): full recalibration", residual, baseline, limit)
            if scope == "full":
                if not self.partial_first:
                    log.warning("drift beyond the recalibration level at batch %d: recalibrating", event["batch"])
                engine.use_calibration(self.recalibrate(previous, scope="full"))
            event["recalibration_scope"] = scope
            event["recalibration_wall_s"] = time.perf_counter() - wall0     # emulator wall time, s
            bench1 = hw.elapsed_s()
            # bench time (projected on an emulated bench, None on a real one: see wall) and transactions
            event["recalibration_time_s"] = None if bench0 is None or bench1 is None else bench1 - bench0
            event["recalibration_transactions"] = hw.transaction_count() - tx0
        return event
