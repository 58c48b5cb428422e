"""How the feedback matrices are cut into chip-sized tiles, and in which order tiles and errors meet the bench.

One heater configuration of a weight-bank chip computes ``y_b = sum_c W[b, c] x_c`` for every bank ``b`` at once:
banks are output rows, WDM channels are input columns. DFA needs ``B_l^T e`` (``B_l`` is (n_out, n_l)), so a tile
is a block of ``n_banks`` hidden units (rows) by up to ``n_cols`` error components (columns, one per usable
channel); when the error is longer than a bank has channels, the column blocks' partial sums are added digitally.
Every element of every ``B_l`` belongs to exactly one tile (``coverage`` checks it).

Three costs dominate on a bench: a heater reconfiguration (write + settle), an encoding (new laser powers: one
command per laser, each ~20 ms to settle on N777x-class lasers) and a reading. Their order is a choice:

* ``tile``   (tile-major): configure each tile once per mini-batch, stream the batch's encodings through it.
  Configurations T, encodings T * N + cb, readings T * (N + 1).
* ``sample`` (encoding-major): encode each error once per column block, visit every tile of that block.
  Configurations (N + 1) * (T - cb) + cb, encodings cb * (N + 1), readings T * (N + 1).
* ``naive``: each product on its own: per sample and tile configure, encode the reference, read, encode, read.
  Configurations N * T, encodings 2 * N * T, readings 2 * N * T.

(N samples plus one reference encoding per batch, T configurations, cb column blocks.) Both ordered schedules go
back and forth ("snake"): ``sample`` visits a block's configurations forward for one encoding and backward for
the next, so the configuration at the turn is read with both encodings without being written again; ``tile``
does the same with the encodings at the turn between two configurations. When heater writes are cheap and laser
power changes slow, as on the reference bench, ``sample`` wins by an order of magnitude; on a bench with fast
modulators and slow heaters ``tile`` wins. ``auto`` picks the cheaper from unit costs measured on the bench.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Order = Literal["tile", "sample", "naive"]
ORDERS: tuple[str, ...] = ("tile", "sample", "naive")


@dataclass(frozen=True)
class UnitCosts:
    """Time (s) and instrument transactions of one configuration, encoding and reading on a bench, and of what a
    batch costs once (``batch_s``: e.g. the last reading's reply and the lasers' error queues)."""

    config_s: float
    encode_s: float
    read_s: float
    config_tx: float = 0.0
    encode_tx: float = 0.0
    read_tx: float = 0.0
    batch_s: float = 0.0
    batch_tx: float = 0.0


@dataclass(frozen=True)
class OpCounts:
    """Operations of one mini-batch in a given order."""

    configs: int
    encodings: int
    readings: int

    def time_s(self, c: UnitCosts) -> float:
        return self.configs * c.config_s + self.encodings * c.encode_s + self.readings * c.read_s + c.batch_s

    def transactions(self, c: UnitCosts) -> float:
        return (self.configs * c.config_tx + self.encodings * c.encode_tx + self.readings * c.read_tx
                + c.batch_tx)

    def time_by_kind_s(self, c: UnitCosts) -> dict[str, float]:
        """Bench time per operation kind (the session's kinds: configure, encode, read, batch)."""
        return {"configure": self.configs * c.config_s, "encode": self.encodings * c.encode_s,
                "read": self.readings * c.read_s, "batch": c.batch_s}


class TilePlan:
    """Tiles of ``B_l^T`` for a chip of ``n_banks`` banks reading ``n_cols`` usable channels.

    ``rows[t]`` (n_banks,) are the hidden units bank 0.. computes in tile ``t`` (-1: bank idle), ``cols[t]``
    (n_cols,) the error components on the usable channels (-1: channel held at the reference power),
    ``layer[t]`` its layer and ``block[t]`` its column block. Tiles are sorted by column block, then layer.
    """

    def __init__(self, shapes: Sequence[tuple[int, int]], n_banks: int, n_cols: int,
                 usable: np.ndarray | None = None) -> None:
        """``usable`` (n_banks, n_cols) bool: which bank can carry which channel (a ring with too little weight range
        cannot); None or all True: every one. With gaps the plan packs rows and their remainders (see
        :meth:`_pack`)."""
        if n_banks < 1 or n_cols < 1:
            raise ValueError(f"a tile needs at least one bank and one channel, got {n_banks} x {n_cols}")
        self.shapes = [(int(a), int(b)) for a, b in shapes]
        n_outs = {s[0] for s in self.shapes}
        if len(n_outs) != 1:
            raise ValueError(f"every feedback matrix must have the same number of rows (n_out), got {self.shapes}")
        self.n_out = n_outs.pop()
        self.n_banks, self.n_cols = int(n_banks), int(n_cols)
        self.n_blocks = -(-self.n_out // self.n_cols)
        self.usable = None if usable is None else np.asarray(usable, dtype=bool).reshape(self.n_banks, self.n_cols)
        #: packed plans only: (T, n_banks) layer of each bank's row (-1 idle) and (T, n_banks, n_cols) the channels
        #: each bank carries in that configuration
        self.slot_layer: np.ndarray | None = None
        self.slot_mask: np.ndarray | None = None
        if self.usable is not None and not self.usable.all():
            if not self.usable.any(axis=0).all():
                c = int(np.flatnonzero(~self.usable.any(axis=0))[0])
                raise ValueError(f"channel {c} is usable in no bank: leave it out of the tiles' columns")
            self._pack()
            return
        rows, cols, layer, block = [], [], [], []
        for cb in range(self.n_blocks):
            c = np.arange(cb * self.n_cols, (cb + 1) * self.n_cols)
            c = np.where(c < self.n_out, c, -1)
            for li, (_, n_l) in enumerate(self.shapes):
                for r0 in range(0, n_l, self.n_banks):
                    r = np.arange(r0, r0 + self.n_banks)
                    rows.append(np.where(r < n_l, r, -1))
                    cols.append(c)
                    layer.append(li)
                    block.append(cb)
        self.rows = np.array(rows, dtype=int).reshape(-1, self.n_banks)
        self.cols = np.array(cols, dtype=int).reshape(-1, self.n_cols)
        self.layer = np.array(layer, dtype=int)
        self.block = np.array(block, dtype=int)
        #: tiles of (layer, block): consecutive, as built above
        self._spans = {(li, cb): slice(int(idx[0]), int(idx[-1]) + 1)
                       for li in range(len(self.shapes)) for cb in range(self.n_blocks)
                       for idx in [np.flatnonzero((self.layer == li) & (self.block == cb))]}

    def _pack(self) -> None:
        """Rows and remainders packed into configurations when some banks cannot carry some channels.

        A row of ``B_l^T`` (one hidden unit, one column block) placed on bank ``b`` computes the channels ``b`` can
        carry; the rest of that row (its *remainder*: same row, the channels ``b`` cannot carry) is another job, for
        a bank that carries all of them; their partial sums add up digitally like the column blocks'. Each
        configuration takes one job per bank: banks with the fewest usable channels first take a remainder they
        can carry or else the next row. Every element of every
        matrix is still computed exactly once (``coverage``), and every bank that carries anything works. A bank
        that carries every channel takes whole rows (a row there costs one slot, elsewhere two)."""
        nb, nc = self.n_banks, self.n_cols
        order = np.argsort(self.usable.sum(axis=1), kind="stable")          # weakest bank first
        rows, cols, layer, block, slot_layer, slot_mask = [], [], [], [], [], []
        for cb in range(self.n_blocks):
            c = np.arange(cb * nc, (cb + 1) * nc)
            valid = c < self.n_out
            c = np.where(valid, c, -1)
            fresh = [(li, r) for li, (_, n_l) in enumerate(self.shapes) for r in range(n_l)]
            fresh.reverse()                                                   # pop() takes them in order
            remainders: list[tuple[int, int, np.ndarray]] = []
            while fresh or remainders:
                row = np.full(nb, -1)
                lay = np.full(nb, -1)
                mask = np.zeros((nb, nc), dtype=bool)
                for b in order:
                    fits = [k for k, (_, _, m) in enumerate(remainders) if not (m & ~self.usable[b]).any()]
                    whole = fresh and not (valid & ~self.usable[b]).any()      # a row here leaves no remainder
                    if fits and not whole:
                        k = max(fits, key=lambda k: int(remainders[k][2].sum()))
                        li, r, m = remainders.pop(k)
                    elif fresh and (valid & self.usable[b]).any():
                        li, r = fresh.pop()
                        m = valid & self.usable[b]
                        rest = valid & ~self.usable[b]
                        if rest.any():
                            remainders.append((li, r, rest))
                    else:
                        continue
                    row[b], lay[b], mask[b] = r, li, m
                if (row < 0).all():          # cannot happen: every channel is usable somewhere
                    raise RuntimeError("tile packing made no progress")
                rows.append(row)
                cols.append(c)
                slot_layer.append(lay)
                slot_mask.append(mask)
                layer.append(int(lay[lay >= 0][0]))
                block.append(cb)
        self.rows = np.array(rows, dtype=int).reshape(-1, nb)
        self.cols = np.array(cols, dtype=int).reshape(-1, nc)
        self.layer = np.array(layer, dtype=int)
        self.block = np.array(block, dtype=int)
        self.slot_layer = np.array(slot_layer, dtype=int).reshape(-1, nb)
        self.slot_mask = np.array(slot_mask, dtype=bool).reshape(-1, nb, nc)
        self._spans = {}

    @property
    def packed(self) -> bool:
        """Rows and remainders packed (some bank cannot carry some channel)."""
        return self.slot_mask is not None

    @property
    def n_tiles(self) -> int:
        return int(self.layer.size)

    def tile_matrices(self, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """(T, n_banks, n_cols): ``B_l[cols, rows]`` of every tile (zeros where a bank or channel is idle)."""
        out = np.zeros((self.n_tiles, self.n_banks, self.n_cols))
        for li, m in enumerate(matrices):
            if m.shape != self.shapes[li]:
                raise ValueError(f"matrix {li} has shape {m.shape}, the plan was made for {self.shapes[li]}")
        if self.packed:
            assert self.slot_layer is not None and self.slot_mask is not None
            for li, m in enumerate(matrices):
                t_idx, b_idx = np.nonzero(self.slot_layer == li)
                c = self.cols[t_idx]                                            # (J, n_cols)
                r = self.rows[t_idx, b_idx]                                     # (J,)
                vals = np.asarray(m, dtype=float)[np.maximum(c, 0), r[:, None]]
                keep = self.slot_mask[t_idx, b_idx] & (c >= 0)
                out[t_idx, b_idx] = np.where(keep, vals, 0.0)
            return out
        for li, m in enumerate(matrices):
            sel = np.flatnonzero(self.layer == li)
            r, c = self.rows[sel], self.cols[sel]
            valid = (r[:, :, None] >= 0) & (c[:, None, :] >= 0)
            vals = np.asarray(m, dtype=float)[np.maximum(c, 0)[:, None, :], np.maximum(r, 0)[:, :, None]]
            out[sel] = np.where(valid, vals, 0.0)
        return out

    def coverage(self) -> list[np.ndarray]:
        """How many tiles hold each element of each ``B_l`` (all ones for a correct plan)."""
        counts = [np.zeros(s, dtype=int) for s in self.shapes]
        if self.packed:
            assert self.slot_layer is not None and self.slot_mask is not None
            for t, b in zip(*np.nonzero(self.slot_layer >= 0)):
                c = self.cols[t][self.slot_mask[t, b] & (self.cols[t] >= 0)]
                counts[self.slot_layer[t, b]][c, self.rows[t, b]] += 1
            return counts
        for t in range(self.n_tiles):
            r, c = self.rows[t], self.cols[t]
            r, c = r[r >= 0], c[c >= 0]
            counts[self.layer[t]][np.ix_(c, r)] += 1
        return counts

    def block_inputs(self, error: np.ndarray) -> np.ndarray:
        """(n_blocks, N, n_cols) error components per column block (zeros on idle channels)."""
        e = np.asarray(error)
        padded = np.zeros((e.shape[0], self.n_blocks * self.n_cols), dtype=float)
        padded[:, :self.n_out] = e
        return padded.reshape(e.shape[0], self.n_blocks, self.n_cols).transpose(1, 0, 2)

    def assemble(self, partial: np.ndarray, n_samples: int) -> list[np.ndarray]:
        """Per-layer (N, n_l) products from per-tile partial sums (T, N, n_banks), adding the column blocks.

        Tiles of one layer and block hold consecutive rows in order, so each is a reshape, not a scatter (packed
        plans: one scatter-add of every bank's partial sum onto its row)."""
        if self.packed:
            assert self.slot_layer is not None
            packed_outs = []
            for li, (_, n_l) in enumerate(self.shapes):
                t_idx, b_idx = np.nonzero(self.slot_layer == li)
                acc = np.zeros((n_l, n_samples), dtype=partial.dtype)
                np.add.at(acc, self.rows[t_idx, b_idx], partial[t_idx, :, b_idx])
                packed_outs.append(acc.T)
            return packed_outs
        outs = []
        for li, (_, n_l) in enumerate(self.shapes):
            parts = [partial[self._spans[li, cb]].transpose(1, 0, 2).reshape(n_samples, -1)[:, :n_l]
                     for cb in range(self.n_blocks)]
            out = parts[0]
            for extra in parts[1:]:
                out = out + extra
            outs.append(out)
        return outs

    def config_blocks(self, extra_per_block: int = 0) -> np.ndarray:
        """Column block of every configuration the engine visits: the tiles, then ``extra_per_block`` reference
        configurations per block (an engine's bias references)."""
        return np.concatenate([self.block, np.repeat(np.arange(self.n_blocks), extra_per_block)]).astype(int)


def op_counts(order: Order, n_configs: int, n_blocks: int, n_samples: int) -> OpCounts:
    """Operations of one mini-batch of ``n_samples`` errors (plus the reference encoding) in ``order`` (the
    back-and-forth schedules of :func:`schedule`, starting from a configuration and encoding not yet set)."""
    t, n, cb = int(n_configs), int(n_samples), int(n_blocks)
    if order == "tile":
        return OpCounts(configs=t, encodings=t * n + cb, readings=t * (n + 1))
    if order == "sample":
        return OpCounts(configs=(n + 1) * (t - cb) + cb, encodings=cb * (n + 1), readings=t * (n + 1))
    if order == "naive":
        return OpCounts(configs=n * t, encodings=2 * n * t, readings=2 * n * t)
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def best_order(costs: UnitCosts, n_configs: int, n_blocks: int, n_samples: int) -> Order:
    """The cheaper of ``tile`` and ``sample`` for these unit costs."""
    tile = op_counts("tile", n_configs, n_blocks, n_samples).time_s(costs)
    sample = op_counts("sample", n_configs, n_blocks, n_samples).time_s(costs)
    return "tile" if tile <= sample else "sample"


def schedule(order: Order, config_block: np.ndarray, n_samples: int, current: int | None = None
             ) -> list[tuple[int, int]]:
    """The (configuration, encoding) visits of one batch in execution order; encoding 0 is the reference
    (every channel at its mid power), 1.. the samples.

    ``tile``: each configuration's visits are contiguous (configured once per batch), its encodings forward and
    backward in turn; ``sample``: each encoding's visits are contiguous within a column block (encoded once per
    block), the block's configurations forward and backward in turn. Both visit every pair exactly once.
    ``current``: the configuration applied now; a ``sample`` schedule whose first block ends with it starts
    backward, so it is not written again.
    """
    n = int(n_samples) + 1
    blocks = np.asarray(config_block, dtype=int)
    visits: list[tuple[int, int]] = []
    if order == "tile":
        for cb in np.unique(blocks):
            for k, t in enumerate(np.flatnonzero(blocks == cb).tolist()):
                encodings = range(n) if k % 2 == 0 else range(n - 1, -1, -1)
                visits.extend((t, i) for i in encodings)
        return visits
    if order == "sample":
        for b, cb in enumerate(np.unique(blocks)):
            configs = np.flatnonzero(blocks == cb).tolist()
            flip = b == 0 and current is not None and len(configs) > 1 and configs[-1] == current
            for i in range(n):
                forward = (i % 2 == 0) != flip
                visits.extend((t, i) for t in (configs if forward else configs[::-1]))
        return visits
    raise ValueError(f"schedule order must be 'tile' or 'sample', got {order!r}")
