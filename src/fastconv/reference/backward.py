"""Pure-numpy reference backward passes (gradients) of every public fastconv op.

An independent code path for testing the backward kernels: it shares only argument canonicalisation
(``fastconv.shapes``, ``fastconv._validate``) and the *reference* forward pools (for max-pool routing),
never the padding, layout or kernel code of ``fastconv``. Written for clarity, not speed; everything is
computed in float64 and returned in ``np.result_type`` of the inputs.

Convolution (``cg = C / groups``, ``og = O / groups``, group ``g``; ``xpad`` the padded input)::

    out[n, g*og + o, i, j] = sum_{c, ky, kx} weight[g*og + o, c, ky, kx] * xpad[n, g*cg + c, i*sh + ky*dh, j*sw + kx*dw]

so, for a loss with gradient ``grad_out`` w.r.t. ``out``:

* ``grad_weight[g*og + o, c, ky, kx] = sum_{n, i, j} grad_out[n, g*og + o, i, j] * xpad[n, g*cg + c, i*sh + ky*dh, j*sw + kx*dw]``
  (one ``einsum`` per tap over a strided slice of ``xpad``);
* ``grad_xpad[n, g*cg + c, i*sh + ky*dh, j*sw + kx*dw] += sum_o grad_out[n, g*og + o, i, j] * weight[...]``
  (one strided-slice add per tap: within one tap the target cells are distinct);
* ``grad_x`` = the adjoint of the padding applied to ``grad_xpad``: every padded cell maps to one input
  cell (zeros: none for border cells), and ``np.add.at`` sums the border cells onto their sources;
* ``grad_bias[o] = sum_{n, i, j} grad_out[n, o, i, j]``.

``conv_transpose2d(x, w)`` is the adjoint of ``conv2d(., w)`` with the same pads, so its gradients are
the same three sums with the roles of the arrays exchanged (written out in :func:`conv_transpose2d_backward`).

Pools route each output's gradient to the input cells it read: max pools to the cell whose index the
(reference) forward returns; average pools to every input cell of the window, divided by the forward's
divisor (found here by pushing unit vectors through the reference forward, i.e. the exact Jacobian).
"""

import math
from fractions import Fraction

import numpy as np

from .._validate import as_pair, check_array, check_int, check_output_mask, common_dtype
from ..shapes import effective_kernel_size, output_size_2d, padding_2d, transpose_geometry_2d
from . import pool as _pool


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _check_grad_shape(fn, grad_out, expected):
    if tuple(grad_out.shape) != tuple(expected):
        raise ValueError(f"{fn}: grad_out must have shape {tuple(expected)}, got {grad_out.shape}")


# ---------------------------------------------------------------------------------------------------
# Padding adjoint
# ---------------------------------------------------------------------------------------------------

def _pad_source(size, p0, p1, mode):
    """For each padded position ``t`` in ``[0, p0 + size + p1)``: the input index it copies, or -1 (zero)."""
    src = []
    for t in range(p0 + size + p1):
        i = t - p0
        if 0 <= i < size:
            src.append(i)
        elif mode == "zeros":
            src.append(-1)
        elif mode == "replicate":
            src.append(0 if i < 0 else size - 1)
        elif mode == "circular":
            src.append(i % size)
        else:  # reflect: mirror about the edge cell, edge not repeated
            src.append(-i if i < 0 else 2 * (size - 1) - i)
    return np.array(src, dtype=np.int64)


def _unpad(grad_xpad, in_hw, pads, mode):
    """Adjoint of padding: sum every padded cell's gradient onto the input cell it was copied from."""
    n_batch, c = grad_xpad.shape[:2]
    rows = _pad_source(in_hw[0], *pads[0], mode)
    cols = _pad_source(in_hw[1], *pads[1], mode)
    keep_r, keep_c = rows >= 0, cols >= 0
    grad_x = np.zeros((n_batch, c) + tuple(in_hw))
    sub = grad_xpad[:, :, keep_r][:, :, :, keep_c]
    np.add.at(grad_x, (slice(None), slice(None), rows[keep_r][:, None], cols[keep_c][None, :]), sub)
    return grad_x


# ---------------------------------------------------------------------------------------------------
# Convolutions
# ---------------------------------------------------------------------------------------------------

def _tap_slice(start, step, count):
    return slice(start, start + (count - 1) * step + 1, step)


