"""Top level: ``calibrate(session)`` runs every measurement step through a bench session and returns a ``Calibration``.

Steps (each one bulk instrument exchange per point, progress reported per step):
  1. resonance map (``resonances.measure_resonance_map``): zero-drive resonances, widths, channel assignment,
     the per-bank baseline that normalises readings to weights;
  2. heater characterization (``characterize_heaters``): efficiency, self-heating, crosstalk matrix, and which
     resonance each heater moves (the map is put in ring order);
  2b. balanced-only benches: the reference level read in a gap the heaters open (``reference_level``);
  3. weight sweeps (``weights.measure_weight_model``): the bank-level weight model and achievable ranges;
  3b. range check (``range_check.check_ranges``): every ring measured at its window's ends, ranges the chip does
     not reach cut;
  4. drift reference (``drift.record_reference``): a few settings measured now, for later drift checks.
The heaters are left at zero and the lasers off at the end.

``Calibration`` is data and mathematics: the three models with the provenance of the run (chip, bench and wiring
hashes, instrument identities, code version, the options it was made with), solving, achievable ranges, artifact
I/O and the checks that a bench session is the one it was made on. Measuring and setting weights take the bench
session: ``set_weights(session, W)`` solves, checks limits, writes and returns the drive; with ``refine=True`` it
closes the loop on measured weights. ``save`` and
``load`` go through ``artifact`` (versioned JSON with a content hash; ``sha256`` identifies the calibration in
every run that uses it).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from labctl.calibration import artifact
from labctl.calibration.drift import DriftReference, record_reference
from labctl.calibration.measure import lasers_restored, only_laser
from labctl.calibration.inversion import (
    Inversion,
    drive_for_detuning,
    drives_for_detunings,
    solve_drive,
)
from labctl.calibration.range_check import check_ranges
from labctl.calibration.refine import refine_weights
from labctl.calibration.weights import WeightModel, measure_weight_model

if TYPE_CHECKING:
    from labctl.drivers.limits import HeaterLimits
    from labctl.drivers.interfaces import BenchSession
    from labctl.calibration.resonances import ResonanceMap
    from labctl.calibration.thermal import ThermalModel

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class SetResult:
    """What ``set_weights(..., details=True)`` did."""

    target: np.ndarray
    drive: np.ndarray
    iterations: int = 0
    measured: np.ndarray | None = None
    rmse: float | None = None
    history: list[float] | None = None


class Calibration:
    """Models of one chip on one bench; weights are set and measured through a bench session passed in."""

    def __init__(self, rmap: ResonanceMap, thermal: ThermalModel, weights: WeightModel, *,
                 info: dict[str, Any] | None = None, drift_reference: DriftReference | None = None,
                 refine_default: bool = False) -> None:
        self.rmap = rmap
        self.thermal = thermal
        self.weights = weights
        self.info: dict[str, Any] = dict(info or {})
        self.drift_reference = drift_reference
        self.refine_default = bool(refine_default)
        self.refine_options: dict[str, Any] = {"tol": None, "max_iter": 6, "damping": 1.0}
        self._sha256: str | None = None
        #: Readout averaging requested for measure_weights: the noise probe's choice (``info["readout"]``) when the
        #: calibration made one, else DEFAULT_AVERAGING_S; what the readout accepts is learnt at the first
        #: measurement.
        readout = self.info.get("readout")
        self._readout_request_s = (float(readout["averaging_time_s"]) if isinstance(readout, dict)
                                   and readout.get("averaging_time_s") else DEFAULT_AVERAGING_S)
        self._averaging_time_s: float | None = None
        #: Session state (not saved): shift of the resonances relative to the lasers since calibration (scalar or
        #: (B, R)), set by ``recenter``.
        self.common_shift_m: float | np.ndarray = 0.0

    @property
    def readout_request_s(self) -> float:
        """Averaging per reading this calibration asks of the readout (s): what it measured the chip with, i.e. the
        noise probe's choice on a probed readout, else the unprobed default (power meters)."""
        return self._readout_request_s

    @property
    def readout_chosen_by(self) -> str:
        """How :attr:`readout_request_s` was chosen ("noise probe", "caller", "default (readout not probed)"; a
        calibration file without a ``readout`` record: "default (not recorded)")."""
        readout = self.info.get("readout")
        if isinstance(readout, dict) and readout.get("averaging_time_s"):
            return str(readout.get("chosen_by", "recorded"))
        return "default (not recorded)"

    # -- the bench it belongs to ---------------------------------------------------------------------------------
    def check_bench(self, hw: BenchSession) -> None:
        """Refuse a bench session with another chip, another wiring or other dimensions."""
        self._check_match(hw.chip_id, hw.wiring_sha256, (hw.n_banks, hw.n_rings))

    def check_config(self, config: Any) -> None:
        """As :meth:`check_bench`, from a bench file alone (a labctl.bench.config.BenchConfig): before connecting."""
        self._check_match(config.chip_id, config.wiring_sha256, (config.wiring.banks, config.wiring.rings))

    def _check_match(self, chip_id: str, wiring_sha256: str, shape: tuple[int, int]) -> None:
        chip, wiring = self.info.get("chip_id"), self.info.get("wiring_sha256")
        if chip is not None and chip_id != chip:
            raise artifact.CalibrationFileError(f"calibration is for chip {chip!r}, the bench has {chip_id!r}")
        if wiring is not None and wiring_sha256 != wiring:
            raise artifact.CalibrationFileError("calibration was made with another wiring (wiring hash "
                                                f"{str(wiring)[:16]}..., bench {wiring_sha256[:16]}...)")
        if self.weights.shape != shape:
            raise artifact.CalibrationFileError(f"calibration is for {self.weights.shape} rings, the bench has "
                                                f"{shape}")

    # -- ranges ----------------------------------------------------------------------------------------------------
    @property
    def achievable_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(w_min, w_max), each (B, R): any target within them is reachable for any targets of the others."""
        return self.weights.w_min.copy(), self.weights.w_max.copy()

    @property
    def movable(self) -> np.ndarray:
        """(B, R) bool: rings whose weight a request can move (False: held at one weight, by a closed operating
        window or by the range check)."""
        return (self.weights.delta_hi_m > self.weights.delta_lo_m) & (self.weights.w_max > self.weights.w_min)

    @property
    def span(self) -> float:
        """Median over rings of w_max - w_min (normalised weight, -1 = every ring far away)."""
        return self.weights.span

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape

    # -- setting weights ------------------------------------------------------------------------------------------
    def solve(self, target: np.ndarray, *, strict: bool = True, limits: HeaterLimits | None = None) -> Inversion:
        """Drive for target weights, ranges (and ``limits``, a session's, where given) checked, nothing written."""
        return solve_drive(target, self.weights, self.rmap, self.thermal, limits, strict=strict,
                           common_shift_m=self.common_shift_m)

    def solve_detunings(self, targets: np.ndarray) -> np.ndarray:
        """Detunings (..., B, R) for a batch of targets (..., B, R), range-checked; nothing written."""
        return self.weights.solve(np.asarray(targets, dtype=float), strict=True)

    def solve_from_detuning(self, target: np.ndarray, delta: np.ndarray, limits: HeaterLimits | None = None
                            ) -> Inversion:
        """Drive for ``target`` whose detunings are already solved (follows ``common_shift_m``), limits checked."""
        return drive_for_detuning(np.asarray(target, dtype=float), delta, self.weights, self.rmap, self.thermal,
                                  limits, common_shift_m=self.common_shift_m)

    def solve_from_detunings(self, targets: np.ndarray, deltas: np.ndarray, limits: HeaterLimits | None = None
                             ) -> np.ndarray:
        """Drives (T, N) for T targets (T, B, R) with solved detunings, as :meth:`solve_from_detuning` each.

        Photonic DFA re-solves all its fixed configurations after every drift check: one batch solve instead of
        a loop; errors name the configuration (``configuration t: bank b ring r: ...``)."""
        return drives_for_detunings(np.asarray(targets, dtype=float), deltas, self.weights, self.rmap, self.thermal,
                                    limits, common_shift_m=self.common_shift_m)

    def apply(self, hw: BenchSession, drive: np.ndarray) -> None:
        """Write a solved drive through the session (its limits checked first, as a whole)."""
        hw.limits.check(drive)
        hw.set_ring_drive(drive)

    def measure_weights(self, hw: BenchSession, averaging_time_s: float | None = None,
                        channels: np.ndarray | None = None, *, restore_lasers: bool = True) -> np.ndarray:
        """Weights (B, R) of every ring at its channel: balanced reading / |baseline| (one laser at a time).
        ``channels``: light only these (ascending; rings on other channels read NaN). ``restore_lasers=False``
        leaves every output off (a loop of readings restores once, ``measure.lasers_restored``)."""
        from labctl.calibration.measure import channel_weights_raw, configure_readout

        if averaging_time_s is None:
            if self._averaging_time_s is None:    # learn once what the readout accepts (source meters: longer)
                self._averaging_time_s = configure_readout(hw, float(hw.wavelengths_m[0]), self._readout_request_s)
            averaging_time_s = self._averaging_time_s
        channels = self.measurement_channels if channels is None else np.unique(np.asarray(channels, dtype=int))
        raw = np.asarray(channel_weights_raw(hw, channels=channels, averaging_time_s=averaging_time_s,
                                             restore_lasers=restore_lasers), dtype=float)
        return self.weights_from_readings(raw, channels)

    def measure_weights_at(self, hw: BenchSession, drives: np.ndarray, channels: np.ndarray | None = None
                           ) -> np.ndarray:
        """Weights (M, B, R) at each of ``drives`` (M, N): what applying each and :meth:`measure_weights` give, with
        every laser switched on once for all drives (``channel_weights_raw_at``); the last drive stays applied.
        ``channels``: light only these (ascending; rings on other channels read NaN)."""
        from labctl.calibration.measure import channel_weights_raw_at, configure_readout

        if self._averaging_time_s is None:
            self._averaging_time_s = configure_readout(hw, float(hw.wavelengths_m[0]), self._readout_request_s)
        channels = self.measurement_channels if channels is None else np.unique(np.asarray(channels, dtype=int))
        raw = channel_weights_raw_at(hw, drives, lambda drive: self.apply(hw, drive), channels=channels,
                                     averaging_time_s=self._averaging_time_s)
        return self.weights_from_readings(np.asarray(raw, dtype=float), channels)

    @property
    def measurement_channels(self) -> np.ndarray:
        """The channels :meth:`measure_weights` lights one at a time (those that address a ring), ascending."""
        return np.unique(np.asarray(self.rmap.channel_of_ring, dtype=int))

    def weights_from_readings(self, raw: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """Weights (..., B, R) from balanced readings (..., B, len(channels)) taken with one laser on at a time:
        reading / |baseline| at each ring's channel. Shared by :meth:`measure_weights` and readers of the same
        readings from elsewhere (photonic DFA's fast path)."""
        raw = np.asarray(raw, dtype=float)
        chans = np.asarray(channels, dtype=int)
        cor = np.asarray(self.rmap.channel_of_ring, dtype=int)
        n_ch = int(np.size(self.weights.wavelengths_m))
        w = np.full((*raw.shape[:-1], n_ch), np.nan)
        w[..., chans] = raw / np.abs(np.asarray(self.rmap.baseline, dtype=float)[:, chans])
        return np.take_along_axis(w, np.broadcast_to(cor, (*raw.shape[:-1], cor.shape[-1])), axis=-1)

    def set_weights(self, hw: BenchSession, target: np.ndarray, refine: bool | None = None, *, details: bool = False,
                    **refine_options: Any) -> Any:
        """Apply target weights (B, R) through the session; returns the drive written (a SetResult with ``details``).

        Out-of-range targets raise ValueError, limit violations LimitError, both before anything is written.
        ``refine`` (default: the calibration's setting) closes the loop on measured weights (refine.py).
        """
        w = np.asarray(target, dtype=float)
        inv = self.solve(w, limits=hw.limits)    # strict: range and limits checked before the first write
        self.apply(hw, inv.drive)
        use_refine = self.refine_default if refine is None else bool(refine)
        if not use_refine:
            return SetResult(target=w, drive=inv.drive) if details else inv.drive
        opts = {**self.refine_options, **refine_options}
        if opts.get("tol") is None:
            opts["tol"] = self.span * 2.0**-10
        last: dict[bytes, Inversion] = {}

        def inverse(request: np.ndarray) -> Inversion:
            """The loop asks for a request's drive, detunings and slopes in turn: one solve each request."""
            key = np.asarray(request, dtype=float).tobytes()
            if key not in last:
                last.clear()
                last[key] = self.solve(request, strict=False, limits=hw.limits)
            return last[key]

        with lasers_restored(hw):    # the lasers stay off between the loop's readings: one stabilisation a channel
            result = refine_weights(w, solve=lambda req: inverse(req).drive,
                                    apply=lambda drive: self.apply(hw, drive),
                                    measure=lambda: self.measure_weights(hw, restore_lasers=False),
                                    first_drive=inv.drive, movable=self.movable,
                                    drift_slope=lambda req: self.weights.slope(inverse(req).delta_m),
                                    reading_group=self.rmap.channel_of_ring,
                                    detuning=lambda req: inverse(req).delta_m,
                                    drive_for_detuning=lambda delta: self.solve_from_detuning(
                                        w, delta, limits=hw.limits).drive, **opts)
        if details:
            return SetResult(target=w, drive=result.drive, iterations=result.iterations, measured=result.measured,
                             rmse=result.rmse, history=result.history)
        return result.drive

    def recenter(self, hw: BenchSession, threshold: float | None = None,
                 measure: Callable[[np.ndarray], np.ndarray] | None = None) -> Any:
        """Drift check, then follow the measured shift of the resonances relative to each channel's laser.

        The shift is estimated per channel (chip temperature plus that laser's re-tuning), falling back to the
        common shift for channels the references do not constrain, and used by every later solve. Costs one
        measurement per drift reference (``measure``: another source of it, see ``drift.check_drift``). Returns the
        DriftReport (``tripped``: the drift was beyond the
        threshold before the correction; a recalibration is due if that keeps happening).
        """
        from labctl.calibration.drift import check_drift

        report = check_drift(hw, self, threshold=threshold, measure=measure)
        per_channel = report.channel_shift_m if report.channel_shift_m is not None \
            else np.full(np.size(self.weights.wavelengths_m), np.nan)
        common = report.common_shift_m if np.isfinite(report.common_shift_m) else 0.0
        per_channel = np.where(np.isfinite(per_channel), per_channel, common)
        self.common_shift_m = per_channel[np.asarray(self.weights.channel_of_ring, dtype=int)]
        log.info("recentered: shifts %s pm", np.round(per_channel * 1e12, 2).tolist())
        return report

    # -- persistence ----------------------------------------------------------------------------------------------
    def to_document(self) -> dict[str, Any]:
        b, r = self.weights.shape
        doc: dict[str, Any] = {
            "created": self.info.get("created", artifact.now_iso()),
            "chip_id": self.info.get("chip_id", ""),
            "bench_sha256": self.info.get("bench_sha256", ""),
            "wiring_sha256": self.info.get("wiring_sha256", ""),
            "instruments": dict(self.info.get("instruments", {})),
            "code_version": self.info.get("code_version") or artifact.code_version(),
            "shape": {"n_banks": b, "n_rings": r, "n_channels": int(np.size(self.weights.wavelengths_m)),
                      "n_heaters": b * r, "n_neighbours": int(self.weights.neighbours.shape[-1])},
            "mode": self.info.get("mode", getattr(self.thermal, "mode", "")),
            "refine_default": self.refine_default,
            "options": artifact.encode(self.info.get("options", {})),
            "refine_options": artifact.encode(self.refine_options),
            "fit_quality": artifact.encode(self.info.get("fit_quality", {})),
            "timing": artifact.encode(self.info.get("timing", {})),
            "span": self.span,
            "resonance_map": artifact.dataclass_fields(self.rmap),
            "thermal_model": artifact.dataclass_fields(self.thermal),
            "weight_model": artifact.dataclass_fields(self.weights),
            "drift_reference": None if self.drift_reference is None
            else artifact.dataclass_fields(self.drift_reference),
        }
        if self.info.get("recalibration"):          # what a run's recalibration replaced, and how much it measured
            doc["recalibration"] = artifact.encode(self.info["recalibration"])
        if self.info.get("readout"):                # the readout settings and the noise probe that chose them
            doc["readout"] = artifact.encode(self.info["readout"])
        return artifact.finalize(doc)

    @property
    def sha256(self) -> str:
        """Content hash of this calibration's document (what a file of it carries)."""
        if self._sha256 is None:
            self._sha256 = self.to_document()["sha256"]
        return self._sha256

    def save(self, path: str | Path) -> Path:
        doc = self.to_document()
        self._sha256 = doc["sha256"]
        out = artifact.write_document(doc, path)
        log.info("calibration saved to %s (sha256 %s)", out, self._sha256)
        return out

    @classmethod
    def from_document(cls, doc: dict[str, Any], source: str = "calibration") -> Calibration:
        from labctl.calibration.resonances import ResonanceMap
        from labctl.calibration.thermal import ThermalModel

        rmap = artifact.dataclass_from(ResonanceMap, doc["resonance_map"], f"{source}: resonance_map")
        thermal = artifact.dataclass_from(ThermalModel, doc["thermal_model"], f"{source}: thermal_model")
        weights = artifact.dataclass_from(WeightModel, doc["weight_model"], f"{source}: weight_model")
        drift = None if doc.get("drift_reference") is None else artifact.dataclass_from(
            DriftReference, doc["drift_reference"], f"{source}: drift_reference")
        shape = doc["shape"]
        try:
            dims = {"B": int(shape["n_banks"]), "R": int(shape["n_rings"]), "C": int(shape["n_channels"]),
                    "N": int(shape["n_heaters"]), "K": int(shape["n_neighbours"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise artifact.CalibrationFileError(f"{source}: bad shape table ({exc})") from exc
        if dims["N"] != dims["B"] * dims["R"]:
            raise artifact.CalibrationFileError(f"{source}: n_heaters {dims['N']} != n_banks * n_rings")
        artifact.check_shapes(vars(rmap), {"center_m": ("B", "R"), "fwhm_m": ("B", "R"),
                                           "channel_of_ring": ("B", "R"), "baseline": ("B", "C")},
                              dims, f"{source}: resonance_map")
        artifact.check_shapes(vars(thermal), {"efficiency_m_per_unit": ("N",), "crosstalk": ("N", "N"),
                                              "nonlinearity": ("N",)}, dims, f"{source}: thermal_model")
        bxr = ("B", "R")
        artifact.check_shapes(vars(weights), {
            "wavelengths_m": ("C",), "channel_of_ring": bxr, "delta_offset_m": bxr, "width_m": bxr,
            "coef": ("B", "R", "K1", "F"), "neighbours": ("B", "R", "K"), "u_park_m": ("B", "R", "K"),
            "delta_lo_m": bxr, "delta_hi_m": bxr, "slope_sign": bxr, "w_min": bxr, "w_max": bxr, "fit_rmse": bxr},
            {**dims, "K1": dims["K"] + 1, "F": 5}, f"{source}: weight_model")
        if drift is not None:
            artifact.check_shapes(vars(drift), {"targets": ("M", "B", "R"), "drive": ("M", "N"),
                                                "delta_m": ("M", "B", "R"), "measured": ("M", "B", "R")},
                                  {**dims, "M": int((np.shape(drift.targets) or (-1,))[0])},
                                  f"{source}: drift_reference")
        info: dict[str, Any] = {k: doc[k] for k in ("created", "chip_id", "bench_sha256", "wiring_sha256",
                                                    "instruments", "code_version", "mode") if k in doc}
        info["fit_quality"] = artifact.decode(doc.get("fit_quality", {}))
        info["timing"] = artifact.decode(doc.get("timing", {}))
        info["options"] = artifact.decode(doc.get("options", {}))
        if doc.get("recalibration"):
            info["recalibration"] = artifact.decode(doc["recalibration"])
        if doc.get("readout"):
            info["readout"] = artifact.decode(doc["readout"])
        cal = cls(rmap, thermal, weights, info=info, drift_reference=drift,
                  refine_default=bool(doc.get("refine_default", False)))
        if isinstance(doc.get("refine_options"), dict):
            cal.refine_options.update(artifact.decode(doc["refine_options"]))
        cal._sha256 = doc["sha256"]
        return cal

    @classmethod
    def load(cls, path: str | Path, hw: BenchSession | None = None) -> Calibration:
        """Read a calibration file; with a bench session ``hw``, refuse one made for another chip or wiring."""
        doc = artifact.read_document(path, chip_id=None if hw is None else hw.chip_id,
                                     wiring_sha256=None if hw is None else hw.wiring_sha256)
        cal = cls.from_document(doc, source=str(path))
        if hw is not None:
            cal.check_bench(hw)
        return cal


# ---- the calibration run -------------------------------------------------------------------------------------------
@contextmanager
def _step(name: str, hw: BenchSession, timing: dict[str, Any], progress: Progress | None, index: int,
          total: int) -> Iterator[None]:
    if progress is not None:
        progress(name, index, total)
    t0, n0, wall0 = hw.elapsed_s(), hw.transaction_count(), time.perf_counter()
    yield
    t1 = hw.elapsed_s()
    timing[name] = {"elapsed_s": None if t0 is None or t1 is None else t1 - t0,
                    "transactions": hw.transaction_count() - n0, "wall_s": time.perf_counter() - wall0}
    log.info("calibration step %s: %s", name, timing[name])


def _summary(values: Any) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": float("nan"), "max": float("nan")}
    return {"median": float(np.median(v)), "max": float(np.max(v))}


def _effective_max_drive(limits: HeaterLimits) -> np.ndarray:
    """(N,) largest drive of every heater that passes the bench's limits on its own: the drive limit, or less
    where the per-heater power limit binds first (power as the safety layer estimates it, worst case)."""
    if limits.max_power_w is None or limits.worst_resistance_ohm is None:
        return np.asarray(limits.max_drive, dtype=float).copy()
    grid = np.linspace(0.0, 1.0, 1001)[:, None] * np.asarray(limits.max_drive, dtype=float)[None, :]
    ok = np.asarray(limits.power_w(grid), dtype=float) <= np.asarray(limits.max_power_w, dtype=float)[None, :]
    last = ok.shape[0] - 1 - np.argmax(ok[::-1], axis=0)
    return grid[last, np.arange(grid.shape[1])]


def _warn_restricted(restricted: list[dict[str, Any]]) -> None:
    """One warning for every ring whose achievable range had to shrink (the artifact keeps the details)."""
    if not restricted:
        return
    held = sum(1 for e in restricted if any("held" in why for why in e["reasons"]))
    first = restricted[0]
    log.warning("%d ring(s) cannot reach part of their weight range and were restricted (%d held at one weight); "
                "first: bank %d ring %d: %s, range %.3f..%.3f (all in the calibration file's fit_quality.restricted)",
                len(restricted), held, first["bank"], first["ring"], "; ".join(first["reasons"]), first["range"][0],
                first["range"][1])


#: Averaging per reading where the readout is not probed (power meters), s.
DEFAULT_AVERAGING_S = 1e-4


def _gap_reference(hw: BenchSession, rmap: ResonanceMap, thermal: ThermalModel, progress: Progress | None
                   ) -> ResonanceMap:
    """The map with its reference level read in a gap the heaters open (reference_level.py); the map's own
    extrapolation is kept, with a warning, where no gap can be opened within the limits."""
    from labctl.calibration.reference_level import measure_gap_level, with_gap_level
    from labctl.drivers.errors import LimitError

    try:
        gap = measure_gap_level(hw, rmap, thermal, progress=progress)
    except LimitError as exc:
        log.warning("reference level: %s; keeping the resonance map's extrapolated level (uncertain by %s %%)",
                    exc, None if rmap.baseline_uncertainty is None
                    else np.round(100 * np.asarray(rmap.baseline_uncertainty), 2).tolist())
        return rmap
    finally:
        hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))
    return with_gap_level(rmap, gap)


def calibrate(hw: BenchSession, refine: bool = False, progress: Progress | None = None, *,
              n_configs: int = 10, n_levels: int = 40, neighbour_channels: int = 2, n_drift_references: int = 3,
              seed: int = 0, thermal: ThermalModel | None = None, averaging_time_s: float | None = None,
              check_ranges_by_measurement: bool = True
              ) -> Calibration:
    """Run the whole calibration through the bench session's instruments and return the Calibration.

    ``refine`` becomes the calibration's default for ``set_weights`` (closed loop on measured weights).
    ``thermal``: a heater model to keep instead of characterizing the heaters again (a partial recalibration,
    :func:`recalibrate`); the resonance map, the weight model and the drift references are always measured.
    ``averaging_time_s``: the readout's averaging per reading; None (default) chooses it from the noise measured
    by a short probe first (:mod:`labctl.calibration.readout_noise`, recorded in ``info["readout"]``) on readouts
    that ask for it (``readout.probe_noise``: source meters and DAQs, whose integration trades bench time for
    noise), else 100 us as before (power meters).
    ``check_ranges_by_measurement``: measure every ring at its window's ends and cut ranges the chip does not
    reach (range_check.py; eight weight readings).
    """
    from labctl.calibration.readout_noise import choose_averaging
    from labctl.calibration.resonances import measure_resonance_map
    from labctl.calibration.thermal import characterize_heaters

    timing: dict[str, Any] = {}
    limits = hw.limits
    t_start, n_start = hw.elapsed_s(), hw.transaction_count()
    total = 4 + int(check_ranges_by_measurement)      # and one more on balanced-only benches (the reference gap)
    for laser in hw.lasers:          # measurements switch lasers one at a time; start (and end) with all off
        if laser.get_output():
            laser.set_output(False)
    readout: dict[str, Any] = {"averaging_time_s": averaging_time_s, "chosen_by": "caller"}
    if averaging_time_s is None and not getattr(hw.readout, "probe_noise", False):
        averaging_time_s = DEFAULT_AVERAGING_S
        readout = {"averaging_time_s": averaging_time_s, "chosen_by": "default (readout not probed)"}
    probing = averaging_time_s is None
    try:                             # the probe and the map both light laser 0: switched on once for both
        with only_laser(hw, 0) if probing else contextlib.nullcontext():
            if averaging_time_s is None:
                with _step("readout", hw, timing, progress, 0, total):
                    choice = choose_averaging(hw, channel=0)
                averaging_time_s = choice.averaging_time_s
                readout = {**choice.to_dict(), "chosen_by": "noise probe"}
            with _step("resonance_map", hw, timing, progress, 0, total):
                rmap = measure_resonance_map(hw, progress=progress, averaging_time_s=averaging_time_s)
        if thermal is None:
            with _step("heaters", hw, timing, progress, 1, total):
                thermal = characterize_heaters(hw, rmap, progress=progress, averaging_time_s=averaging_time_s)
        rmap = rmap.in_ring_order(thermal.resonance_of_ring)     # ring r: the resonance heater r moves
        rmap = rmap.with_zero_drive_correction(getattr(thermal, "zero_drive_correction_m", None))
        max_drive = _effective_max_drive(hw.limits)              # the windows respect the power limits too
        if not np.array_equal(np.asarray(thermal.max_drive, dtype=float), max_drive):
            thermal = copy.copy(thermal)                         # a kept model is shared: change a copy
            thermal.max_drive = max_drive
        step = 2
        if not rmap.measured_ports:
            # balanced only: the map's level is an extrapolation; the heaters open a gap to read it in
            total += 1
            with _step("reference_level", hw, timing, progress, step, total):
                rmap = _gap_reference(hw, rmap, thermal, progress)
            step += 1
        with _step("weights", hw, timing, progress, step, total):
            wmodel = measure_weight_model(hw, rmap, thermal, n_configs=n_configs, n_levels=n_levels,
                                          neighbour_channels=neighbour_channels, seed=seed, progress=progress,
                                          check_drive=limits.check, averaging_time_s=averaging_time_s)
        info: dict[str, Any] = {
            "created": artifact.now_iso(), "chip_id": hw.chip_id, "bench_sha256": hw.bench_sha256,
            # what a recalibration of this calibration repeats (``recalibrate``)
            "options": {"refine": bool(refine), "n_configs": n_configs, "n_levels": n_levels,
                        "neighbour_channels": neighbour_channels, "n_drift_references": n_drift_references,
                        "seed": seed},
            "readout": readout,
            "wiring_sha256": hw.wiring_sha256, "instruments": dict(hw.identities),
            "code_version": artifact.code_version(), "mode": str(hw.mode),
            "fit_quality": {
                "resonance_fit_rmse": _summary(getattr(rmap, "fit_rmse", np.nan)),
                "thermal_fit_rmse_m": _summary(getattr(thermal, "fit_rmse_m", np.nan)),
                "weight_fit_rmse": _summary(wmodel.fit_rmse),
                "span": wmodel.span,
                "usable_rings": int(np.sum(wmodel.w_max > wmodel.w_min)),
                "unusable": [[int(b), int(r)] for b, r in np.argwhere(~(wmodel.w_max > wmodel.w_min))],
                "restricted": list(wmodel.meta.get("restricted", [])),
                "reference_uncertainty": None if rmap.baseline_uncertainty is None
                else [float(u) for u in rmap.baseline_uncertainty],
                "reference_level": rmap.stats.get("reference_level", {"method": "map"}),
            },
        }
        cal = Calibration(rmap, thermal, wmodel, info=info, refine_default=refine)
        if check_ranges_by_measurement:
            step += 1
            with _step("range_check", hw, timing, progress, step, total):
                cut = check_ranges(hw, cal, progress=progress)
            if cut:
                merged = {(e["bank"], e["ring"]): e for e in wmodel.meta.get("restricted", [])}
                for e in cut:                      # a ring cut here keeps the model's reasons too
                    key = (e["bank"], e["ring"])
                    merged[key] = {**merged.get(key, {}), **e,
                                   "reasons": merged.get(key, {}).get("reasons", []) + e["reasons"]}
                wmodel.meta["restricted"] = [merged[k] for k in sorted(merged)]
                fq = info["fit_quality"]
                fq.update(span=wmodel.span, usable_rings=int(np.sum(wmodel.w_max > wmodel.w_min)),
                          unusable=[[int(b), int(r)] for b, r in np.argwhere(~(wmodel.w_max > wmodel.w_min))],
                          restricted=list(wmodel.meta["restricted"]))
        _warn_restricted(wmodel.meta.get("restricted", []))
        with _step("drift_reference", hw, timing, progress, step + 1, total):
            cal.drift_reference = record_reference(hw, cal, n_ref=n_drift_references)
    finally:
        try:
            hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))
        except Exception as exc:  # noqa: BLE001 - never mask the original error; the bench guard still acts
            log.error("could not return the heaters to zero after calibration: %s", exc)
    t_end = hw.elapsed_s()
    timing["total"] = {"elapsed_s": None if t_start is None or t_end is None else t_end - t_start,
                       "transactions": hw.transaction_count() - n_start}
    cal.info["timing"] = timing
    cal._sha256 = None
    if progress is not None:
        progress("done", total, total)
    return cal


def recalibrate(hw: BenchSession, previous: Calibration, progress: Progress | None = None, *,
                scope: Literal["full", "weights"] = "full") -> Calibration:
    """Calibrate again with the options of the calibration it replaces (a run step: the run decides and records).

    ``scope="weights"``: a partial recalibration that keeps the previous heater model (how each heater moves every
    ring does not drift with the chip's temperature or the lasers) and measures the rest again: the resonance map,
    the weight model and the drift references. On the default bench it takes 73 s of bench time and 25k
    transactions instead of 193 s and 33k (the heater characterization is the longest step)."""
    if scope not in ("full", "weights"):
        raise ValueError(f"scope must be 'full' or 'weights', got {scope!r}")
    options = dict(previous.info.get("options") or {})
    options.setdefault("refine", previous.refine_default)
    cal = calibrate(hw, progress=progress, thermal=previous.thermal if scope == "weights" else None, **options)
    cal.refine_options.update(previous.refine_options)
    cal.info["recalibration"] = {"scope": scope, "replaces": previous.sha256}
    cal._sha256 = None
    return cal