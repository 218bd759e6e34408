"""Shape maths for convolution: output sizes and padding rules. Pure integer functions, no arrays.

Notation per spatial axis: ``in`` input size, ``k`` kernel size, ``s`` stride, ``d`` dilation,
``k_eff = d * (k - 1) + 1`` the dilated kernel's extent, ``p0``/``p1`` padding before/after.

Formula (1), the number of window positions (derived in docs/conventions.md)::

    out = (in + p0 + p1 - k_eff) // s + 1

Padding accepted everywhere: an int (both sides of both axes), a pair ``(ph, pw)`` (both sides of one
axis), per-side ``((top, bottom), (left, right))``, or a mode string:

* ``"valid"``: no padding.
* ``"same"``: TensorFlow's rule, valid for any stride: ``out = ceil(in / s)``,
  ``total = max((out - 1) * s + k_eff - in, 0)``, ``p0 = total // 2``, ``p1 = total - p0``
  (the odd pixel goes to the bottom/right).
* ``"full"``: ``k_eff - 1`` on both sides: every partial overlap is an output.

Functions taking a single ``in_size`` int work on one axis (and then a pair padding means
``(before, after)``); functions taking an ``(h, w)`` pair work on both axes.
"""

from ._validate import as_pair, check_choice, check_int, is_int

PADDING_MODES = ("valid", "same", "full")


def effective_kernel_size(kernel_size, dilation=1):
    """Extent of a dilated kernel: ``dilation * (kernel_size - 1) + 1``."""
    return dilation * (kernel_size - 1) + 1


def _same_1d(in_size, k, s, d):
    """TensorFlow 'same' padding on one axis -> (before, after)."""
    out = -(-in_size // s)  # ceil(in / s)
    total = max((out - 1) * s + effective_kernel_size(k, d) - in_size, 0)
    return total // 2, total - total // 2


def _mode_1d(mode, in_size, k, s, d):
    if mode == "valid":
        return 0, 0
    if mode == "same":
        return _same_1d(in_size, k, s, d)
    full = effective_kernel_size(k, d) - 1  # mode == "full"
    return full, full


def _is_pair_of_pairs(value):
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(e) for e in v) for v in value)
    )


def padding_2d(fn, padding, in_hw, k_hw, s_hw, d_hw, modes=PADDING_MODES):
    """Canonical per-side padding ``((top, bottom), (left, right))`` of Python ints.

    ``padding`` is an int, ``(ph, pw)``, ``((top, bottom), (left, right))`` or one of ``modes``.
    """
    if isinstance(padding, str):
        check_choice(fn, "padding", padding, modes)
        return tuple(_mode_1d(padding, *axis) for axis in zip(in_hw, k_hw, s_hw, d_hw))
    if _is_pair_of_pairs(padding):
        pads = tuple((int(a), int(b)) for a, b in padding)
    elif is_int(padding) or (isinstance(padding, (tuple, list)) and len(padding) == 2
                             and all(is_int(v) for v in padding)):
        ph, pw = as_pair(fn, "padding", padding)
        pads = ((ph, ph), (pw, pw))
    else:
        choices = ", ".join(repr(m) for m in modes)
        raise TypeError(
            f"{fn}: padding must be an int, a pair (ph, pw), ((top, bottom), (left, right)) "
            f"or one of {choices}, got {padding!r}"
        )
    if min(min(p) for p in pads) < 0:
        raise ValueError(f"{fn}: padding must be >= 0 on every side, got {padding!r}")
    return pads


def output_size_2d(fn, in_hw, k_hw, s_hw, d_hw, pads):
    """Formula (1) on both axes; ValueError naming every quantity when an axis has no position."""
    out = tuple(
        (i + p[0] + p[1] - effective_kernel_size(k, d)) // s + 1
        for i, k, s, d, p in zip(in_hw, k_hw, s_hw, d_hw, pads)
    )
    if min(out) < 1:
        raise ValueError(
            f"{fn}: output size must be >= 1, got {out} for input size {tuple(in_hw)}, "
            f"kernel_size {tuple(k_hw)}, stride {tuple(s_hw)}, padding {pads}, dilation {tuple(d_hw)}; "
            f"the dilated kernel must fit in the padded input"
        )
    return out


