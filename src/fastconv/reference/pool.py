"""Pure-numpy reference pooling: explicit window enumeration, float64, no shared code with the kernels.

Each output position's window is listed cell by cell from the definition (no padded copy, no closed-form
output size): a window is kept while it fits the rule, the values are gathered into an (N, C, T) array in
row-major window order and reduced with numpy. Output sizes are found by enumerating window starts.
Slow (a Python loop over output positions); meant for tests and small inputs. Argument validation is
deliberately minimal: the public ``fastconv`` functions are the ones that check.
"""

from fractions import Fraction
import math

import numpy as np


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def _pads(padding, in_hw, k_hw, s_hw, d_hw):
    """Per-side padding; "same" from its definition (smallest total padding giving ceil(in / s) windows)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        result = []
        for i, k, s, d in zip(in_hw, k_hw, s_hw, d_hw):
            want = math.ceil(i / s)
            total = 0
            while (i + total - (d * (k - 1) + 1)) // s + 1 < want:
                total += 1
            result.append((total // 2, total - total // 2))
        return tuple(result)
    if np.ndim(padding) == 0:
        return ((int(padding),) * 2,) * 2
    if np.ndim(padding[0]) == 0:
        return ((int(padding[0]),) * 2, (int(padding[1]),) * 2)
    return tuple((int(a), int(b)) for a, b in padding)


def _starts(in_size, k, s, d, p0, p1, ceil_mode):
    """Window starts (in input coordinates) along one axis, enumerated from the definition.

    Floor mode: every window lying inside the padded input. Ceil mode: additionally one more window when
    the previous window stopped short of the padded end; then, as PyTorch, the last window is dropped if
    it starts in the right padding.
    """
    extent = d * (k - 1) + 1
    end = in_size + p1  # padded end in input coordinates
    starts = []
    start = -p0
    while start + extent <= end:
        starts.append(start)
        start += s
    if ceil_mode and starts:
        if starts[-1] + extent < end:
            starts.append(start)
        if starts[-1] >= in_size:
            starts.pop()
    return starts


def _taps(start, k, d, size):
    """Input coordinates of the window's taps that fall inside ``[0, size)`` (ValueError if none)."""
    taps = [start + j * d for j in range(k) if 0 <= start + j * d < size]
    if not taps:
        raise ValueError(f"reference pool: padding leaves a window starting at {start} without input")
    return taps


def _check_starts(starts):
    if not starts:
        raise ValueError("reference pool: kernel_size does not fit in the padded input")
    return starts


