"""Pooling kernels: windowed max / average (``max_pool2d``, ``avg_pool2d``) and pooling over explicit bins
(``adaptive_*_pool2d``, ``spatial_pyramid_pool2d``).

Index algebra (done once here; the shape maths is in ``fastconv.shapes``, "Pooling" section).

*Windowed pools.* Output ``(oy, ox)`` of a plane reads input cells
``iy = oy * sh - top + ky * dh``, ``ix = ox * sw - left + kx * dw`` for ``ky < kh``, ``kx < kw``; cells
outside ``[0, ih) x [0, iw)`` are padding (max: implicit -inf; average: zeros that only count in the
divisor). No padded copy of the input is made. For a row ``oy`` the valid taps are
``ky in [ceil(-y0 / dh), ceil((ih - y0) / dh))`` with ``y0 = oy * sh - top``. The reduction is separable::

    s[left + ix] = op over valid ky of x[iy, ix]            column pass, unit stride (vectorised)
    out[oy, ox]  = op over kx of s[ox * sw + kx * dw]        row pass, kept positions only
    (/ divisor for averages)

``s`` is a per-thread scratch row whose ``left`` leading and trailing cells hold op's identity (-inf or
0), so edge windows need no special case. Column passes over 2 or 3 rows and row passes of width 2 or 3
at stride 1 or 2 (undilated) are fused single loops with compile-time strides: a stride-2 read is an
interleaved vector load, so they vectorise (computing every sliding position and then picking every
sw-th, the previous design, did sw times the row work and a third loop). Max values are exact in
any order (only which of tied -0.0 / 0.0, or which NaN payload, is returned depends on it); sums go
column by column. Full non-overlapping 2x2 / stride 2 windows (the common VGG / ResNet
pool) skip the scratch row altogether: one fused loop reads the two input rows (``pool2x2_kernel``, in
row-major window order). The max-with-indices kernel instead visits taps one by one over clipped ranges
(``kx`` tap at input offset ``off = kx * dw - left`` is read by ``ox in [ceil(-off / sw), ceil((iw - off)
/ sw))``) in row-major window order, so ties keep the first maximum (strict ``>``).

*Bin pools.* Output bin ``(i, j)`` of level ``l`` reads the rectangle
``[row_bins[r, 0], row_bins[r, 1]) x [col_bins[q, 0], col_bins[q, 1])`` with ``r = row_off[l] + i``,
``q = col_off[l] + j`` and is written to ``out[n, out_off[l] + c * lh * lw + i * lw + j]`` (the SPP
layout; ``adaptive_*_pool2d`` is the one-level case with ``out`` viewed as ``(N, C * OH * OW)``).

NaN semantics (PyTorch): an element replaces the running maximum when ``v > m or v != v``: a NaN in the
window gives NaN, and its index is the *last* NaN in window order. No fastmath in max kernels.

Parallel ownership: one ``prange`` iteration = one (plane, block of output rows) for windowed pools,
one (plane, block of bin rows, all levels) for bin pools. It writes only those output (and index) elements,
reads the input, and accumulates in a fixed order: bit-identical results for any thread count.
``row_blocks`` (>= 1, chosen by the wrapper) splits each plane's (bin) rows so a single image still
feeds every thread.

Contract (caller guarantees, every kernel): ``x`` is (N, C, H, W), C-contiguous, float32 or float64;
``out`` has x's dtype, C-contiguous, the documented shape; index arrays are int64, C-contiguous; all
sizes and steps are Python ints >= 1 (paddings >= 0); every window/bin holds at least one input cell.
"""

import numpy as np
from numba import get_thread_id, prange

from .._jit import kernel, parallel_kernel

NEG_INF = -np.inf


@kernel
def _nanmax(m, v):
    """``max(m, v)`` that propagates a NaN from either side (two selects: vectorises, no branches)."""
    r = v if v > m else m
    return v if v != v else r


