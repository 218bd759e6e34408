"""Every conv2d algorithm against the float64 numpy reference, over a grid of configurations.

The grid varies one factor at a time around a small base case (readable ids), plus a few cases that
combine factors; each case runs for every algo and both float dtypes. Every algorithm accepts every
problem, including the row-block kernels ("depthwise", "first_layer") designed for narrower ones; their
own edge cases (row blocks, chunks, thread counts) are in test_conv2d_depthwise.py and
test_conv2d_first_layer.py.
"""

import numpy as np
import pytest

import fastconv

ALGOS = ("auto", "direct", "im2col", "depthwise", "first_layer")
DTYPES = (np.float32, np.float64)

# name -> (x shape (N, C, H, W), weight shape (O, C/groups, kH, kW), bias?, options)
BASE_X, BASE_W = (2, 3, 7, 8), (5, 3, 3, 3)
CASES = {
    "base": (BASE_X, BASE_W, True, {}),
    "no_bias": (BASE_X, BASE_W, False, {}),
    "n1": ((1, 3, 7, 8), BASE_W, True, {}),
    "n3": ((3, 3, 7, 8), BASE_W, True, {}),
    # strides
    "stride2": (BASE_X, BASE_W, True, dict(stride=2)),
    "stride3": (BASE_X, BASE_W, True, dict(stride=3)),
    "stride1x2": (BASE_X, BASE_W, True, dict(stride=(1, 2))),
    "stride_larger_than_kernel": ((1, 2, 9, 9), (4, 2, 2, 2), True, dict(stride=3)),
    # dilations
    "dil2": (BASE_X, BASE_W, True, dict(dilation=2)),
    "dil2x1": (BASE_X, BASE_W, True, dict(dilation=(2, 1))),
    "dil2_stride2": ((1, 3, 9, 9), BASE_W, True, dict(dilation=2, stride=2)),
    # padding forms
    "pad1": (BASE_X, BASE_W, True, dict(padding=1)),
    "pad_pair": (BASE_X, BASE_W, True, dict(padding=(2, 0))),
    "pad_perside": (BASE_X, BASE_W, True, dict(padding=((0, 2), (3, 1)))),
    "pad_larger_than_kernel": (BASE_X, BASE_W, True, dict(padding=4)),
    "valid": (BASE_X, BASE_W, True, dict(padding="valid")),
    "same": (BASE_X, BASE_W, True, dict(padding="same")),
    "same_stride2": (BASE_X, BASE_W, True, dict(padding="same", stride=2)),
    "same_even_kernel": (BASE_X, (5, 3, 4, 2), True, dict(padding="same")),
    "same_even_kernel_stride2_dil2": (BASE_X, (5, 3, 2, 4), True, dict(padding="same", stride=2, dilation=2)),
    "full": (BASE_X, BASE_W, True, dict(padding="full")),
    "full_dil2_stride2": (BASE_X, BASE_W, True, dict(padding="full", dilation=2, stride=2)),
    # padding modes (each with a border wider than one pixel and asymmetric per-side pads)
    "reflect": (BASE_X, BASE_W, True, dict(padding=((2, 1), (1, 3)), padding_mode="reflect")),
    "replicate": (BASE_X, BASE_W, True, dict(padding=((2, 1), (1, 3)), padding_mode="replicate")),
    "circular": (BASE_X, BASE_W, True, dict(padding=((2, 1), (1, 3)), padding_mode="circular")),
    "circular_pad_eq_size": ((1, 2, 3, 4), (3, 2, 3, 3), True, dict(padding=((3, 3), (4, 0)),
                                                                    padding_mode="circular")),
    "reflect_same_stride2": (BASE_X, BASE_W, True, dict(padding="same", stride=2, padding_mode="reflect")),
    "replicate_full_dil2": (BASE_X, (5, 3, 2, 3), True, dict(padding="full", dilation=2,
                                                           padding_mode="replicate")),
    "circular_stride2x3": (BASE_X, BASE_W, True, dict(padding=2, stride=(2, 3), padding_mode="circular")),
    # groups
    "groups3": ((2, 6, 7, 8), (6, 2, 3, 3), True, dict(groups=3, padding=1)),
    "groups2_wide": ((2, 4, 7, 8), (16, 2, 3, 3), True, dict(groups=2, padding=1)),  # 8 outputs per group
    "groups2_odd_outputs": ((2, 4, 7, 8), (10, 2, 3, 3), True, dict(groups=2)),  # 5 per group: partial block
    "groups2_four_per_group": ((2, 4, 7, 8), (8, 2, 3, 3), True, dict(groups=2, stride=2)),
    "groups2_three_per_group": ((2, 4, 7, 8), (6, 2, 3, 3), True, dict(groups=2, padding=1)),
    "depthwise": ((2, 4, 7, 8), (4, 1, 3, 3), True, dict(groups=4, padding=1)),
    "depthwise_mult2_stride2": ((2, 4, 7, 8), (8, 1, 3, 3), True, dict(groups=4, stride=2, padding="same")),
    "depthwise_reflect": ((1, 3, 6, 6), (3, 1, 3, 3), False, dict(groups=3, padding=2, padding_mode="reflect")),
    # kernel shapes
    "k1x1": (BASE_X, (5, 3, 1, 1), True, {}),
    "k1x1_groups3": ((2, 6, 5, 5), (9, 2, 1, 1), True, dict(groups=3)),
    "k1x1_stride2": (BASE_X, (5, 3, 1, 1), True, dict(stride=2)),
    "k1x1_pad1": (BASE_X, (5, 3, 1, 1), True, dict(padding=1)),
    "k2x2": (BASE_X, (5, 3, 2, 2), True, {}),
    "k5x5": ((1, 2, 9, 9), (4, 2, 5, 5), True, dict(padding=2)),
    "k1x3": (BASE_X, (5, 3, 1, 3), True, dict(padding=(0, 1))),
    "k4x1": (BASE_X, (5, 3, 4, 1), True, {}),
    "kernel_equals_input": ((2, 2, 4, 5), (3, 2, 4, 5), True, {}),
    "single_channel": ((2, 1, 6, 6), (1, 1, 3, 3), True, {}),
    "one_pixel_input_full": ((1, 2, 1, 1), (3, 2, 3, 3), True, dict(padding="full")),
    "many_channels": ((1, 16, 5, 5), (24, 16, 3, 3), True, dict(padding=1)),
    # wide enough for several tiles of positions per image in the direct kernel
    "wide_image": ((1, 2, 20, 37), (9, 2, 3, 3), True, dict(padding=1)),
    # the direct kernel's AVX2 blocks of 16 (float32) / 8 (float64) channels: a full block plus one channel; 193
    # positions per image (one more than a work item's 192, not a multiple of its 6-position micro-tiles)
    # and tiles that straddle images
    "channel_block_plus_one": ((3, 2, 1, 193), (17, 2, 1, 3), True, dict(padding=(0, 1))),
    # the same with AVX-512's micro-tiles: blocks of 32 / 16 channels, 8 positions, 256 per work item
    "wide_channel_block_plus_one": ((3, 2, 1, 257), (33, 2, 1, 3), True, dict(padding=(0, 1))),
    # unpadded: the direct kernel reads the NCHW input in place (groups, stride and dilation included)
    "valid_groups_stride_dilation": ((3, 4, 13, 17), (40, 2, 3, 2), True, dict(groups=2, stride=(2, 1),
                                                                               dilation=(1, 2))),
    # the direct kernel's few-channel variant (at most 3 output channels per group): several micro-tiles
    # of positions per row block, the last one partly past the outputs
    "few_channels_many_taps": ((2, 20, 23, 31), (3, 20, 3, 3), True, dict(padding=1)),
    "few_channels_groups_stride_dilation": ((3, 12, 19, 22), (4, 6, 3, 2), True,
                                            dict(groups=2, stride=(2, 1), dilation=(1, 2), padding=2)),
    "items_straddle_images_stride2": ((5, 3, 11, 13), (33, 3, 3, 3), True, dict(stride=2, padding=(1, 2))),
    # tall and wide enough for several row blocks per image in the row-block kernels (odd last block)
    "tall_image": ((1, 2, 75, 70), (6, 2, 3, 3), True, dict(padding="same")),
    "tall_image_stride2_dil2": ((1, 2, 75, 70), (6, 2, 3, 3), True, dict(padding=2, stride=2, dilation=2)),
}


