"""Kernels for the convolution weight gradient (``conv2d_backward``, ``conv_transpose2d_backward``).

Index algebra (done once here). For conv2d with a padded input ``xp`` (N, C, Hp, Wp), output gradient
``g`` (N, O, OH, OW), ``cg = C / groups``, ``og = O / groups`` and ``o`` in group ``gr = o // og``::

    grad_weight[o, c, ky, kx] = sum_{n, oy, ox} g[n, o, oy, ox] * xp[n, gr*cg + c, oy*sh + ky*dh, ox*sw + kx*dw]

Two ways to evaluate it:

* GEMM (the wrapper, BLAS): ``fastconv._kernels.im2col.im2col_rows`` unfolds a batch chunk of ``xp`` into columns laid out
  ``col[(c * kh + ky) * kw + kx, i, oy * OW + ox] = xp[n0 + i, c, oy*sh + ky*dh, ox*sw + kx*dw]``, i.e. each
  (channel, tap) row holds all ``m * OH * OW`` positions of the chunk contiguously. Per group,
  ``grad_weight[gr] += g_chunk[gr] (og, m*OH*OW) @ col[gr].T (m*OH*OW, cg*kh*kw)``: the batch folds into the
  GEMM's inner dimension, so one large GEMM per group and chunk, no per-image reduction.
* Direct (:func:`grad_weight_direct`), for few channels per group (depthwise), where the GEMMs would be
  thin: each weight entry is one dot product over (n, oy, ox).

Parallel ownership: ``grad_weight_direct`` -> one iteration = one weight entry ``(o, c, ky, kx)``, summed serially in (n, oy, ox)
order. No iteration writes memory another touches; sums run in a fixed order: bit-identical results for any
thread count.

Contract (caller guarantees): arrays C-contiguous, writeable, one float dtype (float32 or float64);
``xp`` already padded so that every tap is inside; sizes and steps Python ints >= 1; ``col`` shaped
(C * kh * kw, m, OH * OW) with ``n0 + m <= N``.
"""

from numba import prange

from .._jit import parallel_kernel


@parallel_kernel
def grad_weight_direct(xp, g, gw, sh, sw, dh, dw, groups):
    """``gw[o, c, ky, kx] = sum_{n, oy, ox} g[n, o, oy, ox] * xp[n, gr*cg + c, oy*sh + ky*dh, ox*sw + kx*dw]``.

    ``gw`` (O, cg, kh, kw). Accumulates in float64, stores in ``gw``'s dtype.
    Ownership: iteration = one weight entry, summed in (n, oy, ox) order.
    """
    n_batch, c_out, oh, ow = g.shape
    _, cg, kh, kw = gw.shape
    og = c_out // groups
    for task in prange(c_out * cg * kh * kw):
        o = task // (cg * kh * kw)
        c = (task // (kh * kw)) % cg
        ky = (task // kw) % kh
        kx = task % kw
        ci = (o // og) * cg + c
        x0 = kx * dw
        acc = 0.0
        for n in range(n_batch):
            for oy in range(oh):
                grow = g[n, o, oy]
                xrow = xp[n, ci, oy * sh + ky * dh]
                for ox in range(ow):
                    acc += grow[ox] * xrow[x0 + ox * sw]
        gw[o, c, ky, kx] = acc
