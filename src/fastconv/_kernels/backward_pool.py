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

from numba import get_thread_id, prange

from .._jit import parallel_kernel


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