def _axes(fn, in_size, kernel_size, stride, dilation):
    """Canonicalise scalar-or-pair shape arguments; returns (is_scalar, in_hw, k_hw, s_hw, d_hw)."""
    scalar = is_int(in_size)
    if scalar:
        in_hw = (check_int(fn, "in_size", in_size, 0),) * 2
    else:
        in_hw = as_pair(fn, "in_size", in_size, 0)
    return (scalar, in_hw, as_pair(fn, "kernel_size", kernel_size, 1), as_pair(fn, "stride", stride, 1),
            as_pair(fn, "dilation", dilation, 1))


def _scalar_padding(fn, padding):
    """For one axis a pair means (before, after): lift it to the per-side 2-D form."""
    if isinstance(padding, str) or is_int(padding):
        return padding
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(is_int(v) for v in padding):
        return (tuple(padding), tuple(padding))
    raise TypeError(
        f"{fn}: padding must be an int, a pair (before, after) or one of "
        f"{', '.join(repr(m) for m in PADDING_MODES)} for a single axis, got {padding!r}"
    )


def resolve_padding(in_size, kernel_size, stride=1, padding=0, dilation=1):
    """Explicit per-side padding for any accepted padding form.

    Parameters
    ----------
    in_size : int or (int, int)
        One axis, or ``(H, W)``.
    kernel_size, stride, dilation : int or (int, int)
    padding : int, pair, ((top, bottom), (left, right)), "valid", "same" or "full"

    Returns
    -------
    (before, after) for an int ``in_size``; ``((top, bottom), (left, right))`` for a pair.

    >>> resolve_padding(5, 3, stride=2, padding="same")
    (1, 1)
    >>> resolve_padding((4, 4), 2, padding="same")
    ((0, 1), (0, 1))
    """
    fn = "resolve_padding"
    scalar, in_hw, k_hw, s_hw, d_hw = _axes(fn, in_size, kernel_size, stride, dilation)
    if scalar:
        padding = _scalar_padding(fn, padding)
    pads = padding_2d(fn, padding, in_hw, k_hw, s_hw, d_hw)
    return pads[0] if scalar else pads


def same_padding(in_size, kernel_size, stride=1, dilation=1):
    """TensorFlow 'same' padding: ``out = ceil(in / stride)``; the odd pixel goes bottom/right.

    ``total = max((out - 1) * stride + dilation * (k - 1) + 1 - in, 0)``, ``before = total // 2``,
    ``after = total - before``. (The textbook form with ``(n - 1) / S`` is wrong: it is ``(n - 1) * S``.)

    >>> same_padding(5, 3, stride=2)
    (1, 1)
    """
    return resolve_padding(in_size, kernel_size, stride=stride, padding="same", dilation=dilation)


def conv_output_size(in_size, kernel_size, stride=1, padding=0, dilation=1):
    """Output size of a convolution (formula (1)): ``(in + p0 + p1 - k_eff) // stride + 1``.

    Accepts every padding form (see :func:`resolve_padding`). Returns an int for an int ``in_size``,
    an ``(H, W)`` pair for a pair. ValueError when the dilated kernel does not fit the padded input.

    >>> conv_output_size(5, 3)
    3
    >>> conv_output_size((2, 2), 3, padding="full")
    (4, 4)
    >>> conv_output_size(5, 3, stride=2, padding="same")
    3
    """
    fn = "conv_output_size"
    scalar, in_hw, k_hw, s_hw, d_hw = _axes(fn, in_size, kernel_size, stride, dilation)
    if scalar:
        padding = _scalar_padding(fn, padding)
    pads = padding_2d(fn, padding, in_hw, k_hw, s_hw, d_hw)
    out = output_size_2d(fn, in_hw, k_hw, s_hw, d_hw, pads)
    return out[0] if scalar else out


def conv2d_flops(x_shape, weight_shape, out_hw, groups=1):
    """Floating-point operations of a conv2d (2 per multiply-accumulate, bias excluded).

    ``2 * N * O * OH * OW * (C / groups) * kH * kW``.
    """
    n_batch = x_shape[0]
    c_out, c_per_group, kh, kw = weight_shape
    return 2 * n_batch * c_out * out_hw[0] * out_hw[1] * c_per_group * kh * kw


