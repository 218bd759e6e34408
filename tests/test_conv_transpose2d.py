"""fastconv.conv_transpose2d: both algorithms against the numpy reference, worked examples, errors, structure."""

import itertools
import threading
import zlib

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv._kernels.simd import HAS_AVX512
from fastconv import conv_transpose2d
from fastconv._kernels import conv_transpose as kernels
from fastconv._kernels import conv_transpose_col2im as col2im_kernels
from fastconv._kernels.col2im_gemm import col2im_gemm
import fastconv.conv_transpose as ct
from fastconv.conv_transpose import direct_split, plan_conv_transpose2d
from fastconv.reference import conv_transpose2d as ref_conv_transpose2d

ALGOS = ("direct", "col2im")
# Per-dtype tolerance (relative to the largest |reference| value, inputs ~N(0, 1)).
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _assert_close(got, expected, dtype):
    assert got.dtype == np.dtype(dtype)
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL[dtype] * scale * 10)


def _data(rng, x_shape, w_shape, n_bias, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(n_bias).astype(dtype)
    return x, w, b


# ------------------------------------------------------------------------------------------------
# Grid against the reference
# ------------------------------------------------------------------------------------------------

GRID = [
    # (x_shape, (og, kh, kw), stride, padding, output_padding, dilation, groups)
    ((2, 3, 5, 5), (4, 3, 3), 1, 0, 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3), 2, 1, 1, 1, 1),
    ((1, 4, 4, 6), (9, 4, 4), 2, 1, 0, 1, 1),        # T1-like, 9 channels: two blocks, one partial
    ((2, 4, 3, 4), (8, 2, 2), 2, 0, 0, 1, 1),        # T2-like, k == s
    ((1, 4, 6, 5), (3, 3, 3), 1, 1, 0, 1, 1),        # T3-like, few channels: one-channel kernel
    ((1, 2, 4, 3), (5, 1, 1), (3, 2), 0, (2, 1), 1, 1),  # 1x1, gaps between pixels
    ((2, 4, 4, 4), (2, 3, 2), (2, 3), (1, 0), 0, (2, 1), 2),
    ((1, 6, 5, 4), (1, 3, 3), 2, 1, 1, 1, 6),        # depthwise
    ((1, 4, 3, 3), (4, 2, 3), 1, 0, 1, 2, 2),        # output_padding past the stride (dilation 2)
    ((1, 2, 4, 4), (3, 3, 3), 3, ((2, 0), (1, 3)), 0, 1, 1),  # per-side
    ((2, 3, 3, 4), (5, 3, 3), 2, "same", 0, 1, 1),
    ((1, 3, 4, 3), (5, 2, 4), (2, 3), "same", 0, (2, 1), 1),   # even kernel, dilation
    ((1, 3, 3, 3), (2, 3, 3), 2, "valid", 1, 1, 1),
    ((1, 2, 6, 6), (3, 2, 3), 1, "full", 0, 1, 1),
    ((3, 1, 1, 1), (2, 1, 1), 1, 0, 0, 1, 1),        # 1x1 everything
    ((1, 3, 20, 31), (6, 4, 4), 2, 1, 0, 1, 1),      # phases of 40 x 62: several row blocks per phase
    ((2, 5, 9, 7), (33, 3, 5), (2, 3), (1, 2), 1, 1, 1),  # phases of unequal sizes, 33 = 32 + 1 channels
]


def _grid_id(case):
    x_shape, w, s, p, op, d, g = case
    return f"x{x_shape}-w{w}-s{s}-p{p}-op{op}-d{d}-g{g}".replace(" ", "")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", GRID, ids=[_grid_id(c) for c in GRID])
def test_grid_matches_reference(case, algo, dtype):
    x_shape, (og, kh, kw), s, p, op, d, g = case
    rng = np.random.default_rng(zlib.crc32(_grid_id(case).encode()))
    x, w, b = _data(rng, x_shape, (x_shape[1], og, kh, kw), og * g, dtype)
    kwargs = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    expected = ref_conv_transpose2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **kwargs)
    _assert_close(conv_transpose2d(x, w, b, algo=algo, **kwargs), expected, dtype)
    _assert_close(conv_transpose2d(x, w, algo=algo, **kwargs),
                  expected - b.astype(np.float64).reshape(1, -1, 1, 1), dtype)


