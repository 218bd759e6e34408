"""Pooling kernels: windowed max / average (``max_pool2d``, ``avg_pool2d``) and pooling over explicit bins
(``adaptive_*_pool2d``, ``spatial_pyramid_pool2d``).

Index algebra (done once here; the shape maths is in ``fastconv.shapes``, "Pooling" section).

*Windowed pools.* Output ``(oy, ox)`` of a plane reads input cells
``iy = oy * sh - top + ky * dh``, ``ix = ox * sw - left + kx * dw`` for ``ky < kh``, ``kx < kw``; cells
outside ``[0, ih) x [0, iw)`` are padding (max: implicit -inf; average: zeros that only count in the
divisor). No padded copy of the input is made. For a row ``oy`` the valid taps are
``ky in [ceil(-y0 / dh), ceil((ih - y0) / dh))`` with ``y0 = oy * sh - top``. The reduction is separable::

    s[left + ix] = op over valid ky of x[iy, ix]            column pass, unit stride
    out[oy, ox]  = op over kx of s[ox * sw + kx * dw]        row pass, kept positions only
    (/ divisor for averages)

``s`` is a per-thread scratch row whose ``left`` leading and trailing cells hold op's identity (-inf or
0), so edge windows need no special case. Both passes run on explicit vectors (see "Explicit SIMD"
below): a chunk of ``LANES`` consecutive cells per operation, the last chunk of a row shifted back to end
at the row's end. Column passes over 2 or 3 rows and undilated row passes of 2 or 3 taps at stride 1
or 2 are fused (one store per cell), any other count of rows / taps is a loop inside one intrinsic
(``_vreduce``); a stride-2 tap is a load of 2 * LANES cells keeping the even (or odd) ones; strides
above 2 and rows shorter than LANES take a scalar loop. Max values are exact in any order (only which of
tied -0.0 / 0.0, or which NaN payload, is returned depends on it); sums go column by column (ky order),
then across the row (kx order), exactly as before the vectorisation. Full non-overlapping 2x2 / stride 2
windows (the common VGG / ResNet pool) skip the scratch row: one fused pass over the two input rows
(``pool2x2_kernel``, row-major window order). The max-with-indices kernel instead visits taps one by
one over clipped ranges (``kx`` tap at input offset ``off = kx * dw - left`` is read by ``ox in
[ceil(-off / sw), ceil((iw - off) / sw))``) in row-major window order, so ties keep the first maximum;
full 2x2 / stride 2 windows take ``pool2x2_indices_kernel`` (taps unrolled).

*Bin pools.* Output bin ``(i, j)`` of level ``l`` reads the rectangle
``[row_bins[r, 0], row_bins[r, 1]) x [col_bins[q, 0], col_bins[q, 1])`` with ``r = row_off[l] + i``,
``q = col_off[l] + j`` and is written to ``out[n, out_off[l] + c * lh * lw + i * lw + j]`` (the SPP
layout; ``adaptive_*_pool2d`` is the one-level case with ``out`` viewed as ``(N, C * OH * OW)``).
The max kernel for many planes (``bin_max_lanes_kernel``) works on groups of ``LANES`` planes: per plane,
vector column maxima over every *band* (the input rows of a bin row) of the levels it computes from the
input; the group's band maxima are transposed (LANES x LANES blocks) so that one vector holds one cell of
``LANES`` planes; then every bin is a vector max over its columns, and a level whose bins are exact
unions of another level's bins (e.g. level 2 from level 4 on 13x13, where the adaptive bins nest) is a
vector max over those bins, without touching the input again. Results go back through the same
transposition into the SPP layout.

NaN semantics (PyTorch): an element replaces the running maximum when ``v > m or v != v``: a NaN in the
window gives NaN, and its index is the *last* NaN in window order. No fastmath in max kernels.

Parallel ownership: one work item = one (plane, block of output rows) for windowed pools,
one (plane, block of bin rows, all levels) or one group of LANES planes for bin pools. It writes only
those output (and index) elements, reads the input, and accumulates in a fixed order: bit-identical
results for any thread count. ``row_blocks`` (>= 1, chosen by the wrapper) splits each plane's (bin)
rows so a single image still feeds every thread. Scratch rows are per thread (``get_thread_id()``, or
the worker index). The two kernels of the benchmark cases (``pool2x2_kernel``, ``window_pool2d_kernel``)
hand their items out dynamically (:mod:`.claim`, ``workers`` = the thread count); the others run one
static ``prange`` share per thread.

Contract (caller guarantees, every kernel): ``x`` is (N, C, H, W), C-contiguous, float32 or float64;
``out`` has x's dtype, C-contiguous, the documented shape; index arrays are int64, C-contiguous; all
sizes and steps are Python ints >= 1 (paddings >= 0); every window/bin holds at least one input cell.
"""

import numpy as np
from llvmlite import ir
from numba import get_thread_id, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import inline, kernel, parallel_kernel
from .claim import next_item, range_counters
from .simd import (HAS_AVX, VEC_BYTES, Vec, data_address, float_array, shuffle_mask, store_fence, vadd, vdiv, vec_lanes,
                   vevens, vodds, vshift_back, vshift_dup, vshift_in,
                   vector_pointer, viota, vlow_halves, vload, vload_even, vload_odd, vmul, vpick, vsplat, vstore,
                   vstore_int64, vstore_stream, vswap_halves)

NEG_INF = -np.inf


# Helpers inlined into their jitted callers (numba IR inlining): no dispatcher of its own, so no
# specialisations to count, and literal flag arguments fold into the caller's loops.
kernel_inline = inline


# Explicit SIMD (see ``simd.py``): NaN-propagating max, reductions, block transposes.

def _vmax_ir(builder, m, v, vec_type):
    """IR of :func:`_vmax`."""
    if HAS_AVX and vec_type.lanes * vec_type.dtype.bitwidth == 256:
        name = "llvm.x86.avx.max.ps.256" if vec_type.dtype.bitwidth == 32 else "llvm.x86.avx.max.pd.256"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(m.type, [m.type, m.type]), name)
        r = builder.call(fn, [v, m])
    else:
        r = builder.select(builder.fcmp_ordered(">", v, m), v, m)
    return builder.select(builder.fcmp_unordered("uno", v, v), v, r)


@intrinsic
def _vmax(typingctx, m, v):
    """NaN-propagating max, as :func:`_nanmax` lane by lane: ``v > m ? v : m``, then ``v`` if ``v`` is NaN.

    On AVX the first select is the ``maxps`` instruction itself (same rule: the second operand on ties
    and NaN), called as an opaque intrinsic: written as two selects, LLVM merges them into one select on
    ``v > m or v != v``, which costs a compare and an or more (4 instructions instead of 3).
    """
    if not isinstance(m, Vec) or m != v:
        return None
    return m(m, v), lambda context, builder, sig, args: _vmax_ir(builder, args[0], args[1], sig.args[0])


