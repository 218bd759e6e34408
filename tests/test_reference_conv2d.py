"""The numpy reference conv2d against hand-computed arrays and an explicit-loop definition.

Every expected array here was computed by hand from the definition
``out[n, o, i, j] = sum_{c, ky, kx} w[o, c, ky, kx] * xpad[n, c, i*sh + ky*dh, j*sw + kx*dw]``
(the working is in the comments and in docs/conventions.md, "Worked examples").
"""

import doctest
import itertools

import numpy as np
import pytest

import fastconv.reference.conv
from fastconv.reference import conv2d

X5 = np.arange(25.0).reshape(5, 5)  # rows 0..4, 5..9, ..., 20..24
BOX3 = np.ones((3, 3))


def _conv_1ch(x2d, k2d, **options):
    """Single image, single channel in and out."""
    return conv2d(x2d[None, None], k2d[None, None], **options)[0, 0]


# --- the worked examples of docs/conventions.md --------------------------------------------------


def test_worked_example_5x5_valid_3x3():
    # Box filter: each output is the sum of a 3x3 window = 9 * its centre value.
    out = _conv_1ch(X5, BOX3, stride=1, padding="valid")
    np.testing.assert_array_equal(out, [[54, 63, 72], [99, 108, 117], [144, 153, 162]])


def test_worked_example_full_2x2_to_4x4():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    k = np.arange(1.0, 10.0).reshape(3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    # Pad 2 on every side; e.g. out[0, 0] = x[0,0]*k[2,2] = 9, out[1, 1] = 1*5 + 2*6 + 3*8 + 4*9 = 77.
    expected = [[9, 26, 23, 14], [33, 77, 67, 36], [21, 47, 37, 18], [9, 18, 11, 4]]
    out = _conv_1ch(x, k, padding="full")
    np.testing.assert_array_equal(out, expected)
    assert out.sum() == x.sum() * k.sum()  # full correlation keeps every product once


def test_worked_example_stride2_same_5x5_3x3():
    # ceil(5/2) = 3 outputs; total pad (3-1)*2 + 3 - 5 = 2 -> (1, 1); window centres at 0, 2, 4.
    out = _conv_1ch(X5, BOX3, stride=2, padding="same")
    np.testing.assert_array_equal(out, [[12, 27, 24], [63, 108, 81], [72, 117, 84]])


def _two_channel_example():
    """x: (1, 2, 5, 5) = [0..24 ramp, ones]; three (2, 3, 3) filters: box on ch 0, box on ch 1,
    centre of ch 0 minus top-left of ch 1."""
    x = np.stack([X5, np.ones((5, 5))])[None]
    w = np.zeros((3, 2, 3, 3))
    w[0, 0] = 1.0
    w[1, 1] = 1.0
    w[2, 0, 1, 1] = 1.0
    w[2, 1, 0, 0] = -1.0
    return x, w


def test_worked_example_5x5x2_three_filters_valid():
    x, w = _two_channel_example()
    out = conv2d(x, w, padding="valid")
    assert out.shape == (1, 3, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [[54, 63, 72], [99, 108, 117], [144, 153, 162]])
    np.testing.assert_array_equal(out[0, 1], np.full((3, 3), 9.0))
    # centre x0[i+1, j+1] - 1
    np.testing.assert_array_equal(out[0, 2], [[5, 6, 7], [10, 11, 12], [15, 16, 17]])


def test_worked_example_5x5x2_three_filters_same():
    x, w = _two_channel_example()
    out = conv2d(x, w, padding="same")
    assert out.shape == (1, 3, 5, 5)
    # Box sums of the ramp over the in-bounds part of each 3x3 neighbourhood.
    np.testing.assert_array_equal(out[0, 0], [
        [12, 21, 27, 33, 24],
        [33, 54, 63, 72, 51],
        [63, 99, 108, 117, 81],
        [93, 144, 153, 162, 111],
        [72, 111, 117, 123, 84],
    ])
    # Number of in-bounds pixels of each neighbourhood.
    np.testing.assert_array_equal(out[0, 1], [
        [4, 6, 6, 6, 4],
        [6, 9, 9, 9, 6],
        [6, 9, 9, 9, 6],
        [6, 9, 9, 9, 6],
        [4, 6, 6, 6, 4],
    ])
    # x0[i, j] minus 1 where the top-left neighbour (i-1, j-1) is inside the image.
    np.testing.assert_array_equal(out[0, 2], [
        [0, 1, 2, 3, 4],
        [5, 5, 6, 7, 8],
        [10, 10, 11, 12, 13],
        [15, 15, 16, 17, 18],
        [20, 20, 21, 22, 23],
    ])


# --- single rules, one at a time ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tap, rows, cols",
    [((0, 0), slice(0, 2), slice(0, 2)), ((0, 1), slice(0, 2), slice(1, 3)), ((1, 0), slice(1, 3), slice(0, 2))],
    ids=["tap00", "tap01", "tap10"],
)
def test_cross_correlation_no_flip(tap, rows, cols):
    # A 2x2 kernel with a single 1 at `tap` selects x[i + ky, j + kx]: no kernel flip.
    x = np.arange(9.0).reshape(3, 3)
    k = np.zeros((2, 2))
    k[tap] = 1.0
    np.testing.assert_array_equal(_conv_1ch(x, k), x[rows, cols])


