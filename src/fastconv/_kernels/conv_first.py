"""Direct convolution for few input channels and many output channels (a network's first layer, e.g.
3 -> 32 channels 3x3): ``conv2d(algo="first_layer")``.

Computes the same sum as every conv2d algorithm, ``out[n, o, oy, ox] = bias[o] + sum_{c, ky, kx}
w[o, c, ky, kx] * xpad[n, g * C/G + c, oy * sh + ky * dh, ox * sw + kx * dw]``, with the row-block
scheme of ``conv_depthwise`` (local zero-padded, phase-split input rows per work item; layout in
``conv_direct_local``). Along each output row, micro-tiles of ``OB = 4`` output channels x ``NV``
vectors of positions (AVX-512: 4 x 4 vectors of 16 float32) keep their sums in registers over all
taps (:mod:`.local_microkernel`) and store them straight into the four output rows: the output, the
dominant memory traffic of such a layer (32 output values per 3 input values), is written once and
never re-read. The row's last few vectors go in pairs (the second vector of the last pair ending at
the row's end: it recomputes a few outputs with the same inputs, same values), a single vector last.
Rows narrower than a vector go through a one-tile scratch buffer.

The im2col alternative writes and re-reads 9 columns per input value and then runs a GEMM whose inner
dimension (27) is too short for BLAS to reach its peak. Measured on L1 (8x3x224x224 -> 32, 3x3), one
thread, float32 GFLOP/s: 4 x 4 micro-tiles 96, 8 x 2 94, 4 x 6 92, 8 x 1 98; the previous kernel
(four channels per pass over nine taps, sums in a local buffer between passes) 77; 4 x 4 at about
100 when the output stays in cache, 85 % of the core's FMA peak.

Parallel ownership: as in ``conv_depthwise``, fixed chunks of work items (image or images, group, block
of output rows), claimed dynamically; an item writes only its rows of its group's output channels,
each output computed by the same operations whatever the thread count: bit-identical results.
"""

import numpy as np
from numba import prange

from .._jit import parallel_kernel
from .claim import next_item, range_counters
from .conv_direct import MICRO_VEC_BYTES
from .conv_direct_local import item_counts, load_item
from .local_microkernel import register_microkernel
from .simd import HAS_AVX512

OB = 4  # output channels per micro-tile
NV = 4 if HAS_AVX512 else 2  # vectors of positions per full micro-tile (AVX2: 8 of its 16 registers)
tile_microkernel = register_microkernel(OB, NV)
pair_microkernel = register_microkernel(OB, 2, gapped=True)  # a row's last vectors, two at a time
vector_microkernel = register_microkernel(OB, 1)


@parallel_kernel
def conv_first(x, wpk, bias, out, tap_plane, tap_off, sh, sw, top, left, row_len, rows_per_item, img_rows,
               images_per_item, n_chunks, workers):
    """Row-block direct convolution, micro-tiles of four output channels along each output row.

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
    lanes = MICRO_VEC_BYTES // x.itemsize
    micro = NV * lanes
    out_plane = oh * ow
    xf = x.reshape(-1)
    wf = wpk.reshape(-1)
    of = out.reshape(-1)
    counters = range_counters(n_chunks, workers)
    for worker in prange(workers):
        # The phase planes, the zero plane, and room for a narrow row's vector reads past the positions.
        buf = np.zeros(n_planes * plane_len + lanes, dtype=out.dtype)
        narrow = np.empty(OB * lanes, dtype=out.dtype)  # one micro-tile of a row narrower than a vector
        starts = np.empty(n_taps, dtype=np.int64)
        for t in range(n_taps):
            starts[t] = tap_plane[t] * plane_len + tap_off[t]
        chunk, used = next_item(counters, worker, 0, workers, n_chunks)
        while chunk >= 0:
            for item in range(chunk * n_items // n_chunks, (chunk + 1) * n_items // n_chunks):
                g, n0, n_img, oy0, rows, npos = load_item(xf, item, n_batch, c_in, ih, iw, n_groups, oh, buf, plane_len,
                                                          n_blocks, sh, sw, top, left, row_len, rows_per_item,
                                                          img_rows, images_per_item)
                for ob in range(n_oblocks):
                    o = g * o_per_group + ob * OB
                    n_valid = min(OB, o_per_group - ob * OB)
                    w_blk = (g * n_oblocks + ob) * n_taps * OB
                    for k in range(n_img):
                        for r in range(rows):
                            d = (((n0 + k) * c_out + o) * oh + oy0 + r) * ow
                            p = (k * img_rows + r) * row_len
                            if ow < lanes:
                                vector_microkernel(buf, starts, n_taps, p, wf, w_blk, bias, o, n_valid, narrow, 0,
                                                   lanes)
                                for j in range(n_valid):
                                    for ox in range(ow):
                                        of[np.uint64(d + j * out_plane + ox)] = narrow[np.uint64(j * lanes + ox)]
                                continue
                            x0 = 0
                            while x0 + micro <= ow:
                                tile_microkernel(buf, starts, n_taps, p + x0, wf, w_blk, bias, o, n_valid, of, d + x0,
                                                 out_plane)
                                x0 += micro
                            # The rest in pairs of vectors, the last pair's second vector ending at the row's end.
                            while ow - x0 > lanes:
                                gap = min(lanes, ow - lanes - x0)
                                pair_microkernel(buf, starts, n_taps, p + x0, wf, w_blk, bias, o, n_valid, of, d + x0,
                                                 out_plane, gap)
                                x0 += lanes + gap
                            if x0 < ow:
                                x0 = ow - lanes
                                vector_microkernel(buf, starts, n_taps, p + x0, wf, w_blk, bias, o, n_valid, of,
                                                   d + x0, out_plane)
            chunk, used = next_item(counters, worker, used, workers, n_chunks)
