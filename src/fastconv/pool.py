"""Public 2-D pooling on NCHW numpy arrays: max, average, adaptive and spatial pyramid pooling.

PyTorch semantics and argument names (``torch.nn.functional.max_pool2d`` etc.), plus per-side padding,
TensorFlow's "valid"/"same" padding strings, padding beyond PyTorch's half-kernel rule (as long as
every window holds an input cell) and the SPP layout. Choices where PyTorch is silent or where we
differ are listed in docs/pooling.md.
"""

import functools

import numba
import numpy as np

from ._kernels.pool import (
    VEC_BYTES,
    bin_avg_kernel,
    bin_max_indices_kernel,
    bin_max_kernel,
    bin_max_lanes_kernel,
    max_pool2d_indices_kernel,
    pool2x2_indices_kernel,
    pool2x2_kernel,
    window_pool2d_kernel,
)
from ._validate import as_kernel_array, check_array, check_out, is_int
from .pool_args import adaptive_size, check_flag, check_spatial, paper_level_bins, spp_args, window_args
from .shapes import adaptive_bins
from .threads import SERIAL_ELEMENTS, current_threads, serial_if_small

# Results at least this large (the last-level cache here) are written with non-temporal stores where the
# windowed kernel's rows are whole aligned cache lines: no read-for-ownership of lines that will not be
# re-read from cache anyway. Paired medians, 30 rounds, 2 threads, time streamed / plain: P4 (3x3 / 1
# average on (32, 64, 112, 112), 103 MB out) 0.93-0.96, its max form 0.94-0.98; bests 6.8-7.3 vs 7.3-8.3 ms.
STREAM_MIN_BYTES = 32 << 20

TASKS_PER_THREAD = 4  # windowed pools split plane rows until there are this many tasks per thread
# bin_max_lanes_kernel's per-thread buffers (LANES x bands x W cells each) stay below this many cells.
LANES_MAX_CELLS = 16384


