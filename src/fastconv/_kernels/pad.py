"""Zero padding copy: ``xp[n, c, top:top+H, left:left+W] = x[n, c]``, zeros elsewhere.

Parallel ownership: one ``prange`` iteration = one (n, c) plane of ``xp``.
"""

import numpy as np
from numba import prange

from .._jit import inline, kernel, parallel_kernel

PACK_TILE = 16  # taps per tile of pack_blocked's transpose


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
def fill_planes(x, planes, top, left, rows, row_len):
    """The direct kernel's padded planes (stride 1): ``planes[c, n * rows * row_len + i * row_len + j] =
    x[n, c, i - top, j - left]`` inside the input, zeros elsewhere, and zeros after the last image (the
    plane's tail).

    Contract: ``x`` (N, C, H, W) and ``planes`` (C, L) C-contiguous, same dtype, ``L >= N * rows *
    row_len``, ``top + H <= rows`` and ``left + W <= row_len``. Parallel ownership: one ``prange``
    iteration = one (c, n) image of a plane (the last image of a channel also writes its tail). Flat
    indices: views of the shared arrays would touch their reference counts from both threads.
    """
    n_batch, c_in, ih, iw = x.shape
    plane_len = planes.shape[1]
    xf = x.reshape(-1)
    pf = planes.reshape(-1)
    image = rows * row_len
    for task in prange(c_in * n_batch):
        c = task // n_batch
        n = task - c * n_batch
        dst = c * plane_len + n * image
        src = (n * c_in + c) * ih * iw
        # uint64 indices: no wrap-around checks for negative ones, which would block vectorisation
        _zero(pf, dst, dst + top * row_len)
        for sy in range(ih):
            d = dst + (top + sy) * row_len
            _zero(pf, d, d + left)
            s = src + sy * iw
            for j in range(iw):
                pf[np.uint64(d + left + j)] = xf[np.uint64(s + j)]
            _zero(pf, d + left + iw, d + row_len)
        _zero(pf, dst + (top + ih) * row_len, dst + image)
        if n == n_batch - 1:
            _zero(pf, dst + image, (c + 1) * plane_len)


@inline
def _zero(arr, lo, hi):
    """``arr[lo:hi] = 0`` (flat, in range)."""
    for i in range(lo, hi):
        arr[np.uint64(i)] = 0


@kernel
def pack_blocked(w, packed):
    """``packed[g, b, t, j] = w[g, b * B + j, t]`` where that exists, else 0: weights (G, O/G, K) in blocks
    of ``B`` output channels with the taps padded to ``T >= K`` (the direct kernel's operand).

    Contract: ``w`` (G, O/G, K) and ``packed`` (G, n_blocks, T, B) C-contiguous, same dtype, ``n_blocks * B
    >= O/G``. One thread: on L5's 2.4 MB two threads were no faster (0.43 vs 0.49 ms best, the second
    thread's wake-up included), and a parallel kernel costs 1.5 s more to compile (the cold start). The
    transpose runs in tiles of ``PACK_TILE`` taps (contiguous reads of each channel, all in L1): one tap
    at a time across the ``B`` channels had read ``B`` lines per tap (L5: 0.6-0.9 ms).
    """
    n_groups, o_per_group, k = w.shape
    n_blocks, n_taps, block = packed.shape[1], packed.shape[2], packed.shape[3]
    wf = w.reshape(-1)
    pf = packed.reshape(-1)
    for task in range(n_groups * n_blocks):
        g = task // n_blocks
        b = task - g * n_blocks
        dst = task * n_taps * block
        rows = min(block, o_per_group - b * block)
        src = (g * o_per_group + b * block) * k
        for t0 in range(0, k, PACK_TILE):
            t1 = min(k, t0 + PACK_TILE)
            for j in range(rows):
                s = src + j * k
                for t in range(t0, t1):
                    pf[np.uint64(dst + t * block + j)] = wf[np.uint64(s + t)]
            for t in range(t0, t1):
                for j in range(rows, block):
                    pf[np.uint64(dst + t * block + j)] = 0
        for i in range(dst + k * block, dst + n_taps * block):
            pf[np.uint64(i)] = 0
