"""Zero padding copy: ``xp[n, c, top:top+H, left:left+W] = x[n, c]``, zeros elsewhere.

Parallel ownership: one ``prange`` iteration = one (n, c) plane of ``xp``.
"""

from numba import prange

from .._jit import parallel_kernel


@parallel_kernel
def pad_zeros_into(x, xp, top, left):
    """Fill ``xp`` (N, C, Hp, Wp) with ``x`` (N, C, H, W) placed at (top, left) and zeros around it.

    Contract: both C-contiguous, same dtype; ``top + H <= Hp`` and ``left + W <= Wp``.
    """
    n_batch, c_in, ih, iw = x.shape
    hp, wp = xp.shape[2], xp.shape[3]
    for plane in prange(n_batch * c_in):
        n = plane // c_in
        c = plane % c_in
        src = x[n, c]
        dst = xp[n, c]
        for iy in range(hp):
            row = dst[iy]
            sy = iy - top
            if sy < 0 or sy >= ih:
                for ix in range(wp):
                    row[ix] = 0
            else:
                srow = src[sy]
                for ix in range(left):
                    row[ix] = 0
                for ix in range(iw):
                    row[left + ix] = srow[ix]
                for ix in range(left + iw, wp):
                    row[ix] = 0


@parallel_kernel
def pad_space_to_depth(x, planes, top, left):
    """Zero-pad ``x`` by (top, left) and split it into stride phases in one pass.

    ``planes[c, a, b, n, i, j] = xpad[n, c, i * sh + a, j * sw + b]`` where ``xpad`` is ``x`` shifted by
    (top, left) with zeros outside it, and ``(sh, sw) = planes.shape[1:3]``: channel-major, every image
    of a phase back to back (the direct conv kernel's layout). With stride 1 this is a zero-padding
    copy into a buffer that may be larger than the padded input.

    Contract: ``x`` (N, C, H, W) and ``planes`` (C, sh, sw, N, rows, row_len) C-contiguous, same dtype.
    Parallel ownership: one ``prange`` iteration = one (n, c) block of ``planes``.
    """
    n_batch, c_in, ih, iw = x.shape
    sh, sw, rows, row_len = planes.shape[1], planes.shape[2], planes.shape[4], planes.shape[5]
    for plane in prange(n_batch * c_in):
        n = plane // c_in
        c = plane % c_in
        src = x[n, c]
        for a in range(sh):
            for b in range(sw):
                dst = planes[c, a, b, n]
                # Columns j whose source column j * sw + b - left lies inside [0, iw).
                j_lo = min(max(0, (left - b + sw - 1) // sw), row_len)
                j_hi = min(max(j_lo, (iw + left - b + sw - 1) // sw), row_len)
                for i in range(rows):
                    row = dst[i]
                    sy = i * sh + a - top
                    if sy < 0 or sy >= ih:
                        for j in range(row_len):
                            row[j] = 0
                    else:
                        srow = src[sy]
                        for j in range(j_lo):
                            row[j] = 0
                        x0 = j_lo * sw + b - left
                        if sw == 1:
                            for j in range(j_lo, j_hi):
                                row[j] = srow[x0 + j - j_lo]
                        else:
                            for j in range(j_lo, j_hi):
                                row[j] = srow[x0 + (j - j_lo) * sw]
                        for j in range(j_hi, row_len):
                            row[j] = 0