def _row_blocks(planes, out_rows):
    """Row blocks (output rows or bin rows) per plane so that a small batch (N * C < 4 * threads) still
    feeds every thread."""
    wanted = TASKS_PER_THREAD * current_threads()
    if planes >= wanted:
        return 1
    return max(1, min(out_rows, -(-wanted // planes)))


def _scratch(dtype, length):
    """Per-thread work rows (indexed by the kernel's worker index), fresh per call (concurrent calls from
    several Python threads never share one). Row length is padded to whole 64-byte lines plus one spare
    line, so two threads never write the same cache line (false sharing measured 2x slower)."""
    per_line = 64 // np.dtype(dtype).itemsize
    padded = (-(-length // per_line) + 1) * per_line
    return np.empty((numba.config.NUMBA_NUM_THREADS, padded), dtype=dtype)


def _is_power_of_two(n):
    return n > 0 and n & (n - 1) == 0


def _axis_counts(size, n_out, k, s, pad0, pad1, include_pad):
    """Per-output window cell counts along one axis (PyTorch's divisor factors), window ``[a, a + k)``,
    ``a = o * s - pad0``: clipped to the padded input (``include_pad``) or to the input."""
    starts = np.arange(n_out) * s - pad0
    if include_pad:
        return np.minimum(starts + k, size + pad1) - starts
    return np.minimum(starts + k, size) - np.maximum(starts, 0)


def _run_window(x, out, k_hw, s_hw, d_hw, pads, mode, divisor):
    """:func:`_run_window_kernels` on one thread when the problem is small (see ``serial_if_small``)."""
    with serial_if_small(x.size + out.size, SERIAL_ELEMENTS):
        _run_window_kernels(x, out, k_hw, s_hw, d_hw, pads, mode, divisor)


def _run_window_kernels(x, out, k_hw, s_hw, d_hw, pads, mode, divisor):
    """Call a windowed kernel (``mode``: 0 max, 1/2/3 average divisor rules), see ``_kernels/pool.py``.

    Full non-overlapping 2x2 / stride 2 windows (no padding, dilation or clipping; ResNet/VGG pools) take
    the fused :func:`pool2x2_kernel`; everything else the separable :func:`window_pool2d_kernel`, whose
    average divisors are tabulated here as ``row_div[oy] * col_div[ox]`` (exact small integers).
    """
    (top, bottom), (left, right) = pads
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    xk = as_kernel_array(x, x.dtype)
    blocks = _row_blocks(n_batch * c_in, oh)
    if _is_full_2x2(k_hw, s_hw, d_hw, top, left, x.shape, out.shape):
        d = np.full(1, divisor if mode == 3 else 4, dtype=x.dtype)  # a huge override overflows to inf, as before
        kernel_mode = min(mode, 1)
        if mode and np.isfinite(d[0]) and _is_power_of_two(abs(int(d[0]))):
            d, kernel_mode = 1 / d, 2  # the exact reciprocal: x * (1 / d) rounds like x / d
        pool2x2_kernel(xk, out, d, kernel_mode, blocks, current_threads())
        return
    if mode == 0:
        row_div = col_div = np.empty(0, dtype=x.dtype)
    elif mode == 3:
        row_div = np.ones(oh, dtype=x.dtype)
        col_div = np.full(ow, divisor, dtype=x.dtype)
    else:
        row_div = _axis_counts(ih, oh, k_hw[0], s_hw[0], top, bottom, mode == 1).astype(x.dtype)
        col_div = _axis_counts(iw, ow, k_hw[1], s_hw[1], left, right, mode == 1).astype(x.dtype)
    # A stride-2 vector load of the row pass reads one cell past the last window (the odd lane it drops).
    length = max(left + iw, ow * s_hw[1] + (k_hw[1] - 1) * d_hw[1])
    kernel_mode = min(mode, 1)
    if mode == 0 and _is_3x3_stride_2(k_hw, s_hw, d_hw, left, iw, ow, x.dtype):
        kernel_mode = 2  # one pass, no scratch row
    elif _is_3x3_stride_1_same(k_hw, s_hw, d_hw, pads, x.shape, out.shape, x.dtype):
        kernel_mode = 3 if mode == 0 else 4  # the column pass in registers, no scratch row
    window_pool2d_kernel(xk, out, _scratch(x.dtype, length), row_div, col_div, k_hw[0], k_hw[1], s_hw[0], s_hw[1],
                         d_hw[0], d_hw[1], top, left, kernel_mode, blocks, current_threads(),
                         out.nbytes >= STREAM_MIN_BYTES)


def _is_3x3_stride_2(k_hw, s_hw, d_hw, left, iw, ow, dtype):
    """The one-pass 3x3 / stride 2 max pool applies (``_max3s2_rows``): no dilation, at most one padding
    column on the left, rows of at least one vector of outputs, and no window past the row's end."""
    lanes = VEC_BYTES // np.dtype(dtype).itemsize
    return (k_hw == (3, 3) and s_hw == (2, 2) and d_hw == (1, 1) and left <= 1 and ow >= lanes
            and 2 * ow - left <= iw)


def _is_3x3_stride_1_same(k_hw, s_hw, d_hw, pads, x_shape, out_shape, dtype):
    """The register-pipelined 3x3 / stride 1 pool applies (``_window3s1_rows``): one cell of padding on every
    side (output size = input size), no dilation, rows of at least one vector."""
    lanes = VEC_BYTES // np.dtype(dtype).itemsize
    return (k_hw == (3, 3) and s_hw == (1, 1) and d_hw == (1, 1) and pads == ((1, 1), (1, 1))
            and out_shape[2:] == x_shape[2:] and x_shape[3] >= lanes)


def _run_max_indices(x, out, indices, k_hw, s_hw, d_hw, pads):
    """Max pooling with indices: the unrolled :func:`pool2x2_indices_kernel` for full 2x2 / stride 2
    windows, else :func:`max_pool2d_indices_kernel` (tap by tap, per-thread scratch rows)."""
    (top, _), (left, _) = pads
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    xk = as_kernel_array(x, x.dtype)
    blocks = _row_blocks(n_batch * c_in, oh)
    if _is_full_2x2(k_hw, s_hw, d_hw, top, left, x.shape, out.shape):
        pool2x2_indices_kernel(xk, out, indices, blocks)
        return
    threads = numba.config.NUMBA_NUM_THREADS
    vals = np.empty((threads, 3, ow), dtype=x.dtype)
    idxs = np.empty((threads, 2, ow), dtype=np.int64)
    max_pool2d_indices_kernel(xk, out, indices, vals, idxs, k_hw[0], k_hw[1], s_hw[0], s_hw[1], d_hw[0], d_hw[1],
                              top, left, blocks)


def _is_full_2x2(k_hw, s_hw, d_hw, top, left, x_shape, out_shape):
    """Full non-overlapping 2x2 / stride 2 windows: no padding, dilation or window clipped by the edge."""
    return (k_hw == (2, 2) and s_hw == (2, 2) and d_hw == (1, 1) and top == 0 and left == 0
            and 2 * out_shape[2] <= x_shape[2] and 2 * out_shape[3] <= x_shape[3])


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               out=None):
    """2-D max pooling of (N, C, H, W) arrays (``torch.nn.functional.max_pool2d``).

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), optional. Defaults to ``kernel_size``; ``stride < kernel_size`` is
        overlapping pooling (e.g. AlexNet's 3x3 / stride 2).
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        Implicit -inf (padded cells never win). Any padding is accepted as long as every window holds
        at least one input cell. "same" is TensorFlow's (``OH = ceil(H / stride)``, odd pixel bottom/right).
    dilation : int or (int, int)
    ceil_mode : bool. Round the output size up; a last window that would start in the right/bottom
        padding is dropped (PyTorch).
    return_indices : bool. Also return int64 indices ``iy * W + ix`` into each input plane.
    out : ndarray, optional. C-contiguous (N, C, OH, OW) buffer of x's dtype for the values.

    Returns
    -------
    ndarray (N, C, OH, OW) of x's dtype, and the int64 indices of the same shape if ``return_indices``.

    Notes
    -----
    Shapes: ``OH = (H + top + bottom - dilation[0] * (kH - 1) - 1) // stride[0] + 1`` (rounded up with
    ``ceil_mode``, then minus one if ``(OH - 1) * stride[0] >= H + top``), same for W.
    Ties keep the first maximum in row-major window order; a NaN in a window gives NaN and the index
    of the last NaN (as PyTorch).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> fastconv.max_pool2d(x, 2)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    fn = "max_pool2d"
    k_hw, s_hw, d_hw, pads, out_shape = window_args(fn, x, kernel_size, stride, padding, dilation, ceil_mode)
    return_indices = check_flag(fn, "return_indices", return_indices)
    out = check_out(fn, out, out_shape, x.dtype, (x,))
    indices = np.empty(out_shape, dtype=np.int64) if return_indices else None
    if out.size and return_indices:
        with serial_if_small(x.size + out.size, SERIAL_ELEMENTS):
            _run_max_indices(x, out, indices, k_hw, s_hw, d_hw, pads)
    elif out.size:
        _run_window(x, out, k_hw, s_hw, d_hw, pads, 0, 0)
    return (out, indices) if return_indices else out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=None,
               divisor_override=None, *, out=None):
    """2-D average pooling of (N, C, H, W) arrays (``torch.nn.functional.avg_pool2d``).

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    kernel_size, stride : int or (int, int); stride defaults to ``kernel_size``
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (zero padding)
    ceil_mode : bool, as :func:`max_pool2d`
    count_include_pad : bool or None
        Whether padded cells count in the divisor. None (default) means True for numeric padding
        (PyTorch's default) and False for "valid"/"same" (TensorFlow). As PyTorch, a window that
        ``ceil_mode`` lets run past the padded input counts only the cells up to the padded edge.
    divisor_override : int, optional. Non-zero constant divisor for every window.
    out : ndarray, optional. C-contiguous (N, C, OH, OW) buffer of x's dtype.

    Returns
    -------
    ndarray (N, C, OH, OW) of x's dtype. Sums accumulate in x's dtype in row-major window order.

    Notes
    -----
    Shapes as :func:`max_pool2d` with ``dilation=1``. Divisor of window ``(oy, ox)`` with
    ``y0 = oy * sH - top`` (same along W): ``(min(y0 + kH, H + bottom) - y0) * (...)`` with
    ``count_include_pad``, else ``(min(y0 + kH, H) - max(y0, 0)) * (...)``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> fastconv.avg_pool2d(x, 2)[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    fn = "avg_pool2d"
    k_hw, s_hw, _, pads, out_shape = window_args(fn, x, kernel_size, stride, padding, 1, ceil_mode)
    if count_include_pad is None:
        count_include_pad = not isinstance(padding, str)
    count_include_pad = check_flag(fn, "count_include_pad", count_include_pad)
    divisor = 0
    if divisor_override is not None:
        if not is_int(divisor_override):
            raise TypeError(f"{fn}: divisor_override must be an int or None, got {divisor_override!r}")
        divisor = int(divisor_override)
        if divisor == 0:
            raise ValueError(f"{fn}: divisor_override must be non-zero, got {divisor_override!r}")
    mode = 3 if divisor else (1 if count_include_pad else 2)
    out = check_out(fn, out, out_shape, x.dtype, (x,))
    if out.size:
        _run_window(x, out, k_hw, s_hw, (1, 1), pads, mode, divisor)
    return out


# ------------------------------------------------------------------------------------------------------
# Bin pools: adaptive pooling and spatial pyramid pooling share one kernel family over explicit bins.
# ------------------------------------------------------------------------------------------------------

def _bin_tables(level_bins, channels):
    """Kernel tables for a list of levels, each ``(row_bins, col_bins)`` lists of (start, end).

    Returns ``row_bins`` (R, 2), ``col_bins`` (Q, 2), ``row_level`` (R,), ``levels`` (L, 5) = ``(row_off,
    lh, col_off, lw, out_off)`` as int64 arrays, and the total output length per image.
    """
    rows, cols, row_level, table = [], [], [], []
    out_off = 0
    for lv, (rb, cb) in enumerate(level_bins):
        table.append((len(rows), len(rb), len(cols), len(cb), out_off))
        row_level.extend([lv] * len(rb))
        rows.extend(rb)
        cols.extend(cb)
        out_off += channels * len(rb) * len(cb)
    as64 = lambda v, shape: np.array(v, dtype=np.int64).reshape(shape)  # noqa: E731
    return (as64(rows, (-1, 2)), as64(cols, (-1, 2)), as64(row_level, (-1,)), as64(table, (-1, 5)), out_off)


def _union_run(bins, lo, hi):
    """``(a, b)`` such that ``bins[a:b]`` (sorted ``(start, end)`` pairs) covers exactly ``[lo, hi)``, with no
    gap and nothing outside, preferring the shortest run; None when no run does."""
    for a in reversed([i for i, (start, _) in enumerate(bins) if start == lo]):
        covered = lo
        for b in range(a, len(bins)):
            start, end = bins[b]
            if start > covered or end > hi:
                break
            covered = max(covered, end)
            if covered == hi:
                return a, b + 1
    return None


@functools.lru_cache(maxsize=64)
def _lanes_tables(level_bins, channels, width):
    """Tables of :func:`bin_max_lanes_kernel` for ``level_bins`` (tuple of ``(row_bins, col_bins)`` tuples of
    ``(start, end)``, SPP order). Cached: the kernel only reads the tables.

    Levels are planned finest first. A level whose every bin row and bin column is an exact union of a run
    of an already planned level's bin rows / columns (max is idempotent, so overlapping bins may share
    cells) is composed from that level's bins (the one needing the fewest); otherwise its bin rows become
    bands read from the input. Returns ``(bands, direct_bins, composed_bins, levels)`` int64 arrays and
    the total bin count.
    """
    bin_off, out_off, n_bins = [], [], 0
    out_total = 0
    for rb, cb in level_bins:
        bin_off.append(n_bins)
        out_off.append(out_total)
        n_bins += len(rb) * len(cb)
        out_total += channels * len(rb) * len(cb)
    bands, band_index, direct, composed, planned = [], {}, [], [], []
    for lv in sorted(range(len(level_bins)), key=lambda i: -len(level_bins[i][0]) * len(level_bins[i][1])):
        rb, cb = level_bins[lv]
        best = None
        for src in planned:
            rows = [_union_run(level_bins[src][0], lo, hi) for lo, hi in rb]
            cols = [_union_run(level_bins[src][1], lo, hi) for lo, hi in cb]
            if None not in rows and None not in cols:
                cost = sum((r1 - r0) * (c1 - c0) for r0, r1 in rows for c0, c1 in cols)
                if best is None or cost < best[0]:
                    best = (cost, src, rows, cols)
        if best is None:
            for i, (y0, y1) in enumerate(rb):
                band = band_index.setdefault((y0, y1), len(bands))
                if band == len(bands):
                    bands.append((y0, y1 - y0))
                for j, (x0, x1) in enumerate(cb):
                    direct.append((band * width + x0, x1 - x0, bin_off[lv] + i * len(cb) + j))
        else:
            _, src, rows, cols = best
            src_lw = len(level_bins[src][1])
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    composed.append((bin_off[src] + r0 * src_lw + c0, r1 - r0, c1 - c0, src_lw,
                                     bin_off[lv] + i * len(cb) + j))
        planned.append(lv)
    levels = [(bin_off[lv], len(rb) * len(cb), out_off[lv]) for lv, (rb, cb) in enumerate(level_bins)]
    as64 = lambda v, cols: np.array(v, dtype=np.int64).reshape(-1, cols)  # noqa: E731
    return as64(bands, 2), as64(direct, 3), as64(composed, 5), as64(levels, 3), n_bins


def _run_bins_lanes(x, level_bins, out):
    """Max bins by :func:`bin_max_lanes_kernel` (``level_bins`` as :func:`_level_bins` returns them) when it
    applies: enough planes to give every thread TASKS_PER_THREAD groups of LANES planes, and per-thread
    buffers under LANES_MAX_CELLS. Returns False otherwise (the caller uses the row-blocked kernel)."""
    n_batch, c_in, ih, iw = x.shape
    lanes = VEC_BYTES // x.dtype.itemsize
    if -(-n_batch * c_in // lanes) < TASKS_PER_THREAD * current_threads():
        return False
    bands, direct, composed, levels, n_bins = _lanes_tables(level_bins, c_in, iw)
    cells = bands.shape[0] * iw
    if cells < lanes or cells * lanes > LANES_MAX_CELLS:
        return False
    threads = numba.config.NUMBA_NUM_THREADS
    per_line = 64 // x.dtype.itemsize
    band_scratch = np.empty((threads, cells * lanes + per_line), dtype=x.dtype)
    cell_scratch = np.empty((threads, cells * lanes + per_line), dtype=x.dtype)
    bin_scratch = np.empty((threads, (n_bins + lanes) * lanes + per_line), dtype=x.dtype)
    bin_max_lanes_kernel(as_kernel_array(x, x.dtype), bands, direct, composed, levels, out, band_scratch,
                         cell_scratch, bin_scratch)
    return True


@functools.lru_cache(maxsize=256)
def _level_bins(fn, rule, pairs, in_hw):
    """``((row_bins, col_bins), ...)`` (tuples of ``(start, end)``) of each ``(l_h, l_w)`` level over an
    input of size ``in_hw`` under ``rule`` ("adaptive" or "paper"; ValueError as :func:`paper_level_bins`).
    Cached: SPP and adaptive pooling are called with the same sizes over and over."""
    if rule == "paper":
        level_bins = [paper_level_bins(fn, level, in_hw) for level in pairs]
    else:
        level_bins = [(adaptive_bins(in_hw[0], lh), adaptive_bins(in_hw[1], lw)) for lh, lw in pairs]
    return tuple((tuple(rb), tuple(cb)) for rb, cb in level_bins)


def _run_bins(x, level_bins, mode, out, indices=None):
    """:func:`_run_bins_kernels` on one thread when the problem is small (see ``serial_if_small``)."""
    with serial_if_small(x.size + out.size, SERIAL_ELEMENTS):
        _run_bins_kernels(x, level_bins, mode, out, indices)


def _run_bins_kernels(x, level_bins, mode, out, indices=None):
    """Pool ``x`` over ``level_bins`` into ``out`` (N, total) (and ``indices``), SPP layout."""
    if out.size == 0:
        return
    if mode == "max" and indices is None and _run_bins_lanes(x, level_bins, out):
        return
    row_bins, col_bins, row_level, levels, _ = _bin_tables(level_bins, x.shape[1])
    xk = as_kernel_array(x, x.dtype)
    blocks = _row_blocks(x.shape[0] * x.shape[1], row_bins.shape[0])
    if indices is not None:
        bin_max_indices_kernel(xk, row_bins, col_bins, row_level, levels, out, indices, blocks)
        return
    kernel = bin_max_kernel if mode == "max" else bin_avg_kernel
    kernel(xk, row_bins, col_bins, row_level, levels, out, blocks)


def _adaptive(fn, x, output_size, mode, return_indices, out):
    check_array(fn, "x", x, 4)
    check_spatial(fn, x)
    oh, ow = adaptive_size(fn, output_size, x.shape[2:])
    return_indices = check_flag(fn, "return_indices", return_indices)
    n_batch, c_in, ih, iw = x.shape
    out = check_out(fn, out, (n_batch, c_in, oh, ow), x.dtype, (x,))
    indices = np.empty(out.shape, dtype=np.int64) if return_indices else None
    flat = out.reshape(n_batch, c_in * oh * ow)  # a view: out is C-contiguous
    flat_idx = None if indices is None else indices.reshape(flat.shape)
    _run_bins(x, _level_bins(fn, "adaptive", ((oh, ow),), (ih, iw)), mode, flat, flat_idx)
    return (out, indices) if return_indices else out


def adaptive_max_pool2d(x, output_size, return_indices=False, *, out=None):
    """Adaptive 2-D max pooling to a fixed (OH, OW) (``torch.nn.functional.adaptive_max_pool2d``).

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64, H, W >= 1
    output_size : int or (int or None, int or None); None keeps that input size. Larger than the input
        is allowed (bins then repeat cells).
    return_indices : bool. Also return int64 indices ``iy * W + ix`` (first maximum; last NaN).
    out : ndarray, optional. C-contiguous (N, C, OH, OW) buffer of x's dtype.

    Notes
    -----
    Bin ``i`` along an axis of size ``in`` covers ``[floor(i * in / OH), ceil((i + 1) * in / OH))``
    (PyTorch's rule; see :func:`fastconv.shapes.adaptive_bins`).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    >>> fastconv.adaptive_max_pool2d(x, 2)[0, 0]
    array([[12., 14.],
           [22., 24.]])
    """
    return _adaptive("adaptive_max_pool2d", x, output_size, "max", return_indices, out)


def adaptive_avg_pool2d(x, output_size, *, out=None):
    """Adaptive 2-D average pooling to a fixed (OH, OW) (``torch.nn.functional.adaptive_avg_pool2d``).

    Bins as :func:`adaptive_max_pool2d`; each output is the mean of its bin (float64 accumulation).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    >>> fastconv.adaptive_avg_pool2d(x, 1)[0, 0]
    array([[7.5]])
    """
    return _adaptive("adaptive_avg_pool2d", x, output_size, "avg", False, out)


def spatial_pyramid_pool2d(x, levels=(1, 2, 4), mode="max", *, rule="adaptive", out=None):
    """Spatial pyramid pooling (He et al. 2014): a fixed-length (N, C * sum(l_h * l_w)) vector per image.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64, any H, W >= 1
    levels : sequence of int or (l_h, l_w), non-empty, each >= 1
    mode : "max" or "avg"
    rule : "adaptive" (default) or "paper"
        "adaptive": the bins of :func:`adaptive_max_pool2d` (always exactly l bins). "paper": window
        ``ceil(a / l)`` and stride ``floor(a / l)``; ValueError when that does not give exactly l bins
        (e.g. a = 11, l = 4 gives 5), see docs/pooling.md.
    out : ndarray, optional. C-contiguous (N, C * sum(l_h * l_w)) buffer of x's dtype.

    Returns
    -------
    ndarray (N, C * sum(l_h * l_w)): for each level in order, the (C, l_h, l_w) block flattened, i.e.
    ``np.concatenate([adaptive_max_pool2d(x, l).reshape(N, -1) for l in levels], axis=1)``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> fastconv.spatial_pyramid_pool2d(x, levels=(1, 2))
    array([[15.,  5.,  7., 13., 15.]], dtype=float32)
    """
    fn = "spatial_pyramid_pool2d"
    pairs = spp_args(fn, x, levels, mode, rule)
    n_batch, c_in, ih, iw = x.shape
    level_bins = _level_bins(fn, rule, pairs, (ih, iw))
    out = check_out(fn, out, (n_batch, c_in * sum(lh * lw for lh, lw in pairs)), x.dtype, (x,))
    _run_bins(x, level_bins, mode, out)
    return out
