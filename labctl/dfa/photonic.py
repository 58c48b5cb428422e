"""Photonic DFA: ``e @ B_l`` computed on microring weight banks through the calibration and the instruments.

Mapping (see :mod:`labctl.dfa.tiling`): bank ``b`` of one heater configuration computes
``y_b = sum_c w[b, c] G[b, c] P_c``, with ``w`` the ring weights the calibration sets, ``P_c`` the laser power
of channel ``c`` and ``G[b, c] = |baseline[b, c]| / P_cal[c]`` the readout gain the resonance map measured
(reading per watt at weight 1). Tiles of ``B_l^T`` are ``usable banks x channels``.

Weights. A ring's achievable range ``[w_min, w_max]`` need not contain 0 (heaters only red-shift), so every ring is
set to ``w = centre + k_b M / G[b, c]`` with ``centre`` the middle of its range, ``M`` the tile's entry of ``B``
(|M| <= 1) and ``k_b`` the largest bank gain that keeps every ring of the bank inside its range
(``k_b = margin * min_c half_range * G``). A bias configuration (every ring at its centre) is read with the same
encodings, so the centre term cancels exactly instead of being subtracted from a model. Banks whose worst ring has
less than ``min_half_range`` of usable range are left out of the tiles.

Refinement. The configurations are fixed for the whole run, so before the first batch (and after a new
calibration) every configuration's weights are measured as a batch reads them (each usable channel raised alone
against the reference encoding) and corrected in closed loop (``refine_iterations``, :meth:`PhotonicMatVec.
refine_configurations`): what the weight model mispredicts at each configuration is otherwise a fixed error of every
product (on the current bench it was the largest term: tile-minus-bias weight rms 0.015 -> 0.0012, product error std
0.18 -> 0.018 on the dry run's network, fast path; default bench 0.021 -> 0.016).

Encoding (offset scheme). The signed error of one sample and column block, ``e`` with ``m = max |e|``, is put on
non-negative laser powers ``P_c = P_mid + (dP / 2) e_c / m`` with ``P_mid = (P_lo + P_hi) / 2`` and
``dP = P_hi - P_lo`` (``P_hi`` the calibration power, ``P_lo = low_fraction * P_hi``); the reference encoding
(every channel at ``P_mid``) is read once per configuration and batch. Then
``(M e)_b = ((y - y_ref)_tile - (y - y_ref)_bias) * 2 m / (dP k_b)``: dark currents, meter offsets, background
light and the centre weights cancel, and one reading per sample and tile is all it costs (two passes for e+ and
e- would cost two). Per-sample ``m`` uses the full power swing for every sample.

Order and counters: :mod:`labctl.dfa.tiling`. Per batch the engine counts heater reconfigurations, encodings,
readings, instrument transactions and bench time (measured through the instruments, or projected from unit costs
probed through the same instrument loop), split per operation kind (configure, encode, read, batch), and the same
for the naive order; and the batch's two lower bounds (:mod:`labctl.dfa.bench_time`, defined in
``docs/bench-time.md``): the physical minimum and the instrument-bound minimum.

Drift: before the first batch of a session and every ``drift_every`` batches a drift check
(``Calibration.recenter``) re-measures the calibration's drift references and follows the measured shift of the
resonances; when the check trips, the references' targets are then set with the shifted model and measured, and
when they miss by more than ``recalibrate_rmse`` (default: the trip level, 7 bits over the span) the check says a
recalibration is needed. When to check and whether to recalibrate are the run's steps
(:class:`labctl.dfa.drift_steps.DriftSteps`): the run recalibrates through the instruments with the options of the
calibration it replaces, records it, and hands the new calibration to the engine (:meth:`PhotonicMatVec.
use_calibration`) for the next batch. Every check is recorded with its cost.

Two engines, same code above the readings: :class:`BenchMatVec` reads through the instruments (real or emulated
bench, unchanged), ``labctl.dfa.photonic_fast.FastMatVec`` asks the emulator directly (vectorized over the batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from labctl.dfa.bench_time import ORDERED, InstrumentBound, physical_minimum_s
from labctl.dfa.tiling import (
    OpCounts,
    Order,
    TilePlan,
    UnitCosts,
    best_order,
    op_counts,
    schedule,
)

if TYPE_CHECKING:
    from labctl.calibration.calibrate import Calibration
    from labctl.drivers.interfaces import BenchSession

log = logging.getLogger(__name__)

OrderChoice = Literal["auto", "tile", "sample"]


class PhotonicSetupError(ValueError):
    """The calibration or bench cannot carry the feedback matrices (no usable bank, channel or power)."""


@dataclass(frozen=True)
class PhotonicOptions:
    """Choices of the photonic engine (recorded in the run)."""

    order: OrderChoice = "auto"
    low_fraction: float = 0.1           # P_lo / P_hi
    range_margin: float = 0.95          # share of each ring's half range used
    min_half_range: float = 0.01        # rings that reach less (weight units) carry nothing
    weak_ring_fraction: float = 0.25    # rings below this share of their bank's median half range are weak
    drop_weak_rings: bool = False       # weak rings carry nothing on every bank (more configurations, less error)
    averaging_time_s: float | None = None   # detector averaging per reading, s (None: the calibration's readout)
    laser_settle_s: float = 0.02        # laser power settling, for the physical minimum (N777x class)
    recenter_at_start: bool = True      # drift check + recenter before the first batch of a session
    drift_every: int = 0                # batches between drift checks (0: never)
    drift_threshold: float | None = None    # drift check trip level (default: span / 2**7)
    recalibrate_rmse: float | None = None   # recalibrate when recentered references miss by more (default: trip level)
    refine_iterations: int = 3          # closed-loop corrections of every configuration's weights (0: model only)
    refine_recenter: bool = False       # recentre before every refinement pass after the first, and after the last
    reference_every: int = 0            # sample order: read the reference encoding again after every k samples (0: once)

    def __post_init__(self) -> None:
        if self.order not in ("auto", "tile", "sample"):
            raise ValueError(f"order must be 'auto', 'tile' or 'sample', got {self.order!r}")
        if not 0.0 <= self.low_fraction < 1.0:
            raise ValueError(f"low_fraction must be in [0, 1), got {self.low_fraction!r}")
        if not 0.0 < self.range_margin <= 1.0:
            raise ValueError(f"range_margin must be in (0, 1], got {self.range_margin!r}")
        if ((self.averaging_time_s is not None and not self.averaging_time_s > 0) or self.laser_settle_s < 0
                or self.drift_every < 0 or self.refine_iterations < 0
                or self.reference_every < 0):
            raise ValueError(f"invalid photonic options {self}")


def carried_channels(half_bc: np.ndarray, options: PhotonicOptions) -> np.ndarray:
    """(B, n_cols) bool: which ring carries its channel's tile entries. A ring with less than ``min_half_range``
    of half range carries nothing, and then neither do its bank's *weak* rings (below ``weak_ring_fraction`` of the
    bank's median half range): the bank's rows need a remainder on another bank anyway (one per row, however many
    channels it holds), so the weak rings cost nothing more there and no longer cap the bank's gain. With
    ``drop_weak_rings`` weak rings carry nothing on every bank (each such bank's rows then need remainders: more
    configurations, less error)."""
    half = np.asarray(half_bc, dtype=float)
    usable = half >= options.min_half_range
    weak = half < options.weak_ring_fraction * np.median(half, axis=1, keepdims=True)
    gap = ~usable.all(axis=1, keepdims=True) | options.drop_weak_rings
    return usable & ~(weak & gap)


@dataclass
class WeightMapping:
    """Static map from tile entries to ring weights, derived from a calibration (see the module docstring)."""

    ring_of: np.ndarray          # (B, C) ring of bank b on channel c (-1: none)
    channels: np.ndarray         # (n_cols,) channels that carry error components
    banks: np.ndarray            # (n_usable,) banks that compute tile rows
    centre: np.ndarray           # (B, R) centre of every ring's range
    gain: np.ndarray             # (B, C) readout units per W at weight 1
    bank_gain: np.ndarray        # (n_usable,) k_b, readout units per W at |M| = 1
    usable: np.ndarray | None = None    # (n_usable, n_cols) which bank carries which channel (None: all)

    @classmethod
    def from_calibration(cls, cal: Calibration, options: PhotonicOptions) -> WeightMapping:
        w_min, w_max = (np.asarray(a, dtype=float) for a in cal.achievable_range)
        cor = np.asarray(cal.weights.channel_of_ring, dtype=int)
        n_banks, n_rings = cor.shape
        n_ch = int(np.size(cal.weights.wavelengths_m))
        ring_of = np.full((n_banks, n_ch), -1, dtype=int)
        bank_idx = np.repeat(np.arange(n_banks), n_rings)
        ring_of[bank_idx, cor.reshape(-1)] = np.tile(np.arange(n_rings), n_banks)
        p_cal = np.asarray(cal.rmap.laser_power_w if cal.rmap.laser_power_w is not None else np.ones(n_ch),
                           dtype=float)
        gain = np.abs(np.asarray(cal.rmap.baseline, dtype=float)) / p_cal[None, :]
        centre = 0.5 * (w_min + w_max)
        half = 0.5 * (w_max - w_min)
        channels = np.flatnonzero(np.all(ring_of >= 0, axis=0))
        if channels.size == 0:
            raise PhotonicSetupError("no WDM channel has a ring in every bank: nothing to encode the error on")
        ring = ring_of[:, channels]
        half_bc = np.take_along_axis(half, ring, axis=1)                          # (B, n_cols)
        usable = carried_channels(half_bc, options)
        banks = np.flatnonzero(usable.any(axis=1))
        if banks.size == 0:
            raise PhotonicSetupError(
                f"no ring has at least {options.min_half_range} of weight range (worst half ranges per bank: "
                f"{np.round(half_bc.min(axis=1), 4).tolist()})")
        carried = usable.any(axis=0)
        if not carried.all():
            log.warning("channels %s carry nothing: no bank has a ring with weight range there",
                        channels[~carried].tolist())
            channels, usable, half_bc = channels[carried], usable[:, carried], half_bc[:, carried]
        left_out = sorted(set(range(n_banks)) - set(banks.tolist()))
        if left_out:
            log.warning("banks %s left out of the tiles (no ring reaches %.3g of weight range)", left_out,
                        options.min_half_range)
        gain_bc = gain[:, channels]
        # k_b: the largest bank gain every carried ring of the bank holds within its range
        k = options.range_margin * np.min(np.where(usable, half_bc * gain_bc, np.inf), axis=1)
        gaps = {int(b): channels[~usable[b]].tolist() for b in banks if not usable[b].all()}
        if gaps:
            log.info("rings that carry nothing (their rows' remainders go to other banks), channels per bank: %s",
                     gaps)
        return cls(ring_of=ring_of, channels=channels, banks=banks, centre=centre, gain=gain, bank_gain=k[banks],
                   usable=None if usable[banks].all() else usable[banks])

    def plan(self, shapes: Sequence[tuple[int, int]]) -> TilePlan:
        """The tiles of feedback matrices of ``shapes`` over the usable banks and channels."""
        return TilePlan(shapes, n_banks=self.banks.size, n_cols=self.channels.size, usable=self.usable)

    def targets_batch(self, tiles: np.ndarray) -> np.ndarray:
        """(T, B, R) ring weights for tiles (T, n_usable, n_cols)."""
        w = np.repeat(self.centre[None], tiles.shape[0], axis=0)
        rings = self.ring_of[np.ix_(self.banks, self.channels)]
        g = self.gain[np.ix_(self.banks, self.channels)]
        w[:, self.banks[:, None], rings] += self.bank_gain[None, :, None] * tiles / g[None]
        return w

    def describe(self) -> dict[str, Any]:
        return {"channels": self.channels.tolist(), "banks": self.banks.tolist(),
                "bank_gain": self.bank_gain.tolist(),
                "carried": None if self.usable is None else self.usable.astype(int).tolist(),
                "relative_amplitude": (self.bank_gain / np.median(self.gain)).tolist()}


@dataclass(frozen=True)
class OffsetEncoding:
    """Signed values on non-negative laser powers around ``mid_w`` (module docstring)."""

    low_w: float
    high_w: float
    n_channels: int
    channels: np.ndarray

    @property
    def mid_w(self) -> float:
        return 0.5 * (self.low_w + self.high_w)

    @property
    def swing_w(self) -> float:
        return self.high_w - self.low_w

    def powers(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Blocks (n_blocks, N, n_cols) -> powers (n_blocks, N + 1, C) (encoding 0: reference) and the scale
        ``m`` (n_blocks, N) (1 where a sample's block is all zero)."""
        m = np.max(np.abs(blocks), axis=2)
        m = np.where(m > 0, m, 1.0)
        nb, n, _ = blocks.shape
        p = np.full((nb, n + 1, self.n_channels), self.mid_w)
        p[:, 1:, self.channels] += 0.5 * self.swing_w * blocks / m[:, :, None]
        return p, m