def conv2d_backward(grad_out, x, weight, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                    output_mask=(True, True, True)):
    """Reference :func:`fastconv.conv2d_backward`: ``(grad_x, grad_weight, grad_bias)``, None where
    ``output_mask`` is False.

    >>> import numpy as np
    >>> gx, gw, gb = conv2d_backward(np.ones((1, 1, 2, 2)), np.arange(9.0).reshape(1, 1, 3, 3), np.ones((1, 1, 2, 2)))
    >>> gx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> gw[0, 0], gb
    (array([[ 8., 12.],
           [20., 24.]]), array([4.]))
    """
    fn = "conv2d_backward"
    for name, arr in (("grad_out", grad_out), ("x", x), ("weight", weight)):
        check_array(fn, name, arr, 4)
    want_x, want_w, want_b = check_output_mask(fn, output_mask)
    dtype = common_dtype(grad_out, x, weight)
    n_batch, c_in, ih, iw = x.shape
    c_out, cg, kh, kw = weight.shape
    groups = check_int(fn, "groups", groups, 1)
    (sh, sw), (dh, dw) = as_pair(fn, "stride", stride, 1), as_pair(fn, "dilation", dilation, 1)
    if c_in % groups or c_out % groups or cg != c_in // groups:
        raise ValueError(f"{fn}: groups {groups} does not match x {x.shape} and weight {weight.shape}")
    pads = padding_2d(fn, padding, (ih, iw), (kh, kw), (sh, sw), (dh, dw))
    oh, ow = output_size_2d(fn, (ih, iw), (kh, kw), (sh, sw), (dh, dw), pads)
    _check_grad_shape(fn, grad_out, (n_batch, c_out, oh, ow))
    og = c_out // groups
    mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[padding_mode]
    xpad = np.pad(_f64(x), ((0, 0), (0, 0)) + tuple(pads), mode=mode)
    g64, w64 = _f64(grad_out), _f64(weight)
    grad_xpad = np.zeros_like(xpad)
    grad_w = np.zeros((c_out, cg, kh, kw))
    for ky in range(kh):
        for kx in range(kw):
            rs, cs = _tap_slice(ky * dh, sh, oh), _tap_slice(kx * dw, sw, ow)
            for g in range(groups):
                ci, co = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
                tap = xpad[:, ci, rs, cs]  # (N, cg, oh, ow)
                if want_w:
                    grad_w[co, :, ky, kx] = np.einsum("nohw,nchw->oc", g64[:, co], tap)
                if want_x:
                    grad_xpad[:, ci, rs, cs] += np.einsum("nohw,oc->nchw", g64[:, co], w64[co, :, ky, kx])
    grad_x = _unpad(grad_xpad, (ih, iw), pads, padding_mode)
    grad_b = g64.sum(axis=(0, 2, 3))
    return _apply_mask((want_x, want_w, want_b), (grad_x, grad_w, grad_b), dtype)


