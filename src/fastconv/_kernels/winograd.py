"""Winograd F(2x2, 3x3) convolution: the kernels behind ``conv2d(algo="winograd")`` (3x3, stride 1, dilation 1).

Each 2 x 2 block of outputs ("tile") of one image and output channel is ``A^T [sum_c (G g_oc G^T) (.)
(B^T d_c B)] A``, where ``d_c`` is the 4 x 4 input patch of channel ``c`` under the tile (zero outside the
image), ``g_oc`` the 3 x 3 filter and (.) the element-wise product (Lavin and Gray 2015)::

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

So the sum over input channels becomes 16 independent GEMMs, one per element ``e`` of the 4 x 4
transformed tile: ``M[e][o, t] = sum_c U[e][o, c] V[e][c, t]``, 16 multiply-adds per tile and channel pair
where the direct kernel does 36 (2.25x fewer), plus the transforms, which are linear in the input and
output sizes only. The coefficients are 0, +-1 and +-1/2: rounding errors stay within a few units in the
last place of the direct sums.

Layout. ``U`` (G, 16, n_blocks, C/G + 1, B) holds the transformed filters packed like the direct
kernel's weights (``B = channel_block`` output channels per block, zeros beyond O/G); the extra row per
block is never read: it keeps the 16 planes off a multiple of 4 KiB apart (see below; L5, one thread:
filter transform 3.0 -> 0.4 ms). Tiles are numbered
``t = (n * TH + ty) * TW + tx`` over the batch (``TH, TW = ceil(OH / 2), ceil(OW / 2)``) and cut into
chunks of ``chunk_tiles``. For a chunk a thread writes ``V[e][c][s]`` into its own buffer (slot ``s`` of
a tile: its place in its tile row plus one spare slot per tile-row boundary, so that ``lanes`` consecutive
slots read their patches at one stride and transform as one vector, 8 float32 / 4 float64 tiles at a
time), then runs the direct kernel's register-blocked micro-kernel (:func:`.conv_direct.tap_microkernel`:
the chunk's tiles are its "positions", read through a table of their slots, and input channels its
"taps") for every ``e``, then the output transform, ``lanes`` output channels at a time, which adds the
bias and writes the chunk's tiles of one channel block to ``out`` (the last row and column of an
odd-sized output are dropped). The 16 planes of ``V`` and of ``M`` are ``PLANE_PAD`` values more than a
power of two apart: 16 streams 4 KiB apart share one set of the 8-way L1 cache (measured on L5: input
transform 20 -> 7.6 ms, output transform 8.3 -> 2.0 ms, one thread; unsigned indices then 2.6 and 1.6 ms,
vectors 1.4 and 0.8 ms, next to 29 ms of GEMM).

Parallel ownership: a work item is (group, chunk of tiles, run of channel blocks), the run varying
fastest; a thread keeps the chunk's ``V`` while its next item has the same chunk. An item writes only
its tiles of its channels, every sum in a fixed order (channels in order in the micro-kernel): results
are bit-identical for any thread count.
"""

import numpy as np

from .._jit import inline, kernel
from .claim import next_item
from .conv_direct import NP, tap_microkernel
from .simd import vec_lanes, vload, vload_even, vload_odd, vstore, vstore_strided

PLANE_PAD = 16  # values added to the distance between the 16 planes of V and of M (one cache line)