@st.composite
def configs(draw):
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    og = draw(st.sampled_from([1, 2, 3, 5, 8, 9]))
    ih, iw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    kind = draw(st.sampled_from(["int", "pair", "sides", "valid", "same", "full"]))
    padding = {
        "int": draw(st.integers(0, 2)),
        "pair": (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        "sides": ((draw(st.integers(0, 2)), draw(st.integers(0, 2))),
                  (draw(st.integers(0, 2)), draw(st.integers(0, 2)))),
    }.get(kind, kind)
    sizes = fastconv.shapes.conv_transpose_output_sizes((ih, iw), (kh, kw), stride=s, padding=padding,
                                                        dilation=d)
    if not sizes[0] or not sizes[1]:
        output_size = None  # the padding eats the whole output: an error path, drawn rarely
    else:
        output_size = (draw(st.sampled_from(sizes[0])), draw(st.sampled_from(sizes[1])))
    n = draw(st.integers(1, 2))
    return dict(x_shape=(n, groups * cg, ih, iw), w_shape=(groups * cg, og, kh, kw),
                kwargs=dict(stride=s, padding=padding, dilation=d, groups=groups, output_size=output_size))


@settings(max_examples=40, deadline=None)
@given(configs(), st.sampled_from(ALGOS), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16))
def test_hypothesis_matches_reference(cfg, algo, dtype, seed):
    if cfg["kwargs"]["output_size"] is None:
        with pytest.raises(ValueError, match="output size must be >= 1"):
            conv_transpose2d(np.ones(cfg["x_shape"]), np.ones(cfg["w_shape"]), **cfg["kwargs"])
        return
    rng = np.random.default_rng(seed)
    x, w, b = _data(rng, cfg["x_shape"], cfg["w_shape"], cfg["w_shape"][1] * cfg["kwargs"]["groups"], dtype)
    expected = ref_conv_transpose2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                    **cfg["kwargs"])
    _assert_close(conv_transpose2d(x, w, b, algo=algo, **cfg["kwargs"]), expected, dtype)


# ------------------------------------------------------------------------------------------------
# Worked example and semantics
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ALGOS + ("auto",))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c_in, kernel", [(4, 1), (5, 1), (1, 2), (4, 3)], ids=["1x1c4", "1x1c5", "2x2c1", "3x3c4"])
def test_infinity_stays_infinite_whatever_the_tap_count(algo, stride, c_in, kernel):
    # Phases whose tap count is not a multiple of 3: a zero-weight padding tap reading the input would
    # turn an infinite input into NaN (0 * inf) in every output channel (a bug the phase kernels had).
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, c_in, 9, 9))
    x[0, 0, 4, 4] = np.inf
    x[1, -1, 2, 2] = -np.inf
    w = rng.standard_normal((c_in, 40, kernel, kernel))
    out = conv_transpose2d(x, w, stride=stride, algo=algo)
    expected = ref_conv_transpose2d(x, w, stride=stride)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    assert np.isinf(expected).any()


