"""Pooling: fastconv vs the numpy reference on the issue's cases (reported, never asserted).

CI runs a reduced batch (``QUICK_BATCH``); ``FASTCONV_BENCH_FULL=1`` uses the issue's full sizes.
"""

import numpy as np
import pytest

import fastconv
import fastconv.reference
from fastconv.benchmarks.common import full_size_requested
from fastconv.benchmarks.pool import CASES, QUICK_BATCH

FULL = full_size_requested()
IMPLS = {"fastconv": fastconv, "reference": fastconv.reference}


def _call(module, op, x, kernel, stride, padding):
    if op == "spp":
        return module.spatial_pyramid_pool2d(x, kernel)
    fn = module.max_pool2d if op == "max" else module.avg_pool2d
    return fn(x, kernel, stride=stride, padding=padding)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", list(CASES))
def test_pool(benchmark, case, impl):
    op, x_shape, kernel, stride, padding = CASES[case]
    if impl == "reference":
        if FULL:
            pytest.skip("the numpy reference takes minutes at full size")
        x_shape = (1, 8) + x_shape[2:]
    elif not FULL:
        x_shape = (QUICK_BATCH,) + x_shape[1:]
    x = np.random.default_rng(0).standard_normal(x_shape, dtype=np.float32)
    benchmark.group = f"pool {case}"
    rounds = 3 if impl == "reference" else 10
    out = benchmark.pedantic(_call, args=(IMPLS[impl], op, x, kernel, stride, padding), rounds=rounds, warmup_rounds=1)
    assert out.shape[0] == x.shape[0]
