"""The register-blocked direct convolution on per-item padded tiles: ``conv2d(algo="direct")`` with zero
padding.

Same micro-kernel and the same sums as :func:`fastconv._kernels.conv_direct.conv_taps_blocked` (bit
for bit), but no padded copy of the whole input: each work item first copies the input rows it reads
into its thread's *tile*, zero-padded (``rows.padded_row``), and runs its positions there. The whole-input copy (the
"planes") wrote 8-27 MB per call (L2: 2.2 ms of a 37.6 ms call, L5: 0.9 of 36.8) and the kernel read
it back from memory; a tile is written and read in the core's own L2.

Index algebra. A work item computes output rows ``oy0 .. oy0 + rows - 1`` of group ``g`` for
``n_img`` consecutive images from ``n0`` (several images only when one item covers a whole map). Its
tile holds, for each input channel ``c`` of the group, image ``k`` and local row ``i``::

    tile[c * plane_len + (k * img_rows + i) * row_len + j] = xpad[n0 + k, g * C/G + c, oy0 * sh + i, j]

``xpad`` being the input zero-padded by ``(top, left)``, ``plane_len = images_per_item * img_rows *
row_len``. Rows are compact (``row_len = W + max(left, right)``): a read past a row's end lands in the
next row's left padding, as in :func:`fastconv.conv_layout.padded_geometry`. Output ``(n0 + k, oy, ox)``
has the tile position ``p = k * img_rows * row_len + (oy - oy0) * sh * row_len + ox * sw`` and reads tap
``t`` at ``tile[p + starts[t]]`` with ``starts[t] = c(t) * plane_len + ky * dh * row_len + kx * dw``.

Parallel ownership: a work item = (image block, group, row block, run of output-channel blocks), the
run varying fastest; an item writes only its outputs, and the tile belongs to the thread (it is
refilled only when the thread's next item needs other rows). Items are claimed as in
:mod:`.claim`; the items and their sums depend on the shape only, so results are bit-identical for
every thread count.

numba's on-disk cache does not track the modules this one inlines from (``conv_direct``, ``rows``):
after editing them, touch this file so the kernel recompiles.
"""

import numpy as np
from numba import prange

from .._jit import kernel, parallel_kernel
from .claim import next_item, range_counters
from .conv_direct import NP, blocked_positions, virtual_positions
from .rows import padded_row


