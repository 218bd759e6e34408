"""The specialised pooling paths against the reference: the fused 2x2 / stride-2 kernel, the fused
column/row passes of the separable kernel (widths 2 and 3, strides 1 and 2), and bin pools split into
row blocks. Inputs are laced with NaN, -inf, +inf and ties; odd sizes leave rows/columns unread.
"""

import numba
import numpy as np
import pytest

import fastconv
import fastconv.pool
from fastconv import reference as ref


def _special_input(rng, shape, dtype):
    """Normal values rounded to quarters (many ties, including -0.0 vs 0.0), with NaN / -inf / +inf sprinkled."""
    x = np.round(rng.standard_normal(shape) * 2) / 4
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=(3, max(1, flat.size // 40)), replace=False)
    flat[picks[0]] = np.nan
    flat[picks[1]] = -np.inf
    flat[picks[2]] = np.inf
    x[..., 0, :] = np.where(x[..., 0, :] == 0, -0.0, x[..., 0, :])
    return x.astype(dtype)


class _Spy:
    """Wraps a kernel in ``fastconv.pool``'s namespace and counts its calls."""

    def __init__(self, monkeypatch, name):
        self.calls = 0
        self.kernel = getattr(fastconv.pool, name)
        monkeypatch.setattr(fastconv.pool, name, self)

    def __call__(self, *args):
        self.calls += 1
        return self.kernel(*args)


FAST_SHAPES = [(8, 8), (7, 9), (2, 2), (3, 3), (5, 7), (112, 112)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", FAST_SHAPES, ids=[f"{h}x{w}" for h, w in FAST_SHAPES])
def test_2x2_stride2_fast_path_max(hw, dtype, rng, monkeypatch):
    spy = _Spy(monkeypatch, "pool2x2_kernel")
    x = _special_input(rng, (2, 3) + hw, dtype)
    got = fastconv.max_pool2d(x, 2)
    assert spy.calls == 1
    np.testing.assert_array_equal(got, ref.max_pool2d(x, 2))  # NaN == NaN here
    values, idx = fastconv.max_pool2d(x, 2, return_indices=True)  # the indices kernel agrees on values
    np.testing.assert_array_equal(got, values)
    # -inf everywhere still gives -inf, a NaN anywhere in a window gives NaN
    x_inf = np.full((1, 1) + hw, -np.inf, dtype=dtype)
    assert np.all(fastconv.max_pool2d(x_inf, 2) == -np.inf)
    x_inf[0, 0, 1, 1] = np.nan
    assert np.isnan(fastconv.max_pool2d(x_inf, 2)[0, 0, 0, 0])


# + rows of LANES input cells (one vector pair per output row, two output rows per store) with an odd
# number of output rows: 8 cells for float32, 4 for float64.
INDEX_SHAPES = FAST_SHAPES + [(6, 8), (10, 4), (9, 16)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", INDEX_SHAPES, ids=[f"{h}x{w}" for h, w in INDEX_SHAPES])
def test_2x2_stride2_fast_path_indices(hw, dtype, rng, monkeypatch):
    spy = _Spy(monkeypatch, "pool2x2_indices_kernel")
    x = _special_input(rng, (2, 3) + hw, dtype)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = np.nan  # a NaN first and last in one window: the last NaN's index
    x[0, 1, :2, :2] = 1.5  # a four-way tie: the first cell
    values, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    assert spy.calls == 1
    expected, expected_idx = ref.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    assert idx[0, 0, 0, 0] == hw[1] + 1 and idx[0, 1, 0, 0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("divisor", [None, 3, -2])
@pytest.mark.parametrize("hw", FAST_SHAPES, ids=[f"{h}x{w}" for h, w in FAST_SHAPES])
def test_2x2_stride2_fast_path_avg(hw, divisor, dtype, rng, monkeypatch, assert_close):
    spy = _Spy(monkeypatch, "pool2x2_kernel")
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    got = fastconv.avg_pool2d(x, 2, divisor_override=divisor)
    assert spy.calls == 1
    assert_close(got, ref.avg_pool2d(x.astype(np.float64), 2, divisor_override=divisor), dtype)
    special = _special_input(rng, (1, 2) + hw, dtype)
    with np.errstate(invalid="ignore"):
        expected = ref.avg_pool2d(special, 2, divisor_override=divisor)
    np.testing.assert_array_equal(np.isnan(fastconv.avg_pool2d(special, 2, divisor_override=divisor)),
                                  np.isnan(expected))


@pytest.mark.parametrize("kwargs", [
    dict(padding=1), dict(ceil_mode=True), dict(padding=((0, 1), (0, 0))), dict(stride=1),
], ids=["padding", "ceil-clipped", "bottom-pad", "stride1"])
def test_2x2_windows_that_are_not_full_use_the_general_kernel(kwargs, rng, monkeypatch, assert_close):
    spy = _Spy(monkeypatch, "pool2x2_kernel")
    spy_indices = _Spy(monkeypatch, "pool2x2_indices_kernel")
    x = _special_input(rng, (1, 2, 7, 9), np.float64)
    np.testing.assert_array_equal(fastconv.max_pool2d(x, 2, **kwargs), ref.max_pool2d(x, 2, **kwargs))
    for got, expected in zip(fastconv.max_pool2d(x, 2, return_indices=True, **kwargs),
                             ref.max_pool2d(x, 2, return_indices=True, **kwargs)):
        np.testing.assert_array_equal(got, expected)
    y = rng.standard_normal((1, 2, 7, 9))
    assert_close(fastconv.avg_pool2d(y, 2, **kwargs), ref.avg_pool2d(y, 2, **kwargs))
    assert spy.calls == 0 and spy_indices.calls == 0


# 3x3 / stride 2 max in one pass (``_max3s2_rows``): rows of exactly one vector of outputs (8 float32,
# 4 float64), one more, several plus a shifted last chunk, the widest windows the path takes (2 * OW -
# left == W); ceil_mode can add a window past the row's end (the separable kernel then), and
# rows shorter than a vector take it too.
ONE_PASS = [(9, 17, 1), (9, 16, 0), (5, 19, 1), (12, 40, 1), (7, 35, 0), (30, 112, 1), (9, 33, 1), (10, 9, 1),
            (6, 6, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h,w,p", ONE_PASS, ids=[f"{h}x{w}-p{p}" for h, w, p in ONE_PASS])
def test_3x3_stride2_max_one_pass(h, w, p, dtype, rng):
    lanes = 32 // np.dtype(dtype).itemsize
    x = _special_input(rng, (2, 3, h, w), dtype)
    x[0, 0, :, 0] = np.nan  # NaN in the first column and the last: clamped padding must keep them
    x[0, 1, :, -1] = np.nan
    x[1, 2] = -np.inf  # a plane of -inf: padding must never win
    for ceil_mode in (False, True):
        got = fastconv.max_pool2d(x, 3, 2, padding=p, ceil_mode=ceil_mode)
        np.testing.assert_array_equal(got, ref.max_pool2d(x, 3, 2, padding=p, ceil_mode=ceil_mode))
        ow = got.shape[3]
        takes = fastconv.pool._is_3x3_stride_2((3, 3), (2, 2), (1, 1), p, w, ow, dtype)
        assert takes == (ow >= lanes and 2 * ow - p <= w)
        if not ceil_mode:  # floor mode never has a window past the row's end
            assert takes == (ow >= lanes)


# 3x3 / stride 1 / padding 1 with the column pass in registers (``_window3s1_rows``): rows of exactly one
# vector of outputs, one more, whole vectors, whole vectors plus a shifted last chunk; 1, 2, 3 and more
# rows (a one-row image has only edge rows). Narrower rows take the scratch-row kernel. Results are the
# scratch-row kernel's, bit for bit (NaN payloads aside), and the reference's.
SAME3 = [(1, 8), (2, 9), (3, 16), (5, 17), (6, 33), (4, 40), (7, 7), (9, 3), (112, 112)]


def _scratch_row_kernel_only(monkeypatch):
    monkeypatch.setattr(fastconv.pool, "_is_3x3_stride_1_same", lambda *args: False)


def _same_bits(a, b):
    """Equal values, NaN where the other has NaN, equal signs of zeros (NaN payloads may differ)."""
    return (np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a)[~np.isnan(a)], np.signbit(b)[~np.isnan(b)]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h,w", SAME3, ids=[f"{h}x{w}" for h, w in SAME3])
def test_3x3_stride1_same_in_registers(h, w, dtype, rng, monkeypatch, assert_close):
    lanes = 32 // np.dtype(dtype).itemsize
    x = _special_input(rng, (2, 3, h, w), dtype)
    x[1, 2] = -np.inf  # a plane of -inf: padding must never win
    same = ((1, 1), (1, 1))
    assert fastconv.pool._is_3x3_stride_1_same((3, 3), (1, 1), (1, 1), same, x.shape, x.shape, dtype) == (w >= lanes)
    assert not fastconv.pool._is_3x3_stride_1_same((3, 3), (1, 1), (1, 1), ((1, 0), (1, 1)), x.shape,
                                                   (2, 3, h - 1, w), dtype)
    y = rng.standard_normal(x.shape).astype(dtype)
    y[0, 0, 0] = -0.0  # the first row: sums of -0.0 with the padding's +0.0
    calls = {
        "max": lambda a: fastconv.max_pool2d(a, 3, 1, padding=1),
        "avg": lambda a: fastconv.avg_pool2d(a, 3, 1, padding=1),
        "avg-exclude-pad": lambda a: fastconv.avg_pool2d(a, 3, 1, padding=1, count_include_pad=False),
        "avg-divisor": lambda a: fastconv.avg_pool2d(a, 3, 1, padding=1, divisor_override=5),
    }
    got = {name: (call(x), call(y)) for name, call in calls.items()}
    np.testing.assert_array_equal(got["max"][0], ref.max_pool2d(x, 3, 1, padding=1))
    assert_close(got["avg"][1], ref.avg_pool2d(y.astype(np.float64), 3, 1, padding=1), dtype)
    assert_close(got["avg-exclude-pad"][1],
                 ref.avg_pool2d(y.astype(np.float64), 3, 1, padding=1, count_include_pad=False), dtype)
    _scratch_row_kernel_only(monkeypatch)
    for name, call in calls.items():
        assert _same_bits(got[name][0], call(x)), name
        assert _same_bits(got[name][1], call(y)), name


FUSED = [(k, s, p) for k in (2, 3) for s in (1, 2) for p in (0, 1)] + [(4, 2, 1), (3, 3, 1), ((3, 2), (2, 1), 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,p", FUSED, ids=[f"k{k}-s{s}-p{p}" for k, s, p in FUSED])
def test_separable_fused_passes(k, s, p, dtype, rng, assert_close):
    x = _special_input(rng, (2, 3, 11, 12), dtype)
    for ceil_mode in (False, True):
        options = dict(stride=s, padding=p, ceil_mode=ceil_mode)
        np.testing.assert_array_equal(fastconv.max_pool2d(x, k, **options), ref.max_pool2d(x, k, **options))
        y = rng.standard_normal(x.shape).astype(dtype)
        for include in (True, False):
            assert_close(fastconv.avg_pool2d(y, k, count_include_pad=include, **options),
                         ref.avg_pool2d(y.astype(np.float64), k, count_include_pad=include, **options), dtype)


@pytest.mark.parametrize("call", [
    lambda x: fastconv.max_pool2d(x, 2),
    lambda x: fastconv.avg_pool2d(x, 2),
    lambda x: fastconv.avg_pool2d(x, 3, stride=1, padding=1),
    lambda x: fastconv.spatial_pyramid_pool2d(x, (1, 2, 4)),
    lambda x: fastconv.spatial_pyramid_pool2d(x, (1, 3), mode="avg"),
    lambda x: fastconv.adaptive_max_pool2d(x, 5, return_indices=True)[1],
], ids=["max2x2", "avg2x2", "avg3x3", "spp-max", "spp-avg", "adaptive-indices"])
def test_fast_paths_bit_identical_for_one_and_two_threads(call, rng, in_parallel):
    x = _special_input(rng, (1, 1, 23, 21), np.float32)  # one plane: rows split into blocks
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(call(x))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("n_batch,channels", [(1, 1), (1, 3), (4, 5)])
def test_bin_pools_split_into_row_blocks_match_reference(n_batch, channels, rng, assert_close):
    x = _special_input(rng, (n_batch, channels, 13, 11), np.float64)
    np.testing.assert_array_equal(fastconv.spatial_pyramid_pool2d(x, (1, 2, 4, (3, 5))),
                                  ref.spatial_pyramid_pool2d(x, (1, 2, 4, (3, 5))))
    values, idx = fastconv.adaptive_max_pool2d(x, (4, 3), return_indices=True)
    expected, expected_idx = ref.adaptive_max_pool2d(x, (4, 3), return_indices=True)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    y = rng.standard_normal(x.shape)
    assert_close(fastconv.spatial_pyramid_pool2d(y, (1, 2, 4), mode="avg"),
                 ref.spatial_pyramid_pool2d(y, (1, 2, 4), mode="avg"))
