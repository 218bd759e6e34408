"""fastconv.shapes: every formula checked by its invariant and by brute-force enumeration of windows."""

import doctest
import itertools
import math

import pytest

import fastconv.shapes
from fastconv.shapes import (
    conv2d_flops,
    conv_output_size,
    effective_kernel_size,
    resolve_padding,
    same_padding,
)

# Small exhaustive ranges: in, k, s, d, pad_before, pad_after.
IN_SIZES = range(1, 13)
KERNELS = range(1, 6)
STRIDES = range(1, 5)
DILATIONS = range(1, 4)
PADS = range(0, 4)


def _window_starts(in_size, k, s, d, p0, p1):
    """Brute force: every start y = 0, s, 2s, ... whose dilated window fits in the padded axis."""
    padded = in_size + p0 + p1
    taps_of = (lambda y: [y + d * t for t in range(k)])
    return [y for y in range(0, padded, s) if max(taps_of(y)) < padded]


def test_effective_kernel_size():
    for k, d in itertools.product(KERNELS, DILATIONS):
        taps = [d * t for t in range(k)]
        assert effective_kernel_size(k, d) == taps[-1] - taps[0] + 1
    assert effective_kernel_size(3) == 3


def _all_floor_configs():
    for n, k, s, d, p0, p1 in itertools.product(IN_SIZES, KERNELS, STRIDES, DILATIONS, PADS, PADS):
        if n + p0 + p1 >= effective_kernel_size(k, d):
            yield n, k, s, d, p0, p1


def test_output_size_equals_brute_force_count():
    checked = 0
    for n, k, s, d, p0, p1 in _all_floor_configs():
        assert conv_output_size(n, k, s, (p0, p1), d) == len(_window_starts(n, k, s, d, p0, p1))
        checked += 1
    assert checked > 9_000


def test_output_size_invariant():
    # The last window fits, one more stride would not: (out-1)*s + k_eff <= in + pads < out*s + k_eff.
    for n, k, s, d, p0, p1 in _all_floor_configs():
        out = conv_output_size(n, k, s, (p0, p1), d)
        k_eff = effective_kernel_size(k, d)
        assert (out - 1) * s + k_eff <= n + p0 + p1 < out * s + k_eff


def test_output_size_rejects_windows_that_do_not_fit():
    for n, k, s, d, p0, p1 in itertools.product(IN_SIZES, KERNELS, STRIDES, DILATIONS, PADS, PADS):
        if n + p0 + p1 < effective_kernel_size(k, d):
            with pytest.raises(ValueError, match=r"conv_output_size: output size must be >= 1"):
                conv_output_size(n, k, s, (p0, p1), d)


def test_output_size_pair_forms_are_per_axis():
    # In 2-D an int pads all four sides, a pair (ph, pw) both sides of each axis, per-side is explicit.
    assert conv_output_size((7, 9), (3, 2), stride=(2, 1), padding=1, dilation=(1, 2)) == (
        conv_output_size(7, 3, 2, 1, 1), conv_output_size(9, 2, 1, 1, 2))
    assert conv_output_size((7, 9), 3, padding=(2, 0)) == (9, 7)
    assert conv_output_size((7, 9), 3, padding=((2, 0), (0, 1))) == (7, 8)
    assert conv_output_size(7, 3, padding=(2, 0)) == 7  # 1-D pair = (before, after)


