"""conv2d_backward's evaluation paths, each forced on the same problems: batch-innermost (tiny maps),
band GEMMs (serial and on worker threads), the direct row kernel (depthwise-like), the direct kernels
(input gradient as a conv2d, weight gradient by the blocked micro-kernel); plus the GEMM entry
point, the bias kernels, the problem cache, concurrency and compiled signatures."""

import threading

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastconv
import fastconv.backward as bw
import fastconv.bands as bands
import fastconv.dispatch as dispatch
import fastconv.reference as ref
from conftest import FD_TOL, assert_close_to, at_one_and_two_threads, numeric_grad
from fastconv._kernels import backward_conv as kernels
from fastconv._kernels import backward_conv_direct
from fastconv._kernels import backward_conv_gemm
from fastconv._kernels import im2col as im2col_kernels
from fastconv.blas import blas_available, blas_num_threads
from test_backward_conv import CONV_CASES, _conv_inputs

# Module settings that force one path. "threads" also splits into many small bands and runs them on the
# worker threads whatever the problem size (SERIAL_MACS = 0).
# "direct": the input gradient as a conv2d and the weight gradient by the direct kernel's micro-kernel
# (AVX-512's default from 16 output channels per group), forced from one channel (partial blocks).
_BANDS_ONLY = dict(GRAD_X_AS_CONV2D=False, GRAD_WEIGHT_BLOCKED=False)
ROUTES = {
    "batch-inner": dict(BATCH_INNER_MAX_OW=1 << 30, BATCH_INNER_MAX_GROUPS=1 << 30),
    "bands": dict(BATCH_INNER_MAX_OW=0, **_BANDS_ONLY),
    "threads": dict(BATCH_INNER_MAX_OW=0, SERIAL_MACS=0, BAND_BYTES=1, BAND_MIN_POSITIONS=1, **_BANDS_ONLY),
    "direct": dict(BATCH_INNER_MAX_OW=0, SERIAL_MACS=0, GRAD_X_AS_CONV2D=True, GRAD_WEIGHT_BLOCKED=True,
                   GRAD_WEIGHT_BLOCKED_MIN_CHANNELS=1),
}


def _set_route(mp, route):
    """Apply a route's settings wherever the name lives (band sizes: fastconv.bands; batch-inner limits:
    fastconv.dispatch)."""
    for name, value in route.items():
        for module in (bw, bands, dispatch):
            if hasattr(module, name):
                mp.setattr(module, name, value)


@pytest.fixture(params=list(ROUTES), ids=list(ROUTES))
def route(request, monkeypatch):
    _set_route(monkeypatch, ROUTES[request.param])
    return request.param


def _triple_close(actual, expected, dtype):
    for a, e in zip(actual, expected):
        assert_close_to(a, e, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("options", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_every_route_matches_reference(rng, route, options, dtype):
    x, w = _conv_inputs(rng, options, c_out=8, dtype=dtype, shape=(3, 4, 9, 7), kernel=(3, 3))
    g = rng.standard_normal(fastconv.conv2d(x, w, **options).shape).astype(dtype)
    expected = ref.conv2d_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64), **options)
    _triple_close(fastconv.conv2d_backward(g, x, w, **options), expected, dtype)


@pytest.mark.parametrize("options", [dict(padding=1), dict(padding=(2, 1), dilation=2, stride=(1, 2)),
                                     dict(padding=1, padding_mode="reflect", groups=2),
                                     dict(padding=((1, 0), (2, 1)), padding_mode="circular", stride=2)],
                         ids=["pad1", "dil2-stride12", "reflect-groups2", "circular-stride2"])
def test_every_route_matches_finite_differences(rng, route, options):
    x, w = _conv_inputs(rng, options, c_out=4, shape=(2, 4, 6, 5), kernel=(3, 3))
    b = rng.standard_normal(4)
    g = rng.standard_normal(fastconv.conv2d(x, w, b, **options).shape)
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, **options)

    def loss():
        return float(np.sum(fastconv.conv2d(x, w, b, **options) * g))

    np.testing.assert_allclose(gx, numeric_grad(loss, x), **FD_TOL)
    np.testing.assert_allclose(gw, numeric_grad(loss, w), **FD_TOL)
    np.testing.assert_allclose(gb, numeric_grad(loss, b), **FD_TOL)


MASKS = [(False, True, True), (True, False, False), (False, False, True), (True, True, False),
         (True, False, True), (False, True, False)]


