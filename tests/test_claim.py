"""The dynamic work hand-out of the parallel kernels (fastconv._kernels.claim)."""

import numba
import numpy as np
import pytest
from numba import prange

from fastconv._kernels.claim import COUNTER_STRIDE, claim, next_item, range_counters


@numba.njit(parallel=True)
def _run_items(n_items, workers, times_run):
    counters = range_counters(n_items, workers)
    for worker in prange(workers):
        item, used = next_item(counters, worker, 0, workers, n_items)
        while item >= 0:
            times_run[item] += 1  # one owner per item: no race if every item is claimed once
            item, used = next_item(counters, worker, used, workers, n_items)


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
@pytest.mark.parametrize("n_items", [0, 1, 2, 7, 64, 1001])
def test_every_item_runs_exactly_once(n_items, workers):
    times_run = np.zeros(n_items, dtype=np.int64)
    _run_items(n_items, workers, times_run)
    np.testing.assert_array_equal(times_run, np.ones(n_items, dtype=np.int64))


def test_ranges_tile_the_items_in_order():
    n_items, workers = 10, 3
    counters = range_counters(n_items, workers)
    starts = [counters[r * COUNTER_STRIDE] for r in range(workers)]
    assert starts == [0, 3, 6]
    assert claim(counters, 1) == 3 and claim(counters, 1) == 4
