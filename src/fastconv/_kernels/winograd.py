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
chunks of ``chunk_tiles``. For a chunk a thread writes ``V[e][c][k]`` (chunk tile ``k``) into its own
buffer, then runs the direct kernel's register-blocked micro-kernel (:func:`.conv_direct.tap_microkernel`:
the chunk's tiles are its "positions", input channels its "taps") for every ``e``, then the output
transform, which adds the bias and writes the chunk's tiles of one channel block to ``out`` (the last
row and column of an odd-sized output are dropped). The 16 planes of ``V`` and of ``M`` are
``PLANE_PAD`` values more than a power of two apart: 16 streams 4 KiB apart share one set of the 8-way
L1 cache (measured on L5: input transform 20 -> 7.6 ms, output transform 8.3 -> 2.0 ms, one thread).

Parallel ownership: a work item is (group, chunk of tiles, run of channel blocks), the run varying
fastest; a thread keeps the chunk's ``V`` while its next item has the same chunk. An item writes only
its tiles of its channels, every sum in a fixed order (channels in order in the micro-kernel): results
are bit-identical for any thread count.
"""

import numpy as np
from numba import prange

from .._jit import inline, kernel, parallel_kernel
from .claim import next_item, range_counters
from .conv_direct import NP, tap_microkernel

PLANE_PAD = 16  # values added to the distance between the 16 planes of V and of M (one cache line)


@parallel_kernel
def winograd_weights(weight, wino):
    """``wino[g, e, blk, c, i] = (G w G^T)[e]`` of ``w = weight[g * O/G + blk * B + i, c]`` (e = 4 * row +
    column of the 4 x 4 transformed filter), zero for ``blk * B + i >= O/G``.

    Contract: ``weight`` (O, C/G, 3, 3) and ``wino`` (G, 16, n_blocks, C/G + 1, B) C-contiguous, one float
    dtype, ``n_blocks * B >= O / G`` (row ``C/G`` of each block is left as it is). Parallel ownership: one (group, block, channel) per iteration."""
    c_out, c_per_group = weight.shape[0], weight.shape[1]
    n_groups, n_blocks, block_rows, block = wino.shape[0], wino.shape[2], wino.shape[3], wino.shape[4]
    o_per_group = c_out // n_groups
    wf = weight.reshape(-1)
    uf = wino.reshape(-1)
    es = n_blocks * block_rows * block  # between the 16 planes of a group
    for gbc in prange(n_groups * n_blocks * c_per_group):
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


@parallel_kernel
def winograd_conv(x, wino, bias, out, top, left, chunk_tiles, chunk_channels, runs, workers):
    """Winograd F(2x2, 3x3) convolution with zero padding ``(top, left)`` (module docstring).

    Contract (caller guarantees):
    - ``x``: (N, C, H, W) C-contiguous, unpadded; ``out``: (N, O, OH, OW) with ``OH, OW`` the stride-1
      output sizes of a 3x3 kernel under padding ``(top, left)`` and some bottom / right padding (reads
      beyond the input are zeros); one float dtype throughout.
    - ``wino``: (G, 16, n_blocks, C/G + 1, B) from :func:`winograd_weights`; ``bias``: (O,).
    - ``chunk_tiles``: tiles per chunk, a multiple of ``NP``; ``chunk_channels`` >= 1: input channels per
      pass of the micro-kernel (its weights stay in L1); ``runs`` >= 1: channel-block runs per chunk
      (from the shape only); ``workers`` >= 1 threads.
    """
    n_items = wino.shape[0] * _n_chunks(x, out, chunk_tiles) * runs
    counters = range_counters(n_items, workers)
    for worker in prange(workers):
        # int64: numba types the prange index int64 and uint64 in turn, which would compile this twice
        _winograd_worker(x, wino, bias, out, top, left, chunk_tiles, chunk_channels, runs, counters,
                         np.int64(worker), workers, n_items)


@kernel
def _n_chunks(x, out, chunk_tiles):
    """Chunks of ``chunk_tiles`` 2x2 output tiles over the batch."""
    tiles = x.shape[0] * ((out.shape[2] + 1) // 2) * ((out.shape[3] + 1) // 2)
    return (tiles + chunk_tiles - 1) // chunk_tiles


@kernel
def _winograd_worker(x, wino, bias, out, top, left, chunk_tiles, chunk_channels, runs, counters, worker, workers,
                     n_items):
    """One thread's share of :func:`winograd_conv`: its buffers, then the items it claims. A compiled
    function of its own: in the ``prange`` body this setup made the kernel compile 3.8 s instead of ~1."""
    n_groups, block = wino.shape[0], wino.shape[4]
    c_per_group = x.shape[1] // n_groups
    oh, ow = out.shape[2], out.shape[3]
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    v_planes = c_per_group * chunk_tiles + PLANE_PAD
    row_len = 2 * tw + 2
    chunk_rows = 2 * min(th, (chunk_tiles + tw - 2) // tw + 1) + 2  # input rows of a chunk's part of an image
    # Zeros: the last micro-tile of a chunk reads slots past its tiles (finite values, results unused).
    v = np.zeros(16 * v_planes, dtype=out.dtype)
    m = np.empty(16 * (chunk_tiles * block + PLANE_PAD), dtype=out.dtype)
    rows = np.empty(chunk_rows * row_len, dtype=out.dtype)
    tile_base = np.empty(chunk_tiles, dtype=np.int64)
    pix = np.empty(16 * chunk_tiles, dtype=np.int64)
    for e in range(16):
        for k in range(chunk_tiles):
            pix[e * chunk_tiles + k] = e * v_planes + k
    starts = np.empty(c_per_group, dtype=np.int64)
    for c in range(c_per_group):
        starts[c] = c * chunk_tiles
    loaded = np.int64(-1)  # the (group, chunk) whose transformed input v holds (not a literal: one type)
    item, used = next_item(counters, worker, 0, workers, n_items)
    while item >= 0:
        loaded = _winograd_item(x, wino, bias, out, top, left, chunk_tiles, chunk_channels, runs, item, loaded,
                                v, m, rows, tile_base, pix, starts)
        item, used = next_item(counters, worker, used, workers, n_items)


@kernel
def _winograd_item(x, wino, bias, out, top, left, chunk_tiles, chunk_channels, runs, item, loaded, v, m, rows,
                   tile_base, pix, starts):
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
        _input_transform(x, g * c_per_group, c_per_group, top, left, th, tw, t0, nt, chunk_tiles, v, rows, tile_base)
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
def _input_transform(x, c_first, c_count, top, left, th, tw, t0, nt, chunk_tiles, v, rows, tile_base):
    """``v[e * P + c * chunk_tiles + k] = (B^T d B)[e]`` of channel ``c_first + c`` under tile ``t0 + k``
    (``k < nt``, ``P = c_count * chunk_tiles + PLANE_PAD``), through ``rows``: the padded input rows of one
    image's part of the chunk, ``2 * TW + 2`` values each (zeros outside the input)."""
    n_batch, c_in, ih, iw = x.shape
    xf = x.reshape(-1)
    row_len = 2 * tw + 2
    es = c_count * chunk_tiles + PLANE_PAD
    per_image = th * tw
    t = t0
    while t < t0 + nt:
        n = t // per_image
        t_end = min(t0 + nt, (n + 1) * per_image)
        ty_a = (t - n * per_image) // tw
        ty_b = (t_end - 1 - n * per_image) // tw
        n_rows = 2 * (ty_b - ty_a) + 4
        ty, tx = ty_a, t - n * per_image - ty_a * tw
        for tt in range(t - t0, t_end - t0):
            tile_base[tt] = 2 * (ty - ty_a) * row_len + 2 * tx
            tx += 1
            if tx == tw:
                tx, ty = 0, ty + 1
        for c in range(c_count):
            src = ((n * c_in + c_first + c) * ih) * iw
            for r in range(n_rows):
                iy = 2 * ty_a + r - top
                row = r * row_len
                for j in range(row_len):
                    rows[np.uint64(row + j)] = 0.0
                if 0 <= iy < ih:
                    for j in range(iw):  # row_len >= left + W (the output covers the input)
                        rows[np.uint64(row + left + j)] = xf[np.uint64(src + iy * iw + j)]
            for tt in range(t - t0, t_end - t0):
                b = np.uint64(tile_base[tt])
                rl, one = np.uint64(row_len), np.uint64(1)
                d00, d01, d02, d03 = _four(rows, b, one)
                d10, d11, d12, d13 = _four(rows, b + rl, one)
                d20, d21, d22, d23 = _four(rows, b + rl + rl, one)
                d30, d31, d32, d33 = _four(rows, b + rl + rl + rl, one)
                # B^T along the columns of the patch, then along its rows
                r00, r01, r02, r03 = d00 - d20, d01 - d21, d02 - d22, d03 - d23
                r10, r11, r12, r13 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
                r20, r21, r22, r23 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
                r30, r31, r32, r33 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
                k = np.uint64(c * chunk_tiles + tt)
                s = np.uint64(es)
                _patch_row(v, k, s, r00, r01, r02, r03)
                _patch_row(v, k + np.uint64(4) * s, s, r10, r11, r12, r13)
                _patch_row(v, k + np.uint64(8) * s, s, r20, r21, r22, r23)
                _patch_row(v, k + np.uint64(12) * s, s, r30, r31, r32, r33)
        t = t_end


