"""Transposed convolution kernels of ``algo="direct"``: gather form by output phase. (``algo="col2im"``
has its own module, ``conv_transpose_col2im.py``.)

Index algebra (the layout is built once in ``fastconv.conv_transpose``, not here). Per axis, with the
padding ``p0`` before, output row ``y`` receives ``x[i] * w[k]`` exactly when ``y + p0 = i * s + k * d``.
Split the output rows by *phase* ``r = y % s`` and write ``y = r + s * j``. For a fixed phase the taps
that contribute are the ``k`` with ``(r + p0 - k * d) % s == 0``, and each reads input row
``i = j + q`` with the constant shift ``q = (r + p0 - k * d) // s``. So every phase of the output is a
stride-1 correlation of the input with a subset of the taps, at constant shifts (some negative).

The wrapper zero-pads the input so that every shift becomes a non-negative offset and lays it out
channel-major: ``planes[c, n * plane_len + Y * row_len + X]`` (each image a flat plane of
``rows x row_len``, images back to back, a row of slack at the end). A tap ``(c, ky, kx)`` of phase
``(ry, rx)`` reads channel ``c`` at offset ``(qy + pad_top) * row_len + (qx + pad_left)``, and the phase
output ``(n, jy, jx)`` is the virtual position ``p = n * plane_len + jy * row_len + jx``::

    phase_out[o, p] = sum_taps wpk[g, o_blk, tap, o_lane] * planes[g * cg + tap_chan[tap], p + tap_off[tap]]

a unit-stride, branch-free loop over ``p`` that LLVM vectorises. A work item takes a run of
positions inside a *chunk* of ``imgs`` consecutive images (so small images still give long runs).
Positions with ``jx >= nx`` or ``jy >= ny`` (the phase's extent) are computed and discarded; the store
writes ``out[n, o, ry + jy*sh, rx + jx*sw]``. Phases reached by no tap (dilation > stride,
output_padding past the stride) have zero taps: bias only.

Parallel ownership: a work item of the gather kernels = (chunk of images, group, block of output
channels, phase, tile of positions) and writes only those output elements (phases partition the
output). No two items write the same element, and each element's sum order is fixed, so results are
bit-identical for every thread count. Items are claimed dynamically (:mod:`.claim`).
"""

import numpy as np
from numba import prange

from .._jit import inline, kernel, parallel_kernel
from .claim import next_item, range_counters
from .tap_accumulate import accumulate_taps_1, accumulate_taps_4

OB = 8  # output channels per register block (two halves of 4)


@kernel
def _store_phase_tile(acc, out, bias, n_first, o_first, n_rows, p0, plen, plane_len, row_len, ry, rx, ny,
                      nx, sh, sw):
    """Write accumulator rows to ``out[n, o_first + j, ry + jy*sh, rx + jx*sw]`` for valid positions."""
    for j in range(n_rows):
        o = o_first + j
        b = bias[o]
        for p in range(plen):
            q = p0 + p
            img = q // plane_len
            r = q - img * plane_len
            jy = r // row_len
            jx = r - jy * row_len
            if jy < ny and jx < nx:
                out[n_first + img, o, ry + jy * sh, rx + jx * sw] = acc[j, p] + b


@inline
def _n_tiles(rows, row_len, imgs, tile):
    return (imgs * rows * row_len + tile - 1) // tile  # a chunk's positions, in tiles


@inline
def _n_items(n_fast, n_groups, n_batch, phase_geom, rows, row_len, imgs, tile):
    """Work items of the gather kernels: (chunk of images, group, phase, tile, ``n_fast`` channel blocks)."""
    return (n_batch + imgs - 1) // imgs * n_groups * phase_geom.shape[0] * _n_tiles(rows, row_len, imgs, tile) * n_fast


