"""Array layouts the conv kernels need: tap lists, padded planes, packed weights, im2col chunks.

See the block comment in ``fastconv/_kernels/conv_direct.py`` for the index algebra of the direct
kernel and ``fastconv/_kernels/conv_direct_local.py`` for the row-block kernels (depthwise, first layer).
"""

import functools

import numpy as np

from . import memory
from ._kernels.conv_direct_local import TAP_GROUP
from ._kernels.pad import fill_planes, pack_blocked
from ._validate import as_kernel_array
from .padding import pad_nchw


def _ceil_div(a, b):
    return -(-a // b)


def padded_geometry(in_hw, pads, k_hw, s_hw, d_hw, out_hw):
    """Plane geometry of the padded input read at strided positions: (row_len, rows, tail).

    For the register-blocked direct kernel, which steps its positions by the stride (no space-to-depth
    copy): output ``(oy, ox)`` and tap ``(ky, kx)`` read row
    ``oy * sh + ky * dh`` and column ``ox * sw + kx * dw`` of the padded image. Compact rows
    (``row_len = W + max(left, right)``: one row's trailing zeros serve as its right padding and as the
    next row's left padding; likewise ``rows = H + max(top, bottom)`` between images, so a 14x14 map
    with 3x3 'same' padding is 15 x 15 rather than 16 x 16 per image), and ``tail`` zeros so the last
    image's furthest read
    stays inside the plane.
    """
    (ih, iw), ((top, bottom), (left, right)) = in_hw, pads
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = k_hw, s_hw, d_hw, out_hw
    row_len = iw + max(left, right)
    rows = ih + max(top, bottom)
    last_read = ((oh - 1) * sh + (kh - 1) * dh) * row_len + (ow - 1) * sw + (kw - 1) * dw
    return row_len, rows, max(0, last_read + 1 - rows * row_len)


def tile_geometry(in_hw, pads, k_hw, s_hw, d_hw, out_hw, n_batch, item_positions):
    """``(row_len, rows_per_item, img_rows, images_per_item)`` of the per-item tiles of
    ``conv_blocked_tiles`` (``fastconv/_kernels/conv_direct_tiles.py``).

    Compact rows as in :func:`padded_geometry`. A work item covers about ``item_positions`` outputs: whole
    rows, the map's rows split evenly into blocks; when one block is the whole map, several images (small
    maps). ``img_rows`` tile rows per image reach the furthest read of the block's positions.
    """
    iw, (left, right) = in_hw[1], pads[1]  # rows past the input are zeros in the tile: no row padding
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = k_hw, s_hw, d_hw, out_hw
    row_len = iw + max(left, right)
    n_row_blocks = _ceil_div(oh, max(1, item_positions // ow))
    rows_per_item = _ceil_div(oh, n_row_blocks)
    last_read = ((rows_per_item - 1) * sh + (kh - 1) * dh) * row_len + (ow - 1) * sw + (kw - 1) * dw
    images_per_item = 1
    if n_row_blocks == 1:
        images_per_item = max(1, min(n_batch, item_positions // (oh * ow)))
    return row_len, rows_per_item, last_read // row_len + 1, images_per_item


def tile_workspace(c_per_group, geometry, ow, block, itemsize):
    """Bytes of one thread's buffers for the tile kernel: its tile (the group's channels, ``geometry`` from
    :func:`tile_geometry`) and the partial sums of an item's positions (``block`` channels each)."""
    row_len, rows_per_item, img_rows, images = geometry
    return (c_per_group * images * img_rows * row_len + images * rows_per_item * ow * block) * itemsize


@functools.lru_cache(maxsize=64)
def tap_list(c_per_group, k_hw, s_hw, d_hw, row_len):
    """Plane index (relative to the group) and flat offset of every tap (c, ky, kx).

    No padding taps: a zero-weight tap on real input would turn an inf there into NaN (0 * inf).
    Cached per geometry (building it costs ~0.1 ms, as much as a small convolution); the kernels only
    read the returned arrays, so they are shared between calls.
    """
    (kh, kw), (sh, sw), (dh, dw) = k_hw, s_hw, d_hw
    c, ky, kx = np.meshgrid(np.arange(c_per_group), np.arange(kh), np.arange(kw), indexing="ij")
    c, ky, kx = c.ravel(), ky.ravel(), kx.ravel()
    tap_plane = ((c * sh + (ky * dh) % sh) * sw + (kx * dw) % sw).astype(np.int64)
    tap_off = (((ky * dh) // sh) * row_len + (kx * dw) // sw).astype(np.int64)
    return tap_plane, tap_off


def pack_weights(weight, groups, block, n_taps, dtype):
    """(O, C/g, kh, kw) -> (G, n_blocks, n_taps, block): taps padded with zeros, channels blocked."""
    return pack_taps(weight.reshape(groups, weight.shape[0] // groups, -1), block, n_taps, dtype)


def pack_taps(taps, block, n_taps, dtype):
    """(G, O/G, K) weights in tap order -> (G, n_blocks, n_taps, block), taps padded with zeros to
    ``n_taps >= K``, output channels blocked (zeros beyond O/G): the blocked direct kernels' operand."""
    groups, o_per_group = taps.shape[:2]
    packed = memory.empty((groups, _ceil_div(o_per_group, block), n_taps, block), dtype)
    pack_blocked(as_kernel_array(taps, dtype), packed)  # one compiled pass, one thread
    return packed


def packed_bias(bias, groups, n_blocks, block, dtype):
    """(O,) -> (G, n_blocks * block): each group's bias, zero-padded like its packed weights' blocks."""
    o_per_group = bias.shape[0] // groups
    bpk = np.zeros((groups, n_blocks * block), dtype=dtype)
    bpk[:, :o_per_group] = bias.reshape(groups, o_per_group)
    return bpk


def make_planes(x, pads, row_len, rows, tail, dtype):
    """Zero-padded input rearranged into flat channel planes: (C, N * rows * row_len + tail).

    ``planes[c, n * rows * row_len + i * row_len + j] = xpad[n, c, i, j]`` for ``i < rows``, ``j <
    row_len``, zeros outside the input, then ``tail`` zeros per plane: the direct weight gradient's
    operand (:func:`padded_geometry`). One compiled pass (``fill_planes``) into a pooled buffer: numpy's
    strided copies were slow on short rows (L5's 14-wide rows: 1.39 ms on two threads, this 0.78-0.92
    ms).
    """
    (top, _), (left, _) = pads
    src = as_kernel_array(x, dtype)
    n_batch, c_in = src.shape[:2]
    planes = memory.empty((c_in, n_batch * rows * row_len + tail), dtype)
    fill_planes(src, planes, top, left, rows, row_len)
    return planes


# --- Row-block kernels (conv_depthwise, conv_first) ---------------------------------------------------

# Work items of the row-block kernels are split into this many fixed chunks (each allocates its local
# buffers once). Fixed, not derived from the thread count, so the work split never depends on it.
LOCAL_CHUNKS = 256

# Small maps: images packed into one work item up to about this many local positions. One core,
# depthwise 3x3 GFLOP/s, one image per item vs packed to 512 / 1024 / 4096 positions: 7x7 maps 5.3 vs
# 6.1 / 5.9 / 5.9; 14x14 maps 12.9 vs 13.0 / 12.3 / 8.5 (buffers spill out of L1).
LOCAL_IMAGES_POSITIONS = 512


@functools.lru_cache(maxsize=64)
def local_taps(c_per_group, k_hw, s_hw, d_hw, row_len):
    """Phase plane and offset of every tap (c, ky, kx) for the row-block kernels, padded to a multiple of
    ``TAP_GROUP`` with taps that read the zero plane (index ``c_per_group * sh * sw``) at offset 0.

    Cached per geometry; the kernels only read the returned arrays.
    """
    (sh, sw) = s_hw
    plane, offset = tap_list(c_per_group, k_hw, s_hw, d_hw, row_len)
    n_real = c_per_group * k_hw[0] * k_hw[1]
    n_taps = _ceil_div(n_real, TAP_GROUP) * TAP_GROUP
    tap_plane = np.full(n_taps, c_per_group * sh * sw, dtype=np.int64)
    tap_off = np.zeros(n_taps, dtype=np.int64)
    tap_plane[:n_real] = plane[:n_real]
    tap_off[:n_real] = offset[:n_real]
    return tap_plane, tap_off


def local_geometry(padded_hw, k_hw, s_hw, d_hw, out_hw, n_batch, item_positions):
    """(row_len, rows_per_item, img_rows, images_per_item, buf_rows) of the row-block kernels' buffers.

    ``row_len = ceil(Wp / sw)``; a work item covers ``rows_per_item`` output rows, about
    ``item_positions`` local positions (at least one row); each image's share of the phase planes is
    ``img_rows`` rows, so that every tap offset of every local position stays inside them (one extra
    row for the column offset). When a whole output map fits in one item, an item covers
    ``images_per_item`` images, about ``LOCAL_IMAGES_POSITIONS`` positions (small maps: fewer, longer
    passes), else one.
    """
    (_, wp), (kh, _), (sh, sw), (dh, _), (oh, _) = padded_hw, k_hw, s_hw, d_hw, out_hw
    row_len = _ceil_div(wp, sw)
    rows_per_item = max(1, min(oh, item_positions // row_len))
    img_rows = rows_per_item + (kh - 1) * dh // sh + 1
    images_per_item = 1
    if rows_per_item == oh:
        images_per_item = max(1, min(n_batch, LOCAL_IMAGES_POSITIONS // (img_rows * row_len)))
    return row_len, rows_per_item, img_rows, images_per_item, images_per_item * img_rows


def pack_local_weights(weight, groups, block, n_taps, dtype):
    """(O, C/g, kh, kw) -> (G, O/G, T) for ``block == 1``, else (G, n_blocks, T, block): taps padded with
    zeros to ``n_taps``, output channels padded with zeros to whole blocks."""
    c_out = weight.shape[0]
    o_per_group = c_out // groups
    flat = weight.reshape(groups, o_per_group, -1)
    if block == 1:
        packed = np.zeros((groups, o_per_group, n_taps), dtype=dtype)
        packed[:, :, :flat.shape[2]] = flat
        return packed
    n_blocks = _ceil_div(o_per_group, block)
    packed = np.zeros((groups, n_blocks * block, n_taps), dtype=dtype)
    packed[:, :o_per_group, :flat.shape[2]] = flat
    return np.ascontiguousarray(packed.reshape(groups, n_blocks, block, n_taps).transpose(0, 1, 3, 2))


def local_input(x, pads, padding_mode, dtype):
    """The input the row-block kernels read and its (top, left) zero padding: ``x`` itself for zero
    padding (the kernels pad on the fly), else a padded copy (numpy) with no padding left to do."""
    (top, _), (left, _) = pads
    if padding_mode == "zeros":
        return as_kernel_array(x, dtype), top, left
    return pad_nchw(x, pads, padding_mode, dtype), 0, 0
