"""The forward pooling kernels' performance paths against the reference: explicit-vector column and row
passes (chunk tails, fused 2- and 3-row / tap cases, strides 1, 2 and other, dilation, rows shorter than a
vector), the summation order of averages, power-of-two average divisors, and the grouped bin-max kernel
behind SPP / adaptive max pooling (level composition, group tails across images, band shapes), in both
dtypes and bit-identical for 1 and 2 threads. Inputs are laced with NaN, -inf, +inf and ties.
"""

import numba
import numpy as np
import pytest

import fastconv
import fastconv.pool
from fastconv import reference as ref
from fastconv import shapes
from fastconv._kernels import pool as kernels

LANES = {np.dtype(np.float32): 8, np.dtype(np.float64): 4}


def _special_input(rng, shape, dtype):
    """Normal values rounded to quarters (ties, -0.0 vs 0.0), with NaN / -inf / +inf sprinkled."""
    x = np.round(rng.standard_normal(shape) * 2) / 4
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=(3, max(1, flat.size // 50)), replace=False)
    flat[picks[0]] = np.nan
    flat[picks[1]] = -np.inf
    flat[picks[2]] = np.inf
    return x.astype(dtype)


class _Spy:
    """Wraps a kernel in ``fastconv.pool``'s namespace and records the arguments of each call."""

    def __init__(self, monkeypatch, name):
        self.calls = []
        self.kernel = getattr(fastconv.pool, name)
        monkeypatch.setattr(fastconv.pool, name, self)

    def __call__(self, *args):
        self.calls.append(args)
        return self.kernel(*args)


def _both_thread_counts(call):
    """``call()`` with 1 and with 2 threads (when available); returns both results."""
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(call())
    finally:
        numba.set_num_threads(before)
    return results


def _avg_emulated(x, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True, divisor_override=None):
    """avg_pool2d in x's dtype in the kernels' documented order: full 2x2 / stride-2 windows row-major
    ``((a + b) + c) + d``; otherwise column sums over the valid rows (ky order), then across a row whose
    padding cells are 0.0 (kx order); then one division by the exact cell count (PyTorch's rules)."""
    k, s, p = kernel_size, stride, padding
    n, c, h, w = x.shape
    (top, bottom), (left, right) = ((p, p), (p, p))
    _, (oh, ow) = shapes.pool_geometry_2d("avg", (h, w), (k, k), (s, s), (1, 1), p, ceil_mode)
    out = np.empty((n, c, oh, ow), x.dtype)
    fused = k == 2 and s == 2 and p == 0 and 2 * oh <= h and 2 * ow <= w
    for oy in range(oh):
        y0 = oy * s - top
        rows = [y for y in range(y0, y0 + k) if 0 <= y < h]
        if fused:
            a, b = x[:, :, 2 * oy, 0:2 * ow:2], x[:, :, 2 * oy, 1:2 * ow:2]
            cc, d = x[:, :, 2 * oy + 1, 0:2 * ow:2], x[:, :, 2 * oy + 1, 1:2 * ow:2]
            total = ((a + b) + cc) + d
        else:
            col = x[:, :, rows[0], :].copy()
            for y in rows[1:]:
                col = col + x[:, :, y, :]
            srow = np.zeros((n, c, left + w + k + s * ow), x.dtype)
            srow[..., left:left + w] = col
            total = srow[..., 0:(ow - 1) * s + 1:s].copy()
            for kx in range(1, k):
                total = total + srow[..., kx:kx + (ow - 1) * s + 1:s]
        for ox in range(ow):
            x0 = ox * s - left
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = (min(y0 + k, h + bottom) - y0) * (min(x0 + k, w + right) - x0)
            else:
                div = (min(y0 + k, h) - max(y0, 0)) * (min(x0 + k, w) - max(x0, 0))
            out[:, :, oy, ox] = total[..., ox] / x.dtype.type(div)
    return out


# ---------------------------------------------------------------------------------------------------
# Windowed pools: vector chunks, tails and strides
# ---------------------------------------------------------------------------------------------------

# widths around the vector length (8 float32 / 4 float64 lanes): shorter rows, exact multiples, tails
WIDTHS = [3, 4, 5, 8, 9, 16, 17, 23, 56, 112]
WINDOWS = [(2, 2, 0), (3, 2, 1), (2, 1, 0), (3, 1, 1), (4, 2, 1), (3, 3, 1), (5, 1, 2), (2, 4, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("w", WIDTHS, ids=[f"w{w}" for w in WIDTHS])
@pytest.mark.parametrize("k,s,p", WINDOWS, ids=[f"k{k}-s{s}-p{p}" for k, s, p in WINDOWS])
def test_window_vector_paths_match_reference(k, s, p, w, dtype, rng, assert_close):
    x = _special_input(rng, (1, 3, 7, w), dtype)
    y = rng.standard_normal((1, 3, 7, w)).astype(dtype)
    for ceil_mode in (False, True):
        try:
            expected = ref.max_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil_mode)
        except ValueError:  # a window of only padding: both reject it (tested elsewhere)
            continue
        np.testing.assert_array_equal(fastconv.max_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil_mode), expected)
        for include in (True, False):
            got = fastconv.avg_pool2d(y, k, stride=s, padding=p, ceil_mode=ceil_mode, count_include_pad=include)
            assert_close(got, ref.avg_pool2d(y.astype(np.float64), k, stride=s, padding=p, ceil_mode=ceil_mode,
                                             count_include_pad=include), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dilation", [1, 2, (1, 3)])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_dilated_windows_match_reference(stride, dilation, dtype, rng):
    x = _special_input(rng, (2, 2, 11, 29), dtype)
    for padding in (0, 2):
        got = fastconv.max_pool2d(x, 3, stride=stride, padding=padding, dilation=dilation)
        np.testing.assert_array_equal(got, ref.max_pool2d(x, 3, stride=stride, padding=padding, dilation=dilation))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (4, 2, 1)],
                         ids=["k2-s2", "k3-s2-p1", "k3-s1-p1", "k2-s1", "k4-s2-p1"])
def test_average_sums_in_documented_order(k, s, p, dtype, rng):
    """Bit-exact against an emulation of the documented summation order (vectorising kept the order)."""
    x = rng.standard_normal((2, 3, 13, 21)).astype(dtype) * 100
    for ceil_mode in (False, True):
        got = fastconv.avg_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil_mode)
        np.testing.assert_array_equal(got, _avg_emulated(x, k, s, p, ceil_mode))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("divisor", [None, 1, 2, -4, 8, 3, 2**40], ids=lambda d: f"div{d}")
