"""im2col: unfold a padded NCHW input into GEMM columns (``conv2d(algo="im2col")`` and the conv weight
gradient), in two layouts:

* ``im2col``: ``col[i, (c * kh + ky) * kw + kx, oy * ow + ox] = xp[n0 + i, c, oy*sh + ky*dh, ox*sw + kx*dw]``
  -- image-major, so each image's (K, P) matrix is contiguous and its GEMM writes straight into the
  result (large maps).
* ``im2col_rows``: ``col[(c * kh + ky) * kw + kx, i, oy * ow + ox]`` -- each (channel, tap) row holds the
  positions of every image of the chunk back to back, so one GEMM per group covers the whole chunk
  (small maps, and the weight gradient, where the batch is the GEMM's inner dimension).

Parallel ownership (both): one ``prange`` iteration = one (image, channel) plane of the input, which
writes the ``kh * kw`` rows ``(c, ky, kx)`` of that image; rows of different iterations are disjoint.
"""

from numba import prange

from .._jit import kernel, parallel_kernel


@kernel
def _unfold_plane(src, dst, kh, kw, sh, sw, dh, dw, oh, ow):
    """``dst[ky * kw + kx, oy * ow + ox] = src[oy*sh + ky*dh, ox*sw + kx*dw]`` for one (image, channel)."""
    for ky in range(kh):
        for kx in range(kw):
            row_out = dst[ky * kw + kx]
            x0 = kx * dw
            for oy in range(oh):
                row = src[oy * sh + ky * dh]
                base = oy * ow
                if sw == 1:
                    for ox in range(ow):
                        row_out[base + ox] = row[x0 + ox]
                else:
                    for ox in range(ow):
                        row_out[base + ox] = row[x0 + ox * sw]


@parallel_kernel
def im2col(xp, col, n0, kh, kw, sh, sw, dh, dw, oh, ow):
    """Fill ``col`` (nb, C * kh * kw, oh * ow) from images ``n0 .. n0 + nb`` of ``xp``.

    Contract: ``xp`` (N, C, Hp, Wp) already padded so every window is inside; ``col`` C-contiguous,
    same dtype as ``xp``; ``n0 + nb <= N``.
    """
    nb = col.shape[0]
    c_in = xp.shape[1]
    taps = kh * kw
    for task in prange(nb * c_in):
        i = task // c_in
        c = task - i * c_in
        _unfold_plane(xp[n0 + i, c], col[i, c * taps:(c + 1) * taps], kh, kw, sh, sw, dh, dw, oh, ow)


@parallel_kernel
def im2col_rows(xp, col, n0, kh, kw, sh, sw, dh, dw, oh, ow):
    """Fill ``col`` (C * kh * kw, nb, oh * ow) from images ``n0 .. n0 + nb`` of ``xp``; same contract."""
    nb = col.shape[1]
    c_in = xp.shape[1]
    taps = kh * kw
    for task in prange(nb * c_in):
        i = task // c_in
        c = task - i * c_in
        _unfold_plane(xp[n0 + i, c], col[c * taps:(c + 1) * taps, i], kh, kw, sh, sw, dh, dw, oh, ow)
