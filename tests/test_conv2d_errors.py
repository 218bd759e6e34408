"""Every conv2d error path: the exception class (TypeError for a wrong kind, ValueError for a wrong
value) and the message, for the public function and the numpy reference (same messages).
"""

import re

import numpy as np
import pytest

import fastconv
import fastconv.reference

IMPLS = {"fastconv": fastconv.conv2d, "reference": fastconv.reference.conv2d}

X = np.zeros((1, 1, 5, 5))
W = np.ones((1, 1, 3, 3))


def _x(*shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


# name -> (args, kwargs, exception, regex that the message must match)
CASES = {
    # wrong kind of array
    "x_list": (([[1.0]], W), {}, TypeError, r"conv2d: x must be a numpy\.ndarray, got list; use np\.asarray\(x\)"),
    "x_int64": ((_x(1, 1, 5, 5, dtype=np.int64), W), {}, TypeError,
                r"conv2d: x must be float32 or float64, got int64; use x\.astype\(np\.float32\)"),
    "x_bool": ((_x(1, 1, 5, 5, dtype=bool), W), {}, TypeError, r"x must be float32 or float64, got bool; use x\.astype"),
    "x_complex": ((_x(1, 1, 5, 5, dtype=np.complex128), W), {}, TypeError,
                  r"x must be float32 or float64, got complex128; use x\.astype"),
    "x_float16": ((_x(1, 1, 5, 5, dtype=np.float16), W), {}, TypeError, r"x must be float32 or float64, got float16"),
    "weight_int32": ((X, np.ones((1, 1, 3, 3), np.int32)), {}, TypeError,
                     r"conv2d: weight must be float32 or float64, got int32; use weight\.astype\(np\.float32\)"),
    "weight_tuple": ((X, ((1.0,),)), {}, TypeError, r"conv2d: weight must be a numpy\.ndarray, got tuple"),
    "bias_int": ((X, W, np.ones(1, np.int64)), {}, TypeError,
                 r"conv2d: bias must be float32 or float64, got int64; use bias\.astype\(np\.float32\)"),
    "bias_list": ((X, W, [0.0]), {}, TypeError, r"conv2d: bias must be a numpy\.ndarray, got list"),
    # wrong number of dimensions / sizes
    "x_3d": ((_x(1, 5, 5), W), {}, ValueError, r"conv2d: x must be 4-D, got shape \(1, 5, 5\)"),
    "x_5d": ((_x(1, 1, 1, 5, 5), W), {}, ValueError, r"conv2d: x must be 4-D, got shape \(1, 1, 1, 5, 5\)"),
    "weight_2d": ((X, np.ones((3, 3))), {}, ValueError, r"conv2d: weight must be 4-D, got shape \(3, 3\)"),
    "bias_2d": ((X, W, np.zeros((1, 1))), {}, ValueError, r"conv2d: bias must be 1-D, got shape \(1, 1\)"),
    "bias_wrong_length": ((X, W, np.zeros(2)), {}, ValueError, r"conv2d: bias must have shape \(1,\), got \(2,\)"),
    "zero_channels": ((_x(1, 0, 5, 5), np.ones((1, 0, 3, 3))), {}, ValueError,
                      r"conv2d: channels and kernel sizes must be >= 1, got x \(1, 0, 5, 5\), weight \(1, 0, 3, 3\)"),
    "zero_kernel": ((X, np.ones((1, 1, 0, 3))), {}, ValueError, r"channels and kernel sizes must be >= 1"),
    "zero_outputs": ((X, np.ones((0, 1, 3, 3))), {}, ValueError, r"channels and kernel sizes must be >= 1"),
    # channels and groups
    "channel_mismatch": ((_x(1, 4, 5, 5), np.ones((2, 3, 3, 3))), {}, ValueError,
                         r"conv2d: weight\.shape\[1\] must be C / groups = 4 / 1 = 4, got 3 "
                         r"\(weight shape \(2, 3, 3, 3\)\)"),
    "group_channel_mismatch": ((_x(1, 4, 5, 5), np.ones((4, 4, 3, 3))), dict(groups=2), ValueError,
                               r"weight\.shape\[1\] must be C / groups = 4 / 2 = 2, got 4"),
    "groups_not_dividing_c": ((_x(1, 3, 5, 5), np.ones((2, 1, 3, 3))), dict(groups=2), ValueError,
                              r"conv2d: groups must divide both input channels 3 and output channels 2, got 2"),
    "groups_not_dividing_o": ((_x(1, 4, 5, 5), np.ones((3, 2, 3, 3))), dict(groups=2), ValueError,
                              r"groups must divide both input channels 4 and output channels 3, got 2"),
    "groups_zero": ((X, W), dict(groups=0), ValueError, r"conv2d: groups must be >= 1, got 0"),
    "groups_float": ((X, W), dict(groups=1.0), TypeError, r"conv2d: groups must be an int, got 1\.0"),
    "groups_bool": ((X, W), dict(groups=True), TypeError, r"conv2d: groups must be an int, got True"),
    # stride and dilation
    "stride_zero": ((X, W), dict(stride=0), ValueError, r"conv2d: stride must be >= 1, got 0"),
    "stride_negative": ((X, W), dict(stride=-2), ValueError, r"conv2d: stride must be >= 1, got -2"),
    "stride_pair_zero": ((X, W), dict(stride=(1, 0)), ValueError, r"conv2d: stride must be >= 1, got \(1, 0\)"),
    "stride_float": ((X, W), dict(stride=1.5), TypeError, r"conv2d: stride must be an int or a pair of ints, got 1\.5"),
    "stride_triple": ((X, W), dict(stride=(1, 1, 1)), TypeError, r"stride must be an int or a pair of ints, got \(1, 1, 1\)"),
    "stride_none": ((X, W), dict(stride=None), TypeError, r"stride must be an int or a pair of ints, got None"),
    "stride_bool": ((X, W), dict(stride=True), TypeError, r"stride must be an int or a pair of ints, got True"),
    "dilation_zero": ((X, W), dict(dilation=0), ValueError, r"conv2d: dilation must be >= 1, got 0"),
    "dilation_pair_negative": ((X, W), dict(dilation=(-1, 1)), ValueError, r"dilation must be >= 1, got \(-1, 1\)"),
    "dilation_str": ((X, W), dict(dilation="2"), TypeError, r"conv2d: dilation must be an int or a pair of ints, got '2'"),
    # padding
    "padding_negative": ((X, W), dict(padding=-1), ValueError, r"conv2d: padding must be >= 0 on every side, got -1"),
    "padding_pair_negative": ((X, W), dict(padding=(1, -1)), ValueError,
                              r"padding must be >= 0 on every side, got \(1, -1\)"),
    "padding_perside_negative": ((X, W), dict(padding=((0, 0), (-1, 0))), ValueError,
                                 r"padding must be >= 0 on every side, got \(\(0, 0\), \(-1, 0\)\)"),
    "padding_unknown_string": ((X, W), dict(padding="SAME"), ValueError,
                               r"conv2d: padding must be one of 'valid', 'same', 'full', got 'SAME'"),
    "padding_float": ((X, W), dict(padding=1.5), TypeError,
                      r"conv2d: padding must be an int, a pair \(ph, pw\), \(\(top, bottom\), \(left, right\)\) "
                      r"or one of 'valid', 'same', 'full', got 1\.5"),
    "padding_triple": ((X, W), dict(padding=(1, 1, 1)), TypeError, r"padding must be an int, a pair .* got \(1, 1, 1\)"),
    "padding_ragged": ((X, W), dict(padding=((1, 1), (1,))), TypeError,
                       r"padding must be an int, a pair .* got \(\(1, 1\), \(1,\)\)"),
    "padding_bool": ((X, W), dict(padding=True), TypeError, r"padding must be an int, a pair .* got True"),
    "padding_none": ((X, W), dict(padding=None), TypeError, r"padding must be an int, a pair .* got None"),
    # padding_mode
    "padding_mode_unknown": ((X, W), dict(padding=1, padding_mode="mirror"), ValueError,
                             r"conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', "
                             r"got 'mirror'"),
    "padding_mode_unknown_unpadded": ((X, W), dict(padding_mode="constant"), ValueError,
                                      r"padding_mode must be one of .* got 'constant'"),
    "reflect_padding_too_large": ((X, W), dict(padding=5, padding_mode="reflect"), ValueError,
                                  r"conv2d: padding_mode 'reflect' needs padding < input height 5, got padding \(5, 5\)"),
    "reflect_padding_too_large_width": ((_x(1, 1, 9, 4), W), dict(padding=((1, 1), (0, 4)), padding_mode="reflect"),
                                        ValueError, r"'reflect' needs padding < input width 4, got padding \(0, 4\)"),
    "circular_padding_too_large": ((X, W), dict(padding=((0, 0), (6, 0)), padding_mode="circular"), ValueError,
                                   r"conv2d: padding_mode 'circular' needs padding <= input width 5, got padding \(6, 0\)"),
    # output size
    "output_empty": ((_x(1, 1, 2, 5), W), {}, ValueError,
                     r"conv2d: output size must be >= 1, got \(0, 3\) for input size \(2, 5\), kernel_size \(3, 3\), "
                     r"stride \(1, 1\), padding \(\(0, 0\), \(0, 0\)\), dilation \(1, 1\)"),
    "output_empty_dilated": ((X, W), dict(dilation=(1, 3), padding=(1, 0)), ValueError,
                             r"output size must be >= 1, got \(5, -1\) for input size \(5, 5\), kernel_size \(3, 3\), "
                             r"stride \(1, 1\), padding \(\(1, 1\), \(0, 0\)\), dilation \(1, 3\)"),
    "output_empty_stride": ((_x(1, 1, 1, 1), np.ones((1, 1, 2, 2))), dict(stride=2), ValueError,
                            r"output size must be >= 1, got \(0, 0\) for input size \(1, 1\), kernel_size \(2, 2\), "
                            r"stride \(2, 2\)"),
    # out
    "out_list": ((X, W), dict(out=[0.0]), TypeError, r"conv2d: out must be a numpy\.ndarray or None, got list"),
    "out_shape": ((X, W), dict(out=np.zeros((1, 1, 3, 4))), ValueError,
                  r"conv2d: out must have shape \(1, 1, 3, 3\), got \(1, 1, 3, 4\)"),
    "out_dtype": ((X, W), dict(out=np.zeros((1, 1, 3, 3), np.float32)), ValueError,
                  r"conv2d: out must have dtype float64, got float32"),
    "out_dtype_mixed_inputs": ((X.astype(np.float32), W), dict(out=np.zeros((1, 1, 3, 3), np.float32)), ValueError,
                               r"out must have dtype float64, got float32"),
    "out_strided": ((X, W), dict(out=np.zeros((1, 1, 3, 6))[..., ::2]), ValueError,
                    r"conv2d: out must be C-contiguous and writeable"),
    "out_fortran": ((_x(1, 2, 5, 5), np.ones((2, 2, 3, 3))), dict(out=np.asfortranarray(np.zeros((1, 2, 3, 3)))),
                    ValueError, r"out must be C-contiguous and writeable"),
}


def _readonly_out():
    out = np.zeros((1, 1, 3, 3))
    out.setflags(write=False)
    return out


def _aliasing_cases():
    """out overlapping x, weight or bias (built fresh: they share memory on purpose)."""
    buf = np.zeros((1, 1, 3, 3))
    yield "out_is_x", (buf, np.ones((1, 1, 1, 1))), dict(out=buf)
    shared = np.zeros(12)
    yield "out_overlaps_x_partly", (shared[:9].reshape(1, 1, 3, 3), np.ones((1, 1, 1, 1))), dict(
        out=shared[3:].reshape(1, 1, 3, 3))
    flat = np.zeros(9)
    yield "out_overlaps_weight", (np.zeros((1, 1, 3, 3)), flat[:1].reshape(1, 1, 1, 1)), dict(out=flat.reshape(1, 1, 3, 3))
    flat_b = np.zeros(9)
    yield "out_overlaps_bias", (np.zeros((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), flat_b[:1]), dict(out=flat_b.reshape(1, 1, 3, 3))


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", list(CASES))
def test_error(case, impl):
    args, kwargs, exc, pattern = CASES[case]
    with pytest.raises(exc, match=pattern) as info:
        IMPLS[impl](*args, **kwargs)
    assert type(info.value) is exc  # not a subclass standing in for the other kind
    assert str(info.value).startswith("conv2d: ")


@pytest.mark.parametrize("impl", list(IMPLS))
def test_error_readonly_out(impl):
    with pytest.raises(ValueError, match=re.escape("conv2d: out must be C-contiguous and writeable; use np.empty(")):
        IMPLS[impl](X, W, out=_readonly_out())


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", [c[0] for c in _aliasing_cases()])
def test_error_out_overlapping_an_input(case, impl):
    args, kwargs = {c[0]: c[1:] for c in _aliasing_cases()}[case]
    before = [a.copy() for a in args]
    with pytest.raises(ValueError, match=r"conv2d: out must not overlap an input array; pass a separate buffer"):
        IMPLS[impl](*args, **kwargs)
    for a, a0 in zip(args, before):
        np.testing.assert_array_equal(a, a0)  # nothing was written before the check


@pytest.mark.parametrize("bad", ["fft", "Direct", "", None])
def test_error_unknown_algo_lists_valid_ones(bad):
    with pytest.raises(ValueError, match=r"conv2d: algo must be one of 'auto', 'direct', 'im2col', 'depthwise', 'first_layer', 'winograd', 'measure', got " + re.escape(repr(bad))):
        fastconv.conv2d(X, W, algo=bad)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_error_replicate_padding_of_an_empty_axis(impl):
    # An input with H = 0 and 'full' padding has a non-empty output; replicating an empty edge is
    # impossible, which must be a conv2d ValueError, not a raw numpy message.
    with pytest.raises(ValueError, match=r"^conv2d: .*replicate"):
        IMPLS[impl](_x(1, 1, 0, 3), W, padding="full", padding_mode="replicate")


def test_errors_are_raised_before_any_work_on_a_bad_algo_with_an_empty_batch():
    # Validation does not depend on the batch size: an empty batch still checks everything.
    with pytest.raises(ValueError, match=r"algo must be one of"):
        fastconv.conv2d(_x(0, 1, 5, 5), W, algo="fft")
    with pytest.raises(ValueError, match=r"output size must be >= 1"):
        fastconv.conv2d(_x(0, 1, 2, 2), W)


PLAN_CASES = {
    "x_3d": (((1, 5, 5), (1, 1, 3, 3)), {}, ValueError, r"plan_conv2d: x must be 4-D \(N, C, H, W\), got shape \(1, 5, 5\)"),
    "weight_3d": (((1, 1, 5, 5), (1, 3, 3)), {}, ValueError,
                  r"plan_conv2d: weight must be 4-D \(O, C/groups, kH, kW\), got shape \(1, 3, 3\)"),
    "stride_zero": (((1, 1, 5, 5), (1, 1, 3, 3)), dict(stride=0), ValueError, r"plan_conv2d: stride must be >= 1, got 0"),
    "output_empty": (((1, 1, 2, 2), (1, 1, 3, 3)), {}, ValueError, r"plan_conv2d: output size must be >= 1"),
    "unknown_algo": (((1, 1, 5, 5), (1, 1, 3, 3)), dict(algo="fft"), ValueError,
                     r"plan_conv2d: algo must be one of 'auto', 'direct', 'im2col', 'depthwise', 'first_layer', 'winograd', 'measure', got 'fft'"),
    "int_dtype": (((1, 1, 5, 5), (1, 1, 3, 3)), dict(dtype=np.int32), TypeError,
                  r"plan_conv2d: dtype must be float32 or float64, got int32"),
}


@pytest.mark.parametrize("case", list(PLAN_CASES))
def test_plan_conv2d_errors(case):
    args, kwargs, exc, pattern = PLAN_CASES[case]
    with pytest.raises(exc, match=pattern):
        fastconv.plan_conv2d(*args, **kwargs)
