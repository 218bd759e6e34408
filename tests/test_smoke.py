"""Every public op once on small shapes against the numpy reference.

Small on purpose: CI runs this file a second time with NUMBA_BOUNDSCHECK=1 (a fresh compile), so any
out-of-bounds access in a kernel raises instead of reading garbage.
"""

import numpy as np
import pytest

import fastconv
import fastconv.reference as ref

RNG = np.random.default_rng(1234)


def _arr(*shape):
    return RNG.standard_normal(shape)


CONV_CASES = {
    "k3-same": dict(x=(2, 4, 7, 6), w=(8, 4, 3, 3), kw=dict(padding="same")),
    "k3-s2-full-dil2": dict(x=(1, 3, 9, 8), w=(5, 3, 3, 2), kw=dict(stride=2, padding="full", dilation=2)),
    "depthwise-reflect": dict(x=(2, 6, 6, 7), w=(6, 1, 3, 3), kw=dict(padding=1, groups=6,
                                                                           padding_mode="reflect")),
    "1x1": dict(x=(2, 5, 4, 4), w=(7, 5, 1, 1), kw=dict()),
    # Few output channels from 32 inputs, stride 1: direct takes the tap-GEMM route (transposed conv's
    # compiled col2im kernel); replicate padding pads a copy first.
    "few-out-tap-gemm": dict(x=(2, 32, 9, 8), w=(3, 32, 3, 3), kw=dict(padding=1, padding_mode="replicate")),
    # A larger strided input: several stride phases, pooled plane buffers.
    "large-s2-same": dict(x=(2, 8, 66, 64), w=(8, 8, 3, 3), kw=dict(stride=2, padding="same")),
    # Odd sizes, "full" padding, a partial channel block (37 = 32 + 5 float32 channels).
    "odd-wide-full": dict(x=(2, 3, 9, 21), w=(37, 3, 3, 3), kw=dict(padding="full")),
    # Output rows of 70: whole position micro-tiles, then single vectors, the last shifted back.
    "rgb-wide-rows": dict(x=(1, 3, 5, 70), w=(13, 3, 3, 3), kw=dict(padding=1)),
}


# Every case on direct and im2col; the 3x3 stride-1 ones on winograd too (vector transforms of 8 / 4
# tiles, a partial channel block, odd sizes, a padded copy for replicate padding); the RGB ones on
# first_layer (narrow and wide rows).
CONV_RUNS = [(case, algo) for case in CONV_CASES for algo in ("direct", "im2col")] + [
    (case, "winograd") for case in ("k3-same", "few-out-tap-gemm", "odd-wide-full")] + [
    (case, "first_layer") for case in ("odd-wide-full", "rgb-wide-rows")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case, algo", CONV_RUNS)
def test_conv2d_matches_reference(case, algo, dtype):
    spec = CONV_CASES[case]
    x, w = _arr(*spec["x"]).astype(dtype), _arr(*spec["w"]).astype(dtype)
    b = _arr(spec["w"][0]).astype(dtype)
    got = fastconv.conv2d(x, w, b, algo=algo, **spec["kw"])
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **spec["kw"])
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _close(got, want, dtype):
    tol = 1e-4 if dtype == np.float32 else 1e-10
    if isinstance(want, tuple):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    else:
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


X = RNG.standard_normal((2, 3, 9, 8))
RNG_W = {
    "ct": RNG.standard_normal((3, 4, 3, 3)),          # conv_transpose2d weight (C_in, O, kH, kW)
    "w_conv": RNG.standard_normal((5, 3, 3, 3)),      # conv2d weight
    "g_conv": RNG.standard_normal((2, 5, 5, 4)),      # grad of conv2d(X, stride 2, pad 1): 5x4
    "g_ct": RNG.standard_normal((2, 4, 17, 15)),      # conv_transpose2d(X, s2, p1): (9-1)*2-2+3 = 17, 15
    "g_pool": RNG.standard_normal((2, 3, 5, 4)),      # 9x8 pooled 3/s2/p1 -> 5x4; adaptive (5, 4)
    "g_spp": RNG.standard_normal((2, 3 * (1 + 4))),
}