# ---------------------------------------------------------------------------------------------------
# Transposed convolution (conv_transpose2d): the adjoint of conv2d. Derivations in docs/conv_transpose.md.
#
# Per axis, with explicit pads (p0, p1), conv2d maps an input of size ``out`` to formula (1)
# ``(out + p0 + p1 - k_eff) // s + 1``. Setting that equal to ``in`` and writing the remainder of the
# floor division as ``offset = (out + p0 + p1 - k_eff) % s`` gives the transposed output size::
#
#     out = (in - 1) * s - p0 - p1 + k_eff + offset,      0 <= offset < s            (2)
#
# ``output_padding`` is that offset (PyTorch allows up to ``max(s, d) - 1``; offsets >= s give rows
# no input reaches). Mode strings resolve the per-side padding from the *output* size, with conv2d's
# rule for an input of that size (TensorFlow ``conv2d_transpose``):
#
# * ``"same"``: every ``out`` with ``ceil(out / s) == in``, i.e. ``(in - 1) * s + 1 <= out <= in * s``;
#   default ``in * s``; pads = ``same_padding(out, k, s, d)`` (odd pixel bottom/right).
# * ``"valid"``: pads (0, 0); default ``(in - 1) * s + k_eff``.
# * ``"full"``: pads (k_eff - 1, k_eff - 1), the adjoint of conv2d's "full" mode.
# ---------------------------------------------------------------------------------------------------

TRANSPOSE_PADDING_MODES = ("valid", "same", "full")


def _transpose_sizes_1d(in_size, k, s, d, padding):
    """Reachable output sizes on one axis, ascending; ``padding`` is a mode or (before, after)."""
    if padding == "same":
        return tuple(range(max((in_size - 1) * s + 1, 1), in_size * s + 1))
    if padding == "valid":
        padding = (0, 0)
    elif padding == "full":
        padding = (effective_kernel_size(k, d) - 1,) * 2
    base = (in_size - 1) * s - padding[0] - padding[1] + effective_kernel_size(k, d)
    return tuple(base + a for a in range(max(s, d)) if base + a >= 1)


def _transpose_pads_1d(out_size, k, s, d, padding):
    """Per-side padding (before, after) of the conv2d whose adjoint yields ``out_size``."""
    if padding == "same":
        return _same_1d(out_size, k, s, d)
    if padding == "valid":
        return 0, 0
    if padding == "full":
        return (effective_kernel_size(k, d) - 1,) * 2
    return padding


def _transpose_axis_paddings(fn, padding, in_hw, k_hw, s_hw, d_hw):
    """Per axis: a mode string, or explicit (before, after) ints (canonical, validated)."""
    if isinstance(padding, str):
        mode = check_choice(fn, "padding", padding, TRANSPOSE_PADDING_MODES)
        return (mode, mode)
    return padding_2d(fn, padding, in_hw, k_hw, s_hw, d_hw, TRANSPOSE_PADDING_MODES)


def transpose_geometry_2d(fn, in_hw, k_hw, s_hw, d_hw, padding, output_padding=(0, 0), output_size=None):
    """Canonical ``(pads, out_hw)`` of a transposed convolution (ints only); ValueError when unreachable.

    ``in_hw``, ``k_hw``, ``s_hw``, ``d_hw``: canonical int pairs (input >= 1). ``padding``: any accepted
    form. ``output_padding``: int or pair. ``output_size``: None or an (H, W) pair of ints; it replaces
    ``output_padding`` (which must then be 0).
    """
    axis_pads = _transpose_axis_paddings(fn, padding, in_hw, k_hw, s_hw, d_hw)
    op_hw = as_pair(fn, "output_padding", output_padding, 0)
    limits = tuple(max(s, d) for s, d in zip(s_hw, d_hw))
    if op_hw[0] >= limits[0] or op_hw[1] >= limits[1]:
        raise ValueError(
            f"{fn}: output_padding must be < max(stride, dilation) = {limits} per axis, got {output_padding!r}"
        )
    sizes = tuple(_transpose_sizes_1d(i, k, s, d, p) for i, k, s, d, p in zip(in_hw, k_hw, s_hw, d_hw, axis_pads))
    if output_size is not None:
        if op_hw != (0, 0):
            raise ValueError(
                f"{fn}: output_padding must be 0 when output_size is given (output_size replaces it), "
                f"got {output_padding!r}"
            )
        out_hw = as_pair(fn, "output_size", output_size, 1)
        if out_hw[0] not in sizes[0] or out_hw[1] not in sizes[1]:
            raise ValueError(
                f"{fn}: output_size must be reachable from input size {tuple(in_hw)} with kernel_size "
                f"{tuple(k_hw)}, stride {tuple(s_hw)}, padding {padding!r}, dilation {tuple(d_hw)}: "
                f"heights {list(sizes[0])}, widths {list(sizes[1])}; got {tuple(out_hw)}"
            )
    elif axis_pads[0] == "same":
        if op_hw != (0, 0):
            raise ValueError(
                f"{fn}: output_padding must be 0 with padding 'same' (the output is input * stride); "
                f"pass output_size to pick another reachable size, got {output_padding!r}"
            )
        out_hw = tuple(i * s for i, s in zip(in_hw, s_hw))
    else:
        out_hw = tuple((i - 1) * s - sum(_transpose_pads_1d(0, k, s, d, p)) + effective_kernel_size(k, d) + a
                       for i, k, s, d, p, a in zip(in_hw, k_hw, s_hw, d_hw, axis_pads, op_hw))
        if min(out_hw) < 1:
            raise ValueError(
                f"{fn}: output size must be >= 1, got {out_hw} for input size {tuple(in_hw)}, kernel_size "
                f"{tuple(k_hw)}, stride {tuple(s_hw)}, padding {padding!r}, dilation {tuple(d_hw)}, "
                f"output_padding {op_hw}; reduce the padding"
            )
    pads = tuple(_transpose_pads_1d(o, k, s, d, p) for o, k, s, d, p in zip(out_hw, k_hw, s_hw, d_hw, axis_pads))
    return pads, out_hw


