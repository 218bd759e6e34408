"""Kernels for the convolution gradients (``conv2d_backward``, ``conv_transpose2d_backward``).

Index algebra (done once here). For conv2d with input ``x`` (N, C, H, W), zero padding ``(top, left)``
(``xpad`` = ``x`` shifted, zeros outside it), output gradient ``g`` (N, O, OH, OW), ``cg = C / groups``,
``og = O / groups`` and ``o`` in group ``gr = o // og``::

    grad_weight[o, c, ky, kx] = sum_{n, oy, ox} g[n, o, oy, ox] * xpad[n, gr*cg + c, oy*sh + ky*dh, ox*sw + kx*dw]

Three ways to evaluate it (chosen by the wrapper, ``fastconv.backward``):

* Band GEMMs (:func:`im2col_band` + BLAS): the columns of a *band* -- ``m`` images and ``rows`` output rows
  of each -- are laid out ``col[(c * kh + ky) * kw + kx, i, r * OW + ox] = xpad[n0 + i, c0 + c,
  (oy0 + r)*sh + ky*dh, ox*sw + kx*dw]``, i.e. each (channel, tap) row holds the band's positions back to
  back; then per group ``grad_weight[gr] += g_band[gr] (og, m*rows*OW) @ col[gr].T``. The padding is done
  inline (zeros written for taps outside ``x``), so no padded copy of the input is made, and a band is
  sized to stay in the L2/L3 cache. The same kernel unfolds ``grad_out`` for the stride-1 input gradient
  (a conv2d of ``grad_out`` with the flipped, channel-swapped filters).
* Batch-innermost (:func:`to_batch_inner`, :func:`unfold_batch_inner`, :func:`fold_batch_inner`), for tiny
  feature maps where an image row is a handful of values: arrays are transposed to ``(C, H, W, N)`` so
  that every copy loop runs over ``OW * N`` contiguous values (one row of all images at once) instead of
  ``OW``: ``colb[(c * kh + ky) * kw + kx, oy, ox * N + n] = xb[c, oy*sh + ky*dh, (ox*sw + kx*dw) * N + n]``
  with ``xb`` the padded batch-innermost input. The GEMMs then run over ``OH * OW * N`` positions.
* Direct (:func:`grad_weight_rows`), for few channels per group (depthwise), where the GEMMs would be
  thin: per (o, c) pair, one accumulator row per tap, vectorised along output rows.

The bias gradient (:func:`bias_grad`, or :func:`to_batch_inner_sums` while transposing ``grad_out``) sums
each image's positions in eight lanes and the images in float64, in the same order in both kernels.

Indices are cast to ``np.uint64`` before indexing (numba then emits no negative-index wrap-around check,
which blocks vectorisation and made the band copy 5x slower); the contracts guarantee every index is in
range.

Parallel ownership: ``grad_weight_rows`` -> one iteration = one (o, c) pair, summed serially in
(n, oy, ox) order. The other kernels are serial (``@kernel``): the drivers run them on worker
threads, one band per call, each band owned by one worker and written into that worker's own buffer.
No iteration writes memory another touches; sums run in a fixed order: bit-identical results for any
thread count.

Contract (caller guarantees): arrays C-contiguous, writeable, one float dtype (float32 or float64); sizes
and steps Python ints >= 1, offsets and pads >= 0; every band inside its arrays (shapes in each kernel's
docstring).
"""

import numpy as np
from numba import prange

from .._jit import inline, kernel, parallel_kernel