@kernel
def _column_pass(xp, p, y0, ky_lo, ky_hi, dh, dst, is_max):
    """``dst[ix] = op over valid ky (in order) of xp[p, y0 + ky * dh, ix]``: unit-stride row loops.

    Two and three rows (every undilated 2x2 / 3x3 window) are fused into one loop: one store per cell.
    """
    n = dst.shape[0]
    r0 = xp[p, y0 + ky_lo * dh]
    rows = ky_hi - ky_lo
    if rows == 1:
        for i in range(n):
            dst[i] = r0[i]
        return
    r1 = xp[p, y0 + (ky_lo + 1) * dh]
    if rows == 2:
        if is_max:
            for i in range(n):
                dst[i] = _nanmax(r0[i], r1[i])
        else:
            for i in range(n):
                dst[i] = r0[i] + r1[i]
        return
    r2 = xp[p, y0 + (ky_lo + 2) * dh]
    if is_max:
        for i in range(n):
            dst[i] = _nanmax(_nanmax(r0[i], r1[i]), r2[i])
    else:
        for i in range(n):
            dst[i] = r0[i] + r1[i] + r2[i]
    for ky in range(ky_lo + 3, ky_hi):
        xrow = xp[p, y0 + ky * dh]
        if is_max:
            for i in range(n):
                dst[i] = _nanmax(dst[i], xrow[i])
        else:
            for i in range(n):
                dst[i] = dst[i] + xrow[i]


@kernel
def _row_pass(s, orow, kw, sw, dw, is_max):
    """``orow[ox] = op over kx (in order) of s[ox * sw + kx * dw]``: only the positions kept by the stride.

    Undilated widths 2 and 3 at strides 1 and 2 are fused loops with compile-time strides (stride 2 is
    an interleaved load, so these vectorise); stride 1 otherwise is one unit-stride pass per ``kx``; any
    other stride is a scalar loop.
    """
    ow = orow.shape[0]
    if dw == 1 and sw == 2 and kw == 2:
        if is_max:
            for ox in range(ow):
                orow[ox] = _nanmax(s[2 * ox], s[2 * ox + 1])
        else:
            for ox in range(ow):
                orow[ox] = s[2 * ox] + s[2 * ox + 1]
    elif dw == 1 and sw == 2 and kw == 3:
        if is_max:
            for ox in range(ow):
                orow[ox] = _nanmax(_nanmax(s[2 * ox], s[2 * ox + 1]), s[2 * ox + 2])
        else:
            for ox in range(ow):
                orow[ox] = s[2 * ox] + s[2 * ox + 1] + s[2 * ox + 2]
    elif dw == 1 and sw == 1 and kw == 2:
        if is_max:
            for ox in range(ow):
                orow[ox] = _nanmax(s[ox], s[ox + 1])
        else:
            for ox in range(ow):
                orow[ox] = s[ox] + s[ox + 1]
    elif dw == 1 and sw == 1 and kw == 3:
        if is_max:
            for ox in range(ow):
                orow[ox] = _nanmax(_nanmax(s[ox], s[ox + 1]), s[ox + 2])
        else:
            for ox in range(ow):
                orow[ox] = s[ox] + s[ox + 1] + s[ox + 2]
    elif sw == 1:
        for ox in range(ow):
            orow[ox] = s[ox]
        for kx in range(1, kw):
            shifted = s[kx * dw:]
            if is_max:
                for ox in range(ow):
                    orow[ox] = _nanmax(orow[ox], shifted[ox])
            else:
                for ox in range(ow):
                    orow[ox] = orow[ox] + shifted[ox]
    else:
        for ox in range(ow):
            base = ox * sw
            acc = s[base]
            for kx in range(1, kw):
                v = s[base + kx * dw]
                acc = _nanmax(acc, v) if is_max else acc + v
            orow[ox] = acc