@inline
def _item_span(item, n_fast, n_groups, n_batch, phase_geom, rows, row_len, imgs, tile):
    """``(fast, f, g, n_first, p0, plen)`` of work item ``item``: its channel block ``fast`` (varying
    fastest), phase, group, first image, and its positions ``[p0, p0 + plen)`` in the chunk's phase grid
    (``plen <= 0``: the tile lies past the phase's positions, nothing to do)."""
    n_tiles = _n_tiles(rows, row_len, imgs, tile)
    n_phases = phase_geom.shape[0]
    fast = item % n_fast
    rest = item // n_fast
    t_idx = rest % n_tiles
    rest = rest // n_tiles
    f = rest % n_phases
    rest = rest // n_phases
    g = rest % n_groups
    n_first = (rest // n_groups) * imgs
    plane_len = rows * row_len
    npos = (min(imgs, n_batch - n_first) - 1) * plane_len + phase_geom[f, 2] * row_len
    p0 = t_idx * tile
    return fast, f, g, n_first, p0, min(tile, npos - p0)


@parallel_kernel(fastmath={"contract"})
def conv_transpose_phases_ob8(planes, phase_geom, tap_start, tap_chan, tap_off, wpk, bias, out, rows,
                              row_len, sh, sw, imgs, tile, workers):
    """Gather-form transposed convolution, up to 8 output channels per work item.

    Contract (caller guarantees):
    - ``planes``: (C_in, N * rows * row_len + row_len) zero-padded, channel-major input (see module
      docstring); every read ``p + tap_off[t]`` of a valid position lies inside the image's plane.
    - ``phase_geom``: int64 (P, 4) rows ``(ry, rx, ny, nx)``; the phases partition the output
      (``ny = ceil((OH - ry) / sh) <= rows``, ``nx = ceil((OW - rx) / sw) <= row_len``).
    - ``tap_start``: int64 (P + 1,), phase ``f`` owns taps ``tap_start[f] .. tap_start[f + 1]``;
      ``tap_chan`` (relative to the group) and ``tap_off``: int64 (T,).
    - ``wpk``: (G, n_blocks, T, 8), zero for channels beyond O / G; ``bias``: (O,) (zeros when none);
      ``out``: (N, O, OH, OW) C-contiguous, same dtype as ``planes``.
    - ``imgs`` images per chunk, ``tile`` positions per work item (accumulators ``8 x tile``): neither
      may depend on the thread count (they change no sum, only how positions are split).
    - ``workers``: the thread count; items are claimed dynamically (:mod:`.claim`).
    """
    n_groups, n_blocks, _, _ = wpk.shape
    items = _n_items(n_blocks, n_groups, out.shape[0], phase_geom, rows, row_len, imgs, tile)
    counters = range_counters(items, workers)
    for worker in prange(workers):
        item, used = next_item(counters, worker, 0, workers, items)
        while item >= 0:
            _ob8_item(item, planes, phase_geom, tap_start, tap_chan, tap_off, wpk, bias, out, rows, row_len, sh, sw,
                      imgs, tile)
            item, used = next_item(counters, worker, used, workers, items)


@inline
def _ob8_item(item, planes, phase_geom, tap_start, tap_chan, tap_off, wpk, bias, out, rows, row_len, sh, sw, imgs,
              tile):
    """Work item ``item`` of :func:`conv_transpose_phases_ob8`: (chunk of images, group, phase, tile of
    positions, block of output channels), the block varying fastest."""
    n_groups, n_blocks, _, _ = wpk.shape
    cg = planes.shape[0] // n_groups
    og = out.shape[1] // n_groups
    plane_len = rows * row_len
    # blk fastest: consecutive items reuse the same input run from cache
    blk, f, g, n_first, p0, plen = _item_span(item, n_blocks, n_groups, out.shape[0], phase_geom, rows, row_len,
                                              imgs, tile)
    if plen <= 0:
        return
    base = n_first * plane_len + p0
    n_rows = min(OB, og - blk * OB)
    acc = np.zeros((OB, tile), dtype=out.dtype)
    w_blk = wpk[g, blk]
    for half in range(2):
        if 4 * half >= n_rows:
            break
        accumulate_taps_4(acc, 4 * half, planes, g * cg, tap_chan, tap_off, tap_start[f], tap_start[f + 1],
                          base, w_blk, plen)
    _store_phase_tile(acc, out, bias, n_first, g * og + blk * OB, n_rows, p0, plen, plane_len, row_len,
                      phase_geom[f, 0], phase_geom[f, 1], phase_geom[f, 2], phase_geom[f, 3], sh, sw)


@parallel_kernel(fastmath={"contract"})
def conv_transpose_phases_ob1(planes, phase_geom, tap_start, tap_chan, tap_off, wpk, bias, out, rows,
                              row_len, sh, sw, imgs, tile, workers):
    """Gather-form transposed convolution, one output channel per work item (depthwise: one channel
    per group). Same contract as :func:`conv_transpose_phases_ob8` with ``wpk`` shaped (G, O / G, T, 1).
    """
    n_groups, og, _, _ = wpk.shape
    items = _n_items(og, n_groups, out.shape[0], phase_geom, rows, row_len, imgs, tile)
    counters = range_counters(items, workers)
    for worker in prange(workers):
        item, used = next_item(counters, worker, 0, workers, items)
        while item >= 0:
            _ob1_item(item, planes, phase_geom, tap_start, tap_chan, tap_off, wpk, bias, out, rows, row_len, sh, sw,
                      imgs, tile)
            item, used = next_item(counters, worker, used, workers, items)


@inline
def _ob1_item(item, planes, phase_geom, tap_start, tap_chan, tap_off, wpk, bias, out, rows, row_len, sh, sw, imgs,
              tile):
    """Work item ``item`` of :func:`conv_transpose_phases_ob1`: (chunk of images, group, phase, tile of
    positions, output channel), the channel varying fastest."""
    n_groups, og, _, _ = wpk.shape
    cg = planes.shape[0] // n_groups
    plane_len = rows * row_len
    j, f, g, n_first, p0, plen = _item_span(item, og, n_groups, out.shape[0], phase_geom, rows, row_len, imgs, tile)
    if plen <= 0:
        return
    base = n_first * plane_len + p0
    acc = np.zeros((1, tile), dtype=out.dtype)
    accumulate_taps_1(acc, planes, g * cg, tap_chan, tap_off, tap_start[f], tap_start[f + 1], base, wpk[g, j],
                      plen)
    _store_phase_tile(acc, out, bias, n_first, g * og + j, 1, p0, plen, plane_len, row_len,
                      phase_geom[f, 0], phase_geom[f, 1], phase_geom[f, 2], phase_geom[f, 3], sh, sw)


@parallel_kernel
def interleave_phases(phases, phase_off, phase_ny, phase_nx, out, sh, sw):
    """``out[n, o, ry + sh * jy, rx + sw * jx] = phases[phase_off[f] + ((n * O + o) * ny_f + jy) * nx_f + jx]``
    with ``f = ry * n_x + rx``: every output phase (``n_x = min(sw, OW)`` column phases per row phase) from
    its own (N, O, ny_f, nx_f) block of ``phases``, where the phase-wise direct kernel wrote it.

    Contract: ``phases`` flat, ``out`` (N, O, OH, OW) C-contiguous, same dtype; ``phase_off``, ``phase_ny``,
    ``phase_nx`` int64, one entry per phase in ``(ry, rx)`` order (``ry < min(sh, OH)``), the phase's
    extent ``ny_f = ceil((OH - ry) / sh)``, ``nx_f = ceil((OW - rx) / sw)``. Parallel ownership: one
    ``prange`` iteration = one output row; the row's column phases fill it while it sits in L1.
    """
    n_batch, c_out, oh, ow = out.shape
    n_x = min(sw, ow)
    of = out.reshape(-1)
    for task in prange(n_batch * c_out * oh):
        plane = task // oh
        y = task - plane * oh
        ry = y % sh
        jy = y // sh
        d0 = task * ow
        f0 = ry * n_x
        if sw == 2 and n_x == 2 and phase_nx[f0] == phase_nx[f0 + 1]:
            # two equal column phases: an interleaving LLVM vectorises (paired stores)
            s0 = phase_off[f0] + (plane * phase_ny[f0] + jy) * phase_nx[f0]
            s1 = phase_off[f0 + 1] + (plane * phase_ny[f0 + 1] + jy) * phase_nx[f0]
            for jx in range(phase_nx[f0]):
                of[np.uint64(d0 + 2 * jx)] = phases[np.uint64(s0 + jx)]
                of[np.uint64(d0 + 2 * jx + 1)] = phases[np.uint64(s1 + jx)]
            continue
        for rx in range(n_x):
            f = f0 + rx
            s = phase_off[f] + (plane * phase_ny[f] + jy) * phase_nx[f]
            for jx in range(phase_nx[f]):
                of[np.uint64(d0 + rx + sw * jx)] = phases[np.uint64(s + jx)]
