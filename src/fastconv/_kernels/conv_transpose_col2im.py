"""col2im for ``conv_transpose2d(algo="col2im")``: sum one work item's GEMM columns into its outputs.

The wrapper (``fastconv.conv_transpose``) computes, per work item, one small GEMM on one thread::

    cols[(o * kh + ky) * kw + kx, col] = sum_c weight[g*cg + c, o0 + o, ky, kx] * x[n, g*cg + c, iy, ix]

for the item's block of output channels ``o0 .. o0 + ob`` and its *column block*: either ``m`` whole
consecutive images (``col = i * IH * IW + iy * IW + ix``) or one band of input rows
``iy_lo .. iy_hi`` of one image (``col = (iy - iy_lo) * IW + ix``). This kernel then adds the columns
into the outputs they belong to, in gather form, by output *phase* (the index algebra of
``conv_transpose.py``): output row ``y = ry + sh * jy`` receives tap ``ky`` exactly when
``(ry + top - ky * dh) % sh == 0``, from input row ``iy = jy + qy``, ``qy = (ry + top - ky * dh) // sh``;
the same per column with ``(rx, kx, qx)``. So for a fixed phase and tap, the contributions form a
shifted copy of one columns plane::

    phase_out[jy, jx] += cols[tap, (jy + qy) * IW + jx + qx]        (0 <= jy + qy < IH, 0 <= jx + qx < IW)

An accumulator with the columns' row length ``IW`` makes that a single flat, unit-stride loop over
``p = jy * IW + jx`` per tap (long: whole phase planes, so LLVM's vector loop runs at full width); the x
taps of one ``ky`` share their rows, so up to three of them are summed in the same loop
(``acc[p] += (c0[p] + c1[p]) + c2[p]``; the first pass assigns instead of adding). The price: wrong values
in the few *edge* columns ``jx`` where some tap's ``jx + qx`` falls outside ``[0, IW)`` (the flat loop
wraps into the neighbouring row there, or is clamped away at the ends). Those columns are zeroed and summed
again column by column, tap by tap, with every check; phase columns ``jx >= IW`` (stride 1 with little
padding) element by element (``_edge_sum``). An output element's sum therefore depends only on its column
(interior or edge), never on how the problem was cut into items. A phase reached by a single tap that
covers all its rows and columns (kernel size == stride) is not copied to the accumulator: the store reads
the columns directly. The store adds the bias and interleaves the ``sw`` x phases of each output row
(stride 2 has its own loop, which LLVM vectorises with unpack instructions). Phases no tap reaches are bias
only.

Contract (caller guarantees): ``buf`` 1-D, C-contiguous, holding the item's columns (``ob * kh * kw``
rows of ``ncols`` values, then any padding rows) from 0 and, from ``acc0``, room for the accumulator:
``sw`` phase planes of ``ceil((y1 - y0) / sh)`` rows of ``IW``; ``out`` the whole (N, O, OH, OW) result,
C-contiguous, flattened; ``bias`` (O,) (zeros when none); one float dtype. For a band item,
``iy_lo .. iy_hi`` covers every input row that output rows ``y0 .. y1`` read. Indices are cast to
``np.uint64`` before indexing (no wrap-around checks, which would block vectorisation): the contract keeps
them in range.

Parallel ownership: one call = one work item = the output elements (images, channels of the block,
rows ``y0 .. y1``), disjoint from every other item's; nothing else is written (``buf`` is the calling
thread's own). The sum order per element is fixed, so results do not depend on the thread count.
"""

import numpy as np

from .._jit import kernel