@parallel_kernel
def window_pool2d_kernel(x, out, scratch, row_div, col_div, kh, kw, sh, sw, dh, dw, top, left, mode, row_blocks):
    """Windowed max or average pooling, separable: column pass, then row pass, per output row.

    ``mode``: 0 max; 1 average, ``out[oy, ox] = sum / (row_div[oy] * col_div[ox])`` where the wrapper's
    tables (x's dtype, exact small integers) encode PyTorch's divisor rules (``count_include_pad``,
    ``ceil_mode`` clipping, ``divisor_override`` as ``row_div = 1``, ``col_div = d``). For max the tables
    are empty. ``out``: (N, C, OH, OW). ``scratch``: (T, L) of x's dtype with ``T`` >= the number of
    threads (``numba.get_thread_id()`` selects a row; each iteration runs on one thread and rewrites what
    it reads) and ``L >= max(left + W, (OW - 1) * sw + (kw - 1) * dw + 1)``.

    Per output row ``oy``: ``s[left + ix] = op over valid ky of x[iy, ix]`` (the padding cells of ``s`` hold
    the identity: -inf for max, 0 for sums), then ``out[oy, ox] = op over kx of s[ox * sw + kx * dw]``
    (only the kept positions). Max is exact and NaN-propagating; sums go column by column (ky order,
    then kx order). Ownership: iteration = (plane, block of output rows).
    """
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    planes = n_batch * c_in
    xp = x.reshape(planes, ih, iw)
    op = out.reshape(planes, oh, ow)
    rows_per = (oh + row_blocks - 1) // row_blocks
    is_max = mode == 0
    fill = NEG_INF if is_max else 0.0
    for task in prange(planes * row_blocks):
        p = task // row_blocks
        oy_lo = (task % row_blocks) * rows_per
        oy_hi = min(oy_lo + rows_per, oh)
        s = scratch[get_thread_id()]
        for i in range(left):
            s[i] = fill
        for i in range(left + iw, s.shape[0]):
            s[i] = fill
        for oy in range(oy_lo, oy_hi):
            orow = op[p, oy]
            y0 = oy * sh - top
            ky_lo = -(y0 // dh) if y0 < 0 else 0
            ky_hi = min(kh, (ih - y0 + dh - 1) // dh)
            _column_pass(xp, p, y0, ky_lo, ky_hi, dh, s[left:left + iw], is_max)
            _row_pass(s, orow, kw, sw, dw, is_max)
            if not is_max:
                rows = row_div[oy]
                for ox in range(ow):
                    orow[ox] = orow[ox] / (rows * col_div[ox])


@parallel_kernel
def pool2x2_kernel(x, out, divisor, mode, row_blocks):
    """Non-overlapping 2x2 / stride 2 pooling of full windows only (no padding, no dilation, no clipping).

    ``out[oy, ox] = op(x[2oy, 2ox], x[2oy, 2ox + 1], x[2oy + 1, 2ox], x[2oy + 1, 2ox + 1])`` in that
    (row-major window) order; ``mode`` 0: max (NaN-propagating, ties keep the first); 1: the sum divided
    by ``divisor[0]`` (x's dtype: 4, or ``divisor_override``). Contract: ``2 * OH <= H``, ``2 * OW <= W``.
    One fused pass straight from the two input rows (stride-2 interleaved loads), no scratch.
    Ownership: iteration = (plane, block of output rows).
    """
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    planes = n_batch * c_in
    xp = x.reshape(planes, ih, iw)
    op = out.reshape(planes, oh, ow)
    rows_per = (oh + row_blocks - 1) // row_blocks
    d = divisor[0]
    for task in prange(planes * row_blocks):
        p = task // row_blocks
        oy_lo = (task % row_blocks) * rows_per
        oy_hi = min(oy_lo + rows_per, oh)
        for oy in range(oy_lo, oy_hi):
            r0 = xp[p, 2 * oy]
            r1 = xp[p, 2 * oy + 1]
            orow = op[p, oy]
            if mode == 0:
                for ox in range(ow):
                    orow[ox] = _nanmax(_nanmax(_nanmax(r0[2 * ox], r0[2 * ox + 1]), r1[2 * ox]), r1[2 * ox + 1])
            else:
                for ox in range(ow):
                    orow[ox] = (r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1]) / d


@parallel_kernel
def max_pool2d_indices_kernel(x, out, indices, kh, kw, sh, sw, dh, dw, top, left, row_blocks):
    """:func:`max_pool2d_kernel` plus ``indices[n, c, oy, ox] = iy * W + ix`` of the maximum (int64).

    Ties keep the first maximum in row-major window order; with a NaN, the last NaN (PyTorch). A window
    of only -inf reports its first input cell. Ownership: iteration = (plane, row block).
    """
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    planes = n_batch * c_in
    xp = x.reshape(planes, ih, iw)
    op = out.reshape(planes, oh, ow)
    ip = indices.reshape(planes, oh, ow)
    rows_per = (oh + row_blocks - 1) // row_blocks
    for task in prange(planes * row_blocks):
        p = task // row_blocks
        oy_lo = (task % row_blocks) * rows_per
        oy_hi = min(oy_lo + rows_per, oh)
        for oy in range(oy_lo, oy_hi):
            orow = op[p, oy]
            irow = ip[p, oy]
            y0 = oy * sh - top
            ky_lo = max(0, -(y0 // dh)) if y0 < 0 else 0
            ky_hi = min(kh, (ih - y0 + dh - 1) // dh)
            first_row = (y0 + ky_lo * dh) * iw
            for ox in range(ow):
                x0 = ox * sw - left
                kx_lo = -(x0 // dw) if x0 < 0 else 0
                orow[ox] = NEG_INF
                irow[ox] = first_row + x0 + kx_lo * dw
            for ky in range(ky_lo, ky_hi):
                iy = y0 + ky * dh
                xrow = xp[p, iy]
                for kx in range(kw):
                    off = kx * dw - left
                    ox_lo = -(off // sw) if off < 0 else 0
                    ox_hi = min(ow, (iw - off + sw - 1) // sw)
                    base = ox_lo * sw + off
                    for j in range(ox_hi - ox_lo):
                        ix = base + j * sw
                        v = xrow[ix]
                        if v > orow[ox_lo + j] or v != v:
                            orow[ox_lo + j] = v
                            irow[ox_lo + j] = iy * iw + ix


@kernel
def _bin_row(r, c, row_bins, row_level, levels):
    """Geometry of bin row ``r`` for channel ``c`` (SPP layout, see the module notes):
    ``(y_lo, y_hi, col_off, lw, dst)`` -- its input rows, the level's first bin column and width, and
    the output offset of its first bin."""
    lv = row_level[r]
    lh = levels[lv, 1]
    lw = levels[lv, 3]
    dst = levels[lv, 4] + c * lh * lw + (r - levels[lv, 0]) * lw
    return row_bins[r, 0], row_bins[r, 1], levels[lv, 2], lw, dst


@parallel_kernel
def bin_max_kernel(x, row_bins, col_bins, row_level, levels, out, row_blocks):
    """Max over explicit bins, SPP layout (see the module notes); NaN propagates.

    ``row_bins`` (R, 2), ``col_bins`` (Q, 2): [start, end) of every bin row / column of every level, the
    levels concatenated; ``row_level`` (R,): level of each bin row; ``levels`` (L, 5): ``(row_off, lh,
    col_off, lw, out_off)``; ``out`` (N, C * sum(lh * lw)). Each bin is reduced in row-major order with a
    predicted branch rather than ``_nanmax``'s selects: in a serial reduction the select chain's latency
    dominates (measured 2.3x slower on SPP), and a separable column-then-row variant with a per-thread
    scratch row was slower still on 13x13 planes (rows too short to vectorise; re-measured: 1.2x slower).
    Ownership: iteration = (plane, block of bin rows): the R bin rows (all levels) of a plane are split
    into ``row_blocks`` blocks (1 when there are enough planes: fewer, larger tasks measured ~10% faster
    on SPP than one task per bin row).
    """
    n_batch, c_in, ih, iw = x.shape
    n_rows = row_bins.shape[0]
    rows_per = (n_rows + row_blocks - 1) // row_blocks
    xf = x.reshape(n_batch * c_in, ih * iw)
    for task in prange(n_batch * c_in * row_blocks):
        p = task // row_blocks
        r_lo = (task % row_blocks) * rows_per
        n = p // c_in
        c = p % c_in
        xs = xf[p]
        orow = out[n]
        for r in range(r_lo, min(r_lo + rows_per, n_rows)):
            y_lo, y_hi, col_off, lw, dst = _bin_row(r, c, row_bins, row_level, levels)
            for j in range(lw):
                x_lo = col_bins[col_off + j, 0]
                x_hi = col_bins[col_off + j, 1]
                m = NEG_INF
                for iy in range(y_lo, y_hi):
                    base = iy * iw
                    for ix in range(base + x_lo, base + x_hi):
                        v = xs[ix]
                        m = v if (v > m or v != v) else m
                orow[dst + j] = m


@parallel_kernel
def bin_avg_kernel(x, row_bins, col_bins, row_level, levels, out, row_blocks):
    """Mean over explicit bins (float64 sum in row-major order / cell count), layout as :func:`bin_max_kernel`.

    Ownership: iteration = (plane, block of bin rows), as :func:`bin_max_kernel`.
    """
    n_batch, c_in, ih, iw = x.shape
    n_rows = row_bins.shape[0]
    rows_per = (n_rows + row_blocks - 1) // row_blocks
    xf = x.reshape(n_batch * c_in, ih * iw)
    for task in prange(n_batch * c_in * row_blocks):
        p = task // row_blocks
        r_lo = (task % row_blocks) * rows_per
        n = p // c_in
        c = p % c_in
        xs = xf[p]
        orow = out[n]
        for r in range(r_lo, min(r_lo + rows_per, n_rows)):
            y_lo, y_hi, col_off, lw, dst = _bin_row(r, c, row_bins, row_level, levels)
            for j in range(lw):
                x_lo = col_bins[col_off + j, 0]
                x_hi = col_bins[col_off + j, 1]
                total = 0.0
                for iy in range(y_lo, y_hi):
                    base = iy * iw
                    for ix in range(base + x_lo, base + x_hi):
                        total += xs[ix]
                orow[dst + j] = total / ((y_hi - y_lo) * (x_hi - x_lo))


@parallel_kernel
def bin_max_indices_kernel(x, row_bins, col_bins, row_level, levels, out, indices, row_blocks):
    """:func:`bin_max_kernel` plus ``indices[n, k] = iy * W + ix`` of each maximum (int64, same layout)."""
    n_batch, c_in, ih, iw = x.shape
    n_rows = row_bins.shape[0]
    rows_per = (n_rows + row_blocks - 1) // row_blocks
    xf = x.reshape(n_batch * c_in, ih * iw)
    for task in prange(n_batch * c_in * row_blocks):
        p = task // row_blocks
        r_lo = (task % row_blocks) * rows_per
        n = p // c_in
        c = p % c_in
        xs = xf[p]
        orow = out[n]
        irow = indices[n]
        for r in range(r_lo, min(r_lo + rows_per, n_rows)):
            y_lo, y_hi, col_off, lw, dst = _bin_row(r, c, row_bins, row_level, levels)
            for j in range(lw):
                x_lo = col_bins[col_off + j, 0]
                x_hi = col_bins[col_off + j, 1]
                m = NEG_INF
                best = y_lo * iw + x_lo
                for iy in range(y_lo, y_hi):
                    base = iy * iw
                    for ix in range(base + x_lo, base + x_hi):
                        v = xs[ix]
                        if v > m or v != v:
                            m = v
                            best = ix
                orow[dst + j] = m
                irow[dst + j] = best
