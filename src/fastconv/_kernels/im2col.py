"""im2col: unfold a padded NCHW input into GEMM columns (``conv2d(algo="im2col")`` and the conv weight
gradient), in two layouts:

* ``im2col``: ``col[i, (c * kh + ky) * kw + kx, oy * ow + ox] = xp[n0 + i, c, oy*sh + ky*dh, ox*sw + kx*dw]``
  -- image-major, so each image's (K, P) matrix is contiguous and its GEMM writes straight into the
  result (large maps).
* ``im2col_rows``: ``col[(c * kh + ky) * kw + kx, i, oy * ow + ox]`` -- each (channel, tap) row holds the
  positions of every image of the chunk back to back, so one GEMM per group covers the whole chunk
  (small maps, and the weight gradient, where the batch is the GEMM's inner dimension).
* Batch-innermost (``to_batch_inner``, ``unfold_batch_inner``, ``from_batch_inner``), for tiny feature
  maps where an image row is a handful of values (forward and backward): arrays are transposed to
  ``(C, H, W, N)`` so that every copy loop runs over ``OW * N`` contiguous values (one row of all images
  at once) instead of ``OW``: ``colb[(c * kh + ky) * kw + kx, oy, ox * N + n] = xb[c, oy*sh + ky*dh,
  (ox*sw + kx*dw) * N + n]`` with ``xb`` the padded batch-innermost input. The GEMM then runs over
  ``OH * OW * N`` positions and ``from_batch_inner`` transposes its result back (bias added).

Parallel ownership (both): one ``prange`` iteration = one (image, channel) plane of the input, which
writes the ``kh * kw`` rows ``(c, ky, kx)`` of that image; rows of different iterations are disjoint.
The batch-innermost kernels are serial (tiny problems run on the calling thread).

Indices in the batch-innermost kernels are cast to ``np.uint64`` (numba then emits no negative-index
wrap-around check, which blocks vectorisation); the contracts guarantee every index is in range.
"""

import numpy as np
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


@kernel
def to_batch_inner(src, dst, top, left):
    """``dst[c, top + y, left + x, n] = src[n, c, y, x]``, zeros elsewhere: the batch-innermost layout.

    ``src`` (N, C, H, W), ``dst`` (C, Hp, Wp, N) with ``top + H <= Hp`` and ``left + W <= Wp``. Reads run
    along image rows and writes stride by N within one channel's block (L1-resident); the other order
    would read with a stride of C * H * W values, which aliases in the L1 cache when that is a multiple
    of 4 KiB (3x slower on (32, 16, 8, 8)).
    """
    n_batch, c_in, ih, iw = src.shape
    hp, wp = dst.shape[1], dst.shape[2]
    sf = src.reshape(-1)
    df = dst.reshape(-1)
    for c in range(c_in):
        block = c * hp * wp * n_batch
        if top or left or hp > ih + top or wp > iw + left:
            for yy in range(hp):
                for xx in range(wp):
                    if not (top <= yy < top + ih and left <= xx < left + iw):
                        d = block + (yy * wp + xx) * n_batch
                        for n in range(n_batch):
                            df[np.uint64(d + n)] = 0.0
        if wp == iw:  # no column padding: each image's plane is one run
            d0 = block + top * wp * n_batch
            for n in range(n_batch):
                s = (n * c_in + c) * ih * iw
                for q in range(ih * iw):
                    df[np.uint64(d0 + n + q * n_batch)] = sf[np.uint64(s + q)]
        else:
            for n in range(n_batch):
                s = (n * c_in + c) * ih * iw
                for y in range(ih):
                    d = block + ((top + y) * wp + left) * n_batch + n
                    for x in range(iw):
                        df[np.uint64(d + x * n_batch)] = sf[np.uint64(s + y * iw + x)]


@kernel
def unfold_batch_inner(xb, colb, kh, kw, sh, sw, dh, dw):
    """``colb[(c * kh + ky) * kw + kx, oy, ox * N + n] = xb[c, oy*sh + ky*dh, ox*sw + kx*dw, n]``.

    ``xb`` (C, Hp, Wp, N) already padded so every tap is inside; ``colb`` (C * kh * kw, OH, OW * N).
    With ``sw == 1`` each (row, tap) is one contiguous run of ``OW * N`` values.
    """
    c_in, hp, wp, n_batch = xb.shape
    oh = colb.shape[1]
    run = colb.shape[2]
    ow = run // n_batch
    xf = xb.reshape(-1)
    cf = colb.reshape(-1)
    for c in range(c_in):
        for ky in range(kh):
            for kx in range(kw):
                r = (c * kh + ky) * kw + kx
                for oy in range(oh):
                    d = (r * oh + oy) * run
                    s = ((c * hp + oy * sh + ky * dh) * wp + kx * dw) * n_batch
                    if sw == 1:
                        for q in range(run):
                            cf[np.uint64(d + q)] = xf[np.uint64(s + q)]
                    else:
                        for ox in range(ow):
                            so = s + ox * sw * n_batch
                            do = d + ox * n_batch
                            for n in range(n_batch):
                                cf[np.uint64(do + n)] = xf[np.uint64(so + n)]


@kernel
def from_batch_inner(src, bias, out):
    """``out[n, o, q] = src[o, q, n] + bias[o]``: a batch-innermost GEMM result back to NCHW.

    ``src`` (O, OH * OW, N), ``bias`` (O,), ``out`` (N, O, OH * OW), one dtype.
    """
    c_out, positions, n_batch = src.shape
    for n in range(n_batch):
        for o in range(c_out):
            b = bias[o]
            dst = out[n, o]
            plane = src[o]
            for q in range(positions):
                dst[q] = plane[q, n] + b
