"""fastconv.reference.conv_transpose2d against arrays computed by hand."""

import numpy as np
import pytest

from fastconv.reference import conv_transpose2d as ref_conv_transpose2d


def _img(a):
    return np.asarray(a, dtype=np.float64)[None, None]


def test_stride_equal_kernel_places_disjoint_blocks():
    # k = s = 2: every input pixel paints its own 2x2 block x[i, j] * w.
    x = _img([[1, 2], [3, 4]])
    w = _img([[1, 10], [100, 1000]])
    expected = np.array([[1, 10, 2, 20],
                         [100, 1000, 200, 2000],
                         [3, 30, 4, 40],
                         [300, 3000, 400, 4000]], dtype=np.float64)
    np.testing.assert_array_equal(ref_conv_transpose2d(x, w, stride=2)[0, 0], expected)


def test_kernel_is_not_flipped_in_the_scatter():
    # A single input pixel reproduces the kernel as is (the adjoint of a cross-correlation).
    w = _img([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(ref_conv_transpose2d(_img([[1.0]]), w)[0, 0], w[0, 0])


def test_stride_leaves_zero_gaps():
    out = ref_conv_transpose2d(_img([[1, 2]]), _img([[1, 10]]), stride=(1, 3))
    np.testing.assert_array_equal(out[0, 0], [[1, 10, 0, 2, 20]])


def test_overlaps_add_and_padding_crops():
    x = np.ones((1, 1, 2, 2))
    w = np.ones((1, 1, 3, 3))
    full = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]], dtype=np.float64)
    np.testing.assert_array_equal(ref_conv_transpose2d(x, w)[0, 0], full)
    np.testing.assert_array_equal(ref_conv_transpose2d(x, w, padding=1)[0, 0], full[1:3, 1:3])
    np.testing.assert_array_equal(ref_conv_transpose2d(x, w, padding=((1, 0), (0, 1)))[0, 0], full[1:, :3])


def test_dilation_and_output_padding_past_the_stride_are_zero_plus_bias():
    # k = 2, dilation 3, stride 1: taps land 3 apart; output_padding 2 adds two unreached columns.
    x = _img([[5.0]])
    w = _img([[1, 2]])
    out = ref_conv_transpose2d(x, w, np.array([0.5]), dilation=(1, 3), output_padding=(0, 2))
    np.testing.assert_array_equal(out[0, 0], [[5.5, 0.5, 0.5, 10.5, 0.5, 0.5]])


def test_groups_route_input_channels_to_their_outputs():
    x = np.array([1.0, 2.0]).reshape(1, 2, 1, 1)
    w = np.array([[3.0, 4.0], [5.0, 6.0]]).reshape(2, 2, 1, 1)  # (C_in, O/groups, 1, 1)
    out = ref_conv_transpose2d(x, w, groups=2)
    np.testing.assert_array_equal(out.ravel(), [3, 4, 10, 12])
    out = ref_conv_transpose2d(x, w, groups=1)
    np.testing.assert_array_equal(out.ravel(), [1 * 3 + 2 * 5, 1 * 4 + 2 * 6])


def test_worked_example_same_5x5_and_6x6():
    x = np.ones((1, 1, 3, 3))
    w = np.ones((1, 1, 3, 3))
    row_a, row_b = [1, 2, 1, 2, 1], [2, 4, 2, 4, 2]
    out5 = ref_conv_transpose2d(x, w, stride=2, padding="same", output_size=(5, 5))
    np.testing.assert_array_equal(out5[0, 0], [row_a, row_b, row_a, row_b, row_a])
    out6 = ref_conv_transpose2d(x, w, stride=2, padding="same")
    full = ref_conv_transpose2d(x, w, stride=2, padding="valid")[0, 0]  # 7x7
    np.testing.assert_array_equal(out6[0, 0], full[:6, :6])


def test_dtype_follows_result_type_and_out_is_filled():
    x = np.ones((1, 1, 2, 2), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    assert ref_conv_transpose2d(x, w).dtype == np.float32
    assert ref_conv_transpose2d(x, w.astype(np.float64)).dtype == np.float64
    out = np.empty((1, 1, 2, 2), np.float32)
    assert ref_conv_transpose2d(x, w, out=out) is out
    np.testing.assert_array_equal(out, 1)


def test_reference_rejects_channel_mismatch():
    with pytest.raises(ValueError, match=r"weight.shape\[0\] must equal the input channels 2, got 3"):
        ref_conv_transpose2d(np.ones((1, 2, 2, 2)), np.ones((3, 1, 1, 1)))