def _inputs(rng, x_shape, w_shape, with_bias, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if with_bias else None
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case, algo, dtype, rng, conv2d_ref64, assert_close):
    x_shape, w_shape, with_bias, options = CASES[case]
    x, w, b = _inputs(rng, x_shape, w_shape, with_bias, dtype)
    expected = conv2d_ref64(x, w, b, **options)
    out = fastconv.conv2d(x, w, b, algo=algo, **options)
    assert_close(out, expected, dtype)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize(
    "dtypes, expected",
    [
        (("float32", "float64", None), "float64"),
        (("float64", "float32", None), "float64"),
        (("float32", "float32", "float64"), "float64"),
        (("float64", "float64", "float32"), "float64"),
        (("float32", "float32", "float32"), "float32"),
    ],
    ids=["x32_w64", "x64_w32", "bias64", "bias32_in64", "all32"],
)
def test_mixed_dtypes_follow_result_type(dtypes, expected, algo, rng, conv2d_ref64, assert_close):
    x_dt, w_dt, b_dt = dtypes
    x = rng.standard_normal((2, 3, 6, 6)).astype(x_dt)
    w = rng.standard_normal((4, 3, 3, 3)).astype(w_dt)
    b = None if b_dt is None else rng.standard_normal(4).astype(b_dt)
    assert np.result_type(*[a for a in (x, w, b) if a is not None]) == expected
    out = fastconv.conv2d(x, w, b, padding=1, algo=algo)
    assert_close(out, conv2d_ref64(x, w, b, padding=1), expected)


