"""im2col: unfold a padded NCHW input into GEMM columns, for ``conv2d(algo="im2col")``.

``col[i, (c * kh + ky) * kw + kx, oy * ow + ox] = xp[n0 + i, c, oy*sh + ky*dh, ox*sw + kx*dw]``

The wrapper then computes ``out[n] = weight.reshape(O, C * kh * kw) @ col[i]`` per group with BLAS.

Parallel ownership: one ``prange`` iteration = one row ``(i, c, ky, kx)`` of ``col``; rows are disjoint.
"""

from numba import prange

from .._jit import parallel_kernel


@parallel_kernel
def im2col(xp, col, n0, kh, kw, sh, sw, dh, dw, oh, ow):
    """Fill ``col`` (nb, C * kh * kw, oh * ow) from images ``n0 .. n0 + nb`` of ``xp``.

    Contract: ``xp`` (N, C, Hp, Wp) already padded so every window is inside; ``col`` C-contiguous,
    same dtype as ``xp``; ``n0 + nb <= N``.
    """
    nb, rows, _ = col.shape
    for r in prange(nb * rows):
        i = r // rows
        k = r % rows
        c = k // (kh * kw)
        ky = (k // kw) % kh
        kx = k % kw
        src = xp[n0 + i, c]
        dst = col[i, k]
        for oy in range(oh):
            row = src[oy * sh + ky * dh]
            base = oy * ow
            x0 = kx * dw
            if sw == 1:
                for ox in range(ow):
                    dst[base + ox] = row[x0 + ox]
            else:
                for ox in range(ow):
                    dst[base + ox] = row[x0 + ox * sw]
