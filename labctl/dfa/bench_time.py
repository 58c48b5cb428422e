"""Bench time of a photonic-DFA batch: the physical minimum and the instrument-bound minimum.

Both are lower bounds on the bench time of the same operations (every configuration read at every encoding of a
batch), minimised over the engine's orders; they are defined in ``docs/bench-time.md``, which derives the second
one from the instrument timing table (``reference-chip.md``) and the instruments' command sets:

* physical minimum: no communication at all: per configuration the heater settle time, per encoding the lasers'
  power settling, per reading the averaging time;
* instrument-bound minimum: what the documented commands add on top when every overlap the instruments allow is
  taken: the heater lines a configuration needs (the driver's ``lines_for``: one per Qontrol module, one per
  greymatter channel plus the update), one command per laser whose power changes (each laser settles while the
  next is commanded), and the part of a reading that cannot travel while the next configuration's heater lines
  go out.

The engine reports its measured (stack) or projected (fast path) bench time against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.dfa.tiling import Order, UnitCosts, op_counts

#: Orders a minimum is taken over.
ORDERED: tuple[Order, ...] = ("tile", "sample")


def physical_minimum_s(n_configs: int, n_blocks: int, n_samples: int, *, settle_s: float, laser_settle_s: float,
                       averaging_s: float) -> float:
    """Physical minimum of one batch (docs/bench-time.md §1), the cheaper order."""
    costs = UnitCosts(config_s=settle_s, encode_s=laser_settle_s, read_s=averaging_s)
    return min(op_counts(o, n_configs, n_blocks, n_samples).time_s(costs) for o in ORDERED)


def physical_by_kind_s(n_configs: int, n_blocks: int, n_samples: int, *, settle_s: float, laser_settle_s: float,
                       averaging_s: float) -> dict[str, float]:
    """:func:`physical_minimum_s` split into the session's operation kinds (its cheaper order)."""
    costs = UnitCosts(config_s=settle_s, encode_s=laser_settle_s, read_s=averaging_s)
    order = min(ORDERED, key=lambda o: op_counts(o, n_configs, n_blocks, n_samples).time_s(costs))
    return op_counts(order, n_configs, n_blocks, n_samples).time_by_kind_s(costs)


@dataclass(frozen=True)
class InstrumentBound:
    """Critical-path cost of each operation kind with the documented commands and every overlap they allow
    (docs/bench-time.md §2), s."""

    config_s: float        # heater lines x line time + settle
    encode_s: float        # (lasers changed - 1) x command time + power change time
    read_s: float          # a reading followed by a configuration change: what its heater lines and settle cannot hide
    read_alone_s: float    # a reading followed by an encoding change or the end of the batch

    @classmethod
    def from_timing(cls, timing: dict[str, Any], *, heater_lines: int, lasers_per_encoding: int, settle_s: float,
                    averaging_s: float, reading_overlaps: bool, reading_overhead_s: float | None = None
                    ) -> InstrumentBound:
        """From the timing table (``ChipSpec.timing`` fields) and the bench's instrument facts.

        ``heater_lines``: lines one configuration needs (heater driver's ``lines_for``); ``lasers_per_encoding``:
        lasers whose power changes per encoding; ``reading_overlaps``: the readout can start a reading and
        collect it later (its averaging and reply then travel while the next heater lines go out and settle);
        ``reading_overhead_s``: a reading's cost beyond its averaging time (default: the table's power-meter
        overhead)."""
        line_s = float(timing["serial_line_s"])
        lines_s = heater_lines * line_s
        command_s = float(timing["scpi_query_s"])
        change_s = float(timing["laser_power_change_s"])
        overhead = float(timing["meter_overhead_s"]) if reading_overhead_s is None else reading_overhead_s
        reading_s = averaging_s + overhead
        encode_s = max(lasers_per_encoding - 1, 0) * command_s + (change_s if lasers_per_encoding else 0.0)
        hidden = max(reading_s - lines_s - settle_s, 0.0) if reading_overlaps else reading_s
        return cls(config_s=lines_s + settle_s, encode_s=encode_s, read_s=hidden, read_alone_s=reading_s)

    def batch_s(self, order: Order, n_configs: int, n_blocks: int, n_samples: int) -> float:
        """Lower bound of one batch in ``order``: the configuration change at each block's first visit goes out
        while that block's first encoding settles (it costs only what exceeds the encoding)."""
        ops = op_counts(order, n_configs, n_blocks, n_samples)
        alone = ops.encodings                       # readings followed by an encoding change, or the last one
        overlapped = max(ops.readings - alone, 0)
        joint = n_blocks * max(self.config_s - self.encode_s, 0.0)
        return ((ops.configs - n_blocks) * self.config_s + joint + ops.encodings * self.encode_s
                + overlapped * self.read_s + alone * self.read_alone_s)

    def minimum_s(self, n_configs: int, n_blocks: int, n_samples: int) -> float:
        """Instrument-bound minimum of one batch, the cheaper order."""
        return min(self.batch_s(o, n_configs, n_blocks, n_samples) for o in ORDERED)

    def by_kind_s(self, order: Order, n_configs: int, n_blocks: int, n_samples: int) -> dict[str, float]:
        """:meth:`batch_s` split into the session's operation kinds (``labctl.bench.session.KINDS``): the reading
        in flight before an encoding change is collected as part of the encoding, the batch's last one once per
        batch."""
        ops = op_counts(order, n_configs, n_blocks, n_samples)
        alone = ops.encodings
        return {"configure": (ops.configs - n_blocks) * self.config_s
                + n_blocks * max(self.config_s - self.encode_s, 0.0),
                "encode": ops.encodings * self.encode_s + (alone - 1) * self.read_alone_s,
                "read": max(ops.readings - alone, 0) * self.read_s,
                "batch": self.read_alone_s}


__all__ = ["InstrumentBound", "ORDERED", "physical_by_kind_s", "physical_minimum_s"]