def _max_and_index(vals, flat):
    """Max over the last axis with PyTorch's rules: first maximum wins, a NaN wins (the last NaN)."""
    nan = np.isnan(vals)
    last_nan = vals.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    first_max = np.argmax(np.where(nan, -np.inf, vals) == np.max(np.where(nan, -np.inf, vals), axis=-1,
                                                               keepdims=True), axis=-1)
    pick = np.where(nan.any(axis=-1), last_nan, first_max)
    value = np.take_along_axis(vals, pick[..., None], axis=-1)[..., 0]
    return value, np.asarray(flat, dtype=np.int64)[pick]


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Reference :func:`fastconv.max_pool2d` (same arguments and results)."""
    x = np.asarray(x)
    n_batch, c_in, ih, iw = x.shape
    k_hw = _pair(kernel_size)
    s_hw = k_hw if stride is None else _pair(stride)
    d_hw = _pair(dilation)
    pads = _pads(padding, (ih, iw), k_hw, s_hw, d_hw)
    rows = _check_starts(_starts(ih, k_hw[0], s_hw[0], d_hw[0], *pads[0], ceil_mode))
    cols = _check_starts(_starts(iw, k_hw[1], s_hw[1], d_hw[1], *pads[1], ceil_mode))
    out = np.empty((n_batch, c_in, len(rows), len(cols)), dtype=x.dtype)
    idx = np.empty(out.shape, dtype=np.int64)
    for i, y0 in enumerate(rows):
        for j, x0 in enumerate(cols):
            in_rows, in_cols = _taps(y0, k_hw[0], d_hw[0], ih), _taps(x0, k_hw[1], d_hw[1], iw)
            cells = [(iy, ix) for iy in in_rows for ix in in_cols]
            vals = np.stack([x[:, :, iy, ix] for iy, ix in cells], axis=-1)
            out[:, :, i, j], idx[:, :, i, j] = _max_and_index(vals, [iy * iw + ix for iy, ix in cells])
    return (out, idx) if return_indices else out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=None,
               divisor_override=None):
    """Reference :func:`fastconv.avg_pool2d`: float64 window sums divided by PyTorch's divisor.

    Divisor: ``divisor_override``; else with ``count_include_pad`` the window's cells that lie inside
    the padded input (a ceil_mode window may run past it); else the window's input cells.
    """
    x = np.asarray(x)
    n_batch, c_in, ih, iw = x.shape
    k_hw = _pair(kernel_size)
    s_hw = k_hw if stride is None else _pair(stride)
    pads = _pads(padding, (ih, iw), k_hw, s_hw, (1, 1))
    if count_include_pad is None:
        count_include_pad = not isinstance(padding, str)
    rows = _check_starts(_starts(ih, k_hw[0], s_hw[0], 1, *pads[0], ceil_mode))
    cols = _check_starts(_starts(iw, k_hw[1], s_hw[1], 1, *pads[1], ceil_mode))
    x64 = x.astype(np.float64)
    out = np.empty((n_batch, c_in, len(rows), len(cols)), dtype=np.float64)
    for i, y0 in enumerate(rows):
        for j, x0 in enumerate(cols):
            in_rows = _taps(y0, k_hw[0], 1, ih)
            in_cols = _taps(x0, k_hw[1], 1, iw)
            total = x64[:, :, in_rows][:, :, :, in_cols].sum(axis=(2, 3))
            if divisor_override is not None:
                divisor = divisor_override
            elif count_include_pad:
                padded_rows = [y for y in range(y0, y0 + k_hw[0]) if -pads[0][0] <= y < ih + pads[0][1]]
                padded_cols = [c for c in range(x0, x0 + k_hw[1]) if -pads[1][0] <= c < iw + pads[1][1]]
                divisor = len(padded_rows) * len(padded_cols)
            else:
                divisor = len(in_rows) * len(in_cols)
            out[:, :, i, j] = total / divisor
    return out.astype(x.dtype)


def _bins(in_size, out_size):
    """Adaptive bins from the definition with exact rationals: [floor(i*in/out), ceil((i+1)*in/out))."""
    return [(math.floor(Fraction(i * in_size, out_size)), math.ceil(Fraction((i + 1) * in_size, out_size)))
            for i in range(out_size)]


def _output_size(output_size, in_hw):
    if np.ndim(output_size) == 0 and output_size is not None:
        return (int(output_size),) * 2
    return tuple(in_hw[i] if v is None else int(v) for i, v in enumerate(output_size))


def _pool_bins(x, row_bins, col_bins, mode):
    """Pool over the given bins: (N, C, len(row_bins), len(col_bins)) values (and max indices)."""
    n_batch, c_in, ih, iw = x.shape
    out = np.empty((n_batch, c_in, len(row_bins), len(col_bins)), dtype=np.float64)
    idx = np.empty(out.shape, dtype=np.int64)
    for i, (y0, y1) in enumerate(row_bins):
        for j, (x0, x1) in enumerate(col_bins):
            cells = [(iy, ix) for iy in range(y0, y1) for ix in range(x0, x1)]
            vals = np.stack([x[:, :, iy, ix].astype(np.float64) for iy, ix in cells], axis=-1)
            if mode == "max":
                out[:, :, i, j], idx[:, :, i, j] = _max_and_index(vals, [iy * iw + ix for iy, ix in cells])
            else:
                out[:, :, i, j] = vals.mean(axis=-1)
    return out.astype(x.dtype), idx


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """Reference :func:`fastconv.adaptive_max_pool2d`."""
    x = np.asarray(x)
    oh, ow = _output_size(output_size, x.shape[2:])
    out, idx = _pool_bins(x, _bins(x.shape[2], oh), _bins(x.shape[3], ow), "max")
    return (out, idx) if return_indices else out


def adaptive_avg_pool2d(x, output_size):
    """Reference :func:`fastconv.adaptive_avg_pool2d` (float64 means)."""
    x = np.asarray(x)
    oh, ow = _output_size(output_size, x.shape[2:])
    return _pool_bins(x, _bins(x.shape[2], oh), _bins(x.shape[3], ow), "avg")[0]


def spatial_pyramid_pool2d(x, levels=(1, 2, 4), mode="max", *, rule="adaptive"):
    """Reference :func:`fastconv.spatial_pyramid_pool2d`: concatenated flattened per-level pools.

    ``rule="adaptive"``: adaptive pooling per level. ``rule="paper"``: the paper's pooling, i.e. a
    windowed pool with window ``ceil(a/n)`` and stride ``floor(a/n)``, ValueError unless it gives n bins.
    """
    x = np.asarray(x)
    n_batch = x.shape[0]
    blocks = []
    for level in levels:
        lh, lw = _pair(level)
        if rule == "paper":
            (ah, aw) = x.shape[2:]
            k = (math.ceil(ah / lh), math.ceil(aw / lw))
            s = (ah // lh, aw // lw)
            if min(s) == 0:
                raise ValueError(f"spatial_pyramid_pool2d: levels entry {(lh, lw)} larger than the input")
            if mode == "max":
                pooled = max_pool2d(x, k, stride=s)
            else:
                pooled = avg_pool2d(x, k, stride=s)
            if pooled.shape[2:] != (lh, lw):
                raise ValueError(f"spatial_pyramid_pool2d: levels entry {(lh, lw)} gives bins {pooled.shape[2:]}")
        elif mode == "max":
            pooled = adaptive_max_pool2d(x, (lh, lw))
        else:
            pooled = adaptive_avg_pool2d(x, (lh, lw))
        blocks.append(pooled.reshape(n_batch, -1))
    return np.concatenate(blocks, axis=1)
