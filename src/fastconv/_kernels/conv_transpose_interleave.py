"""Transposed convolution whose stride equals its kernel with kernel width 2 (U-Net's 2x2 stride-2
upsampling, T2), padding 0: every output pixel gets exactly one tap, so the GEMM's columns need no col2im
sum, only an interleave, done in the micro-tile's epilogue (``conv_transpose2d(algo="col2im")`` routes here).

Why: the BLAS route computes each image's GEMM into a buffer and then copies it to the output through
``col2im_item``; on T2 that is 157-163 GFLOP/s on two threads (onnxruntime 159). Here a
register-blocked micro-kernel (:func:`.local_microkernel.register_microkernel`) computes ``ROWS`` GEMM
rows x one vector of input positions over all input channels, and the rows go straight from an L1
scratch tile to the output with vector interleaving stores: T2 178-184 (more in docs/conv_transpose.md).

Formula (``kh = sh``, ``kw = sw = 2``, no padding, dilation 1)::

    out[n, g*og + o, i*kh + ky, 2*j + kx] = bias[g*og + o]
                                            + sum_c weight[g*cg + c, o, ky, kx] * x[n, g*cg + c, i, j]

GEMM row ``r = (o * kh + ky) * 2 + kx`` (the order of ``weight[c].reshape(-1)``); rows ``2q`` and ``2q + 1``
are the pair ``(o, ky) = divmod(q, kh)`` with ``kx`` 0 and 1, interleaved into one output row. A tile is
one vector of consecutive input positions ``p = i * IW + j`` of one image and group (the last tile of an
image shifted back to end at ``IH * IW``, storing only the positions no earlier tile stored; an image
smaller than a vector goes through a zero-padded copy); it may span several input rows, each of which
becomes a segment of the output rows ``i * kh + ky``.

Contract: ``x`` (N, C_in, IH, IW), ``out`` (N, O, IH * kh, IW * 2), C-contiguous, one float dtype;
``weights`` (C_in, row_step) (:func:`interleave_weights`: each channel's GEMM rows, whole blocks of ``ROWS``
readable), ``row_bias`` (G * n_blocks * ROWS,) the bias of each GEMM row (:func:`interleave_row_bias`).

Parallel ownership: work items are (image, group, tile), claimed dynamically (:mod:`.claim`); an item
writes only its own positions' outputs. Every output is one sum over channels in order: results do not
depend on the thread count.
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import parallel_kernel
from .claim import next_item, range_counters
from .conv_direct import MICRO_VEC_BYTES
from .local_microkernel import register_microkernel
from .simd import HAS_AVX512, float_array, shuffle_mask, vector_pointer

# GEMM rows per micro-tile (8 / 4 (o, ky) pairs) x one vector of positions. T2, one thread, rows x
# vectors: 8 x 3 83, 12 x 2 85, 8 x 2 87, 12 x 1 89, 16 x 1 90, 24 x 1 90, 28 x 1 86 GFLOP/s (a prototype
# with packed weights). 16 x 1: each tile's inputs (C_in/G x 64 bytes) stay in L1 across the row blocks.
# The AVX2 build (8 x 1 of 8 lanes) lost to the BLAS route, 0.44-0.73x: the dispatch uses it on AVX-512.
ROWS = 16 if HAS_AVX512 else 8
interleave_microkernel = register_microkernel(ROWS, 1, weight_step=True)


@intrinsic
def store_interleaved(typingctx, src, a, b, dst, d, lo, hi):
    """``dst[d + 2 * (l - lo) + kx] = src[(a, b)[kx] + l]`` for ``lo <= l < hi`` (``0 <= lo < hi <= lanes``,
    ``lanes`` of ``MICRO_VEC_BYTES``): two vectors interleaved lane by lane, stored with two masked
    vector stores (lanes outside ``[lo, hi)`` are neither read from nor written to ``dst``)."""
    if not (float_array(src) and float_array(dst) and src.dtype == dst.dtype):
        return None
    lanes = MICRO_VEC_BYTES * 8 // src.dtype.bitwidth
    half = lanes // 2

    def codegen(context, builder, sig, args):
        src_v, a_v, b_v, dst_v, d_v, lo_v, hi_v = args
        i64 = ir.IntType(64)
        bits = src.dtype.bitwidth
        align = bits // 8
        vty = ir.VectorType(context.get_value_type(src.dtype), lanes)
        va = builder.load(vector_pointer(context, builder, sig.args[0], src_v, a_v, lanes), align=align)
        vb = builder.load(vector_pointer(context, builder, sig.args[0], src_v, b_v, lanes), align=align)
        halves = [builder.shuffle_vector(va, vb, shuffle_mask([k for l in part for k in (l, lanes + l)]))
                  for part in (range(half), range(half, lanes))]
        ity = ir.VectorType(i64, lanes)
        undef = ir.Constant(ity, ir.Undefined)

        def splat(value):
            one = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(one, undef, shuffle_mask([0] * lanes))

        two = ir.Constant(i64, 2)
        first, last = splat(builder.mul(lo_v, two)), splat(builder.mul(hi_v, two))
        data = context.make_array(sig.args[3])(context, builder, dst_v).data
        # dst[d - 2 * lo] may lie before the array: only its lanes from 2 * lo on are stored (not inbounds).
        base = builder.gep(data, [builder.sub(d_v, builder.mul(lo_v, two))])
        mask_ty = ir.VectorType(ir.IntType(1), lanes)
        store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), ir.IntType(32), mask_ty]),
            f"llvm.masked.store.v{lanes}f{bits}.p0v{lanes}f{bits}")
        for part, values in enumerate(halves):
            index = ir.Constant(ity, [part * lanes + l for l in range(lanes)])
            mask = builder.and_(builder.icmp_signed(">=", index, first), builder.icmp_signed("<", index, last))
            ptr = builder.bitcast(builder.gep(base, [ir.Constant(i64, part * lanes)]), vty.as_pointer())
            builder.call(store, [values, ptr, ir.Constant(ir.IntType(32), align), mask])
        return context.get_dummy_value()
    return types.void(src, a, b, dst, d, lo, hi), codegen


def interleave_weights(weight, dtype):
    """``weight`` (C_in, O/groups, kh, 2) as the kernel reads it: (C_in, row_step), channel ``c``'s GEMM rows
    ``(o, ky, kx)`` in order. The weight itself (reshaped) when its rows fill whole blocks of ``ROWS``
    (no copy: a packed copy made per call cost T2 8-9 %, 184 -> 168 GFLOP/s), else a copy zero-padded to
    whole blocks (a block's loads must stay inside its channel's row)."""
    c_in = weight.shape[0]
    rows = weight.size // c_in
    if rows % ROWS == 0 and weight.dtype == dtype and weight.flags.c_contiguous and weight.flags.writeable:
        return weight.reshape(c_in, rows)
    padded = np.zeros((c_in, -(-rows // ROWS) * ROWS), dtype)
    padded[:, :rows] = weight.reshape(c_in, rows)
    return padded


def interleave_row_bias(bias, groups, kh, dtype):
    """The bias of every GEMM row, by group in whole blocks of ``ROWS``: ``bias[g*og + o]`` for the ``2 * kh``
    rows of each ``o``, zero past them."""
    og = bias.shape[0] // groups
    rows = og * kh * 2
    n_blocks = -(-rows // ROWS)
    rb = np.zeros((groups, n_blocks * ROWS), dtype)
    rb[:, :rows] = np.repeat(bias.reshape(groups, og).astype(dtype, copy=False), kh * 2, axis=1)
    return rb.reshape(-1)


def interleave_workspace_bytes(c_in, c_out, groups, kh, in_hw, itemsize, threads):
    """Bytes besides the result: every worker's scratch tile, start offsets and (images smaller than a
    vector) padded inputs; the zero-padded weight copy when a group's rows are not whole blocks; the row
    biases."""
    lanes = MICRO_VEC_BYTES // itemsize
    cg, rows = c_in // groups, c_out // groups * kh * 2
    padded_rows = -(-rows // ROWS) * ROWS
    small = in_hw[0] * in_hw[1] < lanes
    worker = ROWS * lanes * itemsize + cg * 8 + (cg * lanes * itemsize if small else 0)
    weights = c_in * padded_rows * itemsize if padded_rows != rows else 0
    return threads * worker + weights + groups * padded_rows * itemsize


@parallel_kernel
def conv_transpose_interleave(x, weights, row_bias, out, n_groups, workers):
    """``out = conv_transpose2d(x, weight, bias, stride=(kh, 2), groups=n_groups)`` for a (kh, 2) kernel,
    padding 0 (module docstring: formula, contract, ownership); ``kh = OH / IH``, ``weights`` from
    :func:`interleave_weights`, ``row_bias`` from :func:`interleave_row_bias`."""
    n_batch, c_in, ih, iw = x.shape
    c_out, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    kh = oh // ih
    cg = c_in // n_groups
    og = c_out // n_groups
    n_pairs = og * kh  # (o, ky) pairs of a group: GEMM rows 2 * pair + kx
    n_blocks = (2 * n_pairs + ROWS - 1) // ROWS
    w_step = weights.shape[1]
    hw = ih * iw
    lanes = MICRO_VEC_BYTES // x.itemsize
    span = min(lanes, hw)  # positions a tile stores at most
    n_tiles = (hw + lanes - 1) // lanes
    n_items = n_batch * n_groups * n_tiles
    xf = x.reshape(-1)
    wf = weights.reshape(-1)
    of = out.reshape(-1)
    counters = range_counters(n_items, workers)
    for worker in prange(workers):
        scratch = np.empty(ROWS * lanes, dtype=out.dtype)
        starts = np.empty(cg, dtype=np.int64)
        padded = np.zeros(cg * lanes if hw < lanes else 0, dtype=out.dtype)  # an image smaller than a vector
        for c in range(cg):
            starts[c] = c * (lanes if hw < lanes else hw)
        item, used = next_item(counters, worker, 0, workers, n_items)
        while item >= 0:
            tile = item % n_tiles
            g = item // n_tiles % n_groups
            n = item // (n_tiles * n_groups)
            x0 = (n * c_in + g * cg) * hw
            src = xf
            p0 = max(0, min(tile * lanes, hw - lanes))
            if hw < lanes:
                for c in range(cg):
                    for j in range(hw):
                        padded[c * lanes + j] = xf[np.uint64(x0 + c * hw + j)]
                src = padded
                x0 = 0
            q_first = tile * lanes - p0  # positions before it belong to the previous tile
            for blk in range(n_blocks):
                rows = min(ROWS, 2 * n_pairs - blk * ROWS)
                interleave_microkernel(src, starts, cg, x0 + p0, wf, g * cg * w_step + blk * ROWS, row_bias,
                                       (g * n_blocks + blk) * ROWS, rows, scratch, 0, lanes, w_step)
                q = q_first
                while q < span:
                    i = (p0 + q) // iw
                    j = p0 + q - i * iw
                    seg = min(iw - j, span - q)
                    for pr in range(rows // 2):
                        pair = blk * (ROWS // 2) + pr
                        o = pair // kh
                        ky = pair - o * kh
                        d = ((n * c_out + g * og + o) * oh + i * kh + ky) * ow + 2 * j
                        store_interleaved(scratch, 2 * pr * lanes, (2 * pr + 1) * lanes, of, d, q, q + seg)
                    q += seg
            item, used = next_item(counters, worker, used, workers, n_items)
