"""Direct convolution for few input channels and many output channels (a network's first layer, e.g.
3 -> 32 channels 3x3): ``conv2d(algo="first_layer")``.

Computes the same sum as every conv2d algorithm, ``out[n, o, oy, ox] = bias[o] + sum_{c, ky, kx}
w[o, c, ky, kx] * xpad[n, g * C/G + c, oy * sh + ky * dh, ox * sw + kx * dw]``, with the row-block
scheme of ``conv_depthwise`` (local zero-padded, phase-split input rows per work item; layout in
``conv_direct_local``), but four output channels per pass: each of the nine tap inputs loaded for a
position feeds four output channels (36 multiply-adds per 9 input loads; with AVX2's 16 vector
registers most of the 36 weights are read from the stack as memory operands of the FMAs).
With 27 taps (3 channels, 3x3) that is three passes per block of four channels; the first two
accumulate into a local (4, positions) buffer, the last writes the four output rows, so the output
(the dominant memory traffic of such a layer: 32 output values per 3 input values) is stored once
and never re-read. The im2col alternative writes and re-reads 9 columns per input value and then runs
a GEMM whose inner dimension (27) is too short for BLAS to reach its peak.

Variants measured on L1 (8x3x224x224 -> 32, 3x3) and rejected: 2 or 8 channels per pass (slower);
splitting each nine-term sum into shorter chains (slower: the loop is throughput-, not
latency-bound); two rows per pass to reuse every weight register twice (LLVM then needs more run-time
overlap checks between the written streams than it emits, and leaves the loop scalar).

Parallel ownership: as in ``conv_depthwise``, fixed chunks of work items (image or
images, group, block of output rows), claimed dynamically; an item writes only its rows of its
group's output channels, each output computed by the same operations whatever the thread count:
bit-identical results.
"""

import numpy as np
from numba import prange

from .._jit import parallel_kernel
from .claim import next_item, range_counters
from .conv_direct_local import (TAP_GROUP, VECTOR_BYTES, dot9, inline, item_counts, load9, load_item,
                                tap_starts, weights9)

OB = 4  # output channels per pass


@inline
def load4(arr, i, step):
    """``(arr[i], arr[i + step], arr[i + 2 * step], arr[i + 3 * step])``."""
    return (arr[np.uint64(i)], arr[np.uint64(i + step)], arr[np.uint64(i + 2 * step)],
            arr[np.uint64(i + 3 * step)])


@inline
def store4(arr, i, step, values):
    """The inverse of :func:`load4`."""
    arr[np.uint64(i)] = values[0]
    arr[np.uint64(i + step)] = values[1]
    arr[np.uint64(i + 2 * step)] = values[2]
    arr[np.uint64(i + 3 * step)] = values[3]


@inline
def dots4(w0, w1, w2, w3, v, start):
    """The four channels' sums ``start[j] + wj . v`` for one position (``wj``: nine tap weights)."""
    return (dot9(start[0], w0, v), dot9(start[1], w1, v), dot9(start[2], w2, v), dot9(start[3], w3, v))