@intrinsic
def _vreduce(typingctx, arr, start, count, step, is_max, strided):
    """``op over k < count (in order) of V(start + k * step)``, ``op`` max (NaN-propagating, as
    :func:`_vmax`) or sum, ``V(i)`` the vector at ``arr.flat[i]`` or, with ``strided``, its even cells
    ``arr.flat[i + 2 * l]`` (:func:`vload_even`). ``count >= 1``; ``is_max`` and ``strided`` literals.

    The loop is in the intrinsic's IR: a numba loop around the vector accumulator, inside a helper that
    is inlined into a loop, keeps the helper's array reference counting (two atomic calls per array per
    chunk) that numba prunes from straight-line code; it made such chunks 10x slower.
    """
    if not (float_array(arr) and isinstance(is_max, types.BooleanLiteral)
            and isinstance(strided, types.BooleanLiteral)):
        return None
    vt = Vec(arr.dtype)

    def codegen(context, builder, sig, args):
        arr_v, start_v, count_v, step_v = args[:4]
        lanes = vt.lanes
        align = arr.dtype.bitwidth // 8

        def load(index):
            if not strided.literal_value:
                return builder.load(vector_pointer(context, builder, sig.args[0], arr_v, index, lanes), align=align)
            wide = builder.load(vector_pointer(context, builder, sig.args[0], arr_v, index, 2 * lanes), align=align)
            return builder.shuffle_vector(wide, ir.Constant(wide.type, ir.Undefined), shuffle_mask(range(0, 2 * lanes, 2)))

        acc = cgutils.alloca_once_value(builder, load(start_v))
        one = ir.Constant(count_v.type, 1)
        with cgutils.for_range(builder, builder.sub(count_v, one)) as loop:
            index = builder.add(start_v, builder.mul(builder.add(loop.index, one), step_v))
            value = load(index)
            old = builder.load(acc)
            new_acc = _vmax_ir(builder, old, value, vt) if is_max.literal_value else builder.fadd(old, value)
            builder.store(new_acc, acc)
        return builder.load(acc)
    return vt(arr, start, count, step, is_max, strided), codegen


# Shuffle network transposing a lanes x lanes block in log2(lanes) stages of two-source shuffles (the
# usual AVX sequence: unpack lo/hi, 64-bit shuffles, 128-bit lane permutes). Entry: (a, b, mask) over a ++ b.
_TRANSPOSE_STAGES = {
    8: [
        [(0, 1, (0, 8, 1, 9, 4, 12, 5, 13)), (0, 1, (2, 10, 3, 11, 6, 14, 7, 15)),
         (2, 3, (0, 8, 1, 9, 4, 12, 5, 13)), (2, 3, (2, 10, 3, 11, 6, 14, 7, 15)),
         (4, 5, (0, 8, 1, 9, 4, 12, 5, 13)), (4, 5, (2, 10, 3, 11, 6, 14, 7, 15)),
         (6, 7, (0, 8, 1, 9, 4, 12, 5, 13)), (6, 7, (2, 10, 3, 11, 6, 14, 7, 15))],
        [(0, 2, (0, 1, 8, 9, 4, 5, 12, 13)), (0, 2, (2, 3, 10, 11, 6, 7, 14, 15)),
         (1, 3, (0, 1, 8, 9, 4, 5, 12, 13)), (1, 3, (2, 3, 10, 11, 6, 7, 14, 15)),
         (4, 6, (0, 1, 8, 9, 4, 5, 12, 13)), (4, 6, (2, 3, 10, 11, 6, 7, 14, 15)),
         (5, 7, (0, 1, 8, 9, 4, 5, 12, 13)), (5, 7, (2, 3, 10, 11, 6, 7, 14, 15))],
        [(0, 4, (0, 1, 2, 3, 8, 9, 10, 11)), (1, 5, (0, 1, 2, 3, 8, 9, 10, 11)),
         (2, 6, (0, 1, 2, 3, 8, 9, 10, 11)), (3, 7, (0, 1, 2, 3, 8, 9, 10, 11)),
         (0, 4, (4, 5, 6, 7, 12, 13, 14, 15)), (1, 5, (4, 5, 6, 7, 12, 13, 14, 15)),
         (2, 6, (4, 5, 6, 7, 12, 13, 14, 15)), (3, 7, (4, 5, 6, 7, 12, 13, 14, 15))],
    ],
    4: [
        [(0, 1, (0, 4, 2, 6)), (0, 1, (1, 5, 3, 7)), (2, 3, (0, 4, 2, 6)), (2, 3, (1, 5, 3, 7))],
        [(0, 2, (0, 1, 4, 5)), (1, 3, (0, 1, 4, 5)), (0, 2, (2, 3, 6, 7)), (1, 3, (2, 3, 6, 7))],
    ],
}


@intrinsic
def _transpose_block(typingctx, src, src_off, src_stride, dst, dst_off, dst_stride):
    """``dst.flat[dst_off + k * dst_stride + l] = src.flat[src_off + l * src_stride + k]`` for k, l < lanes:
    lanes unaligned vector loads, the shuffle network, lanes unaligned vector stores."""
    if not (float_array(src) and float_array(dst) and src.dtype == dst.dtype):
        return None
    lanes = VEC_BYTES * 8 // src.dtype.bitwidth

    def codegen(context, builder, sig, args):
        s_arr, s_off, s_stride, d_arr, d_off, d_stride = args
        align = src.dtype.bitwidth // 8
        rows = []
        for k in range(lanes):
            index = builder.add(s_off, builder.mul(s_stride, ir.Constant(s_stride.type, k)))
            rows.append(builder.load(vector_pointer(context, builder, sig.args[0], s_arr, index, lanes), align=align))
        for stage in _TRANSPOSE_STAGES[lanes]:
            rows = [builder.shuffle_vector(rows[a], rows[b], shuffle_mask(m)) for a, b, m in stage]
        for k in range(lanes):
            index = builder.add(d_off, builder.mul(d_stride, ir.Constant(d_stride.type, k)))
            builder.store(rows[k], vector_pointer(context, builder, sig.args[3], d_arr, index, lanes), align=align)
        return context.get_dummy_value()
    return types.void(src, src_off, src_stride, dst, dst_off, dst_stride), codegen


# ------------------------------------------------------------------------------------------------------
# Windowed pools
# ------------------------------------------------------------------------------------------------------

@kernel
def _nanmax(m, v):
    """``max(m, v)`` that propagates a NaN from either side (two selects, no branches)."""
    r = v if v > m else m
    return v if v != v else r


@intrinsic
def _op(typingctx, a, b, is_max):
    """``_vmax(a, b)`` if ``is_max`` else ``a + b``. ``is_max`` is a literal in every caller (the kernels
    pass True / False), so this costs one intrinsic to type rather than a branch with two."""
    if not isinstance(a, Vec) or a != b or not isinstance(is_max, types.BooleanLiteral):
        return None
    if is_max.literal_value:
        return a(a, b, is_max), lambda context, builder, sig, args: _vmax_ir(builder, args[0], args[1], sig.args[0])
    return a(a, b, is_max), lambda context, builder, sig, args: builder.fadd(args[0], args[1])


# Chunk loops below: ``for c in range(0, n - lanes, lanes)`` then one chunk at ``n - lanes``, rather
# than ``min(c0, n - lanes)`` inside the loop: the clamp and the bound it needs cost a compare, a move
# and a reload per chunk, about a third of the instructions of these short loops. The helpers are
# inlined (numba does not inline calls between compiled functions, and a call per chunk costs 2x), with
# literal case arguments so that each case is its own straight loop; few cases, to bound the windowed
# kernel's compile time (every inlined copy is typed anew).

