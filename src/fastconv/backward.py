"""Backward passes (gradients) of the convolutions and pools, numpy in / numpy out.

Each ``*_backward`` takes the gradient of a scalar loss with respect to the forward's output
(``grad_out``), the forward's inputs and the forward's options (same names and padding forms), and returns
the gradients with respect to the inputs. Formulas, race-freedom strategy and timings: docs/backward.md.

* ``conv2d``: ``grad_x`` is the transposed convolution of ``grad_out`` (``fastconv.conv_transpose2d``, the
  exact adjoint), folded back through the padding for ``padding_mode`` other than "zeros"; ``grad_weight``
  is the correlation of the (padded) input with ``grad_out`` (im2col + one BLAS GEMM per group and batch
  chunk, or a direct kernel for depthwise-like convolutions); ``grad_bias`` sums over (N, H, W).
* ``conv_transpose2d``: the adjoint of conv2d, so ``grad_x = conv2d(grad_out, weight)`` and ``grad_weight``
  is conv2d's weight gradient with the roles of input and output gradient exchanged.
* Pools: max pools route each output gradient to the forward's argmax (given ``indices``, or recomputed
  with the forward itself, so ties and NaNs follow the forward's rule); average pools spread it evenly over
  the window with the forward's divisor. Gather-form kernels in ``fastconv/_kernels/backward_pool.py``.
"""

import functools

import numba
import numpy as np

from . import memory
from ._kernels.backward_conv import grad_weight_direct
from ._kernels.im2col import im2col_rows
from ._kernels.backward_pool import box_backward_kernel, route_max_kernel, spp_max_backward_kernel
from ._validate import as_kernel_array, check_array, check_choice, check_output_mask, common_dtype, is_int
from .blas import matmul
from .conv import conv2d, conv2d_problem
from .conv_transpose import conv_transpose2d, conv_transpose2d_problem
from .padding import check_padding_mode, pad_nchw
from .pool import (_adaptive_size, _check_flag, _check_spatial, _paper_level_bins, _spp_levels, _window_args,
                   SPP_MODES, SPP_RULES, adaptive_max_pool2d, max_pool2d)
from .shapes import adaptive_bins
from .threads import SERIAL_ELEMENTS, serial_if_small

# im2col columns for the weight gradient are built per batch chunk under this many bytes (one image at least).
GRAD_WEIGHT_WORKSPACE_BYTES = 32 * 2**20

# Use the direct weight-gradient kernel when (C / groups) * (O / groups) is at most this (depthwise-like):
# the per-group GEMMs would be (og x m*L) @ (m*L x cg*kh*kw) with tiny og and cg.
GRAD_WEIGHT_DIRECT_MAX_CHANNELS = 4

# Plane-vectorised pool kernels: planes per block (SIMD lanes x a few) and the per-block buffer budget.
PLANE_BLOCK = 64
PLANE_BLOCK_BUFFER_ELEMENTS = 16384

TASKS_PER_THREAD = 4  # pool kernels split planes into row blocks until there are this many tasks per thread

_NUMPY_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# ---------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------

def _check_grad_out(fn, grad_out, expected, what):
    """``grad_out`` must be a float array of exactly the forward's output shape."""
    check_array(fn, "grad_out", grad_out, len(expected))
    if tuple(grad_out.shape) != tuple(expected):
        raise ValueError(f"{fn}: grad_out must have the forward's output shape {tuple(expected)} ({what}), "
                         f"got {grad_out.shape}")


