"""Backward passes (gradients) of the convolutions and pools, numpy in / numpy out.

Each ``*_backward`` takes the gradient of a scalar loss with respect to the forward's output
(``grad_out``), the forward's inputs and the forward's options (same names and padding forms), and returns
the gradients with respect to the inputs. Formulas, race-freedom strategy and timings: docs/backward.md.

* ``conv2d``: ``grad_x`` is the transposed convolution of ``grad_out`` (the exact adjoint), folded back
  through the padding for ``padding_mode`` other than "zeros"; ``grad_weight`` is the correlation of the
  (padded) input with ``grad_out``; ``grad_bias`` sums over (N, H, W). Three evaluation paths: band GEMMs
  on worker threads (large problems: the unfold of a band of rows stays in cache and feeds one BLAS call on
  one thread), batch-innermost GEMMs (tiny feature maps: copy loops over whole rows of every
  image), and a direct row kernel for depthwise-like ``grad_weight``. Strided ``grad_x`` is
  ``fastconv.conv_transpose2d``.
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
from ._kernels.backward_conv_direct import grad_weight_blocked, pack_positions
from ._kernels.conv_direct import channel_block
from ._kernels.backward_conv import bias_grad, fold_batch_inner, grad_weight_rows, to_batch_inner_sums
from ._kernels.im2col import im2col_band, to_batch_inner, unfold_batch_inner
from ._kernels.backward_conv_gemm import gemm
from ._kernels.backward_pool import box_backward_kernel, route_max_kernel, spp_max_backward_kernel
from ._kernels.simd import HAS_AVX512
from ._validate import as_kernel_array, check_array, check_output_mask, common_dtype, is_int
from .conv import conv2d, conv2d_problem, direct_input
from .dispatch import DIRECT_CHUNK_TAPS
from .blas import single_blas_thread
from .bands import ConvBands, run_tasks, split_bands
from .conv_transpose import conv2d_weight, conv_transpose2d, conv_transpose2d_problem
from .padding import check_padding_mode, pad_nchw
from .pool import adaptive_max_pool2d, max_pool2d
from .pool_args import adaptive_size, check_flag, check_spatial, paper_level_bins, spp_args, window_args
from .shapes import adaptive_bins
from .threads import SERIAL_ELEMENTS, current_threads, serial_if_small

# The weight gradient is summed in at most this many partial sums (one per run of bands, fixed by the
# shape: the thread count never changes the summation order), and in fewer when they would exceed
# GRAD_WEIGHT_PARTIAL_BYTES together.
GRAD_WEIGHT_UNITS = 8
GRAD_WEIGHT_PARTIAL_BYTES = 16 * 2**20
# Use the direct weight-gradient row kernel when (C / groups) * (O / groups) is at most this (depthwise-
# like): the per-group GEMMs would be (og x L) @ (L x cg*kh*kw) with tiny og and cg.
GRAD_WEIGHT_DIRECT_MAX_CHANNELS = 4
# The stride-1 input gradient as a conv2d of grad_out (flipped filters), through conv2d's dispatch, rather
# than band GEMMs: 2 threads, best of 8, AVX-512: L4 17.6 vs 21.2 ms, L5 34.7 vs 40.4 ms.
GRAD_X_AS_CONV2D = HAS_AVX512
# The weight gradient by the direct kernel's register-blocked micro-kernel (grad_weight_blocked) rather than
# band GEMMs, from this many output channels per group (half of one 32-channel block) on AVX-512.
GRAD_WEIGHT_BLOCKED = HAS_AVX512
GRAD_WEIGHT_BLOCKED_MIN_CHANNELS = 16

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
    wanted = TASKS_PER_THREAD * current_threads()
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


# ---------------------------------------------------------------------------------------------------
# Convolution gradients: band GEMMs (threaded), batch-innermost GEMMs (tiny maps), direct rows
# ---------------------------------------------------------------------------------------------------

def _ceil_div(a, b):
    return -(-a // b)


class _GradWeightTask:
    """Weight gradient by band GEMMs: ``partial[u] = sum over the unit's bands of g_band @ col_band^T``.

    Units are fixed runs of bands (their number depends on the shape only); each unit owns one partial
    sum, accumulated band by band in order, and the partials are added in unit order at the end: the
    result does not depend on which thread ran which unit.
    """

    def __init__(self, inp, grad, weight_shape, problem, pads, dtype):
        c_out, cg, kh, kw = weight_shape
        self.inp, self.dtype = inp, dtype
        self.groups, self.og, self.cg = problem.groups, c_out // problem.groups, cg
        self.c_in, self.ih, self.iw = inp.shape[1], inp.shape[2], inp.shape[3]
        self.kernel = (kh, kw)
        self.steps = problem.stride + problem.dilation
        self.top, self.left = pads[0][0], pads[1][0]
        self.oh, self.ow = problem.out_hw
        self.k_rows = self.c_in * kh * kw
        self.grad = grad.reshape(grad.shape[0], c_out, self.oh * self.ow)
        self.bands = split_bands(inp.shape[0], self.oh, self.ow, self.k_rows, np.dtype(dtype).itemsize)
        gw_bytes = c_out * cg * kh * kw * np.dtype(dtype).itemsize
        self.units = max(1, min(self.bands.count, GRAD_WEIGHT_UNITS, GRAD_WEIGHT_PARTIAL_BYTES // gw_bytes))
        self.partials = memory.empty((self.units, self.groups, self.og, cg * kh * kw), dtype)
        self.macs = problem.flops // 2

    def run(self, unit, buffers):
        bands = self.bands
        lo, hi = unit * bands.count // self.units, (unit + 1) * bands.count // self.units
        xf = self.inp.reshape(-1)
        img_len = self.c_in * self.ih * self.iw
        kh, kw = self.kernel
        cgk, og, p = self.cg * kh * kw, self.og, self.oh * self.ow
        col_buf = buffers.get("col", self.k_rows * bands.max_len, self.dtype)
        part = self.partials[unit]
        for b in range(lo, hi):
            n0, m, y0, rows = bands.band(b)
            length = m * rows * self.ow
            im2col_band(xf, n0 * img_len, m, img_len, self.c_in, self.ih, self.iw, col_buf, y0, rows, self.ow,
                        self.top, self.left, kh, kw, *self.steps)
            col = col_buf[:self.k_rows * length].reshape(self.k_rows, length)
            if m == 1:
                g_band = self.grad[n0][:, y0 * self.ow:(y0 + rows) * self.ow]
            else:
                g_band = buffers.get("g_w", self.grad.shape[1] * bands.max_len, self.dtype)
                g_band = g_band[:self.grad.shape[1] * length].reshape(self.grad.shape[1], m, p)
                np.copyto(g_band, self.grad[n0:n0 + m].transpose(1, 0, 2))
                g_band = g_band.reshape(-1, length)
            for gr in range(self.groups):
                gemm(g_band[gr * og:(gr + 1) * og], col[gr * cgk:(gr + 1) * cgk].T, part[gr], b > lo)

    def result(self, weight_shape):
        if self.units == 1:
            return self.partials[0].reshape(weight_shape)
        gw = self.partials[0] + self.partials[1]  # a new array: the partials' block goes back to the pool
        for unit in range(2, self.units):
            gw += self.partials[unit]
        return gw.reshape(weight_shape)


class _Uncachable(Exception):
    """An option value the problem cache does not key on (anything but ints, strings, tuples, lists)."""


def _option_key(value):
    """A hashable key for an option that keeps its type (``True`` and ``1`` differ: one is rejected)."""
    kind = type(value)
    if kind is int or kind is str:
        return kind, value
    if kind is tuple or kind is list:
        return kind, tuple(_option_key(v) for v in value)
    raise _Uncachable


_PROBLEMS = {}
_PROBLEMS_MAX = 256


def _conv2d_backward_problem(fn, x_shape, weight_shape, stride, padding, dilation, groups, padding_mode, dtype):
    """``conv2d_problem`` + ``check_padding_mode``, remembered per (shapes, options, dtype): a training loop
    asks for the same few problems every step, and the validation costs ~10 us of a ~60 us tiny call.
    Only successful validations are remembered (errors are raised afresh every time)."""
    try:
        key = (x_shape, weight_shape, _option_key(stride), _option_key(padding), _option_key(dilation),
               _option_key(groups), _option_key(padding_mode), dtype)
    except _Uncachable:
        key = None
    problem = _PROBLEMS.get(key) if key is not None else None
    if problem is None:
        problem = conv2d_problem(fn, x_shape, weight_shape, stride, padding, dilation, groups, dtype)
        check_padding_mode(fn, padding_mode, problem.pads, problem.in_hw)
        if key is not None:
            if len(_PROBLEMS) >= _PROBLEMS_MAX:
                _PROBLEMS.clear()
            _PROBLEMS[key] = problem
    return problem


def _use_batch_inner(problem, weight_shape):
    """Tiny feature maps (a few values per image row) on a small problem: the batch-innermost path."""
    c_out, cg = weight_shape[0], weight_shape[1]
    return problem.batch_inner_fits() and cg * (c_out // problem.groups) > GRAD_WEIGHT_DIRECT_MAX_CHANNELS


def _conv_grads_batch_inner(x, g, weight, problem, padding_mode, dtype, want_x, want_w, want_b):
    """(grad_x, grad_weight, grad_bias) for tiny feature maps, on the calling thread, batch innermost.

    ``grad_out`` is transposed once to ``gb`` (O, OH, OW, N) (the bias gradient is summed on the way):
    ``grad_weight[g] = gb[g] @ colb[g]^T`` with ``colb`` the batch-innermost columns of the padded input,
    ``grad_x`` = the fold of ``W[g]^T @ gb[g]`` (any stride / dilation). Two GEMMs over all ``N * OH * OW``
    positions at once, and copy loops that run over whole rows of every image.
    """
    n_batch, c_in, ih, iw = x.shape
    c_out, cg, kh, kw = weight.shape
    groups, kk = problem.groups, kh * kw
    oh, ow = problem.out_hw
    (top, bottom), (left, right) = problem.pads
    (sh, sw), (dh, dw) = problem.stride, problem.dilation
    positions = oh * ow * n_batch
    gb = np.empty((groups, c_out // groups, positions), dtype=dtype)
    bias = np.empty(c_out, dtype=dtype)
    to_batch_inner_sums(as_kernel_array(g, dtype), gb.reshape(c_out, oh, ow, n_batch), bias)
    gx = gw = None
    zeros = padding_mode == "zeros"
    with single_blas_thread():
        if want_w:
            xb = np.empty((c_in, ih + top + bottom, iw + left + right, n_batch), dtype=dtype)
            if zeros:
                to_batch_inner(as_kernel_array(x, dtype), xb, top, left)
            else:
                to_batch_inner(pad_nchw(x, problem.pads, padding_mode, dtype), xb, 0, 0)
            colb = np.empty((groups, cg * kk, positions), dtype=dtype)
            unfold_batch_inner(xb, colb.reshape(c_in * kk, oh, ow * n_batch), kh, kw, sh, sw, dh, dw)
            # The orientation with the longer output side first: OpenBLAS runs (144 x 512) @ (512 x 32) ~10 %
            # faster than (32 x 512) @ (512 x 144) (the digits' conv2), and (16 x 2048) @ (2048 x 9) a little
            # faster than its transpose (conv1).
            og = c_out // groups
            if cg * kk > og:
                gwt = np.empty((groups, cg * kk, og), dtype=dtype)
                for gr in range(groups):
                    np.matmul(colb[gr], gb[gr].T, out=gwt[gr])
                gw = np.ascontiguousarray(gwt.transpose(0, 2, 1)).reshape(weight.shape)
            else:
                gw = np.empty((groups, og, cg * kk), dtype=dtype)
                for gr in range(groups):
                    np.matmul(gb[gr], colb[gr].T, out=gw[gr])
                gw = gw.reshape(weight.shape)
        if want_x:
            wm = weight.reshape(groups, c_out // groups, cg * kk)
            colg = np.empty((groups, cg * kk, positions), dtype=dtype)
            for gr in range(groups):
                np.matmul(wm[gr].T, gb[gr], out=colg[gr])
            if zeros:
                gx = np.empty(x.shape, dtype=dtype)
            else:
                gx = np.empty((n_batch, c_in, ih + top + bottom, iw + left + right), dtype=dtype)
            fold_batch_inner(colg.reshape(c_in * kk, oh, ow * n_batch), gx, np.empty(n_batch, dtype),
                             kh, kw, sh, sw, dh, dw, top if zeros else 0, left if zeros else 0)
    if gx is not None and not zeros:
        gx = _fold_axis(_fold_axis(gx, 2, ih, top, bottom, padding_mode), 3, iw, left, right, padding_mode)
    return gx, gw, bias if want_b else None


def _flip_pads(problem, pads):
    """Pads of the stride-1 input gradient as a conv2d of ``grad_out``: ``k_eff - 1 - pad`` per side."""
    (kh, kw), (dh, dw) = problem.kernel_hw, problem.dilation
    keh, kew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    return ((keh - 1 - pads[0][0], keh - 1 - pads[0][1]), (kew - 1 - pads[1][0], kew - 1 - pads[1][1]))


def _conv_grads(x, g, weight, problem, padding_mode, dtype, want_x, want_w):
    """(grad_x, grad_weight) of conv2d (None where not wanted); ``g`` of the forward's output shape."""
    ih, iw = problem.in_hw
    (top, bottom), (left, right) = problem.pads
    zeros = padding_mode == "zeros"
    tasks = []
    gx = grad_x_conv = None
    grad_w_direct = False
    g = as_kernel_array(g, dtype)
    if want_x:
        # Input gradient of the padded input when the padding copies cells (folded afterwards).
        pads = problem.pads if zeros else ((0, 0), (0, 0))
        out_hw = (ih, iw) if zeros else (ih + top + bottom, iw + left + right)
        flip = _flip_pads(problem, pads)
        if problem.stride == (1, 1) and min(min(p) for p in flip) >= 0 and GRAD_X_AS_CONV2D:
            # A stride-1 conv2d of grad_out with the flipped, channel-swapped filters, padded k_eff - 1 - pad,
            # run after the weight gradient's tasks (it has its own threads).
            grad_x_conv = (g, conv2d_weight(weight, problem.groups, dtype), flip)
        elif problem.stride == (1, 1) and min(min(p) for p in flip) >= 0:
            # The same as band GEMMs, wf[g][c, (o, ky, kx)] = w[g*og + o, c, kh-1-ky, kw-1-kx].
            c_out, cg, kh, kw = weight.shape
            groups, og = problem.groups, c_out // problem.groups
            wf = np.ascontiguousarray(weight.reshape(groups, og, cg, kh, kw)[:, :, :, ::-1, ::-1]
                                      .transpose(0, 2, 1, 3, 4).reshape(groups, cg, og * kh * kw), dtype=dtype)
            gx = memory.empty((x.shape[0], groups * cg) + tuple(out_hw), dtype)
            macs = x.shape[0] * groups * cg * out_hw[0] * out_hw[1] * og * kh * kw
            tasks.append(ConvBands(g, wf, (kh, kw), (1, 1) + problem.dilation, flip[0][0], flip[1][0], gx, macs))
        else:
            with serial_if_small(problem.flops // 2):
                gx = conv_transpose2d(g, weight, stride=problem.stride, padding=pads, output_size=out_hw,
                                      dilation=problem.dilation, groups=problem.groups)
    gw_task = gw = None
    if want_w:
        c_out, cg, kh, kw = weight.shape
        og = c_out // problem.groups
        if GRAD_WEIGHT_BLOCKED and og >= GRAD_WEIGHT_BLOCKED_MIN_CHANNELS:
            # after the tasks (it has its own threads); it builds its own input operand (direct_input)
            grad_w_direct = True
        else:
            if zeros:
                inp, pads = as_kernel_array(x, dtype), problem.pads
            else:
                inp, pads = pad_nchw(x, problem.pads, padding_mode, dtype), ((0, 0), (0, 0))
            if cg * og <= GRAD_WEIGHT_DIRECT_MAX_CHANNELS:
                gw = np.empty(weight.shape, dtype=dtype)
                (sh, sw), (dh, dw) = problem.stride, problem.dilation
                with serial_if_small(problem.flops // 2):
                    grad_weight_rows(inp, g, gw, gw.reshape(-1), 0, pads[0][0], pads[1][0], sh, sw, dh, dw,
                                     problem.groups)
            else:
                gw_task = _GradWeightTask(inp, g, weight.shape, problem, pads, dtype)
                tasks.insert(0, gw_task)  # the larger units first: better load balance at the end
    if tasks:
        run_tasks(tasks)
    if gw_task is not None:
        gw = gw_task.result(weight.shape)
    if grad_w_direct:
        gw = _grad_weight_direct(x, g, weight.shape, problem, padding_mode, dtype)
    if grad_x_conv is not None:
        g, wf, flip = grad_x_conv
        gx = conv2d(g, wf, padding=flip, dilation=problem.dilation, groups=problem.groups)
    if gx is not None and not zeros:
        gx = _fold_axis(_fold_axis(gx, 2, ih, top, bottom, padding_mode), 3, iw, left, right, padding_mode)
    return gx, gw


def _grad_weight_direct(x, g, weight_shape, problem, padding_mode, dtype):
    """conv2d's weight gradient by the direct kernel's micro-kernel (``grad_weight_blocked``): the input
    in the forward's planes, ``grad_out`` packed in blocks of output channels."""
    c_out, cg, kh, kw = weight_shape
    xf, row_len, plane_stride, image_stride = direct_input(problem, x, padding_mode, dtype)
    n_batch, _, oh, ow = g.shape
    (sh, sw), (dh, dw) = problem.stride, problem.dilation
    starts = (np.arange(n_batch, dtype=np.int64)[:, None, None] * image_stride
              + np.arange(oh, dtype=np.int64)[None, :, None] * (sh * row_len)
              + np.arange(ow, dtype=np.int64)[None, None, :] * sw).reshape(-1)
    block = channel_block(np.dtype(dtype).itemsize)
    gpk = memory.empty((problem.groups, -(-(c_out // problem.groups) // block), starts.size, block), dtype)
    pack_positions(g.reshape(n_batch, c_out, oh * ow), gpk)
    gw = np.empty((c_out, cg * kh * kw), dtype=dtype)
    grad_weight_blocked(xf, plane_stride, cg, row_len, starts, gpk, gw, kh, kw, dh, dw, DIRECT_CHUNK_TAPS,
                        current_threads())
    return gw.reshape(weight_shape)


def _conv_grad_weight(inp, grad, weight_shape, problem, padding_mode, dtype):
    """conv2d weight gradient alone (``conv_transpose2d_backward`` swaps the roles of input and gradient)."""
    return _conv_grads(inp, grad, np.empty(weight_shape, dtype), problem, padding_mode, dtype, False, True)[1]


def _grad_bias(grad_out, dtype):
    """``grad_out.sum((0, 2, 3))`` in float64 lanes (one kernel pass; numpy's multi-axis sum costs ~25 us
    on a (32, 16, 8, 8) array, as much as the weight gradient); always this way, so a masked call gives
    the bits of a full one."""
    n_batch, c_out = grad_out.shape[0], grad_out.shape[1]
    g = as_kernel_array(grad_out, dtype)
    gb = np.empty(c_out, dtype=dtype)
    bias_grad(g.reshape(n_batch, c_out, -1), gb)
    return gb


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
    mask = output_mask
    if not (type(mask) is tuple and len(mask) == 3 and type(mask[0]) is bool and type(mask[1]) is bool
            and type(mask[2]) is bool):  # the common case checked inline: this call is per training step
        mask = check_output_mask(fn, output_mask)
    dtype = common_dtype(grad_out, x, weight)
    problem = _conv2d_backward_problem(fn, x.shape, weight.shape, stride, padding, dilation, groups,
                                       padding_mode, dtype)
    if grad_out.shape != (problem.n_batch, problem.c_out) + problem.out_hw:
        _check_grad_out(fn, grad_out, (problem.n_batch, problem.c_out) + problem.out_hw,
                        f"conv2d of x {x.shape} with weight {weight.shape}")
    if problem.n_batch == 0:
        return _masked(mask, lambda: np.zeros(x.shape, dtype),
                       lambda: np.zeros(weight.shape, dtype), lambda: np.zeros(problem.c_out, dtype))
    g = grad_out.astype(dtype, copy=False)
    w = weight.astype(dtype, copy=False)
    if (mask[0] or mask[1]) and _use_batch_inner(problem, weight.shape):
        return _conv_grads_batch_inner(x, g, w, problem, padding_mode, dtype, *mask)
    gx, gw = _conv_grads(x, g, w, problem, padding_mode, dtype, mask[0], mask[1])
    return gx, gw, _grad_bias(g, dtype) if mask[2] else None


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
    _, _, _, _, out_shape = window_args(fn, x, kernel_size, stride, padding, dilation, ceil_mode)
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
    k_hw, s_hw, _, pads, out_shape = window_args(fn, x, kernel_size, stride, padding, 1, ceil_mode)
    if count_include_pad is None:
        count_include_pad = not isinstance(padding, str)
    count_include_pad = check_flag(fn, "count_include_pad", count_include_pad)
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
    check_spatial(fn, x)
    oh, ow = adaptive_size(fn, output_size, x.shape[2:])
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
    pairs = spp_args(fn, x, levels, mode, rule)
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
        return paper_level_bins(fn, pair, in_hw)
    return adaptive_bins(in_hw[0], pair[0]), adaptive_bins(in_hw[1], pair[1])