@parallel_kernel(fastmath={"contract"})
def grad_weight_rows(x, g, gw, gb, acc_bias, top, left, sh, sw, dh, dw, groups):
    """Direct weight gradient, vectorised along output rows, zero padding inline::

        gw[o, c, ky, kx] = sum_{n, oy, ox} g[n, o, oy, ox] * xpad[n, gr*cg + c, oy*sh + ky*dh, ox*sw + kx*dw]

    ``x`` (N, C, H, W) unpadded (``xpad`` is ``x`` shifted by (top, left), zeros outside), ``g`` (N, O, OH, OW),
    ``gw`` (O, cg, kh, kw). For one (o, c) pair an accumulator row per tap, ``acc[t, ox] += g[n, o, oy, ox] *
    xpad[...]``, runs over ``ox`` (unit stride, vectorised when ``sw == 1``); at the end each tap's row is
    summed in ``ox`` order. When ``acc_bias`` is non-zero, the iterations with ``c == 0`` also store
    ``gb[o] = sum_{n, oy, ox} g[n, o, oy, ox]`` (the bias gradient, in (n, oy, ox) order).

    Ownership: iteration = one (o, c) pair, writing ``gw[o, c]`` (and ``gb[o]`` when ``c == 0``).
    """
    n_batch, c_out, oh, ow = g.shape
    _, c_in, ih, iw = x.shape
    _, cg, kh, kw = gw.shape
    og = c_out // groups
    taps = kh * kw
    xf = x.reshape(-1)
    gf = g.reshape(-1)
    wf = gw.reshape(-1)
    for task in prange(c_out * cg):
        o = task // cg
        c = task - o * cg
        ci = (o // og) * cg + c
        acc = np.zeros(taps * ow, dtype=gw.dtype)
        bias = 0.0
        for n in range(n_batch):
            xplane = (n * c_in + ci) * ih * iw
            for oy in range(oh):
                grow = ((n * c_out + o) * oh + oy) * ow
                if acc_bias and c == 0:
                    for ox in range(ow):
                        bias += gf[np.uint64(grow + ox)]
                for ky in range(kh):
                    iy = oy * sh + ky * dh - top
                    if iy < 0 or iy >= ih:
                        continue
                    xrow = xplane + iy * iw
                    for kx in range(kw):
                        xoff = kx * dw - left
                        lo = min(ow, max(0, (sw - 1 - xoff) // sw))
                        hi = max(lo, min(ow, (iw - 1 - xoff) // sw + 1))
                        a = (ky * kw + kx) * ow
                        src = xrow + xoff
                        if sw == 1:
                            for ox in range(lo, hi):
                                acc[np.uint64(a + ox)] += gf[np.uint64(grow + ox)] * xf[np.uint64(src + ox)]
                        else:
                            for ox in range(lo, hi):
                                acc[np.uint64(a + ox)] += gf[np.uint64(grow + ox)] * xf[np.uint64(src + ox * sw)]
        for t in range(taps):
            total = 0.0
            for ox in range(ow):
                total += acc[t * ow + ox]
            wf[np.uint64((o * cg + c) * taps + t)] = total
        if acc_bias and c == 0:
            gb[o] = bias


@kernel
def _axis_sources(size, k, step, dil, pad, out_size):
    """Per input index ``y`` and tap ``ky`` along one axis, the output index whose tap ``ky`` reads ``y``
    (``(y + pad - ky * dil) / step``), or -1 when none does."""
    src = np.full((size, k), -1, dtype=np.int64)
    for y in range(size):
        for ky in range(k):
            t = y + pad - ky * dil
            if t >= 0 and t % step == 0 and t // step < out_size:
                src[y, ky] = t // step
    return src


@kernel
def fold_batch_inner(colb, gx, acc, kh, kw, sh, sw, dh, dw, top, left):
    """Adjoint of the unfold, gather form, back to NCHW:
    ``gx[n, c, y, x] = sum over taps (ky, kx) and outputs (oy, ox) with y = oy*sh + ky*dh - top,
    x = ox*sw + kx*dw - left of colb[(c * kh + ky) * kw + kx, oy, ox * N + n]``.

    ``colb`` (C * kh * kw, OH, OW * N), ``gx`` (N, C, H, W), ``acc`` (N,) scratch. Which output row (column)
    each (row, tap) pair reads is tabulated first (no division in the loops); taps are added in (ky, kx)
    order for every cell (deterministic).
    """
    n_batch, c_in, ih, iw = gx.shape
    oh = colb.shape[1]
    ow = colb.shape[2] // n_batch
    row_of = _axis_sources(ih, kh, sh, dh, top, oh)
    col_of = _axis_sources(iw, kw, sw, dw, left, ow)
    cf = colb.reshape(-1)
    gf = gx.reshape(-1)
    step = c_in * ih * iw
    for c in range(c_in):
        for y in range(ih):
            for x in range(iw):
                for n in range(n_batch):
                    acc[n] = 0.0
                for ky in range(kh):
                    oy = row_of[y, ky]
                    if oy < 0:
                        continue
                    for kx in range(kw):
                        ox = col_of[x, kx]
                        if ox < 0:
                            continue
                        s = ((((c * kh + ky) * kw + kx) * oh + oy) * ow + ox) * n_batch
                        for n in range(n_batch):
                            acc[n] += cf[np.uint64(s + n)]
                d = (c * ih + y) * iw + x
                for n in range(n_batch):
                    gf[np.uint64(d + n * step)] = acc[n]


@inline
def _image_sum(gf, base, positions):
    """``sum(gf[base:base + positions])`` as a float64: eight lane sums in the array's dtype (lane ``j``
    takes the positions ``p % 8 == j`` below the last multiple of 8; independent chains, so the loop is
    not bound by the latency of one chain of additions and each chain holds at most ``positions / 8``
    terms), added in lane order, then the remaining positions in order, in float64."""
    full = positions - positions % 8
    tail = 0.0
    if full:
        l0, l1, l2, l3 = gf[np.uint64(base)], gf[np.uint64(base + 1)], gf[np.uint64(base + 2)], gf[np.uint64(base + 3)]
        l4, l5, l6, l7 = gf[np.uint64(base + 4)], gf[np.uint64(base + 5)], gf[np.uint64(base + 6)], gf[np.uint64(base + 7)]
        for p in range(8, full, 8):
            q = base + p
            l0 += gf[np.uint64(q)]
            l1 += gf[np.uint64(q + 1)]
            l2 += gf[np.uint64(q + 2)]
            l3 += gf[np.uint64(q + 3)]
            l4 += gf[np.uint64(q + 4)]
            l5 += gf[np.uint64(q + 5)]
            l6 += gf[np.uint64(q + 6)]
            l7 += gf[np.uint64(q + 7)]
        tail = ((((((l0 + l1) + l2) + l3) + l4) + l5) + l6) + l7
    total = 0.0 + tail
    for p in range(full, positions):
        total += gf[np.uint64(base + p)]
    return total


@kernel
def bias_grad(g, gb):
    """``gb[o] = sum_{n, p} g[n, o, p]``: ``g`` (N, O, P), ``gb`` (O,). Per channel, the images' sums
    (``_image_sum``) added in image order in float64. :func:`to_batch_inner_sums` computes the same sums in
    the same order (bit-identical).

    Serial: one vectorised pass, ~1 ms for L2's 6.4M values, less than waking the thread pool costs a
    small call.
    """
    n_batch, c_out, positions = g.shape
    gf = g.reshape(-1)
    for o in range(c_out):
        total = 0.0
        for n in range(n_batch):
            total += _image_sum(gf, (n * c_out + o) * positions, positions)
        gb[o] = total


@kernel
def to_batch_inner_sums(src, dst, sums_out):
    """:func:`to_batch_inner` without padding (``dst`` (C, H, W, N)) that also stores the per-channel sums
    ``sums_out[c] = sum_{n, y, x} src[n, c, y, x]``, bit-identical to :func:`bias_grad` (one read of the
    output gradient gives both the batch-innermost copy and the bias gradient)."""
    n_batch, c_in, ih, iw = src.shape
    positions = ih * iw
    sf = src.reshape(-1)
    df = dst.reshape(-1)
    for c in range(c_in):
        block = c * positions * n_batch
        total = 0.0
        for n in range(n_batch):
            s = (n * c_in + c) * positions
            for q in range(positions):
                df[np.uint64(block + n + q * n_batch)] = sf[np.uint64(s + q)]
            total += _image_sum(sf, s, positions)
        sums_out[c] = total
