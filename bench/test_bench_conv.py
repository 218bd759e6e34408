"""conv2d: direct vs im2col vs winograd vs the numpy reference on the layer suite (reported, never asserted)."""

import pytest

import fastconv
import fastconv.reference
from fastconv.benchmarks.common import full_size_requested
from fastconv.benchmarks.conv import LAYERS, QUICK_BATCH, layer_arrays

FULL = full_size_requested()

IMPLS = {
    "direct": lambda *a, **k: fastconv.conv2d(*a, algo="direct", **k),
    "im2col": lambda *a, **k: fastconv.conv2d(*a, algo="im2col", **k),
    "winograd": lambda *a, **k: fastconv.conv2d(*a, algo="winograd", **k),
    "reference": fastconv.reference.conv2d,
}


# "winograd" only where it applies (3x3, stride 1): the layer's kernel size and stride are LAYERS[5:7].
RUNS = [(layer, impl) for layer in LAYERS for impl in IMPLS if impl != "winograd" or LAYERS[layer][5:7] == (3, 1)]


@pytest.mark.parametrize("layer, impl", RUNS)
def test_conv2d(benchmark, layer, impl):
    if impl == "reference" and FULL:
        pytest.skip("the numpy reference takes minutes at full size")
    x, weight, bias, stride, groups = layer_arrays(layer, batch=None if FULL else QUICK_BATCH)
    if not FULL and impl == "reference":
        x = x[:1]
    benchmark.group = f"conv2d {layer}"
    out = benchmark(IMPLS[impl], x, weight, bias, stride=stride, padding="same", groups=groups)
    assert out.shape[:2] == (x.shape[0], weight.shape[0])