@kernel_inline
def _column_chunk(xf, r0, nrows, rstep, c, dst, d0, is_max, rows):
    """``dst[d0 + c : + lanes] = op over k < nrows of xf[r0 + k * rstep + c : + lanes]``; ``rows``
    (literal): 2 or 3 for those counts, fused, 0 for any."""
    p = r0 + c
    if rows == 3:
        acc = _op(_op(vload(xf, p), vload(xf, p + rstep), is_max), vload(xf, p + 2 * rstep), is_max)
    elif rows == 2:
        acc = _op(vload(xf, p), vload(xf, p + rstep), is_max)
    else:
        acc = _vreduce(xf, p, nrows, rstep, is_max, False)
    vstore(dst, d0 + c, acc)


@kernel_inline
def _column_chunks(xf, r0, nrows, rstep, n, dst, d0, is_max, rows):
    lanes = vec_lanes(xf)
    for c in range(0, n - lanes, lanes):
        _column_chunk(xf, r0, nrows, rstep, c, dst, d0, is_max, rows)
    _column_chunk(xf, r0, nrows, rstep, n - lanes, dst, d0, is_max, rows)


@kernel_inline
def _column_pass(xf, r0, nrows, rstep, n, dst, d0, is_max):
    """``dst[d0 + i] = op over k < nrows (in order) of xf[r0 + k * rstep + i]`` for ``i < n``."""
    if n < vec_lanes(xf):
        for i in range(n):
            acc = xf[r0 + i]
            for k in range(1, nrows):
                v = xf[r0 + k * rstep + i]
                acc = _nanmax(acc, v) if is_max else acc + v
            dst[d0 + i] = acc
    elif nrows == 3:
        _column_chunks(xf, r0, nrows, rstep, n, dst, d0, is_max, 3)
    elif nrows == 2:
        _column_chunks(xf, r0, nrows, rstep, n, dst, d0, is_max, 2)
    else:
        _column_chunks(xf, r0, nrows, rstep, n, dst, d0, is_max, 0)


@kernel_inline
def _store_chunk(dst, d0, c, acc, col_div, rows, is_max, stream):
    """Store the row pass's chunk ``c`` (an average's sums divided by ``rows * col_div[c:]`` first),
    non-temporally with ``stream``."""
    if not is_max:
        acc = vdiv(acc, vmul(rows, vload(col_div, c)))
    if stream:
        vstore_stream(dst, d0 + c, acc)
    else:
        vstore(dst, d0 + c, acc)


@kernel_inline
def _row_chunk(s, c, kw, sw, dw, dst, d0, col_div, rows, is_max, taps, stream):
    """One chunk of :func:`_row_pass` (stride ``sw`` 1 or 2); ``taps`` (literal): 2 or 3 undilated taps,
    fused (stride 2: loads of 2 * LANES cells give the even, odd and next even cells), 0 for any."""
    if taps == 3 and sw == 1:
        acc = _op(_op(vload(s, c), vload(s, c + 1), is_max), vload(s, c + 2), is_max)
    elif taps == 3:
        acc = _op(_op(vload_even(s, 2 * c), vload_odd(s, 2 * c), is_max), vload_even(s, 2 * c + 2), is_max)
    elif taps == 2 and sw == 1:
        acc = _op(vload(s, c), vload(s, c + 1), is_max)
    elif taps == 2:
        acc = _op(vload_even(s, 2 * c), vload_odd(s, 2 * c), is_max)
    elif sw == 1:
        acc = _vreduce(s, c, kw, dw, is_max, False)
    else:
        acc = _vreduce(s, 2 * c, kw, dw, is_max, True)
    _store_chunk(dst, d0, c, acc, col_div, rows, is_max, stream)


@kernel_inline
def _row_chunks(s, ow, kw, sw, dw, dst, d0, col_div, rows, is_max, taps, stream):
    lanes = vec_lanes(s)
    for c in range(0, ow - lanes, lanes):
        _row_chunk(s, c, kw, sw, dw, dst, d0, col_div, rows, is_max, taps, stream)
    _row_chunk(s, ow - lanes, kw, sw, dw, dst, d0, col_div, rows, is_max, taps, stream)


@kernel_inline
def _row_pass(s, ow, kw, sw, dw, dst, d0, col_div, row_div, is_max, stream):
    """``dst[d0 + ox] = op over kx (in order) of s[ox * sw + kx * dw]`` (``/ (row_div * col_div[ox])`` for
    averages), ``ox < ow``. Vector chunks for strides 1 and 2 when ``ow >= LANES``, else a scalar loop."""
    if ow < vec_lanes(s) or sw > 2:
        for ox in range(ow):
            base = ox * sw
            acc = s[base]
            for kx in range(1, kw):
                v = s[base + kx * dw]
                acc = _nanmax(acc, v) if is_max else acc + v
            if not is_max:
                acc = acc / (row_div * col_div[ox])
            dst[d0 + ox] = acc
    elif kw == 3 and dw == 1:
        _row_chunks(s, ow, kw, sw, dw, dst, d0, col_div, vsplat(s, row_div), is_max, 3, stream)
    elif kw == 2 and dw == 1:
        _row_chunks(s, ow, kw, sw, dw, dst, d0, col_div, vsplat(s, row_div), is_max, 2, stream)
    else:
        _row_chunks(s, ow, kw, sw, dw, dst, d0, col_div, vsplat(s, row_div), is_max, 0, stream)