def _readonly(a):
    a.setflags(write=False)
    return a


# Views a caller may pass: strided, transposed (Fortran order), negative strides, read-only.
LAYOUTS = {
    "x_strided": lambda x, w, b: (x[:, :, ::2, ::2], w, b),
    "x_fortran": lambda x, w, b: (np.asfortranarray(x), w, b),
    "x_channel_slice": lambda x, w, b: (x[:, 1:4], w, b),
    "w_fortran_b_strided": lambda x, w, b: (x, np.asfortranarray(w), np.repeat(b, 2)[::2]),
    "w_flipped": lambda x, w, b: (x, w[:, :, ::-1, ::-1], b),
    "all_readonly": lambda x, w, b: (_readonly(x), _readonly(w), _readonly(b)),
    "readonly_strided": lambda x, w, b: (_readonly(x)[:, :, 1:, ::-1], w, b),
}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_any_input_layout_accepted_and_not_modified(layout, algo, dtype, rng, conv2d_ref64, assert_close):
    big_x = rng.standard_normal((2, 5, 12, 12)).astype(dtype)
    x, w, b = LAYOUTS[layout](big_x, rng.standard_normal((4, 3, 3, 3)).astype(dtype),
                              rng.standard_normal(4).astype(dtype))
    if x.shape[1] != 3:
        x = x[:, :3]
    before = [a.copy() for a in (x, w, b)]
    for options in (dict(padding=1), dict(padding=1, padding_mode="reflect"), dict(stride=2)):
        out = fastconv.conv2d(x, w, b, algo=algo, **options)
        assert_close(out, conv2d_ref64(x, w, b, **options), dtype)
    for a, a0 in zip((x, w, b), before):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("algo", ALGOS)
