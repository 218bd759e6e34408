"""The register-blocked micro-kernel of the row-block kernels that vectorise over positions
(``conv_first``, ``conv_few``; buffer layout in ``conv_direct_local``).

A work item's local buffer holds its input rows zero-padded and split into stride phases, so local
position ``p`` reads tap ``t`` at ``buf[p + starts[t]]`` and consecutive positions are consecutive in
every plane. A micro-tile is ``OB`` output channels x ``NV`` vectors of consecutive positions::

    dst[d0 + o * row_stride + j] = bias[b0 + o] + sum_t wf[w0 + t * OB + o] * buf[p + j + starts[t]]

for ``o < n_rows`` and ``j < NV * lanes``, the sum in tap order (fused multiply-adds). The ``OB x NV``
sums stay in registers over all taps: per tap ``NV`` unaligned vector loads, ``OB`` weight broadcasts
and ``OB * NV`` multiply-adds, so the FMA units, not the loads, set the pace. Rows ``o >= n_rows`` (a
partial block of channels, whose packed weights are zero) are computed and neither read from
``bias`` nor stored.

The weight-step variant reads tap ``t``'s weights at ``wf[w0 + t * w_step + o]`` instead of
``wf[w0 + t * OB + o]``: a weight matrix used where it lies, its rows ``w_step`` apart (no packed copy).

The gapped variant puts vector ``v`` at ``v * gap`` positions instead of ``v * lanes``, in ``buf`` and in
``dst`` alike: two vectors covering the last ``lanes + gap`` positions of an output row, overlapping
when ``gap < lanes`` (the overlap is computed twice from the same inputs and stored twice, same values).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .conv_direct import MICRO_VEC_BYTES
from .simd import address, float_array, vector_pointer


def register_microkernel(ob, nv, gapped=False, weight_step=False):
    """The micro-kernel intrinsic for ``ob`` output channels x ``nv`` vectors of positions (formula in
    the module docstring):
    ``microkernel(buf, starts, n_taps, p, wf, w0, bias, b0, n_rows, dst, d0, row_stride)``, with
    ``gapped`` one more argument ``gap``, the positions between consecutive vectors, and with
    ``weight_step`` one more argument ``w_step``, the distance between consecutive taps' weights.

    ``buf``, ``wf``, ``bias``, ``dst`` flat C-contiguous arrays of one float dtype, ``starts`` int64,
    ``0 < n_rows <= ob``; every index in range (no checks); ``dst`` does not overlap ``buf``."""

    def typed(buf, wf, bias, dst, sig):
        """The signature and code generator, or None for arguments of the wrong types."""
        if not (float_array(buf) and float_array(wf) and float_array(bias) and float_array(dst)
                and buf.dtype == wf.dtype == bias.dtype == dst.dtype):
            return None
        lanes = MICRO_VEC_BYTES * 8 // buf.dtype.bitwidth

        def codegen(context, builder, sig, args):
            buf_v, starts_v, nt_v, p_v, wf_v, w0_v, bias_v, b0_v, nr_v, dst_v, d0_v, rs_v = args[:12]
            i64 = ir.IntType(64)
            step = args[12] if gapped else ir.Constant(i64, lanes)
            w_step = args[-1] if weight_step else ir.Constant(i64, ob)
            vector_at = [builder.mul(step, ir.Constant(i64, v)) for v in range(nv)]  # positions after p / d0
            bits = buf.dtype.bitwidth
            align = bits // 8
            vty = ir.VectorType(context.get_value_type(buf.dtype), lanes)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                 f"llvm.fmuladd.v{lanes}f{bits}")
            undef = ir.Constant(vty, ir.Undefined)
            splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)

            def splat(value):
                return builder.shuffle_vector(builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0)),
                                              undef, splat_mask)

            def row_valid(o):
                return builder.icmp_signed("<", ir.Constant(i64, o), nr_v)

            accs = []
            for o in range(ob):
                # Rows past n_rows start from bias[b0] (any in-range value: they are never stored).
                b_index = builder.select(row_valid(o), builder.add(b0_v, ir.Constant(i64, o)), b0_v)
                start = splat(builder.load(address(context, builder, sig.args[6], bias_v, b_index)))
                accs.append([cgutils.alloca_once_value(builder, start) for _ in range(nv)])
            base = address(context, builder, sig.args[0], buf_v, p_v)
            with cgutils.for_range(builder, nt_v) as loop:
                t = loop.index
                offset = builder.load(address(context, builder, sig.args[1], starts_v, t))
                row = builder.gep(base, [offset], inbounds=True)
                xs = [builder.load(builder.bitcast(builder.gep(row, [vector_at[v]], inbounds=True),
                                                   vty.as_pointer()), align=align)
                      for v in range(nv)]
                w_base = builder.add(w0_v, builder.mul(t, w_step))
                for o in range(ob):
                    w = splat(builder.load(address(context, builder, sig.args[4], wf_v,
                                                   builder.add(w_base, ir.Constant(i64, o)))))
                    for v in range(nv):
                        builder.store(builder.call(fma, [xs[v], w, builder.load(accs[o][v])]), accs[o][v])
            for o in range(ob):
                with builder.if_then(row_valid(o), likely=True):
                    for v in range(nv):
                        index = builder.add(d0_v, builder.add(builder.mul(rs_v, ir.Constant(i64, o)), vector_at[v]))
                        builder.store(builder.load(accs[o][v]),
                                      vector_pointer(context, builder, sig.args[9], dst_v, index, lanes), align=align)
            return context.get_dummy_value()
        return sig, codegen

    if gapped and weight_step:
        raise NotImplementedError("a gapped micro-kernel with a weight step")
    if gapped:
        @intrinsic
        def microkernel(typingctx, buf, starts, n_taps, p, wf, w0, bias, b0, n_rows, dst, d0, row_stride, gap):
            return typed(buf, wf, bias, dst, types.void(buf, starts, n_taps, p, wf, w0, bias, b0, n_rows, dst, d0,
                                                        row_stride, gap))
    elif weight_step:
        @intrinsic
        def microkernel(typingctx, buf, starts, n_taps, p, wf, w0, bias, b0, n_rows, dst, d0, row_stride, w_step):
            return typed(buf, wf, bias, dst, types.void(buf, starts, n_taps, p, wf, w0, bias, b0, n_rows, dst, d0,
                                                        row_stride, w_step))
    else:
        @intrinsic
        def microkernel(typingctx, buf, starts, n_taps, p, wf, w0, bias, b0, n_rows, dst, d0, row_stride):
            return typed(buf, wf, bias, dst, types.void(buf, starts, n_taps, p, wf, w0, bias, b0, n_rows, dst, d0,
                                                        row_stride))
    return microkernel