@pytest.mark.parametrize("algo", ALGOS)
def test_worked_example_ones_3x3_stride2_same_output_5x5(algo):
    x = np.ones((1, 1, 3, 3), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    out = conv_transpose2d(x, w, stride=2, padding="same", output_size=(5, 5), algo=algo)
    a, b = [1, 2, 1, 2, 1], [2, 4, 2, 4, 2]
    np.testing.assert_array_equal(out[0, 0], np.array([a, b, a, b, a], np.float32))


@pytest.mark.parametrize("algo", ALGOS)
def test_worked_example_output_size_6x6_pads_the_odd_pixel_bottom_right(algo):
    """6x6 (the "same" default, 3 * 2): conv2d's 'same' padding for a 6x6 input is 0 before and 1 after,
    so the 6x6 result is the full 7x7 result with its bottom row and right column cropped: the padding
    pixel sits at the bottom/right as TensorFlow places it."""
    x = np.ones((1, 1, 3, 3), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    out = conv_transpose2d(x, w, stride=2, padding="same", algo=algo)
    assert out.shape == (1, 1, 6, 6)
    np.testing.assert_array_equal(out, conv_transpose2d(x, w, stride=2, padding="same", output_size=(6, 6)))
    row = np.array([1, 1, 2, 1, 2, 1], np.float32)
    np.testing.assert_array_equal(out[0, 0], np.outer(row, row))
    full = conv_transpose2d(x, w, stride=2, padding="valid", algo=algo)  # 7x7, no crop
    np.testing.assert_array_equal(out[0, 0], full[0, 0, :6, :6])
    np.testing.assert_array_equal(out[0, 0, 1:, 1:],
                                  conv_transpose2d(x, w, stride=2, padding="same", output_size=(5, 5))[0, 0])


def test_same_is_the_adjoint_of_conv2d_same_for_every_reachable_size():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 3, 3))
    w = rng.standard_normal((2, 3, 3, 3))
    for size in fastconv.shapes.conv_transpose_output_sizes(3, 3, stride=2, padding="same"):
        b = rng.standard_normal((1, 3, size, size))
        lhs = np.sum(fastconv.conv2d(b, w, stride=2, padding="same") * x)
        rhs = np.sum(b * conv_transpose2d(x, w, stride=2, padding="same", output_size=(size, size)))
        np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_output_size_accepts_nchw_and_replaces_output_padding():
    x = np.ones((2, 3, 4, 4))
    w = np.ones((3, 5, 3, 3))
    a = conv_transpose2d(x, w, stride=2, output_size=(2, 5, 10, 9))
    b = conv_transpose2d(x, w, stride=2, output_padding=(1, 0))
    assert a.shape == (2, 5, 10, 9)
    np.testing.assert_array_equal(a, b)


def test_unreached_rows_are_bias_only():
    x = np.ones((1, 1, 2, 2))
    w = np.ones((1, 1, 2, 2))
    out = conv_transpose2d(x, w, np.array([7.0]), dilation=3, output_padding=2)  # rows 5, 6 unreached
    assert out.shape == (1, 1, 7, 7)
    np.testing.assert_array_equal(out[0, 0, 5:], 7.0)
    np.testing.assert_array_equal(out[0, 0, :, 5:], 7.0)


# ------------------------------------------------------------------------------------------------
# Arrays: dtypes, layouts, out=, empty batch
# ------------------------------------------------------------------------------------------------

def test_mixed_dtypes_follow_result_type_and_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 10, 6)).astype(np.float32)[:, :, ::2, :]  # strided
    w = np.asfortranarray(rng.standard_normal((4, 3, 3, 3)))
    w.flags.writeable = False
    b = rng.standard_normal(3).astype(np.float32)
    copies = [a.copy() for a in (x, w, b)]
    out = conv_transpose2d(x, w, b, stride=2, padding=1)
    assert out.dtype == np.float64
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)
    expected = ref_conv_transpose2d(x.astype(np.float64), w, b.astype(np.float64), stride=2, padding=1)
    _assert_close(out, expected, np.float64)


@pytest.mark.parametrize("algo", ALGOS)
def test_out_is_filled_and_returned(algo):
    x = np.ones((1, 2, 3, 3), np.float32)
    w = np.ones((2, 4, 2, 2), np.float32)
    out = np.full((1, 4, 6, 6), np.nan, np.float32)
    assert conv_transpose2d(x, w, stride=2, out=out, algo=algo) is out
    np.testing.assert_array_equal(out, 2.0)


def test_empty_batch_returns_empty_result():
    out = conv_transpose2d(np.ones((0, 3, 4, 4)), np.ones((3, 2, 3, 3)), stride=2)
    assert out.shape == (0, 2, 9, 9)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------

X = np.ones((1, 4, 3, 3))
W = np.ones((4, 2, 3, 3))