def conv_transpose2d_backward(grad_out, x, weight, *, stride=1, padding=0, output_padding=0, dilation=1,
                              groups=1, output_mask=(True, True, True)):
    """Reference :func:`fastconv.conv_transpose2d_backward`: ``(grad_x, grad_weight, grad_bias)``, None where
    ``output_mask`` is False.

    With ``weight`` (C_in, O/groups, kH, kW), ``cg = C_in / groups``, ``og = O / groups`` and
    ``ypad`` = ``grad_out`` placed at offset (top, left) in a zero array large enough for every tap::

        grad_x[n, g*cg + c, i, j] = sum_{o, ky, kx} weight[g*cg + c, o, ky, kx] * ypad[n, g*og + o, i*sh + ky*dh, j*sw + kx*dw]
        grad_weight[g*cg + c, o, ky, kx] = sum_{n, i, j} x[n, g*cg + c, i, j] * ypad[n, g*og + o, i*sh + ky*dh, j*sw + kx*dw]

    >>> import numpy as np
    >>> gx, gw, gb = conv_transpose2d_backward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))
    >>> gx[0, 0], gw[0, 0], gb
    (array([[4., 4.],
           [4., 4.]]), array([[4., 4.],
           [4., 4.]]), array([9.]))
    """
    fn = "conv_transpose2d_backward"
    for name, arr in (("grad_out", grad_out), ("x", x), ("weight", weight)):
        check_array(fn, name, arr, 4)
    want_x, want_w, want_b = check_output_mask(fn, output_mask)
    dtype = common_dtype(grad_out, x, weight)
    n_batch, c_in, ih, iw = x.shape
    c_w, og, kh, kw = weight.shape
    groups = check_int(fn, "groups", groups, 1)
    (sh, sw), (dh, dw) = as_pair(fn, "stride", stride, 1), as_pair(fn, "dilation", dilation, 1)
    if c_w != c_in or c_in % groups:
        raise ValueError(f"{fn}: groups {groups} does not match x {x.shape} and weight {weight.shape}")
    c_out, cg = og * groups, c_in // groups
    ((top, _), (left, _)), (oh, ow) = transpose_geometry_2d(fn, (ih, iw), (kh, kw), (sh, sw), (dh, dw), padding,
                                                            output_padding)
    _check_grad_shape(fn, grad_out, (n_batch, c_out, oh, ow))
    need_h = (ih - 1) * sh + effective_kernel_size(kh, dh)
    need_w = (iw - 1) * sw + effective_kernel_size(kw, dw)
    ypad = np.zeros((n_batch, c_out, max(need_h, top + oh), max(need_w, left + ow)))
    ypad[:, :, top:top + oh, left:left + ow] = grad_out
    x64, w64 = _f64(x), _f64(weight)
    grad_x = np.zeros((n_batch, c_in, ih, iw))
    grad_w = np.zeros((c_in, og, kh, kw))
    for ky in range(kh):
        for kx in range(kw):
            tap = ypad[:, :, _tap_slice(ky * dh, sh, ih), _tap_slice(kx * dw, sw, iw)]  # (N, O, ih, iw)
            for g in range(groups):
                ci, co = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
                if want_x:
                    grad_x[:, ci] += np.einsum("nohw,co->nchw", tap[:, co], w64[ci, :, ky, kx])
                if want_w:
                    grad_w[ci, :, ky, kx] = np.einsum("nchw,nohw->co", x64[:, ci], tap[:, co])
    grad_b = _f64(grad_out).sum(axis=(0, 2, 3))
    return _apply_mask((want_x, want_w, want_b), (grad_x, grad_w, grad_b), dtype)


def _apply_mask(mask, grads, dtype):
    return tuple(g.astype(dtype) if wanted else None for wanted, g in zip(mask, grads))


# ---------------------------------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------------------------------

def _route(grad_out, indices, in_shape):
    """``grad_x[n, c].flat[indices[n, c, k]] += grad_out[n, c, k]`` with ``np.add.at`` (repeats add up)."""
    n_batch, c = in_shape[:2]
    grad_x = np.zeros((n_batch, c, in_shape[2] * in_shape[3]))
    g = _f64(grad_out).reshape(n_batch, c, -1)
    idx = np.asarray(indices, dtype=np.int64).reshape(n_batch, c, -1)
    nn, cc = np.meshgrid(np.arange(n_batch), np.arange(c), indexing="ij")
    np.add.at(grad_x, (nn[..., None], cc[..., None], idx), g)
    return grad_x.reshape(in_shape)


def _linear_pool_adjoint(grad_out, x, forward):
    """``J^T grad_out`` for a linear per-plane pool ``forward``: unit images through ``forward`` give J."""
    n_batch, c, ih, iw = x.shape
    basis = np.eye(ih * iw).reshape(ih * iw, 1, ih, iw)
    jac = forward(basis).reshape(ih * iw, -1)  # (H*W, outputs per plane)
    g = _f64(grad_out).reshape(n_batch, c, -1)
    return np.einsum("ncq,pq->ncp", g, jac).reshape(n_batch, c, ih, iw)


