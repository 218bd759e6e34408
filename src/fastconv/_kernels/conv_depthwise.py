"""Depthwise convolution (``groups == C``, any channel multiplier): ``conv2d(algo="depthwise")``.

Computes ``out[n, o, oy, ox] = bias[o] + sum_{c, ky, kx} w[o, c, ky, kx] *
xpad[n, g * C/G + c, oy * sh + ky * dh, ox * sw + kx * dw]`` with ``g = o // (O / G)``, one output
channel at a time, so it suits groups with one input channel (depthwise) but is correct for any
grouping.

A work item is (image, group, block of output rows), or several images for small maps: it copies
the rows it needs into a local zero-padded, phase-split buffer (``conv_direct_local.load_item``: no
padded copy of the whole input), then for each output channel of the group runs the taps nine at a
time as unit-stride loops over the block's local positions. All passes but the last accumulate into a
local row-block buffer (bias folded into the first); the last pass writes the output rows, so each
output element is stored once. For a 3x3 filter there is a single pass: ``out = bias + 9 products``,
read from L1.

Memory traffic per call is one read of the input and one write of the output; everything else is
L1/L2-resident.

Parallel ownership: ``n_chunks`` fixed chunks of consecutive work items (each chunk
allocates its buffers once); an item writes only its rows of its group's output channels. Every output
is computed by the same sequence of operations whatever the chunking or thread count, so results are
bit-identical for any number of threads. The chunks are claimed dynamically (:mod:`.claim`, ``workers``
= the thread count): on a shared machine a thread that loses its core no longer holds back the call.
"""

import numpy as np
from numba import prange

from .._jit import parallel_kernel
from .claim import next_item, range_counters
from .conv_direct_local import (TAP_GROUP, VECTOR_BYTES, dot9, item_counts, load9, load_item, tap_starts,
                                weights9)


@parallel_kernel(fastmath={"contract"})
def conv_depthwise(x, wpk, bias, out, tap_plane, tap_off, sh, sw, top, left, row_len, rows_per_item, img_rows,
                   images_per_item, n_chunks, workers):
    """Row-block direct convolution, one output channel per pass.

    Contract (caller guarantees):
    - ``x``: (N, C, H, W), C-contiguous, unpadded (``top``, ``left`` >= 0 are the zero padding before
      the first row / column; the padding after is implied by the output size).
    - ``wpk``: (G, O / G, T) weights, tap ``t`` of the (C/G, kH, kW) window in row-major order, T a
      multiple of 9, zero beyond the real taps. ``bias``: (O,) (zeros when the user gave none).
    - ``tap_plane``, ``tap_off``: int64 (T,) from ``fastconv.conv_layout.local_taps`` for this geometry
      (padding taps on the zero plane ``C/G * sh * sw``).
    - ``row_len``, ``rows_per_item``, ``img_rows``, ``images_per_item`` from
      ``fastconv.conv_layout.local_geometry`` (``images_per_item > 1`` only if ``rows_per_item >= OH``).
    - ``out``: (N, O, OH, OW) C-contiguous, same dtype as ``x``; ``1 <= n_chunks``.
    """
    n_batch, c_in, ih, iw = x.shape
    n_groups, o_per_group, n_taps = wpk.shape
    c_out, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    n_blocks, plane_len, n_planes, n_items = item_counts(n_batch, c_in, n_groups, oh, sh, sw, rows_per_item,
                                                         img_rows, images_per_item, row_len)
    last = n_taps - TAP_GROUP
    rows_are_vectors = ow * out.itemsize % VECTOR_BYTES == 0  # no scalar remainder in a row loop
    xf = x.reshape(-1)
    wf = wpk.reshape(-1)
    of = out.reshape(-1)
    counters = range_counters(n_chunks, workers)
    for worker in prange(workers):
        chunk, used = next_item(counters, worker, 0, workers, n_chunks)
        while chunk >= 0:
            buf = np.zeros(n_planes * plane_len, dtype=out.dtype)
            acc = np.empty(plane_len, dtype=out.dtype)
            for item in range(chunk * n_items // n_chunks, (chunk + 1) * n_items // n_chunks):
                g, n0, n_img, oy0, rows, npos = load_item(xf, item, n_batch, c_in, ih, iw, n_groups, oh, buf, plane_len,
                                                          n_blocks, sh, sw, top, left, row_len, rows_per_item,
                                                          img_rows, images_per_item)
                for j in range(o_per_group):
                    o = g * o_per_group + j
                    b = bias[o]
                    w_o = o * n_taps
                    # Passes over the block's flat local positions into acc; the last one writes the output
                    # rows directly when they are whole vectors long, else it too goes to acc, then a copy.
                    flat_end = last if rows_are_vectors else last + TAP_GROUP
                    for t0 in range(0, flat_end, TAP_GROUP):
                        q = tap_starts(tap_plane, tap_off, t0, plane_len)
                        w = weights9(wf, w_o + t0, 1)
                        if t0 == 0:
                            for p in range(npos):
                                acc[np.uint64(p)] = dot9(b, w, load9(buf, q, p))
                        else:
                            for p in range(npos):
                                acc[np.uint64(p)] = dot9(acc[np.uint64(p)], w, load9(buf, q, p))
                    if not rows_are_vectors:
                        for k in range(n_img):
                            for r in range(rows):
                                d = (((n0 + k) * c_out + o) * oh + oy0 + r) * ow
                                p0 = (k * img_rows + r) * row_len
                                for ox in range(ow):
                                    of[np.uint64(d + ox)] = acc[np.uint64(p0 + ox)]
                        continue
                    q = tap_starts(tap_plane, tap_off, last, plane_len)
                    w = weights9(wf, w_o + last, 1)
                    for k in range(n_img):
                        for r in range(rows):
                            d = (((n0 + k) * c_out + o) * oh + oy0 + r) * ow
                            p0 = (k * img_rows + r) * row_len
                            if last == 0:
                                for ox in range(ow):
                                    of[np.uint64(d + ox)] = dot9(b, w, load9(buf, q, p0 + ox))
                            else:
                                for ox in range(ow):
                                    of[np.uint64(d + ox)] = dot9(acc[np.uint64(p0 + ox)], w, load9(buf, q, p0 + ox))
            chunk, used = next_item(counters, worker, used, workers, n_chunks)
