"""GEMM + col2im in one compiled parallel kernel, for ``conv_transpose2d(algo="col2im")`` when a work
item's GEMM has few rows (few output channels x taps, e.g. T3's 3 x 9): OpenBLAS runs such short, wide
GEMMs at about two thirds of the machine's peak (T3's 27 x 64 x 3136: 78 GFLOP/s on one core), while a
register-blocked micro-kernel (:func:`.local_microkernel.register_microkernel`) runs at 108 on the same operand,
and in one kernel no Python thread hand-off precedes the parallel work. conv2d's tap-GEMM route (stride
1, few output channels: ``dispatch.tap_gemm_fits``) runs here too, as the equivalent transposed conv.

A work item (the items of ``fastconv.conv_transpose.col2im_split``, one image or one band of input rows
each) computes its columns::

    cols[r, col] = sum_c wf[g * w_group + blk * w_block + r // GEMM_ROWS * w_rows + c * w_step + r % GEMM_ROWS]
                   * x[n, g*cg + c, iy_lo + col // IW, col % IW]

micro-tile by micro-tile (``GEMM_ROWS`` rows x ``GEMM_VECTORS`` vectors of positions, all ``cg`` channels as the
micro-kernel's "taps", ``x`` read in place at ``starts[c] = c * IH * IW``): the positions of a band are
contiguous in every channel plane, so every micro-tile but the last reads the input where it is. The last,
partial micro-tile reads a zero-padded copy of its inputs (reading in place would run past the input).
Row ``r = (o * kH + ky) * kW + kx`` of the item's channel block, in row blocks of ``GEMM_ROWS``; the
weights are read through four strides (group, channel block, row block, channel), so they are either the
weight itself, (C_in, O/G * kH * kW) flat, when every block's rows come in whole row blocks, or a packed
copy (G, n_blocks, n_row_blocks, C_in/G, GEMM_ROWS), zero past a block's rows
(``conv_transpose.row_block_weights``). Then
:func:`.conv_transpose_col2im.col2im_item` sums the columns into the item's outputs, with the row stride
``cols_stride`` (the item's column count rounded up to whole micro-tiles).

Per column the sum runs over channels in order, then over taps in ``col2im_item``'s fixed order: results
do not depend on the thread count. Parallel ownership: as in ``_run_col2im``, an item writes only its
outputs (images, channel block, output rows); buffers are the worker's own; items are claimed
dynamically (:mod:`.claim`).
"""

import numpy as np
from numba import prange

from .._jit import parallel_kernel
from .claim import next_item, range_counters
from .conv_direct import MICRO_VEC_BYTES
from .local_microkernel import register_microkernel
from .simd import HAS_AVX512, prefetch_l2
from .conv_transpose_col2im import col2im_item

# Micro-tile: GEMM_ROWS rows x GEMM_VECTORS vectors of positions (27 accumulators; AVX2: 4 x 3 of 16
# registers).
GEMM_ROWS = 9 if HAS_AVX512 else 4
GEMM_VECTORS = 3
gemm_microkernel = register_microkernel(GEMM_ROWS, GEMM_VECTORS, weight_step=True)
# Micro-tiles ahead whose inputs are prefetched into L2: a tile reads every channel plane of the input,
# C_in streams, too many for the hardware prefetcher, so an input fresh from DRAM stalls the loads.
# T3, one thread, input cold (20 ms pause before each call), best of 12: none 1.92 ms, 1 / 2 / 3 / 4
# tiles ahead 1.17 / 1.15 / 1.17 / 1.16 (input warm: 1.01-1.04 whatever the distance).
PREFETCH_TILES = 2


