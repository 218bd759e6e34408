"""Materialised padding of NCHW arrays for the conv kernels (which require a pre-padded input).

Modes follow ``torch.nn.functional.pad`` / ``conv2d(padding_mode=...)``:
``"zeros"``, ``"reflect"`` (mirror without repeating the edge; pad < size), ``"replicate"``
(repeat the edge) and ``"circular"`` (wrap around; pad <= size).
"""

import numpy as np

from . import memory
from ._kernels.pad import pad_zeros_into
from ._validate import as_kernel_array

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def check_padding_mode(fn, mode, pads, in_hw):
    """Validate ``padding_mode`` against the per-side pads, as PyTorch does."""
    if not isinstance(mode, str) or mode not in PADDING_MODES:
        valid = ", ".join(repr(m) for m in PADDING_MODES)
        raise ValueError(f"{fn}: padding_mode must be one of {valid}, got {mode!r}")
    largest = max(max(pads[0]), max(pads[1]))
    for (p0, p1), size, axis in zip(pads, in_hw, ("height", "width")):
        if mode == "reflect" and max(p0, p1) >= size:
            raise ValueError(
                f"{fn}: padding_mode 'reflect' needs padding < input {axis} {size}, got padding {(p0, p1)}"
            )
        if mode == "replicate" and max(p0, p1) > 0 and size == 0:
            raise ValueError(
                f"{fn}: padding_mode 'replicate' needs a non-empty input {axis} to repeat, got size 0 "
                f"with padding {(p0, p1)}"
            )
        if mode == "circular" and max(p0, p1) > size:
            raise ValueError(
                f"{fn}: padding_mode 'circular' needs padding <= input {axis} {size}, got padding {(p0, p1)}"
            )
    return largest


def pad_nchw(x, pads, mode, dtype):
    """A new C-contiguous ``dtype`` array holding ``x`` padded by ``pads`` = ((top, bottom), (left, right)).

    The result is always a fresh array (kernels may rely on owning it); ``x`` is not modified.
    """
    (top, bottom), (left, right) = pads
    n_batch, c, ih, iw = x.shape
    if mode == "zeros" or (top == bottom == left == right == 0):
        xp = memory.empty((n_batch, c, ih + top + bottom, iw + left + right), dtype)  # workspace: pooled
        pad_zeros_into(as_kernel_array(x, dtype), xp, top, left)
        return xp
    return np.ascontiguousarray(
        np.pad(x.astype(dtype, copy=False), ((0, 0), (0, 0), (top, bottom), (left, right)),
               mode=_NUMPY_MODE[mode])
    )
