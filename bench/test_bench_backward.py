"""Backward passes on the conv layer suite (L2, L4, L5, L7), the digits training loop's convolutions and
pools: reported, never asserted.

Small batch by default (``QUICK_BATCH``); ``FASTCONV_BENCH_FULL=1`` uses the issue's full batch sizes.
The side-by-side comparison with torch autograd is ``python -m fastconv bench --section backward``
(``fastconv/benchmarks/backward.py``); tables in docs/backward.md.
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


# The digits training loop's two convolutions (issue 5): per-call overhead dominates on these tiny maps.
DIGITS = {
    "conv1": ((32, 1, 8, 8), 16, (False, True, True)),  # first layer: no grad_x
    "conv2": ((32, 16, 4, 4), 32, (True, True, True)),
}


@pytest.mark.parametrize("case", list(DIGITS))
def test_conv2d_backward_digits(benchmark, case):
    x_shape, c_out, mask = DIGITS[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    weight = rng.standard_normal((c_out, x_shape[1], 3, 3)).astype(np.float32)
    grad_out = rng.standard_normal((x_shape[0], c_out) + x_shape[2:]).astype(np.float32)
    benchmark.group = f"conv2d_backward digits {case}"
    gx, gw, gb = benchmark(fastconv.conv2d_backward, grad_out, x, weight, padding=1, output_mask=mask)
    assert gw.shape == weight.shape and (gx is None) == (not mask[0])


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
