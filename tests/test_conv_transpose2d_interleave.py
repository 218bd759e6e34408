"""conv_transpose2d with stride = kernel (kH, 2) and no padding: the interleaving kernel
(``_kernels/conv_transpose_interleave.py``), run directly on every host and through the public API where
the dispatch routes it (AVX-512)."""

import itertools

import numpy as np
import pytest

import fastconv.conv_transpose as ct
from conftest import at_one_and_two_threads
from fastconv import conv_transpose2d, plan_conv_transpose2d
from fastconv._kernels import conv_transpose_interleave as kernel
from fastconv._kernels.conv_direct import MICRO_VEC_BYTES
from fastconv._kernels.simd import HAS_AVX512
from fastconv.reference import conv_transpose2d as ref_conv_transpose2d

TOL = {np.float32: 2e-5, np.float64: 1e-12}  # relative to the largest |reference| value (test_conv_transpose2d)


def _problem(x_shape, w_shape, kh, groups, dtype):
    return ct.conv_transpose2d_problem("t", x_shape, w_shape, (kh, 2), 0, 0, None, 1, groups, np.dtype(dtype))


def _run_kernel(x, w, b, kh, groups, dtype):
    """The interleaving kernel, whatever the dispatch would choose."""
    problem = _problem(x.shape, w.shape, kh, groups, dtype)
    out = np.full((x.shape[0], problem.c_out) + problem.out_hw, np.nan, dtype)
    ct._run_interleave(problem, x.astype(dtype), w, b.astype(dtype), dtype, out)
    return out


def _assert_close(got, x, w, b, kh, groups, dtype):
    """``got`` against the float64 reference on the same (rounded to ``dtype``) inputs."""
    x, w, b = (a.astype(dtype).astype(np.float64) for a in (x, w, b))
    expected = ref_conv_transpose2d(x, w, b, stride=(kh, 2), groups=groups)
    assert got.shape == expected.shape and got.dtype == np.dtype(dtype)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL[dtype] * scale)