ERRORS = [
    (TypeError, r"x must be float32 or float64, got int64; use x.astype\(np.float32\)",
     dict(x=np.ones((1, 4, 3, 3), np.int64))),
    (TypeError, r"weight must be a numpy.ndarray, got list", dict(weight=[[1.0]])),
    (ValueError, r"x must be 4-D, got shape \(4, 3, 3\)", dict(x=np.ones((4, 3, 3)))),
    (ValueError, r"weight.shape\[0\] must equal the input channels 4, got 3", dict(weight=np.ones((3, 2, 3, 3)))),
    (ValueError, r"groups must divide the input channels 4, got 3", dict(groups=3)),
    (ValueError, r"channels, spatial sizes and kernel sizes must be >= 1, got x \(1, 4, 0, 3\)",
     dict(x=np.ones((1, 4, 0, 3)))),
    (ValueError, r"bias must have shape \(2,\), got \(3,\)", dict(bias=np.ones(3))),
    (ValueError, r"output_padding must be < max\(stride, dilation\) = \(2, 2\) per axis, got 2",
     dict(stride=2, output_padding=2)),
    (ValueError, r"output_padding must be < max\(stride, dilation\) = \(1, 1\) per axis, got 1",
     dict(output_padding=1)),
    (ValueError, r"output_padding must be 0 with padding 'same'.*pass output_size",
     dict(stride=2, padding="same", output_padding=1)),
    (ValueError, r"output_padding must be 0 when output_size is given", dict(stride=2, output_padding=1,
                                                                            output_size=(8, 8))),
    (ValueError, r"output_size must be reachable from input size \(3, 3\).*heights \[7, 8\], widths \[7, 8\]; "
                 r"got \(9, 7\)", dict(stride=2, output_size=(9, 7))),
    (ValueError, r"output_size must be reachable .*heights \[5, 6\], widths \[5, 6\]; got \(4, 4\)",
     dict(stride=2, padding="same", output_size=(4, 4))),
    (ValueError, r"output_size must start with \(N, O\) = \(1, 2\) when 4 values are given, got \(1, 3, 5, 5\)",
     dict(output_size=(1, 3, 5, 5))),
    (TypeError, r"output_size must be \(H, W\) or \(N, C, H, W\), got 5", dict(output_size=5)),
    (ValueError, r"output size must be >= 1, got \(-1, -1\) for input size \(3, 3\)", dict(padding=3)),
    (ValueError, r"padding must be >= 0 on every side, got -1", dict(padding=-1)),
    (ValueError, r"padding must be one of 'valid', 'same', 'full', got 'SAME'", dict(padding="SAME")),
    (ValueError, r"stride must be >= 1, got 0", dict(stride=0)),
    (ValueError, r"algo must be one of 'auto', 'direct', 'col2im', got 'im2col'", dict(algo="im2col")),
    (ValueError, r"out must have shape \(1, 2, 5, 5\), got \(1, 2, 4, 4\)", dict(out=np.empty((1, 2, 4, 4)))),
    (ValueError, r"out must have dtype float64, got float32", dict(out=np.empty((1, 2, 5, 5), np.float32))),
]


@pytest.mark.parametrize("exc, pattern, overrides", ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_errors(exc, pattern, overrides):
    overrides = dict(overrides)
    args = dict(x=X, weight=W, bias=None)
    args.update({k: overrides.pop(k) for k in ("x", "weight", "bias") if k in overrides})
    with pytest.raises(exc, match="conv_transpose2d: " + pattern):
        conv_transpose2d(args["x"], args["weight"], args["bias"], **overrides)


def test_plan_rejects_a_weight_that_is_not_4d():
    with pytest.raises(ValueError, match=r"plan_conv_transpose2d: weight must be 4-D \(C_in, O/groups, kH, kW\)"):
        plan_conv_transpose2d((1, 4, 3, 3), (4, 2, 3))


def test_out_overlapping_an_input_is_rejected():
    buf = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"conv_transpose2d: out must not overlap an input array"):
        conv_transpose2d(buf[:, :1, :3, :3], np.ones((1, 2, 3, 3)), out=buf)


# ------------------------------------------------------------------------------------------------
# Structure: threads, specialisations, dispatch
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ALGOS)
def test_bit_identical_for_one_and_two_threads(algo, in_parallel):
    rng = np.random.default_rng(3)
    x, w, b = _data(rng, (3, 8, 7, 6), (8, 9, 4, 3), 9, np.float32)
    before = fastconv.get_num_threads()
    results = []
    try:
        for n in (1, min(2, before)):
            fastconv.set_num_threads(n)
            results.append(conv_transpose2d(x, w, b, stride=2, padding=1, algo=algo))
    finally:
        fastconv.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(4)
    x, w, _ = _data(rng, (2, 8, 6, 6), (8, 8, 3, 3), 8, np.float64)
    expected = ref_conv_transpose2d(x, w, stride=2, padding=1)
    results = [None] * 4

    def work(i):
        results[i] = conv_transpose2d(x, w, stride=2, padding=1, algo=ALGOS[i % 2])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        _assert_close(r, expected, np.float64)


