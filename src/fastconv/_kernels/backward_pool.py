"""Pooling backward kernels, gather form (no scatter races).

Index algebra (done once here). Every pool's input gradient is a sum over the outputs that read a cell:

* Max pools (windowed or bins) route ``g[p, k]`` to the cell ``idx[p, k]`` of plane ``p`` (the forward's
  argmax, flat ``iy * W + ix``). :func:`route_max_kernel` gives each ``prange`` iteration a block of *input*
  rows of one plane: it scans the plane's outputs in order and adds those whose index falls in its block.
  Every input cell is owned by one iteration and receives its contributions in output order.
* Average pools (windowed and adaptive) are separable boxes: output ``(oy, ox)`` spreads
  ``gs[oy, ox] = g[oy, ox] / divisor[oy, ox]`` (the wrapper pre-scales) over rows ``R(oy)`` and columns
  ``C(ox)``. Both the windows and the adaptive bins are monotone, so the outputs covering an input row ``iy``
  are a range ``[row_rng[iy, 0], row_rng[iy, 1])`` (same for columns), computed by the wrapper. Then::

      t[ox] = sum_{oy in row_rng[iy]} gs[oy, ox]                (unit-stride row adds, oy ascending)
      grad_x[iy, ix] = sum_{ox in col_rng[ix]} t[ox]             (ox ascending)

Parallel ownership: one ``prange`` iteration = one (plane, block of input rows); it writes only those rows of
``grad_x``; sums run in a fixed order, so results are bit-identical for every thread count and every
``row_blocks`` (chosen by the wrapper from the thread count, for load balance only).

Contract (caller guarantees): float arrays C-contiguous, writeable, one dtype (float32 or float64);
index/range arrays int64 C-contiguous; indices in ``[0, H * W)``; ranges within ``[0, OH]``/``[0, OW]``;
``scratch`` (T, OW) with T >= the number of numba threads; ``row_blocks >= 1``.
"""

import numpy as np
from numba import get_thread_id, prange

from .._jit import kernel, parallel_kernel


@parallel_kernel
def route_max_kernel(g, idx, gx, iw, row_blocks):
    """``gx[p, idx[p, k]] += g[p, k]`` for every ``k`` in order; ``g``, ``idx`` (P, K), ``gx`` (P, H * W).

    Ownership: iteration = (plane p, block of input rows); it zeroes and fills only its cells.
    """
    planes, n_out = g.shape
    ih = gx.shape[1] // iw
    rows_per = (ih + row_blocks - 1) // row_blocks
    for task in prange(planes * row_blocks):
        p = task // row_blocks
        lo = min((task % row_blocks) * rows_per, ih) * iw
        hi = min(lo + rows_per * iw, ih * iw)
        dst = gx[p]
        for i in range(lo, hi):
            dst[i] = 0
        gp = g[p]
        ip = idx[p]
        for k in range(n_out):
            j = ip[k]
            if lo <= j < hi:
                dst[j] += gp[k]


@parallel_kernel
def box_backward_kernel(gs, row_rng, col_rng, gx, scratch, row_blocks):
    """Separable box adjoint: ``gx[p, iy, ix] = sum_{oy in row_rng[iy]} sum_{ox in col_rng[ix]} gs[p, oy, ox]``.

    ``gs`` (P, OH, OW) pre-scaled gradient; ``row_rng`` (H, 2), ``col_rng`` (W, 2) half-open output ranges;
    ``gx`` (P, H, W). Ownership: iteration = (plane, block of input rows).
    """
    planes, oh, ow = gs.shape
    ih, iw = gx.shape[1], gx.shape[2]
    rows_per = (ih + row_blocks - 1) // row_blocks
    for task in prange(planes * row_blocks):
        p = task // row_blocks
        iy_lo = (task % row_blocks) * rows_per
        iy_hi = min(iy_lo + rows_per, ih)
        t = scratch[get_thread_id()]
        for iy in range(iy_lo, iy_hi):
            for ox in range(ow):
                t[ox] = 0
            for oy in range(row_rng[iy, 0], row_rng[iy, 1]):
                grow = gs[p, oy]
                for ox in range(ow):
                    t[ox] += grow[ox]
            dst = gx[p, iy]
            for ix in range(iw):
                acc = t[0] * 0
                for ox in range(col_rng[ix, 0], col_rng[ix, 1]):
                    acc += t[ox]
                dst[ix] = acc