def test_pointwise_depthwise_inputs_not_modified(algo, rng):
    # 1x1 (GEMM on the input itself) and depthwise paths also leave their inputs alone.
    x = rng.standard_normal((2, 4, 5, 5))
    for w, groups in ((rng.standard_normal((6, 4, 1, 1)), 1), (rng.standard_normal((4, 1, 3, 3)), 4)):
        x0, w0 = x.copy(), w.copy()
        fastconv.conv2d(x, w, groups=groups, algo=algo)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_argument_is_filled_and_returned(algo, dtype, rng, conv2d_ref64, assert_close):
    x, w, b = _inputs(rng, (2, 3, 6, 7), (5, 3, 3, 3), True, dtype)
    out = np.full((2, 5, 3, 4), np.nan, dtype=dtype)
    result = fastconv.conv2d(x, w, b, stride=2, padding=1, algo=algo, out=out)
    assert result is out
    assert_close(out, conv2d_ref64(x, w, b, stride=2, padding=1), dtype)


@pytest.mark.parametrize("algo", ALGOS)
def test_out_may_be_a_contiguous_slice_of_a_larger_buffer(algo, rng, conv2d_ref64, assert_close):
    x, w, b = _inputs(rng, (2, 3, 6, 6), (4, 3, 3, 3), True, np.float64)
    buffer = np.full((4, 4, 4, 4), -7.0)
    fastconv.conv2d(x, w, b, algo=algo, out=buffer[1:3])
    assert_close(buffer[1:3], conv2d_ref64(x, w, b))
    assert (buffer[0] == -7.0).all() and (buffer[3] == -7.0).all()  # nothing written outside


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("options", [dict(), dict(padding="same", padding_mode="reflect", groups=2)],
                         ids=["valid", "same_reflect_groups2"])
