"""Pure-numpy reference conv_transpose2d: zero insertion, full padding, correlation with the flipped kernel.

An independent code path for testing the kernels: it shares only argument canonicalisation and shape
maths with the public API (``fastconv.shapes``, ``fastconv._validate``), never the phase decomposition,
GEMM or col2im code. Written for clarity, not speed. Per axis (stride ``s``, dilation ``d``, kernel
``k``, ``k_eff = d * (k - 1) + 1``, per-side padding ``(p0, p1)`` of the conv2d it is the adjoint of):

1. Zero insertion: ``z[i * s] = x[i]``, zeros in between (length ``(in - 1) * s + 1``).
2. Pad ``z`` with ``k_eff - 1`` zeros on both sides and correlate with the flipped, dilated kernel:
   the "full" result ``f[t] = sum_{i * s + ky * d == t} x[i] * w[ky]``, length ``(in - 1) * s + k_eff``.
3. Crop: ``out[y] = f[y + p0]`` for ``0 <= y < out_size`` (zero past the end of ``f``: rows that only
   ``output_padding`` adds, reached by no input).

Channels: ``weight`` is (C_in, O / groups, kH, kW); input channel ``g * cg + c`` feeds output channels
``g * og .. g * og + og - 1`` (``cg = C_in / groups``, ``og = O / groups``).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._validate import as_pair, check_array, check_int, check_out, common_dtype
from ..shapes import effective_kernel_size, transpose_geometry_2d


def _output_hw(fn, output_size, n_batch, c_out):
    """(H, W) from an (H, W) or (N, C, H, W) ``output_size``; None stays None."""
    if output_size is None:
        return None
    if isinstance(output_size, (tuple, list)) and len(output_size) == 4:
        lead = tuple(output_size[:2])
        if lead != (n_batch, c_out):
            raise ValueError(
                f"{fn}: output_size must start with (N, O) = {(n_batch, c_out)} when 4 values are given, "
                f"got {tuple(output_size)!r}"
            )
        output_size = tuple(output_size[2:])
    if not (isinstance(output_size, (tuple, list)) and len(output_size) == 2):
        raise TypeError(f"{fn}: output_size must be (H, W) or (N, C, H, W), got {output_size!r}")
    return as_pair(fn, "output_size", output_size, 1)


def conv_transpose2d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0, output_size=None,
                     dilation=1, groups=1, algo="auto", out=None):
    """Reference transposed 2-D convolution; same signature as :func:`fastconv.conv_transpose2d`.

    The adjoint (input gradient) of the cross-correlation (no kernel flip) ``conv2d``. ``algo`` is
    accepted and ignored. Accumulates in float64, returns ``np.result_type(x, weight, bias)``.

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0]]]])
    >>> conv_transpose2d(x, np.array([[[[1.0, 10.0]]]]), stride=(1, 3))[0, 0]
    array([[ 1., 10.,  0.,  2., 20.]])
    """
    fn = "conv_transpose2d"
    check_array(fn, "x", x, 4)
    check_array(fn, "weight", weight, 4)
    if bias is not None:
        check_array(fn, "bias", bias, 1)
    dtype = common_dtype(x, weight, bias)

    n_batch, c_in, ih, iw = x.shape
    c_w, og, kh, kw = weight.shape
    groups = check_int(fn, "groups", groups, 1)
    sh, sw = as_pair(fn, "stride", stride, 1)
    dh, dw = as_pair(fn, "dilation", dilation, 1)
    if c_in < 1 or og < 1 or kh < 1 or kw < 1 or ih < 1 or iw < 1:
        raise ValueError(f"{fn}: channels, sizes and kernel sizes must be >= 1, got x {x.shape}, "
                         f"weight {weight.shape}")
    if c_w != c_in:
        raise ValueError(f"{fn}: weight.shape[0] must equal the input channels {c_in}, got {c_w} "
                         f"(weight shape {weight.shape}, layout (C_in, O / groups, kH, kW))")
    if c_in % groups:
        raise ValueError(f"{fn}: groups must divide the input channels {c_in}, got {groups}")
    c_out = og * groups
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"{fn}: bias must have shape ({c_out},), got {bias.shape}")
    out_hw = _output_hw(fn, output_size, n_batch, c_out)
    ((top, _), (left, _)), (oh, ow) = transpose_geometry_2d(
        fn, (ih, iw), (kh, kw), (sh, sw), (dh, dw), padding, output_padding, out_hw)
    out = check_out(fn, out, (n_batch, c_out, oh, ow), dtype, (x, weight, bias))

    keh, kew = effective_kernel_size(kh, dh), effective_kernel_size(kw, dw)
    # 1. zero insertion
    z = np.zeros((n_batch, c_in, (ih - 1) * sh + 1, (iw - 1) * sw + 1))
    z[:, :, ::sh, ::sw] = x
    # 2. pad by k_eff - 1 (plus enough at the end that the crop below never runs past the array)
    fh, fw = (ih - 1) * sh + keh, (iw - 1) * sw + kew
    extra_h, extra_w = max(0, top + oh - fh), max(0, left + ow - fw)
    zp = np.pad(z, ((0, 0), (0, 0), (keh - 1, keh - 1 + extra_h), (kew - 1, kew - 1 + extra_w)))
    wflip = np.zeros((c_in, og, keh, kew))
    wflip[:, :, ::dh, ::dw] = weight
    wflip = wflip[:, :, ::-1, ::-1]
    windows = sliding_window_view(zp, (keh, kew), axis=(2, 3))  # (N, C_in, FH, FW, keh, kew)
    cg = c_in // groups
    full = np.empty((n_batch, c_out) + windows.shape[2:4])
    for g in range(groups):
        full[:, g * og:(g + 1) * og] = np.einsum(
            "ncyxij,coij->noyx", windows[:, g * cg:(g + 1) * cg], wflip[g * cg:(g + 1) * cg])
    # 3. crop by the conv2d padding before (top/left)
    result = full[:, :, top:top + oh, left:left + ow]
    if bias is not None:
        result = result + bias.reshape(1, -1, 1, 1)
    out[...] = result
    return out
