"""conv2d_backward and conv_transpose2d_backward: finite differences of the fastconv forwards (float64),
grid and hypothesis comparison with the numpy references, determinism across thread counts, errors."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastconv
import fastconv.backward
import fastconv.bands
import fastconv.dispatch
import fastconv.reference as ref
from conftest import FD_TOL, assert_close_to, at_one_and_two_threads, numeric_grad


CONV_CASES = {
    "plain": dict(),
    "stride2-pad1": dict(stride=2, padding=1),
    "pair-pad-dil2": dict(padding=(2, 1), dilation=2),
    "per-side-pad": dict(padding=((0, 2), (1, 0)), stride=(1, 2)),
    "same-stride2": dict(padding="same", stride=2),
    "same-dil": dict(padding="same", dilation=(1, 2)),
    "valid": dict(padding="valid"),
    "full": dict(padding="full"),
    "pad-beyond-kernel": dict(padding=3),
    "groups2": dict(groups=2, padding=1),
    "depthwise": dict(groups=4, padding=1, stride=2),
    "reflect": dict(padding=1, padding_mode="reflect"),
    "reflect-stride2": dict(padding=((1, 2), (2, 1)), padding_mode="reflect", stride=2),
    "replicate": dict(padding=(2, 1), padding_mode="replicate"),
    "circular": dict(padding=((2, 1), (0, 3)), padding_mode="circular", stride=2),
    "circular-depthwise": dict(padding=1, padding_mode="circular", groups=4),
}


def _conv_inputs(rng, options, c_out=4, dtype=np.float64, shape=(2, 4, 5, 4), kernel=(3, 2)):
    groups = options.get("groups", 1)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((c_out, shape[1] // groups) + kernel).astype(dtype)
    return x, w


@pytest.mark.parametrize("options", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv2d_backward_matches_finite_differences(rng, options):
    x, w = _conv_inputs(rng, options)
    b = rng.standard_normal(4)
    g = rng.standard_normal(fastconv.conv2d(x, w, b, **options).shape)
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, **options)

    def loss():
        return float(np.sum(fastconv.conv2d(x, w, b, **options) * g))

    np.testing.assert_allclose(gx, numeric_grad(loss, x), **FD_TOL)
    np.testing.assert_allclose(gw, numeric_grad(loss, w), **FD_TOL)
    np.testing.assert_allclose(gb, numeric_grad(loss, b), **FD_TOL)


TRANSPOSE_CASES = {
    "plain": dict(),
    "stride2-pad1-op1": dict(stride=2, padding=1, output_padding=1),
    "dil3-op2": dict(dilation=3, output_padding=2),  # output_padding >= stride: rows no input reaches
    "per-side": dict(padding=((1, 0), (0, 2)), stride=(2, 1)),
    "same": dict(padding="same", stride=2),
    "valid": dict(padding="valid", stride=(1, 2), output_padding=(0, 1)),
    "full": dict(padding="full"),
    "groups2": dict(groups=2, stride=2),
    "depthwise": dict(groups=4, padding=1),
}


def _transpose_inputs(rng, options, dtype=np.float64, shape=(2, 4, 3, 4), og=6, kernel=(2, 3)):
    groups = options.get("groups", 1)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((shape[1], og // groups if groups != shape[1] else 1) + kernel).astype(dtype)
    return x, w


@pytest.mark.parametrize("options", TRANSPOSE_CASES.values(), ids=TRANSPOSE_CASES.keys())
def test_conv_transpose2d_backward_matches_finite_differences(rng, options):
    x, w = _transpose_inputs(rng, options)
    b = rng.standard_normal(w.shape[1] * options.get("groups", 1))
    g = rng.standard_normal(fastconv.conv_transpose2d(x, w, b, **options).shape)
    gx, gw, gb = fastconv.conv_transpose2d_backward(g, x, w, **options)

    def loss():
        return float(np.sum(fastconv.conv_transpose2d(x, w, b, **options) * g))

    np.testing.assert_allclose(gx, numeric_grad(loss, x), **FD_TOL)
    np.testing.assert_allclose(gw, numeric_grad(loss, w), **FD_TOL)
    np.testing.assert_allclose(gb, numeric_grad(loss, b), **FD_TOL)


# ------------------------------------------------------------------------------------------------------
# Kernels vs references
# ------------------------------------------------------------------------------------------------------

def _assert_triple_close(actual, expected, dtype):
    for a, e in zip(actual, expected):
        assert_close_to(a, e, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("options", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv2d_backward_matches_reference(rng, options, dtype):
    x, w = _conv_inputs(rng, options, c_out=8, dtype=dtype, shape=(3, 4, 9, 7), kernel=(3, 3))
    g = rng.standard_normal(fastconv.conv2d(x, w, **options).shape).astype(dtype)
    expected = ref.conv2d_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64), **options)
    _assert_triple_close(fastconv.conv2d_backward(g, x, w, **options), expected, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("options", TRANSPOSE_CASES.values(), ids=TRANSPOSE_CASES.keys())
def test_conv_transpose2d_backward_matches_reference(rng, options, dtype):
    x, w = _transpose_inputs(rng, options, dtype=dtype, shape=(2, 4, 5, 6), og=8, kernel=(3, 3))
    g = rng.standard_normal(fastconv.conv_transpose2d(x, w, **options).shape).astype(dtype)
    expected = ref.conv_transpose2d_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
                                             **options)
    _assert_triple_close(fastconv.conv_transpose2d_backward(g, x, w, **options), expected, dtype)


BAND_SPLITS = {
    "row-bands": (1, 1),          # one output row of one image per band: 30 bands in 8 partial sums
    "two-images": (1, 72),        # whole images, two per band (the last band has one)
    "one-band": (2**30, 2**30),   # the whole batch in one band
}


@pytest.mark.parametrize("options", [dict(), dict(padding=1, stride=2), dict(groups=2, padding=(1, 0))],
                         ids=["plain", "pad-stride2", "groups2"])
@pytest.mark.parametrize("split", BAND_SPLITS.values(), ids=BAND_SPLITS.keys())
def test_conv2d_backward_band_splits_match_reference(rng, monkeypatch, split, options):
    # Bands of one row, of several images and of everything: the band sums and the partial sums of the
    # weight gradient, and the input gradient's band outputs, must all equal the reference.
    monkeypatch.setattr(fastconv.dispatch, "BATCH_INNER_MAX_OW", 0)  # the band path even for tiny maps
    monkeypatch.setattr(fastconv.bands, "BAND_BYTES", split[0])
    monkeypatch.setattr(fastconv.bands, "BAND_MIN_POSITIONS", split[1])
    x, w = _conv_inputs(rng, options, c_out=6, shape=(5, 4, 8, 8), kernel=(3, 3))
    g = rng.standard_normal(fastconv.conv2d(x, w, **options).shape)
    _assert_triple_close(fastconv.conv2d_backward(g, x, w, **options), ref.conv2d_backward(g, x, w, **options),
                         np.float64)


def test_mixed_dtypes_give_the_common_dtype(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3))
    g = rng.standard_normal((1, 3, 3, 3)).astype(np.float32)
    gx, gw, gb = fastconv.conv2d_backward(g, x, w)
    assert gx.dtype == gw.dtype == gb.dtype == np.float64
    _assert_triple_close((gx, gw, gb), ref.conv2d_backward(g, x, w), np.float64)


def test_empty_batch_gives_zero_gradients():
    gx, gw, gb = fastconv.conv2d_backward(np.zeros((0, 3, 3, 3)), np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)))
    assert gx.shape == (0, 2, 5, 5) and not gw.any() and gw.shape == (3, 2, 3, 3) and not gb.any()
    gx, gw, gb = fastconv.conv_transpose2d_backward(np.zeros((0, 3, 4, 4)), np.zeros((0, 2, 2, 2)),
                                                    np.ones((2, 3, 3, 3)))
    assert gx.shape == (0, 2, 2, 2) and not gw.any() and gb.shape == (3,)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_conv2d_backward_property_matches_reference(data):
    draw = data.draw
    groups = draw(st.sampled_from([1, 2, 3]))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ih = draw(st.integers((kh - 1) * dh + 1, 9))
    iw = draw(st.integers((kw - 1) * dw + 1, 9))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    limit_h, limit_w = (ih - 1, iw - 1) if mode == "reflect" else (3, 3)
    pads = ((draw(st.integers(0, limit_h)), draw(st.integers(0, limit_h))),
            (draw(st.integers(0, limit_w)), draw(st.integers(0, limit_w))))
    if mode == "circular":
        pads = tuple((min(a, n), min(b, n)) for (a, b), n in zip(pads, (ih, iw)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 3)), c_in, ih, iw))
    w = rng.standard_normal((c_out, c_in // groups, kh, kw))
    options = dict(stride=(sh, sw), padding=pads, dilation=(dh, dw), groups=groups, padding_mode=mode)
    g = rng.standard_normal(fastconv.conv2d(x, w, **options).shape)
    _assert_triple_close(fastconv.conv2d_backward(g, x, w, **options), ref.conv2d_backward(g, x, w, **options),
                         np.float64)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_conv_transpose2d_backward_property_matches_reference(data):
    draw = data.draw
    groups = draw(st.sampled_from([1, 2]))
    c_in, og = groups * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    oph, opw = draw(st.integers(0, max(sh, dh) - 1)), draw(st.integers(0, max(sw, dw) - 1))
    ih, iw = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    options = dict(stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw), dilation=(dh, dw), groups=groups)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((2, c_in, ih, iw))
    w = rng.standard_normal((c_in, og, kh, kw))
    try:
        shape = fastconv.conv_transpose2d(x, w, **options).shape
    except ValueError:  # padding larger than the output: no such transposed convolution
        return
    g = rng.standard_normal(shape)
    _assert_triple_close(fastconv.conv_transpose2d_backward(g, x, w, **options),
                         ref.conv_transpose2d_backward(g, x, w, **options), np.float64)


# ------------------------------------------------------------------------------------------------------
# Determinism across thread counts
# ------------------------------------------------------------------------------------------------------

THREAD_CASES = {
    "gemm-stride1": dict(padding=1),
    "transpose-stride2": dict(stride=2, padding=1),
    "depthwise-direct": dict(groups=8, padding=1),
    "reflect-fold": dict(padding=2, padding_mode="reflect", stride=2),
}


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
@pytest.mark.parametrize("options", THREAD_CASES.values(), ids=THREAD_CASES.keys())
def test_conv2d_backward_bit_identical_across_thread_counts(rng, options):
    x, w = _conv_inputs(rng, options, c_out=8, dtype=np.float32, shape=(3, 8, 20, 17), kernel=(3, 3))
    g = rng.standard_normal(fastconv.conv2d(x, w, **options).shape).astype(np.float32)
    one, two = at_one_and_two_threads(lambda: fastconv.conv2d_backward(g, x, w, **options))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
def test_conv_transpose2d_backward_bit_identical_across_thread_counts(rng):
    x, w = _transpose_inputs(rng, {}, dtype=np.float32, shape=(3, 8, 9, 10), og=8, kernel=(3, 3))
    options = dict(stride=2, padding=1, output_padding=1)
    g = rng.standard_normal(fastconv.conv_transpose2d(x, w, **options).shape).astype(np.float32)
    one, two = at_one_and_two_threads(lambda: fastconv.conv_transpose2d_backward(g, x, w, **options))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------

def test_conv2d_backward_errors():
    x, w = np.zeros((2, 3, 6, 6)), np.zeros((4, 3, 3, 3))
    g = np.zeros((2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"conv2d_backward: grad_out must have the forward's output shape "
                                         r"\(2, 4, 4, 4\) \(conv2d of x \(2, 3, 6, 6\)"):
        fastconv.conv2d_backward(np.zeros((2, 4, 6, 6)), x, w)
    with pytest.raises(ValueError, match=r"conv2d_backward: grad_out must have the forward's output shape "
                                         r"\(2, 4, 6, 6\)"):
        fastconv.conv2d_backward(g, x, w, padding="same")
    with pytest.raises(TypeError, match=r"conv2d_backward: grad_out must be a numpy.ndarray, got list"):
        fastconv.conv2d_backward([[0.0]], x, w)
    with pytest.raises(TypeError, match=r"conv2d_backward: grad_out must be float32 or float64, got int64"):
        fastconv.conv2d_backward(g.astype(np.int64), x, w)
    with pytest.raises(ValueError, match=r"conv2d_backward: grad_out must be 4-D, got shape \(4,\)"):
        fastconv.conv2d_backward(np.zeros(4), x, w)
    with pytest.raises(ValueError, match=r"conv2d_backward: padding_mode must be one of 'zeros', 'reflect'"):
        fastconv.conv2d_backward(g, x, w, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"conv2d_backward: padding_mode 'reflect' needs padding < input height 6"):
        fastconv.conv2d_backward(np.zeros((2, 4, 10, 10)), x, w, padding=6, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"conv2d_backward: groups must divide both input channels 3"):
        fastconv.conv2d_backward(g, x, w, groups=2)
    with pytest.raises(ValueError, match=r"conv2d_backward: stride must be >= 1, got 0"):
        fastconv.conv2d_backward(g, x, w, stride=0)


def test_conv_transpose2d_backward_errors():
    x, w = np.zeros((2, 3, 4, 4)), np.zeros((3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"conv_transpose2d_backward: grad_out must have the forward's output "
                                         r"shape \(2, 2, 6, 6\) \(conv_transpose2d of x"):
        fastconv.conv_transpose2d_backward(np.zeros((2, 2, 7, 7)), x, w)
    with pytest.raises(ValueError, match=r"conv_transpose2d_backward: output_padding must be < max\(stride, "
                                         r"dilation\)"):
        fastconv.conv_transpose2d_backward(np.zeros((2, 2, 7, 7)), x, w, output_padding=1)
    with pytest.raises(ValueError, match=r"conv_transpose2d_backward: weight.shape\[0\] must equal the input "
                                         r"channels 3"):
        fastconv.conv_transpose2d_backward(np.zeros((2, 2, 6, 6)), x, np.zeros((2, 2, 3, 3)))
    with pytest.raises(TypeError, match=r"conv_transpose2d_backward: weight must be float32 or float64"):
        fastconv.conv_transpose2d_backward(np.zeros((2, 2, 6, 6)), x, w.astype(np.int32))


MASKS = [(False, True, True), (True, False, False), (False, False, True), (True, True, False)]


@pytest.mark.parametrize("ops", [fastconv, ref], ids=["fastconv", "reference"])
@pytest.mark.parametrize("mask", MASKS, ids=[str(m) for m in MASKS])
def test_output_mask_skips_gradients_and_keeps_the_others(rng, ops, mask):
    x, w = _conv_inputs(rng, {})
    g = rng.standard_normal(fastconv.conv2d(x, w, padding=1, stride=(1, 2)).shape)
    full = ops.conv2d_backward(g, x, w, padding=1, stride=(1, 2))
    masked = ops.conv2d_backward(g, x, w, padding=1, stride=(1, 2), output_mask=mask)
    for wanted, a, b in zip(mask, masked, full):
        if wanted:
            np.testing.assert_array_equal(a, b)
        else:
            assert a is None
    xt, wt = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((3, 2, 3, 3))
    gt = rng.standard_normal(fastconv.conv_transpose2d(xt, wt, stride=2).shape)
    full = ops.conv_transpose2d_backward(gt, xt, wt, stride=2)
    masked = ops.conv_transpose2d_backward(gt, xt, wt, stride=2, output_mask=mask)
    for wanted, a, b in zip(mask, masked, full):
        if wanted:
            np.testing.assert_array_equal(a, b)
        else:
            assert a is None


@pytest.mark.parametrize("ops", [fastconv, ref], ids=["fastconv", "reference"])
@pytest.mark.parametrize("bad", [(True, True), [1, 1, 1], "all", None])
def test_output_mask_errors(ops, bad):
    x, w, g = np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2))
    with pytest.raises(TypeError, match=r"conv2d_backward: output_mask must be a tuple of three bools "
                                        r"\(grad_x, grad_weight, grad_bias\), got"):
        ops.conv2d_backward(g, x, w, output_mask=bad)
    with pytest.raises(TypeError, match=r"conv_transpose2d_backward: output_mask must be a tuple of three bools"):
        ops.conv_transpose2d_backward(np.zeros((1, 1, 4, 4)), x, w, output_mask=bad)