@pytest.mark.parametrize("mask", MASKS, ids=[str(m) for m in MASKS])
def test_every_route_gives_masked_gradients_bit_identical_to_full(rng, route, mask):
    x, w = _conv_inputs(rng, {}, c_out=6, dtype=np.float32, shape=(3, 4, 7, 6), kernel=(3, 3))
    g = rng.standard_normal((3, 6, 7, 6)).astype(np.float32)
    full = fastconv.conv2d_backward(g, x, w, padding=1)
    masked = fastconv.conv2d_backward(g, x, w, padding=1, output_mask=mask)
    for wanted, a, b in zip(mask, masked, full):
        if wanted:
            np.testing.assert_array_equal(a, b)
        else:
            assert a is None


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_band_and_thread_routes_property_match_reference(data):
    draw = data.draw
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(2, 4))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ih, iw = draw(st.integers((kh - 1) * dh + 1, 10)), draw(st.integers((kw - 1) * dw + 1, 10))
    pads = ((draw(st.integers(0, 2)), draw(st.integers(0, 2))), (draw(st.integers(0, 2)), draw(st.integers(0, 2))))
    settings_ = ROUTES[draw(st.sampled_from(["bands", "threads", "direct"]))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 4)), c_in, ih, iw))
    w = rng.standard_normal((c_out, c_in // groups, kh, kw))
    options = dict(stride=(sh, sw), padding=pads, dilation=(dh, dw), groups=groups)
    g = rng.standard_normal(fastconv.conv2d(x, w, **options).shape)
    with pytest.MonkeyPatch.context() as mp:
        _set_route(mp, settings_)
        got = fastconv.conv2d_backward(g, x, w, **options)
    _triple_close(got, ref.conv2d_backward(g, x, w, **options), np.float64)


THREAD_CASES = {
    "plain": dict(padding=1),
    "groups2-stride2": dict(padding=1, stride=2, groups=2),
    "reflect-dil2": dict(padding=2, dilation=2, padding_mode="reflect"),
    "depthwise": dict(padding=1, groups=8),
}


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
@pytest.mark.parametrize("options", THREAD_CASES.values(), ids=THREAD_CASES.keys())
@pytest.mark.parametrize("split", [dict(**_BANDS_ONLY), dict(BAND_BYTES=1, BAND_MIN_POSITIONS=1, **_BANDS_ONLY),
                                   dict(GRAD_X_AS_CONV2D=True, GRAD_WEIGHT_BLOCKED=True,
                                        GRAD_WEIGHT_BLOCKED_MIN_CHANNELS=1)],
                         ids=["default-bands", "row-bands", "direct-kernels"])
def test_worker_threads_bit_identical_to_one_thread(rng, monkeypatch, options, split):
    # SERIAL_MACS = 0: the band GEMMs run on worker threads even for this small problem.
    _set_route(monkeypatch, dict(SERIAL_MACS=0, **split))
    x, w = _conv_inputs(rng, options, c_out=8, dtype=np.float32, shape=(5, 8, 21, 18), kernel=(3, 3))
    g = rng.standard_normal(fastconv.conv2d(x, w, **options).shape).astype(np.float32)
    one, two = at_one_and_two_threads(lambda: fastconv.conv2d_backward(g, x, w, **options))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    _triple_close(two, ref.conv2d_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
                                           **options), np.float32)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
def test_large_problem_bit_identical_across_thread_counts(rng):
    # Above SERIAL_MACS (37.7M multiply-adds): worker threads at the default settings.
    x = rng.standard_normal((4, 32, 32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    g = rng.standard_normal((4, 32, 32, 32)).astype(np.float32)
    one, two = at_one_and_two_threads(lambda: fastconv.conv2d_backward(g, x, w, padding=1))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_concurrent_calls_from_python_threads(rng):
    # Two Python threads, one on the threaded band path and one on the batch-innermost path, many times:
    # every result equals the single-threaded one, and numpy's BLAS thread count is restored at the end.
    big = [rng.standard_normal(s).astype(np.float32) for s in ((2, 32, 32, 32), (32, 32, 3, 3), (2, 32, 32, 32))]
    small = [rng.standard_normal(s).astype(np.float32) for s in ((8, 4, 5, 5), (6, 4, 3, 3), (8, 6, 5, 5))]
    expected = {k: fastconv.conv2d_backward(args[2], args[0], args[1], padding=1)
                for k, args in (("big", big), ("small", small))}
    blas_before = blas_num_threads()
    failures = []

    def work(key, args):
        for _ in range(8):
            got = fastconv.conv2d_backward(args[2], args[0], args[1], padding=1)
            if not all(np.array_equal(a, b) for a, b in zip(got, expected[key])):
                failures.append(key)

    threads = [threading.Thread(target=work, args=("big", big)), threading.Thread(target=work, args=("small", small))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert blas_num_threads() == blas_before


def test_read_only_and_strided_inputs(rng):
    x = rng.standard_normal((3, 9, 7, 4)).transpose(0, 3, 1, 2)  # (3, 4, 9, 7), not contiguous
    w = rng.standard_normal((8, 4, 3, 3))
    g = rng.standard_normal((3, 8, 9, 7))
    w.flags.writeable = False
    g.flags.writeable = False
    _triple_close(fastconv.conv2d_backward(g, x, w, padding=1), ref.conv2d_backward(g, x, w, padding=1),
                  np.float64)


# ------------------------------------------------------------------------------------------------------
# Kernels and helpers
# ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (2, 3, 7, 9), (1, 2, 1, 3), (4, 1, 8, 8)])
def test_bias_kernels_agree_bitwise_and_with_float64(rng, shape):
    g = rng.standard_normal(shape).astype(np.float32)
    a = np.empty(shape[1], np.float32)
    b = np.empty(shape[1], np.float32)
    kernels.bias_grad(g.reshape(shape[0], shape[1], -1), a)
    kernels.to_batch_inner_sums(g, np.empty((shape[1], shape[2], shape[3], shape[0]), np.float32), b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, g.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-6, atol=1e-5)


def test_batch_inner_layout_roundtrip(rng):
    x = rng.standard_normal((3, 2, 4, 5))
    xb = np.full((2, 7, 8, 3), np.nan)
    im2col_kernels.to_batch_inner(x, xb, 1, 2)
    expected = np.zeros((2, 7, 8, 3))
    expected[:, 1:5, 2:7, :] = x.transpose(1, 2, 3, 0)
    np.testing.assert_array_equal(xb, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_views_accumulate_and_fallback(rng, monkeypatch, dtype):
    a = rng.standard_normal((7, 9)).astype(dtype)
    b = rng.standard_normal((11, 9)).astype(dtype)
    big = rng.standard_normal((7, 20)).astype(dtype)
    expected = big.copy()
    expected[:, 3:14] += a @ b.T
    for entries in (None, {}):
        if entries is not None:
            monkeypatch.setattr(backward_conv_gemm, "_ENTRIES", entries)  # the numpy fallback
        c = big.copy()
        backward_conv_gemm.gemm(a, b.T, c[:, 3:14], True)  # transposed operand, strided destination
        np.testing.assert_allclose(c, expected, rtol=1e-5)
        d = np.empty((7, 11), dtype)
        backward_conv_gemm.gemm(a[:, ::1], b.T, d, False)
        np.testing.assert_allclose(d, a @ b.T, rtol=1e-5)


def test_gemm_finds_cblas_with_numpys_openblas():
    if not blas_available():
        pytest.skip("numpy is not built with OpenBLAS")
    assert backward_conv_gemm.available()


def test_problem_cache_keys_on_types_and_never_caches_errors():
    x, w, g = np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3)), np.zeros((1, 3, 3, 3))
    fastconv.conv2d_backward(g, x, w, stride=1)
    with pytest.raises(TypeError, match=r"conv2d_backward: stride must be an int or a pair of ints, got True"):
        fastconv.conv2d_backward(g, x, w, stride=True)
    for _ in range(2):  # the failure is not remembered either
        with pytest.raises(ValueError, match=r"conv2d_backward: stride must be >= 1, got 0"):
            fastconv.conv2d_backward(g, x, w, stride=0)
    gx, _, _ = fastconv.conv2d_backward(g, x, w, stride=[1, 1], padding=[0, 0])  # lists are keyed too
    assert gx.shape == x.shape
    gx, _, _ = fastconv.conv2d_backward(g, x, w, stride=np.int64(1))  # numpy ints: not cached, still fine
    assert gx.shape == x.shape


def test_compiled_signatures_stay_few(rng):
    # Both dtypes through every path and option: one specialisation per dtype and kernel.
    for dtype in (np.float32, np.float64):
        for options in CONV_CASES.values():
            for route in ROUTES.values():
                with pytest.MonkeyPatch.context() as mp:
                    _set_route(mp, route)
                    x, w = _conv_inputs(rng, options, c_out=8, dtype=dtype, shape=(2, 4, 9, 7), kernel=(3, 3))
                    g = rng.standard_normal(fastconv.conv2d(x, w, **options).shape).astype(dtype)
                    fastconv.conv2d_backward(g, x, w, **options)
    for kern in (im2col_kernels.im2col_band, kernels.grad_weight_rows, im2col_kernels.to_batch_inner,
                 kernels.to_batch_inner_sums, im2col_kernels.unfold_batch_inner, kernels.fold_batch_inner,
                 kernels.bias_grad, backward_conv_direct.grad_weight_blocked, backward_conv_direct.pack_positions):
        assert 1 <= len(kern.signatures) <= 2, (kern, kern.signatures)