@parallel_kernel
def col2im_gemm(x, wf, w_group, w_block, w_rows, w_step, bias, out, groups, channels, bands, band_rows, kh, kw,
                sh, sw, dh, dw, top, left, cols_stride, acc_len, workers):
    """``out = conv_transpose2d(x, weight) + bias`` by items of GEMM (micro-kernel) + col2im.

    ``x`` (N, C_in, IH, IW) C-contiguous; ``wf`` flat weights, GEMM row ``r`` of channel block ``blk`` of
    group ``g`` for channel ``c`` at ``g * w_group + blk * w_block + r // GEMM_ROWS * w_rows + c * w_step +
    r % GEMM_ROWS``, in range for whole row blocks and zero past a block's rows (the module docstring);
    ``bias`` (O,); ``out`` (N, O, OH, OW)
    C-contiguous; one float dtype. Items: channel block fastest, then group, band (``bands`` of
    ``band_rows`` output rows), image. ``cols_stride`` is at least every item's column count rounded up to
    a micro-tile; ``acc_len`` the col2im accumulator's length (``Col2imSplit.acc_len``).
    """
    n_batch, c_in, ih, iw = x.shape
    cg = c_in // groups
    c_out, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    og = c_out // groups
    n_blocks = (og + channels - 1) // channels
    n_rb = (channels * kh * kw + GEMM_ROWS - 1) // GEMM_ROWS
    hw = ih * iw
    kk = kh * kw
    micro = GEMM_VECTORS * MICRO_VEC_BYTES // x.itemsize
    cols_len = n_rb * GEMM_ROWS * cols_stride
    n_items = n_batch * bands * groups * n_blocks
    xf = x.reshape(-1)
    of = out.reshape(-1)
    one_image = np.int64(1)  # a literal 1 would type col2im_item once more than its Python callers do
    counters = range_counters(n_items, workers)
    for worker in prange(workers):
        buf = np.empty(cols_len + acc_len, dtype=out.dtype)  # the columns, then the accumulator
        tail = np.zeros(cg * micro, dtype=out.dtype)  # the last micro-tile's inputs, zero-padded
        zero_rows = np.zeros(GEMM_ROWS, dtype=out.dtype)  # the micro-kernel's starting sums
        starts = np.empty(cg, dtype=np.int64)
        tail_starts = np.empty(cg, dtype=np.int64)
        for c in range(cg):
            starts[c] = c * hw
            tail_starts[c] = c * micro
        item, used = next_item(counters, worker, 0, workers, n_items)
        while item >= 0:
            blk = item % n_blocks
            g = item // n_blocks % groups
            band = item // (n_blocks * groups) % bands
            n = item // (n_blocks * groups * bands)
            o0 = blk * channels
            ob = min(channels, og - o0)
            y0 = band * band_rows
            y1 = min(oh, y0 + band_rows)
            iy_lo = 0
            iy_hi = ih
            if bands > 1:  # the input rows the band's outputs read (``_band_input_rows``)
                iy_lo = max(0, -((-(y0 + top - (kh - 1) * dh)) // sh))
                iy_hi = max(iy_lo, min(ih, (y1 - 1 + top) // sh + 1))
            ncols = (iy_hi - iy_lo) * iw
            x0 = (n * c_in + g * cg) * hw + iy_lo * iw
            rbs = (ob * kk + GEMM_ROWS - 1) // GEMM_ROWS  # row blocks holding real rows
            w0 = g * w_group + blk * w_block
            full = ncols // micro
            line = 64 // x.itemsize
            for k in range(full):
                if k + PREFETCH_TILES < full:
                    ahead = x0 + (k + PREFETCH_TILES) * micro
                    for c in range(cg):
                        for j in range(0, micro, line):
                            prefetch_l2(xf, ahead + c * hw + j)
                for rb in range(rbs):
                    gemm_microkernel(xf, starts, cg, x0 + k * micro, wf, w0 + rb * w_rows, zero_rows, 0,
                                     GEMM_ROWS, buf, rb * GEMM_ROWS * cols_stride + k * micro, cols_stride,
                                     w_step)
            rest = ncols - full * micro
            if rest > 0:
                for c in range(cg):
                    src = x0 + c * hw + full * micro
                    for j in range(rest):
                        tail[c * micro + j] = xf[np.uint64(src + j)]
                    for j in range(rest, micro):
                        tail[c * micro + j] = 0.0
                for rb in range(rbs):
                    gemm_microkernel(tail, tail_starts, cg, 0, wf, w0 + rb * w_rows, zero_rows, 0,
                                     GEMM_ROWS, buf, rb * GEMM_ROWS * cols_stride + full * micro, cols_stride,
                                     w_step)
            col2im_item(buf, cols_stride, cols_len, of, bias, n, one_image, g * og + o0, ob, y0, y1, iy_lo, c_out, oh,
                        ow, ih, iw, kh, kw, sh, sw, dh, dw, top, left)
            item, used = next_item(counters, worker, used, workers, n_items)