def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        indices=None):
    """Reference :func:`fastconv.max_pool2d_backward`: route each gradient to its window's maximum.

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 3.0, 2.0], [0.0, 3.0, -1.0]]]])
    >>> max_pool2d_backward(np.array([[[[10.0, 20.0]]]]), x, (2, 2), stride=1)[0, 0]
    array([[ 0., 30.,  0.],
           [ 0.,  0.,  0.]])
    """
    _, idx = _pool.max_pool2d(x, kernel_size, stride=stride, padding=padding, dilation=dilation,
                              ceil_mode=ceil_mode, return_indices=True)
    _check_grad_shape("max_pool2d_backward", grad_out, idx.shape)
    if indices is not None:
        idx = indices
    return _route(grad_out, idx, x.shape).astype(common_dtype(grad_out, x))


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=None, divisor_override=None):
    """Reference :func:`fastconv.avg_pool2d_backward`: the transposed Jacobian of the reference forward.

    >>> import numpy as np
    >>> avg_pool2d_backward(np.array([[[[4.0, 8.0]]]]), np.zeros((1, 1, 2, 3)), 2, stride=1)[0, 0]
    array([[1., 3., 2.],
           [1., 3., 2.]])
    """
    def forward(b):
        return _pool.avg_pool2d(b, kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                                count_include_pad=count_include_pad, divisor_override=divisor_override)

    _check_grad_shape("avg_pool2d_backward", grad_out, x.shape[:2] + forward(x[:1, :1]).shape[2:])
    return _linear_pool_adjoint(grad_out, x, forward).astype(common_dtype(grad_out, x))


def adaptive_max_pool2d_backward(grad_out, x, output_size, indices=None):
    """Reference :func:`fastconv.adaptive_max_pool2d_backward`."""
    _, idx = _pool.adaptive_max_pool2d(x, output_size, return_indices=True)
    _check_grad_shape("adaptive_max_pool2d_backward", grad_out, idx.shape)
    if indices is not None:
        idx = indices
    return _route(grad_out, idx, x.shape).astype(common_dtype(grad_out, x))


def _bins(in_size, out_size):
    return [(math.floor(Fraction(i * in_size, out_size)), math.ceil(Fraction((i + 1) * in_size, out_size)))
            for i in range(out_size)]


def _bins_avg_adjoint(grad_out, in_shape, row_bins, col_bins):
    """Spread ``grad_out[n, c, i, j] / area`` over bin ``(i, j)``'s rectangle (explicit loop)."""
    grad_x = np.zeros(in_shape)
    g = _f64(grad_out)
    for i, (y0, y1) in enumerate(row_bins):
        for j, (x0, x1) in enumerate(col_bins):
            grad_x[:, :, y0:y1, x0:x1] += (g[:, :, i, j] / ((y1 - y0) * (x1 - x0)))[:, :, None, None]
    return grad_x


def adaptive_avg_pool2d_backward(grad_out, x, output_size):
    """Reference :func:`fastconv.adaptive_avg_pool2d_backward`: each bin's mean gradient over its cells.

    >>> import numpy as np
    >>> adaptive_avg_pool2d_backward(np.array([[[[6.0, 12.0]]]]), np.zeros((1, 1, 1, 3)), (1, 2))[0, 0]
    array([[3., 9., 6.]])
    """
    n_batch, c, ih, iw = x.shape
    oh, ow = _pool._output_size(output_size, (ih, iw))
    _check_grad_shape("adaptive_avg_pool2d_backward", grad_out, (n_batch, c, oh, ow))
    grad_x = _bins_avg_adjoint(grad_out, x.shape, _bins(ih, oh), _bins(iw, ow))
    return grad_x.astype(common_dtype(grad_out, x))


def spatial_pyramid_pool2d_backward(grad_out, x, levels=(1, 2, 4), mode="max", *, rule="adaptive"):
    """Reference :func:`fastconv.spatial_pyramid_pool2d_backward`: the sum of the per-level pool gradients."""
    n_batch, c, ih, iw = x.shape
    pairs = [_pool._pair(level) for level in levels]
    _check_grad_shape("spatial_pyramid_pool2d_backward", grad_out,
                      (n_batch, c * sum(lh * lw for lh, lw in pairs)))
    grad_x = np.zeros(x.shape)
    offset = 0
    for lh, lw in pairs:
        block = _f64(grad_out[:, offset:offset + c * lh * lw]).reshape(n_batch, c, lh, lw)
        offset += c * lh * lw
        if rule == "paper":
            k = (math.ceil(ih / lh), math.ceil(iw / lw))
            s = (ih // lh, iw // lw)
            if mode == "max":
                grad_x += max_pool2d_backward(block, _f64(x), k, stride=s)
            else:
                grad_x += avg_pool2d_backward(block, _f64(x), k, stride=s)
        elif mode == "max":
            grad_x += adaptive_max_pool2d_backward(block, _f64(x), (lh, lw))
        else:
            grad_x += adaptive_avg_pool2d_backward(block, _f64(x), (lh, lw))
    return grad_x.astype(common_dtype(grad_out, x))
