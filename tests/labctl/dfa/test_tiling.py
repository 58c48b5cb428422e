"""Tiling of the feedback matrices over banks x channels, and the schedules that visit the tiles."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.dfa.tiling import OpCounts, TilePlan, UnitCosts, best_order, op_counts, schedule

shapes = st.tuples(st.integers(1, 13), st.lists(st.integers(1, 23), min_size=1, max_size=3),
                   st.integers(1, 5), st.integers(1, 6))


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_every_element_of_every_matrix_is_in_exactly_one_tile(case: tuple) -> None:
    n_out, hidden, n_banks, n_cols = case
    plan = TilePlan([(n_out, h) for h in hidden], n_banks=n_banks, n_cols=n_cols)
    for counts in plan.coverage():
        assert np.all(counts == 1)
    assert plan.n_blocks == -(-n_out // n_cols)


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(1, 9))
def test_tiles_and_partial_sums_reproduce_the_product(case: tuple, n: int) -> None:
    """An exact chip (y = W x per tile) gives e @ B exactly: tiles, idle banks/channels and block sums agree."""
    n_out, hidden, n_banks, n_cols = case
    rng = np.random.default_rng(n)
    mats = [rng.uniform(-1, 1, (n_out, h)) for h in hidden]
    plan = TilePlan([m.shape for m in mats], n_banks=n_banks, n_cols=n_cols)
    tiles = plan.tile_matrices(mats)                                   # (T, banks, cols)
    e = rng.normal(size=(n, n_out))
    x = plan.block_inputs(e)                                           # (blocks, N, cols)
    partial = np.einsum("tkj,tij->tik", tiles, x[plan.block])
    for out, m in zip(plan.assemble(partial, n), mats):
        np.testing.assert_allclose(out, e @ m, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", ["tile", "sample"])
@pytest.mark.parametrize("n_out,n_cols", [(10, 10), (10, 4), (7, 3)])
def test_schedule_visits_every_pair_once_and_matches_the_counts(order: str, n_out: int, n_cols: int) -> None:
    plan = TilePlan([(n_out, 9), (n_out, 5)], n_banks=2, n_cols=n_cols)
    blocks = plan.config_blocks(extra_per_block=1)
    n = 6
    visits = schedule(order, blocks, n)  # type: ignore[arg-type]
    assert Counter(visits) == Counter((c, i) for c in range(blocks.size) for i in range(n + 1))
    configs = sum(1 for k, v in enumerate(visits) if k == 0 or v[0] != visits[k - 1][0])
    encodings = sum(1 for k, v in enumerate(visits)
                    if k == 0 or (blocks[v[0]], v[1]) != (blocks[visits[k - 1][0]], visits[k - 1][1]))
    expected = op_counts(order, blocks.size, plan.n_blocks, n)  # type: ignore[arg-type]
    assert (configs, encodings, len(visits)) == (expected.configs, expected.encodings, expected.readings)
    if order == "tile":
        assert configs == blocks.size        # each configuration set once per batch


def test_naive_order_costs_more_and_the_cheaper_order_follows_the_unit_costs() -> None:
    plan = TilePlan([(10, 800), (10, 800)], n_banks=4, n_cols=10)
    n_cfg = plan.n_tiles + 1
    slow_lasers = UnitCosts(config_s=0.006, encode_s=0.24, read_s=0.0011)
    slow_heaters = UnitCosts(config_s=0.5, encode_s=0.001, read_s=0.0011)
    assert best_order(slow_lasers, n_cfg, 1, 64) == "sample"
    assert best_order(slow_heaters, n_cfg, 1, 64) == "tile"
    for costs in (slow_lasers, slow_heaters):
        naive = op_counts("naive", n_cfg, 1, 64).time_s(costs)
        best = op_counts(best_order(costs, n_cfg, 1, 64), n_cfg, 1, 64).time_s(costs)
        assert best < 0.1 * naive
    assert OpCounts(2, 3, 4).time_s(UnitCosts(1.0, 10.0, 100.0)) == 432.0


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(1, 9), st.integers(0, 2**16))
def test_banks_that_cannot_carry_a_channel_still_work_and_the_product_is_exact(case: tuple, n: int, seed: int) -> None:
    """Some banks cannot carry some channels (a ring without weight range): rows and their remainders are packed so
    that every element is computed once, only on banks that carry its channel, and the sums give e @ B."""
    n_out, hidden, n_banks, n_cols = case
    rng = np.random.default_rng(seed)
    usable = rng.uniform(size=(n_banks, n_cols)) > 0.3
    usable[rng.integers(n_banks), :] = True                           # every channel usable somewhere
    mats = [rng.uniform(-1, 1, (n_out, h)) for h in hidden]
    plan = TilePlan([m.shape for m in mats], n_banks=n_banks, n_cols=n_cols, usable=usable)
    for counts in plan.coverage():
        assert np.all(counts == 1)
    tiles = plan.tile_matrices(mats)
    assert not np.any((tiles != 0) & ~usable[None])                   # nothing on a channel a bank cannot carry
    e = rng.normal(size=(n, n_out))
    partial = np.einsum("tkj,tij->tik", tiles, plan.block_inputs(e)[plan.block])
    for out, m in zip(plan.assemble(partial, n), mats):
        np.testing.assert_allclose(out, e @ m, rtol=1e-12, atol=1e-12)


def test_one_ring_without_range_costs_fewer_configurations_than_leaving_its_bank_out() -> None:
    """The reference chip on the current bench: bank 1's ring on channel 3 has no range. Packing uses bank 1 for
    the other nine channels, in no more configurations than on three banks (22 for the dry run), and its weak
    rings can be left to the remainders at no further cost."""
    usable = np.ones((4, 10), dtype=bool)
    usable[1, 3] = False
    packed = TilePlan([(10, 64)], n_banks=4, n_cols=10, usable=usable)
    three = TilePlan([(10, 64)], n_banks=3, n_cols=10)
    assert packed.n_tiles <= three.n_tiles == 22
    assert np.all((packed.rows >= 0).sum(axis=0) >= 16)               # every bank works in most configurations
    usable[1, [0, 2, 6]] = False                                      # its weak rings too: one remainder per row
    assert TilePlan([(10, 64)], n_banks=4, n_cols=10, usable=usable).n_tiles == packed.n_tiles
