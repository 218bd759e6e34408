"""Direct convolution for few output channels per group (at most ``OB = 3``): the kernel behind
``conv2d(algo="direct")`` when the register-blocked kernel's channel blocks would be mostly padding
(e.g. a 64 -> 3 channel output layer).

Layout: the row-block scheme of ``conv_depthwise`` / ``conv_first`` (``conv_direct_local``): a work
item gathers the input rows it needs into a local zero-padded, phase-split buffer, where local position
``p`` reads tap ``t`` at ``buf[p + starts[t]]``, ``starts[t] = tap_plane[t] * plane_len + tap_off[t]``.
Consecutive local positions are consecutive in every plane, so the micro-kernel vectorises over
positions instead of channels::

    acc[o, p] = sum_t wf[w0 + t * OB + o] * buf[p + starts[t]]      o < OB, NV vectors of positions

:func:`few_microkernel` keeps ``OB x NV`` vectors of sums in registers over all taps: per tap ``NV``
unaligned input-vector loads, ``OB`` weight broadcasts and ``OB * NV`` fused multiply-adds (AVX-512:
3 x 6 vectors of 16 float32, 18 accumulators; AVX2: 3 x 3 of 8, 9). Positions that are not outputs
(padding columns, the end of the last micro-tile) are computed and discarded; the buffer has one
micro-tile of room after the zero plane for those reads. The output rows are then copied from the
accumulator with the bias added.

Parallel ownership: as in ``conv_first``, fixed chunks of work items (image or images, group, block of
output rows), claimed dynamically (:mod:`.claim`); an item writes only its rows of its group's output
channels, every sum in tap order: bit-identical results for any thread count.
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import parallel_kernel
from .claim import next_item, range_counters
from .conv_direct import MICRO_VEC_BYTES
from .conv_direct_local import item_counts, load_item
from .simd import HAS_AVX512, address, float_array, vector_pointer

OB = 3  # output channels per micro-tile (fewer are padded with zero weights)
NV = 6 if HAS_AVX512 else 3  # position vectors per micro-tile: OB * NV accumulators


def register_microkernel(ob, nv):
    """The micro-kernel intrinsic for ``ob`` output rows x ``nv`` vectors of positions (``ob * nv``
    accumulators in registers):
    ``acc[a0 + o * row_stride + j] = sum_t wf[w0 + t * ob + o] * xf[p + j + starts[t]]`` for ``o < ob``,
    ``j < nv * lanes`` and taps ``t < n_taps`` in order (fused multiply-adds).

    ``xf``, ``wf``, ``acc`` flat C-contiguous arrays of one float dtype, ``starts`` int64; every index in
    range (no checks)."""

    @intrinsic
    def microkernel(typingctx, xf, starts, n_taps, p, wf, w0, acc, a0, row_stride):
        if not (float_array(xf) and float_array(wf) and float_array(acc) and xf.dtype == wf.dtype == acc.dtype):
            return None
        lanes = MICRO_VEC_BYTES * 8 // xf.dtype.bitwidth

        def codegen(context, builder, sig, args):
            xf_v, starts_v, nt_v, p_v, wf_v, w0_v, acc_v, a0_v, rs_v = args
            bits = xf.dtype.bitwidth
            align = bits // 8
            elt = context.get_value_type(xf.dtype)
            vty = ir.VectorType(elt, lanes)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                 f"llvm.fmuladd.v{lanes}f{bits}")
            i64 = ir.IntType(64)
            base = address(context, builder, sig.args[0], xf_v, p_v)
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * lanes)) for _ in range(nv)]
                    for _ in range(ob)]
            undef = ir.Constant(vty, ir.Undefined)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            with cgutils.for_range(builder, nt_v) as loop:
                t = loop.index
                offset = builder.load(address(context, builder, sig.args[1], starts_v, t))
                row = builder.gep(base, [offset], inbounds=True)
                xs = [builder.load(builder.bitcast(builder.gep(row, [ir.Constant(i64, v * lanes)], inbounds=True),
                                                   vty.as_pointer()), align=align)
                      for v in range(nv)]
                w_base = builder.add(w0_v, builder.mul(t, ir.Constant(i64, ob)))
                for o in range(ob):
                    w = builder.load(address(context, builder, sig.args[4], wf_v,
                                             builder.add(w_base, ir.Constant(i64, o))))
                    wv = builder.shuffle_vector(builder.insert_element(undef, w, ir.Constant(ir.IntType(32), 0)),
                                                undef, splat)
                    for v in range(nv):
                        builder.store(builder.call(fma, [xs[v], wv, builder.load(accs[o][v])]), accs[o][v])
            for o in range(ob):
                for v in range(nv):
                    index = builder.add(a0_v, builder.add(builder.mul(rs_v, ir.Constant(i64, o)),
                                                          ir.Constant(i64, v * lanes)))
                    builder.store(builder.load(accs[o][v]),
                                  vector_pointer(context, builder, sig.args[6], acc_v, index, lanes), align=align)
            return context.get_dummy_value()
        return types.void(xf, starts, n_taps, p, wf, w0, acc, a0, row_stride), codegen
    return microkernel


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
                    few_microkernel(buf, starts, n_taps, k * micro, wf, w0, acc, k * micro, stride)
                for k in range(n_img):
                    for j in range(o_per_group):
                        b = bias[g * o_per_group + j]
                        for r in range(rows):
                            d = (((n0 + k) * c_out + g * o_per_group + j) * oh + oy0 + r) * ow
                            a = j * stride + (k * img_rows + r) * row_len
                            for ox in range(ow):
                                of[np.uint64(d + ox)] = acc[np.uint64(a + ox)] + b
            chunk, used = next_item(counters, worker, used, workers, n_chunks)