def test_2x2_power_of_two_divisor_multiplies_exactly(divisor, dtype, rng, monkeypatch):
    """A power-of-two divisor is applied as its reciprocal (mode 2): the same correctly rounded values."""
    spy = _Spy(monkeypatch, "pool2x2_kernel")
    x = (rng.standard_normal((2, 3, 10, 34)) * 1e-38).astype(dtype)  # subnormal float32 sums too
    got = fastconv.avg_pool2d(x, 2, divisor_override=divisor)
    power_of_two = divisor is None or (abs(divisor) & (abs(divisor) - 1) == 0)
    assert spy.calls[-1][3] == (2 if power_of_two else 1)
    np.testing.assert_array_equal(got, _avg_emulated(x, 2, 2, 0, divisor_override=divisor))


def test_2x2_divisor_override_overflowing_the_dtype_divides_by_infinity():
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.warns(RuntimeWarning, match="overflow"):
        got = fastconv.avg_pool2d(x, 2, divisor_override=10**40)  # float32(1e40) is inf, as before
    np.testing.assert_array_equal(got, np.zeros((1, 1, 2, 2), np.float32))


@pytest.mark.parametrize("call", [
    lambda x: fastconv.max_pool2d(x, 2),
    lambda x: fastconv.max_pool2d(x, 3, stride=2, padding=1),
    lambda x: fastconv.avg_pool2d(x, 2),
    lambda x: fastconv.avg_pool2d(x, 3, stride=1, padding=1),
    lambda x: fastconv.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
], ids=["max2x2", "max3x3s2", "avg2x2", "avg3x3s1", "avg3x3s2-ceil"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_window_paths_bit_identical_for_one_and_two_threads(call, dtype, rng, in_parallel):
    x = _special_input(rng, (1, 2, 37, 45), dtype)  # two planes: rows split into blocks
    first, second = _both_thread_counts(lambda: call(x))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("width", [32, 45], ids=["whole-lines", "partial-lines"])
@pytest.mark.parametrize("call", [
    lambda x, out: fastconv.max_pool2d(x, 3, stride=1, padding=1, out=out),
    lambda x, out: fastconv.avg_pool2d(x, 3, stride=1, padding=1, out=out),
    lambda x, out: fastconv.avg_pool2d(x, (1, 3), stride=1, padding=(0, 1), out=out),
], ids=["max3x3s1", "avg3x3s1", "avg1x3s1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_stores_give_the_same_values(call, width, dtype, rng, monkeypatch):
    # Large results go out through non-temporal stores (rows of whole, aligned cache lines only); the
    # threshold lowered to 0 sends this small case there, into out= buffers on a line boundary (32-wide
    # float32 / float64 rows: every row streamed) and one element off it (no row aligned).
    x = _special_input(rng, (2, 3, 17, width), dtype)
    expected = call(x, None)
    monkeypatch.setattr(fastconv.pool, "STREAM_MIN_BYTES", 0)
    per_line = 64 // np.dtype(dtype).itemsize
    backing = np.empty(expected.size + 2 * per_line, dtype)
    for offset in (0, 1):
        shift = (-(backing.ctypes.data // backing.itemsize) + offset) % per_line
        out = backing[shift:shift + expected.size].reshape(expected.shape)
        assert (out.ctypes.data % 64 == 0) == (offset == 0)
        np.testing.assert_array_equal(call(x, out), expected)


# ---------------------------------------------------------------------------------------------------
# Grouped bin-max kernel (SPP, adaptive max pooling)
# ---------------------------------------------------------------------------------------------------

SPP_CASES = [
    # (N, C, H, W, levels)
    (2, 64, 13, 13, (1, 2, 4)),         # the benchmark's structure: level 2 from 4, level 1 from 2
    (3, 13, 13, 13, (1, 2, 4)),         # groups straddle images; last group partial
    (1, 70, 7, 5, (1, 2, 4)),           # W < 8 lanes: scalar bands; bins repeat cells on W = 5 / 4 bins
    (2, 40, 11, 11, (1, 2, 3, 4, 6)),   # nested and non-nested levels
    (2, 33, 30, 37, (1, 2, 4)),         # bands of 8 rows, rows longer than two vectors
    (1, 64, 13, 9, ((1, 2), 3, (2, 1), (4, 3))),
    (2, 32, 6, 20, (4, 4, 2)),          # a repeated level: composed from its twin
    (1, 48, 3, 40, ((3, 8), 1)),        # more bins than rows
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c,h,w,levels", SPP_CASES, ids=[f"{n}x{c}x{h}x{w}-{lv}" for n, c, h, w, lv in SPP_CASES])
def test_grouped_bin_max_matches_reference(n, c, h, w, levels, dtype, rng, monkeypatch):
    spy = _Spy(monkeypatch, "bin_max_lanes_kernel")
    x = _special_input(rng, (n, c, h, w), dtype)
    got = fastconv.spatial_pyramid_pool2d(x, levels)
    assert len(spy.calls) == 1
    np.testing.assert_array_equal(got, ref.spatial_pyramid_pool2d(x, levels))
    first, second = _both_thread_counts(lambda: fastconv.spatial_pyramid_pool2d(x, levels))
    np.testing.assert_array_equal(first, got)
    np.testing.assert_array_equal(second, got)
    for level in levels[:2]:
        np.testing.assert_array_equal(fastconv.adaptive_max_pool2d(x, level), ref.adaptive_max_pool2d(x, level))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_bin_max_nan_and_infinity(dtype):
    x = np.full((1, 16, 13, 13), -np.inf, dtype=dtype)
    x[0, 3, 12, 12] = np.nan             # last cell: every level of plane 3 is NaN in its last bins
    x[0, 5, 0, 0] = np.inf
    got = fastconv.spatial_pyramid_pool2d(x)
    levels = [got[:, :16], got[:, 16:80].reshape(1, 16, 4), got[:, 80:].reshape(1, 16, 16)]
    assert np.isnan(levels[0][0, 3]) and np.isnan(levels[1][0, 3, 3]) and np.isnan(levels[2][0, 3, 15])
    assert levels[0][0, 5] == np.inf and levels[1][0, 5, 0] == np.inf and levels[2][0, 5, 0] == np.inf
    assert np.all(levels[2][0, 0] == -np.inf)
    np.testing.assert_array_equal(got, ref.spatial_pyramid_pool2d(x))


def test_paper_rule_and_small_problems(rng, monkeypatch):
    spy = _Spy(monkeypatch, "bin_max_lanes_kernel")
    x = rng.standard_normal((2, 64, 13, 13)).astype(np.float32)
    np.testing.assert_array_equal(fastconv.spatial_pyramid_pool2d(x, (1, 2, 3, 4), rule="paper"),
                                  ref.spatial_pyramid_pool2d(x, (1, 2, 3, 4), rule="paper"))
    assert len(spy.calls) == 1
    few = rng.standard_normal((1, 3, 13, 13)).astype(np.float32)  # too few planes: the row-blocked kernel
    np.testing.assert_array_equal(fastconv.spatial_pyramid_pool2d(few), ref.spatial_pyramid_pool2d(few))
    big = rng.standard_normal((1, 64, 96, 96)).astype(np.float32)  # 48 bands x 96 columns: buffers too large
    np.testing.assert_array_equal(fastconv.adaptive_max_pool2d(big, 48), ref.adaptive_max_pool2d(big, 48))
    avg = fastconv.spatial_pyramid_pool2d(x, mode="avg")  # averages keep their own kernel
    np.testing.assert_allclose(avg, ref.spatial_pyramid_pool2d(x, mode="avg"), rtol=1e-5, atol=1e-6)
    assert len(spy.calls) == 1


def test_union_run():
    run = fastconv.pool._union_run
    bins4 = shapes.adaptive_bins(13, 4)                # [(0, 4), (3, 7), (6, 10), (9, 13)]
    assert run(bins4, 0, 7) == (0, 2) and run(bins4, 6, 13) == (2, 4) and run(bins4, 0, 13) == (0, 4)
    assert run(bins4, 0, 5) is None and run(bins4, 1, 7) is None
    assert run([(0, 2), (3, 5)], 0, 5) is None         # a gap
    assert run([(0, 1), (0, 2), (1, 2)], 0, 2) == (1, 2)  # repeated cells: the shortest run


def test_lanes_tables_compose_nested_levels():
    level_bins = [(shapes.adaptive_bins(13, n), shapes.adaptive_bins(13, n)) for n in (1, 2, 4, 3)]
    key = tuple((tuple(rb), tuple(cb)) for rb, cb in level_bins)
    bands, direct, composed, levels, n_bins = fastconv.pool._lanes_tables(key, 5, 13)
    # level 4 and level 3 (not a union of level-4 bins) are read from the input; 2 from 4; 1 from 2
    assert bands.tolist() == [[0, 4], [3, 4], [6, 4], [9, 4], [0, 5], [4, 5], [8, 5]]
    assert n_bins == 1 + 4 + 16 + 9 and len(direct) == 16 + 9 and len(composed) == 1 + 4
    assert levels.tolist() == [[0, 1, 0], [1, 4, 5], [5, 16, 25], [21, 9, 105]]
    assert composed.tolist()[0] == [5, 2, 2, 4, 1]      # level 2's first bin: level-4 bins (0..1) x (0..1)
    assert composed.tolist()[-1] == [1, 2, 2, 2, 0]     # level 1 from the 2 x 2 bins of level 2


def test_new_kernel_specialisations_stay_few(rng):
    """The grouped kernel: one per dtype; the per-iteration row functions: one per dtype and literal flag
    value (max / average; max / divide / power-of-two multiply)."""
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 64, 13, 13)).astype(dtype)
        fastconv.spatial_pyramid_pool2d(x)
        fastconv.adaptive_max_pool2d(x[:, :, ::2], 3)  # strided: copied before the kernel
        for y in (x, x[:, :3, ::-1]):
            fastconv.max_pool2d(y, 3, stride=2, padding=1)
            fastconv.avg_pool2d(y, 3, stride=1, padding=1, divisor_override=5)
            fastconv.max_pool2d(y, 2)
            fastconv.avg_pool2d(y, 2)
            fastconv.avg_pool2d(y, 2, divisor_override=3)
    assert 1 <= len(kernels.bin_max_lanes_kernel.signatures) <= 2
    # helpers compiled within a kernel loaded from the on-disk cache list no signature: upper bounds only
    assert len(kernels._window_rows.signatures) <= 4
    assert len(kernels._pool2x2_rows.signatures) <= 6