def _transpose_axes(fn, in_size, kernel_size, stride, dilation, padding):
    scalar, in_hw, k_hw, s_hw, d_hw = _axes(fn, in_size, kernel_size, stride, dilation)
    if min(in_hw) < 1:
        raise ValueError(f"{fn}: in_size must be >= 1, got {in_size!r}")
    if scalar:
        padding = _scalar_padding(fn, padding)
    return scalar, in_hw, k_hw, s_hw, d_hw, padding


def conv_transpose_output_size(in_size, kernel_size, stride=1, padding=0, output_padding=0, dilation=1):
    """Output size of a transposed convolution, formula (2).

    ``out = (in - 1) * stride - p0 - p1 + dilation * (k - 1) + 1 + output_padding`` for explicit
    padding; ``in * stride`` for "same"; ``(in - 1) * stride + dilation * (k - 1) + 1 + output_padding``
    for "valid". Returns an int for an int ``in_size``, an ``(H, W)`` pair for a pair.

    >>> conv_transpose_output_size(28, 4, stride=2, padding=1)
    56
    >>> conv_transpose_output_size(3, 3, stride=2, padding="same")
    6
    >>> conv_transpose_output_size((3, 3), 3, stride=2, padding="valid")
    (7, 7)
    """
    fn = "conv_transpose_output_size"
    scalar, in_hw, k_hw, s_hw, d_hw, padding = _transpose_axes(fn, in_size, kernel_size, stride, dilation,
                                                               padding)
    _, out_hw = transpose_geometry_2d(fn, in_hw, k_hw, s_hw, d_hw, padding, output_padding)
    return out_hw[0] if scalar else out_hw


def conv_transpose_output_sizes(in_size, kernel_size, stride=1, padding=0, dilation=1):
    """Every output size a transposed convolution can produce from ``in_size`` (ascending).

    Explicit padding: ``base + a`` for ``0 <= a < max(stride, dilation)`` (``base`` = formula (2) with
    offset 0; sizes with ``a >= stride`` have rows no input reaches). "same": every ``out`` with
    ``ceil(out / stride) == in``. A tuple of ints for an int ``in_size``, a pair of tuples for a pair.

    >>> conv_transpose_output_sizes(3, 3, stride=2, padding="same")
    (5, 6)
    >>> conv_transpose_output_sizes(28, 4, stride=2, padding=1)
    (56, 57)
    """
    fn = "conv_transpose_output_sizes"
    scalar, in_hw, k_hw, s_hw, d_hw, padding = _transpose_axes(fn, in_size, kernel_size, stride, dilation,
                                                               padding)
    axis_pads = _transpose_axis_paddings(fn, padding, in_hw, k_hw, s_hw, d_hw)
    sizes = tuple(_transpose_sizes_1d(i, k, s, d, p) for i, k, s, d, p in zip(in_hw, k_hw, s_hw, d_hw, axis_pads))
    return sizes[0] if scalar else sizes


