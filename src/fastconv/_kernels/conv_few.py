"""Direct convolution for few output channels per group (at most ``OB = 3``): the kernel behind
``conv2d(algo="direct")`` when the register-blocked kernel's channel blocks would be mostly padding
(e.g. a 64 -> 3 channel output layer).

Layout: the row-block scheme of ``conv_depthwise`` / ``conv_first`` (``conv_direct_local``): a work
item gathers the input rows it needs into a local zero-padded, phase-split buffer, where local position
``p`` reads tap ``t`` at ``buf[p + starts[t]]``, ``starts[t] = tap_plane[t] * plane_len + tap_off[t]``.
Consecutive local positions are consecutive in every plane, so the micro-kernel vectorises over
positions instead of channels::

    acc[o, p] = bias[o] + sum_t wf[w0 + t * OB + o] * buf[p + starts[t]]      o < OB, NV vectors of positions

The micro-kernel (:mod:`.local_microkernel`) keeps ``OB x NV`` vectors of sums, started from the bias,
in registers over all taps (AVX-512: 3 x 6 vectors of 16 float32, 18 accumulators; AVX2: 3 x 3 of 8,
9). It runs over the item's flat local positions: positions that are not outputs (padding columns, the
end of the last micro-tile) are computed and discarded; the buffer has one micro-tile of room after
the zero plane for those reads. The output rows are then copied from the accumulator.

Parallel ownership: as in ``conv_first``, fixed chunks of work items (image or images, group, block of
output rows), claimed dynamically (:mod:`.claim`); an item writes only its rows of its group's output
channels, every sum in tap order: bit-identical results for any thread count.
"""

import numpy as np
from numba import prange

from .._jit import parallel_kernel
from .claim import next_item, range_counters
from .conv_direct import MICRO_VEC_BYTES
from .conv_direct_local import item_counts, load_item
from .local_microkernel import register_microkernel
from .simd import HAS_AVX512

OB = 3  # output channels per micro-tile (fewer are padded with zero weights)
NV = 6 if HAS_AVX512 else 3  # position vectors per micro-tile: OB * NV accumulators


few_microkernel = register_microkernel(OB, NV)


@parallel_kernel
def conv_few(x, wpk, bias, out, tap_plane, tap_off, sh, sw, top, left, row_len, rows_per_item, img_rows,
             images_per_item, n_chunks, workers):
    """Row-block direct convolution, all (at most ``OB``) output channels of a group per micro-tile.

    Same contract as :func:`fastconv._kernels.conv_depthwise.conv_depthwise` except ``wpk``:
    (G, 1, T, OB) packed weights, zero for taps beyond the real ones and for output channels beyond
    ``O / G <= OB``.
    """
    n_batch, c_in, ih, iw = x.shape
    n_groups, n_taps = wpk.shape[0], wpk.shape[2]
    c_out, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    o_per_group = c_out // n_groups
    n_blocks, plane_len, n_planes, n_items = item_counts(n_batch, c_in, n_groups, oh, sh, sw, rows_per_item,
                                                         img_rows, images_per_item, row_len)
    micro = NV * MICRO_VEC_BYTES // x.itemsize
    stride = (plane_len + micro - 1) // micro * micro  # between the accumulator rows of the channels
    xf = x.reshape(-1)
    wf = wpk.reshape(-1)
    of = out.reshape(-1)
    counters = range_counters(n_chunks, workers)
    for worker in prange(workers):
        # The phase planes, the zero plane, and room for the last micro-tile's reads past the positions.
        buf = np.zeros(n_planes * plane_len + micro, dtype=out.dtype)
        acc = np.empty(OB * stride, dtype=out.dtype)
        starts = np.empty(n_taps, dtype=np.int64)
        for t in range(n_taps):
            starts[t] = tap_plane[t] * plane_len + tap_off[t]
        chunk, used = next_item(counters, worker, 0, workers, n_chunks)
        while chunk >= 0:
            for item in range(chunk * n_items // n_chunks, (chunk + 1) * n_items // n_chunks):
                g, n0, n_img, oy0, rows, npos = load_item(xf, item, n_batch, c_in, ih, iw, n_groups, oh, buf,
                                                          plane_len, n_blocks, sh, sw, top, left, row_len,
                                                          rows_per_item, img_rows, images_per_item)
                w0 = g * n_taps * OB
                for k in range((npos + micro - 1) // micro):
                    few_microkernel(buf, starts, n_taps, k * micro, wf, w0, bias, g * o_per_group, o_per_group, acc,
                                    k * micro, stride)
                for k in range(n_img):
                    for j in range(o_per_group):
                        for r in range(rows):
                            d = (((n0 + k) * c_out + g * o_per_group + j) * oh + oy0 + r) * ow
                            a = j * stride + (k * img_rows + r) * row_len
                            for ox in range(ow):
                                of[np.uint64(d + ox)] = acc[np.uint64(a + ox)]
            chunk, used = next_item(counters, worker, used, workers, n_chunks)
