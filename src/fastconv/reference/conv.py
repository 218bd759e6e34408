"""Pure-numpy reference conv2d: pad with ``np.pad``, view windows, contract with ``einsum``.

An independent code path for testing the kernels: it shares only argument canonicalisation and
error messages with the public API (``fastconv.shapes``, ``fastconv._validate``), never the
padding, layout or kernel code. Written for clarity, not speed.

For every image ``n``, group ``g`` (``cg = C / groups`` input and ``og = O / groups`` output channels)::

    out[n, g*og + o, i, j] = bias[g*og + o]
        + sum_{c < cg, ky, kx} weight[g*og + o, c, ky, kx] * xpad[n, g*cg + c, i*sh + ky*dh, j*sw + kx*dw]

``sliding_window_view`` over the padded input yields every dilated window ``xpad[..., y:y+k_eff, x:x+k_eff]``;
slicing its position axes by the stride and its window axes by the dilation leaves exactly the taps above.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._validate import as_pair, check_array, check_int, check_out, common_dtype
from ..shapes import output_size_2d, padding_2d

# padding_mode -> np.pad mode (PyTorch names on the left).
_NP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _check_padding_mode(fn, mode, pads, in_hw):
    """PyTorch's limits: reflect needs pad < size, circular pad <= size (np.pad would silently repeat)."""
    if not isinstance(mode, str) or mode not in _NP_PAD_MODE:
        valid = ", ".join(repr(m) for m in _NP_PAD_MODE)
        raise ValueError(f"{fn}: padding_mode must be one of {valid}, got {mode!r}")
    for (p0, p1), size, axis in zip(pads, in_hw, ("height", "width")):
        if mode == "replicate" and size == 0 and max(p0, p1) > 0:
            raise ValueError(
                f"{fn}: padding_mode 'replicate' needs a non-empty input {axis}, got size 0 and padding {(p0, p1)}"
            )
        if mode == "reflect" and max(p0, p1) >= size:
            raise ValueError(
                f"{fn}: padding_mode 'reflect' needs padding < input {axis} {size}, got padding {(p0, p1)}"
            )
        if mode == "circular" and max(p0, p1) > size:
            raise ValueError(
                f"{fn}: padding_mode 'circular' needs padding <= input {axis} {size}, got padding {(p0, p1)}"
            )


def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
           algo="auto", out=None):
    """Reference 2-D cross-correlation (no kernel flip); same signature as :func:`fastconv.conv2d`.

    ``algo`` is accepted and ignored. Computes in ``np.result_type(x, weight, bias)``.

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> conv2d(x, np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    fn = "conv2d"
    check_array(fn, "x", x, 4)
    check_array(fn, "weight", weight, 4)
    if bias is not None:
        check_array(fn, "bias", bias, 1)
    dtype = common_dtype(x, weight, bias)

    n_batch, c_in, ih, iw = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    groups = check_int(fn, "groups", groups, 1)
    stride = as_pair(fn, "stride", stride, 1)
    dilation = as_pair(fn, "dilation", dilation, 1)
    if c_in < 1 or c_out < 1 or kh < 1 or kw < 1:
        raise ValueError(
            f"{fn}: channels and kernel sizes must be >= 1, got x {x.shape}, weight {weight.shape}"
        )
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"{fn}: groups must divide both input channels {c_in} and output channels {c_out}, got {groups}"
        )
    if c_per_group != c_in // groups:
        raise ValueError(
            f"{fn}: weight.shape[1] must be C / groups = {c_in} / {groups} = {c_in // groups}, "
            f"got {c_per_group} (weight shape {weight.shape})"
        )
    pads = padding_2d(fn, padding, (ih, iw), (kh, kw), stride, dilation)
    oh, ow = output_size_2d(fn, (ih, iw), (kh, kw), stride, dilation, pads)
    if bias is not None and bias.shape[0] != c_out:
        raise ValueError(f"{fn}: bias must have shape ({c_out},), got {bias.shape}")
    _check_padding_mode(fn, padding_mode, pads, (ih, iw))
    out = check_out(fn, out, (n_batch, c_out, oh, ow), dtype, (x, weight, bias))

    # np.pad returns a new array: the caller's x is never written.
    np_mode = _NP_PAD_MODE[padding_mode]
    xpad = np.pad(np.asarray(x, dtype=dtype), ((0, 0), (0, 0)) + tuple(pads), mode=np_mode)
    (sh, sw), (dh, dw) = stride, dilation
    kh_eff, kw_eff = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    windows = sliding_window_view(xpad, (kh_eff, kw_eff), axis=(2, 3))
    # (N, C, positions_h, positions_w, kh_eff, kw_eff) -> strided positions, dilated taps.
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, OH, OW, kH, kW)

    w = np.asarray(weight, dtype=dtype)
    o_per_group = c_out // groups
    result = np.empty((n_batch, c_out, oh, ow), dtype=dtype)
    for g in range(groups):
        win_g = windows[:, g * c_per_group:(g + 1) * c_per_group]
        w_g = w[g * o_per_group:(g + 1) * o_per_group]
        result[:, g * o_per_group:(g + 1) * o_per_group] = np.einsum(
            "nchwij,ocij->nohw", win_g, w_g, optimize=True
        )
    if bias is not None:
        result += np.asarray(bias, dtype=dtype)[None, :, None, None]
    out[...] = result
    return out