def test_empty_batch(algo, options, rng):
    x = np.zeros((0, 4, 6, 6), np.float32)
    w = rng.standard_normal((6, 4 // options.get("groups", 1), 3, 3)).astype(np.float32)
    out = fastconv.conv2d(x, w, np.zeros(6, np.float32), algo=algo, **options)
    expected_hw = (6, 6) if options else (4, 4)
    assert out.shape == (0, 6) + expected_hw and out.dtype == np.float32
    out_buf = np.empty((0, 6) + expected_hw, np.float32)
    assert fastconv.conv2d(x, w, algo=algo, out=out_buf, **options) is out_buf


@pytest.mark.parametrize("algo", ALGOS)
def test_nan_propagates_to_its_receptive_field_only(algo):
    # One NaN input pixel poisons exactly the outputs whose window covers it (as in PyTorch).
    x = np.zeros((1, 2, 7, 7))
    x[0, 1, 3, 4] = np.nan
    w = np.ones((3, 2, 3, 3))
    out = fastconv.conv2d(x, w, padding=1, algo=algo)
    expected = np.zeros((7, 7), bool)
    expected[2:5, 3:6] = True
    for o in range(3):
        np.testing.assert_array_equal(np.isnan(out[0, o]), expected)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("c_in, kernel", [(4, 1), (5, 1), (1, 2), (4, 2)], ids=["1x1c4", "1x1c5", "2x2c1", "2x2c4"])
def test_infinity_stays_infinite_whatever_the_tap_count(algo, c_in, kernel, rng):
    # Tap counts that are not a multiple of 3: a zero-weight padding tap reading the input would turn
    # an infinite input into NaN (0 * inf) in every output channel (a bug the blocked kernel had).
    x = rng.standard_normal((2, c_in, 9, 9))
    x[0, 0, 4, 4] = np.inf
    x[1, -1, 2, 2] = -np.inf
    w = rng.standard_normal((40, c_in, kernel, kernel))
    out = fastconv.conv2d(x, w, algo=algo)
    expected = fastconv.reference.conv2d(x, w)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    assert np.isinf(expected).any()


@pytest.mark.parametrize("algo", ALGOS)
def test_repeated_calls_are_deterministic(algo, rng):
    x, w, b = _inputs(rng, (2, 4, 9, 9), (8, 4, 3, 3), True, np.float32)
    first = fastconv.conv2d(x, w, b, padding="same", algo=algo)
    for _ in range(3):
        np.testing.assert_array_equal(fastconv.conv2d(x, w, b, padding="same", algo=algo), first)


def test_conv2d_doctest_example():
    # The docstring's example computed by hand: 3x3 box sums of a 5x5 ramp are 9 x the window centre.
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    centres = x[0, 0, 1:4, 1:4]
    for algo in ALGOS:
        np.testing.assert_array_equal(fastconv.conv2d(x, np.ones((1, 1, 3, 3), np.float32), algo=algo)[0, 0],
                                      9 * centres)


@pytest.mark.parametrize("split", [(1, 1), (4096, 1), (1, 10**6)], ids=["row-bands", "image-bands", "folded"])
def test_im2col_bands_match_reference(split, monkeypatch, rng, conv2d_ref64, assert_close):
    # Shrink the band budget so the batch of 5 is unfolded in bands of single rows, or fold all five
    # small images into one band (several images per GEMM, then a transposing copy), on worker threads.
    import fastconv.bands
    import fastconv.dispatch

    monkeypatch.setattr(fastconv.bands, "BAND_BYTES", split[0])
    monkeypatch.setattr(fastconv.bands, "BAND_MIN_POSITIONS", split[1])
    monkeypatch.setattr(fastconv.bands, "SERIAL_MACS", 0)  # worker threads even for this small problem
    monkeypatch.setattr(fastconv.dispatch, "BATCH_INNER_MAX_OW", 0)  # not the tiny-map layout
    bands = []
    real = fastconv.bands.im2col_band

    def counting(xf, x0, n_img, img_len, c_count, ih, iw, col, oy0, rows, *args):
        bands.append((n_img, rows))
        return real(xf, x0, n_img, img_len, c_count, ih, iw, col, oy0, rows, *args)

    monkeypatch.setattr(fastconv.bands, "im2col_band", counting)
    x, w, b = _inputs(rng, (5, 3, 8, 7), (4, 3, 3, 2), True, np.float64)
    for options in (dict(padding="same", padding_mode="replicate"), dict(padding=(2, 1), stride=2, dilation=(1, 2))):
        bands.clear()
        out = fastconv.conv2d(x, w, b, algo="im2col", **options)
        assert_close(out, conv2d_ref64(x, w, b, **options))
        assert sum(n * r for n, r in bands) == 5 * out.shape[2]  # every output row of every image, once
        if split == (1, 10**6):
            assert bands == [(5, out.shape[2])]
        elif split == (1, 1):
            assert set(bands) == {(1, 1)}


BATCH_INNER_CASES = ["base", "no_bias", "stride2", "dil2", "pad_perside", "same_stride2", "reflect",
                     "circular_stride2x3", "groups3", "groups2_odd_outputs", "k2x2", "n3"]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", BATCH_INNER_CASES)
def test_im2col_tiny_maps_take_the_batch_innermost_layout(case, dtype, rng, monkeypatch, conv2d_ref64,
                                                           assert_close):
    # Several images with short output rows: im2col unfolds batch-innermost (one GEMM over every image).
    calls = []
    real = fastconv.conv.unfold_batch_inner

    def spy(*args):
        calls.append(args[1].shape)
        return real(*args)

    monkeypatch.setattr(fastconv.conv, "unfold_batch_inner", spy)
    x_shape, w_shape, with_bias, options = CASES[case]
    x, w, b = _inputs(rng, x_shape, w_shape, with_bias, dtype)
    out = fastconv.conv2d(x, w, b, algo="im2col", **options)
    assert_close(out, conv2d_ref64(x, w, b, **options), dtype)
    assert len(calls) == 1 and calls[0][2] == out.shape[3] * x.shape[0]