@kernel
def _edge_sum(zero, cols, cbase, ncols, ih, iw, jy, jx, ry, rx, kh, kw, sh, sw, dh, dw, top, left):
    """One output element of phase ``(ry, rx)`` at ``(jy, jx)``, every tap checked: ``zero`` plus the taps
    in ``(ky, kx)`` order (``zero`` is 0 in the data's dtype: a 0.0 literal would sum float32 in float64).
    Tap ``(ky, kx)`` at input ``(iy, ix)`` is ``cols[cbase + (ky*kw + kx)*ncols + iy*iw + ix]``."""
    total = zero
    for ky in range(kh):
        ty = ry + top - ky * dh
        qy = ty // sh
        if ty - qy * sh != 0:
            continue
        iy = jy + qy
        if iy < 0 or iy >= ih:
            continue
        for kx in range(kw):
            tx = rx + left - kx * dw
            qx = tx // sw
            if tx - qx * sw != 0:
                continue
            ix = jx + qx
            if ix < 0 or ix >= iw:
                continue
            total += cols[np.uint64(cbase + (ky * kw + kx) * ncols + iy * iw + ix)]
    return total


@kernel
def col2im_item(buf, ncols, acc0, out, bias, n0, m, o0, ob, y0, y1, iy_lo, c_out, oh, ow, ih, iw, kh, kw,
                sh, sw, dh, dw, top, left):
    """Sum the columns of one work item into ``out`` (see the module docstring for the layout).

    Writes ``out[n0 + i, o0 + o, y, :]`` for ``i < m``, ``o < ob``, ``y0 <= y < y1``:
    ``bias[o0 + o] + sum cols[(o*kh + ky)*kw + kx, ...]`` over the taps that reach ``(y, x)``.
    ``buf`` holds the columns (``ob * kh * kw`` rows of ``ncols``) from 0 and the accumulator (``sw``
    phase planes of ``ceil((y1 - y0) / sh)`` rows x ``iw``) from ``acc0``. ``iy_lo`` is the first input
    row held in the columns (0 for whole images).
    """
    plane = ih * iw
    zero = np.zeros(1, dtype=buf.dtype)[0]  # 0 in the data's dtype (a 0.0 literal is float64)
    src_of = np.empty(sw, dtype=np.int64)  # per x phase: where its (jy_a, 0) element is, row length iw
    xt_k = np.empty(kw, dtype=np.int64)  # the x taps of the current x phase: kx and its shift qx
    xt_q = np.empty(kw, dtype=np.int64)
    for i in range(m):
        img = i * plane  # column offset of image i (m == 1 for a band)
        for ol in range(ob):
            o = o0 + ol
            b = bias[o]
            cbase = ol * kh * kw * ncols + img - iy_lo * iw  # + tap row + iy * iw + ix
            obase = ((n0 + i) * c_out + o) * oh * ow
            for ry in range(sh):
                # this item's rows of phase ry: y = ry + sh * jy in [y0, y1)
                jy_a = max(0, (y0 - ry + sh - 1) // sh)
                jy_b = (y1 - ry + sh - 1) // sh
                if jy_b <= jy_a:
                    continue
                span = (jy_b - jy_a) * iw
                for rx in range(sw):
                    a_rx = acc0 + rx * span
                    src_of[rx] = a_rx
                    nx = min(iw, (ow - rx + sw - 1) // sw)  # phase columns kept in acc
                    if nx <= 0:
                        continue
                    # interior columns: every x-tap of the phase reads inside [0, iw)
                    jx_lo = 0
                    jx_hi = nx
                    for kx in range(kw):
                        tx = rx + left - kx * dw
                        qx = tx // sw
                        if tx - qx * sw == 0:
                            jx_lo = max(jx_lo, -qx)
                            jx_hi = min(jx_hi, iw - qx)
                    # One tap covering every row and column of the phase (kernel size == stride): the
                    # store reads the columns directly.
                    n_taps = 0
                    covers = True
                    one = 0
                    for ky in range(kh):
                        ty = ry + top - ky * dh
                        qy = ty // sh
                        if ty - qy * sh != 0 or max(jy_a, -qy) >= min(jy_b, ih - qy):
                            continue
                        for kx in range(kw):
                            tx = rx + left - kx * dw
                            qx = tx // sw
                            if tx - qx * sw == 0:
                                n_taps += 1
                                covers = -qy <= jy_a and jy_b <= ih - qy
                                one = cbase + (ky * kw + kx) * ncols + (jy_a + qy) * iw + qx
                    if n_taps == 1 and covers and jx_lo == 0 and jx_hi == nx:
                        src_of[rx] = one
                        continue
                    # the phase's x taps (kx, qx)
                    n_xt = 0
                    for kx in range(kw):
                        tx = rx + left - kx * dw
                        qx = tx // sw
                        if tx - qx * sw == 0:
                            xt_k[n_xt] = kx
                            xt_q[n_xt] = qx
                            n_xt += 1
                    first = True  # the first pass assigns (and zeroes the rest) instead of adding
                    for ky in range(kh):
                        ty = ry + top - ky * dh
                        qy = ty // sh
                        if ty - qy * sh != 0:
                            continue
                        js = max(jy_a, -qy)  # rows whose input row jy + qy exists
                        je = min(jy_b, ih - qy)
                        if je <= js:
                            continue
                        rows_lo = (js - jy_a) * iw
                        rows_hi = (je - jy_a) * iw
                        row0 = cbase + ky * kw * ncols + (jy_a + qy) * iw - a_rx
                        for t in range(0, n_xt, 3):
                            n = min(3, n_xt - t)
                            # acc[p] += sum of the taps' cols[src + p] over the rows js .. je, on the range
                            # where every tap of the pass reads its own rows (drops edge columns only)
                            p_lo = rows_lo
                            p_hi = rows_hi
                            for u in range(t, t + n):
                                p_lo = max(p_lo, rows_lo - xt_q[u])
                                p_hi = min(p_hi, rows_hi - xt_q[u])
                            s0 = row0 + xt_k[t] * ncols + xt_q[t]
                            s1 = row0 + xt_k[t + 1] * ncols + xt_q[t + 1] if n > 1 else s0
                            s2 = row0 + xt_k[t + 2] * ncols + xt_q[t + 2] if n > 2 else s0
                            lo = a_rx + min(p_lo, span)  # p_lo passes span when |qx| > the rows
                            hi = a_rx + p_hi  # p_hi <= span
                            if first:
                                first = False
                                for p in range(a_rx, lo):
                                    buf[np.uint64(p)] = 0.0
                                for p in range(max(lo, hi), a_rx + span):
                                    buf[np.uint64(p)] = 0.0
                                if n == 3:
                                    for p in range(lo, hi):
                                        buf[np.uint64(p)] = (buf[np.uint64(s0 + p)] + buf[np.uint64(s1 + p)]
                                                             + buf[np.uint64(s2 + p)])
                                elif n == 2:
                                    for p in range(lo, hi):
                                        buf[np.uint64(p)] = buf[np.uint64(s0 + p)] + buf[np.uint64(s1 + p)]
                                else:
                                    for p in range(lo, hi):
                                        buf[np.uint64(p)] = buf[np.uint64(s0 + p)]
                            elif n == 3:
                                for p in range(lo, hi):
                                    buf[np.uint64(p)] += (buf[np.uint64(s0 + p)] + buf[np.uint64(s1 + p)]
                                                          + buf[np.uint64(s2 + p)])
                            elif n == 2:
                                for p in range(lo, hi):
                                    buf[np.uint64(p)] += buf[np.uint64(s0 + p)] + buf[np.uint64(s1 + p)]
                            else:
                                for p in range(lo, hi):
                                    buf[np.uint64(p)] += buf[np.uint64(s0 + p)]
                    if first:  # no tap reaches this phase: bias only
                        for p in range(a_rx, a_rx + span):
                            buf[np.uint64(p)] = 0.0
                    # edge columns (some tap outside the row there): summed again column by column
                    for jx in range(nx):
                        if jx_lo <= jx < jx_hi:
                            continue
                        for r in range(jy_b - jy_a):
                            buf[np.uint64(a_rx + r * iw + jx)] = 0.0
                        for ky in range(kh):
                            ty = ry + top - ky * dh
                            qy = ty // sh
                            if ty - qy * sh != 0:
                                continue
                            js = max(jy_a, -qy)
                            je = min(jy_b, ih - qy)
                            for kx in range(kw):
                                tx = rx + left - kx * dw
                                qx = tx // sw
                                if tx - qx * sw != 0 or jx + qx < 0 or jx + qx >= iw:
                                    continue
                                src = cbase + (ky * kw + kx) * ncols + qy * iw + jx + qx
                                dst = a_rx + jx - jy_a * iw
                                for jy in range(js, je):
                                    buf[np.uint64(dst + jy * iw)] += buf[np.uint64(src + jy * iw)]
                # store the phase rows, interleaving the x phases
                nx0 = min(iw, (ow + sw - 1) // sw)
                nx1 = min(iw, (ow - 1 + sw - 1) // sw)
                for jy in range(jy_a, jy_b):
                    dst = obase + (ry + sh * jy) * ow
                    r = (jy - jy_a) * iw
                    if sw == 1:
                        s0 = src_of[0] + r
                        for jx in range(nx0):
                            out[np.uint64(dst + jx)] = buf[np.uint64(s0 + jx)] + b
                    elif sw == 2:
                        s0 = src_of[0] + r
                        s1 = src_of[1] + r
                        for jx in range(nx1):
                            out[np.uint64(dst + 2 * jx)] = buf[np.uint64(s0 + jx)] + b
                            out[np.uint64(dst + 2 * jx + 1)] = buf[np.uint64(s1 + jx)] + b
                        for jx in range(nx1, nx0):
                            out[np.uint64(dst + 2 * jx)] = buf[np.uint64(s0 + jx)] + b
                    else:
                        for rx in range(sw):
                            s0 = src_of[rx] + r
                            for jx in range(min(iw, (ow - rx + sw - 1) // sw)):
                                out[np.uint64(dst + rx + jx * sw)] = buf[np.uint64(s0 + jx)] + b
                    # phase columns past the input width (small strides, little padding): one by one
                    for rx in range(sw):
                        for jx in range(iw, (ow - rx + sw - 1) // sw):
                            out[np.uint64(dst + rx + jx * sw)] = _edge_sum(
                                zero, buf, cbase, ncols, ih, iw, jy, jx, ry, rx, kh, kw, sh, sw, dh, dw, top,
                                left) + b


PACK_TILE = 16  # the weight transpose goes tile by tile (16 x 16): 2.4x numpy's strided copy on T1's weight


@kernel
def pack_gemm_weights(w3, packed, channels, kk):
    """``packed[g, blk, r, c] = w3[g, c, blk * channels * kk + r]`` (0 past the last output channel).

    The GEMM's left operand per group and channel block: ``w3`` is the weight as (G, C_in/G, O/G * kh * kw)
    (C-contiguous), ``packed`` (G, n_blocks, rows, C_in/G) with ``rows >= channels * kk``; rows past a
    block's channels (row padding, the last block's missing channels) are zero. Serial.
    """
    groups, cg, width = w3.shape
    n_blocks, rows = packed.shape[1], packed.shape[2]
    for g in range(groups):
        for blk in range(n_blocks):
            r0 = blk * channels * kk
            n = min(channels * kk, width - r0)
            for rb in range(0, rows, PACK_TILE):
                for cb in range(0, cg, PACK_TILE):
                    for c in range(cb, min(cg, cb + PACK_TILE)):
                        for r in range(rb, min(rows, rb + PACK_TILE)):
                            packed[g, blk, r, c] = w3[g, c, r0 + r] if r < n else 0.0
