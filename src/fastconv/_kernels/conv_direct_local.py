"""Shared by the row-block direct kernels (``conv_depthwise``, ``conv_first``): each work item copies
the input rows it needs into a small *local* buffer, zero-padded and split into stride phases, so
that every tap becomes a unit-stride, branch-free loop over that buffer. No padded copy of the whole
input is ever made, and the buffer stays in L1/L2.

Index algebra. A work item computes output rows ``oy0 .. oy0 + rows - 1`` of one group for
``n_img`` consecutive images ``n0 .. n0 + n_img - 1`` (several images only when the whole output map is
one row block: small maps). Its buffer holds, for each input channel ``c`` of the group and stride
phase ``(a, b)``, a *phase plane* of ``buf_rows x row_len`` values, ``img_rows`` rows per image::

    buf[((c * sh + a) * sw + b) * plane_len + (k * img_rows + i) * row_len + j]
        = xpad[n0 + k, c, (oy0 + i) * sh + a, j * sw + b]

with ``xpad`` the input zero-padded by ``(top, left)`` (zeros outside the input),
``plane_len = buf_rows * row_len``, ``row_len = ceil(Wp / sw)`` and ``img_rows = rows_per_item +
(kH-1)*dH // sH + 1`` (enough that no tap of an image's positions reaches the next image's rows).
After the last phase plane comes one plane of zeros (the zero plane). Output ``(n0 + k, oy0 + r, ox)``
is the *local position* ``p = (k * img_rows + r) * row_len + ox`` and tap ``(c, ky, kx)`` reads
``buf[tap_plane * plane_len + tap_off + p]`` with
``tap_plane = (c * sh + (ky*dh) % sh) * sw + (kx*dw) % sw`` and
``tap_off = ((ky*dh) // sh) * row_len + (kx*dw) // sw`` (the tap list of ``fastconv.conv_layout``).
Positions with ``ox >= OW`` or ``r >= rows`` are computed and discarded. Tap lists are padded to a multiple of
``TAP_GROUP`` with taps on the zero plane (and zero weights), so the kernels consume taps nine at a
time with no remainder loop and no ``0 * inf``.

Indices are cast to ``np.uint64`` before indexing: numba then emits no negative-index wrap-around,
which would block vectorisation (the contracts guarantee every index is in range). Flat indexing also
avoids creating array views inside the parallel loop: each view of a shared array increments its
reference count atomically, and two threads doing that on the same counter serialise (measured: a
depthwise kernel with per-row views ran 2x slower than the same loops on flat indices).

The helpers here are inlined into ``conv_depthwise`` and ``conv_first``, and numba's on-disk cache
checks only the source file of the cached function itself: after editing this module, touch those
two modules (or clear the cache) so their kernels recompile.
"""

import numpy as np

from .._jit import inline
from .rows import padded_row

TAP_GROUP = 9  # taps per pass of the row-block kernels (one 3x3 window)

# Bytes per SIMD vector (AVX2). A loop over a row that is not a whole number of vectors long ends in a
# scalar remainder, which dominates short rows (a 7-wide float32 row is all remainder), so the kernels
# write such rows from a flat pass over the whole block instead (measured, one core: 7x7 depthwise
# 3.9 -> 5.4 GFLOP/s, 14x14 6.8 -> 12.8, L8's 28-wide rows 26 -> 40).
VECTOR_BYTES = 32

# The helpers below are inlined into the calling kernel by numba itself (``inline="always"``): they are
# compiled with the caller's options (fastmath contract) and, unlike a call, cost no reference counting
# on the arrays they read (an atomic operation on a counter both threads share). They are never
# compiled on their own (``_jit.inline``).


