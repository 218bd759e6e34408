"""Direct convolution over a "tap list": the kernels behind ``conv2d(algo="direct")``.

Index algebra (done once, in ``fastconv.conv_layout``, not here). The padded input is stored as
*planes*, one per channel, every image back to back as ``rows x row_len`` values (image ``n``, row ``i``,
column ``j`` at ``n * plane_len + i * row_len + j``, ``plane_len = rows * row_len``). Output
``(n, oy, ox)`` reads every tap relative to its *virtual position*
``p = n * plane_len + oy * sh * row_len + ox * sw``, and tap ``(c, ky, kx)`` sits in plane ``c`` at
offset ``ky * dh * row_len + kx * dw``. So for every tap::

    out[o, (n, oy, ox)] += w[o, tap] * planes[c(tap), p(n, oy, ox) + offset(tap)]

Register-blocked micro-kernel (:func:`tap_microkernel`, ``conv_taps_blocked``): a micro-tile of
``NP`` output positions x ``MV = 2`` vectors of output channels keeps its accumulators in vector
registers over the taps: per tap 2 loads of packed weights, ``NP`` broadcasts of one input value per
position and ``2 * NP`` fused multiply-adds. With AVX2 that is 6 positions x 16 float32 (8 float64)
channels, 15 of the 16 registers; with AVX-512 8 positions x 32 float32 (16 float64) channels. The
positions are any ``NP`` outputs, each read through its own virtual position (a table per work item), so a micro-tile
never spends work on the padding columns between rows or the rows between images, the stride costs
no space-to-depth copy, and broadcasts never straddle cache lines. A work item's outputs run in flat
``(n, oy, ox)`` order; its last micro-tile repeats the last position (computed twice, stored once).
Taps run in chunks (partial sums wait in a per-item buffer, in tap order whatever the chunking); in
the last pass a micro-tile inside one image stores its sums plus the bias straight from the registers,
transposed there (each output channel's ``NP`` positions are contiguous in ``out``); the others go
through the buffer and :func:`_store_block`.

With zero padding the planes are per-item tiles instead (``conv_direct_tiles.py``: same positions and
taps, no padded copy of the whole input). Fewer than 4 output channels per group (a 16- or 32-channel
block would be mostly padding) take ``conv_few`` instead (``conv_few.py``).

Parallel ownership: a work item = (group, tile of output positions, run of output-channel blocks),
the run varying fastest so that consecutive items share their input tile. An item writes only those
output elements and sums taps in a fixed order; items are claimed dynamically (:mod:`.claim`: each
thread takes its own range in order, then helps with the other's), and results are bit-identical for
every thread count and split (the items depend on the shape only).
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import inline, kernel, parallel_kernel
from .claim import next_item, range_counters
from .simd import HAS_AVX512, VEC_BYTES, address, float_array, shuffle_mask, transpose_rows, vector_pointer

# The micro-tile: MV vectors of output channels x NP positions, MV * NP accumulators in registers.
# AVX2 (16 registers of 32 bytes): 6 x 16 float32 channels, 12 accumulators + 2 weights + 1 broadcast.
# AVX-512 (32 registers of 64 bytes): 8 x 32 channels, 16 accumulators. More positions spill: each
# position keeps its own input pointer in a general-purpose register (16 of them), and at 10, 12 or
# 14 positions L2-L5 ran at 0.55-0.8x the 8-position speed (measured on Zen 4, two threads; 6, 7, 9
# positions: 0.93-1.0x). 8 x 32 against AVX2's 6 x 16: L2 / L4 / L5 1.15-1.25x, L3 1.1x.
MICRO_VEC_BYTES = 64 if HAS_AVX512 else VEC_BYTES
MV = 2  # vectors of output channels per micro-tile
NP = 8 if HAS_AVX512 else 6  # output positions per micro-tile
MICRO_TILES_PER_ITEM = 32  # micro-tiles per work item of conv_taps_blocked (NP * 32 output positions)


def channel_block(itemsize):
    """Output channels per micro-tile of :func:`conv_taps_blocked`: ``MV`` vectors (16 float32, 8 float64)."""
    return MV * MICRO_VEC_BYTES // itemsize


@intrinsic
def tap_microkernel(typingctx, xf, starts, t_lo, t_hi, pix, k0, wf, acc, a0, resume, of, o_base, o_stride, bias,
                    b0, n_rows):
    """``s[j, c] = (acc[a0 + j * B + c] if resume else 0) + sum_t xf[pix[k0 + j] + starts[t]] * wf[t * B + c]``
    for positions ``j < NP``, channels ``c < B = MV * lanes`` and taps t in ``[t_lo, t_hi)`` in order
    (fused multiply-adds); the ``MV * NP`` accumulators stay in registers for the whole tap loop.

    Then, with ``o_base < 0``: ``acc[a0 + j * B + c] = s[j, c]``; else the finished sums go straight to
    the output, transposed in registers: ``of[o_base + c * o_stride + j] = s[j, c] + bias[b0 + c]`` for
    ``c < n_rows`` (the ``NP`` positions contiguous in one image's output rows: no round trip through ``acc``
    and no separate store pass).

    ``xf``, ``wf``, ``acc``, ``of``, ``bias`` flat C-contiguous arrays of one float dtype (``bias`` holds
    ``B`` values from ``b0``), ``starts`` and ``pix`` int64, ``resume`` a bool; every index in range (no
    checks).
    """
    if not (float_array(xf) and float_array(wf) and float_array(acc) and float_array(of) and float_array(bias)
            and xf.dtype == wf.dtype == acc.dtype == of.dtype == bias.dtype):
        return None
    micro_lanes = MICRO_VEC_BYTES * 8 // xf.dtype.bitwidth

    def codegen(context, builder, sig, args):
        (xf_v, starts_v, lo_v, hi_v, pix_v, k0_v, wf_v, acc_v, a0_v, resume_v, of_v, ob_v, os_v, bias_v, b0_v,
         nr_v) = args
        lanes, bits = micro_lanes, xf.dtype.bitwidth
        align = bits // 8
        block = MV * lanes
        vty = ir.VectorType(context.get_value_type(xf.dtype), lanes)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                             f"llvm.fmuladd.v{lanes}f{bits}")
        i64 = ir.IntType(64)

        def acc_pointer(j, v):
            index = builder.add(a0_v, ir.Constant(i64, j * block + v * lanes))
            return vector_pointer(context, builder, sig.args[7], acc_v, index, lanes)

        # Each position's input pointer, so a tap costs one offset load for all ``NP`` broadcasts.
        bases = [address(context, builder, sig.args[0], xf_v,
                         builder.load(address(context, builder, sig.args[4], pix_v,
                                              builder.add(k0_v, ir.Constant(i64, j)))))
                 for j in range(NP)]
        accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * lanes)) for _ in range(MV)]
                for _ in range(NP)]
        with builder.if_then(builder.icmp_unsigned("!=", resume_v, ir.Constant(resume_v.type, 0))):
            for j in range(NP):
                for v in range(MV):
                    builder.store(builder.load(acc_pointer(j, v), align=align), accs[j][v])
        undef = ir.Constant(vty, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        with cgutils.for_range_slice(builder, lo_v, hi_v, ir.Constant(i64, 1)) as (t, _):
            offset = builder.load(address(context, builder, sig.args[1], starts_v, t))
            w_base = builder.mul(t, ir.Constant(i64, block))
            ws = [builder.load(vector_pointer(context, builder, sig.args[6], wf_v,
                                              builder.add(w_base, ir.Constant(i64, v * lanes)), lanes), align=align)
                  for v in range(MV)]
            for j in range(NP):
                x = builder.load(builder.gep(bases[j], [offset], inbounds=True))
                xv = builder.shuffle_vector(builder.insert_element(undef, x, ir.Constant(ir.IntType(32), 0)),
                                            undef, splat)
                for v in range(MV):
                    builder.store(builder.call(fma, [xv, ws[v], builder.load(accs[j][v])]), accs[j][v])
        with builder.if_else(builder.icmp_signed(">=", ob_v, ir.Constant(ob_v.type, 0))) as (to_out, to_acc):
            with to_out:
                _store_transposed(context, builder, sig, accs, of_v, ob_v, os_v, bias_v, b0_v, nr_v, lanes, align)
            with to_acc:
                for j in range(NP):
                    for v in range(MV):
                        builder.store(builder.load(accs[j][v]), acc_pointer(j, v), align=align)
        return context.get_dummy_value()
    return (types.void(xf, starts, t_lo, t_hi, pix, k0, wf, acc, a0, resume, of, o_base, o_stride, bias, b0, n_rows),
            codegen)


def _store_transposed(context, builder, sig, accs, of_v, ob_v, os_v, bias_v, b0_v, nr_v, lanes, align):
    """IR of ``of[o_base + c * o_stride + j] = accs[j][c // lanes][c % lanes] + bias[b0 + c]`` for
    ``j < NP`` and channels ``c < n_rows``: positions in groups of ``lanes``, each group transposed in
    registers (missing rows undefined), then each channel's run of positions stored in power-of-two
    pieces."""
    i64 = ir.IntType(64)
    vty = accs[0][0].type.pointee
    undef = ir.Constant(vty, ir.Undefined)
    of_ty, bias_ty = sig.args[10], sig.args[13]
    for v in range(MV):
        b = builder.load(vector_pointer(context, builder, bias_ty, bias_v,
                                        builder.add(b0_v, ir.Constant(i64, v * lanes)), lanes), align=align)
        for g0 in range(0, NP, lanes):
            count = min(lanes, NP - g0)
            rows = [builder.load(accs[j][v]) for j in range(g0, g0 + count)] + [undef] * (lanes - count)
            for c, row in enumerate(transpose_rows(builder, rows)):
                with builder.if_then(builder.icmp_signed(">", nr_v, ir.Constant(nr_v.type, v * lanes + c))):
                    row = builder.fadd(row, builder.shuffle_vector(b, undef, shuffle_mask([c] * lanes)))
                    dst = builder.add(ob_v, builder.add(builder.mul(os_v, ir.Constant(i64, v * lanes + c)),
                                                        ir.Constant(i64, g0)))
                    done = 0
                    while done < count:
                        piece = 1 << ((count - done).bit_length() - 1)
                        part = row if piece == lanes else builder.shuffle_vector(
                            row, undef, shuffle_mask(range(done, done + piece)))
                        ptr = builder.bitcast(address(context, builder, of_ty, of_v,
                                                      builder.add(dst, ir.Constant(i64, done))),
                                              part.type.as_pointer())
                        builder.store(part, ptr, align=align)
                        done += piece


@kernel
def virtual_positions(pix, m0, m_end, base, oh, ow, plane_len, row_step, col_step):
    """``pix[k] = base + n * plane_len + oy * row_step + ox * col_step`` of flat output ``m0 + k``
    (``m = n * OH * OW + oy * OW + ox``) for ``m < m_end``; the rest of ``pix`` repeats the last one."""
    ohw = oh * ow
    n = m0 // ohw
    oy = (m0 - n * ohw) // ow
    ox = m0 - n * ohw - oy * ow
    count = m_end - m0
    for k in range(count):
        pix[k] = base + n * plane_len + oy * row_step + ox * col_step
        ox += 1
        if ox == ow:
            ox = 0
            oy += 1
            if oy == oh:
                oy = 0
                n += 1
    for k in range(count, pix.size):
        pix[k] = pix[count - 1]


@kernel
def _store_block(acc, of, bias, m0, m_lo, m_end, ohw, c_out, o_first, n_rows, b0):
    """``out[n, o_first + i, s] = acc[(m - m0) * B + i] + bias[b0 + i]`` for flat outputs
    ``m = n * OH * OW + s`` in ``[m_lo, m_end)`` and ``i < n_rows`` (``of`` flat, ``acc`` (positions, B)).
    Scalar copies: only the rare micro-tile that straddles two images (or ends a work item short) comes
    here, at most ``NP`` positions."""
    block = acc.shape[1]
    af = acc.reshape(-1)
    m = m_lo
    while m < m_end:
        n = m // ohw
        seg_end = min(m_end, (n + 1) * ohw)
        dst0 = (n * c_out + o_first) * ohw - n * ohw  # + i * ohw + mm: out[n, o_first + i, mm - n * ohw]
        src0 = -m0 * block  # + mm * block + i: acc[mm - m0, i]
        for i in range(n_rows):
            b = bias[b0 + i]
            for mm in range(m, seg_end):
                of[np.uint64(dst0 + i * ohw + mm)] = af[np.uint64(src0 + mm * block + i)] + b
        m = seg_end


@parallel_kernel
def conv_taps_blocked(xf, plane_stride, planes_per_group, image_stride, starts, wpk, bpk, out, row_len, sh, sw,
                      blocks_per_item, chunk_taps, workers):
    """Direct convolution with the register-blocked :func:`tap_microkernel`.

    Contract (caller guarantees):
    - ``xf``: 1-D, C-contiguous, one float dtype: the (padded) input, one plane per channel, channel ``c``
      from ``c * plane_stride`` (``planes_per_group`` channels per group; no space-to-depth: the stride
      ``(sh, sw)`` steps the positions instead), image ``n`` row ``i`` column ``j`` at
      ``n * image_stride + i * row_len + j`` within its plane: padded planes (images back to back,
      ``image_stride = rows * row_len``) or, for an unpadded problem, the NCHW input itself
      (``plane_stride = H * W``, ``image_stride = C * H * W``, ``row_len = W``). Every read
      ``group_base + n * image_stride + oy * sh * row_len + ox * sw + starts[t]`` inside the array.
    - ``starts``: int64 (T,), ``tap_plane[t] * plane_stride + tap_off[t]`` (relative to the group's first
      plane).
    - ``wpk``: (G, n_blocks, T, B) packed weights, ``B = channel_block(itemsize)``, zero for channels
      beyond O / G; ``bpk``: (G, n_blocks, B) the bias packed likewise (zeros when the user gave none).
    - ``out``: (N, O, OH, OW).
    - ``blocks_per_item`` >= 1: channel blocks per work item (depends on the shape only).
    - ``chunk_taps`` >= 1: taps per pass over a work item's positions (partial sums wait in ``acc``):
      the pass's weights stay in L1. Sums run in tap order whatever the chunking.
    - ``workers`` >= 1: the number of threads (one ``prange`` iteration each; see :mod:`.claim`).
    """
    n_groups, n_blocks, n_taps, block = wpk.shape
    n_batch, c_out, oh, ow = out.shape
    tile = NP * MICRO_TILES_PER_ITEM
    n_tiles = (n_batch * oh * ow + tile - 1) // tile
    n_runs = (n_blocks + blocks_per_item - 1) // blocks_per_item
    n_items = n_groups * n_tiles * n_runs
    counters = range_counters(n_items, workers)
    for worker in prange(workers):
        pix = np.empty(tile, dtype=np.int64)
        acc = np.empty((tile, block), dtype=out.dtype)
        item, used = next_item(counters, worker, 0, workers, n_items)
        while item >= 0:
            _blocked_item(xf, plane_stride, planes_per_group, image_stride, starts, wpk, bpk, out, row_len, sh, sw,
                          blocks_per_item, chunk_taps, item, pix, acc)
            item, used = next_item(counters, worker, used, workers, n_items)


@inline
def split_item(item, n_runs, n_tiles, tile):
    """``(group, first index of its tile, run)`` of work item ``item = (group * n_tiles + tile_index) *
    n_runs + run``: the run (of channel blocks) varies fastest, so consecutive items share their tile."""
    run = item % n_runs
    rest = item // n_runs
    return rest // n_tiles, (rest % n_tiles) * tile, run


@inline
def _blocked_item(xf, plane_stride, planes_per_group, image_stride, starts, wpk, bpk, out, row_len, sh, sw,
                  blocks_per_item, chunk_taps, item, pix, acc):
    """Work item ``item`` of :func:`conv_taps_blocked`: (group, tile of output positions, run of channel
    blocks), the run varying fastest so that consecutive items share their input tile. ``pix`` (tile,)
    and ``acc`` (tile, B): the calling thread's scratch."""
    n_blocks = wpk.shape[1]
    n_batch, c_out, oh, ow = out.shape
    m_total = n_batch * oh * ow
    tile = NP * MICRO_TILES_PER_ITEM
    n_tiles = (m_total + tile - 1) // tile
    n_runs = (n_blocks + blocks_per_item - 1) // blocks_per_item
    g, m0, run = split_item(item, n_runs, n_tiles, tile)
    m_end = min(m0 + tile, m_total)
    virtual_positions(pix, m0, m_end, g * planes_per_group * plane_stride, oh, ow, image_stride, sh * row_len, sw)
    blocked_positions(xf, starts, wpk, bpk, out, g, run * blocks_per_item, min(n_blocks, (run + 1) * blocks_per_item),
                      m0, m_end, chunk_taps, pix, acc)


@inline
def blocked_positions(xf, starts, wpk, bpk, out, g, blk_lo, blk_hi, m0, m_end, chunk_taps, pix, acc):
    """Flat outputs ``m0 .. m_end - 1`` (``m = n * OH * OW + oy * OW + ox``) of group ``g``, channel blocks
    ``blk_lo .. blk_hi - 1``, each position ``m0 + k`` reading ``xf[pix[k] + starts[t]]`` for its taps;
    ``pix`` covers the micro-tiles (the last one padded by repeating a position) and ``acc`` their
    partial sums (the calling thread's scratch)."""
    n_groups, n_blocks, n_taps, block = wpk.shape
    bf = bpk.reshape(-1)
    n_batch, c_out, oh, ow = out.shape
    ohw = oh * ow
    of = out.reshape(-1)
    af = acc.reshape(-1)
    o_per_group = c_out // n_groups
    n_micro = (m_end - m0 + NP - 1) // NP
    for blk in range(blk_lo, blk_hi):
        wf = wpk[g, blk].reshape(-1)
        o_first = g * o_per_group + blk * block
        n_rows = min(block, o_per_group - blk * block)
        b0 = (g * n_blocks + blk) * block
        for t0 in range(0, n_taps, chunk_taps):
            t1 = min(n_taps, t0 + chunk_taps)
            n = m0 // ohw  # image of the micro-tile's first position, advanced as the tiles go
            for k in range(n_micro):
                m = m0 + k * NP
                while m >= (n + 1) * ohw:
                    n += 1
                # The last pass stores from registers when the ``NP`` positions are whole outputs of one
                # image (contiguous in its rows); the rest (a tile across two images, the item's last
                # partial tile) goes through ``acc``.
                o_base = -1
                if t1 == n_taps and m + NP <= min(m_end, (n + 1) * ohw):
                    o_base = (n * c_out + o_first) * ohw + m - n * ohw
                tap_microkernel(xf, starts, t0, t1, pix, k * NP, wf, af, k * NP * block, t0 > 0, of, o_base,
                                ohw, bf, b0, n_rows)
                if t1 == n_taps and o_base < 0:
                    _store_block(acc, of, bf, m0, m, min(m + NP, m_end), ohw, c_out, o_first, n_rows, b0)
