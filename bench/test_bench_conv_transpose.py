"""pytest-benchmark: conv_transpose2d, direct vs col2im vs the numpy reference, on reduced T1-T3.

The full-size suite with torch / onnxruntime side by side is ``python -m fastconv.benchmarks.conv_transpose``.
Benchmarks report; they never assert a time.
"""

import numpy as np
import pytest

from fastconv import conv_transpose2d
from fastconv.reference import conv_transpose2d as ref_conv_transpose2d

# Issue 3's cases with the batch cut to 2 so the CI run stays quick: (x_shape, c_out, k, stride, padding).
CASES = {
    "T1": ((2, 128, 28, 28), 64, 4, 2, 1),
    "T2": ((2, 256, 14, 14), 128, 2, 2, 0),
    "T3": ((2, 64, 56, 56), 3, 3, 1, 1),
}


def _inputs(case):
    x_shape, c_out, k, _, _ = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((x_shape[1], c_out, k, k)).astype(np.float32)
    return x, w


@pytest.mark.parametrize("algo", ["direct", "col2im"])
@pytest.mark.parametrize("case", list(CASES))
def test_bench_conv_transpose2d(benchmark, case, algo):
    x, w = _inputs(case)
    _, _, _, stride, padding = CASES[case]
    benchmark.group = f"conv_transpose2d {case}"
    benchmark.extra_info["gflop"] = 2 * x.size * w.shape[1] * w.shape[2] * w.shape[3] / 1e9
    conv_transpose2d(x, w, stride=stride, padding=padding, algo=algo)  # compile outside the timing
    benchmark(conv_transpose2d, x, w, stride=stride, padding=padding, algo=algo)


def test_bench_conv_transpose2d_reference(benchmark):
    x, w = _inputs("T2")
    x = x[:1, :32]
    w = w[:32]
    benchmark.group = "conv_transpose2d T2"
    benchmark.pedantic(ref_conv_transpose2d, args=(x, w), kwargs=dict(stride=2), rounds=3, iterations=1)