def _row_blocks(planes, rows):
    """Row blocks per plane so that few planes still feed every thread (results do not depend on it)."""
    wanted = TASKS_PER_THREAD * numba.get_num_threads()
    if planes >= wanted:
        return 1
    return max(1, min(rows, -(-wanted // max(planes, 1))))


def _plane_block(cells):
    """Planes per block for the plane-vectorised kernels: a (cells, block) buffer stays within ~64 KiB."""
    return max(1, min(PLANE_BLOCK, PLANE_BLOCK_BUFFER_ELEMENTS // max(cells, 1)))


def _fold_axis(grad, axis, size, p0, p1, mode):
    """Adjoint of padding one axis by (p0, p1) with ``mode``: border cells add onto their source cells.

    The source of every padded position comes from ``np.pad`` applied to ``arange(size)``, so the fold is
    the exact transpose of the forward's padding. Border rows are added one at a time in increasing
    position order (deterministic).
    """
    if p0 == 0 and p1 == 0:
        return grad
    src = np.pad(np.arange(size), (p0, p1), mode=_NUMPY_PAD_MODE[mode])
    moved = np.moveaxis(grad, axis, 0)
    folded = moved[p0:p0 + size].copy()
    for t in list(range(p0)) + list(range(p0 + size, p0 + size + p1)):
        folded[src[t]] += moved[t]
    return np.ascontiguousarray(np.moveaxis(folded, 0, axis))


def _conv_grad_weight(inp, grad, weight_shape, problem, padding_mode, dtype):
    """conv2d weight gradient on one thread when the problem is small (see ``serial_if_small``)."""
    with serial_if_small(problem.flops // 2):
        return _conv_grad_weight_kernels(inp, grad, weight_shape, problem, padding_mode, dtype)


def _conv_grad_weight_kernels(inp, grad, weight_shape, problem, padding_mode, dtype):
    """conv2d weight gradient: ``sum_{n, oy, ox} grad[n, o, oy, ox] * inp_padded[n, c, oy*sh + ky*dh, ...]``.

    ``inp`` (N, C, H, W) is the conv2d input (padded here with ``problem.pads`` and ``padding_mode``);
    ``grad`` (N, O, OH, OW) the conv2d output gradient, already of shape ``problem.out_hw``.
    """
    n_batch, c_in = problem.n_batch, problem.c_in
    c_out, cg, kh, kw = weight_shape
    groups = problem.groups
    og = c_out // groups
    oh, ow = problem.out_hw
    (sh, sw), (dh, dw) = problem.stride, problem.dilation
    xp = pad_nchw(inp, problem.pads, padding_mode, dtype)
    grad = as_kernel_array(grad, dtype)
    if cg * og <= GRAD_WEIGHT_DIRECT_MAX_CHANNELS:
        gw = np.empty(weight_shape, dtype=dtype)
        grad_weight_direct(xp, grad, gw, sh, sw, dh, dw, groups)
        return gw
    per_pos = oh * ow
    per_image = c_in * kh * kw * per_pos * np.dtype(dtype).itemsize
    chunk = max(1, min(n_batch, GRAD_WEIGHT_WORKSPACE_BYTES // max(per_image, 1)))
    col_buf = memory.empty(c_in * kh * kw * chunk * per_pos, dtype)
    g_buf = memory.empty(c_out * chunk * per_pos, dtype)
    gw = np.zeros((groups, og, cg * kh * kw), dtype=dtype)
    for n0 in range(0, n_batch, chunk):
        m = min(chunk, n_batch - n0)
        col = col_buf[:c_in * kh * kw * m * per_pos].reshape(c_in * kh * kw, m, per_pos)
        im2col_rows(xp, col, n0, kh, kw, sh, sw, dh, dw, oh, ow)
        gt = g_buf[:c_out * m * per_pos].reshape(groups, og, m, per_pos)
        gt[...] = grad[n0:n0 + m].reshape(m, groups, og, per_pos).transpose(1, 2, 0, 3)
        cols = col.reshape(groups, cg * kh * kw, m * per_pos)
        # cols @ gt^T (cg*kh*kw x og) rather than gt @ cols^T: OpenBLAS is ~10x slower on the latter
        # (few rows, long inner dimension; 2.6 s vs 0.13 s on L2, docs/backward.md).
        gw += matmul(cols, gt.reshape(groups, og, m * per_pos).transpose(0, 2, 1)).transpose(0, 2, 1)
    return gw.reshape(weight_shape)


def _conv_grad_input(g, w, problem, pads, in_hw):
    """Adjoint of conv2d with zero ``pads``: the (N, C, H, W) gradient of its input of size ``in_hw``.

    Stride 1 with ``pads <= k_eff - 1``: a conv2d of ``grad_out`` with the flipped, channel-swapped
    filters ``wf[g*cg + c, o, ky, kx] = w[g*og + o, c, kh-1-ky, kw-1-kx]`` and pads ``k_eff - 1 - pad``
    (the forward's fast direct kernel; 3x faster than the general transposed kernel on L2). Otherwise
    ``conv_transpose2d`` (the definition of the adjoint).
    """
    (kh, kw), (dh, dw), groups = problem.kernel_hw, problem.dilation, problem.groups
    keh, kew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    flip_pads = ((keh - 1 - pads[0][0], keh - 1 - pads[0][1]), (kew - 1 - pads[1][0], kew - 1 - pads[1][1]))
    if problem.stride == (1, 1) and min(min(p) for p in flip_pads) >= 0:
        c_out, cg = w.shape[:2]
        og = c_out // groups
        wf = np.ascontiguousarray(w.reshape(groups, og, cg, kh, kw)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
                                  .reshape(groups * cg, og, kh, kw))
        return conv2d(g, wf, padding=flip_pads, dilation=problem.dilation, groups=groups)
    return conv_transpose2d(g, w, stride=problem.stride, padding=pads, output_size=in_hw,
                            dilation=problem.dilation, groups=groups)


def _conv_grad_x(g, w, problem, padding_mode):
    """conv2d input gradient, folded back through the padding for modes other than "zeros"."""
    ih, iw = problem.in_hw
    if padding_mode == "zeros":
        return _conv_grad_input(g, w, problem, problem.pads, (ih, iw))
    (top, bottom), (left, right) = problem.pads
    grad_xp = _conv_grad_input(g, w, problem, ((0, 0), (0, 0)), (ih + top + bottom, iw + left + right))
    return _fold_axis(_fold_axis(grad_xp, 2, ih, top, bottom, padding_mode), 3, iw, left, right, padding_mode)


def _grad_bias(grad_out, dtype):
    return grad_out.sum(axis=(0, 2, 3), dtype=dtype)


def _masked(mask, *compute):
    """``compute[i]()`` where ``mask[i]``, else None: the output_mask of the conv backwards."""
    return tuple(fn() if wanted else None for wanted, fn in zip(mask, compute))


# ---------------------------------------------------------------------------------------------------
# Convolutions
# ---------------------------------------------------------------------------------------------------

def conv2d_backward(grad_out, x, weight, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                    output_mask=(True, True, True)):
    """Gradients of :func:`fastconv.conv2d` (cross-correlation, no kernel flip) w.r.t. x, weight and bias.

    Parameters
    ----------
    grad_out : ndarray, (N, O, OH, OW), float32 or float64. Gradient of the loss w.r.t. the conv2d output.
    x : ndarray, (N, C, H, W). The forward's input.
    weight : ndarray, (O, C / groups, kH, kW). The forward's filters.
    stride, padding, dilation, groups, padding_mode : as :func:`fastconv.conv2d`.
    output_mask : three bools, which of (grad_x, grad_weight, grad_bias) to compute (as the ``output_mask`` of
        torch's ``convolution_backward``); a False entry is returned as None and costs nothing, e.g.
        ``(False, True, True)`` for a first layer, whose input needs no gradient.

    Returns
    -------
    (grad_x, grad_weight, grad_bias) : ndarrays of shapes (N, C, H, W), (O, C / groups, kH, kW), (O,), dtype
    ``np.result_type(grad_out, x, weight)``; None where ``output_mask`` is False.

    Notes
    -----
    Shapes: ``grad_out`` must be the forward's output shape, ``OH = (H + pad_top + pad_bottom - dilation[0] *
    (kH - 1) - 1) // stride[0] + 1``. ``grad_x = conv_transpose2d(grad_out, weight)`` with the same pads (the
    adjoint), folded through the padding when ``padding_mode`` is not "zeros" (a reflected, replicated or
    wrapped border cell passes its gradient to the input cell it copies); ``grad_weight[o, c, ky, kx] =
    sum_{n, oy, ox} grad_out[n, o, oy, ox] * xpad[n, g*C/groups + c, oy*sh + ky*dh, ox*sw + kx*dw]``;
    ``grad_bias = grad_out.sum((0, 2, 3))``. Deterministic: bit-identical for any number of threads.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> gx, gw, gb = fastconv.conv2d_backward(np.ones((1, 1, 2, 2)), np.arange(9.0).reshape(1, 1, 3, 3),
    ...                                       np.ones((1, 1, 2, 2)))
    >>> gx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> gw[0, 0], gb
    (array([[ 8., 12.],
           [20., 24.]]), array([4.]))
    """
    fn = "conv2d_backward"
    check_array(fn, "grad_out", grad_out, 4)
    check_array(fn, "x", x, 4)
    check_array(fn, "weight", weight, 4)
    mask = check_output_mask(fn, output_mask)
    dtype = common_dtype(grad_out, x, weight)
    problem = conv2d_problem(fn, x.shape, weight.shape, stride, padding, dilation, groups, dtype)
    check_padding_mode(fn, padding_mode, problem.pads, problem.in_hw)
    _check_grad_out(fn, grad_out, (problem.n_batch, problem.c_out) + problem.out_hw,
                    f"conv2d of x {x.shape} with weight {weight.shape}")
    if problem.n_batch == 0:
        return _masked(mask, lambda: np.zeros(x.shape, dtype),
                       lambda: np.zeros(weight.shape, dtype), lambda: np.zeros(problem.c_out, dtype))
    g = grad_out.astype(dtype, copy=False)
    return _masked(mask,
                   lambda: _conv_grad_x(g, weight.astype(dtype, copy=False), problem, padding_mode),
                   lambda: _conv_grad_weight(x, g, weight.shape, problem, padding_mode, dtype),
                   lambda: _grad_bias(g, dtype))


def conv_transpose2d_backward(grad_out, x, weight, *, stride=1, padding=0, output_padding=0, dilation=1,
                              groups=1, output_mask=(True, True, True)):
    """Gradients of :func:`fastconv.conv_transpose2d` w.r.t. x, weight and bias.

    Parameters
    ----------
    grad_out : ndarray, (N, O, OH, OW), float32 or float64. Gradient w.r.t. the transposed conv's output.
    x : ndarray, (N, C_in, H, W). The forward's input.
    weight : ndarray, (C_in, O / groups, kH, kW). The forward's filters.
    stride, padding, output_padding, dilation, groups : as :func:`fastconv.conv_transpose2d`. The output
    size is taken from these; to differentiate a call that used ``output_size``, pass the equivalent
    ``output_padding`` (the grad_out shape is checked against it).
    output_mask : three bools, which of (grad_x, grad_weight, grad_bias) to compute; False entries are None.

    Returns
    -------
    (grad_x, grad_weight, grad_bias) of shapes (N, C_in, H, W), (C_in, O / groups, kH, kW), (O,); None where
    ``output_mask`` is False.

    Notes
    -----
    ``conv_transpose2d(., weight)`` is the adjoint of ``conv2d(., weight)`` with the same pads, so
    ``grad_x = conv2d(grad_out, weight)`` (a cross-correlation, no kernel flip) and ``grad_weight[c, o, ky, kx]
    = sum_{n, i, j} x[n, c, i, j] * grad_out_pad[n, o, i*sh + ky*dh - top, j*sw + kx*dw - left]``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> gx, gw, gb = fastconv.conv_transpose2d_backward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)),
    ...                                                 np.ones((1, 1, 2, 2)))
    >>> gx[0, 0], gb
    (array([[4., 4.],
           [4., 4.]]), array([9.]))
    """
    fn = "conv_transpose2d_backward"
    check_array(fn, "grad_out", grad_out, 4)
    check_array(fn, "x", x, 4)
    check_array(fn, "weight", weight, 4)
    mask = check_output_mask(fn, output_mask)
    dtype = common_dtype(grad_out, x, weight)
    tp = conv_transpose2d_problem(fn, x.shape, weight.shape, stride, padding, output_padding, None, dilation,
                                  groups, dtype)
    _check_grad_out(fn, grad_out, (tp.n_batch, tp.c_out) + tp.out_hw,
                    f"conv_transpose2d of x {x.shape} with weight {weight.shape}")
    if tp.n_batch == 0:
        return _masked(mask, lambda: np.zeros(x.shape, dtype), lambda: np.zeros(weight.shape, dtype),
                       lambda: np.zeros(tp.c_out, dtype))
    g = grad_out.astype(dtype, copy=False)
    w = weight.astype(dtype, copy=False)
    # The conv2d this is the adjoint of: input grad_out (N, O, OH, OW), filters weight seen as (C_in, O/g, ..).
    problem = conv2d_problem(fn, g.shape, w.shape, tp.stride, tp.pads, tp.dilation, tp.groups, dtype)
    ih, iw = tp.in_hw
    # output_padding >= stride (possible when dilation > stride) adds rows no input reaches: the conv2d
    # adjoint then has more positions than x; they carry no gradient.
    cropped = problem.out_hw != (ih, iw)

    def grad_x():
        gx = conv2d(g, w, stride=tp.stride, padding=tp.pads, dilation=tp.dilation, groups=tp.groups)
        return np.ascontiguousarray(gx[:, :, :ih, :iw]) if cropped else gx

    def grad_w():
        xg = x.astype(dtype, copy=False)
        if cropped:
            padded = np.zeros((tp.n_batch, tp.c_in) + problem.out_hw, dtype=dtype)
            padded[:, :, :ih, :iw] = xg
            xg = padded
        return _conv_grad_weight(g, xg, w.shape, problem, "zeros", dtype)

    return _masked(mask, grad_x, grad_w, lambda: _grad_bias(g, dtype))


# ---------------------------------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------------------------------

def _check_indices(fn, indices, shape, plane_size):
    """User indices: an integer ndarray of grad_out's shape with values in [0, H * W) -> int64 C array."""
    if not isinstance(indices, np.ndarray) or not np.issubdtype(indices.dtype, np.integer):
        kind = indices.dtype if isinstance(indices, np.ndarray) else type(indices).__name__
        raise TypeError(f"{fn}: indices must be an integer numpy.ndarray (as returned by the forward with "
                        f"return_indices=True), got {kind}")
    if indices.shape != tuple(shape):
        raise ValueError(f"{fn}: indices must have grad_out's shape {tuple(shape)}, got {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= plane_size):
        raise ValueError(f"{fn}: indices must lie in [0, H * W) = [0, {plane_size}), got values in "
                         f"[{indices.min()}, {indices.max()}]")
    if indices.dtype == np.int64 and indices.flags.c_contiguous and indices.flags.writeable:
        return indices
    return np.array(indices, dtype=np.int64, order="C", copy=True)  # kernels see one layout only


def _route(grad_out, indices, x_shape, dtype):
    """``grad_x[n, c].flat[indices[n, c, k]] += grad_out[n, c, k]`` (gather kernel, deterministic)."""
    n_batch, c_in, ih, iw = x_shape
    planes = n_batch * c_in
    grad_x = memory.empty(x_shape, dtype)
    if grad_x.size == 0:
        return grad_x
    g = as_kernel_array(grad_out, dtype).reshape(planes, -1)
    with serial_if_small(grad_x.size + g.size, SERIAL_ELEMENTS):
        route_max_kernel(g, indices.reshape(planes, -1), grad_x.reshape(planes, ih * iw), iw,
                         _row_blocks(planes, ih))
    return grad_x


def _box(grad_out, row_rng, col_rng, row_div, col_div, x_shape, dtype):
    """Separable average-pool adjoint: scale by the divisor, then the gather kernel."""
    n_batch, c_in, ih, iw = x_shape
    planes = n_batch * c_in
    grad_x = memory.empty(x_shape, dtype)
    if grad_x.size == 0:
        return grad_x
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    scale = (1.0 / (np.asarray(row_div, np.float64)[:, None] * np.asarray(col_div, np.float64)[None, :]))
    gs = np.ascontiguousarray((grad_out * scale.astype(dtype)).astype(dtype, copy=False).reshape(planes, oh, ow))
    scratch = np.empty((numba.config.NUMBA_NUM_THREADS, ow), dtype=dtype)
    with serial_if_small(grad_x.size + gs.size, SERIAL_ELEMENTS):
        box_backward_kernel(gs, np.ascontiguousarray(row_rng, np.int64), np.ascontiguousarray(col_rng, np.int64),
                            grad_x.reshape(planes, ih, iw), scratch, _row_blocks(planes, ih))
    return grad_x


def _window_ranges(in_size, out_size, k, s, p0):
    """Per input cell: the half-open range of windows ``[o*s - p0, o*s - p0 + k)`` that contain it."""
    i = np.arange(in_size) + p0
    lo = np.maximum(-(-(i - k + 1) // s), 0)
    hi = np.minimum(i // s + 1, out_size)
    return np.stack([lo, np.maximum(hi, lo)], axis=1)


def _bin_ranges(in_size, bins):
    """Per input cell: the half-open range of (monotone) bins ``[start, end)`` that contain it."""
    starts = np.array([b[0] for b in bins])
    ends = np.array([b[1] for b in bins])
    i = np.arange(in_size)
    lo = np.searchsorted(ends, i, side="right")
    hi = np.searchsorted(starts, i, side="right")
    return np.stack([lo, np.maximum(hi, lo)], axis=1)


def _bin_sizes(bins):
    return np.array([b - a for a, b in bins], dtype=np.float64)


def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        indices=None):
    """Gradient of :func:`fastconv.max_pool2d` w.r.t. x: each output's gradient goes to its window's maximum.

    Parameters
    ----------
    grad_out : ndarray, (N, C, OH, OW), float32 or float64
    x : ndarray, (N, C, H, W). The forward's input.
    kernel_size, stride, padding, dilation, ceil_mode : as :func:`fastconv.max_pool2d`.
    indices : int ndarray (N, C, OH, OW), optional. The forward's ``return_indices`` output (flat
        ``iy * W + ix``); the gradient goes to those cells. When None the argmax is recomputed with the
        forward (first maximum in row-major window order; a NaN wins, the last NaN).

    Returns
    -------
    ndarray (N, C, H, W), dtype ``np.result_type(grad_out, x)``. Cells that are the maximum of several
    windows receive the sum of their gradients (in output order: deterministic).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.array([[[[1.0, 3.0, 2.0], [0.0, 3.0, -1.0]]]])
    >>> fastconv.max_pool2d_backward(np.array([[[[10.0, 20.0]]]]), x, (2, 2), stride=1)[0, 0]
    array([[ 0., 30.,  0.],
           [ 0.,  0.,  0.]])
    """
    fn = "max_pool2d_backward"
    _, _, _, _, out_shape = _window_args(fn, x, kernel_size, stride, padding, dilation, ceil_mode)
    _check_grad_out(fn, grad_out, out_shape, f"max_pool2d of x {x.shape}")
    dtype = common_dtype(grad_out, x)
    if indices is None:
        _, indices = max_pool2d(x, kernel_size, stride=stride, padding=padding, dilation=dilation,
                                ceil_mode=ceil_mode, return_indices=True)
    else:
        indices = _check_indices(fn, indices, out_shape, x.shape[2] * x.shape[3])
    return _route(grad_out, indices, x.shape, dtype)


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=None, divisor_override=None):
    """Gradient of :func:`fastconv.avg_pool2d` w.r.t. x: each output's gradient / divisor over its window.

    Parameters as :func:`fastconv.avg_pool2d` (``count_include_pad=None``: True for numeric padding, False
    for "valid"/"same"). Only ``x.shape`` is used. Returns (N, C, H, W) of ``np.result_type(grad_out, x)``.

    Notes
    -----
    ``grad_x[iy, ix] = sum over windows (oy, ox) containing (iy, ix) of grad_out[oy, ox] / divisor(oy, ox)``,
    with the forward's divisor (see :func:`fastconv.avg_pool2d`); padded cells receive nothing.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.avg_pool2d_backward(np.array([[[[4.0, 8.0]]]]), np.zeros((1, 1, 2, 3)), 2, stride=1)[0, 0]
    array([[1., 3., 2.],
           [1., 3., 2.]])
    """
    fn = "avg_pool2d_backward"
    k_hw, s_hw, _, pads, out_shape = _window_args(fn, x, kernel_size, stride, padding, 1, ceil_mode)
    if count_include_pad is None:
        count_include_pad = not isinstance(padding, str)
    count_include_pad = _check_flag(fn, "count_include_pad", count_include_pad)
    if divisor_override is not None:
        if not is_int(divisor_override):
            raise TypeError(f"{fn}: divisor_override must be an int or None, got {divisor_override!r}")
        if int(divisor_override) == 0:
            raise ValueError(f"{fn}: divisor_override must be non-zero, got {divisor_override!r}")
    _check_grad_out(fn, grad_out, out_shape, f"avg_pool2d of x {x.shape}")
    dtype = common_dtype(grad_out, x)
    in_hw, out_hw = x.shape[2:], out_shape[2:]
    divs = []
    for size, o, k, s, (p0, p1) in zip(in_hw, out_hw, k_hw, s_hw, pads):
        start = np.arange(o) * s - p0
        if divisor_override is not None:
            divs.append(np.ones(o))
        elif count_include_pad:
            divs.append(np.minimum(start + k, size + p1) - start)
        else:
            divs.append(np.minimum(start + k, size) - np.maximum(start, 0))
    if divisor_override is not None:
        divs[0] = divs[0] * int(divisor_override)
    rng = [_window_ranges(size, o, k, s, p[0]) for size, o, k, s, p in zip(in_hw, out_hw, k_hw, s_hw, pads)]
    return _box(grad_out, rng[0], rng[1], divs[0], divs[1], x.shape, dtype)


def _adaptive_backward_common(fn, grad_out, x, output_size):
    check_array(fn, "x", x, 4)
    _check_spatial(fn, x)
    oh, ow = _adaptive_size(fn, output_size, x.shape[2:])
    _check_grad_out(fn, grad_out, x.shape[:2] + (oh, ow), f"{fn[:-9]} of x {x.shape}")
    return (oh, ow), common_dtype(grad_out, x)


def adaptive_max_pool2d_backward(grad_out, x, output_size, indices=None):
    """Gradient of :func:`fastconv.adaptive_max_pool2d` w.r.t. x (routes to each bin's maximum).

    ``indices``: the forward's ``return_indices`` output, or None to recompute it with the forward.
    Returns (N, C, H, W) of ``np.result_type(grad_out, x)``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.array([[[[1.0, 5.0, 2.0]]]])
    >>> fastconv.adaptive_max_pool2d_backward(np.array([[[[1.0, 2.0]]]]), x, (1, 2))[0, 0]
    array([[0., 3., 0.]])
    """
    fn = "adaptive_max_pool2d_backward"
    (oh, ow), dtype = _adaptive_backward_common(fn, grad_out, x, output_size)
    if indices is None:
        _, indices = adaptive_max_pool2d(x, (oh, ow), return_indices=True)
    else:
        indices = _check_indices(fn, indices, grad_out.shape, x.shape[2] * x.shape[3])
    return _route(grad_out, indices, x.shape, dtype)


def adaptive_avg_pool2d_backward(grad_out, x, output_size):
    """Gradient of :func:`fastconv.adaptive_avg_pool2d` w.r.t. x: each bin's gradient / its cell count.

    Only ``x.shape`` is used. Returns (N, C, H, W) of ``np.result_type(grad_out, x)``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_avg_pool2d_backward(np.array([[[[6.0, 12.0]]]]), np.zeros((1, 1, 1, 3)), (1, 2))[0, 0]
    array([[3., 9., 6.]])
    """
    fn = "adaptive_avg_pool2d_backward"
    (oh, ow), dtype = _adaptive_backward_common(fn, grad_out, x, output_size)
    ih, iw = x.shape[2:]
    rb, cb = adaptive_bins(ih, oh), adaptive_bins(iw, ow)
    return _box(grad_out, _bin_ranges(ih, rb), _bin_ranges(iw, cb), _bin_sizes(rb), _bin_sizes(cb), x.shape,
                dtype)


def spatial_pyramid_pool2d_backward(grad_out, x, levels=(1, 2, 4), mode="max", *, rule="adaptive"):
    """Gradient of :func:`fastconv.spatial_pyramid_pool2d` w.r.t. x: the sum of the per-level pool gradients.

    ``grad_out`` (N, C * sum(l_h * l_w)) in the forward's layout (levels in order, each a flattened
    (C, l_h, l_w) block). Max levels route to each bin's maximum (recomputed with the forward's rule).
    Returns (N, C, H, W) of ``np.result_type(grad_out, x)``; levels are added in order.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(4.0).reshape(1, 1, 2, 2)
    >>> fastconv.spatial_pyramid_pool2d_backward(np.array([[1.0, 10.0, 20.0, 30.0, 40.0]]), x, levels=(1, 2))[0, 0]
    array([[10., 20.],
           [30., 41.]])
    """
    fn = "spatial_pyramid_pool2d_backward"
    check_array(fn, "x", x, 4)
    _check_spatial(fn, x)
    pairs = _spp_levels(fn, levels)
    check_choice(fn, "mode", mode, SPP_MODES)
    check_choice(fn, "rule", rule, SPP_RULES)
    n_batch, c_in, ih, iw = x.shape
    _check_grad_out(fn, grad_out, (n_batch, c_in * sum(lh * lw for lh, lw in pairs)),
                    f"spatial_pyramid_pool2d of x {x.shape} with levels {tuple(pairs)}")
    dtype = common_dtype(grad_out, x)
    if mode == "max":
        return _spp_max_backward(grad_out, x, pairs, rule, dtype)
    grad_x = np.zeros(x.shape, dtype=dtype)
    offset = 0
    for lh, lw in pairs:
        rb, cb = _spp_level_bins(fn, (lh, lw), (ih, iw), rule)
        block = np.ascontiguousarray(grad_out[:, offset:offset + c_in * lh * lw]).reshape(n_batch, c_in, lh, lw)
        offset += c_in * lh * lw
        grad_x += _box(block, _bin_ranges(ih, rb), _bin_ranges(iw, cb), _bin_sizes(rb), _bin_sizes(cb),
                       x.shape, dtype)
    return grad_x


def _spp_max_backward(grad_out, x, pairs, rule, dtype):
    """Max SPP adjoint: one pass over every level's bins (argmax found again, the forward's rule)."""
    grad_x = memory.empty(x.shape, dtype)
    if grad_x.size == 0:
        return grad_x
    rows, cols, table = _spp_tables(tuple(pairs), x.shape[1], x.shape[2], x.shape[3], rule)
    g = as_kernel_array(grad_out, dtype)
    with serial_if_small(grad_x.size + g.size, SERIAL_ELEMENTS):
        spp_max_backward_kernel(as_kernel_array(x, dtype), g, rows, cols, table, grad_x,
                                _plane_block(x.shape[2] * x.shape[3]))
    return grad_x


@functools.lru_cache(maxsize=64)
def _spp_tables(pairs, channels, ih, iw, rule):
    """Bin tables of :func:`spp_max_backward_kernel` (cached: a training loop asks for the same ones)."""
    rows, cols, table = [], [], []
    out_off = 0
    for pair in pairs:
        rb, cb = _spp_level_bins("spatial_pyramid_pool2d_backward", pair, (ih, iw), rule)
        table.append((len(rows), len(rb), len(cols), len(cb), out_off))
        rows.extend(rb)
        cols.extend(cb)
        out_off += channels * len(rb) * len(cb)
    # Shared between calls and never written (kernels see writeable arrays only, STYLE.md section 3).
    return (np.array(rows, np.int64).reshape(-1, 2), np.array(cols, np.int64).reshape(-1, 2),
            np.array(table, np.int64))


def _spp_level_bins(fn, pair, in_hw, rule):
    if rule == "paper":
        return _paper_level_bins(fn, pair, in_hw)
    return adaptive_bins(in_hw[0], pair[0]), adaptive_bins(in_hw[1], pair[1])