@parallel_kernel
def conv_blocked_tiles(x, top, left, row_len, rows_per_item, img_rows, images_per_item, starts, wpk, bpk, out,
                       sh, sw, blocks_per_item, chunk_taps, workers):
    """Direct convolution with zero padding ``(top, left)`` through per-item tiles (module docstring).

    Contract (caller guarantees):
    - ``x``: (N, C, H, W) C-contiguous, the unpadded input; ``out``: (N, O, OH, OW), same float dtype.
    - ``row_len = W + max(left, right)``; ``rows_per_item`` output rows per item (``images_per_item`` > 1
      only if ``rows_per_item == OH``); ``img_rows`` tile rows per image, enough that every read of an
      image's positions stays inside them: ``img_rows * row_len > ((rows_per_item - 1) * sh + (kH - 1) *
      dH) * row_len + (OW - 1) * sw + (kW - 1) * dW``.
    - ``starts``: int64 (T,) tap offsets in the tile (module docstring).
    - ``wpk``: (G, n_blocks, T, B) packed weights, ``bpk``: (G, n_blocks * B) bias, as for
      ``conv_taps_blocked``; ``blocks_per_item``, ``chunk_taps``, ``workers`` >= 1 likewise.

    The work of an item is a compiled function of its own (:func:`_tile_item`), not inlined: numba's
    parallel passes copy the loop body several times. Compile time matters here: this is the kernel of
    the first conv2d most programs run (cold start).
    """
    n_batch, c_in = x.shape[0], x.shape[1]
    n_groups, n_blocks, block = wpk.shape[0], wpk.shape[1], wpk.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    n_row_blocks = (oh + rows_per_item - 1) // rows_per_item
    n_image_blocks = (n_batch + images_per_item - 1) // images_per_item
    n_runs = (n_blocks + blocks_per_item - 1) // blocks_per_item
    n_items = n_image_blocks * n_groups * n_row_blocks * n_runs
    plane_len = images_per_item * img_rows * row_len
    tile_positions = (images_per_item * rows_per_item * ow + NP - 1) // NP * NP
    counters = range_counters(n_items, workers)
    for worker in prange(workers):
        tile = np.empty(c_in // n_groups * plane_len, dtype=out.dtype)
        pix = np.empty(tile_positions, dtype=np.int64)
        acc = np.empty((tile_positions, block), dtype=out.dtype)
        loaded = np.int64(-1)  # the span (image block, group, row block) the tile holds (not a literal:
        # that would type _tile_item twice)
        item, used = next_item(counters, worker, 0, workers, n_items)
        while item >= 0:
            loaded = _tile_item(x, top, left, row_len, rows_per_item, img_rows, images_per_item, starts, wpk, bpk,
                                out, sh, sw, blocks_per_item, chunk_taps, item, loaded, tile, pix, acc)
            item, used = next_item(counters, worker, used, workers, n_items)


@kernel
def _tile_item(x, top, left, row_len, rows_per_item, img_rows, images_per_item, starts, wpk, bpk, out, sh, sw,
               blocks_per_item, chunk_taps, item, loaded, tile, pix, acc):
    """Work item ``item`` of :func:`conv_blocked_tiles`: (image block, group, row block, run of channel
    blocks), the run varying fastest. Refills the thread's ``tile`` unless it holds the item's span
    already (``loaded``); returns the span it holds."""
    n_batch, c_in, ih, iw = x.shape
    n_groups, n_blocks = wpk.shape[0], wpk.shape[1]
    oh, ow = out.shape[2], out.shape[3]
    ohw = oh * ow
    c_per_group = c_in // n_groups
    n_row_blocks = (oh + rows_per_item - 1) // rows_per_item
    n_runs = (n_blocks + blocks_per_item - 1) // blocks_per_item
    img_len = img_rows * row_len
    plane_len = images_per_item * img_len
    span = item // n_runs
    run = item - span * n_runs
    g = span // n_row_blocks % n_groups
    n0 = span // (n_row_blocks * n_groups) * images_per_item
    n_img = min(images_per_item, n_batch - n0)
    oy0 = span % n_row_blocks * rows_per_item
    rows = min(rows_per_item, oh - oy0)
    xf = x.reshape(-1)
    if span != loaded:
        # tile row i of image k: padded input row oy0 * sh + i (zeros outside the input)
        for c in range(c_per_group):
            for k in range(n_img):
                src = ((n0 + k) * c_in + g * c_per_group + c) * ih * iw
                dst = c * plane_len + k * img_len
                for i in range(img_rows):
                    iy = oy0 * sh + i - top
                    # One call site: a second inlined copy of the row copy cost 2.3 s of compile time.
                    inside = 0 <= iy < ih  # else a row of zeros
                    padded_row(tile, dst + i * row_len, row_len, left if inside else 0,
                               min(row_len, left + iw) if inside else 0, xf, src + iy * iw if inside else 0, 1)
    # The item's outputs are one run of flat positions: whole maps when it has several images.
    m0 = n0 * ohw + oy0 * ow
    m_end = m0 + ((n_img - 1) * oh + rows) * ow
    virtual_positions(pix, m0, m_end, -(n0 * img_len + oy0 * sh * row_len), oh, ow, img_len, sh * row_len, sw)
    blocked_positions(tile, starts, wpk, bpk, out, g, run * blocks_per_item, min(n_blocks, (run + 1) * blocks_per_item),
                      m0, m_end, chunk_taps, pix, acc)
    return span
