"""conv2d's weight gradient with the direct convolution's register-blocked micro-kernel.

``grad_w[o, j] = sum_p grad_out[o, p] * x_tap(j, p)`` over the output positions ``p = (n, oy, ox)``, for
the weight taps ``j = (c, ky, kx)`` of a group. With the input in the direct kernel's planes (channel
``c`` from ``c * plane_stride``, image ``n`` from ``n * image_stride``, rows of ``row_len``;
``fastconv.conv.direct_input``), ``x_tap(j, p) = xf[pix(j) + start(p)]`` with
``pix(j) = group_base + c * plane_stride + ky * dh * row_len + kx * dw`` and
``start(p) = n * image_stride + oy * sh * row_len + ox * sw``. That is the forward's sum with the roles
exchanged: the micro-kernel's *positions* are weight taps (``NP`` of them per micro-tile, each read
through ``pix``), its *taps* are the output positions (the reduction, in order), and its *weights*
are ``grad_out`` packed in blocks of ``B`` output channels: ``gpk[g, b, p, i] = grad_out[n, g * og + b * B
+ i, oy, ox]``. The finished sums go straight from the registers into ``grad_w`` (viewed ``(O,
taps per group)``: the ``NP`` taps of a micro-tile are contiguous in a row), as in the forward.

Parallel ownership: a work item = (group, tile of weight taps, block of output channels): it writes
only those elements of ``grad_w`` and sums every element over all positions in order (in chunks,
partial sums waiting in the item's buffer), so results are bit-identical for any thread count; items
are claimed dynamically (:mod:`.claim`).
"""

import numpy as np
from numba import prange

from .._jit import inline, parallel_kernel
from .claim import next_item, range_counters
from .conv_direct import MICRO_TILES_PER_ITEM, NP, split_item, tap_microkernel


@parallel_kernel
def grad_weight_blocked(xf, plane_stride, planes_per_group, row_len, starts, gpk, gw, kh, kw, dh, dw, chunk,
                        workers):
    """Weight gradient ``gw`` (O, C/G * kh * kw), flat rows, from the planes ``xf`` and packed ``gpk``.

    Contract (caller guarantees): ``xf`` 1-D, the direct kernel's input operand (every read
    ``pix(j) + starts[t]`` inside it); ``starts`` int64 (P,), the output positions' offsets;
    ``gpk`` (G, n_blocks, P, B), zeros for channels beyond O / G; ``gw`` (O, planes_per_group * kh *
    kw) C-contiguous; one float dtype; ``chunk`` >= 1 positions per pass; ``workers`` the thread count.
    """
    n_groups, n_blocks, n_pos, block = gpk.shape
    n_taps = gw.shape[1]
    tile = NP * MICRO_TILES_PER_ITEM
    n_tiles = (n_taps + tile - 1) // tile
    n_items = n_groups * n_tiles * n_blocks
    bias = np.zeros(block, dtype=gw.dtype)  # the micro-kernel's store adds a bias
    counters = range_counters(n_items, workers)
    for worker in prange(workers):
        pix = np.empty(tile, dtype=np.int64)
        acc = np.empty((tile, block), dtype=gw.dtype)
        item, used = next_item(counters, worker, 0, workers, n_items)
        while item >= 0:
            _grad_weight_item(xf, plane_stride, planes_per_group, row_len, starts, gpk, gw, kh, kw, dh, dw, chunk,
                              item, pix, acc, bias)
            item, used = next_item(counters, worker, used, workers, n_items)


@inline
def _grad_weight_item(xf, plane_stride, planes_per_group, row_len, starts, gpk, gw, kh, kw, dh, dw, chunk, item,
                      pix, acc, bias):
    """Work item ``item`` of :func:`grad_weight_blocked` (block fastest, then tap tile, then group)."""
    n_groups, n_blocks, n_pos, block = gpk.shape
    o_per_group = gw.shape[0] // n_groups
    n_taps = gw.shape[1]
    tile = NP * MICRO_TILES_PER_ITEM
    n_tiles = (n_taps + tile - 1) // tile
    g, j0, blk = split_item(item, n_blocks, n_tiles, tile)
    j_end = min(j0 + tile, n_taps)
    n_micro = (j_end - j0 + NP - 1) // NP
    taps_per_plane = kh * kw
    base = g * planes_per_group * plane_stride
    for k in range(tile):
        j = min(j0 + k, j_end - 1)  # the last micro-tile repeats the last tap
        c = j // taps_per_plane
        r = j - c * taps_per_plane
        ky = r // kw
        pix[k] = base + c * plane_stride + ky * dh * row_len + (r - ky * kw) * dw
    wf = gpk[g, blk].reshape(-1)
    gwf = gw.reshape(-1)
    af = acc.reshape(-1)
    o_first = g * o_per_group + blk * block
    n_rows = min(block, o_per_group - blk * block)
    for t0 in range(0, n_pos, chunk):
        t1 = min(n_pos, t0 + chunk)
        last = t1 == n_pos
        for k in range(n_micro):
            j = j0 + k * NP
            o_base = -1
            if last and j + NP <= j_end:
                o_base = o_first * n_taps + j
            tap_microkernel(xf, starts, t0, t1, pix, k * NP, wf, af, k * NP * block, t0 > 0, gwf, o_base, n_taps,
                            bias, 0, n_rows)
            if last and o_base < 0:
                for jj in range(j, j_end):
                    for i in range(n_rows):
                        gwf[np.uint64((o_first + i) * n_taps + jj)] = af[np.uint64((jj - j0) * block + i)]


@parallel_kernel
def pack_positions(grad, gpk):
    """``gpk[g, b, n * S + s, i] = grad[n, g * og + b * B + i, s]`` where that channel exists, else 0:
    ``grad_out`` (N, O, S) in blocks of ``B`` output channels, positions in (n, s) order (the operand of
    :func:`grad_weight_blocked`). One pass, no transposing copy of ``grad_out`` first.

    Contract: ``grad`` (N, O, S) and ``gpk`` (G, n_blocks, N * S, B) C-contiguous, same dtype,
    ``n_blocks * B >= O / G``. Parallel ownership: one ``prange`` iteration = one (g, b, n) run of ``gpk``.
    """
    n_batch, c_out, n_pos = grad.shape
    n_groups, n_blocks, _, block = gpk.shape
    o_per_group = c_out // n_groups
    gf = grad.reshape(-1)
    pf = gpk.reshape(-1)
    for task in prange(n_groups * n_blocks * n_batch):
        n = task % n_batch
        gb = task // n_batch  # g * n_blocks + b
        b = gb % n_blocks
        o0 = (gb // n_blocks) * o_per_group + b * block
        rows = min(block, o_per_group - b * block)
        dst = (gb * n_batch + n) * n_pos * block
        src = (n * c_out + o0) * n_pos
        # Position-major: contiguous writes, the reads ``rows`` streams ``n_pos`` apart.
        for s in range(n_pos):
            d = dst + s * block
            for i in range(rows):
                pf[np.uint64(d + i)] = gf[np.uint64(src + i * n_pos + s)]
            for i in range(rows, block):
                pf[np.uint64(d + i)] = 0