LANES32 = MICRO_VEC_BYTES // 4
ROWS = kernel.ROWS
CASES = [
    # (x_shape, og, kh, groups): images smaller than a vector, exactly one vector, tiles spanning two and
    # three input rows, a shifted last tile, one pixel, rows that fill whole blocks (weights read in place)
    # or not (a padded copy), one- and three-row kernels, groups.
    ((2, 5, 3, 3), 3, 2, 1),
    ((1, 4, 1, LANES32), ROWS // 4, 2, 1),
    ((3, 7, 14, 14), 8, 2, 1),
    ((2, 6, 5, 7), 5, 2, 1),
    ((2, 3, 1, 1), 2, 2, 1),
    ((1, 9, 6, 11), 6, 3, 1),
    ((2, 8, 9, 21), 3, 2, 4),
    ((1, 16, 4, 37), ROWS // 2, 1, 2),
    ((2, 1, 17, 5), 7, 2, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-o{c[1]}-k{c[2]}-g{c[3]}" for c in CASES])
def test_kernel_matches_reference(case, dtype):
    x_shape, og, kh, groups = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((x_shape[1], og, kh, 2)).astype(dtype)
    b = rng.standard_normal(og * groups)
    _assert_close(_run_kernel(x, w, b, kh, groups, dtype), x, w, b, kh, groups, dtype)


def test_weights_are_read_in_place_when_rows_fill_whole_blocks():
    w = np.ones((4, ROWS // 4, 2, 2), np.float32)  # ROWS rows per channel
    assert np.shares_memory(kernel.interleave_weights(w, np.float32), w)
    odd = np.ones((4, 3, 2, 2), np.float32)  # 12 rows: padded to a whole block, zeros past them
    padded = kernel.interleave_weights(odd, np.float32)
    assert padded.shape == (4, -(-12 // ROWS) * ROWS) and not np.shares_memory(padded, odd)
    np.testing.assert_array_equal(padded[:, :12], 1.0)
    np.testing.assert_array_equal(padded[:, 12:], 0.0)
    assert not np.shares_memory(kernel.interleave_weights(w, np.float64), w)


def test_infinities_reach_only_their_own_outputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 5, 9))
    x[0, 2, 4, 8] = np.inf  # the last pixel: the shifted last tile
    x[0, 0, 1, 0] = -np.inf
    w = rng.standard_normal((4, 4, 2, 2))
    b = rng.standard_normal(4)
    got = _run_kernel(x, w, b, 2, 1, np.float64)
    expected = ref_conv_transpose2d(x, w, b, stride=2)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    assert (~finite).sum() >= 2 * 4 * 4 and finite.any()
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-12 * np.abs(expected[finite]).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bit_identical_for_one_and_two_threads(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 24, 14, 14))
    w = rng.standard_normal((24, 8, 2, 2)).astype(dtype)
    b = rng.standard_normal(8)
    one, two = at_one_and_two_threads(lambda: _run_kernel(x, w, b, 2, 1, dtype))
    np.testing.assert_array_equal(one, two)


def test_kernel_keeps_one_specialisation_per_dtype():
    rng = np.random.default_rng(5)
    for dtype, layout in itertools.product([np.float32, np.float64], ["c", "strided"]):
        x = rng.standard_normal((2, 4, 6, 10))
        x = x[:, :, :, ::2] if layout == "strided" else x
        w = rng.standard_normal((4, 4, 2, 2))
        w.flags.writeable = False
        _run_kernel(x, w, rng.standard_normal(4), 2, 1, dtype)
    assert 1 <= len(kernel.conv_transpose_interleave.signatures) <= 2


@pytest.mark.skipif(not HAS_AVX512, reason="the dispatch routes here on AVX-512 hosts only")
def test_public_api_routes_stride_equal_kernel_here():
    t2 = plan_conv_transpose2d((32, 256, 14, 14), (256, 128, 2, 2), stride=2)
    assert t2.algo == "col2im" and "interleaved" in t2.reason
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 6, 7, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, 2, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    assert ct.uses_interleave(_problem(x.shape, w.shape, 2, 1, np.float32))
    _assert_close(conv_transpose2d(x, w, b, stride=2), x, w, b, 2, 1, np.float32)


@pytest.mark.skipif(not HAS_AVX512, reason="the dispatch routes here on AVX-512 hosts only")
@pytest.mark.parametrize("x_shape, w_shape, kw, reason", [
    ((2, 6, 7, 9), (6, 3, 2, 2), dict(stride=2), "12 GEMM rows: less than a block"),
    ((2, 6, 7, 9), (6, 4, 2, 2), dict(stride=2, padding=1), "padding"),
    ((2, 6, 7, 9), (6, 4, 2, 2), dict(stride=2, output_padding=1), "output padding"),
    ((2, 6, 7, 9), (6, 4, 3, 3), dict(stride=3), "kernel width 3"),
    ((2, 6, 7, 9), (6, 4, 2, 2), dict(stride=(2, 1)), "stride below the kernel"),
    ((2, 6, 7, 9), (6, 4, 1, 2), dict(stride=(1, 2), dilation=2), "dilation"),
])
def test_other_problems_keep_the_col2im_sum(x_shape, w_shape, kw, reason):
    problem = ct.conv_transpose2d_problem("t", x_shape, w_shape, kw.get("stride", 1), kw.get("padding", 0),
                                          kw.get("output_padding", 0), None, kw.get("dilation", 1), 1,
                                          np.dtype(np.float32))
    assert not ct.uses_interleave(problem), reason


@pytest.mark.skipif(not HAS_AVX512, reason="the dispatch routes here on AVX-512 hosts only")
def test_workspace_counts_the_padded_weight_copy():
    t2 = plan_conv_transpose2d((32, 256, 14, 14), (256, 128, 2, 2), stride=2)
    odd = plan_conv_transpose2d((32, 256, 14, 14), (256, 127, 2, 2), stride=2)
    assert t2.workspace_bytes < 2**20  # the weights are read in place
    assert odd.workspace_bytes - t2.workspace_bytes >= 256 * 127 * 2 * 2 * 4
