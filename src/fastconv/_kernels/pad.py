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