def test_same_keeps_ceil_in_over_stride():
    for n, k, s, d in itertools.product(IN_SIZES, KERNELS, STRIDES, DILATIONS):
        p0, p1 = same_padding(n, k, stride=s, dilation=d)
        assert conv_output_size(n, k, s, (p0, p1), d) == math.ceil(n / s) == conv_output_size(n, k, s, "same", d)
        assert p1 - p0 in (0, 1)  # the odd pixel goes after (bottom / right)
        k_eff = effective_kernel_size(k, d)
        # The TF rule: total = max((out - 1) * s + k_eff - n, 0), split floor/ceil.
        total = max((math.ceil(n / s) - 1) * s + k_eff - n, 0)
        assert (p0, p1) == (total // 2, total - total // 2)
        # ... and it is the least padding that reaches that many outputs.
        if p0 + p1 > 0:
            assert len(_window_starts(n, k, s, d, 0, p0 + p1 - 1)) < math.ceil(n / s)


def test_same_stride1_keeps_size_for_even_kernels():
    for n, k, d in itertools.product(IN_SIZES, (2, 4), DILATIONS):
        p0, p1 = same_padding(n, k, dilation=d)
        assert p0 + p1 == d * (k - 1)
        assert conv_output_size(n, k, 1, "same", d) == n
    assert same_padding(4, 2) == (0, 1)
    assert same_padding(6, 4) == (1, 2)


def test_same_worked_examples():
    assert same_padding(5, 3, stride=2) == (1, 1)  # ceil(5/2) = 3, total (3-1)*2 + 3 - 5 = 2
    assert same_padding(6, 3, stride=2) == (0, 1)  # ceil(6/2) = 3, total 2*2 + 3 - 6 = 1
    assert same_padding(7, 1, stride=3) == (0, 0)  # 1x1 kernel never needs padding
    assert same_padding(2, 5, stride=4) == (1, 2)  # kernel larger than the input: total 5 - 2 = 3
    assert same_padding((5, 6), (3, 3), stride=2) == ((1, 1), (0, 1))


def test_textbook_same_formula_needs_times_not_divide():
    # Keeping out == n at stride S by formula (1) needs total padding P = (n - 1) * S - n + k:
    # (n + P - k) // S + 1 = n. The popular textbook misprint (n - 1) / S gives a different size.
    found_wrong = False
    for n, k, s in itertools.product(range(3, 13), KERNELS, range(2, 5)):
        total = (n - 1) * s - n + k
        assert conv_output_size(n, k, s, (total // 2, total - total // 2)) == n
        misprint = (n - 1) // s - n + k
        if misprint < 0 or n + misprint < k:
            found_wrong = True
        elif conv_output_size(n, k, s, (misprint // 2, misprint - misprint // 2)) != n:
            found_wrong = True
    assert found_wrong


def test_full_padding():
    for n, k, s, d in itertools.product(IN_SIZES, KERNELS, STRIDES, DILATIONS):
        k_eff = effective_kernel_size(k, d)
        assert resolve_padding(n, k, s, "full", d) == (k_eff - 1, k_eff - 1)
        # every window overlapping the input at least partially: starts -(k_eff-1) .. n-1
        assert conv_output_size(n, k, s, "full", d) == len(range(-(k_eff - 1), n, s))
    assert conv_output_size((2, 2), 3, padding="full") == (4, 4)


def test_valid_padding():
    for n, k, s, d in itertools.product(IN_SIZES, KERNELS, STRIDES, DILATIONS):
        assert resolve_padding(n, k, s, "valid", d) == (0, 0)
        if n >= effective_kernel_size(k, d):
            assert conv_output_size(n, k, s, "valid", d) == (n - effective_kernel_size(k, d)) // s + 1
    assert conv_output_size(5, 3, padding="valid") == 3


@pytest.mark.parametrize(
    "padding, expected",
    [
        (2, ((2, 2), (2, 2))),
        ((1, 3), ((1, 1), (3, 3))),
        ([1, 3], ((1, 1), (3, 3))),
        (((0, 1), (2, 3)), ((0, 1), (2, 3))),
        ([[0, 1], [2, 3]], ((0, 1), (2, 3))),
        ("valid", ((0, 0), (0, 0))),
        ("same", ((1, 1), (0, 1))),
        ("full", ((2, 2), (1, 1))),
    ],
    ids=["int", "pair", "pair_list", "per_side", "per_side_lists", "valid", "same", "full"],
)
def test_resolve_padding_forms_2d(padding, expected):
    pads = resolve_padding((5, 6), (3, 2), stride=1, padding=padding)
    assert pads == expected
    assert all(type(v) is int for side in pads for v in side)


def test_resolve_padding_1d_forms():
    assert resolve_padding(5, 3, padding=2) == (2, 2)
    assert resolve_padding(5, 3, padding=(0, 2)) == (0, 2)
    assert resolve_padding(5, 4, padding="same") == (1, 2)


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: conv_output_size(5, 3, padding=-1), ValueError, r"conv_output_size: padding must be >= 0 on every side"),
        (lambda: conv_output_size(5, 3, padding="SAME"), ValueError,
         r"conv_output_size: padding must be one of 'valid', 'same', 'full', got 'SAME'"),
        (lambda: conv_output_size(5, 3, padding=1.0), TypeError, r"conv_output_size: padding must be an int"),
        (lambda: conv_output_size(5, 0), ValueError, r"conv_output_size: kernel_size must be >= 1, got 0"),
        (lambda: conv_output_size(5, 3, stride=0), ValueError, r"conv_output_size: stride must be >= 1, got 0"),
        (lambda: conv_output_size(5, 3, dilation=0), ValueError, r"conv_output_size: dilation must be >= 1, got 0"),
        (lambda: conv_output_size(-1, 3), ValueError, r"conv_output_size: in_size must be >= 0, got -1"),
        (lambda: conv_output_size(5.0, 3), TypeError, r"conv_output_size: in_size must be an int or a pair of ints"),
        (lambda: conv_output_size(2, 3), ValueError,
         r"conv_output_size: output size must be >= 1, got \(0, 0\) for input size \(2, 2\), kernel_size \(3, 3\)"),
        (lambda: resolve_padding(5, 3, padding=(1, 2, 3)), TypeError,
         r"resolve_padding: padding must be an int, a pair \(before, after\) or one of"),
        (lambda: same_padding(5, 3, stride=0), ValueError, r"resolve_padding: stride must be >= 1, got 0"),
    ],
    ids=["negative_pad", "unknown_mode", "float_pad", "zero_kernel", "zero_stride", "zero_dilation",
         "negative_size", "float_size", "empty_output", "pad_triple_1d", "same_zero_stride"],
)
def test_shape_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_conv2d_flops_counts_multiply_adds():
    for (n, c, o, groups), (kh, kw), (oh, ow) in itertools.product(
            [(1, 2, 4, 1), (2, 4, 6, 2), (3, 3, 3, 3)], [(1, 1), (3, 2)], [(1, 1), (4, 5)]):
        macs = sum(1 for _n, _o, _y, _x, _c, _ky, _kx in itertools.product(
            range(n), range(o), range(oh), range(ow), range(c // groups), range(kh), range(kw)))
        assert conv2d_flops((n, c, 9, 9), (o, c // groups, kh, kw), (oh, ow), groups) == 2 * macs


def test_module_doctests():
    result = doctest.testmod(fastconv.shapes, verbose=False)
    assert result.attempted >= 5 and result.failed == 0
