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
    planes = layout.make_planes(x, problem.pads, "zeros", row_len, rows, tail, x.dtype)
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