@dataclass
class _Tally:
    """What the hardware did (measured) and the cost references, summed since the last pop."""

    configs: int = 0
    encodings: int = 0
    readings: int = 0
    transactions: float = 0.0
    time_s: float = 0.0
    naive_time_s: float = 0.0
    naive_transactions: float = 0.0
    minimum_time_s: float = 0.0
    bound_time_s: float = 0.0
    #: bench time and transactions per operation kind (``labctl.bench.session.KINDS``), and the instrument-bound
    #: minimum's share of each
    kind_time_s: dict[str, float] = field(default_factory=dict)
    kind_transactions: dict[str, float] = field(default_factory=dict)
    bound_kind_s: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    #: closed-loop refinements of the configurations (bench time, transactions, rms before -> after, per refinement)
    refinements: list[dict[str, Any]] = field(default_factory=list)
    drift_checks: int = 0
    recalibrations: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    #: product error (photonic - exact e @ B) in units of the batch's max|e|: sum, sum of squares, count
    err_sum: float = 0.0
    err_sumsq: float = 0.0
    err_n: int = 0


class PhotonicMatVec:
    """MatVecEngine computing ``e @ B_l`` on the chip; subclasses provide the readings (:meth:`_read_batch`).

    The trainer asks layer by layer with the same error; the engine computes every layer of a batch in one
    schedule (each tile once) and answers the other layers from that result.
    """

    kind = "photonic"

    def __init__(self, cal: Calibration, hw: BenchSession, options: PhotonicOptions | None = None) -> None:
        """``cal``: the calibration of the bench whose session ``hw`` the engine works through. Drift checks and
        recalibrations are the run's steps (:mod:`labctl.dfa.drift_steps`)."""
        self.options = options or PhotonicOptions()
        cal.check_bench(hw)
        self.cal = cal
        self.hw = hw
        self.mapping = WeightMapping.from_calibration(cal, self.options)
        self._setup_encoding()
        self.plan: TilePlan | None = None
        self.drives = np.empty((0, 0))
        self.config_block = np.empty(0, dtype=int)
        self.costs: UnitCosts | None = None
        self.order: Order = "sample"
        self._tally = _Tally()
        self._matrices: list[np.ndarray] = []
        self._targets: np.ndarray | None = None
        self._deltas: np.ndarray | None = None
        self.tiles = np.empty((0, 0, 0))
        self._cache_key: bytes | None = None
        self._cache: list[np.ndarray] = []
        self._batches = 0
        self._config: int | None = None           # configuration as last set
        self._ready = False
        self._tuned = False
        #: the configurations' weights are to be measured and corrected before the next batch (refine_iterations)
        self._refine_due = False
        #: the detunings hold measured corrections (saved with a checkpoint)
        self._refined = False
        self._session_checked = False
        #: heater lines from one configuration to the next (instrument-bound minimum), computed once per plan
        self._heater_lines: int | None = None
        self._account_memo: dict[tuple, tuple] = {}     # _account's costs of one batch, by what they depend on
        #: bench time of one reading taken on its own (the probe's; the instrument bound of non-meter readouts)
        self._reading_alone_s: float | None = None
        #: (bench time s, transactions) of one drift check through the instruments, measured by the first one
        self._drift_cost: tuple[float, int] | None = None
        #: the same for the confirmation step of a tripped check
        self._confirm_cost: tuple[float, int] | None = None

    # -- set-up --------------------------------------------------------------------------------------------------
    def _setup_encoding(self) -> None:
        hw = self.hw
        p_cal = self.cal.rmap.laser_power_w
        high = float(np.min(p_cal)) if p_cal is not None else float(hw.laser_max_power_w)
        high = min(high, float(hw.laser_max_power_w))
        if not high > 0:
            raise PhotonicSetupError(f"no laser power to encode with (calibration power {p_cal}, limit "
                                     f"{hw.laser_max_power_w} W)")
        self.encoding = OffsetEncoding(low_w=self.options.low_fraction * high, high_w=high,
                                       n_channels=hw.n_channels, channels=self.mapping.channels)

    def program(self, matrices: Sequence[np.ndarray]) -> None:
        self._matrices = [np.asarray(m) for m in matrices]
        self.plan = self.mapping.plan([m.shape for m in matrices])
        self.tiles = self.plan.tile_matrices(matrices)
        self.config_block = self.plan.config_blocks(extra_per_block=1)
        self._solve_drives()
        self._cache_key = None
        self._refined = False
        self._refine_due = self.options.refine_iterations > 0

    def _solve_drives(self, *, detunings: bool = True) -> None:
        """Drive of every configuration (tiles, then one bias per block); ranges and limits checked here.

        The detunings depend only on the targets and are solved once, all tiles in one batch; after a drift
        check only the cheap detuning -> drive step is repeated (it follows ``common_shift_m``)."""
        assert self.plan is not None
        t0 = time.perf_counter()
        if detunings or self._targets is None:
            targets = np.concatenate([self.mapping.targets_batch(self.tiles),
                                      np.repeat(self.mapping.centre[None], self.plan.n_blocks, axis=0)])
            self._targets = targets
            self._deltas = self.cal.solve_detunings(targets)
        assert self._targets is not None and self._deltas is not None
        self.drives = self.cal.solve_from_detunings(self._targets, self._deltas, limits=self.hw.limits)
        self._heater_lines = None
        log.info("solved %d configurations in %.2f s", len(self.drives), time.perf_counter() - t0)

    def start(self) -> None:
        """Lasers at the mid power (tuned to the WDM grid and switched on once per session: re-tuning would move
        them by their repeatability), readout configured, unit costs measured (once)."""
        if self._ready:
            return
        hw = self.hw
        mid = np.full(hw.n_channels, self.encoding.mid_w)
        if not self._tuned:
            for k, laser in enumerate(hw.lasers):      # one laser at a time: tune, mid power, on
                laser.set_wavelength_m(float(hw.wavelengths_m[k]))
                laser.set_power_w(self.encoding.mid_w)
                laser.set_output(True)
            hw.note_laser_powers(mid)
            self._tuned = True
        else:
            hw.set_laser_powers(mid)
        self._configure_readout()
        if self.costs is None:
            self.costs = self._probe_costs()
        self.order = self._resolve_order()
        self._ready = True

    def readout_request(self) -> tuple[float, str]:
        """(averaging per reading to ask for, s; how it was chosen): the option when given, else from what the
        calibration measured (its readout record): on a probed readout (source meters, DAQs) the cheapest setting
        its noise probe measured within DFA's noise target (``DFA_TARGET_RELATIVE_NOISE``, looser than the
        calibration's own), on power meters the unprobed default the calibration used."""
        from labctl.calibration.readout_noise import DFA_TARGET_RELATIVE_NOISE, averaging_for

        if self.options.averaging_time_s is not None:
            return float(self.options.averaging_time_s), "option"
        chosen = averaging_for(self.cal.info.get("readout"), DFA_TARGET_RELATIVE_NOISE)
        if chosen is not None and self.cal.readout_chosen_by == "noise probe":
            return chosen, (f"calibration's noise probe: cheapest measured setting within "
                            f"{DFA_TARGET_RELATIVE_NOISE:g} of the signal")
        return self.cal.readout_request_s, f"calibration ({self.cal.readout_chosen_by})"

    def _configure_readout(self) -> None:
        from labctl.calibration.measure import configure_readout

        self.averaging_time_s = configure_readout(self.hw, float(np.mean(self.hw.wavelengths_m)),
                                                  self.readout_request()[0])

    def _resolve_order(self) -> Order:
        if self.options.order != "auto":
            return self.options.order
        assert self.plan is not None and self.costs is not None
        return best_order(self.costs, self.drives.shape[0], self.plan.n_blocks, 64)

    def _now(self) -> tuple[float, int]:
        el = self.hw.elapsed_s()
        return (time.perf_counter() if el is None else float(el)), int(self.hw.transaction_count())

    #: Configurations and encodings of the probe batch that measures the unit costs.
    PROBE_CONFIGS: ClassVar[int] = 3
    PROBE_ENCODINGS: ClassVar[int] = 3

    def _probe_costs(self) -> UnitCosts:
        """Unit costs measured on the bench (virtual clock when emulated): a small batch through the same instrument
        loop as the real ones (:meth:`Session.read_configurations`, back and forth over the last
        ``PROBE_CONFIGS`` configurations at ``PROBE_ENCODINGS`` encodings), whose time and transactions per
        operation kind, divided by the operations done, are the cost of one configuration, encoding and reading,
        and of the batch's fixed part. Overlaps the loop makes (laser settles, a reading's reply travelling while
        the next heater lines go out) are inside these costs, as they are in a real batch."""
        k = min(self.PROBE_CONFIGS, len(self.drives))
        first = 0 if self.plan is None or self.plan.n_tiles >= k else len(self.drives) - k  # distinct tiles
        drives = self.drives[first:first + k]
        mid = np.full(self.hw.n_channels, self.encoding.mid_w)
        powers = np.repeat(mid[None], self.PROBE_ENCODINGS, axis=0)
        for e in range(1, self.PROBE_ENCODINGS):     # alternate high and low on the usable channels
            powers[e, self.mapping.channels] = self.encoding.high_w if e % 2 else self.encoding.low_w
        visits = [(t if e % 2 == 0 else k - 1 - t, e) for e in range(self.PROBE_ENCODINGS) for t in range(k)]
        for _ in range(2):      # once to put the instruments in the loop's modes (e.g. the meter's triggering)
            self._set_config(first)                 # the probe's first visit changes nothing
            self._set_lasers(mid)
            _, counts, self._config = self.hw.read_configurations(drives, powers, visits, current=0)
        self._config = None if self._config is None else first + self._config
        t0, _ = self._now()                         # one reading on its own (for the instrument bound)
        self.hw.read_configurations(drives, powers, [visits[-1]], current=visits[-1][0])
        t1, _ = self._now()
        self._reading_alone_s = t1 - t0
        per = {"configure": counts.configs, "encode": counts.encodings, "read": counts.readings, "batch": 1}
        unit = {kind: (counts.time_s[kind] / n if n else 0.0, counts.transactions[kind] / n if n else 0.0)
                for kind, n in per.items()}
        costs = UnitCosts(config_s=unit["configure"][0], encode_s=unit["encode"][0], read_s=unit["read"][0],
                          config_tx=unit["configure"][1], encode_tx=unit["encode"][1], read_tx=unit["read"][1],
                          batch_s=unit["batch"][0], batch_tx=unit["batch"][1])
        log.info("unit costs: %s", costs)
        return costs

    # -- instrument steps ---------------------------------------------------------------------------------------
    def _set_config(self, index: int) -> None:
        self.cal.apply(self.hw, self.drives[index])      # limits checked, written in one go, settled
        self._config = index

    def _set_lasers(self, powers_w: np.ndarray) -> bool:
        """Change only the channels whose power differs; True if anything was sent."""
        return self.hw.set_laser_powers(powers_w)

    # -- the product ----------------------------------------------------------------------------------------------
    def matvec(self, layer: int, error: np.ndarray) -> np.ndarray:
        e = np.ascontiguousarray(error)
        key = e.tobytes() + str(e.shape).encode()
        if key != self._cache_key:
            self._cache = self._products(e)
            self._cache_key = key
        return self._cache[layer].astype(e.dtype, copy=False)

    def _products(self, error: np.ndarray) -> list[np.ndarray]:
        assert self.plan is not None, "program() first"
        self.start()
        if self._refine_due:
            self.refine_configurations()
        plan, n = self.plan, error.shape[0]
        powers, m = self.encoding.powers(plan.block_inputs(error))
        powers, refs = self._with_references(powers)
        readings = self._read_batch(powers, powers.shape[1] - 1)                  # (n_cfg, N + 1 (+ refs), B)
        banks = self.mapping.banks
        if banks.size != readings.shape[2] or np.any(banks != np.arange(banks.size)):
            readings = readings[:, :, banks]                                       # usable banks
        if refs is None:
            diff = readings[:, 1:] - readings[:, :1]                               # against the reference encoding
        else:
            diff = self._against_references(readings, *refs)
        n_tiles = plan.n_tiles
        partial, bias_d = diff[:n_tiles], diff[n_tiles:]                          # bias_d: (n_blocks, N, n_usable)
        # each tile's block bias, and the encoding scale m and k_b back out (broadcast when there is one block)
        scale = (2.0 * m[:, :, None]) / (self.encoding.swing_w * self.mapping.bank_gain)   # (n_blocks, N, n_usable)
        if plan.n_blocks == 1:
            partial -= bias_d[0]
            partial *= scale[0]
        else:
            partial -= bias_d[plan.block]
            partial *= scale[plan.block]
        self._account(n)
        self._batches += 1
        products = plan.assemble(partial, n)
        self._tally_error(error, products)
        return products

    def _with_references(self, powers: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Encodings (n_blocks, N + 1, C) with the reference encoding read again after every ``reference_every``
        samples and at the end (``sample`` order only: there a long batch reads a configuration's samples minutes
        after its reference, and the chip drifts in between); returns them with the positions of the references
        and of the samples (None: as given)."""
        k, n = self.options.reference_every, powers.shape[1] - 1
        if k <= 0 or self.order != "sample" or n <= k:
            return powers, None
        order, refs, samples = [0], [0], []
        for j in range(1, n + 1):
            samples.append(len(order))
            order.append(j)
            if j % k == 0 or j == n:
                refs.append(len(order))
                order.append(0)
        return powers[:, order], (np.array(refs), np.array(samples))

    @staticmethod
    def _against_references(readings: np.ndarray, refs: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """(T, N, B) sample readings minus each configuration's reference reading interpolated linearly between the
        reference passes around it (the passes of a block take equal time in ``sample`` order)."""
        hi = np.searchsorted(refs, samples)                   # the first reference after each sample
        lo = hi - 1
        alpha = ((samples - refs[lo]) / (refs[hi] - refs[lo]))[None, :, None]
        ref = (1.0 - alpha) * readings[:, refs[lo]] + alpha * readings[:, refs[hi]]
        return readings[:, samples] - ref

    def _tally_error(self, error: np.ndarray, products: list[np.ndarray]) -> None:
        """The product error in the units of Filipovich et al.'s noise model (``max|e| * N(mean, std)`` on every
        element of ``e @ B``), so the bench's accuracy reads directly against theirs (mean 0.03, std 0.618)."""
        scale = float(np.abs(error).max()) if error.size else 0.0
        if not scale > 0:
            return
        t = self._tally
        for m, out in zip(self._matrices, products):
            diff = (out - error @ m).ravel()
            t.err_sum += float(diff.sum()) / scale
            t.err_sumsq += float(diff @ diff) / scale**2
            t.err_n += diff.size

    def _read_batch(self, powers: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError

    def _account(self, n: int) -> None:
        """Reference costs of this batch: the naive order, the physical minimum and the instrument-bound minimum
        (docs/bench-time.md)."""
        assert self.plan is not None and self.costs is not None
        n_cfg, nb = self.drives.shape[0], self.plan.n_blocks
        # every batch of one size costs the same until the configurations, the readout or the unit costs change:
        # worked out once per such state (the fast path's batches take milliseconds, this took 0.6 ms of each)
        key = (n_cfg, nb, n, id(self.drives), self.drives.shape, self._heater_lines, id(self.costs),
               float(self.averaging_time_s), float(self.hw.settle_time_s), float(self.options.laser_settle_s),
               self._reading_alone_s)
        costs = self._account_memo.get(key)
        if costs is None:
            naive = op_counts("naive", n_cfg, nb, n)
            bound_s, bound_kind = None, {}
            bound = self.instrument_bound()
            if bound is not None:
                order = min(ORDERED, key=lambda o: bound.batch_s(o, n_cfg, nb, n))
                bound_s, bound_kind = bound.batch_s(order, n_cfg, nb, n), bound.by_kind_s(order, n_cfg, nb, n)
            costs = (naive.time_s(self.costs), naive.transactions(self.costs),
                     physical_minimum_s(n_cfg, nb, n, settle_s=self.hw.settle_time_s,
                                        laser_settle_s=self.options.laser_settle_s,
                                        averaging_s=self.averaging_time_s), bound_s, bound_kind)
            # one state at a time, filed under the heater lines the bound has just counted (None before)
            self._account_memo = {(*key[:5], self._heater_lines, *key[6:]): costs}
        naive_s, naive_tx, minimum_s, bound_s, bound_kind = costs
        t = self._tally
        t.naive_time_s += naive_s
        t.naive_transactions += naive_tx
        t.minimum_time_s += minimum_s
        if bound_s is not None:
            t.bound_time_s += bound_s
            for kind, value in bound_kind.items():
                t.bound_kind_s[kind] = t.bound_kind_s.get(kind, 0.0) + value
        t.batches += 1

    def instrument_bound(self) -> InstrumentBound | None:
        """Critical-path costs per operation kind with the bench's documented commands (docs/bench-time.md), from
        the timing table the bench projects with (None on a real bench, whose times are measured)."""
        timing = getattr(self.hw, "timing", None)
        if timing is None or self.plan is None:
            return None
        if self._heater_lines is None:
            self._heater_lines = self._lines_per_configuration()
        # a power meter's reading costs what the table says; other readouts (source meters with their source delay,
        # a DAQ) what one reading on its own took when the unit costs were probed
        overhead = None
        if getattr(self.hw, "power_meter", None) is None and self._reading_alone_s is not None:
            overhead = max(self._reading_alone_s - self.averaging_time_s, 0.0)
        return InstrumentBound.from_timing(
            timing, heater_lines=self._heater_lines, lasers_per_encoding=int(self.mapping.channels.size),
            settle_s=self.hw.settle_time_s, averaging_s=self.averaging_time_s,
            reading_overlaps=bool(getattr(self.hw.readout, "can_start_read", False)), reading_overhead_s=overhead)

    def _lines_per_configuration(self) -> int:
        """Heater lines from one configuration to the next in schedule order (the most over the plan's
        consecutive configurations of a block), by the heater driver's protocol; every ring when it cannot say."""
        hw, blocks = self.hw, self.config_block
        lines = 0
        for cb in np.unique(blocks):
            configs = np.flatnonzero(blocks == cb)
            for a, b in zip(configs[:-1], configs[1:]):
                changed = np.flatnonzero(self.drives[a] != self.drives[b])
                lines = max(lines, hw.heater_lines(changed) or 0) if changed.size else lines
        if lines == 0:
            lines = hw.heater_lines() or int(hw.ring_channels.size)
        return lines

    def _record_ops(self, ops: OpCounts, time_s: float, transactions: float,
                    kind_time_s: dict[str, float] | None = None,
                    kind_transactions: dict[str, float] | None = None) -> None:
        t = self._tally
        t.configs += ops.configs
        t.encodings += ops.encodings
        t.readings += ops.readings
        t.time_s += time_s
        t.transactions += transactions
        for kind, value in (kind_time_s or {}).items():
            t.kind_time_s[kind] = t.kind_time_s.get(kind, 0.0) + value
        for kind, value in (kind_transactions or {}).items():
            t.kind_transactions[kind] = t.kind_transactions.get(kind, 0.0) + value

    # -- closed-loop refinement of the configurations --------------------------------------------------------------
    def _probe_powers(self) -> np.ndarray:
        """Encodings that measure every configuration's weights as a batch reads them: the reference (every channel
        at the mid power), then each usable channel alone raised to the high power."""
        enc = self.encoding
        chans = self.mapping.channels
        powers = np.full((chans.size + 1, self.hw.n_channels), enc.mid_w)
        powers[1 + np.arange(chans.size), chans] = enc.high_w
        return powers

    #: Tiles between two readings of their block's bias configuration when the configurations are measured.
    PROBE_BIAS_EVERY: ClassVar[int] = 16

    def _probe_sequence(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Configurations in the order the measurement visits them: tile-major, each block's bias configuration
        before its tiles, after every ``PROBE_BIAS_EVERY`` of them and at the end; with each tile's position in that
        order and the positions of the bias visits before and after it."""
        assert self.plan is not None
        plan = self.plan
        seq: list[int] = []
        tile_pos = np.zeros(plan.n_tiles, dtype=int)
        lo = np.zeros(plan.n_tiles, dtype=int)
        hi = np.zeros(plan.n_tiles, dtype=int)
        for cb in range(plan.n_blocks):
            bias = plan.n_tiles + cb
            tiles = np.flatnonzero(plan.block == cb)
            seq.append(bias)
            last, pending = len(seq) - 1, []
            for k, tile in enumerate(tiles.tolist()):
                tile_pos[tile] = len(seq)
                seq.append(tile)
                pending.append(tile)
                if (k + 1) % self.PROBE_BIAS_EVERY == 0 or k == tiles.size - 1:
                    seq.append(bias)
                    lo[pending], hi[pending] = last, len(seq) - 1
                    last, pending = len(seq) - 1, []
        return np.array(seq, dtype=int), tile_pos, lo, hi

    def measure_configurations(self) -> tuple[np.ndarray, np.ndarray]:
        """Weights (T, B, R) of every configuration, measured the way a batch's readings see them: the reading at
        each usable channel's raised encoding minus the reference, over ``G (P_high - P_mid)`` (NaN for rings on no
        usable channel); and (n_tiles, B, R) their block's bias configuration measured around each tile's time.

        Tile-major where configurations are the slow operation (:meth:`_probe_order`: the current bench's 41
        greymatter lines, where a pass over mnist5k's 535 configurations takes minutes over which the chip drifts),
        so one configuration's readings are seconds apart; each block's bias is read again every few tiles and
        interpolated to each tile's time (:meth:`_probe_sequence`)."""
        powers = self._probe_powers()
        seq, tile_pos, lo, hi = self._probe_sequence()
        readings = self._read_probe(powers, seq)                           # (S, n_cols + 1, B)
        if readings is None:
            raise NotImplementedError(f"{type(self).__name__} cannot read the configurations on their own")
        chans = self.mapping.channels
        step = self.encoding.high_w - self.encoding.mid_w
        diff = readings[:, 1:, :] - readings[:, :1, :]                     # (S, n_cols, B)
        w_ch = np.swapaxes(diff, 1, 2) / (self.mapping.gain[None][:, :, chans] * step)   # (S, B, n_cols)
        nb, nr = self.mapping.centre.shape
        w_seq = np.full((readings.shape[0], nb, nr), np.nan)
        ring = self.mapping.ring_of[:, chans]                              # (B, n_cols)
        b_idx = np.repeat(np.arange(nb)[:, None], chans.size, axis=1)
        ok = ring >= 0
        w_seq[:, b_idx[ok], ring[ok]] = w_ch[:, ok]
        out = np.full((len(self.drives), nb, nr), np.nan)
        out[seq] = w_seq                                                   # a bias: its last reading
        alpha = ((tile_pos - lo) / (hi - lo))[:, None, None]
        bias_near = (1.0 - alpha) * w_seq[lo] + alpha * w_seq[hi]
        return out, bias_near

    def _probe_order(self) -> Order:
        """Tile-major where a configuration costs at least half a batch's encoding (the current bench: then one
        configuration's readings are seconds apart however long the pass), else encoding-major (the default bench,
        where a pass is short). Half: a probe's encoding changes two lasers where a batch's changes all of them,
        and the one power settle they wait for dominates either."""
        c = self.costs
        return "tile" if c is None or c.config_s >= 0.5 * c.encode_s else "sample"

    def _read_probe(self, powers: np.ndarray, sequence: np.ndarray) -> np.ndarray | None:
        """Readings (S, N, B) of the configurations ``sequence`` (indices into the drives, in that order, each at
        every one of ``powers`` (N, C) before the next), as the subclass reads; None where it cannot (then the
        configurations are not refined)."""
        return None

    def refine_configurations(self) -> dict[str, Any]:
        """Closed-loop correction of every configuration's weights (``refine_iterations`` times): measure them as a
        batch reads them (:meth:`measure_configurations`), ask the weight model for ``request - (measured -
        target)`` (a Newton step on each ring's detuning with the model's slope, neighbours and crosstalk
        included, as ``calibration.refine`` does for one setting) and keep the best detunings seen. What is
        corrected is what the products see: each tile's weights against its block's bias configuration.

        Why: the configurations of photonic DFA are fixed for the whole run, so what the weight model mispredicts
        at each of them (a few 1e-2 on balanced-only benches, whose calibration is coarser) is a fixed error of
        every product; one measured correction removes it for as long as the chip holds still (drift checks then
        follow the shift with the corrected detunings). The first measurement is taken twice: their difference is the
        readings' noise, and only errors beyond twice that are corrected. Costs ``refine_iterations + 2`` passes of
        ``channels + 1`` encodings over the configurations, recorded apart from the batches' bench time."""
        assert self.plan is not None and self._targets is not None and self._deltas is not None
        self._refine_due = False
        self._refined = False
        if type(self)._read_probe is PhotonicMatVec._read_probe:      # a readout that cannot probe
            return {}
        t0, x0 = self._now()
        wall0 = time.perf_counter()
        targets = self._targets
        n_tiles, block = self.plan.n_tiles, self.plan.block
        bias_t = targets[n_tiles:][block]
        request = targets.copy()
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        history: list[float] = []
        noise = None
        recentres: list[float] = []
        for it in range(self.options.refine_iterations + 1):
            if it and self.options.refine_recenter:
                recentres.append(self._recenter_for_refinement())
            measured, bias_near = self.measure_configurations()
            if noise is None:
                # the first pass twice: the readings' own noise, per bank (in weight units; a bank's gain sets it)
                again, bias_again = self.measure_configurations()
                spread = np.where(np.isfinite(again - measured), again - measured, np.nan)
                noise = np.sqrt(0.5 * np.nanmean(spread ** 2, axis=(0, 2)))             # (B,)
                measured, bias_near = 0.5 * (measured + again), 0.5 * (bias_near + bias_again)
            # what the products see: each tile against its block's bias configuration (their common error cancels
            # there, so only the difference is corrected; the bias configurations stay as the model sets them)
            err = np.zeros_like(targets)
            err[:n_tiles] = (measured[:n_tiles] - bias_near) - (targets[:n_tiles] - bias_t)
            err[~np.isfinite(measured)] = np.nan
            err[n_tiles:] = np.nan
            used = np.isfinite(err)
            rmse = float(np.sqrt(np.mean(err[used] ** 2))) if used.any() else 0.0
            history.append(rmse)
            if best is None or rmse < best[0]:
                best = (rmse, self._deltas.copy(), self.drives.copy())
            if it == self.options.refine_iterations:
                break
            # only what the readings resolve is corrected: an error within twice their noise is left to the model
            # (whose errors at a bank's centre cancel against the bias configuration; a correction would add the
            # readings' noise to every configuration instead: on a bank with a narrow range that noise dominates)
            significant = used & (np.abs(err) > 2.0 * np.sqrt(2.0) * noise[None, :, None])
            request = request - np.where(significant, err, 0.0)
            deltas = self.cal.weights.solve(request, strict=False)
            drives = self.cal.solve_from_detunings(targets, deltas, limits=self.hw.limits)
            self._deltas, self.drives = deltas, drives
            self._config = None                   # index of an old drive: every configuration is written anew
        assert best is not None
        _, self._deltas, self.drives = best
        if self.options.refine_recenter:           # the batches start from the chip as it is now
            recentres.append(self._recenter_for_refinement())
        self._refined = True
        self._heater_lines = None
        self._config = None                       # the probe passes left another configuration applied
        t1, x1 = self._now()
        record = {"batch": self._batches, "rmse_history": history, "rmse": best[0],
                  "reading_noise": None if noise is None else noise.tolist(),
                  "recentre_shifts_pm": recentres or None,
                  "time_s": t1 - t0, "transactions": x1 - x0, "wall_s": time.perf_counter() - wall0}
        self._tally.refinements.append(record)
        log.info("configurations refined: weight rms error %s (bench time %.1f s)",
                 " -> ".join(f"{h:.4g}" for h in history), t1 - t0)
        return record

    def _recenter_for_refinement(self) -> float:
        """Recentre through the instruments and solve the drives again from the present detunings: the chip's walk
        since the last recentring goes into the common shift, not into every configuration's correction. Returns
        the mean shift (pm)."""
        assert self._targets is not None and self._deltas is not None
        self._reference_lasers()
        self.cal.recenter(self.hw, self.options.drift_threshold)
        self.drives = self.cal.solve_from_detunings(self._targets, self._deltas, limits=self.hw.limits)
        self._config = None
        return float(np.mean(self.cal.common_shift_m) * 1e12)

    # -- drift ------------------------------------------------------------------------------------------------------
    def drift_check_due(self) -> bool:
        """Whether the options call for a drift check before the next batch: before the first batch of a session
        (lasers re-tuned, chip temperature moved since calibration) and every ``drift_every`` batches. Asked by the
        run's drift step (:mod:`labctl.dfa.drift_steps`), which decides; a session counts as checked once asked."""
        if not self._session_checked:
            self._session_checked = True
            return bool(self.options.recenter_at_start and self.cal.drift_reference is not None)
        every = self.options.drift_every
        return bool(every and self._batches > 0 and self._batches % every == 0)

    def check_drift(self) -> dict[str, Any]:
        """Drift check, then follow the shift. When the check trips, confirm: the drift references' target weights
        are set again with the shifted model and measured; if they still miss by more than ``recalibrate_rmse``
        (default: the drift trip level, span / 2**7) the event says ``needs_recalibration`` and the run's
        recalibration step follows (:meth:`use_calibration`); the engine does not recalibrate by itself.

        Check and confirmation measure through the instruments, except where a subclass reads the same physics more
        directly (:meth:`_reference_weights`, the fast path) once one of each through the instruments has measured
        what it costs on the bench (that cost is then charged to the clock); recalibrations always go through the
        instruments.
        """
        if not self._ready:
            self.start()
        t0, x0 = self._now()
        wall0 = time.perf_counter()
        can_direct = self._direct_reference_weights()
        charged = [0.0, 0]                            # bench time and transactions of the direct steps
        touched = False                               # anything sent to the instruments
        if can_direct and self._drift_cost is not None:
            report = self.cal.recenter(self.hw, self.options.drift_threshold, measure=self._reference_weights)
            charged = [self._drift_cost[0], self._drift_cost[1]]
            direct = True
        else:
            self._reference_lasers()
            report = self.cal.recenter(self.hw, self.options.drift_threshold)
            touched, direct = True, False
        limit = self.options.recalibrate_rmse if self.options.recalibrate_rmse is not None else report.threshold
        residual = None
        confirm = (0.0, 0)                            # the confirmation's share of a check through the instruments
        if report.tripped:
            if can_direct and self._confirm_cost is not None:
                residual = self._direct_residual()
                charged[0] += self._confirm_cost[0]
                charged[1] += self._confirm_cost[1]
            else:
                self._reference_lasers()
                c0, y0 = self._now()
                residual = self._reference_residual()
                c1, y1 = self._now()
                touched = True
                confirm = (c1 - c0, y1 - y0)
                if can_direct:
                    self._confirm_cost = confirm
        event: dict[str, Any] = {"batch": self._batches, "rmse": report.rmse, "threshold": report.threshold,
                                 "tripped": report.tripped, "common_shift_pm": report.common_shift_m * 1e12,
                                 "residual_rmse": residual, "recalibrated": False, "direct": direct}
        self._tally.drift_checks += 1
        needs = residual is not None and residual > limit
        event["needs_recalibration"] = needs
        if touched:
            self._ready = False
        if not needs:
            self._solve_drives(detunings=False)
            if touched:
                self.start()
        t1, x1 = self._now()
        if can_direct and not direct and not needs:
            self._drift_cost = (t1 - t0 - confirm[0], x1 - x0 - confirm[1])
        if charged[0] or charged[1]:
            self._advance_clock(charged[0], "drift check")
        event["time_s"], event["transactions"] = t1 - t0 + charged[0], x1 - x0 + charged[1]
        event["wall_s"] = time.perf_counter() - wall0
        self._tally.events.append(event)
        log.info("drift check at batch %d: %s", self._batches, event)
        return event

    def _direct_residual(self, targets: np.ndarray | None = None) -> float:
        """:meth:`_reference_residual` with the readings from :meth:`_reference_weights`."""
        expected = None
        if targets is None:
            ref = self.cal.drift_reference
            assert ref is not None
            targets, expected = ref.targets, ref.measured
        drives = np.array([self.cal.solve(target, limits=self.hw.limits).drive for target in targets])
        measured = self._reference_weights(drives)
        return float(np.sqrt(np.mean((measured - (targets if expected is None else expected)) ** 2)))

    def confirm_targets(self, targets: np.ndarray) -> float:
        """RMS error of ``targets`` (M, B, R) set with the engine's calibration and measured now: how well a new
        calibration does on the weights the one it replaced was checked with. Measured as a tripped drift check's
        confirmation is (directly where the engine reads the chip directly, charging what a confirmation through
        the instruments costs); recorded on the last drift event."""
        t0, x0 = self._now()
        # the replaced calibration's targets, held inside this calibration's ranges (a ring held at one weight by
        # one calibration may be held at a slightly different one by the next: its old target is not settable)
        w_min, w_max = self.cal.achievable_range
        targets = np.clip(np.asarray(targets, dtype=float), w_min, w_max)
        if self._direct_reference_weights() and self._confirm_cost is not None:
            residual = self._direct_residual(targets)
            self._advance_clock(self._confirm_cost[0], "drift check")
            charged = self._confirm_cost
        else:
            self._reference_lasers()
            residual = self._reference_residual(targets)
            self._ready = False
            charged = (0.0, 0)
        t1, x1 = self._now()
        if self._tally.events:
            self._tally.events[-1].setdefault("confirmations", []).append(
                {"residual_rmse": residual, "calibration_sha256": self.cal.sha256,
                 "time_s": t1 - t0, "transactions": x1 - x0 + charged[1]})
        return residual

    def _reference_lasers(self) -> None:
        """The drift references are read at the calibration powers."""
        p_cal = self.cal.rmap.laser_power_w
        self.hw.forget_lasers()      # every channel is set (measuring weights switches lasers one at a time)
        self.hw.set_laser_powers(np.asarray(p_cal, dtype=float) if p_cal is not None
                                 else np.full(self.hw.n_channels, self.encoding.high_w))
        self.hw.forget_lasers()
        self._config = None

    def _direct_reference_weights(self) -> bool:
        """True where :meth:`_reference_weights` reads the chip without the instruments (the fast path)."""
        return False

    def _reference_weights(self, drives: np.ndarray) -> np.ndarray:
        """Weights (M, B, R) the drift references' drives (M, H) give now, as ``Calibration.measure_weights`` reads
        them; only where :meth:`_direct_reference_weights`."""
        raise NotImplementedError

    def _advance_clock(self, time_s: float, what: str) -> None:
        """Charge projected bench time of work done without the instruments to the session's (virtual) clock."""
        self.hw.clock.sleep(time_s, what)

    def _reference_residual(self, targets: np.ndarray | None = None) -> float | None:
        """The drift references' targets (or ``targets``) set with the (recentered) model and measured now through
        the instruments: RMS difference from what the calibration measured at them when it was made (what the
        recentring did not bring back: the model's own error at those targets, which a recentring cannot change and
        which on a balanced-only bench is several times the trip level, cancels), or from ``targets``."""
        expected = None
        if targets is None:
            ref = self.cal.drift_reference
            if ref is None:
                return None
            targets, expected = ref.targets, ref.measured
        measured = []
        for target in targets:
            self.cal.set_weights(self.hw, target, refine=False)
            measured.append(self.cal.measure_weights(self.hw))
        return float(np.sqrt(np.mean((np.array(measured) - (targets if expected is None else expected)) ** 2)))

    def use_calibration(self, cal: Calibration) -> None:
        """Continue with a new calibration of the same bench (after the run's recalibration step): the mapping, tiles
        and drives follow it; the last drift event records it."""
        cal.check_bench(self.hw)
        self.hw.forget_lasers()   # calibrating sets lasers and heaters its own way: nothing known is still set
        self._config = None
        self._ready = False
        self.cal = cal
        self.mapping = WeightMapping.from_calibration(cal, self.options)
        self._setup_encoding()
        self._tally.recalibrations += 1
        if self._tally.events:
            self._tally.events[-1].update(recalibrated=True, calibration_sha256=cal.sha256)
        if self.plan is not None:
            shapes = self.plan.shapes
            # the plan depends on the usable banks and channels, which a new calibration may change
            self.plan = self.mapping.plan(shapes)
            self.tiles = self.plan.tile_matrices(self._matrices)
            self.config_block = self.plan.config_blocks(extra_per_block=1)
            self._solve_drives()
            self._refined = False
            self._refine_due = self.options.refine_iterations > 0

    # -- for the run's record and projections ---------------------------------------------------------------------
    def running_counters(self) -> dict[str, float]:
        """Counters since the last :meth:`pop_counters` (the epoch so far), not reset: a per-batch record."""
        t = self._tally
        return {"reconfigurations": t.configs, "encodings": t.encodings, "readings": t.readings,
                "transactions": t.transactions, "projected_time_s": t.time_s, "naive_time_s": t.naive_time_s,
                "minimum_time_s": t.minimum_time_s, "drift_checks": t.drift_checks,
                "recalibrations": t.recalibrations}

    def batch_estimate(self, n_samples: int) -> dict[str, float] | None:
        """Operations and bench time of one mini-batch of ``n_samples`` from the unit costs measured on the bench
        (None before :meth:`start` measured them)."""
        if self.costs is None or self.plan is None:
            return None
        ops = op_counts(self.order, self.drives.shape[0], self.plan.n_blocks, n_samples)
        return {"configs": ops.configs, "encodings": ops.encodings, "readings": ops.readings,
                "time_s": ops.time_s(self.costs), "transactions": ops.transactions(self.costs)}

    # -- MatVecEngine protocol ----------------------------------------------------------------------------------
    def pop_counters(self) -> dict[str, Any]:
        t = self._tally
        self._tally = _Tally()
        if t.batches == 0 and not t.events and not t.refinements:
            return {}
        out: dict[str, Any] = {
            "order": self.order, "batches": t.batches,
            "reconfigurations": t.configs, "encodings": t.encodings, "readings": t.readings,
            "transactions": t.transactions, "projected_time_s": t.time_s,
            "naive_time_s": t.naive_time_s, "naive_transactions": t.naive_transactions,
            "minimum_time_s": t.minimum_time_s,
            "ratio_to_naive": t.time_s / t.naive_time_s if t.naive_time_s > 0 else None,
            "ratio_to_minimum": t.time_s / t.minimum_time_s if t.minimum_time_s > 0 else None,
            "instrument_bound_s": t.bound_time_s if t.bound_time_s > 0 else None,
            "ratio_to_instrument_bound": t.time_s / t.bound_time_s if t.bound_time_s > 0 else None,
            "bound_minimum_ratio": t.bound_time_s / t.minimum_time_s if t.bound_time_s > 0 < t.minimum_time_s
            else None,
            "time_by_kind_s": dict(t.kind_time_s), "transactions_by_kind": dict(t.kind_transactions),
            "bound_by_kind_s": dict(t.bound_kind_s),
            "drift_check_time_s": sum(float(e.get("time_s") or 0.0) for e in t.events),
            # the recalibrations the run's drift steps made after those checks (their bench time, not the checks')
            "recalibration_time_s": sum(float(e.get("recalibration_time_s") or 0.0) for e in t.events),
            "drift_checks": t.drift_checks, "recalibrations": t.recalibrations,
            "calibration_sha256": self.cal.sha256,
            "readout_averaging_s": self.averaging_time_s if self._ready else None,
        }
        if t.err_n:
            mean = t.err_sum / t.err_n
            out["product_error_mean"] = mean
            out["product_error_std"] = float(np.sqrt(max(t.err_sumsq / t.err_n - mean * mean, 0.0)))
        if t.events:
            out["drift_events"] = t.events
        if t.refinements:
            out["refinements"] = t.refinements
            out["refine_time_s"] = sum(float(r["time_s"]) for r in t.refinements)
            out["refined_weight_rmse"] = float(t.refinements[-1]["rmse"])
        return out

    def describe(self) -> dict[str, Any]:
        return {"engine": self.kind, "options": asdict(self.options), "encoding": "offset",
                "low_w": self.encoding.low_w, "high_w": self.encoding.high_w,
                "calibration_sha256": self.cal.sha256, "mapping": self.mapping.describe(),
                "tiles": None if self.plan is None else self.plan.n_tiles,
                "unit_costs": None if self.costs is None else asdict(self.costs), "readout": self._readout_record()}

    def _readout_record(self) -> dict[str, Any]:
        """The readout settings of the run's readings: averaging asked for and how it was chosen (s), and what the
        readout took (s; None before the session starts)."""
        requested, chosen_by = self.readout_request()
        return {"requested_s": requested, "chosen_by": chosen_by,
                "averaging_time_s": self.averaging_time_s if self._ready else None}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "calibration_sha256": self.cal.sha256, "batches": self._batches,
            "common_shift_m": np.asarray(self.cal.common_shift_m, dtype=float).tolist(),
            "laser_w": None if self.hw._laser_w is None else self.hw._laser_w.tolist(),
            "costs": None if self.costs is None else asdict(self.costs), "order": self.order,
            # what the readout accepted when the calibration measured weights (learned once per session; a resumed
            # session must not spend instrument time re-learning it, or its virtual clock would differ)
            "measure_averaging_s": getattr(self.cal, "_averaging_time_s", None),
            "drift_cost": None if self._drift_cost is None else list(self._drift_cost),
            "confirm_cost": None if self._confirm_cost is None else list(self._confirm_cost),
            "config": self._config,
            "reading_alone_s": self._reading_alone_s,
            # the configurations' refined detunings (measured corrections a resumed run must not measure again)
            "refined_deltas_m": None if self._deltas is None or not self._refined else self._deltas.tolist(),
            "refine_due": self._refine_due,
        }
        state.update(self.hw.state_dict())      # the emulator's streams and clock, through the session
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("calibration_sha256") != self.cal.sha256:
            raise ValueError("checkpoint was made with another calibration "
                             f"({state.get('calibration_sha256')} != {self.cal.sha256})")
        self._batches = int(state["batches"])
        self._session_checked = True
        if state.get("measure_averaging_s") is not None:
            self.cal._averaging_time_s = float(state["measure_averaging_s"])
        self.cal.common_shift_m = np.asarray(state["common_shift_m"], dtype=float)
        if state.get("refined_deltas_m") is not None and self._deltas is not None:
            self._deltas = np.asarray(state["refined_deltas_m"], dtype=float).reshape(self._deltas.shape)
            self._refined = True
        self._refine_due = bool(state.get("refine_due", self._refine_due))
        if self.plan is not None:
            self._solve_drives(detunings=False)
        if state.get("costs") is not None:
            self.costs = UnitCosts(**state["costs"])
        if state.get("reading_alone_s") is not None:
            self._reading_alone_s = float(state["reading_alone_s"])
        cost, confirm = state.get("drift_cost"), state.get("confirm_cost")
        self._drift_cost = None if cost is None else (float(cost[0]), int(cost[1]))
        self._confirm_cost = None if confirm is None else (float(confirm[0]), int(confirm[1]))
        self.start()
        self.order = state.get("order", self.order)
        laser_w = None if state.get("laser_w") is None else np.array(state["laser_w"], dtype=float)
        config = state.get("config")
        self._config = None
        if config is not None and self.plan is not None and 0 <= int(config) < len(self.drives):
            self._resume_instruments(int(config), laser_w)
        self.hw._laser_w = laser_w
        self.hw.load_state_dict(state)      # the emulator's state (and clock) as checkpointed, after the above

    def _resume_instruments(self, config: int, laser_w: np.ndarray | None) -> None:
        """Bring the instruments where the checkpointed run left them before a batch: the configuration applied
        (its bench time does not count: the emulator's clock is restored afterwards, and a real bench cannot be
        rewound anyway). Subclasses that read through the instruments also put them in the loop's modes."""


class BenchMatVec(PhotonicMatVec):
    """Readings through the instruments, in the scheduled order; time and transactions as the bench counts them."""

    kind = "photonic-stack"

    def _resume_instruments(self, config: int, laser_w: np.ndarray | None) -> None:
        """The configuration applied and one visit through the instrument loop (its reading discarded), so the
        readout is in the loop's triggering mode and the heaters' record holds the configuration, as they were
        after the checkpointed batch."""
        powers = (laser_w if laser_w is not None else np.full(self.hw.n_channels, self.encoding.mid_w))[None]
        self._set_config(config)
        self.hw.read_configurations(self.drives, powers, [(config, 0)], current=config)
        self._config = config

    def _read_probe(self, powers: np.ndarray, sequence: np.ndarray) -> np.ndarray:
        """Through the instruments, by the batches' loop, in the cheaper order for the measured unit costs (both go
        back and forth)."""
        n, s_n = powers.shape[0], len(sequence)
        if self._probe_order() == "tile":
            visits = [(s, i if s % 2 == 0 else n - 1 - i) for s in range(s_n) for i in range(n)]
        else:
            visits = [(s if i % 2 == 0 else s_n - 1 - s, i) for i in range(n) for s in range(s_n)]
        out, _, _ = self.hw.read_configurations(self.drives[sequence], powers, visits, current=None)
        self._config = None
        return out

    def _read_batch(self, powers: np.ndarray, n: int) -> np.ndarray:
        t0, x0 = self._now()
        out, counts, self._config = self.hw.read_configurations(
            self.drives, powers, schedule(self.order, self.config_block, n, current=self._config),
            power_index=self.config_block, current=self._config)
        t1, x1 = self._now()
        self._record_ops(OpCounts(counts.configs, counts.encodings, counts.readings), t1 - t0, x1 - x0,
                         dict(counts.time_s), {k: float(v) for k, v in counts.transactions.items()})
        return out


__all__ = ["BenchMatVec", "OffsetEncoding", "PhotonicMatVec", "PhotonicOptions", "PhotonicSetupError",
           "WeightMapping"]
