"""Direct convolution over a "tap list": the kernel behind ``conv2d(algo="direct")``.

Index algebra (done once, in ``fastconv.conv_layout``, not here). The padded input is rearranged into
*planes*: for stride ``(sh, sw)`` plane ``(c, a, b)`` holds ``xp[:, c, a::sh, b::sw]`` (space-to-depth;
with stride 1 a plane is simply channel ``c``). A plane stores every image back to back, each as
``rows x row_len`` values, so image ``n``, row ``i``, column ``j`` sits at ``n * plane_len + i * row_len + j``
(``plane_len = rows * row_len``). A tap ``(c, ky, kx)`` reads plane ``(c, (ky*dh) % sh, (kx*dw) % sw)`` at
flat offset ``((ky*dh) // sh) * row_len + (kx*dw) // sw``, and output ``(n, oy, ox)`` is the *virtual
position* ``p = n * plane_len + oy * row_len + ox``. So for every tap::

    out[o, p] += w[o, tap] * planes[plane(tap), p + offset(tap)]

a unit-stride, branch-free loop over ``p`` that runs across image borders, so small feature maps still
give long loops. Virtual positions outside the output (``ox >= OW`` or ``oy >= OH``) are computed and
discarded.

Register-blocked micro-kernel (:func:`tap_microkernel`, ``conv_taps_blocked``): a micro-tile of
``MR = 4`` output channels x ``NV = 3`` vectors of consecutive positions (24 float32 / 12 float64) keeps
its 12 accumulators in vector registers over *all* taps: per tap, 3 unaligned input loads, 4 weight
broadcasts and 12 fused multiply-adds (16 of AVX2's 16 registers). It is written as LLVM IR (an
intrinsic) so the accumulators are SSA values the register allocator keeps, never memory; one core runs
it at numpy's sgemm speed. The last micro-tile of the positions is shifted back to end at the last
position (it recomputes a few positions with the same taps in the same order: identical values), and
only the positions a work item owns are stored, with the bias, into ``out``.
``conv_taps_ob1`` (one output channel per item, for few channels per group) accumulates in an
L1-resident buffer instead (:mod:`tap_accumulate`).

Parallel ownership: one ``prange`` iteration = (group, tile of positions, run of output-channel blocks),
the run varying fastest so that the two threads work on the same input tile at the same time. It
writes only those output elements and sums taps in a fixed order: bit-identical results for every
thread count (the split depends on the shape only).
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import kernel, parallel_kernel
from .simd import VEC_BYTES, Vec, address, float_array, vector_pointer
from .tap_accumulate import accumulate_taps_1

MR = 4  # output channels per micro-tile
NV = 3  # vectors of positions per micro-tile: MR * NV = 12 accumulators + 3 inputs + 1 weight = 16 registers
TILE = 512  # virtual positions per work item of conv_taps_ob1: 512 accumulators
MICRO_TILES_PER_ITEM = 32  # micro-tiles per work item of conv_taps_blocked (768 float32 positions)


@intrinsic
def tap_microkernel(typingctx, xf, starts, t_lo, t_hi, p, wf, acc, a0, resume, of, o_base, o_stride, bias, b0,
                    n_rows):
    """``s[i, v * L + l] = (acc[i, a0 + v * L + l] if resume else 0) + sum_t wf[t * MR + i] *
    xf[starts[t] + p + v * L + l]`` for i < MR, v < NV, l < L lanes and taps t in ``[t_lo, t_hi)`` in
    order (fused multiply-adds); the 12 accumulators stay in registers for the whole tap loop.

    Then, with ``o_base < 0``: ``acc[i, a0 + ...] = s[i, ...]``; else the finished sums go straight to
    the output, ``of[o_base + i * o_stride + v * L + l] = s[i, v * L + l] + bias[b0 + i]`` for
    ``i < n_rows`` (a micro-tile inside one output row: no round trip through ``acc``).

    ``xf``, ``wf``, ``of``, ``bias`` flat and ``acc`` 2-D C-contiguous arrays of one float dtype,
    ``starts`` int64, ``resume`` a bool; every index in range (no checks).
    """
    if not (float_array(xf) and float_array(wf) and float_array(acc) and acc.ndim == 2 and float_array(of)
            and float_array(bias) and xf.dtype == wf.dtype == acc.dtype == of.dtype == bias.dtype):
        return None
    vt = Vec(xf.dtype)

    def codegen(context, builder, sig, args):
        xf_v, starts_v, lo_v, hi_v, p_v, wf_v, acc_v, a0_v, resume_v, of_v, ob_v, os_v, bias_v, b0_v, nr_v = args
        lanes, bits = vt.lanes, xf.dtype.bitwidth
        align = bits // 8
        vty = ir.VectorType(context.get_value_type(xf.dtype), lanes)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                             f"llvm.fmuladd.v{lanes}f{bits}")
        i64 = ir.IntType(64)
        acc_struct = context.make_array(sig.args[6])(context, builder, acc_v)
        row = cgutils.unpack_tuple(builder, acc_struct.shape, 2)[1]

        def acc_pointer(i, v):
            index = builder.add(a0_v, builder.add(builder.mul(row, ir.Constant(i64, i)), ir.Constant(i64, v * lanes)))
            return builder.bitcast(builder.gep(acc_struct.data, [index], inbounds=True), vty.as_pointer())

        accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * lanes)) for _ in range(NV)]
                for _ in range(MR)]
        with builder.if_then(builder.icmp_unsigned("!=", resume_v, ir.Constant(resume_v.type, 0))):
            for i in range(MR):
                for v in range(NV):
                    builder.store(builder.load(acc_pointer(i, v), align=align), accs[i][v])
        undef = ir.Constant(vty, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        with cgutils.for_range_slice(builder, lo_v, hi_v, ir.Constant(i64, 1)) as (t, _):
            base = builder.add(builder.load(address(context, builder, sig.args[1], starts_v, t)), p_v)
            xs = [builder.load(vector_pointer(context, builder, sig.args[0], xf_v,
                                              builder.add(base, ir.Constant(i64, v * lanes)), lanes), align=align)
                  for v in range(NV)]
            w_base = builder.mul(t, ir.Constant(i64, MR))
            for i in range(MR):
                w = builder.load(address(context, builder, sig.args[5], wf_v, builder.add(w_base, ir.Constant(i64, i))))
                wv = builder.shuffle_vector(builder.insert_element(undef, w, ir.Constant(ir.IntType(32), 0)),
                                            undef, splat)
                for v in range(NV):
                    builder.store(builder.call(fma, [wv, xs[v], builder.load(accs[i][v])]), accs[i][v])
        to_out = builder.icmp_signed(">=", ob_v, ir.Constant(ob_v.type, 0))
        with builder.if_else(to_out) as (then, otherwise):
            with then:
                for i in range(MR):
                    with builder.if_then(builder.icmp_signed(">", nr_v, ir.Constant(nr_v.type, i))):
                        b = builder.load(address(context, builder, sig.args[12], bias_v,
                                                 builder.add(b0_v, ir.Constant(i64, i))))
                        bv = builder.shuffle_vector(builder.insert_element(undef, b, ir.Constant(ir.IntType(32), 0)),
                                                    undef, splat)
                        row0 = builder.add(ob_v, builder.mul(os_v, ir.Constant(i64, i)))
                        for v in range(NV):
                            ptr = vector_pointer(context, builder, sig.args[9], of_v,
                                                 builder.add(row0, ir.Constant(i64, v * lanes)), lanes)
                            builder.store(builder.fadd(builder.load(accs[i][v]), bv), ptr, align=align)
            with otherwise:
                for i in range(MR):
                    for v in range(NV):
                        builder.store(builder.load(accs[i][v]), acc_pointer(i, v), align=align)
        return context.get_dummy_value()
    return types.void(xf, starts, t_lo, t_hi, p, wf, acc, a0, resume, of, o_base, o_stride, bias, b0, n_rows), codegen


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


@kernel
def _row_start(q, row_len, rows, oh, ow, mt, lo, hi):
    """Flat ``(n * O * oh + oy) * ow + ox`` offset pieces of a micro-tile at position ``q`` when its
    ``mt`` positions all lie in one output row and in ``[lo, hi)``: ``(n, oy, ox)``, else ``n = -1``."""
    grow = q // row_len
    n = grow // rows
    oy = grow - n * rows
    ox = q - grow * row_len
    if oy < oh and ox + mt <= ow and q >= lo and q + mt <= hi:
        return n, oy, ox
    return -1, 0, 0


@kernel
def _store_micro(acc, col0, of, c_out, oh, ow, bias, o_first, n_rows, qq, lo, hi, row_len, rows):
    """Positions ``[lo, hi)`` of a micro-tile computed at position ``qq`` into its columns ``col0 ..`` of
    ``acc`` (MR, W): into ``out[n, o_first + i, oy, ox]`` (``of`` flat) plus the bias, valid positions
    only, one output-row run at a time."""
    width = acc.shape[1]
    af = acc.reshape(-1)
    grow = lo // row_len
    while grow * row_len < hi:
        n = grow // rows
        oy = grow - n * rows
        q = grow * row_len
        if oy < oh:
            s0 = max(lo, q)
            s1 = min(hi, q + ow)
            for i in range(n_rows):
                b = bias[o_first + i]
                dst = ((n * c_out + o_first + i) * oh + oy) * ow - q
                src = i * width + col0 - qq
                for pos in range(s0, s1):
                    of[np.uint64(dst + pos)] = af[np.uint64(src + pos)] + b
        grow += 1


@parallel_kernel
def conv_taps_blocked(planes, starts, wpk, bias, out, row_len, rows, blocks_per_item, chunk_taps):
    """Direct convolution with the register-blocked :func:`tap_microkernel`.

    Contract (caller guarantees):
    - ``planes``: (G * planes_per_group, L), C-contiguous, one float dtype; with
      ``npos = (N - 1) * rows * row_len + OH * row_len`` and ``mt = NV * lanes``: every read
      ``group_base + p + starts[t]`` for ``p < max(npos, mt)`` inside the array.
    - ``starts``: int64 (T,), ``tap_plane[t] * L + tap_off[t]`` (relative to the group's first plane).
    - ``wpk``: (G, n_blocks, T, MR) packed weights, zero for channels beyond O / G.
    - ``bias``: (O,) (zeros when the user gave none); ``out``: (N, O, OH, OW), OW <= row_len, OH <= rows.
    - ``blocks_per_item`` >= 1: channel blocks per work item (depends on the shape only).
    - ``chunk_taps`` >= 1: taps per pass over a work item's positions (partial sums wait in ``acc``):
      the pass's weights and input rows stay in L1. Sums run in tap order whatever the chunking.
    """
    n_groups, n_blocks, n_taps, _ = wpk.shape
    plane_len = planes.shape[1]
    planes_per_group = planes.shape[0] // n_groups
    xf = planes.reshape(-1)
    n_batch, c_out, oh, ow = out.shape
    of = out.reshape(-1)
    o_per_group = c_out // n_groups
    npos = (n_batch - 1) * rows * row_len + oh * row_len
    mt = NV * (VEC_BYTES // planes.itemsize)
    tile = mt * MICRO_TILES_PER_ITEM
    n_tiles = (npos + tile - 1) // tile
    n_runs = (n_blocks + blocks_per_item - 1) // blocks_per_item
    n_micro = (tile + mt - 1) // mt
    for item in prange(n_groups * n_tiles * n_runs):
        run = item % n_runs
        rest = item // n_runs
        p0 = (rest % n_tiles) * tile
        g = rest // n_tiles
        p_end = min(p0 + tile, npos)
        group_base = g * planes_per_group * plane_len
        acc = np.empty((MR, n_micro * mt), dtype=out.dtype)  # one column range per micro-tile
        for blk in range(run * blocks_per_item, min(n_blocks, (run + 1) * blocks_per_item)):
            wf = wpk[g, blk].reshape(-1)
            o_first = g * o_per_group + blk * MR
            n_rows = min(MR, o_per_group - blk * MR)
            for t0 in range(0, n_taps, chunk_taps):
                t1 = min(n_taps, t0 + chunk_taps)
                for q in range(p0, p_end, mt):
                    qq = max(0, min(q, npos - mt))
                    o_base = -1
                    if t1 == n_taps:  # last pass: micro-tiles inside one output row store directly
                        n, oy, ox = _row_start(qq, row_len, rows, oh, ow, mt, p0, p_end)
                        if n >= 0:
                            o_base = ((n * c_out + o_first) * oh + oy) * ow + ox
                    tap_microkernel(xf, starts, t0, t1, group_base + qq, wf, acc, q - p0, t0 > 0, of, o_base,
                                    oh * ow, bias, o_first, n_rows)
            for q in range(p0, p_end, mt):
                qq = max(0, min(q, npos - mt))
                if _row_start(qq, row_len, rows, oh, ow, mt, p0, p_end)[0] < 0:
                    _store_micro(acc, q - p0, of, c_out, oh, ow, bias, o_first, n_rows, qq, q, min(q + mt, p_end),
                                 row_len, rows)


@parallel_kernel(fastmath={"contract"})
def conv_taps_ob1(planes, tap_plane, tap_off, wpk, bias, out, row_len, rows):
    """Direct convolution, one output channel per work item (depthwise and few channels per group).

    Contract: ``planes`` as for :func:`conv_taps_blocked`, every read ``p + tap_off[t]`` for ``p < npos``
    inside the array (no minimum ``npos``); ``tap_plane``, ``tap_off``: int64 (T,), T a multiple of 3
    (padding taps have zero weight), ``tap_plane`` relative to the group's first plane; ``wpk`` (G, O / G,
    T, 1); ``bias``, ``out`` as for :func:`conv_taps_blocked`.
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