@inline
def item_counts(n_batch, c_in, n_groups, oh, sh, sw, rows_per_item, img_rows, images_per_item, row_len):
    """The work-item split of a call: ``(n_blocks, plane_len, n_planes, n_items)``.

    ``n_blocks`` row blocks of ``rows_per_item`` output rows per image block, ``n_items`` = image blocks
    (``images_per_item`` images each) x groups x row blocks; a buffer is ``n_planes`` planes of
    ``plane_len`` values (the phase planes of the group's channels, then the zero plane).
    """
    n_blocks = (oh + rows_per_item - 1) // rows_per_item
    n_image_blocks = (n_batch + images_per_item - 1) // images_per_item
    plane_len = images_per_item * img_rows * row_len
    n_planes = c_in // n_groups * sh * sw + 1  # phase planes + the zero plane
    return n_blocks, plane_len, n_planes, n_image_blocks * n_groups * n_blocks


@inline
def load_item(xf, item, n_batch, c_in, ih, iw, n_groups, oh, buf, plane_len, n_blocks, sh, sw, top, left,
              row_len, rows_per_item, img_rows, images_per_item):
    """Decode work ``item`` (row block fastest, then group, then image block; counts from
    :func:`item_counts`) and gather its input rows into the phase planes of ``buf`` (:func:`gather_rows`,
    one image after the other). Returns ``(g, n0, n_img, oy0, rows, npos)``: the group, the first image and
    the number of images, the first output row and the number of rows, and the number of local positions
    ``((n_img - 1) * img_rows + rows) * row_len`` the item computes.
    """
    c_per_group = c_in // n_groups
    blk = item % n_blocks
    g = (item // n_blocks) % n_groups
    n0 = item // (n_blocks * n_groups) * images_per_item
    n_img = min(images_per_item, n_batch - n0)
    oy0 = blk * rows_per_item
    rows = min(rows_per_item, oh - oy0)
    npos = ((n_img - 1) * img_rows + rows) * row_len
    for k in range(n_img):
        gather_rows(xf, ((n0 + k) * c_in + g * c_per_group) * ih * iw, c_per_group, ih, iw, buf,
                    plane_len, k * img_rows, img_rows, oy0, sh, sw, top, left, row_len)
    return g, n0, n_img, oy0, rows, npos


@inline
def gather_rows(xf, x0, c_count, ih, iw, buf, plane_len, row0, n_rows, oy0, sh, sw, top, left, row_len):
    """Fill rows ``row0 .. row0 + n_rows - 1`` of the phase planes of ``buf`` for one image of a work item
    (layout in the module docstring): local row ``row0 + i`` of phase ``(a, b)`` holds padded input row
    ``(oy0 + i) * sh + a``, columns ``j * sw + b``.

    ``xf`` is the whole input flattened, ``x0`` the flat index of ``x[n, first channel of the group]``;
    the item's ``c_count`` channels follow it. Rows or columns outside the input are written as zeros;
    the zero plane after the phase planes is not touched.
    """
    for c in range(c_count):
        xc = x0 + c * ih * iw
        for a in range(sh):
            if sw == 2:
                _gather_rows_pairs(xf, xc, ih, iw, buf, ((c * sh + a) * 2) * plane_len + row0 * row_len,
                                   plane_len, oy0, sh, a, top, left, row_len, n_rows)
                continue
            for b in range(sw):
                plane = ((c * sh + a) * sw + b) * plane_len + row0 * row_len
                # Columns j whose input column j * sw + b - left is inside [0, iw).
                j0 = min(row_len, max(0, (left - b + sw - 1) // sw))
                j1 = max(j0, min(row_len, (iw - 1 + left - b) // sw + 1))
                for i in range(n_rows):
                    iy = (oy0 + i) * sh + a - top
                    if 0 <= iy < ih:
                        padded_row(buf, plane + i * row_len, row_len, j0, j1, xf, xc + iy * iw + j0 * sw + b - left,
                                   sw)
                    else:
                        padded_row(buf, plane + i * row_len, row_len, 0, 0, xf, 0, 1)


@inline
def _gather_rows_pairs(xf, xc, ih, iw, buf, plane0, plane_len, oy0, sh, a, top, left, row_len, n_rows):
    """:func:`gather_rows` for one channel and row phase ``a`` when ``sw == 2``: both column phases from
    one pass over each input row (pairs of adjacent inputs, which LLVM vectorises with shuffles; two
    stride-2 passes cost 2x more)."""
    plane1 = plane0 + plane_len
    # Phase b holds padded columns 2j + b, i.e. input columns 2j + b - left: valid for j in [j0b, j1b).
    j00 = min(row_len, max(0, (left + 1) // 2))
    j10 = max(j00, min(row_len, (iw - 1 + left) // 2 + 1))
    j01 = min(row_len, max(0, left // 2))
    j11 = max(j01, min(row_len, (iw - 2 + left) // 2 + 1))
    lo = max(j00, j01)
    hi = max(lo, min(j10, j11))
    for i in range(n_rows):
        iy = (oy0 + i) * sh + a - top
        r0 = plane0 + i * row_len
        r1 = plane1 + i * row_len
        if 0 <= iy < ih:
            src = xc + iy * iw - left  # input column 2j + b - left is xf[src + 2j + b]
            for j in range(lo):  # zeros outside [j0b, j1b), values at the (at most one) edge column
                buf[np.uint64(r0 + j)] = xf[np.uint64(src + 2 * j)] if j00 <= j < j10 else 0.0
                buf[np.uint64(r1 + j)] = xf[np.uint64(src + 2 * j + 1)] if j01 <= j < j11 else 0.0
            for j in range(hi, row_len):
                buf[np.uint64(r0 + j)] = xf[np.uint64(src + 2 * j)] if j00 <= j < j10 else 0.0
                buf[np.uint64(r1 + j)] = xf[np.uint64(src + 2 * j + 1)] if j01 <= j < j11 else 0.0
            for j in range(lo, hi):
                buf[np.uint64(r0 + j)] = xf[np.uint64(src + 2 * j)]
                buf[np.uint64(r1 + j)] = xf[np.uint64(src + 2 * j + 1)]
        else:
            for j in range(row_len):
                buf[np.uint64(r0 + j)] = 0.0
                buf[np.uint64(r1 + j)] = 0.0


@inline
def tap_starts(tap_plane, tap_off, t0, plane_len):
    """Buffer offsets of the nine taps ``t0 .. t0 + 8`` (a tuple: kept in registers)."""
    return (tap_plane[t0] * plane_len + tap_off[t0],
            tap_plane[t0 + 1] * plane_len + tap_off[t0 + 1],
            tap_plane[t0 + 2] * plane_len + tap_off[t0 + 2],
            tap_plane[t0 + 3] * plane_len + tap_off[t0 + 3],
            tap_plane[t0 + 4] * plane_len + tap_off[t0 + 4],
            tap_plane[t0 + 5] * plane_len + tap_off[t0 + 5],
            tap_plane[t0 + 6] * plane_len + tap_off[t0 + 6],
            tap_plane[t0 + 7] * plane_len + tap_off[t0 + 7],
            tap_plane[t0 + 8] * plane_len + tap_off[t0 + 8])


@inline
def weights9(wf, base, step):
    """``(wf[base], wf[base + step], ..., wf[base + 8 * step])``: nine tap weights of one output channel."""
    return (wf[base], wf[base + step], wf[base + 2 * step], wf[base + 3 * step], wf[base + 4 * step],
            wf[base + 5 * step], wf[base + 6 * step], wf[base + 7 * step], wf[base + 8 * step])


@inline
def load9(buf, q, p):
    """The nine tap inputs of local position ``p``: ``buf[q[k] + p]``."""
    return (buf[np.uint64(q[0] + p)], buf[np.uint64(q[1] + p)], buf[np.uint64(q[2] + p)],
            buf[np.uint64(q[3] + p)], buf[np.uint64(q[4] + p)], buf[np.uint64(q[5] + p)],
            buf[np.uint64(q[6] + p)], buf[np.uint64(q[7] + p)], buf[np.uint64(q[8] + p)])


@inline
def dot9(start, w, v):
    """``start + w[0] * v[0] + ... + w[8] * v[8]``, summed left to right (a chain of fused multiply-adds)."""
    return (start + w[0] * v[0] + w[1] * v[1] + w[2] * v[2] + w[3] * v[3] + w[4] * v[4] + w[5] * v[5]
            + w[6] * v[6] + w[7] * v[7] + w[8] * v[8])
