"""Argument checks and canonical forms shared by the pooling ops and their backward passes
(``fastconv.pool`` and ``fastconv.backward``): each takes the public function's name ``fn`` for its
messages and returns ints and tuples only (STYLE.md sections 2 and 5).
"""

import numpy as np

from ._validate import as_pair, check_array, check_choice, is_int
from .shapes import paper_bin_count, paper_bins, paper_window_stride, pool_geometry_2d

SPP_MODES = ("max", "avg")
SPP_RULES = ("adaptive", "paper")


def check_flag(fn, name, value):
    """A bool (Python or numpy); TypeError otherwise (0/1 or strings are not silently accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be a bool, got {value!r}")
    return bool(value)


def window_args(fn, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate and canonicalise the windowed-pool arguments -> (k_hw, s_hw, d_hw, pads, out_shape)."""
    check_array(fn, "x", x, 4)
    k_hw = as_pair(fn, "kernel_size", kernel_size, 1)
    s_hw = k_hw if stride is None else as_pair(fn, "stride", stride, 1)
    d_hw = as_pair(fn, "dilation", dilation, 1)
    ceil_mode = check_flag(fn, "ceil_mode", ceil_mode)
    n_batch, c_in, ih, iw = x.shape
    pads, out_hw = pool_geometry_2d(fn, (ih, iw), k_hw, s_hw, d_hw, padding, ceil_mode)
    return k_hw, s_hw, d_hw, pads, (n_batch, c_in) + out_hw


def check_spatial(fn, x):
    """ValueError unless the (N, C, H, W) array ``x`` has H, W >= 1."""
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{fn}: x must have height and width >= 1, got shape {x.shape}")


def adaptive_size(fn, output_size, in_hw):
    """``output_size`` int or pair (an entry None keeps that input size) -> (OH, OW) ints >= 1."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        pair = tuple(in_hw[i] if v is None else v for i, v in enumerate(output_size))
    else:
        pair = output_size
    if not (is_int(pair) or (isinstance(pair, tuple) and all(is_int(v) for v in pair))):
        raise TypeError(f"{fn}: output_size must be an int or a pair of ints or None, got {output_size!r}")
    return as_pair(fn, "output_size", pair, 1)


def spp_levels(fn, levels):
    """``levels`` -> tuple of (l_h, l_w) int pairs >= 1; TypeError / ValueError for bad input."""
    if is_int(levels) or not isinstance(levels, (tuple, list)):
        raise TypeError(
            f"{fn}: levels must be a sequence of ints or (h, w) pairs, got {levels!r}; e.g. levels=(1, 2, 4)"
        )
    if len(levels) == 0:
        raise ValueError(f"{fn}: levels must be non-empty, got {levels!r}; e.g. levels=(1, 2, 4)")
    return tuple(as_pair(fn, "levels", level, 1) for level in levels)


def spp_args(fn, x, levels, mode, rule):
    """Validate the spatial-pyramid-pooling arguments (x (N, C, H, W) with H, W >= 1, ``levels``, ``mode``
    in ``SPP_MODES``, ``rule`` in ``SPP_RULES``) -> the levels as (l_h, l_w) pairs (:func:`spp_levels`)."""
    check_array(fn, "x", x, 4)
    check_spatial(fn, x)
    pairs = spp_levels(fn, levels)
    check_choice(fn, "mode", mode, SPP_MODES)
    check_choice(fn, "rule", rule, SPP_RULES)
    return pairs


def paper_level_bins(fn, level, in_hw):
    """Bins of one level under the paper rule, or ValueError when it does not give exactly l bins."""
    result = []
    for axis, a, n in zip(("height", "width"), in_hw, level):
        count = paper_bin_count(a, n)
        if count != n:
            window, stride = paper_window_stride(a, n)
            raise ValueError(
                f"{fn}: levels entry {level} gives {count} bins instead of {n} along {axis} with rule='paper' "
                f"for input size {tuple(in_hw)} (window ceil({a}/{n}) = {window}, stride floor({a}/{n}) = "
                f"{stride}); use rule='adaptive', which always gives exactly {n}"
            )
        result.append(paper_bins(a, n))
    return tuple(result)