def test_same_even_kernel_odd_pixel_goes_bottom_right():
    # 4x4 ramp, 2x2 box, 'same': total pad 1 -> (0, 1) per axis, so windows start at the pixel itself.
    x = np.arange(16.0).reshape(4, 4)
    out = _conv_1ch(x, np.ones((2, 2)), padding="same")
    np.testing.assert_array_equal(out, [[10, 14, 18, 10], [26, 30, 34, 18], [42, 46, 50, 26], [25, 27, 29, 15]])


def test_dilation():
    # 2x2 box dilated by 2 reads x[i,j] + x[i,j+2] + x[i+2,j] + x[i+2,j+2] = 4 * x[i+1, j+1] on a ramp.
    out = _conv_1ch(X5, np.ones((2, 2)), dilation=2)
    np.testing.assert_array_equal(out, [[24, 28, 32], [44, 48, 52], [64, 68, 72]])


def test_stride_pair_and_non_square_kernel():
    # 1x2 kernel [1, -1] with stride (2, 3): x[i, j] - x[i, j+1] = -1 at rows 0, 2, 4 and columns 0, 3.
    out = _conv_1ch(X5, np.array([[1.0, -1.0]]), stride=(2, 3))
    np.testing.assert_array_equal(out, np.full((3, 2), -1.0))


def test_per_side_padding():
    # 1x1 identity kernel returns the padded input: 1 row on top, 2 columns on the right.
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = _conv_1ch(x, np.ones((1, 1)), padding=((1, 0), (0, 2)))
    np.testing.assert_array_equal(out, [[0, 0, 0, 0], [1, 2, 0, 0], [3, 4, 0, 0]])


X23 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


@pytest.mark.parametrize(
    "padding_mode, expected",
    [
        ("zeros", [[0, 0, 0, 0, 0], [0, 1, 2, 3, 0], [0, 4, 5, 6, 0], [0, 0, 0, 0, 0]]),
        # mirror without repeating the edge: row -1 is row 1, column -1 is column 1
        ("reflect", [[5, 4, 5, 6, 5], [2, 1, 2, 3, 2], [5, 4, 5, 6, 5], [2, 1, 2, 3, 2]]),
        # repeat the edge
        ("replicate", [[1, 1, 2, 3, 3], [1, 1, 2, 3, 3], [4, 4, 5, 6, 6], [4, 4, 5, 6, 6]]),
        # wrap around: row -1 is row 1 (the last), column -1 is column 2
        ("circular", [[6, 4, 5, 6, 4], [3, 1, 2, 3, 1], [6, 4, 5, 6, 4], [3, 1, 2, 3, 1]]),
    ],
)
def test_padding_modes_by_hand(padding_mode, expected):
    out = _conv_1ch(X23, np.ones((1, 1)), padding=1, padding_mode=padding_mode)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "padding_mode, expected",
    [("reflect", [3, 2, 1, 2, 3, 2, 1]), ("replicate", [1, 1, 1, 2, 3, 3, 3]), ("circular", [2, 3, 1, 2, 3, 1, 2])],
)
def test_padding_modes_two_wide(padding_mode, expected):
    out = _conv_1ch(np.array([[1.0, 2.0, 3.0]]), np.ones((1, 1)), padding=((0, 0), (2, 2)),
                    padding_mode=padding_mode)
    np.testing.assert_array_equal(out, [expected])


def test_groups_and_depthwise_multiplier():
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 10.0)])[None]  # (1, 2, 2, 2)
    # groups=2 with 2 filters per group: outputs 0, 1 see channel 0 only; outputs 2, 3 channel 1 only.
    w = np.array([2.0, 3.0, 5.0, 7.0]).reshape(4, 1, 1, 1)
    out = conv2d(x, w, groups=2)
    np.testing.assert_array_equal(out[0, :, 0, 0], [2, 3, 50, 70])
    # groups=1 mixes the channels: 1*a + 10*b.
    w1 = np.array([[1.0, 1.0], [2.0, -1.0]]).reshape(2, 2, 1, 1)
    np.testing.assert_array_equal(conv2d(x, w1)[0, :, 0, 0], [11, -8])


