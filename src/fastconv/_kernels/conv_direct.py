"""Direct convolution over a "tap list": the kernel behind ``conv2d(algo="direct")``.

Index algebra (done once, in ``fastconv.conv``, not here). The padded input is rearranged into
*planes*: for stride ``(sh, sw)`` plane ``(c, a, b)`` holds ``xp[c, a::sh, b::sw]`` (space-to-depth;
with stride 1 a plane is simply channel ``c``). Each plane is stored flat with row length ``row_len``.
A kernel tap ``(c, ky, kx)`` then reads plane ``(c, (ky*dh) % sh, (kx*dw) % sw)`` at flat offset
``((ky*dh) // sh) * row_len + (kx*dw) // sw``, and output ``(oy, ox)`` is the *virtual position*
``p = oy * row_len + ox``. So for every tap::

    out[n, o, p] += w[o, tap] * planes[n, plane(tap), p + offset(tap)]

a unit-stride, branch-free loop over ``p`` that LLVM vectorises. Virtual positions with
``ox >= OW`` are computed and discarded (the waste is ``(row_len - OW) / row_len``).
Accumulators for ``OB`` output channels x ``TILE`` positions live in a small per-iteration buffer
(L1-resident); each input vector loaded is used for 4 output channels and 3 taps at once.

Parallel ownership: one ``prange`` iteration = (image, group, block of output channels, tile of
positions); it writes only those output elements, and sums taps in a fixed order, so the result is
bit-identical for every thread count.
"""

import numpy as np
from numba import prange

from .._jit import kernel, parallel_kernel

OB = 8  # output channels per register block (two halves of 4)
TILE = 256  # virtual positions per work item: 8 x 256 accumulators = 8 KiB (float32)


@kernel
def _store_tile(acc, out, bias, n, o_first, n_rows, p0, plen, row_len):
    """Write accumulator rows to ``out[n, o_first + j]`` for valid virtual positions, adding bias."""
    ow = out.shape[3]
    p_end = p0 + plen
    for j in range(n_rows):
        o = o_first + j
        b = bias[o]
        src = acc[j]
        dst = out[n, o]
        oy = p0 // row_len
        q = oy * row_len  # virtual position of (oy, 0)
        while q < p_end:
            x_lo = max(p0 - q, 0)
            x_hi = min(ow, p_end - q)
            row = dst[oy]
            for ox in range(x_lo, x_hi):
                row[ox] = src[q + ox - p0] + b
            oy += 1
            q += row_len


@parallel_kernel(fastmath={"contract"})
def conv_taps_ob8(planes, tap_plane, tap_off, wpk, bias, out, row_len):
    """Direct convolution, 8 output channels per work item.

    Contract (caller guarantees):
    - ``planes``: (N, G * planes_per_group, plane_len), C-contiguous, one float dtype; every read
      ``p + tap_off[t]`` for ``p < OH * row_len`` lies inside ``plane_len``.
    - ``tap_plane``, ``tap_off``: int64 (T,), T a multiple of 3 (padding taps have zero weight);
      ``tap_plane`` is relative to the group's first plane.
    - ``wpk``: (G, n_blocks, T, 8) packed weights, zero for channels beyond O / G.
    - ``bias``: (O,) (zeros when the user gave none); ``out``: (N, O, OH, OW), OW <= row_len.
    """
    n_batch = planes.shape[0]
    n_groups, n_blocks, n_taps, _ = wpk.shape
    planes_per_group = planes.shape[1] // n_groups
    c_out, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    o_per_group = c_out // n_groups
    npos = oh * row_len
    n_tiles = (npos + TILE - 1) // TILE
    items = n_batch * n_groups * n_blocks * n_tiles
    for item in prange(items):
        tile = item % n_tiles
        rest = item // n_tiles
        blk = rest % n_blocks
        rest = rest // n_blocks
        g = rest % n_groups
        n = rest // n_groups
        p0 = tile * TILE
        plen = min(TILE, npos - p0)
        acc = np.zeros((OB, TILE), dtype=out.dtype)
        w_blk = wpk[g, blk]
        first_plane = g * planes_per_group
        for half in range(2):
            j0 = 4 * half
            a0 = acc[j0]
            a1 = acc[j0 + 1]
            a2 = acc[j0 + 2]
            a3 = acc[j0 + 3]
            for t in range(0, n_taps, 3):
                xs0 = planes[n, first_plane + tap_plane[t], p0 + tap_off[t]:]
                xs1 = planes[n, first_plane + tap_plane[t + 1], p0 + tap_off[t + 1]:]
                xs2 = planes[n, first_plane + tap_plane[t + 2], p0 + tap_off[t + 2]:]
                w0 = w_blk[t]
                w1 = w_blk[t + 1]
                w2 = w_blk[t + 2]
                w00, w01, w02, w03 = w0[j0], w0[j0 + 1], w0[j0 + 2], w0[j0 + 3]
                w10, w11, w12, w13 = w1[j0], w1[j0 + 1], w1[j0 + 2], w1[j0 + 3]
                w20, w21, w22, w23 = w2[j0], w2[j0 + 1], w2[j0 + 2], w2[j0 + 3]
                for p in range(plen):
                    v0 = xs0[p]
                    v1 = xs1[p]
                    v2 = xs2[p]
                    a0[p] += w00 * v0 + w10 * v1 + w20 * v2
                    a1[p] += w01 * v0 + w11 * v1 + w21 * v2
                    a2[p] += w02 * v0 + w12 * v1 + w22 * v2
                    a3[p] += w03 * v0 + w13 * v1 + w23 * v2
        _store_tile(acc, out, bias, n, g * o_per_group + blk * OB,
                    min(OB, o_per_group - blk * OB), p0, plen, row_len)


@parallel_kernel(fastmath={"contract"})
def conv_taps_ob1(planes, tap_plane, tap_off, wpk, bias, out, row_len):
    """Direct convolution, one output channel per work item (depthwise and few channels per group).

    Same contract as :func:`conv_taps_ob8` with ``wpk`` shaped (G, O / G, T, 1).
    """
    n_batch = planes.shape[0]
    n_groups, o_per_group, n_taps, _ = wpk.shape
    planes_per_group = planes.shape[1] // n_groups
    oh = out.shape[2]
    npos = oh * row_len
    n_tiles = (npos + TILE - 1) // TILE
    items = n_batch * n_groups * o_per_group * n_tiles
    for item in prange(items):
        tile = item % n_tiles
        rest = item // n_tiles
        j = rest % o_per_group
        rest = rest // o_per_group
        g = rest % n_groups
        n = rest // n_groups
        p0 = tile * TILE
        plen = min(TILE, npos - p0)
        acc = np.zeros((1, TILE), dtype=out.dtype)
        a0 = acc[0]
        w_o = wpk[g, j]
        first_plane = g * planes_per_group
        for t in range(0, n_taps, 3):
            xs0 = planes[n, first_plane + tap_plane[t], p0 + tap_off[t]:]
            xs1 = planes[n, first_plane + tap_plane[t + 1], p0 + tap_off[t + 1]:]
            xs2 = planes[n, first_plane + tap_plane[t + 2], p0 + tap_off[t + 2]:]
            w0 = w_o[t, 0]
            w1 = w_o[t + 1, 0]
            w2 = w_o[t + 2, 0]
            for p in range(plen):
                a0[p] += w0 * xs0[p] + w1 * xs1[p] + w2 * xs2[p]
        _store_tile(acc, out, bias, n, g * o_per_group + j, acc.shape[0], p0, plen, row_len)
