"""avg_pool2d against the float64 reference: divisor rules, ceil_mode clipping, padding forms, structure."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import reference as ref

CASES = {
    "2x2": ((8, 8), dict(kernel_size=2)),
    "3x3-s1-p1": ((9, 7), dict(kernel_size=3, stride=1, padding=1)),
    "3x3-s1-worked": ((5, 5), dict(kernel_size=3, stride=1)),
    "3x3-s2-overlap": ((13, 13), dict(kernel_size=3, stride=2)),
    "3x3-s2-p1-ceil": ((5, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    "2x2-p1-ceil": ((5, 6), dict(kernel_size=2, padding=1, ceil_mode=True)),
    "ceil-clipped": ((7, 7), dict(kernel_size=3, stride=2, ceil_mode=True)),
    "rect": ((9, 12), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0))),
    "per-side-pad": ((6, 7), dict(kernel_size=3, stride=2, padding=((0, 2), (2, 1)))),
    "beyond-half-kernel-pad": ((6, 6), dict(kernel_size=2, stride=1, padding=1)),
    "same": ((7, 10), dict(kernel_size=3, stride=2, padding="same")),
    "valid": ((7, 10), dict(kernel_size=3, stride=3, padding="valid")),
    "stride>kernel": ((10, 11), dict(kernel_size=2, stride=3)),
    "4x5-kernel": ((11, 12), dict(kernel_size=(4, 5), stride=1, padding=2)),
}
OPTIONS = {
    "include-pad": dict(),
    "exclude-pad": dict(count_include_pad=False),
    "divisor-7": dict(divisor_override=7),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("option", list(OPTIONS), ids=list(OPTIONS))
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_matches_reference(case, option, dtype, rng, assert_close):
    hw, kwargs = CASES[case]
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    expected = ref.avg_pool2d(x.astype(np.float64), **kwargs, **OPTIONS[option])
    assert_close(fastconv.avg_pool2d(x, **kwargs, **OPTIONS[option]), expected, dtype)


def test_worked_examples():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    np.testing.assert_allclose(fastconv.avg_pool2d(x, 3, stride=1)[0, 0], [[6, 7, 8], [11, 12, 13], [16, 17, 18]])
    np.testing.assert_allclose(fastconv.avg_pool2d(x, 2)[0, 0], [[3, 5], [13, 15]])


def test_ceil_mode_divisor_counts_only_cells_up_to_the_padded_edge():
    # PyTorch: the ceil_mode window [3, 6) on 5 + padding 1 counts 3 rows (the padded edge is 6).
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    out = fastconv.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)[0, 0]
    np.testing.assert_allclose(out, [[12 / 9, 27 / 9, 24 / 9], [63 / 9, 12, 81 / 9], [72 / 9, 13, 84 / 9]])
    # Without padding, on 6 the window [4, 7) runs past the input: only rows/columns 4, 5 count.
    x = np.arange(36, dtype=np.float64).reshape(1, 1, 6, 6)
    out = fastconv.avg_pool2d(x, 3, stride=2, ceil_mode=True)[0, 0]
    assert out.shape == (3, 3) and out[2, 2] == (28 + 29 + 34 + 35) / 4


def test_same_padding_excludes_padding_unless_asked():
    x = np.ones((1, 1, 5, 5))
    np.testing.assert_array_equal(fastconv.avg_pool2d(x, 2, padding="same"), np.ones((1, 1, 3, 3)))
    included = fastconv.avg_pool2d(x, 2, padding="same", count_include_pad=True)
    assert included[0, 0, 2, 2] == 0.25 and included[0, 0, 0, 0] == 1.0


def test_nan_and_infinity_propagate():
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = np.inf
    out = fastconv.avg_pool2d(x, 2)
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 1, 1] == np.inf and out[0, 0, 0, 1] == 0


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12),
    kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
    pt=st.integers(0, 2), pb=st.integers(0, 2), pl=st.integers(0, 2), pr=st.integers(0, 2),
    ceil_mode=st.booleans(), include=st.booleans(), divisor=st.sampled_from([None, 1, 5, -3]),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
)
def test_hypothesis_matches_reference(n, c, h, w, kh, kw, sh, sw, pt, pb, pl, pr, ceil_mode, include, divisor,
                                      dtype, seed):
    kwargs = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=((pt, pb), (pl, pr)), ceil_mode=ceil_mode,
                  count_include_pad=include, divisor_override=divisor)
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)
    try:
        expected = ref.avg_pool2d(x.astype(np.float64), **kwargs)
    except ValueError:
        with pytest.raises(ValueError, match="kernel_size must fit|padding must leave"):
            fastconv.avg_pool2d(x, **kwargs)
        return
    got = fastconv.avg_pool2d(x, **kwargs)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_strided_input_out_buffer_and_empty_batch(rng):
    x = rng.standard_normal((2, 3, 12, 10))[:, :, ::2]
    out = np.empty((2, 3, 3, 5))
    assert fastconv.avg_pool2d(x, 2, out=out) is out
    np.testing.assert_allclose(out, ref.avg_pool2d(x, 2))
    assert fastconv.avg_pool2d(np.zeros((0, 4, 6, 6), np.float32), 3).shape == (0, 4, 2, 2)


@pytest.mark.parametrize("n_batch", [1, 8])
def test_bit_identical_for_one_and_two_threads(n_batch, rng, in_parallel):
    x = rng.standard_normal((n_batch, 3, 17, 19)).astype(np.float32)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(fastconv.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