def test_kernels_keep_few_specialisations():
    # Output channels per group reaching every kernel: 1 -> the one-channel direct kernel, 8 -> the
    # 8-channel one; col2im on 4x16 images (64 positions: one image per item): 2 (18 GEMM rows) -> the
    # compiled kernel, 33 (297 rows, padded to 300; four images, so four items without splitting the
    # channels; 64 positions in 48-wide micro-tiles, float64 24-wide: too much waste) -> BLAS with packed
    # weights, col2im_item called from Python.
    rng = np.random.default_rng(5)
    for dtype, og, layout in itertools.product([np.float32, np.float64], [1, 2, 8, 33], ["c", "strided"]):
        x = rng.standard_normal((4, 2, 8, 16)).astype(dtype)
        x = x[:, :, ::2] if layout == "strided" else x[:, :, :4].copy()
        w = rng.standard_normal((2, og, 3, 3))
        w.flags.writeable = False
        for algo in ALGOS:
            conv_transpose2d(x, w.astype(dtype), stride=(2, 1), padding=1, algo=algo)
    for k in (kernels.conv_transpose_phases_ob8, kernels.conv_transpose_phases_ob1, col2im_kernels.col2im_item,
              col2im_kernels.pack_gemm_weights, col2im_gemm):
        assert 1 <= len(k.signatures) <= 2, (k, k.signatures)


def test_plan_and_tile_are_pure_functions_of_the_shape():
    plan = plan_conv_transpose2d((16, 128, 28, 28), (128, 64, 4, 4), stride=2, padding=1)  # T1
    assert plan.algo == "col2im" and plan.out_shape == (16, 64, 56, 56)
    assert "GEMM depth C_in/groups = 128 >= 4" in plan.reason
    assert plan_conv_transpose2d((32, 256, 14, 14), (256, 128, 2, 2), stride=2).algo == "col2im"  # T2
    t3 = plan_conv_transpose2d((8, 64, 56, 56), (64, 3, 3, 3), padding=1)  # few GEMM rows: compiled col2im
    assert t3.algo == "col2im" and "compiled GEMM" in t3.reason
    # per thread: the columns (27 rows x 3136 positions, in whole micro-tiles), accumulator, tail tile
    assert 27 * 3136 * 4 < t3.workspace_bytes < 2 * 27 * 3136 * 4 * numba.config.NUMBA_NUM_THREADS
    assert plan_conv_transpose2d((8, 64, 56, 56), (64, 1, 3, 3), padding=1).algo == "col2im"
    wide = plan_conv_transpose2d((8, 64, 56, 56), (64, 32, 3, 3), padding=1)  # stride 1: the equivalent conv2d
    if not HAS_AVX512:  # measured there only; AVX2 keeps the depth rule
        assert wide.algo == "col2im"
        wide = plan_conv_transpose2d((8, 64, 56, 56), (64, 32, 3, 3), padding=1, algo="direct")
    else:
        assert wide.algo == "direct" and "equivalent conv2d" in wide.reason
    # ... its workspace: the conv2d's (row-block buffers, no padded copy) plus the flipped weights
    assert 0 < wide.workspace_bytes < 8 * 64 * 56 * 56 * 4
    # padding beyond the kernel's reach (a cropped output) has no conv2d equivalent: depth rule
    assert plan_conv_transpose2d((8, 64, 56, 56), (64, 3, 3, 3), padding=3).algo == "col2im"
    depthwise = plan_conv_transpose2d((1, 32, 8, 8), (32, 1, 3, 3), groups=32)  # stride 1, 9 taps per phase
    assert depthwise.algo == "direct" and "9 taps per output phase (>= 6)" in depthwise.reason
    depthwise_s2 = plan_conv_transpose2d((1, 32, 8, 8), (32, 1, 4, 4), stride=2, groups=32)  # 4 taps per phase
    assert depthwise_s2.algo == "col2im" and "4 taps per output phase (< 6)" in depthwise_s2.reason
    assert plan_conv_transpose2d((1, 4, 3, 3), (4, 2, 3, 3), algo="direct").reason == "requested by the caller"
    assert plan.flops == 2 * 16 * 128 * 28 * 28 * 64 * 16
    assert plan_conv_transpose2d((1, 4, 3, 3), (4, 2, 3, 3), algo="col2im").workspace_bytes > 0
    # strided direct with >= 4 channels per group: the phase blocks (one result's worth) plus per-thread tiles
    t1_direct = plan_conv_transpose2d((16, 128, 28, 28), (128, 64, 4, 4), stride=2, padding=1, algo="direct")
    assert 16 * 64 * 56 * 56 * 4 < t1_direct.workspace_bytes < 2 * 16 * 64 * 56 * 56 * 4
    assert direct_split(16, 900, 30, 32, 4) == (1, 904)  # T1: one image, one tile per phase
    assert direct_split(32, 196, 14, 64, 4) == (5, 984)  # T2: five 14x14 images folded per tile
    imgs, tile = direct_split(1, 900, 30, 1, 4)  # a single work item: split
    assert imgs == 1 and tile % 8 == 0 and tile < 900
    assert direct_split(4, 5000, 50, 64, 8)[1] <= 512