def test_bias_and_batch():
    x = np.stack([np.ones((1, 3, 3)), 2 * np.ones((1, 3, 3))])  # N=2, C=1
    w = np.ones((2, 1, 3, 3))
    w[1] *= -1
    out = conv2d(x, w, np.array([0.5, 100.0]))
    np.testing.assert_array_equal(out[:, :, 0, 0], [[9.5, 91.0], [18.5, 82.0]])


def test_dtype_follows_result_type():
    x32 = np.ones((1, 1, 3, 3), np.float32)
    assert conv2d(x32, np.ones((1, 1, 2, 2), np.float32)).dtype == np.float32
    assert conv2d(x32, np.ones((1, 1, 2, 2))).dtype == np.float64
    assert conv2d(x32, np.ones((1, 1, 2, 2), np.float32), np.zeros(1)).dtype == np.float64


def test_out_is_filled_and_returned():
    out = np.full((1, 1, 3, 3), np.nan)
    result = conv2d(X5[None, None], BOX3[None, None], out=out)
    assert result is out
    np.testing.assert_array_equal(out[0, 0], [[54, 63, 72], [99, 108, 117], [144, 153, 162]])


def test_algo_is_ignored():
    a = conv2d(X5[None, None], BOX3[None, None], algo="im2col")
    np.testing.assert_array_equal(a, conv2d(X5[None, None], BOX3[None, None]))


def test_empty_batch():
    out = conv2d(np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)), padding="same", padding_mode="reflect")
    assert out.shape == (0, 3, 5, 5)


def test_inputs_not_modified():
    x = np.arange(50.0).reshape(1, 2, 5, 5)
    w = np.ones((2, 2, 3, 3))
    x0, w0 = x.copy(), w.copy()
    conv2d(x, w, padding=2, padding_mode="reflect")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


# --- against the definition written as explicit loops ---------------------------------------------


def _source_index(i, size, mode):
    """Index into an axis of ``size`` for a padded coordinate ``i`` (may be out of range), or None."""
    if 0 <= i < size:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), size - 1)
    if mode == "circular":
        return i % size
    # reflect: mirror about the first/last element (edge not repeated)
    return -i if i < 0 else 2 * (size - 1) - i


def _loops_conv2d(x, w, b, stride, pads, dilation, groups, mode):
    n_batch, c_in, ih, iw = x.shape
    c_out, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    (top, bottom), (left, right) = pads
    oh = (ih + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (iw + left + right - dw * (kw - 1) - 1) // sw + 1
    og = c_out // groups
    out = np.zeros((n_batch, c_out, oh, ow))
    for n, o, oy, ox in itertools.product(range(n_batch), range(c_out), range(oh), range(ow)):
        g = o // og
        acc = 0.0 if b is None else b[o]
        for c, ky, kx in itertools.product(range(cg), range(kh), range(kw)):
            iy = _source_index(oy * sh + ky * dh - top, ih, mode)
            ix = _source_index(ox * sw + kx * dw - left, iw, mode)
            if iy is not None and ix is not None:
                acc += w[o, c, ky, kx] * x[n, g * cg + c, iy, ix]
        out[n, o, oy, ox] = acc
    return out


LOOP_CASES = {
    "plain": dict(),
    "stride2x1_pad1": dict(stride=(2, 1), padding=1),
    "dil2_perside": dict(dilation=(2, 1), padding=((2, 0), (1, 2))),
    "groups2_reflect": dict(groups=2, padding=(1, 2), padding_mode="reflect"),
    "depthwise_circular_s2": dict(groups=4, padding=2, stride=2, padding_mode="circular"),
    "replicate_k1x3_pad3": dict(padding=((3, 1), (0, 3)), padding_mode="replicate"),
}


@pytest.mark.parametrize("case", list(LOOP_CASES), ids=list(LOOP_CASES))
def test_against_explicit_loops(case, rng, assert_close):
    options = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | LOOP_CASES[case]
    groups = options["groups"]
    kh, kw = (1, 3) if case.startswith("replicate") else (3, 2)
    x = rng.standard_normal((2, 4, 5, 6))
    w = rng.standard_normal((4, 4 // groups, kh, kw))
    b = rng.standard_normal(4)
    pad = options["padding"]
    pads = ((pad, pad), (pad, pad)) if isinstance(pad, int) else (
        pad if isinstance(pad[0], tuple) else ((pad[0], pad[0]), (pad[1], pad[1])))
    pair = (lambda v: (v, v) if isinstance(v, int) else v)
    expected = _loops_conv2d(x, w, b, pair(options["stride"]), pads, pair(options["dilation"]), groups,
                             options["padding_mode"])
    assert_close(conv2d(x, w, b, **options), expected)


def test_module_doctests():
    result = doctest.testmod(fastconv.reference.conv, verbose=False)
    assert result.attempted > 0 and result.failed == 0
