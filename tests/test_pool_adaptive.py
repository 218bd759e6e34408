"""adaptive_max_pool2d / adaptive_avg_pool2d against the reference (bins, None sizes, upsampling)."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import reference as ref

SIZES = [((5, 5), 3), ((13, 13), (4, 2)), ((7, 10), (7, 10)), ((3, 4), (5, 7)), ((1, 1), 2), ((9, 6), (None, 4)),
         ((6, 9), (2, None)), ((12, 12), 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw,size", SIZES, ids=[f"{h}x{w}->{s}" for (h, w), s in SIZES])
def test_matches_reference(hw, size, dtype, rng, assert_close):
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    expected, expected_idx = ref.adaptive_max_pool2d(x, size, return_indices=True)
    got, idx = fastconv.adaptive_max_pool2d(x, size, return_indices=True)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(fastconv.adaptive_max_pool2d(x, size), expected)
    assert_close(fastconv.adaptive_avg_pool2d(x, size), ref.adaptive_avg_pool2d(x.astype(np.float64), size), dtype)


def test_bins_follow_pytorch_rule_and_overlap():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    np.testing.assert_array_equal(fastconv.adaptive_max_pool2d(x, 3)[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    np.testing.assert_allclose(fastconv.adaptive_avg_pool2d(x, 1)[0, 0], [[12.0]])


def test_ties_nan_and_negative_infinity():
    x = np.full((1, 2, 4, 4), -np.inf)
    x[0, 1] = 1.0
    x[0, 1, 1, 0] = np.nan
    x[0, 1, 1, 1] = np.nan
    values, idx = fastconv.adaptive_max_pool2d(x, 2, return_indices=True)
    assert np.all(values[0, 0] == -np.inf)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])  # first cell of each bin
    assert np.isnan(values[0, 1, 0, 0]) and idx[0, 1, 0, 0] == 5  # last NaN
    assert values[0, 1, 0, 1] == 1.0 and idx[0, 1, 0, 1] == 2  # first maximum
    assert np.isnan(fastconv.adaptive_max_pool2d(x, 2)[0, 1, 0, 0])
    assert np.isnan(fastconv.adaptive_avg_pool2d(x, 2)[0, 1, 0, 0])


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 11), w=st.integers(1, 11), oh=st.integers(1, 13), ow=st.integers(1, 13),
       n=st.integers(1, 2), c=st.integers(1, 3), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_hypothesis_matches_reference(h, w, oh, ow, n, c, dtype, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)
    got, idx = fastconv.adaptive_max_pool2d(x, (oh, ow), return_indices=True)
    expected, expected_idx = ref.adaptive_max_pool2d(x, (oh, ow), return_indices=True)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(fastconv.adaptive_max_pool2d(x, (oh, ow)), expected)
    np.testing.assert_allclose(fastconv.adaptive_avg_pool2d(x, (oh, ow)),
                               ref.adaptive_avg_pool2d(x.astype(np.float64), (oh, ow)),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_empty_batch_out_buffer_and_strided_input(rng):
    assert fastconv.adaptive_avg_pool2d(np.zeros((0, 3, 5, 5), np.float32), 2).shape == (0, 3, 2, 2)
    values, idx = fastconv.adaptive_max_pool2d(np.zeros((0, 3, 5, 5)), 2, return_indices=True)
    assert values.shape == idx.shape == (0, 3, 2, 2)
    x = rng.standard_normal((2, 3, 10, 10))[:, :, ::2, ::3]
    out = np.empty((2, 3, 2, 3))
    assert fastconv.adaptive_max_pool2d(x, (2, 3), out=out) is out
    np.testing.assert_array_equal(out, ref.adaptive_max_pool2d(x, (2, 3)))


def test_bit_identical_for_one_and_two_threads(rng, in_parallel):
    x = rng.standard_normal((1, 2, 15, 14)).astype(np.float32)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append((fastconv.adaptive_avg_pool2d(x, (4, 5)), fastconv.adaptive_max_pool2d(x, 3),
                            fastconv.adaptive_max_pool2d(x, 3, return_indices=True)[1]))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