def conv_transpose_padding(in_size, kernel_size, stride=1, padding=0, output_padding=0, dilation=1,
                           output_size=None):
    """Explicit per-side padding of a transposed convolution (TensorFlow rule for "same"/"valid").

    The padding is the one conv2d uses on an input of the *output's* size, so for "same" it depends on
    ``output_size``. Returns ``(before, after)`` for an int ``in_size``, else ``((top, bottom), (left, right))``.

    >>> conv_transpose_padding(3, 3, stride=2, padding="same")
    (0, 1)
    >>> conv_transpose_padding(3, 3, stride=2, padding="same", output_size=5)
    (1, 1)
    """
    fn = "conv_transpose_padding"
    scalar, in_hw, k_hw, s_hw, d_hw, padding = _transpose_axes(fn, in_size, kernel_size, stride, dilation,
                                                               padding)
    if scalar and output_size is not None:
        output_size = check_int(fn, "output_size", output_size, 1)
    pads, _ = transpose_geometry_2d(fn, in_hw, k_hw, s_hw, d_hw, padding, output_padding, output_size)
    return pads[0] if scalar else pads


# =====================================================================================================
# Pooling (max_pool2d, avg_pool2d, adaptive_*_pool2d, spatial_pyramid_pool2d). Pure integer functions.
# =====================================================================================================
#
# Windowed pooling, per axis, with ``L = in + p0 + p1`` the padded length and ``k_eff`` the dilated
# window extent (derivation and examples in docs/pooling.md)::
#
#     out = (L - k_eff) // s + 1                          floor mode (formula (1))
#     out = ceil((L - k_eff) / s) + 1                     ceil_mode, then
#     out = out - 1   if (out - 1) * s >= in + p0         PyTorch: no window may start in the right padding
#
# Output ``o`` covers padded cells ``[o * s, o * s + k_eff)``, i.e. input rows ``o * s - p0 + k * d``.
# Requirements (ValueError otherwise): ``k_eff <= L`` (the window fits the padded input, also in
# ceil_mode, where PyTorch would accept an over-hanging window) and every window holds at least one input
# cell (any padding is accepted as long as that holds, a superset of PyTorch's ``p <= k // 2``).
#
# Adaptive bins (PyTorch's rule): bin ``i`` of ``out`` over ``in`` cells is
# ``[floor(i * in / out), ceil((i + 1) * in / out))``: never empty, covers the input, bins overlap when
# ``in / out`` is not an integer and repeat cells when ``out > in``.
#
# SPP "paper" rule (He et al. 2014, sec. 2.3): for ``n`` bins over ``a`` cells, window ``ceil(a / n)``
# and stride ``floor(a / n)`` without padding. It yields ``(a - ceil(a/n)) // floor(a/n) + 1`` bins,
# which is not always ``n`` (a=11, n=4: window 3, stride 2 -> 5 bins), see :func:`paper_bin_count`.

POOL_PADDING_MODES = ("valid", "same")


def pool_output_size_1d(in_size, kernel_size, stride, pad_before, pad_after, dilation=1, ceil_mode=False):
    """Number of pooling windows on one axis (PyTorch's rule, per-side padding); 0 if the window does not fit.

    ``(L - k_eff) // s + 1`` with ``L = in + p0 + p1``; with ``ceil_mode`` the division rounds up and a last
    window starting at or beyond ``in + p0`` (in the right padding) is dropped.

    >>> pool_output_size_1d(5, 2, 2, 0, 0, ceil_mode=True)
    3
    >>> pool_output_size_1d(5, 2, 2, 1, 1, ceil_mode=True)  # 4th window would start in the padding
    3
    """
    span = in_size + pad_before + pad_after - effective_kernel_size(kernel_size, dilation)
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= in_size + pad_before:
        out -= 1
    return out