@kernel_inline
def _streams_row(of, d0, ow, stream):
    """Whether an output row of ``ow`` cells at ``of[d0:]`` is stored non-temporally: with ``stream``, and
    only when the row is whole cache lines from a line boundary (no shifted last chunk)."""
    line = 64 // of.itemsize
    return stream and ow % line == 0 and (data_address(of) // of.itemsize + d0) % line == 0


@kernel
def _window_rows(xf, of, p, oy_lo, oy_hi, s, row_div, col_div, ih, iw, oh, ow, kh, kw, sh, sw, dh, dw, top, left,
                 is_max, stream):
    """Output rows ``[oy_lo, oy_hi)`` of plane ``p`` (see :func:`window_pool2d_kernel`).

    A compiled function called once per parallel iteration, not inlined into the parallel kernel: numba's
    parallel passes copy the kernel's whole IR several times, which with the inlined passes took most of
    a minute to compile. The kernel passes a literal ``is_max``, so numba compiles one specialisation per
    value, both when the kernel first compiles (it types both call sites): 4.1 and 3.9 s of the kernel's
    12.9 s on the first average pooling call (measured 2026-12-07).
    """
    identity = NEG_INF if is_max else 0.0
    for i in range(left):
        s[i] = identity
    for i in range(left + iw, s.shape[0]):
        s[i] = identity
    for oy in range(oy_lo, oy_hi):
        y0 = oy * sh - top
        ky_lo = -(y0 // dh) if y0 < 0 else 0
        ky_hi = min(kh, (ih - y0 + dh - 1) // dh)
        _column_pass(xf, (p * ih + y0 + ky_lo * dh) * iw, ky_hi - ky_lo, dh * iw, iw, s, left, is_max)
        d0 = (p * oh + oy) * ow
        _row_pass(s, ow, kw, sw, dw, of, d0, col_div, 1.0 if is_max else row_div[oy], is_max,
                  _streams_row(of, d0, ow, stream))
    if stream:
        store_fence()


@kernel_inline
def _colop(xf, r0, rstep, c, nrows, is_max):
    """The column pass of one chunk of :func:`_window3s1_rows`: op over ``nrows`` (literal 1-3) rows from
    ``xf[r0 + c]``, in row order."""
    if nrows == 3:
        return _op(_op(vload(xf, r0 + c), vload(xf, r0 + rstep + c), is_max), vload(xf, r0 + 2 * rstep + c), is_max)
    if nrows == 2:
        return _op(vload(xf, r0 + c), vload(xf, r0 + rstep + c), is_max)
    return vload(xf, r0 + c)


@kernel_inline
def _row3s1(xf, of, r0, iw, d0, col_div, rows, is_max, nrows, stream):
    """One output row of :func:`_window3s1_rows` from ``nrows`` (literal) input rows at ``xf[r0:]``."""
    lanes = vec_lanes(xf)
    identity = vsplat(xf, NEG_INF if is_max else 0.0)
    prev = identity
    cur = _colop(xf, r0, iw, 0, nrows, is_max)
    n_full = iw // lanes
    for k in range(n_full):
        c = k * lanes
        if c + 2 * lanes <= iw:  # the next chunk is whole: its first column is the right neighbour
            nxt = _colop(xf, r0, iw, c + lanes, nrows, is_max)
            right = vshift_in(cur, nxt)
        elif c + lanes < iw:  # a partial chunk follows (the shifted last one): columns c + 1 .. read in place
            nxt = cur
            right = _colop(xf, r0, iw, c + 1, nrows, is_max)
        else:  # the row's end: padding on the right
            nxt = cur
            right = vshift_in(cur, identity)
        _store_chunk(of, d0, c, _op(_op(vshift_back(prev, cur), cur, is_max), right, is_max), col_div, rows, is_max,
                     stream)
        prev = cur
        cur = nxt
    if iw % lanes:  # the last chunk, shifted back to end at the row's end (rewrites a few outputs)
        c = iw - lanes
        last = _colop(xf, r0, iw, c, nrows, is_max)
        acc = _op(_op(_colop(xf, r0, iw, c - 1, nrows, is_max), last, is_max), vshift_in(last, identity), is_max)
        _store_chunk(of, d0, c, acc, col_div, rows, is_max, False)


@kernel
def _window3s1_rows(xf, of, p, oy_lo, oy_hi, row_div, col_div, ih, iw, is_max, stream):
    """Output rows ``[oy_lo, oy_hi)`` of plane ``p`` of a 3x3 / stride 1 pool with one cell of padding on
    every side (``OH = H``, ``OW = W >= LANES``), the same values as :func:`_window_rows` without its
    scratch row: per chunk of ``LANES`` outputs the column pass stays in a register (``cur``), and the
    row pass takes its left and right neighbours from the previous and next chunks' registers with two
    lane shifts (the padding's identity at the row's ends). Same order of operations: rows in ky order,
    then ``(left op centre) op right``. (Through the scratch row each chunk stored its column pass and
    reloaded it at offsets 1 and 2, loads the store buffer cannot forward: 0.37 ns per output on one
    thread with the input in cache.)"""
    for oy in range(oy_lo, oy_hi):
        y0 = max(oy - 1, 0)
        nrows = min(oy + 2, ih) - y0
        d0 = (p * ih + oy) * iw
        r0 = (p * ih + y0) * iw
        aligned = _streams_row(of, d0, iw, stream)
        rows = vsplat(xf, 1.0 if is_max else row_div[oy])
        if nrows == 3:
            _row3s1(xf, of, r0, iw, d0, col_div, rows, is_max, 3, aligned)
        elif nrows == 2:
            _row3s1(xf, of, r0, iw, d0, col_div, rows, is_max, 2, aligned)
        else:
            _row3s1(xf, of, r0, iw, d0, col_div, rows, is_max, 1, aligned)
    if stream:
        store_fence()


@kernel_inline
def _colmax3(xf, r0, r1, r2, col):
    """Lane ``l``: the NaN-propagating max of ``xf[r + col + l]`` over the three row starts ``r``."""
    return _vmax(_vmax(vload(xf, r0 + col), vload(xf, r1 + col)), vload(xf, r2 + col))


@kernel
def _max3s2_rows(xf, of, p, oy_lo, oy_hi, ih, iw, oh, ow, top, left):
    """Output rows ``[oy_lo, oy_hi)`` of plane ``p`` of a 3x3 / stride 2 max pool (no dilation, ``left <= 1``,
    ``OW >= LANES``, ``2 * OW - left <= W``): one pass, no scratch row.

    A window's cells outside the input are replaced by a cell of the same window (its row or column
    clamped into the input), which leaves the maximum, and a NaN, unchanged. Per chunk of ``LANES``
    outputs from ``ox0`` (input columns from ``b = 2 * ox0 - left``): the column maxima of the three rows
    over columns ``b .. b + 2 LANES`` as vectors ``A`` (``b ..``), ``B`` (``b + LANES ..``) and the first
    lane of the next chunk's ``A`` (carried over, or one clamped column at the row's end); the outputs are
    ``max(evens(A, B), odds(A, B), evens shifted by one)``. The last chunk is shifted back to end at
    ``OW`` (it rewrites a few outputs with the same values).
    """
    lanes = vec_lanes(xf)
    n_full = ow // lanes
    for oy in range(oy_lo, oy_hi):
        y = oy * 2 - top
        r0 = (p * ih + min(max(y, 0), ih - 1)) * iw
        r1 = (p * ih + min(max(y + 1, 0), ih - 1)) * iw
        r2 = (p * ih + min(max(y + 2, 0), ih - 1)) * iw
        d0 = (p * oh + oy) * ow
        a = _colmax3(xf, r0, r1, r2, 0)
        if left == 1:  # column -1 is padding: column 0 in its place
            a = vshift_dup(a, a)
        for k in range(n_full):
            b = 2 * k * lanes - left
            bb = _colmax3(xf, r0, r1, r2, b + lanes)
            if b + 3 * lanes <= iw:
                a_next = _colmax3(xf, r0, r1, r2, b + 2 * lanes)
            else:  # the row's end: its column b + 2 LANES, clamped, in every lane
                a_next = vsplat(xf, _colmax_scalar(xf, r0, r1, r2, min(b + 2 * lanes, iw - 1)))
            e = vevens(a, bb)
            vstore(of, d0 + k * lanes, _vmax(_vmax(e, vodds(a, bb)), vshift_in(e, a_next)))
            a = a_next
        if ow % lanes:
            ox0 = ow - lanes
            b = 2 * ox0 - left
            a = _colmax3(xf, r0, r1, r2, b)
            bb = _colmax3(xf, r0, r1, r2, b + lanes)
            x_last = vsplat(xf, _colmax_scalar(xf, r0, r1, r2, min(b + 2 * lanes, iw - 1)))
            e = vevens(a, bb)
            vstore(of, d0 + ox0, _vmax(_vmax(e, vodds(a, bb)), vshift_in(e, x_last)))


@kernel_inline
def _colmax_scalar(xf, r0, r1, r2, col):
    return _nanmax(_nanmax(xf[r0 + col], xf[r1 + col]), xf[r2 + col])


@kernel_inline
def _task_rows(task, row_blocks, oh):
    """``(plane, first output row, end row)`` of a windowed or 2x2 pool's work item ``task``."""
    rows_per = (oh + row_blocks - 1) // row_blocks
    oy_lo = (task % row_blocks) * rows_per
    return task // row_blocks, oy_lo, min(oy_lo + rows_per, oh)


@parallel_kernel
def window_pool2d_kernel(x, out, scratch, row_div, col_div, kh, kw, sh, sw, dh, dw, top, left, mode, row_blocks,
                         workers, stream):
    """Windowed max or average pooling, separable: column pass, then row pass, per output row.

    ``mode``: 0 max; 2 max through :func:`_max3s2_rows` (3x3 / stride 2 windows, its contract); 3 max and 4
    average through :func:`_window3s1_rows` (3x3 / stride 1, padding 1, its contract); 1 average,
    ``out[oy, ox] = sum / (row_div[oy] * col_div[ox])`` where the wrapper's
    tables (x's dtype, exact small integers) encode PyTorch's divisor rules (``count_include_pad``,
    ``ceil_mode`` clipping, ``divisor_override`` as ``row_div = 1``, ``col_div = d``). For max the tables
    are empty. ``out``: (N, C, OH, OW). ``scratch``: (T, L) of x's dtype with ``T`` >= the number of
    threads (the worker index selects a row; each item runs on one thread and rewrites what it
    reads) and ``L >= max(left + W, OW * sw + (kw - 1) * dw)`` (a stride-2 vector load reads one cell
    past the last window).

    Per output row ``oy``: ``s[left + ix] = op over valid ky of x[iy, ix]`` (the padding cells of ``s`` hold
    the identity: -inf for max, 0 for sums), then ``out[oy, ox] = op over kx of s[ox * sw + kx * dw]``
    (only the kept positions). Max is exact and NaN-propagating; sums go column by column (ky order,
    then kx order). Ownership: work item = (plane, block of output rows), claimed by ``workers`` threads.
    ``stream``: write output rows that are whole aligned cache lines with non-temporal stores (same
    values; for results larger than the caches).
    """
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    planes = n_batch * c_in
    xf = x.reshape(-1)
    of = out.reshape(-1)
    n_tasks = planes * row_blocks
    counters = range_counters(n_tasks, workers)
    for worker in prange(workers):
        s = scratch[worker]
        task, used = next_item(counters, worker, 0, workers, n_tasks)
        while task >= 0:
            p, oy_lo, oy_hi = _task_rows(task, row_blocks, oh)
            if mode == 2:
                _max3s2_rows(xf, of, p, oy_lo, oy_hi, ih, iw, oh, ow, top, left)
            elif mode == 3:
                _window3s1_rows(xf, of, p, oy_lo, oy_hi, row_div, col_div, ih, iw, True, stream)
            elif mode == 4:
                _window3s1_rows(xf, of, p, oy_lo, oy_hi, row_div, col_div, ih, iw, False, stream)
            elif mode == 0:
                _window_rows(xf, of, p, oy_lo, oy_hi, s, row_div, col_div, ih, iw, oh, ow, kh, kw, sh, sw, dh,
                             dw, top, left, True, stream)
            else:
                _window_rows(xf, of, p, oy_lo, oy_hi, s, row_div, col_div, ih, iw, oh, ow, kh, kw, sh, sw, dh,
                             dw, top, left, False, stream)
            task, used = next_item(counters, worker, used, workers, n_tasks)


@kernel_inline
def _pool2x2_chunk(xf, r0, r1, c, dst, d0, d, is_max, scale):
    a = vload_even(xf, r0 + 2 * c)
    b = vload_odd(xf, r0 + 2 * c)
    e = vload_even(xf, r1 + 2 * c)
    f = vload_odd(xf, r1 + 2 * c)
    if is_max:
        vstore(dst, d0 + c, _vmax(_vmax(_vmax(a, b), e), f))
    elif scale:
        vstore(dst, d0 + c, vmul(vadd(vadd(vadd(a, b), e), f), d))
    else:
        vstore(dst, d0 + c, vdiv(vadd(vadd(vadd(a, b), e), f), d))


@kernel
def _pool2x2_rows(xf, of, p, oy_lo, oy_hi, divisor, ih, iw, oh, ow, is_max, scale):
    """Output rows ``[oy_lo, oy_hi)`` of plane ``p`` (see :func:`pool2x2_kernel`): a compiled function per
    parallel iteration, specialised on the literal flags, as :func:`_window_rows`."""
    lanes = vec_lanes(xf)
    d = vsplat(xf, divisor)
    for oy in range(oy_lo, oy_hi):
        r0 = (p * ih + 2 * oy) * iw
        r1 = r0 + iw
        o = (p * oh + oy) * ow
        if ow < lanes:
            for ox in range(ow):
                a = xf[r0 + 2 * ox]
                b = xf[r0 + 2 * ox + 1]
                c = xf[r1 + 2 * ox]
                e = xf[r1 + 2 * ox + 1]
                if is_max:
                    of[o + ox] = _nanmax(_nanmax(_nanmax(a, b), c), e)
                elif scale:
                    of[o + ox] = (a + b + c + e) * divisor
                else:
                    of[o + ox] = (a + b + c + e) / divisor
        else:
            for c in range(0, ow - lanes, lanes):
                _pool2x2_chunk(xf, r0, r1, c, of, o, d, is_max, scale)
            _pool2x2_chunk(xf, r0, r1, ow - lanes, of, o, d, is_max, scale)


@parallel_kernel
def pool2x2_kernel(x, out, divisor, mode, row_blocks, workers):
    """Non-overlapping 2x2 / stride 2 pooling of full windows only (no padding, no dilation, no clipping).

    ``out[oy, ox] = op(x[2oy, 2ox], x[2oy, 2ox + 1], x[2oy + 1, 2ox], x[2oy + 1, 2ox + 1])`` in that
    (row-major window) order; ``mode`` 0: max (NaN-propagating, ties keep the first); 1: the sum divided
    by ``divisor[0]`` (x's dtype: 4, or ``divisor_override``); 2: the sum times ``divisor[0]``, the exact
    reciprocal of a power-of-two divisor (the same correctly rounded value as the division, as both
    round the same real number once; a multiply is ~5x cheaper than a divide). Contract: ``2 * OH <= H``,
    ``2 * OW <= W``. One fused pass straight from the two input rows (stride-2 loads), no scratch.
    Ownership: iteration = (plane, block of output rows).
    """
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    planes = n_batch * c_in
    xf = x.reshape(-1)
    of = out.reshape(-1)
    d = divisor[0]
    n_tasks = planes * row_blocks
    counters = range_counters(n_tasks, workers)
    for worker in prange(workers):
        task, used = next_item(counters, worker, 0, workers, n_tasks)
        while task >= 0:
            p, oy_lo, oy_hi = _task_rows(task, row_blocks, oh)
            if mode == 0:
                _pool2x2_rows(xf, of, p, oy_lo, oy_hi, d, ih, iw, oh, ow, True, False)
            elif mode == 1:
                _pool2x2_rows(xf, of, p, oy_lo, oy_hi, d, ih, iw, oh, ow, False, False)
            else:
                _pool2x2_rows(xf, of, p, oy_lo, oy_hi, d, ih, iw, oh, ow, False, True)
            task, used = next_item(counters, worker, used, workers, n_tasks)


@kernel
def _take(v, m):
    """True when ``v`` replaces the running maximum ``m`` (PyTorch: larger, or NaN)."""
    return (v > m) | (v != v)


@kernel
def _pool2x2_indices_scalar(xf, of, idx, p, oy, ih, iw, oh, ow):
    """One output row of :func:`_pool2x2_indices_rows`, a cell at a time (rows too short for vectors).
    The float selects compile to branches here (x86 has no scalar float select)."""
    r0 = (p * ih + 2 * oy) * iw
    r1 = r0 + iw
    o = (p * oh + oy) * ow
    base = 2 * oy * iw
    for ox in range(ow):
        m = xf[r0 + 2 * ox]
        k = 0
        v = xf[r0 + 2 * ox + 1]
        t = _take(v, m)
        m = v if t else m
        k = 1 if t else k
        v = xf[r1 + 2 * ox]
        t = _take(v, m)
        m = v if t else m
        k = iw if t else k
        v = xf[r1 + 2 * ox + 1]
        t = _take(v, m)
        m = v if t else m
        k = iw + 1 if t else k
        of[o + ox] = m
        idx[o + ox] = base + 2 * ox + k


@kernel_inline
def _pick4(a, b, e, f, ka, kb, ke, kf):
    """Running maximum over the taps a, b, e, f (row-major window order) and the tap offset of it."""
    m = a
    k = ka
    k = vpick(b, m, kb, k)
    m = vpick(b, m, b, m)
    k = vpick(e, m, ke, k)
    m = vpick(e, m, e, m)
    k = vpick(f, m, kf, k)
    m = vpick(f, m, f, m)
    return m, k


@kernel
def _pool2x2_indices_rows(xf, of, idx, p, oy_lo, oy_hi, ih, iw, oh, ow):
    """Output rows ``[oy_lo, oy_hi)`` of plane ``p`` of :func:`pool2x2_indices_kernel` (flat arrays).

    Vector selects (:func:`vpick`) carry each lane's maximum and its tap offset; the index is built in
    the float type (exact: the wrapper sends planes of more than 2**24 cells to the scalar loop) and
    stored as int64. Rows of at least LANES outputs: chunks of LANES, the last shifted back. Rows of
    exactly LANES / 2 outputs with LANES input cells (the digits CNN's 8x8 -> 4x4): one pair of
    stride-2 loads covers both input rows of an output row; the two input rows are reduced in the two
    halves of the vector and combined by swapping halves (the same running-maximum rule, applied as a
    tree in window order: same value, same index), two output rows per store.
    """
    lanes = vec_lanes(xf)
    exact = xf.itemsize == 8 or ih * iw <= 1 << 24
    if exact and ow >= lanes:
        ka = vsplat(xf, 0)
        kb = vsplat(xf, 1)
        ke = vsplat(xf, iw)
        kf = vsplat(xf, iw + 1)
        for oy in range(oy_lo, oy_hi):
            r0 = (p * ih + 2 * oy) * iw
            o = (p * oh + oy) * ow
            for i in range((ow + lanes - 1) // lanes):
                c = min(i * lanes, ow - lanes)
                m, k = _pick4(vload_even(xf, r0 + 2 * c), vload_odd(xf, r0 + 2 * c), vload_even(xf, r0 + iw + 2 * c),
                              vload_odd(xf, r0 + iw + 2 * c), ka, kb, ke, kf)
                vstore(of, o + c, m)
                vstore_int64(idx, o + c, vadd(k, viota(xf, 2 * oy * iw + 2 * c, 2)))
        return
    oy = oy_lo
    if exact and iw == lanes and 2 * ow == iw:
        consts = np.empty(2 * lanes, dtype=xf.dtype)
        for lane in range(lanes):
            consts[lane] = 0 if lane < ow else iw  # offset of a / e (upper half: the second input row)
            consts[lanes + lane] = consts[lane] + 1  # offset of b / f
        k_even = vload(consts, 0)
        k_odd = vload(consts, lanes)
        while oy + 1 < oy_hi:
            r0 = (p * ih + 2 * oy) * iw
            m0, k0 = _row_pair_max(xf, r0, k_even, k_odd)
            m1, k1 = _row_pair_max(xf, r0 + 2 * iw, k_even, k_odd)
            o = (p * oh + oy) * ow
            vstore(of, o, vlow_halves(m0, m1))
            vstore_int64(idx, o, vadd(vadd(vlow_halves(k0, k1), viota(xf, 2 * oy * iw, 2)), k_even))
            oy += 2
    for row in range(oy, oy_hi):
        _pool2x2_indices_scalar(xf, of, idx, p, row, ih, iw, oh, ow)


@kernel_inline
def _row_pair_max(xf, r0, k_even, k_odd):
    """Maximum and tap offset of the 2x2 windows of the input rows at ``r0`` and ``r0 + iw`` (``iw`` =
    LANES): lower half of the result lanes valid (see :func:`_pool2x2_indices_rows`)."""
    a = vload_even(xf, r0)  # lower half: row 0 even cells (a), upper half: row 1 even cells (e)
    b = vload_odd(xf, r0)  # b, f
    k = vpick(b, a, k_odd, k_even)
    m = vpick(b, a, b, a)  # lower: a-b, upper: e-f
    ms = vswap_halves(m)
    ks = vswap_halves(k)
    return vpick(ms, m, ms, m), vpick(ms, m, ks, k)


@parallel_kernel
def pool2x2_indices_kernel(x, out, indices, row_blocks):
    """:func:`max_pool2d_indices_kernel` for full non-overlapping 2x2 / stride 2 windows (the common pool of
    a CNN); same ownership and tie/NaN rules (the first element starts as the maximum: a NaN there is
    replaced only by a later NaN, so the index is still the last NaN's)."""
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    planes = n_batch * c_in
    xf = x.reshape(-1)
    of = out.reshape(-1)
    idx = indices.reshape(-1)
    rows_per = (oh + row_blocks - 1) // row_blocks
    for task in prange(planes * row_blocks):
        oy_lo = (task % row_blocks) * rows_per
        _pool2x2_indices_rows(xf, of, idx, task // row_blocks, oy_lo, min(oy_lo + rows_per, oh), ih, iw, oh, ow)


@kernel
def _max_indices_rows(xp, op, ip, p, oy_lo, oy_hi, vals, idxs, kh, kw, sh, sw, dh, dw, top, left):
    """Output rows ``[oy_lo, oy_hi)`` of plane ``p`` of :func:`max_pool2d_indices_kernel`.

    Per row: the running maxima and indices live in two scratch buffers, read from one and written to
    the other per tap (``vals[1:3]``, ``idxs[0:2]``), and each tap's input cells are first gathered into
    ``vals[0]`` (-inf where the tap falls outside the input, never taken). An update in place would be
    a select storing back to the address it loaded from, which LLVM turns into masked stores (~20x
    slower here) -- or a branch, mispredicted half the time on random data.
    """
    ih, iw = xp.shape[1], xp.shape[2]
    ow = op.shape[2]
    buf = vals[0]
    for oy in range(oy_lo, oy_hi):
        y0 = oy * sh - top
        ky_lo = -(y0 // dh) if y0 < 0 else 0
        ky_hi = min(kh, (ih - y0 + dh - 1) // dh)
        first_row = (y0 + ky_lo * dh) * iw
        src = 1
        for ox in range(ow):
            x0 = ox * sw - left
            kx_lo = -(x0 // dw) if x0 < 0 else 0
            vals[1, ox] = NEG_INF
            idxs[0, ox] = first_row + x0 + kx_lo * dw
        for ky in range(ky_lo, ky_hi):
            iy = y0 + ky * dh
            xrow = xp[p, iy]
            for kx in range(kw):
                off = kx * dw - left
                ox_lo = min(ow, -(off // sw) if off < 0 else 0)
                ox_hi = max(ox_lo, min(ow, (iw - off + sw - 1) // sw))
                for j in range(ox_lo):
                    buf[j] = NEG_INF
                for j in range(ox_lo, ox_hi):
                    buf[j] = xrow[j * sw + off]
                for j in range(ox_hi, ow):
                    buf[j] = NEG_INF
                m_src = vals[src]
                m_dst = vals[3 - src]
                i_src = idxs[src - 1]
                i_dst = idxs[2 - src]
                flat = iy * iw + off
                for j in range(ow):
                    v = buf[j]
                    m = m_src[j]
                    t = _take(v, m)
                    m_dst[j] = v if t else m
                    i_dst[j] = flat + j * sw if t else i_src[j]
                src = 3 - src
        op[p, oy] = vals[src]
        ip[p, oy] = idxs[src - 1]


@parallel_kernel
def max_pool2d_indices_kernel(x, out, indices, vals, idxs, kh, kw, sh, sw, dh, dw, top, left, row_blocks):
    """:func:`max_pool2d_kernel` plus ``indices[n, c, oy, ox] = iy * W + ix`` of the maximum (int64).

    Ties keep the first maximum in row-major window order; with a NaN, the last NaN (PyTorch). A window
    of only -inf reports its first input cell. Ownership: iteration = (plane, row block). ``vals``
    (threads, 3, OW) of x's dtype and ``idxs`` (threads, 2, OW) int64 are per-thread scratch
    (``get_thread_id()``), see :func:`_max_indices_rows`.
    """
    n_batch, c_in, ih, iw = x.shape
    oh, ow = out.shape[2], out.shape[3]
    planes = n_batch * c_in
    xp = x.reshape(planes, ih, iw)
    op = out.reshape(planes, oh, ow)
    ip = indices.reshape(planes, oh, ow)
    rows_per = (oh + row_blocks - 1) // row_blocks
    for task in prange(planes * row_blocks):
        oy_lo = (task % row_blocks) * rows_per
        tid = get_thread_id()
        _max_indices_rows(xp, op, ip, task // row_blocks, oy_lo, min(oy_lo + rows_per, oh), vals[tid], idxs[tid],
                          kh, kw, sh, sw, dh, dw, top, left)


@kernel
def _bin_row(r, c, row_bins, row_level, levels):
    """Geometry of bin row ``r`` for channel ``c`` (SPP layout, see the module notes):
    ``(y_lo, y_hi, col_off, lw, dst)`` -- its input rows, the level's first bin column and width, and
    the output offset of its first bin."""
    lv = row_level[r]
    lh = levels[lv, 1]
    lw = levels[lv, 3]
    dst = levels[lv, 4] + c * lh * lw + (r - levels[lv, 0]) * lw
    return row_bins[r, 0], row_bins[r, 1], levels[lv, 2], lw, dst


@parallel_kernel
def bin_max_kernel(x, row_bins, col_bins, row_level, levels, out, row_blocks):
    """Max over explicit bins, SPP layout (see the module notes); NaN propagates.

    ``row_bins`` (R, 2), ``col_bins`` (Q, 2): [start, end) of every bin row / column of every level, the
    levels concatenated; ``row_level`` (R,): level of each bin row; ``levels`` (L, 5): ``(row_off, lh,
    col_off, lw, out_off)``; ``out`` (N, C * sum(lh * lw)). Each bin is reduced in row-major order with a
    predicted branch rather than ``_nanmax``'s selects: in a serial reduction the select chain's latency
    dominates (measured 2.3x slower on SPP), and a separable column-then-row variant with a per-thread
    scratch row was slower still on 13x13 planes (rows too short to vectorise; re-measured: 1.2x slower).
    Ownership: iteration = (plane, block of bin rows): the R bin rows (all levels) of a plane are split
    into ``row_blocks`` blocks (1 when there are enough planes: fewer, larger tasks measured ~10% faster
    on SPP than one task per bin row).
    """
    n_batch, c_in, ih, iw = x.shape
    n_rows = row_bins.shape[0]
    rows_per = (n_rows + row_blocks - 1) // row_blocks
    xf = x.reshape(n_batch * c_in, ih * iw)
    for task in prange(n_batch * c_in * row_blocks):
        p = task // row_blocks
        r_lo = (task % row_blocks) * rows_per
        n = p // c_in
        c = p % c_in
        xs = xf[p]
        orow = out[n]
        for r in range(r_lo, min(r_lo + rows_per, n_rows)):
            y_lo, y_hi, col_off, lw, dst = _bin_row(r, c, row_bins, row_level, levels)
            for j in range(lw):
                x_lo = col_bins[col_off + j, 0]
                x_hi = col_bins[col_off + j, 1]
                m = NEG_INF
                for iy in range(y_lo, y_hi):
                    base = iy * iw
                    for ix in range(base + x_lo, base + x_hi):
                        v = xs[ix]
                        m = v if (v > m or v != v) else m
                orow[dst + j] = m


@parallel_kernel
def bin_avg_kernel(x, row_bins, col_bins, row_level, levels, out, row_blocks):
    """Mean over explicit bins (float64 sum in row-major order / cell count), layout as :func:`bin_max_kernel`.

    Ownership: iteration = (plane, block of bin rows), as :func:`bin_max_kernel`.
    """
    n_batch, c_in, ih, iw = x.shape
    n_rows = row_bins.shape[0]
    rows_per = (n_rows + row_blocks - 1) // row_blocks
    xf = x.reshape(n_batch * c_in, ih * iw)
    for task in prange(n_batch * c_in * row_blocks):
        p = task // row_blocks
        r_lo = (task % row_blocks) * rows_per
        n = p // c_in
        c = p % c_in
        xs = xf[p]
        orow = out[n]
        for r in range(r_lo, min(r_lo + rows_per, n_rows)):
            y_lo, y_hi, col_off, lw, dst = _bin_row(r, c, row_bins, row_level, levels)
            for j in range(lw):
                x_lo = col_bins[col_off + j, 0]
                x_hi = col_bins[col_off + j, 1]
                total = 0.0
                for iy in range(y_lo, y_hi):
                    base = iy * iw
                    for ix in range(base + x_lo, base + x_hi):
                        total += xs[ix]
                orow[dst + j] = total / ((y_hi - y_lo) * (x_hi - x_lo))


@parallel_kernel
def bin_max_indices_kernel(x, row_bins, col_bins, row_level, levels, out, indices, row_blocks):
    """:func:`bin_max_kernel` plus ``indices[n, k] = iy * W + ix`` of each maximum (int64, same layout)."""
    n_batch, c_in, ih, iw = x.shape
    n_rows = row_bins.shape[0]
    rows_per = (n_rows + row_blocks - 1) // row_blocks
    xf = x.reshape(n_batch * c_in, ih * iw)
    for task in prange(n_batch * c_in * row_blocks):
        p = task // row_blocks
        r_lo = (task % row_blocks) * rows_per
        n = p // c_in
        c = p % c_in
        xs = xf[p]
        orow = out[n]
        irow = indices[n]
        for r in range(r_lo, min(r_lo + rows_per, n_rows)):
            y_lo, y_hi, col_off, lw, dst = _bin_row(r, c, row_bins, row_level, levels)
            for j in range(lw):
                x_lo = col_bins[col_off + j, 0]
                x_hi = col_bins[col_off + j, 1]
                m = NEG_INF
                best = y_lo * iw + x_lo
                for iy in range(y_lo, y_hi):
                    base = iy * iw
                    for ix in range(base + x_lo, base + x_hi):
                        v = xs[ix]
                        if v > m or v != v:
                            m = v
                            best = ix
                orow[dst + j] = m
                irow[dst + j] = best


@kernel_inline
def _band_max(xf, r0, nrows, iw, dst, d0):
    """``dst[d0 + ix] = max over k < nrows of xf[r0 + k * iw + ix]`` for ``ix < iw`` (NaN-propagating).

    Vector chunks when ``iw >= LANES``; a band of at most 4 rows that is at most two chunks wide (SPP's
    usual case, e.g. 4 x 13) is straight-line code (rows clamped to the last: max is idempotent, so
    reading a row twice changes nothing), which measured 2x faster than the loops on 13x13 planes.
    """
    lanes = vec_lanes(xf)
    last = nrows - 1
    if iw < lanes:
        for ix in range(iw):
            m = xf[r0 + ix]
            for k in range(1, nrows):
                m = _nanmax(m, xf[r0 + k * iw + ix])
            dst[d0 + ix] = m
    elif nrows <= 4 and iw <= 2 * lanes:
        ra = r0
        rb = r0 + min(1, last) * iw
        rc = r0 + min(2, last) * iw
        rd = r0 + last * iw
        c = iw - lanes
        vstore(dst, d0, _vmax(_vmax(_vmax(vload(xf, ra), vload(xf, rb)), vload(xf, rc)), vload(xf, rd)))
        vstore(dst, d0 + c, _vmax(_vmax(_vmax(vload(xf, ra + c), vload(xf, rb + c)), vload(xf, rc + c)),
                                   vload(xf, rd + c)))
    else:
        for c0 in range(0, iw, lanes):
            c = min(c0, iw - lanes)
            acc = vload(xf, r0 + c)
            for k in range(1, nrows):
                acc = _vmax(acc, vload(xf, r0 + k * iw + c))
            vstore(dst, d0 + c, acc)


@parallel_kernel
def bin_max_lanes_kernel(x, bands, direct_bins, composed_bins, levels, out, band_scratch, cell_scratch, bin_scratch):
    """Max over explicit bins (SPP layout, as :func:`bin_max_kernel`) for groups of LANES planes.

    Tables (int64; "bin id" numbers every bin of every level, ``levels[l, 0] + i * lw + j``):

    * ``bands`` (B, 2): ``(first input row, rows)`` of every bin row computed from the input;
    * ``direct_bins`` (Q, 3): ``(band * W + first column, columns, bin id)`` of the bins computed from
      bands;
    * ``composed_bins`` (K, 5): ``(bin id of the first source bin, source rows, source columns, source
      level's bins per row, bin id)``: the bin is the max of that rectangle of already computed bins (an
      exact cover of its cells: the wrapper checks it), in computation order;
    * ``levels`` (L, 3): ``(first bin id, bins, out_off)`` with bins numbered row-major within a level.

    Scratch, per thread (``get_thread_id()``): ``band_scratch`` (T, >= LANES * B * W) holds each plane's band
    maxima, ``cell_scratch`` (T, >= B * W * LANES) the same transposed (cell-major, plane in the lane),
    ``bin_scratch`` (T, >= (bins + LANES) * LANES) every bin of the group. ``B * W >= LANES``.

    Per group of planes ``p0 + l`` (the last group repeats its last plane in unused lanes): band maxima
    (vector over columns, :func:`_band_max`), transposed by LANES x LANES blocks, then every direct bin is
    a vector max over its band cells in column order and every composed bin a vector max over its source
    bins in row-major order, with the NaN-propagating :func:`_vmax` (a NaN anywhere in a bin gives NaN;
    values are those of the row-major kernel, except possibly which of tied -0.0 / 0.0 or which NaN
    payload). Output: a level's bins of LANES consecutive channels of one image are one contiguous block,
    written by LANES x LANES transposes (one vector store for single-bin levels; levels of 2 to LANES - 1
    bins: one transpose into scratch, then one overlapping vector per plane); groups that straddle
    images or the end, scalar by scalar. Ownership: iteration = group of LANES planes.
    """
    n_batch, c_in, ih, iw = x.shape
    planes = n_batch * c_in
    xf = x.reshape(-1)
    of = out.reshape(-1)
    total = out.shape[1]
    lanes = vec_lanes(xf)
    n_bands = bands.shape[0]
    cells = n_bands * iw
    n_direct = direct_bins.shape[0]
    for g in prange((planes + lanes - 1) // lanes):
        p0 = g * lanes
        tid = get_thread_id()
        nat = band_scratch[tid]
        cell = cell_scratch[tid]
        acc_bins = bin_scratch[tid]
        for lane in range(lanes):
            base = min(p0 + lane, planes - 1) * ih * iw
            for r in range(n_bands):
                _band_max(xf, base + bands[r, 0] * iw, bands[r, 1], iw, nat, lane * cells + r * iw)
        for m0 in range(0, cells, lanes):
            m = min(m0, cells - lanes)
            _transpose_block(nat, m, cells, cell, m * lanes, lanes)
        for q in range(n_direct):
            t0 = direct_bins[q, 0]
            acc = vload(cell, t0 * lanes)
            for t in range(t0 + 1, t0 + direct_bins[q, 1]):
                acc = _vmax(acc, vload(cell, t * lanes))
            vstore(acc_bins, direct_bins[q, 2] * lanes, acc)
        for k in range(composed_bins.shape[0]):
            first = composed_bins[k, 0]
            stride = composed_bins[k, 3]
            acc = vload(acc_bins, first * lanes)
            for i in range(composed_bins[k, 1]):
                for j in range(composed_bins[k, 2]):
                    acc = _vmax(acc, vload(acc_bins, (first + i * stride + j) * lanes))
            vstore(acc_bins, composed_bins[k, 4] * lanes, acc)
        n0 = p0 // c_in
        c0 = p0 - n0 * c_in
        if p0 + lanes <= planes and c0 + lanes <= c_in:
            for lv in range(levels.shape[0]):
                b0 = levels[lv, 0]
                nb = levels[lv, 1]
                dst = n0 * total + levels[lv, 2] + c0 * nb
                if nb >= lanes:
                    for k0 in range(0, nb, lanes):
                        k = min(k0, nb - lanes)
                        _transpose_block(acc_bins, (b0 + k) * lanes, lanes, of, dst + k, nb)
                elif nb == 1:
                    vstore(of, dst, vload(acc_bins, b0 * lanes))
                else:
                    # transpose (with the next bins as filler rows) into the free cell buffer, then one
                    # vector per plane, in increasing order: each store's filler tail is overwritten by the
                    # next plane's; planes whose vector would pass the block's end are copied cell by cell
                    _transpose_block(acc_bins, b0 * lanes, lanes, cell, 0, lanes)
                    for lane in range(lanes):
                        if (lane + 1) * nb + lanes - nb <= lanes * nb:
                            vstore(of, dst + lane * nb, vload(cell, lane * lanes))
                        else:
                            for k in range(nb):
                                of[dst + lane * nb + k] = cell[lane * lanes + k]
        else:
            for lane in range(min(lanes, planes - p0)):
                n = (p0 + lane) // c_in
                c = p0 + lane - n * c_in
                for lv in range(levels.shape[0]):
                    nb = levels[lv, 1]
                    dst = n * total + levels[lv, 2] + c * nb
                    for k in range(nb):
                        of[dst + k] = acc_bins[(levels[lv, 0] + k) * lanes + lane]

