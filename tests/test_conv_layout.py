"""The direct conv's plane layout: the compiled plane builder matches the definition (compact rows,
zeros outside the input, the tail), and conv2d's direct kernel is right on every geometry."""

import numba
import numpy as np
import pytest

import fastconv
import fastconv.conv_layout as layout
import fastconv.reference as ref
from fastconv.conv import conv2d_problem

CASES = {
    "s1-pad1": ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=1)),
    "s2-same": ((2, 3, 9, 8), (4, 3, 3, 3), dict(stride=2, padding="same")),
    "s3x2-full-dil2": ((1, 2, 11, 10), (3, 2, 3, 2), dict(stride=(3, 2), padding="full", dilation=2)),
    "s2-asym": ((3, 2, 6, 9), (5, 2, 2, 4), dict(stride=2, padding=((0, 3), (2, 1)))),
    # stride 1: compact rows (one shared padding gap between rows and between images)
    "s1-asym-dil2": ((2, 3, 7, 9), (4, 3, 3, 2), dict(padding=((2, 0), (1, 3)), dilation=2)),
    "s1-full": ((3, 2, 5, 6), (5, 2, 3, 3), dict(padding="full")),
    "s1-pad-wider-than-kernel": ((2, 2, 5, 6), (4, 2, 3, 3), dict(padding=4)),
    "s1-valid": ((2, 2, 5, 6), (4, 2, 3, 2), {}),
}


def _planes(x, w, kw):
    problem = conv2d_problem("t", x.shape, w.shape, kw.get("stride", 1), kw.get("padding", 0),
                             kw.get("dilation", 1), 1, x.dtype)
    row_len, rows, tail = layout.padded_geometry(problem.in_hw, problem.pads, problem.kernel_hw, problem.stride,
                                                 problem.dilation, problem.out_hw)
    planes = layout.make_planes(x, problem.pads, row_len, rows, tail, x.dtype)
    return planes, problem, rows, row_len, tail


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_planes_match_the_definition(case, threads, restore_threads):
    # planes[c, n, i, j] = xpad[n, c, i, j], zeros outside x (explicit loops), then the zero tail; the
    # compiled builder splits the (channel, image) planes between the threads.
    fastconv.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    x_shape, w_shape, kw = CASES[case]
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    planes, problem, rows, row_len, tail = _planes(x, np.ones(w_shape, np.float32), kw)
    ((top, _), (left, _)) = problem.pads
    n_batch, c_in, ih, iw = x.shape
    want = np.zeros((c_in, n_batch, rows, row_len), np.float32)
    for c, n, i, j in np.ndindex(want.shape):
        y, z = i - top, j - left
        if 0 <= y < ih and 0 <= z < iw:
            want[c, n, i, j] = x[n, c, y, z]
    body = n_batch * rows * row_len
    assert planes.shape == (c_in, body + tail)
    np.testing.assert_array_equal(planes[:, :body], want.reshape(c_in, body))
    assert not planes[:, body:].any()
    # every read of the direct kernel stays inside: the furthest tap of the last output
    (kh, kwid), (sh, sw), (dh, dw), (oh, ow) = problem.kernel_hw, problem.stride, problem.dilation, problem.out_hw
    last = (n_batch - 1) * rows * row_len + ((oh - 1) * sh + (kh - 1) * dh) * row_len + (ow - 1) * sw + (kwid - 1) * dw
    assert last < body + tail


@pytest.mark.parametrize("case", list(CASES))
def test_conv2d_direct_matches_reference(case):
    x_shape, w_shape, kw = CASES[case]
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    got = fastconv.conv2d(x, w, algo="direct", **kw)
    np.testing.assert_allclose(got, ref.conv2d(x, w, **kw), rtol=1e-10, atol=1e-10)


TILE_CASES = dict(CASES, **{
    "s1-row-blocks": ((2, 2, 40, 30), (3, 2, 3, 3), dict(padding=1)),  # 512 // 30 -> 3 blocks of 14 rows
    "s2-row-blocks-dil": ((1, 3, 45, 50), (2, 3, 3, 3), dict(stride=2, padding=(2, 3), dilation=(1, 2))),
})


@pytest.mark.parametrize("case", list(TILE_CASES))
def test_tile_reads_are_the_padded_input(case):
    # Build every work item's tile from its definition (compact rows of the zero-padded input) and check
    # each read of the direct kernel, output (n, oy, ox) x tap (c, ky, kx), against xpad itself: inside
    # the tile, and the value of xpad[n, c, oy * sh + ky * dh, ox * sw + kx * dw] (padding reads zeros).
    x_shape, w_shape, kw = TILE_CASES[case]
    x = np.random.default_rng(2).standard_normal(x_shape)
    problem = conv2d_problem("t", x.shape, w_shape, kw.get("stride", 1), kw.get("padding", 0),
                             kw.get("dilation", 1), 1, x.dtype)
    (kh, kwid), (sh, sw), (dh, dw), (oh, ow) = problem.kernel_hw, problem.stride, problem.dilation, problem.out_hw
    ((top, bottom), (left, right)) = problem.pads
    row_len, rows_per_item, img_rows, images = layout.tile_geometry(
        problem.in_hw, problem.pads, problem.kernel_hw, problem.stride, problem.dilation, problem.out_hw,
        problem.n_batch, 512)
    n_batch, c_in, ih, iw = x.shape
    # generous zero margin so that the tile's extra rows and columns have a definition
    xpad = np.zeros((n_batch, c_in, top + ih + bottom + img_rows + 2, left + iw + right + row_len))
    xpad[:, :, top:top + ih, left:left + iw] = x
    assert images == 1 or rows_per_item == oh
    for n0 in range(0, n_batch, images):
        for oy0 in range(0, oh, rows_per_item):
            n_img = min(images, n_batch - n0)
            tile = np.zeros((c_in, images, img_rows, row_len))
            tile[:, :n_img] = xpad[n0:n0 + n_img, :, oy0 * sh:oy0 * sh + img_rows, :row_len].transpose(1, 0, 2, 3)
            flat = tile.reshape(c_in, -1)
            for k, oy, ox in np.ndindex(n_img, min(rows_per_item, oh - oy0), ow):
                p = k * img_rows * row_len + oy * sh * row_len + ox * sw
                for ky, kx in np.ndindex(kh, kwid):
                    q = p + ky * dh * row_len + kx * dw
                    assert q < flat.shape[1]
                    want = xpad[n0 + k, :, (oy0 + oy) * sh + ky * dh, ox * sw + kx * dw]
                    np.testing.assert_array_equal(flat[:, q], want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(TILE_CASES))
def test_direct_tiles_equal_the_in_place_kernel_on_a_padded_copy(case, dtype):
    # Zero padding runs on per-item tiles, an unpadded input in place: the same taps in the same order,
    # so a zero-padded copy with padding=0 must give the very same bits (32+ channels: the blocked kernel).
    x_shape, w_shape, kw = TILE_CASES[case]
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((40,) + w_shape[1:]).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    problem = conv2d_problem("t", x.shape, w.shape, kw.get("stride", 1), kw.get("padding", 0),
                             kw.get("dilation", 1), 1, x.dtype)
    ((top, bottom), (left, right)) = problem.pads
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    options = {k: v for k, v in kw.items() if k != "padding"}
    np.testing.assert_array_equal(fastconv.conv2d(x, w, b, algo="direct", **kw),
                                  fastconv.conv2d(xpad, w, b, algo="direct", **options))
