"""spatial_pyramid_pool2d: layout = concatenated adaptive pools, fixed length, paper rule."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import reference as ref
from fastconv import shapes


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("levels", [(1, 2, 4), (3,), ((1, 2), 3, (2, 1))], ids=["1-2-4", "3", "mixed-pairs"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_and_adaptive_concatenation(levels, mode, dtype, rng, assert_close):
    x = rng.standard_normal((2, 3, 13, 9)).astype(dtype)
    got = fastconv.spatial_pyramid_pool2d(x, levels, mode=mode)
    pool = fastconv.adaptive_max_pool2d if mode == "max" else fastconv.adaptive_avg_pool2d
    np.testing.assert_array_equal(got, np.concatenate([pool(x, lv).reshape(2, -1) for lv in levels], axis=1))
    assert_close(got, ref.spatial_pyramid_pool2d(x.astype(np.float64), levels, mode=mode), dtype)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), c=st.integers(1, 3))
def test_fixed_output_length_for_any_input_size(h, w, c):
    x = np.random.default_rng(h * 31 + w).standard_normal((2, c, h, w)).astype(np.float32)
    out = fastconv.spatial_pyramid_pool2d(x)
    assert out.shape == (2, c * 21) == (2, shapes.spp_output_length(c, (1, 2, 4)))
    np.testing.assert_array_equal(out, ref.spatial_pyramid_pool2d(x))
    np.testing.assert_array_equal(out[:, :c], x.max(axis=(2, 3)))  # level 1 is the global max


def test_paper_rule_matches_windowed_pool_when_it_gives_n_bins(rng):
    x = rng.standard_normal((2, 3, 13, 13))
    for mode in ("max", "avg"):
        got = fastconv.spatial_pyramid_pool2d(x, (1, 2, 3, 4), mode=mode, rule="paper")
        np.testing.assert_allclose(got, ref.spatial_pyramid_pool2d(x, (1, 2, 3, 4), mode=mode, rule="paper"))
    # 13 with 4 bins: window 4, stride 3 -> the same bins as adaptive pooling.
    np.testing.assert_array_equal(fastconv.spatial_pyramid_pool2d(x, (4,), rule="paper"),
                                  fastconv.spatial_pyramid_pool2d(x, (4,)))


def test_paper_rule_counterexample_a11_n4():
    assert shapes.paper_window_stride(11, 4) == (3, 2)
    assert shapes.paper_bin_count(11, 4) == 5
    assert len(shapes.adaptive_bins(11, 4)) == 4
    x = np.zeros((1, 2, 11, 11), np.float32)
    with pytest.raises(ValueError, match=r"levels entry \(4, 4\) gives 5 bins instead of 4 along height "
                                         r"with rule='paper' for input size \(11, 11\)"):
        fastconv.spatial_pyramid_pool2d(x, (1, 2, 4), rule="paper")
    with pytest.raises(ValueError, match=r"gives 0 bins instead of 4 along width.*input size \(11, 3\)"):
        fastconv.spatial_pyramid_pool2d(np.zeros((1, 1, 11, 3)), ((1, 4),), rule="paper")
    assert fastconv.spatial_pyramid_pool2d(x, (1, 2, 4)).shape == (1, 42)


def test_adaptive_rule_always_gives_n_bins_where_paper_rule_fails():
    failures = 0
    for a in range(1, 60):
        for n in range(1, 8):
            bins = shapes.adaptive_bins(a, n)
            assert len(bins) == n and bins[0][0] == 0 and bins[-1][1] == a
            assert all(lo < hi for lo, hi in bins)
            failures += shapes.paper_bin_count(a, n) != n
    assert failures > 0


def test_out_buffer_empty_batch_and_one_pixel():
    x = np.arange(6, dtype=np.float64).reshape(1, 6, 1, 1)
    out = np.empty((1, 6 * 21))
    assert fastconv.spatial_pyramid_pool2d(x, out=out) is out
    np.testing.assert_array_equal(out[0, :6], np.arange(6))
    assert fastconv.spatial_pyramid_pool2d(np.zeros((0, 4, 7, 7), np.float32)).shape == (0, 84)