def _first_tap_inside(start, in_size, kernel_size, dilation):
    """Smallest tap ``j`` with ``0 <= start + j * d < in`` for a window starting at ``start``, or -1."""
    j = max(0, -(start // dilation)) if start < 0 else 0
    if j < kernel_size and 0 <= start + j * dilation < in_size:
        return j
    return -1


def window_without_input(in_size, out_size, kernel_size, stride, pad_before, dilation=1):
    """First output index whose window holds no input cell (only padding), or -1 when there is none.

    With ``dilation == 1`` only the first and last windows need checking (windows are intervals sliding
    right); with dilation the taps of a middle window may straddle a small input, so all are checked.
    """
    candidates = range(out_size) if dilation > 1 else sorted({0, max(out_size - 1, 0)})
    for o in candidates:
        if out_size and _first_tap_inside(o * stride - pad_before, in_size, kernel_size, dilation) < 0:
            return o
    return -1


def pool_geometry_2d(fn, in_hw, k_hw, s_hw, d_hw, padding, ceil_mode):
    """Canonical padding and output size of a windowed pool: ``(((top, bottom), (left, right)), (OH, OW))``.

    ``padding`` is an int, ``(ph, pw)``, ``((top, bottom), (left, right))``, ``"valid"`` or ``"same"``
    (TensorFlow: ``out = ceil(in / s)``, the odd pixel at the bottom/right). ValueError when the dilated
    window is larger than the padded input, or when some window lies wholly in the padding.
    """
    pads = padding_2d(fn, padding, in_hw, k_hw, s_hw, d_hw, POOL_PADDING_MODES)
    out_hw = []
    for axis, i, k, s, d, (p0, p1) in zip(("height", "width"), in_hw, k_hw, s_hw, d_hw, pads):
        k_eff = effective_kernel_size(k, d)
        if k_eff > i + p0 + p1:
            raise ValueError(
                f"{fn}: kernel_size must fit in the padded input, got kernel_size {tuple(k_hw)} "
                f"(dilated extent {k_eff} along {axis}) for input size {tuple(in_hw)} with padding {pads}; "
                f"use a smaller kernel_size or dilation, or more padding"
            )
        out = pool_output_size_1d(i, k, s, p0, p1, d, ceil_mode)
        bad = window_without_input(i, out, k, s, p0, d)
        if bad >= 0:
            raise ValueError(
                f"{fn}: padding must leave at least one input cell in every window, got padding {pads}: "
                f"window {bad} along {axis} covers only padding (input size {tuple(in_hw)}, kernel_size "
                f"{tuple(k_hw)}, stride {tuple(s_hw)}, dilation {tuple(d_hw)}); padding <= kernel_size // 2 "
                f"always satisfies this"
            )
        out_hw.append(out)
    return pads, tuple(out_hw)


def pool_output_size(in_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Output size of ``max_pool2d`` / ``avg_pool2d`` (``stride`` defaults to ``kernel_size``).

    Returns an int for an int ``in_size`` (then a pair ``padding`` means ``(before, after)``), an
    ``(H, W)`` pair for a pair. Same errors as the pools.

    >>> pool_output_size(112, 3, 2, padding=1)
    56
    >>> pool_output_size(5, 2, ceil_mode=True)
    3
    >>> pool_output_size((13, 13), 3, 2, ceil_mode=True)
    (6, 6)
    """
    fn = "pool_output_size"
    scalar, in_hw, k_hw, _, d_hw = _axes(fn, in_size, kernel_size, 1, dilation)
    s_hw = k_hw if stride is None else as_pair(fn, "stride", stride, 1)
    if scalar:
        padding = _scalar_padding(fn, padding)
    _, out = pool_geometry_2d(fn, in_hw, k_hw, s_hw, d_hw, padding, bool(ceil_mode))
    return out[0] if scalar else out


def adaptive_bins(in_size, out_size):
    """PyTorch's adaptive pooling bins: ``[(floor(i * in / out), ceil((i + 1) * in / out)) for i < out]``.

    Exact integer arithmetic. Every bin is non-empty, the bins cover ``[0, in)``, and consecutive bins
    overlap by at most one cell when ``out <= in`` (they repeat cells when ``out > in``).

    >>> adaptive_bins(5, 3)
    [(0, 2), (1, 4), (3, 5)]
    >>> adaptive_bins(2, 3)
    [(0, 1), (0, 2), (1, 2)]
    """
    return [((i * in_size) // out_size, -(-((i + 1) * in_size) // out_size)) for i in range(out_size)]


def paper_window_stride(in_size, bins):
    """The SPP paper's window and stride for ``bins`` bins over ``in_size`` cells: ``(ceil(a/n), floor(a/n))``."""
    return -(-in_size // bins), in_size // bins


def paper_bin_count(in_size, bins):
    """Bins the paper rule actually produces: ``(a - ceil(a/n)) // floor(a/n) + 1``, 0 if ``a < n``.

    >>> paper_bin_count(13, 4)
    4
    >>> paper_bin_count(11, 4)   # window 3, stride 2: windows at 0, 2, 4, 6, 8
    5
    """
    window, stride = paper_window_stride(in_size, bins)
    if stride == 0:
        return 0
    return (in_size - window) // stride + 1


def paper_bins(in_size, bins):
    """Bins ``[(i * floor(a/n), i * floor(a/n) + ceil(a/n)) for i < n]`` of the paper rule (no check)."""
    window, stride = paper_window_stride(in_size, bins)
    return [(i * stride, i * stride + window) for i in range(bins)]


def spp_output_length(channels, levels):
    """Length of the SPP vector: ``channels * sum(l_h * l_w)`` over the levels (ints or ``(h, w)`` pairs).

    >>> spp_output_length(256, (1, 2, 4))
    5376
    """
    fn = "spp_output_length"
    channels = check_int(fn, "channels", channels, 0)
    return channels * sum(h * w for h, w in (as_pair(fn, "levels", lv, 1) for lv in levels))


# =====================================================================================================
# Receptive field (fastconv.nn.summary builds on this). Pure integer functions.
# =====================================================================================================
#
# Per axis, for a stack of layers with kernel ``k``, stride ``s`` and dilation ``d``, starting from the
# input pixel (``r_0 = 1``, ``j_0 = 1``)::
#
#     r_out = r_in + (k - 1) * d * j_in        receptive field: input pixels one output unit sees
#     j_out = j_in * s                         jump: input pixels between neighbouring output units
#
# Padding shifts where a receptive field lies, never its size, so it does not enter the formulas.


def _receptive_layer(fn, index, layer):
    """Canonical ``(k_hw, s_hw, d_hw, square)`` of one ``(kernel, stride[, padding[, dilation]])`` entry."""
    if not isinstance(layer, (tuple, list)) or not 2 <= len(layer) <= 4:
        raise TypeError(
            f"{fn}: layers[{index}] must be a tuple (kernel, stride, padding, dilation) "
            f"(padding and dilation optional), got {layer!r}"
        )
    kernel, stride = layer[0], layer[1]
    padding = layer[2] if len(layer) > 2 else 0
    dilation = layer[3] if len(layer) > 3 else 1
    if not (isinstance(padding, str) or is_int(padding) or isinstance(padding, (tuple, list))):
        raise TypeError(f"{fn}: layers[{index}] padding must be an int, a pair or a mode string, got {padding!r}")
    square = all(is_int(v) for v in (kernel, stride, dilation))
    return (as_pair(fn, f"layers[{index}] kernel", kernel, 1), as_pair(fn, f"layers[{index}] stride", stride, 1),
            as_pair(fn, f"layers[{index}] dilation", dilation, 1), square)


def receptive_field(layers):
    """Receptive field and jump after each layer of a stack: one ``(receptive_field, jump)`` per layer.

    ``r_out = r_in + (k - 1) * dilation * j_in`` and ``j_out = j_in * stride``, from ``r = j = 1`` at
    the input. Padding does not change either (it only moves the field).

    Parameters
    ----------
    layers : sequence of ``(kernel, stride, padding, dilation)`` tuples
        ``padding`` and ``dilation`` may be left off (0 and 1). Each value is an int or an ``(h, w)`` pair.

    Returns
    -------
    list of ``(receptive_field, jump)``: ints while every entry so far is all ints, else ``(h, w)`` pairs.

    >>> receptive_field([(3, 2, 1, 1), (3, 1, 1, 1)])   # 3x3 stride 2, then 3x3
    [(3, 2), (7, 2)]
    >>> receptive_field([((1, 11), 1), ((11, 1), 1)])  # 1x11 then 11x1: the field of one 11x11
    [((1, 11), (1, 1)), ((11, 11), (1, 1))]
    """
    fn = "receptive_field"
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"{fn}: layers must be a sequence of (kernel, stride, padding, dilation) tuples, "
                        f"got {layers!r}")
    r_hw, j_hw, square, result = (1, 1), (1, 1), True, []
    for index, layer in enumerate(layers):
        k_hw, s_hw, d_hw, layer_square = _receptive_layer(fn, index, layer)
        square = square and layer_square
        r_hw = tuple(r + (k - 1) * d * j for r, k, d, j in zip(r_hw, k_hw, d_hw, j_hw))
        j_hw = tuple(j * s for j, s in zip(j_hw, s_hw))
        result.append((r_hw[0], j_hw[0]) if square else (r_hw, j_hw))
    return result
