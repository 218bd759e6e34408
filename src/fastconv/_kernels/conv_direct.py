"""Direct convolution over a "tap list": the kernel behind ``conv2d(algo="direct")``.

Index algebra (done once, in ``fastconv.conv_layout``, not here). The padded input is rearranged into
*planes*: for stride ``(sh, sw)`` plane ``(c, a, b)`` holds ``xp[:, c, a::sh, b::sw]`` (space-to-depth;
with stride 1 a plane is simply channel ``c``). A plane stores every image back to back, each as
``rows x row_len`` values, so image ``n``, row ``i``, column ``j`` sits at ``n * plane_len + i * row_len + j``
(``plane_len = rows * row_len``). A tap ``(c, ky, kx)`` reads plane ``(c, (ky*dh) % sh, (kx*dw) % sw)`` at
flat offset ``((ky*dh) // sh) * row_len + (kx*dw) // sw``, and output ``(n, oy, ox)`` is the *virtual
position* ``p = n * plane_len + oy * row_len + ox``. So for every tap::

    out[o, p] += w[o, tap] * planes[plane(tap), p + offset(tap)]

a unit-stride, branch-free loop over ``p`` that LLVM vectorises, and that runs across image borders,
so small feature maps still give long loops. Virtual positions outside the output (``ox >= OW`` or
``oy >= OH``) are computed and discarded. Accumulators for 8 output channels x ``TILE`` positions live
in a per-iteration buffer (L1/L2-resident); each input vector loaded feeds 4 output channels and 3 taps.

Parallel ownership: one ``prange`` iteration = (group, tile of positions, block of output channels),
the block varying fastest so that the two threads work on the same input tile at the same time. It
writes only those output elements and sums taps in a fixed order: bit-identical results for every
thread count.
"""

import numpy as np
from numba import prange

from .._jit import kernel, parallel_kernel
from .tap_accumulate import accumulate_taps_1, accumulate_taps_4

OB = 8  # output channels per register block (two halves of 4)
TILE = 512  # virtual positions per work item: 8 x 512 accumulators = 16 KiB (float32)


@kernel
def _store_tile(acc, out, bias, o_first, n_rows, p0, plen, row_len, rows):
    """Write accumulator rows to ``out[n, o_first + j, oy, ox]`` for the valid positions of the tile."""
    oh, ow = out.shape[2], out.shape[3]
    p_end = p0 + plen
    for j in range(n_rows):
        o = o_first + j
        b = bias[o]
        src = acc[j]
        grow = p0 // row_len  # global row index over all images
        while grow * row_len < p_end:
            n = grow // rows
            oy = grow - n * rows
            if oy < oh:
                q = grow * row_len
                x_lo = max(p0 - q, 0)
                x_hi = min(ow, p_end - q)
                dst = out[n, o, oy]
                for ox in range(x_lo, x_hi):
                    dst[ox] = src[q + ox - p0] + b
            grow += 1


@parallel_kernel(fastmath={"contract"})
def conv_taps_ob8(planes, tap_plane, tap_off, wpk, bias, out, row_len, rows):
    """Direct convolution, 8 output channels per work item.

    Contract (caller guarantees):
    - ``planes``: (G * planes_per_group, N * rows * row_len), C-contiguous, one float dtype, every read
      ``p + tap_off[t]`` for ``p < (N - 1) * rows * row_len + OH * row_len`` inside the array.
    - ``tap_plane``, ``tap_off``: int64 (T,), T a multiple of 3 (padding taps have zero weight);
      ``tap_plane`` is relative to the group's first plane.
    - ``wpk``: (G, n_blocks, T, 8) packed weights, zero for channels beyond O / G.
    - ``bias``: (O,) (zeros when the user gave none); ``out``: (N, O, OH, OW), OW <= row_len, OH <= rows.
    """
    n_groups, n_blocks, n_taps, _ = wpk.shape
    planes_per_group = planes.shape[0] // n_groups
    n_batch, c_out, oh = out.shape[0], out.shape[1], out.shape[2]
    o_per_group = c_out // n_groups
    npos = (n_batch - 1) * rows * row_len + oh * row_len
    n_tiles = (npos + TILE - 1) // TILE
    for item in prange(n_groups * n_tiles * n_blocks):
        blk = item % n_blocks
        rest = item // n_blocks
        tile = rest % n_tiles
        g = rest // n_tiles
        p0 = tile * TILE
        plen = min(TILE, npos - p0)
        acc = np.zeros((OB, TILE), dtype=out.dtype)
        w_blk = wpk[g, blk]
        first_plane = g * planes_per_group
        for half in range(2):
            accumulate_taps_4(acc, 4 * half, planes, first_plane, tap_plane, tap_off, 0, n_taps, p0, w_blk,
                              plen)
        _store_tile(acc, out, bias, g * o_per_group + blk * OB, min(OB, o_per_group - blk * OB),
                    p0, plen, row_len, rows)


@parallel_kernel(fastmath={"contract"})
def conv_taps_ob1(planes, tap_plane, tap_off, wpk, bias, out, row_len, rows):
    """Direct convolution, one output channel per work item (depthwise and few channels per group).

    Same contract as :func:`conv_taps_ob8` with ``wpk`` shaped (G, O / G, T, 1).
    """
    n_groups, o_per_group, n_taps, _ = wpk.shape
    planes_per_group = planes.shape[0] // n_groups
    n_batch, oh = out.shape[0], out.shape[2]
    npos = (n_batch - 1) * rows * row_len + oh * row_len
    n_tiles = (npos + TILE - 1) // TILE
    for item in prange(n_groups * n_tiles * o_per_group):
        j = item % o_per_group
        rest = item // o_per_group
        tile = rest % n_tiles
        g = rest // n_tiles
        p0 = tile * TILE
        plen = min(TILE, npos - p0)
        acc = np.zeros((1, TILE), dtype=out.dtype)
        accumulate_taps_1(acc, planes, g * planes_per_group, tap_plane, tap_off, 0, n_taps, p0, wpk[g, j], plen)
        _store_tile(acc, out, bias, g * o_per_group + j, acc.shape[0], p0, plen, row_len, rows)