# name -> (callable taking (module, x, dtype) and returning the op's result), covering every public op.
OPS = {
    "conv_transpose2d-direct": lambda m, x, d: m.conv_transpose2d(
        x, RNG_W["ct"].astype(d), stride=2, padding=1, output_padding=1,
        **({"algo": "direct"} if m is fastconv else {})),
    "conv_transpose2d-col2im": lambda m, x, d: m.conv_transpose2d(
        x, RNG_W["ct"].astype(d), stride=(2, 1), padding="same",
        **({"algo": "col2im"} if m is fastconv else {})),
    "max_pool2d": lambda m, x, d: m.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, return_indices=True),
    "avg_pool2d": lambda m, x, d: m.avg_pool2d(x, (2, 3), stride=(2, 1), padding=1, count_include_pad=False),
    "adaptive_max_pool2d": lambda m, x, d: m.adaptive_max_pool2d(x, (4, 5), return_indices=True),
    "adaptive_avg_pool2d": lambda m, x, d: m.adaptive_avg_pool2d(x, (10, 3)),
    "spatial_pyramid_pool2d": lambda m, x, d: m.spatial_pyramid_pool2d(x, (1, 2, (3, 2)), mode="avg"),
    "conv2d_backward": lambda m, x, d: m.conv2d_backward(
        RNG_W["g_conv"].astype(d), x, RNG_W["w_conv"].astype(d), stride=2, padding=1, padding_mode="reflect"),
    "conv_transpose2d_backward": lambda m, x, d: m.conv_transpose2d_backward(
        RNG_W["g_ct"].astype(d), x, RNG_W["ct"].astype(d), stride=2, padding=1),
    "max_pool2d_backward": lambda m, x, d: m.max_pool2d_backward(
        RNG_W["g_pool"].astype(d), x, 3, stride=2, padding=1),
    "avg_pool2d_backward": lambda m, x, d: m.avg_pool2d_backward(
        RNG_W["g_pool"].astype(d), x, 3, stride=2, padding=1),
    "adaptive_max_pool2d_backward": lambda m, x, d: m.adaptive_max_pool2d_backward(
        RNG_W["g_pool"].astype(d), x, (5, 4)),
    "adaptive_avg_pool2d_backward": lambda m, x, d: m.adaptive_avg_pool2d_backward(
        RNG_W["g_pool"].astype(d), x, (5, 4)),
    "spatial_pyramid_pool2d_backward": lambda m, x, d: m.spatial_pyramid_pool2d_backward(
        RNG_W["g_spp"].astype(d), x, (1, 2), mode="max"),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", list(OPS))
def test_every_op_matches_reference(op, dtype):
    x = X.astype(dtype)
    got = OPS[op](fastconv, x, dtype)
    want = OPS[op](ref, x.astype(np.float64), np.float64)
    _close(got, want, dtype)


# The interleaving transposed-conv kernel (stride = kernel (kH, 2)), called directly: the dispatch routes
# to it on AVX-512 only, and this file's bounds-checked CI run compiles for AVX2. Images smaller than a
# vector and wider ones with a shifted last tile; 6 GEMM rows per group (a padded weight copy); 2 groups.
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("x_shape", [(2, 4, 2, 3), (1, 4, 5, 13)], ids=["small", "wide"])
def test_interleaving_transposed_conv_kernel(x_shape, dtype):
    import fastconv.conv_transpose as ct

    x, w, b = _arr(*x_shape).astype(dtype), _arr(4, 1, 3, 2).astype(dtype), _arr(2).astype(dtype)
    problem = ct.conv_transpose2d_problem("t", x.shape, w.shape, (3, 2), 0, 0, None, 1, 2, np.dtype(dtype))
    got = np.empty((x.shape[0], 2) + problem.out_hw, dtype)
    ct._run_interleave(problem, x, w, b, dtype, got)
    _close(got, ref.conv_transpose2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                     stride=(3, 2), groups=2), dtype)


# 3x3 / stride 1 / padding 1 pools with the column pass in registers: one plane row of whole vectors and
# one with a shifted last chunk, 1 and 4 rows.
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("hw", [(4, 16), (1, 11)], ids=["whole", "shifted"])
def test_3x3_stride1_pools(hw, dtype):
    x = _arr(2, 3, *hw).astype(dtype)
    x64 = x.astype(np.float64)
    _close(fastconv.max_pool2d(x, 3, 1, padding=1), ref.max_pool2d(x64, 3, 1, padding=1), dtype)
    _close(fastconv.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False),
           ref.avg_pool2d(x64, 3, 1, padding=1, count_include_pad=False), dtype)