@parallel_kernel(fastmath={"contract"})
def conv_first(x, wpk, bias, out, tap_plane, tap_off, sh, sw, top, left, row_len, rows_per_item, img_rows,
               images_per_item, n_chunks, workers):
    """Row-block direct convolution, four output channels per pass.

    Same contract as :func:`fastconv._kernels.conv_depthwise.conv_depthwise` except ``wpk``:
    (G, n_blocks, T, 4) packed weights, zero for taps beyond the real ones and for output channels
    beyond O / G.
    """
    n_batch, c_in, ih, iw = x.shape
    n_groups, n_oblocks, n_taps = wpk.shape[0], wpk.shape[1], wpk.shape[2]
    c_out, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    o_per_group = c_out // n_groups
    n_blocks, plane_len, n_planes, n_items = item_counts(n_batch, c_in, n_groups, oh, sh, sw, rows_per_item,
                                                         img_rows, images_per_item, row_len)
    last = n_taps - TAP_GROUP
    rows_are_vectors = ow * out.itemsize % VECTOR_BYTES == 0  # no scalar remainder in a row loop
    stride = plane_len  # between the accumulator planes of the four channels
    out_plane = oh * ow
    xf = x.reshape(-1)
    wf = wpk.reshape(-1)
    of = out.reshape(-1)
    counters = range_counters(n_chunks, workers)
    for worker in prange(workers):
        chunk, used = next_item(counters, worker, 0, workers, n_chunks)
        while chunk >= 0:
            buf = np.zeros(n_planes * plane_len, dtype=out.dtype)
            acc = np.empty(OB * stride, dtype=out.dtype)
            for item in range(chunk * n_items // n_chunks, (chunk + 1) * n_items // n_chunks):
                g, n0, n_img, oy0, rows, npos = load_item(xf, item, n_batch, c_in, ih, iw, n_groups, oh, buf, plane_len,
                                                          n_blocks, sh, sw, top, left, row_len, rows_per_item,
                                                          img_rows, images_per_item)
                for ob in range(n_oblocks):
                    o = g * o_per_group + ob * OB
                    n_valid = min(OB, o_per_group - ob * OB)
                    b0 = bias[o]
                    bias4 = (b0, bias[o + 1] if n_valid > 1 else b0, bias[o + 2] if n_valid > 2 else b0,
                             bias[o + 3] if n_valid > 3 else b0)
                    w_blk = (g * n_oblocks + ob) * n_taps * OB
                    # All passes but the last (and the last too for a partial block of channels, or rows that
                    # are not whole vectors long) over the block's flat local positions into acc.
                    flat_end = last + TAP_GROUP if n_valid < OB or not rows_are_vectors else last
                    for t0 in range(0, flat_end, TAP_GROUP):
                        q = tap_starts(tap_plane, tap_off, t0, plane_len)
                        w0 = weights9(wf, w_blk + t0 * OB + 0, OB)
                        w1 = weights9(wf, w_blk + t0 * OB + 1, OB)
                        w2 = weights9(wf, w_blk + t0 * OB + 2, OB)
                        w3 = weights9(wf, w_blk + t0 * OB + 3, OB)
                        if t0 == 0:
                            for p in range(npos):
                                store4(acc, p, stride, dots4(w0, w1, w2, w3, load9(buf, q, p), bias4))
                        else:
                            for p in range(npos):
                                store4(acc, p, stride,
                                       dots4(w0, w1, w2, w3, load9(buf, q, p), load4(acc, p, stride)))
                    if flat_end > last:
                        for k in range(n_img):
                            for j in range(n_valid):
                                for r in range(rows):
                                    d = (((n0 + k) * c_out + o + j) * oh + oy0 + r) * ow
                                    a = j * stride + (k * img_rows + r) * row_len
                                    for ox in range(ow):
                                        of[np.uint64(d + ox)] = acc[np.uint64(a + ox)]
                        continue
                    # Last pass of a full block: straight into the four output rows.
                    q = tap_starts(tap_plane, tap_off, last, plane_len)
                    w0 = weights9(wf, w_blk + last * OB, OB)
                    w1 = weights9(wf, w_blk + last * OB + 1, OB)
                    w2 = weights9(wf, w_blk + last * OB + 2, OB)
                    w3 = weights9(wf, w_blk + last * OB + 3, OB)
                    for k in range(n_img):
                        for r in range(rows):
                            d = (((n0 + k) * c_out + o) * oh + oy0 + r) * ow
                            p = (k * img_rows + r) * row_len
                            if last == 0:
                                for ox in range(ow):
                                    store4(of, d + ox, out_plane,
                                           dots4(w0, w1, w2, w3, load9(buf, q, p + ox), bias4))
                            else:
                                for ox in range(ow):
                                    store4(of, d + ox, out_plane,
                                           dots4(w0, w1, w2, w3, load9(buf, q, p + ox), load4(acc, p + ox, stride)))
            chunk, used = next_item(counters, worker, used, workers, n_chunks)
