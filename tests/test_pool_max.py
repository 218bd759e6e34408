"""max_pool2d against the reference: option grid, hypothesis, ties, NaN, -inf, padding edges, structure."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import reference as ref

CASES = {
    # id: (input HxW, kwargs)
    "2x2": ((8, 8), dict(kernel_size=2)),
    "2x2-odd-input": ((7, 9), dict(kernel_size=2)),
    "3x3-s1-worked": ((5, 5), dict(kernel_size=3, stride=1)),
    "3x3-s2-overlap": ((13, 13), dict(kernel_size=3, stride=2)),
    "3x3-s2-p1": ((10, 11), dict(kernel_size=3, stride=2, padding=1)),
    "3x3-s2-ceil": ((13, 12), dict(kernel_size=3, stride=2, ceil_mode=True)),
    "2x2-p1-ceil": ((5, 5), dict(kernel_size=2, padding=1, ceil_mode=True)),
    "rect": ((9, 12), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0))),
    "per-side-pad": ((6, 7), dict(kernel_size=3, stride=2, padding=((0, 2), (2, 1)))),
    "beyond-half-kernel-pad": ((6, 6), dict(kernel_size=2, stride=1, padding=1)),
    "dilated": ((11, 10), dict(kernel_size=3, stride=1, dilation=2, padding=2)),
    "dilated-s2-ceil": ((12, 9), dict(kernel_size=2, stride=2, dilation=(2, 3), ceil_mode=True)),
    "same": ((7, 10), dict(kernel_size=3, stride=2, padding="same")),
    "same-s1": ((6, 5), dict(kernel_size=4, stride=1, padding="same")),
    "valid": ((7, 10), dict(kernel_size=3, stride=3, padding="valid")),
    "stride>kernel": ((10, 11), dict(kernel_size=2, stride=3)),
    "1x1": ((4, 5), dict(kernel_size=1)),
    "whole-plane": ((4, 6), dict(kernel_size=(4, 6))),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_matches_reference(case, dtype, rng):
    hw, kwargs = CASES[case]
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    expected, expected_idx = ref.max_pool2d(x, **kwargs, return_indices=True)
    got = fastconv.max_pool2d(x, **kwargs)
    got_v, got_idx = fastconv.max_pool2d(x, **kwargs, return_indices=True)
    assert got.dtype == dtype and got_idx.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_v, expected)
    np.testing.assert_array_equal(got_idx, expected_idx)


def test_worked_examples():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    assert fastconv.max_pool2d(x, 3, stride=1).shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(fastconv.max_pool2d(x, 2)[0, 0], [[6, 8], [16, 18]])
    np.testing.assert_array_equal(fastconv.max_pool2d(x, 3, stride=2)[0, 0], [[12, 14], [22, 24]])


@pytest.mark.parametrize("indices", [False, True])
def test_ties_keep_first_maximum(indices):
    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    x[0, 1] = 7.0
    out = fastconv.max_pool2d(x, 2, stride=1, return_indices=indices)
    values, idx = out if indices else (out, None)
    np.testing.assert_array_equal(values[0, 1], np.full((3, 3), 7.0))
    if indices:
        np.testing.assert_array_equal(idx[0, 0], [[0, 1, 2], [4, 5, 6], [8, 9, 10]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_propagates_with_last_nan_index(dtype):
    x = np.arange(32, dtype=dtype).reshape(1, 2, 4, 4)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 1, 2] = np.nan
    x[0, 1, 3, 3] = np.nan
    values, idx = fastconv.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    plain = fastconv.max_pool2d(x, 3, stride=1, padding=1)
    expected, expected_idx = ref.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(values, expected)  # assert_array_equal treats NaN == NaN
    np.testing.assert_array_equal(plain, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    assert np.isnan(values[0, 0, 1, 1]) and idx[0, 0, 1, 1] == 6  # the last NaN of the window (PyTorch)
    assert np.isnan(values[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 5
    assert not np.isnan(values[0, 0, 3, 0])


def test_negative_infinity_and_padding_never_win():
    x = np.full((1, 1, 3, 3), -np.inf, dtype=np.float32)
    values, idx = fastconv.max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
    assert np.all(values == -np.inf)
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5], [6, 6, 7, 8]])
    assert np.all(fastconv.max_pool2d(x, 2, stride=1, padding=1) == -np.inf)
    neg = -np.ones((1, 1, 2, 2))
    assert np.all(fastconv.max_pool2d(neg, 3, stride=1, padding=1) == -1)  # -inf padding, not zeros


def test_windows_that_touch_input_by_one_cell():
    # Padding 2 with window 3, stride 3: first window holds only input column 0 (a superset of PyTorch).
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    got, idx = fastconv.max_pool2d(x, 3, stride=3, padding=2, return_indices=True)
    expected, expected_idx = ref.max_pool2d(x, 3, stride=3, padding=2, return_indices=True)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    assert got[0, 0, 0, 0] == 0.0


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12),
    kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
    dh=st.integers(1, 2), dw=st.integers(1, 2), ph=st.integers(0, 2), pw=st.integers(0, 2),
    ceil_mode=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
)
def test_hypothesis_matches_reference(n, c, h, w, kh, kw, sh, sw, dh, dw, ph, pw, ceil_mode, dtype, seed):
    kwargs = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), ceil_mode=ceil_mode)
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)
    x[x > 1.5] = np.nan  # some NaNs
    try:
        expected, expected_idx = ref.max_pool2d(x, **kwargs, return_indices=True)
    except ValueError:  # no window fits, or a window holds only padding: fastconv must refuse too
        with pytest.raises(ValueError, match="kernel_size must fit|padding must leave"):
            fastconv.max_pool2d(x, **kwargs)
        return
    got, idx = fastconv.max_pool2d(x, **kwargs, return_indices=True)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(fastconv.max_pool2d(x, **kwargs), expected)


def test_non_contiguous_and_read_only_inputs(rng):
    base = rng.standard_normal((2, 3, 10, 12)).astype(np.float32)
    strided = base[:, :, ::2, 1::2]
    readonly = base.copy()
    readonly.setflags(write=False)
    np.testing.assert_array_equal(fastconv.max_pool2d(strided, 2), ref.max_pool2d(strided, 2))
    np.testing.assert_array_equal(fastconv.max_pool2d(readonly, 3, stride=2), ref.max_pool2d(readonly, 3, stride=2))


def test_out_buffer_is_filled_and_returned(rng):
    x = rng.standard_normal((2, 2, 6, 6))
    out = np.full((2, 2, 3, 3), 99.0)
    assert fastconv.max_pool2d(x, 2, out=out) is out
    np.testing.assert_array_equal(out, ref.max_pool2d(x, 2))


@pytest.mark.parametrize("indices", [False, True])
def test_empty_batch_and_channels(indices):
    for shape in [(0, 3, 6, 6), (2, 0, 6, 6)]:
        result = fastconv.max_pool2d(np.zeros(shape, np.float32), 2, return_indices=indices)
        values = result[0] if indices else result
        assert values.shape == shape[:2] + (3, 3) and values.dtype == np.float32


@pytest.mark.parametrize("n_batch", [1, 8])
def test_bit_identical_for_one_and_two_threads(n_batch, rng, in_parallel):
    x = rng.standard_normal((n_batch, 3, 17, 19)).astype(np.float32)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append((fastconv.max_pool2d(x, 3, stride=2, padding=1),
                            fastconv.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)[1]))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_doctest_examples_of_pool_module():
    import doctest

    import fastconv.pool

    result = doctest.testmod(fastconv.pool, verbose=False)
    assert result.attempted >= 5 and result.failed == 0