@kernel
def winograd_weights(weight, wino, worker, workers):
    """``wino[g, e, blk, c, i] = (G w G^T)[e]`` of ``w = weight[g * O/G + blk * B + i, c]`` (e = 4 * row +
    column of the 4 x 4 transformed filter), zero for ``blk * B + i >= O/G``: the share of thread
    ``worker`` of ``workers`` (run like :func:`winograd_worker`).

    Contract: ``weight`` (O, C/G, 3, 3) and ``wino`` (G, 16, n_blocks, C/G + 1, B) C-contiguous, one float
    dtype, ``n_blocks * B >= O / G`` (row ``C/G`` of each block is left as it is). Parallel ownership:
    thread ``worker`` does the ``worker``-th of ``workers`` equal ranges of (group, block, channel)."""
    c_out, c_per_group = weight.shape[0], weight.shape[1]
    n_groups, n_blocks, block_rows, block = wino.shape[0], wino.shape[2], wino.shape[3], wino.shape[4]
    o_per_group = c_out // n_groups
    wf = weight.reshape(-1)
    uf = wino.reshape(-1)
    es = n_blocks * block_rows * block  # between the 16 planes of a group
    n_gbc = n_groups * n_blocks * c_per_group
    for gbc in range(worker * n_gbc // workers, (worker + 1) * n_gbc // workers):
        g = gbc // (n_blocks * c_per_group)
        blk = gbc // c_per_group % n_blocks
        c = gbc % c_per_group
        d0 = g * 16 * es + (blk * block_rows + c) * block
        for i in range(block):
            o = blk * block + i
            d = np.uint64(d0 + i)
            if o >= o_per_group:
                for e in range(16):
                    uf[d + np.uint64(e * es)] = 0.0
                continue
            s = np.uint64(((g * o_per_group + o) * c_per_group + c) * 9)
            # G along the filter's rows (t_ij, i < 4, j < 3), then along its columns.
            a0, a1, a2 = wf[s], wf[s + np.uint64(1)], wf[s + np.uint64(2)]
            b0, b1, b2 = wf[s + np.uint64(3)], wf[s + np.uint64(4)], wf[s + np.uint64(5)]
            c0, c1, c2 = wf[s + np.uint64(6)], wf[s + np.uint64(7)], wf[s + np.uint64(8)]
            _filter_row(uf, d, es, a0, a1, a2)
            _filter_row(uf, d + np.uint64(4 * es), es, 0.5 * (a0 + b0 + c0), 0.5 * (a1 + b1 + c1), 0.5 * (a2 + b2 + c2))
            _filter_row(uf, d + np.uint64(8 * es), es, 0.5 * (a0 - b0 + c0), 0.5 * (a1 - b1 + c1), 0.5 * (a2 - b2 + c2))
            _filter_row(uf, d + np.uint64(12 * es), es, c0, c1, c2)


@inline
def _filter_row(uf, d, es, t0, t1, t2):
    """Row ``(t0, t1, t2)`` of ``G w`` times ``G^T``: the 4 values ``es`` apart from ``uf[d]``."""
    uf[d] = t0
    uf[d + np.uint64(es)] = 0.5 * (t0 + t1 + t2)
    uf[d + np.uint64(2 * es)] = 0.5 * (t0 - t1 + t2)
    uf[d + np.uint64(3 * es)] = t2


@kernel
def winograd_worker(x, wino, bias, out, top, left, chunk_tiles, chunk_channels, runs, counters, worker, workers,
                    n_items):
    """One thread's share of a Winograd F(2x2, 3x3) convolution with zero padding ``(top, left)`` (module
    docstring): its buffers, then the items it claims. The caller runs it on ``workers`` threads
    (``fastconv.workers.run_workers``, which this releases the GIL for), ``worker`` = 0 .. workers - 1.

    Contract (caller guarantees):
    - ``x``: (N, C, H, W) C-contiguous, unpadded; ``out``: (N, O, OH, OW) with ``OH, OW`` the stride-1
      output sizes of a 3x3 kernel under padding ``(top, left)`` and some bottom / right padding (reads
      beyond the input are zeros); one float dtype throughout.
    - ``wino``: (G, 16, n_blocks, C/G + 1, B) from :func:`winograd_weights`; ``bias``: (O,).
    - ``chunk_tiles``: tiles per chunk, a multiple of ``NP``; ``chunk_channels`` >= 1: input channels per
      pass of the micro-kernel (its weights stay in L1); ``runs`` >= 1: channel-block runs per chunk
      (from the shape only).
    - ``n_items`` = G x chunks x ``runs`` (chunks of ``chunk_tiles`` 2x2 output tiles over the batch);
      ``counters`` = ``range_counters(n_items, workers)``, shared by the ``workers`` calls.
    """
    n_groups, block = wino.shape[0], wino.shape[4]
    c_per_group = x.shape[1] // n_groups
    oh, ow = out.shape[2], out.shape[3]
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    chunk_slots = chunk_tiles + (chunk_tiles + tw - 1) // tw  # tiles + one spare slot per tile-row boundary
    # The input rows of one image's part of a chunk, even and odd rows in two planes, plus room for the
    # vector loads past the last row.
    plane = (min(th, (chunk_tiles + tw - 2) // tw + 1) + 1) * (2 * tw + 2) + 2 * vec_lanes(out) + 4
    v = np.empty(16 * (c_per_group * chunk_slots + PLANE_PAD), dtype=out.dtype)
    m = np.empty(16 * (chunk_tiles * block + PLANE_PAD), dtype=out.dtype)
    rows = np.empty(2 * plane, dtype=out.dtype)
    pix = np.empty(16 * chunk_tiles, dtype=np.int64)
    starts = np.empty(c_per_group, dtype=np.int64)
    for c in range(c_per_group):
        starts[c] = c * chunk_slots
    loaded = np.int64(-1)  # the (group, chunk) whose transformed input v holds (not a literal: one type)
    item, used = next_item(counters, worker, 0, workers, n_items)
    while item >= 0:
        loaded = _winograd_item(x, wino, bias, out, top, left, chunk_tiles, chunk_slots, chunk_channels, runs, item,
                                loaded, v, m, rows, pix, starts)
        item, used = next_item(counters, worker, used, workers, n_items)


@kernel
def _winograd_item(x, wino, bias, out, top, left, chunk_tiles, chunk_slots, chunk_channels, runs, item, loaded, v,
                   m, rows, pix, starts):
    """Work item ``item`` of :func:`winograd_conv`; returns the (group, chunk) span ``v`` holds after it."""
    n_batch = x.shape[0]
    n_groups, n_blocks, block = wino.shape[0], wino.shape[2], wino.shape[4]
    c_per_group = x.shape[1] // n_groups
    oh, ow = out.shape[2], out.shape[3]
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    n_tiles = n_batch * th * tw
    n_chunks = (n_tiles + chunk_tiles - 1) // chunk_tiles
    span = item // runs
    run = item - span * runs
    g = span // n_chunks
    t0 = span % n_chunks * chunk_tiles
    nt = min(chunk_tiles, n_tiles - t0)
    if span != loaded:
        _input_transform(x, g * c_per_group, c_per_group, top, left, th, tw, t0, nt, chunk_tiles, chunk_slots, v, rows,
                         pix)
    per_run = (n_blocks + runs - 1) // runs
    m_planes = chunk_tiles * block + PLANE_PAD
    of = out.reshape(-1)
    bf = bias.reshape(-1)
    n_micro = (nt + NP - 1) // NP
    for blk in range(run * per_run, min(n_blocks, (run + 1) * per_run)):
        for e in range(16):
            wf = wino[g, e, blk].reshape(-1)
            for c0 in range(0, c_per_group, chunk_channels):
                c1 = min(c_per_group, c0 + chunk_channels)
                for k in range(n_micro):
                    tap_microkernel(v, starts, c0, c1, pix, e * chunk_tiles + k * NP, wf, m,
                                    e * m_planes + k * NP * block, c0 > 0, of, -1, 0, bf, 0, block)
        _output_transform(m, m_planes, block, n_groups, g, blk, bf, out, th, tw, t0, nt)
    return span


@kernel
def _input_transform(x, c_first, c_count, top, left, th, tw, t0, nt, chunk_tiles, chunk_slots, v, rows, pix):
    """``v[e * P + c * chunk_slots + s] = (B^T d B)[e]`` of channel ``c_first + c`` under the chunk's tile at
    slot ``s`` (``P = c_count * chunk_slots + PLANE_PAD``), and ``pix[e * chunk_tiles + k] = e * P +`` the slot
    of tile ``t0 + k`` (the micro-kernel's positions; its padded last micro-tile repeats the last tile).

    Slots: within one image's part of the chunk (tile rows ``ty_a .. ty_b``) tile ``(ty, tx)`` has slot
    ``(ty - ty_a) * (TW + 1) + tx`` (less the first tile's, plus the slots of the parts before): one spare
    slot at each tile-row boundary, so that every slot ``s`` reads its 4 x 4 patch at ``rows[2 * s + ...]``
    and ``lanes`` consecutive slots transform as one vector (the spare slots compute values never read).
    ``rows``: two planes, the zero-padded input rows ``2 * (ty_a + r) - top`` (even) and ``+ 1`` (odd) at
    ``r * (2 * TW + 2)`` in each."""
    n_batch, c_in, ih, iw = x.shape
    xf = x.reshape(-1)
    lanes = vec_lanes(v)
    row_len = 2 * tw + 2
    plane = rows.size // 2
    es = c_count * chunk_slots + PLANE_PAD
    per_image = th * tw
    slot0 = 0  # slots of the image parts done
    t = t0
    while t < t0 + nt:
        n = t // per_image
        t_end = min(t0 + nt, (n + 1) * per_image)
        ty_a = (t - n * per_image) // tw
        ty_b = (t_end - 1 - n * per_image) // tw
        first = t - n * per_image - ty_a * tw
        last = (ty_b - ty_a) * (tw + 1) + t_end - 1 - n * per_image - ty_b * tw
        ty, tx = ty_a, first
        for k in range(t - t0, t_end - t0):
            s = slot0 + (ty - ty_a) * (tw + 1) + tx - first
            for e in range(16):
                pix[e * chunk_tiles + k] = e * es + s
            tx += 1
            if tx == tw:
                tx, ty = 0, ty + 1
        for c in range(c_count):
            _load_rows(xf, (n * c_in + c_first + c) * ih * iw, ih, iw, 2 * ty_a - top, 2 * (ty_b - ty_a + 2), left,
                       row_len, rows, plane)
            dst = c * chunk_slots + slot0 - first
            if last - first + 1 >= lanes:
                s = first
                while s <= last:
                    sv = min(s, last + 1 - lanes)  # the last vector shifted back: a few slots again, same values
                    _vector_tiles_in(rows, plane, row_len, sv, v, dst + sv, es)
                    s += lanes
            else:
                for s in range(first, last + 1):
                    _scalar_tile_in(rows, plane, row_len, s, v, dst + s, es)
        slot0 += last - first + 1
        t = t_end
    for k in range(nt, (nt + NP - 1) // NP * NP):
        for e in range(16):
            pix[e * chunk_tiles + k] = pix[e * chunk_tiles + nt - 1]


@inline
def _load_rows(xf, src, ih, iw, iy0, n_rows, left, row_len, rows, plane):
    """Input rows ``iy0 .. iy0 + n_rows - 1`` of the plane at ``xf[src:]``, zero-padded (``left`` zeros
    first, zero rows outside the input), alternately into the even and odd plane of ``rows``."""
    for r in range(n_rows):
        iy = iy0 + r
        row = (r & 1) * plane + (r >> 1) * row_len
        if 0 <= iy < ih:  # row_len >= left + W (the output covers the input)
            for j in range(left):
                rows[np.uint64(row + j)] = 0.0
            _copy_row(rows, row + left, xf, src + iy * iw, iw)
            for j in range(left + iw, row_len):
                rows[np.uint64(row + j)] = 0.0
        else:
            for j in range(row_len):
                rows[np.uint64(row + j)] = 0.0


@inline
def _copy_row(dst, d0, src, s0, count):
    """``dst[d0 + j] = src[s0 + j]`` for ``j < count``: vectors, the last one shifted back to end at
    ``count`` (same values written twice); scalars when ``count`` is below one vector."""
    lanes = vec_lanes(dst)
    if count < lanes:
        for j in range(count):
            dst[np.uint64(d0 + j)] = src[np.uint64(s0 + j)]
        return
    j = 0
    while j < count:
        j = min(j, count - lanes)
        vstore(dst, d0 + j, vload(src, s0 + j))
        j += lanes


@inline
def _bt(d0, d1, d2, d3):
    """``B^T (d0, d1, d2, d3)`` (scalars or vectors)."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@inline
def _at(m0, m1, m2, m3):
    """``A^T (m0, m1, m2, m3)`` (scalars or vectors)."""
    return m0 + m1 + m2, m1 - m2 - m3


@inline
def _tile_in(p0, p1, p2, p3):
    """``B^T d B`` of the patch with rows ``p0 .. p3`` (4-tuples): its 4 rows."""
    c0, c1 = _bt(p0[0], p1[0], p2[0], p3[0]), _bt(p0[1], p1[1], p2[1], p3[1])
    c2, c3 = _bt(p0[2], p1[2], p2[2], p3[2]), _bt(p0[3], p1[3], p2[3], p3[3])
    return (_bt(c0[0], c1[0], c2[0], c3[0]), _bt(c0[1], c1[1], c2[1], c3[1]), _bt(c0[2], c1[2], c2[2], c3[2]),
            _bt(c0[3], c1[3], c2[3], c3[3]))


@inline
def _tile_out(r0, r1, r2, r3):
    """``A^T M A`` of the 4 x 4 ``M`` with rows ``r0 .. r3`` (4-tuples): ``((y00, y01), (y10, y11))``."""
    c0, c1 = _at(r0[0], r1[0], r2[0], r3[0]), _at(r0[1], r1[1], r2[1], r3[1])
    c2, c3 = _at(r0[2], r1[2], r2[2], r3[2]), _at(r0[3], r1[3], r2[3], r3[3])
    return _at(c0[0], c1[0], c2[0], c3[0]), _at(c0[1], c1[1], c2[1], c3[1])


@inline
def _scalar_tile_in(rows, plane, row_len, s, v, k, es):
    """The transformed patch of slot ``s`` into ``v[k + e * es]``, e < 16."""
    b, p, r, one = np.uint64(2 * s), np.uint64(plane), np.uint64(row_len), np.uint64(1)
    out = _tile_in(_four(rows, b, one), _four(rows, p + b, one), _four(rows, b + r, one), _four(rows, p + b + r, one))
    k, e1 = np.uint64(k), np.uint64(es)
    e4 = e1 + e1 + e1 + e1
    _put_four(v, k, e1, out[0])
    _put_four(v, k + e4, e1, out[1])
    _put_four(v, k + e4 + e4, e1, out[2])
    _put_four(v, k + e4 + e4 + e4, e1, out[3])


@inline
def _vector_tiles_in(rows, plane, row_len, s, v, k, es):
    """The transformed patches of slots ``s .. s + lanes - 1`` into ``v[k + e * es:]`` (one vector per e)."""
    b = 2 * s
    out = _tile_in(_patch_row_vectors(rows, b), _patch_row_vectors(rows, plane + b),
                   _patch_row_vectors(rows, b + row_len), _patch_row_vectors(rows, plane + b + row_len))
    _vector_put_four(v, k, es, out[0])
    _vector_put_four(v, k + 4 * es, es, out[1])
    _vector_put_four(v, k + 8 * es, es, out[2])
    _vector_put_four(v, k + 12 * es, es, out[3])


@inline
def _patch_row_vectors(rows, b):
    """Columns 0-3 of a patch row for ``lanes`` consecutive slots: ``rows[b + 2 * l + j]``, j < 4."""
    return vload_even(rows, b), vload_odd(rows, b), vload_even(rows, b + 2), vload_odd(rows, b + 2)


@inline
def _four(arr, a, step):
    """``arr[a], arr[a + step], arr[a + 2 * step], arr[a + 3 * step]`` (unsigned indices: no wrap-around
    code)."""
    return arr[a], arr[a + step], arr[a + step + step], arr[a + step + step + step]


@inline
def _put_four(arr, a, step, values):
    """``arr[a + j * step] = values[j]``, j < 4 (unsigned indices)."""
    arr[a] = values[0]
    arr[a + step] = values[1]
    arr[a + step + step] = values[2]
    arr[a + step + step + step] = values[3]


@inline
def _vector_put_four(arr, a, step, values):
    """``vstore(arr, a + j * step, values[j])``, j < 4."""
    vstore(arr, a, values[0])
    vstore(arr, a + step, values[1])
    vstore(arr, a + 2 * step, values[2])
    vstore(arr, a + 3 * step, values[3])


@kernel
def _output_transform(m, m_planes, block, n_groups, g, blk, bias, out, th, tw, t0, nt):
    """``out`` tiles ``t0 .. t0 + nt - 1`` of the output channels ``g * O/G + blk * B + i`` (``i < B``, those
    below O/G): ``A^T M A + bias`` from ``m[e * m_planes + k * B + i]``, ``lanes`` channels at a time (the
    output stores are scalar: the channels are ``OH * OW`` apart)."""
    n_batch, c_out, oh, ow = out.shape
    o_per_group = c_out // n_groups
    n_rows = min(block, o_per_group - blk * block)
    o_first = g * o_per_group + blk * block
    lanes = vec_lanes(out)
    ohw = oh * ow
    of = out.reshape(-1)
    e1 = np.uint64(m_planes)
    e4 = e1 + e1 + e1 + e1
    per_image = th * tw
    for k in range(nt):
        t = t0 + k
        n = t // per_image
        ty = (t - n * per_image) // tw
        tx = t - n * per_image - ty * tw
        oy, ox = 2 * ty, 2 * tx
        right, below = ox + 1 < ow, oy + 1 < oh
        dst = (n * c_out + o_first) * ohw + oy * ow + ox
        i = 0
        while i + lanes <= n_rows:
            a = k * block + i
            ys = _tile_out(_vector_four(m, a, m_planes), _vector_four(m, a + 4 * m_planes, m_planes),
                           _vector_four(m, a + 8 * m_planes, m_planes), _vector_four(m, a + 12 * m_planes, m_planes))
            b = vload(bias, o_first + i)
            d = dst + i * ohw
            vstore_strided(of, d, ohw, ys[0][0] + b)
            if right:
                vstore_strided(of, d + 1, ohw, ys[0][1] + b)
            if below:
                vstore_strided(of, d + ow, ohw, ys[1][0] + b)
                if right:
                    vstore_strided(of, d + ow + 1, ohw, ys[1][1] + b)
            i += lanes
        for i in range(i, n_rows):
            a = np.uint64(k * block + i)
            ys = _tile_out(_four(m, a, e1), _four(m, a + e4, e1), _four(m, a + e4 + e4, e1),
                           _four(m, a + e4 + e4 + e4, e1))
            b = bias[o_first + i]
            _store_tile(of, dst + i * ohw, ow, right, below, ys[0][0] + b, ys[0][1] + b, ys[1][0] + b, ys[1][1] + b)


@inline
def _vector_four(arr, a, step):
    """``vload(arr, a + j * step)``, j < 4."""
    return vload(arr, a), vload(arr, a + step), vload(arr, a + 2 * step), vload(arr, a + 3 * step)


@inline
def _store_tile(of, d, ow, right, below, y00, y01, y10, y11):
    """A 2 x 2 output tile at ``of[d]``, its right column / lower row only if inside the output."""
    d = np.uint64(d)
    of[d] = y00
    if right:
        of[d + np.uint64(1)] = y01
    if below:
        of[d + np.uint64(ow)] = y10
        if right:
            of[d + np.uint64(ow + 1)] = y11
