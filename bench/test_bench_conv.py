"""conv2d: direct vs im2col vs winograd vs the numpy reference on the layer suite (reported, never asserted)."""

import pytest

import fastconv
import fastconv.reference
from fastconv.benchmarks.common import full_size_requested
from fastconv.benchmarks.conv import LAYERS, QUICK_BATCH, layer_algos, layer_arrays

FULL = full_size_requested()

IMPLS = {
    "direct": lambda *a, **k: fastconv.conv2d(*a, algo="direct", **k),
    "im2col": lambda *a, **k: fastconv.conv2d(*a, algo="im2col", **k),
    "winograd": lambda *a, **k: fastconv.conv2d(*a, algo="winograd", **k),
    "reference": fastconv.reference.conv2d,
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_conv2d(benchmark, layer, impl):
    if impl == "reference" and FULL:
        pytest.skip("the numpy reference takes minutes at full size")
    x, weight, bias, stride, groups = layer_arrays(layer, batch=None if FULL else QUICK_BATCH)
    if impl not in ("reference",) + layer_algos(weight, stride):
        pytest.skip(f"{impl} runs 3x3 stride-1 layers only")
    if not FULL and impl == "reference":
        x = x[:1]
    benchmark.group = f"conv2d {layer}"
    out = benchmark(IMPLS[impl], x, weight, bias, stride=stride, padding="same", groups=groups)
    assert out.shape[:2] == (x.shape[0], weight.shape[0])