@parallel_kernel
def spp_max_backward_kernel(x, g, row_bins, col_bins, levels, gx, block):
    """Max spatial-pyramid adjoint in one pass: each bin's argmax (found again) receives its gradient.

    ``x``, ``gx`` (N, C, H, W); ``g`` (N, total) in the SPP layout; ``row_bins`` (R, 2), ``col_bins`` (Q, 2)
    half-open bins of every level back to back; ``levels`` (L, 5) = ``(row_off, lh, col_off, lw, out_off)``,
    so bin (by, bx) of channel c at level l is ``g[n, out_off + (c * lh + by) * lw + bx]``. The argmax
    rule is the forward's (first maximum, last NaN).

    SPP maps are small (4x4 .. 13x13), so per-plane loops would be all loop overhead: the kernel works on
    ``block`` planes at once, transposed to (cell, plane) in local buffers, so every compare, select and add
    runs across planes in SIMD lanes. The running maximum is double-buffered (read one buffer, write the
    other): a read-modify-write of the same buffer compiles to masked stores, several times slower on this
    CPU. Ownership: iteration = one block of (n, c) planes; each cell of a plane gets its contributions in
    level order, bins row-major (adding 0 to the cells that are not a bin's argmax is exact), so the result
    does not depend on the thread count or the block size.
    """
    n_batch, c_in, ih, iw = x.shape
    planes = n_batch * c_in
    cells = ih * iw
    total = g.shape[1]
    xf = x.reshape(planes, cells)
    gxf = gx.reshape(planes, cells)
    gf = g.reshape(n_batch * total)
    zero = x.dtype.type(0)
    for task in prange((planes + block - 1) // block):
        p0 = task * block
        nb = min(block, planes - p0)
        xt = np.zeros((cells, block), dtype=x.dtype)
        acc = np.zeros((cells, block), dtype=x.dtype)
        m_a = np.empty(block, dtype=x.dtype)
        m_b = np.empty(block, dtype=x.dtype)
        best_a = np.empty(block, dtype=np.int32)
        best_b = np.empty(block, dtype=np.int32)
        gval = np.zeros(block, dtype=x.dtype)
        g_base = np.empty(block, dtype=np.int64)
        chan = np.empty(block, dtype=np.int64)
        for j in range(nb):
            n = (p0 + j) // c_in
            g_base[j] = n * total
            chan[j] = p0 + j - n * c_in
            for i in range(cells):
                xt[i, j] = xf[p0 + j, i]
        for lv in range(levels.shape[0]):
            row_off = levels[lv, 0]
            lh = levels[lv, 1]
            col_off = levels[lv, 2]
            lw = levels[lv, 3]
            out_off = levels[lv, 4]
            for by in range(lh):
                y_lo = row_bins[row_off + by, 0]
                y_hi = row_bins[row_off + by, 1]
                for bx in range(lw):
                    x_lo = col_bins[col_off + bx, 0]
                    x_hi = col_bins[col_off + bx, 1]
                    for j in range(nb):
                        gval[j] = gf[g_base[j] + out_off + (chan[j] * lh + by) * lw + bx]
                    first = y_lo * iw + x_lo
                    for j in range(block):
                        m_a[j] = xt[first, j]
                        best_a[j] = first
                    flip = False
                    for iy in range(y_lo, y_hi):
                        for cell in range(iy * iw + x_lo, iy * iw + x_hi):
                            if flip:
                                _argmax_step(xt[cell], m_b, best_b, m_a, best_a, cell)
                            else:
                                _argmax_step(xt[cell], m_a, best_a, m_b, best_b, cell)
                            flip = not flip
                    best = best_b if flip else best_a
                    for iy in range(y_lo, y_hi):
                        for cell in range(iy * iw + x_lo, iy * iw + x_hi):
                            row = acc[cell]
                            for j in range(block):
                                row[j] += gval[j] if best[j] == cell else zero
        for j in range(nb):
            for i in range(cells):
                gxf[p0 + j, i] = acc[i, j]


@kernel
def _argmax_step(v, m_in, best_in, m_out, best_out, cell):
    """One cell of a running argmax across lanes: take ``v`` where greater, or NaN (last NaN wins)."""
    for j in range(v.shape[0]):
        vj = v[j]
        mj = m_in[j]
        take = (vj > mj) | (vj != vj)
        m_out[j] = vj if take else mj
        best_out[j] = cell if take else best_in[j]
