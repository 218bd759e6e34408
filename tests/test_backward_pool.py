"""Pooling backward passes: finite differences of the fastconv forwards (float64), comparison with the
numpy references (grid and hypothesis), indices routing, tie/NaN rules, thread-count determinism, errors."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastconv
import fastconv.reference as ref
from conftest import FD_TOL, assert_close_to, at_one_and_two_threads, distinct, numeric_grad





def check_fd(forward, backward, x, rng):
    g = rng.standard_normal(forward(x).shape)
    fd = numeric_grad(lambda: float(np.sum(forward(x) * g)), x)
    np.testing.assert_allclose(backward(g, x), fd, **FD_TOL)


MAX_CASES = {
    "k2": (2, dict()),
    "k3s2p1-ceil": (3, dict(stride=2, padding=1, ceil_mode=True)),
    "k3s1-overlap": (3, dict(stride=1)),
    "dil2": (3, dict(stride=1, padding=1, dilation=2)),
    "rect-per-side": ((3, 2), dict(stride=(2, 1), padding=((1, 0), (0, 1)))),
    "same": (3, dict(stride=2, padding="same")),
    "valid-ceil": (2, dict(stride=2, padding="valid", ceil_mode=True)),
}


@pytest.mark.parametrize("kernel_size, options", MAX_CASES.values(), ids=MAX_CASES.keys())
def test_max_pool2d_backward_matches_finite_differences(rng, kernel_size, options):
    check_fd(lambda x: fastconv.max_pool2d(x, kernel_size, **options),
             lambda g, x: fastconv.max_pool2d_backward(g, x, kernel_size, **options), distinct(rng, (2, 2, 7, 6)), rng)


AVG_CASES = {
    "k2": (2, dict()),
    "k3s2p1-ceil": (3, dict(stride=2, padding=1, ceil_mode=True)),
    "k3s2p1-ceil-exclude": (3, dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    "k3s1-overlap": (3, dict(stride=1, padding=1)),
    "divisor": ((3, 2), dict(stride=(1, 2), padding=(1, 0), divisor_override=5)),
    "divisor-negative-ceil": (2, dict(stride=2, ceil_mode=True, divisor_override=-3)),
    "same": (3, dict(stride=2, padding="same")),
    "same-include": (2, dict(padding="same", stride=1, count_include_pad=True)),
    "per-side": (2, dict(stride=1, padding=((1, 0), (0, 1)))),
    "stride-gt-kernel": (2, dict(stride=3)),
}


@pytest.mark.parametrize("kernel_size, options", AVG_CASES.values(), ids=AVG_CASES.keys())
def test_avg_pool2d_backward_matches_finite_differences(rng, kernel_size, options):
    check_fd(lambda x: fastconv.avg_pool2d(x, kernel_size, **options),
             lambda g, x: fastconv.avg_pool2d_backward(g, x, kernel_size, **options),
             rng.standard_normal((2, 2, 7, 6)), rng)


ADAPTIVE_SIZES = [1, (2, 3), (3, 3), (5, 4), (7, 6), (None, 2)]


@pytest.mark.parametrize("output_size", ADAPTIVE_SIZES, ids=str)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_adaptive_backward_matches_finite_differences(rng, output_size, mode):
    # (5, 4) equals the input; (7, 6) is larger than the input: bins repeat cells.
    fwd = fastconv.adaptive_max_pool2d if mode == "max" else fastconv.adaptive_avg_pool2d
    bwd = fastconv.adaptive_max_pool2d_backward if mode == "max" else fastconv.adaptive_avg_pool2d_backward
    check_fd(lambda x: fwd(x, output_size), lambda g, x: bwd(g, x, output_size), distinct(rng, (2, 2, 5, 4)), rng)


SPP_CASES = [((1, 2, 4), "adaptive"), ((1, (2, 3)), "adaptive"), ((3,), "adaptive"), ((1, 2, 3), "paper"),
             (((2, 3), 1), "paper")]


@pytest.mark.parametrize("levels, rule", SPP_CASES, ids=["124", "1-23", "3", "paper-123", "paper-23-1"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_backward_matches_finite_differences(rng, levels, rule, mode):
    check_fd(lambda x: fastconv.spatial_pyramid_pool2d(x, levels, mode=mode, rule=rule),
             lambda g, x: fastconv.spatial_pyramid_pool2d_backward(g, x, levels, mode=mode, rule=rule),
             distinct(rng, (2, 2, 6, 7)), rng)


# ------------------------------------------------------------------------------------------------------
# Kernels vs references
# ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel_size, options", MAX_CASES.values(), ids=MAX_CASES.keys())
def test_max_pool2d_backward_matches_reference(rng, kernel_size, options, dtype):
    x = rng.standard_normal((3, 4, 11, 9)).astype(dtype)
    g = rng.standard_normal(fastconv.max_pool2d(x, kernel_size, **options).shape).astype(dtype)
    assert_close_to(fastconv.max_pool2d_backward(g, x, kernel_size, **options),
                    ref.max_pool2d_backward(g, x, kernel_size, **options), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel_size, options", AVG_CASES.values(), ids=AVG_CASES.keys())
def test_avg_pool2d_backward_matches_reference(rng, kernel_size, options, dtype):
    x = rng.standard_normal((3, 4, 11, 9)).astype(dtype)
    g = rng.standard_normal(fastconv.avg_pool2d(x, kernel_size, **options).shape).astype(dtype)
    assert_close_to(fastconv.avg_pool2d_backward(g, x, kernel_size, **options),
                    ref.avg_pool2d_backward(g, x, kernel_size, **options), dtype)


@pytest.mark.parametrize("output_size", ADAPTIVE_SIZES + [(11, 2), (13, 17)], ids=str)
def test_adaptive_backward_matches_reference(rng, output_size):
    x = rng.standard_normal((2, 3, 11, 9))
    g = rng.standard_normal(fastconv.adaptive_avg_pool2d(x, output_size).shape)
    assert_close_to(fastconv.adaptive_max_pool2d_backward(g, x, output_size),
                    ref.adaptive_max_pool2d_backward(g, x, output_size))
    assert_close_to(fastconv.adaptive_avg_pool2d_backward(g, x, output_size),
                    ref.adaptive_avg_pool2d_backward(g, x, output_size))


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_windowed_pool_backward_property_matches_reference(data):
    draw = data.draw
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    ih, iw = draw(st.integers(kh, 10)), draw(st.integers(kw, 10))
    ceil_mode = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((2, 2, ih, iw))
    if draw(st.booleans()):
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        options = dict(stride=(sh, sw), padding=(ph, pw), dilation=dilation, ceil_mode=ceil_mode)
        try:
            g = rng.standard_normal(fastconv.max_pool2d(x, (kh, kw), **options).shape)
        except ValueError:  # dilated window larger than the input
            return
        assert_close_to(fastconv.max_pool2d_backward(g, x, (kh, kw), **options),
                        ref.max_pool2d_backward(g, x, (kh, kw), **options))
    else:
        options = dict(stride=(sh, sw), padding=(ph, pw), ceil_mode=ceil_mode,
                       count_include_pad=draw(st.booleans()),
                       divisor_override=draw(st.sampled_from([None, None, 1, 7])))
        g = rng.standard_normal(fastconv.avg_pool2d(x, (kh, kw), **options).shape)
        assert_close_to(fastconv.avg_pool2d_backward(g, x, (kh, kw), **options),
                        ref.avg_pool2d_backward(g, x, (kh, kw), **options))


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_bin_pool_backward_property_matches_reference(data):
    draw = data.draw
    ih, iw = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((2, 3, ih, iw))
    if draw(st.booleans()):
        output_size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
        g = rng.standard_normal((2, 3) + output_size)
        assert_close_to(fastconv.adaptive_max_pool2d_backward(g, x, output_size),
                        ref.adaptive_max_pool2d_backward(g, x, output_size))
        assert_close_to(fastconv.adaptive_avg_pool2d_backward(g, x, output_size),
                        ref.adaptive_avg_pool2d_backward(g, x, output_size))
    else:
        levels = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
        mode = draw(st.sampled_from(["max", "avg"]))
        g = rng.standard_normal(fastconv.spatial_pyramid_pool2d(x, levels, mode=mode).shape)
        assert_close_to(fastconv.spatial_pyramid_pool2d_backward(g, x, levels, mode=mode),
                        ref.spatial_pyramid_pool2d_backward(g, x, levels, mode=mode))


# ------------------------------------------------------------------------------------------------------
# Routing rules: indices, ties, NaN
# ------------------------------------------------------------------------------------------------------

def test_max_pool2d_backward_with_forward_indices_equals_recomputed(rng):
    x = rng.standard_normal((2, 3, 9, 8))
    out, idx = fastconv.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    g = rng.standard_normal(out.shape)
    with_idx = fastconv.max_pool2d_backward(g, x, 3, stride=2, padding=1, indices=idx)
    np.testing.assert_array_equal(with_idx, fastconv.max_pool2d_backward(g, x, 3, stride=2, padding=1))


def test_max_pool2d_backward_routes_to_given_indices_even_if_not_the_maximum():
    x = np.zeros((1, 1, 2, 4))
    idx = np.array([[[[5, 5]]]], dtype=np.int32)  # both windows point at cell (1, 1)
    gx = fastconv.max_pool2d_backward(np.array([[[[1.0, 2.0]]]]), x, 2, indices=idx)
    np.testing.assert_array_equal(gx[0, 0], [[0, 0, 0, 0], [0, 3, 0, 0]])


def test_max_pool2d_backward_ties_go_to_first_maximum_and_nan_wins():
    x = np.array([[[[1.0, 2.0, 2.0], [2.0, 0.0, 1.0]]]])
    gx = fastconv.max_pool2d_backward(np.array([[[[1.0, 10.0]]]]), x, 2, stride=1)
    np.testing.assert_array_equal(gx[0, 0], [[0, 11, 0], [0, 0, 0]])  # first 2 in row-major order, twice
    x = np.array([[[[1.0, np.nan], [np.nan, 5.0]]]])
    gx = fastconv.max_pool2d_backward(np.array([[[[7.0]]]]), x, 2)
    np.testing.assert_array_equal(gx[0, 0], [[0, 0], [7, 0]])  # the last NaN, as the forward's index
    _, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    assert idx[0, 0, 0, 0] == 2


def test_adaptive_max_pool2d_backward_with_indices_and_repeated_cells(rng):
    x = rng.standard_normal((2, 2, 3, 2))
    out, idx = fastconv.adaptive_max_pool2d(x, (5, 4), return_indices=True)  # larger than the input
    g = rng.standard_normal(out.shape)
    gx = fastconv.adaptive_max_pool2d_backward(g, x, (5, 4), indices=idx)
    np.testing.assert_allclose(gx, ref.adaptive_max_pool2d_backward(g, x, (5, 4)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx.sum(axis=(2, 3)), g.sum(axis=(2, 3)), rtol=1e-12)  # every gradient lands once


def test_pool_backward_mixed_dtypes_and_empty_batch(rng):
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    g = rng.standard_normal((1, 2, 2, 2))
    assert fastconv.avg_pool2d_backward(g, x, 2).dtype == np.float64
    assert fastconv.max_pool2d_backward(g.astype(np.float32), x, 2).dtype == np.float32
    assert fastconv.max_pool2d_backward(np.zeros((0, 2, 2, 2)), np.zeros((0, 2, 4, 4)), 2).shape == (0, 2, 4, 4)
    assert fastconv.adaptive_avg_pool2d_backward(np.zeros((0, 2, 3, 3)), np.zeros((0, 2, 4, 4)), 3).shape == \
        (0, 2, 4, 4)


# ------------------------------------------------------------------------------------------------------
# Determinism across thread counts
# ------------------------------------------------------------------------------------------------------

THREAD_CASES = {
    "max-overlap": lambda g, x: fastconv.max_pool2d_backward(g, x, 3, stride=1, padding=1),
    "avg-overlap": lambda g, x: fastconv.avg_pool2d_backward(g, x, 3, stride=1, padding=1),
    "adaptive-max": lambda g, x: fastconv.adaptive_max_pool2d_backward(g, x, (13, 7)),
    "adaptive-avg": lambda g, x: fastconv.adaptive_avg_pool2d_backward(g, x, (13, 7)),
}
THREAD_OUT = {"max-overlap": (13, 11), "avg-overlap": (13, 11), "adaptive-max": (13, 7), "adaptive-avg": (13, 7)}


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
@pytest.mark.parametrize("name", THREAD_CASES)
@pytest.mark.parametrize("n_batch", [1, 4])
def test_pool_backward_bit_identical_across_thread_counts(rng, name, n_batch):
    # n_batch 1 with 2 channels: fewer planes than tasks wanted, so row blocks depend on the thread count.
    x = rng.standard_normal((n_batch, 2, 13, 11)).astype(np.float32)
    g = rng.standard_normal((n_batch, 2) + THREAD_OUT[name]).astype(np.float32)
    one, two = at_one_and_two_threads(lambda: THREAD_CASES[name](g, x))
    np.testing.assert_array_equal(one, two)


# ------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------

def test_max_pool2d_backward_errors():
    x = np.zeros((1, 2, 4, 4))
    g = np.zeros((1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: grad_out must have the forward's output shape "
                                         r"\(1, 2, 2, 2\) \(max_pool2d of x \(1, 2, 4, 4\)\), got \(1, 2, 3, 3\)"):
        fastconv.max_pool2d_backward(np.zeros((1, 2, 3, 3)), x, 2)
    with pytest.raises(TypeError, match=r"max_pool2d_backward: indices must be an integer numpy.ndarray"):
        fastconv.max_pool2d_backward(g, x, 2, indices=g)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: indices must have grad_out's shape"):
        fastconv.max_pool2d_backward(g, x, 2, indices=np.zeros((1, 2, 1, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: indices must lie in \[0, H \* W\) = \[0, 16\)"):
        fastconv.max_pool2d_backward(g, x, 2, indices=np.full((1, 2, 2, 2), 16))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: kernel_size must fit in the padded input"):
        fastconv.max_pool2d_backward(g, x, 5)
    with pytest.raises(TypeError, match=r"max_pool2d_backward: ceil_mode must be a bool, got 1"):
        fastconv.max_pool2d_backward(g, x, 2, ceil_mode=1)
    with pytest.raises(TypeError, match=r"max_pool2d_backward: x must be float32 or float64, got int64"):
        fastconv.max_pool2d_backward(g, x.astype(np.int64), 2)


def test_avg_pool2d_backward_errors():
    x = np.zeros((1, 2, 4, 4))
    g = np.zeros((1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: grad_out must have the forward's output shape"):
        fastconv.avg_pool2d_backward(g, x, 2, stride=1)
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: divisor_override must be non-zero, got 0"):
        fastconv.avg_pool2d_backward(g, x, 2, divisor_override=0)
    with pytest.raises(TypeError, match=r"avg_pool2d_backward: divisor_override must be an int or None, got 2.0"):
        fastconv.avg_pool2d_backward(g, x, 2, divisor_override=2.0)
    with pytest.raises(TypeError, match=r"avg_pool2d_backward: count_include_pad must be a bool"):
        fastconv.avg_pool2d_backward(g, x, 2, count_include_pad="yes")
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: padding must leave at least one input cell"):
        fastconv.avg_pool2d_backward(g, x, 2, padding=2)


def test_adaptive_and_spp_backward_errors():
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: grad_out must have the forward's output "
                                         r"shape \(1, 2, 3, 3\) \(adaptive_avg_pool2d of x"):
        fastconv.adaptive_avg_pool2d_backward(np.zeros((1, 2, 2, 2)), x, 3)
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d_backward: indices must lie in \[0, H \* W\)"):
        fastconv.adaptive_max_pool2d_backward(np.zeros((1, 2, 2, 2)), x, 2, indices=np.full((1, 2, 2, 2), -1))
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d_backward: output_size must be >= 1"):
        fastconv.adaptive_max_pool2d_backward(np.zeros((1, 2, 2, 2)), x, 0)
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool2d_backward: grad_out must have the forward's "
                                         r"output shape \(1, 10\)"):
        fastconv.spatial_pyramid_pool2d_backward(np.zeros((1, 42)), x, (1, 2))
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool2d_backward: mode must be one of 'max', 'avg'"):
        fastconv.spatial_pyramid_pool2d_backward(np.zeros((1, 10)), x, (1, 2), mode="sum")
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool2d_backward: levels entry \(4, 4\) gives 5 bins"):
        fastconv.spatial_pyramid_pool2d_backward(np.zeros((1, 32)), np.zeros((1, 2, 11, 11)), (4,), rule="paper")
    with pytest.raises(TypeError, match=r"spatial_pyramid_pool2d_backward: levels must be a sequence"):
        fastconv.spatial_pyramid_pool2d_backward(np.zeros((1, 2)), x, 1)


# ------------------------------------------------------------------------------------------------------
# Compiled specialisations stay few (kernels only ever see C-contiguous float32/float64 and int64 arrays)
# ------------------------------------------------------------------------------------------------------

def test_backward_kernels_compile_at_most_one_signature_per_dtype(rng):
    from fastconv._kernels import backward_conv, backward_pool

    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 4, 7, 6)).astype(dtype)
        fastconv.max_pool2d_backward(np.ones((2, 4, 3, 3), dtype), x[:, :, ::1, :], 2)
        fastconv.avg_pool2d_backward(np.ones((2, 4, 3, 3), dtype), x, 2)
        for groups in (1, 4):  # GEMM (im2col) and direct weight-gradient paths, strided grad_out views
            g = rng.standard_normal((2, 4, 6, 4)).astype(dtype).transpose(0, 1, 2, 3)[:, :, :, :]
            fastconv.conv2d_backward(g, x[:, :, :, ::-1], rng.standard_normal((4, 4 // groups, 2, 3)).astype(dtype),
                                     groups=groups)
    for kern in (backward_pool.route_max_kernel, backward_pool.box_backward_kernel, backward_conv.grad_weight_rows):
        assert 1 <= len(kern.signatures) <= 2, (kern, kern.signatures)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("rule", ["adaptive", "paper"])
def test_spp_max_backward_equals_the_sum_of_per_level_routes_with_ties_and_nans(rng, dtype, rule):
    # 3 x 50 = 150 planes: two full plane blocks and a partial one. Integer values make ties common and
    # every sum exact, so the one-pass kernel must equal the per-level routes bit for bit.
    x = rng.integers(0, 4, (3, 50, 9, 7)).astype(dtype)
    x[0, 1, 2, 3] = x[1, 7, 0, 0] = x[1, 7, 8, 6] = x[2, 49, 4, 4] = np.nan
    levels = (1, 2, 3) if rule == "paper" else (1, 2, 4, (3, 5))
    out = fastconv.spatial_pyramid_pool2d(x, levels, rule=rule)
    g = rng.integers(-8, 9, out.shape).astype(dtype)
    got = fastconv.spatial_pyramid_pool2d_backward(g, x, levels, rule=rule)
    want, offset = np.zeros_like(x), 0
    for level in levels:
        lh, lw = (level, level) if isinstance(level, int) else level
        block = g[:, offset:offset + 50 * lh * lw].reshape(3, 50, lh, lw)
        offset += 50 * lh * lw
        if rule == "paper":
            (kh, sh), (kw, sw) = (fastconv.shapes.paper_window_stride(9, lh),
                                  fastconv.shapes.paper_window_stride(7, lw))
            want += fastconv.max_pool2d_backward(block, x, (kh, kw), stride=(sh, sw))
        else:
            want += fastconv.adaptive_max_pool2d_backward(block, x, (lh, lw))
    np.testing.assert_array_equal(got, want)
    assert got.dtype == dtype


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
def test_spp_max_backward_bit_identical_across_thread_counts(rng):
    x = rng.standard_normal((32, 192, 13, 13)).astype(np.float32)  # above the serial threshold
    g = rng.standard_normal((32, 192 * 21)).astype(np.float32)
    one, two = at_one_and_two_threads(lambda: fastconv.spatial_pyramid_pool2d_backward(g, x, (1, 2, 4)))
    np.testing.assert_array_equal(one, two)
