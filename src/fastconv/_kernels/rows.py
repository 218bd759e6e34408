"""The row copy shared by the unfolding kernels (``im2col_band``, the row-block kernels' local buffers):
a strided run of an input row into a row whose cells outside the run are zero padding.

numba's on-disk cache does not track this module: after editing it, touch ``im2col.py`` and
``conv_direct_local.py`` (and through it the row-block kernels) so their cached code is rebuilt."""

import numpy as np

from .._jit import inline  # compiled with the caller, never alone


@inline
def padded_row(dst, d0, length, lo, hi, src, s0, step):
    """``dst[d0 + j] = src[s0 + (j - lo) * step]`` for ``lo <= j < hi`` and zero for the other ``j <
    length``. Flat arrays; indices cast to ``np.uint64`` (no wrap-around check, which blocks
    vectorisation), the caller guarantees them in range."""
    for j in range(lo):
        dst[np.uint64(d0 + j)] = 0.0
    if step == 1:
        for j in range(hi - lo):
            dst[np.uint64(d0 + lo + j)] = src[np.uint64(s0 + j)]
    else:
        for j in range(hi - lo):
            dst[np.uint64(d0 + lo + j)] = src[np.uint64(s0 + j * step)]
    for j in range(hi, length):
        dst[np.uint64(d0 + j)] = 0.0
