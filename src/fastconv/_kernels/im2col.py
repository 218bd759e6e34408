"""im2col: unfold an NCHW input into GEMM columns (``conv2d(algo="im2col")`` and the conv gradients), in
two layouts:

* Bands (``im2col_band``): the columns of a *band* -- ``m`` images and ``rows`` output rows of each --
  laid out ``col[(c * kh + ky) * kw + kx, i, r * OW + ox] = xpad[n0 + i, c0 + c, (oy0 + r)*sh + ky*dh,
  ox*sw + kx*dw]``, zero padding written inline (no padded copy); a band is sized to stay in the cache
  for the GEMM that reads it right after, on the same worker thread (``fastconv.bands``).
* Batch-innermost (``to_batch_inner``, ``unfold_batch_inner``, ``from_batch_inner``), for tiny feature
  maps where an image row is a handful of values (forward and backward): arrays are transposed to
  ``(C, H, W, N)`` so that every copy loop runs over ``OW * N`` contiguous values (one row of all images
  at once) instead of ``OW``: ``colb[(c * kh + ky) * kw + kx, oy, ox * N + n] = xb[c, oy*sh + ky*dh,
  (ox*sw + kx*dw) * N + n]`` with ``xb`` the padded batch-innermost input. The GEMM then runs over
  ``OH * OW * N`` positions and ``from_batch_inner`` transposes its result back (bias added).

All kernels are serial: the band driver runs one band per call on its worker threads, and tiny
problems run on the calling thread. Indices are cast to ``np.uint64`` (numba then emits no
negative-index wrap-around check, which blocks vectorisation and made the band copy 5x slower); the
contracts guarantee every index is in range.
"""

import numpy as np

from .._jit import kernel
from .rows import padded_row


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


@kernel
def im2col_band(xf, x0, n_img, img_len, c_count, ih, iw, col, oy0, rows, ow, top, left, kh, kw, sh, sw, dh, dw):
    """Columns of one band, zero padding inline (layout in the module docstring).

    ``xf``: the input flattened; ``x0`` the flat index of ``x[n0, c0, 0, 0]``, ``img_len = C * H * W`` the
    distance between images; the band's ``c_count`` channels follow ``c0``. ``col``: flat, at least
    ``c_count * kh * kw * n_img * rows * ow`` long, written as ``(c_count * kh * kw, n_img, rows * ow)``.
    """
    band = rows * ow
    for c in range(c_count):
        for ky in range(kh):
            for kx in range(kw):
                r = (c * kh + ky) * kw + kx
                xoff = kx * dw - left
                # Output columns ox with 0 <= ox*sw + xoff < iw: [lo, hi).
                lo = min(ow, max(0, (sw - 1 - xoff) // sw))
                hi = max(lo, min(ow, (iw - 1 - xoff) // sw + 1))
                # Stride 1 with rows as long as the input's ("same"-like padding): the band's valid rows of
                # this tap are one contiguous run of the input, shifted by xoff; copy it in one loop (the
                # values that wrap across row ends land on padding columns) and zero those columns after.
                # ~2x faster than a loop per row on 28- or 14-wide maps (L4, L5).
                j0 = min(rows, max(0, top - ky * dh - oy0 * sh))
                j1 = max(j0, min(rows, ih + top - ky * dh - oy0 * sh))
                runs = sh == 1 and sw == 1 and iw == ow
                for i in range(n_img):
                    plane = x0 + i * img_len + c * ih * iw
                    dst_row = (r * n_img + i) * band
                    src = plane + (oy0 + j0 + ky * dh - top) * iw + xoff
                    if runs and j1 > j0 and src >= 0 and src + (j1 - j0) * ow <= xf.size:
                        for q in range(j0 * ow):
                            col[np.uint64(dst_row + q)] = 0.0
                        d = dst_row + j0 * ow
                        for q in range((j1 - j0) * ow):
                            col[np.uint64(d + q)] = xf[np.uint64(src + q)]
                        for j in range(j0, j1):
                            for ox in range(lo):
                                col[np.uint64(dst_row + j * ow + ox)] = 0.0
                            for ox in range(hi, ow):
                                col[np.uint64(dst_row + j * ow + ox)] = 0.0
                        for q in range(j1 * ow, band):
                            col[np.uint64(dst_row + q)] = 0.0
                        continue
                    for j in range(rows):
                        iy = (oy0 + j) * sh + ky * dh - top
                        if 0 <= iy < ih:
                            padded_row(col, dst_row + j * ow, ow, lo, hi, xf, plane + iy * iw + lo * sw + xoff, sw)
                        else:
                            padded_row(col, dst_row + j * ow, ow, 0, 0, xf, 0, 1)
