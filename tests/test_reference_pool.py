"""The reference pooling itself, against tiny hand-computed arrays and the worked examples of the docs."""

import numpy as np
import pytest

from fastconv import reference as ref

X5 = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)  # x[i, j] = 5 i + j


def test_worked_example_5x5_window_3_stride_1():
    # Each 3x3 window's max is its bottom-right cell, its mean its centre.
    np.testing.assert_array_equal(ref.max_pool2d(X5, 3, stride=1)[0, 0], [[12, 13, 14], [17, 18, 19], [22, 23, 24]])
    np.testing.assert_array_equal(ref.avg_pool2d(X5, 3, stride=1)[0, 0], [[6, 7, 8], [11, 12, 13], [16, 17, 18]])


def test_worked_example_2x2_stride_2_drops_last_row_and_column():
    np.testing.assert_array_equal(ref.max_pool2d(X5, 2)[0, 0], [[6, 8], [16, 18]])
    np.testing.assert_array_equal(ref.avg_pool2d(X5, 2)[0, 0], [[3, 5], [13, 15]])


def test_worked_example_overlapping_3x3_stride_2():
    np.testing.assert_array_equal(ref.max_pool2d(X5, 3, stride=2)[0, 0], [[12, 14], [22, 24]])


def test_ceil_mode_and_padding_hand_computed():
    # ceil_mode: a third window of width 1 at column 4 / row 4.
    np.testing.assert_array_equal(ref.max_pool2d(X5, 2, ceil_mode=True)[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    # padding 1, 3x3 stride 2, ceil_mode; average counting padding (PyTorch): corner window holds 0, 1, 5, 6.
    out = ref.avg_pool2d(X5, 3, stride=2, padding=1, ceil_mode=True)[0, 0]
    assert out[0, 0] == pytest.approx(12 / 9)
    # Last row window starts at row 3, covers rows 3, 4 and the bottom padding row: 3 rows; columns -1..1.
    assert out[2, 0] == pytest.approx((15 + 16 + 20 + 21) / 9)
    excl = ref.avg_pool2d(X5, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)[0, 0]
    assert excl[0, 0] == pytest.approx(12 / 4)
    assert ref.avg_pool2d(X5, 2, divisor_override=3)[0, 0, 0, 0] == pytest.approx(12 / 3)


def test_ceil_mode_window_past_padded_end_counts_only_padded_cells():
    # 2x2 stride 2 padding 1 on 5: windows start at -1, 1, 3; the last spans rows 3, 4 (no cell past 5 + 1).
    out = ref.avg_pool2d(X5, 2, stride=2, padding=1, ceil_mode=True)[0, 0]
    assert out.shape == (3, 3)
    assert out[0, 0] == pytest.approx(0 / 4)
    assert out[2, 2] == pytest.approx((18 + 19 + 23 + 24) / 4)


def test_max_indices_ties_nan_and_negative_infinity():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0]]]])
    out, idx = ref.max_pool2d(x, (1, 4), return_indices=True)
    assert out[0, 0, 0, 0] == 3 and idx[0, 0, 0, 0] == 1  # first maximum
    x = np.array([[[[1.0, np.nan, 3.0, np.nan]]]])
    out, idx = ref.max_pool2d(x, (1, 4), return_indices=True)
    assert np.isnan(out[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 3  # last NaN, as PyTorch
    x = np.full((1, 1, 2, 2), -np.inf)
    out, idx = ref.max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])  # first input cell
    assert np.all(out == -np.inf)


def test_same_padding_tensorflow_rule():
    # 5 with window 2 stride 2: ceil(5/2) = 3 outputs, total padding 1 at the bottom/right.
    out = ref.max_pool2d(X5, 2, padding="same")[0, 0]
    np.testing.assert_array_equal(out, [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    avg = ref.avg_pool2d(X5, 2, padding="same")[0, 0]
    assert avg[2, 2] == 24 and avg[0, 2] == pytest.approx((4 + 9) / 2)  # padding excluded from the count


def test_adaptive_bins_hand_computed():
    # 5 -> 3 bins: [0, 2), [1, 4), [3, 5).
    out = ref.adaptive_max_pool2d(X5, 3)[0, 0]
    np.testing.assert_array_equal(out, [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    avg = ref.adaptive_avg_pool2d(X5, (1, 3))[0, 0]
    np.testing.assert_allclose(avg, [[np.mean([0, 1, 5, 6, 10, 11, 15, 16, 20, 21]), 12, np.mean([3, 4]) + 10]])
    # Output larger than the input: 2 -> 3 bins [0, 1), [0, 2), [1, 2).
    x = np.array([[[[1.0, 2.0]]]])
    np.testing.assert_array_equal(ref.adaptive_max_pool2d(x, (1, 3))[0, 0], [[1, 2, 2]])
    np.testing.assert_array_equal(ref.adaptive_max_pool2d(x, (None, 3))[0, 0], [[1, 2, 2]])


def test_spp_concatenates_levels():
    out = ref.spatial_pyramid_pool2d(X5, levels=(1, 2))
    np.testing.assert_array_equal(out, [[24, 12, 14, 22, 24]])
    paper = ref.spatial_pyramid_pool2d(np.zeros((1, 1, 11, 11)), levels=(1, 2), rule="paper")
    assert paper.shape == (1, 5)
    with pytest.raises(ValueError, match="levels entry"):
        ref.spatial_pyramid_pool2d(np.zeros((1, 1, 11, 11)), levels=(4,), rule="paper")