# The compiled GEMM + col2im kernel (col2im with few GEMM rows): bands of one image (a single image
# gives too few items), partial last micro-tiles, groups, strides, dilation, a cropped output.
COMPILED_CASES = [
    ((2, 16, 9, 13), (16, 3, 3, 3), dict(padding=1)),
    ((1, 8, 23, 7), (8, 2, 4, 4), dict(stride=2, padding=1)),
    ((3, 12, 11, 10), (12, 1, 3, 2), dict(stride=(1, 3), dilation=(2, 1), groups=3)),
    ((1, 5, 30, 17), (5, 4, 5, 3), dict(padding=((3, 1), (0, 2)), output_padding=0)),
    ((2, 33, 8, 9), (33, 7, 2, 2), dict(stride=2, groups=1)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", COMPILED_CASES)
def test_compiled_col2im_matches_reference_and_blas(monkeypatch, case, dtype):
    x_shape, w_shape, kw = case
    rng = np.random.default_rng(11)
    x, w, b = _data(rng, x_shape, w_shape, w_shape[1] * kw.get("groups", 1), dtype)
    problem = ct.conv_transpose2d_problem("t", x.shape, w.shape, kw.get("stride", 1), kw.get("padding", 0), 0,
                                          None, kw.get("dilation", 1), kw.get("groups", 1), np.dtype(dtype))
    assert ct.uses_compiled_gemm(problem, ct.col2im_split(problem))
    compiled = conv_transpose2d(x, w, b, algo="col2im", **kw)
    _assert_close(compiled, ref_conv_transpose2d(x, w, b, **kw), dtype)
    monkeypatch.setattr(ct, "COL2IM_COMPILED_MAX_ROWS", 0)  # the same items on OpenBLAS
    monkeypatch.setattr(ct, "COMPILED_MAX_TILE_WASTE", 0)
    _assert_close(compiled, conv_transpose2d(x, w, b, algo="col2im", **kw), dtype)


def test_compiled_col2im_splits_one_image_into_bands_and_keeps_infinities():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 16, 40, 50))
    x[0, 3, 17, 49] = np.inf  # the last column: its product rows wrap nowhere
    x[0, 15, 39, 0] = -np.inf
    w = rng.standard_normal((16, 3, 3, 3))
    problem = ct.conv_transpose2d_problem("t", x.shape, w.shape, 1, 1, 0, None, 1, 1, np.dtype(np.float64))
    split = ct.col2im_split(problem)
    assert split.bands > 1 and ct.uses_compiled_gemm(problem, split)
    out = conv_transpose2d(x, w, padding=1, algo="col2im")
    expected = ref_conv_transpose2d(x, w, padding=1)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    assert np.isinf(expected).any()
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=0, atol=1e-11 * np.abs(expected[finite]).max())
