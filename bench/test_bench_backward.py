"""Backward passes on the conv layer suite (L2, L4, L5, L7) and pools: reported, never asserted.

Small batch by default (``QUICK_BATCH``); ``FASTCONV_BENCH_FULL=1`` uses the issue's full batch sizes.
The side-by-side comparison with torch autograd is in docs/backward.md.
"""

import numpy as np
import pytest

import fastconv
from fastconv.benchmarks.common import full_size_requested
from fastconv.benchmarks.conv import QUICK_BATCH, layer_arrays

FULL = full_size_requested()


@pytest.mark.parametrize("layer", ["L2", "L4", "L5", "L7"])
def test_conv2d_backward(benchmark, layer):
    x, weight, _, stride, groups = layer_arrays(layer, batch=None if FULL else QUICK_BATCH)
    out_shape = fastconv.conv2d(x, weight, stride=stride, padding="same", groups=groups).shape
    grad_out = np.random.default_rng(1).standard_normal(out_shape).astype(x.dtype)
    benchmark.group = f"conv2d_backward {layer}"
    gx, gw, gb = benchmark(fastconv.conv2d_backward, grad_out, x, weight, stride=stride, padding="same",
                           groups=groups)
    assert gx.shape == x.shape and gw.shape == weight.shape


POOLS = {
    "max3s2p1": (lambda g, x: fastconv.max_pool2d_backward(g, x, 3, stride=2, padding=1),
                 lambda x: fastconv.max_pool2d(x, 3, stride=2, padding=1)),
    "avg3s2p1": (lambda g, x: fastconv.avg_pool2d_backward(g, x, 3, stride=2, padding=1),
                 lambda x: fastconv.avg_pool2d(x, 3, stride=2, padding=1)),
    "adaptive_avg7": (lambda g, x: fastconv.adaptive_avg_pool2d_backward(g, x, 7),
                      lambda x: fastconv.adaptive_avg_pool2d(x, 7)),
    "spp124": (lambda g, x: fastconv.spatial_pyramid_pool2d_backward(g, x, (1, 2, 4)),
               lambda x: fastconv.spatial_pyramid_pool2d(x, (1, 2, 4))),
}


@pytest.mark.parametrize("pool", list(POOLS))
def test_pool_backward(benchmark, pool):
    x = np.random.default_rng(0).standard_normal((32 if FULL else QUICK_BATCH, 64, 56, 56)).astype(np.float32)
    backward, forward = POOLS[pool]
    grad_out = np.ones(forward(x).shape, dtype=np.float32)
    benchmark.group = f"pool backward {pool}"
    gx = benchmark(backward, grad_out, x)
    assert gx.shape == x.shape