@inline
def _four(arr, a, step):
    """``arr[a], arr[a + step], arr[a + 2 * step], arr[a + 3 * step]`` (unsigned indices: no wrap-around
    code)."""
    return arr[a], arr[a + step], arr[a + step + step], arr[a + step + step + step]


@inline
def _patch_row(v, k, s, a, b, c, d):
    """Row ``(a, b, c, d)`` of ``B^T d`` times ``B``: the 4 values ``s`` apart from ``v[k]``."""
    v[k] = a - c
    v[k + s] = b + c
    v[k + s + s] = c - b
    v[k + s + s + s] = b - d


@kernel
def _output_transform(m, m_planes, block, n_groups, g, blk, bias, out, th, tw, t0, nt):
    """``out`` tiles ``t0 .. t0 + nt - 1`` of the output channels ``g * O/G + blk * B + i`` (``i < B``, those
    below O/G): ``A^T M A + bias`` from ``m[e * m_planes + k * B + i]``."""
    n_batch, c_out, oh, ow = out.shape
    o_per_group = c_out // n_groups
    n_rows = min(block, o_per_group - blk * block)
    o_first = g * o_per_group + blk * block
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
        for i in range(n_rows):
            a = np.uint64(k * block + i)
            m0, m1, m2, m3 = _four(m, a, e1)
            m4, m5, m6, m7 = _four(m, a + e4, e1)
            m8, m9, m10, m11 = _four(m, a + e4 + e4, e1)
            m12, m13, m14, m15 = _four(m, a + e4 + e4 + e4, e1)
            # A^T along the columns, then along the rows
            s00, s01, s02, s03 = m0 + m4 + m8, m1 + m5 + m9, m2 + m6 + m10, m3 + m7 + m11
            s10, s11, s12, s13 = m4 - m8 - m12, m5 - m9 - m13, m6 - m10 - m14, m7 - m11 - m15
            b = bias[o_first + i]
            d = np.uint64(dst + i * ohw)
            of[d] = s00 + s01 + s02 + b
            if right:
                of[d + np.uint64(1)] = s01 - s02 - s03 + b
            if below:
                of[d + np.uint64(ow)] = s10 + s11 + s12 + b
                if right:
                    of[d + np.uint64(ow + 1)] = s11 - s12 - s13 + b
