"""Shape maths of the transposed convolution (fastconv.shapes, "Transposed convolution" section)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv import shapes
from fastconv.shapes import (conv_output_size, conv_transpose_output_size, conv_transpose_output_sizes,
                             conv_transpose_padding, effective_kernel_size)

axis = st.fixed_dictionaries({
    "in_size": st.integers(1, 7),
    "k": st.integers(1, 4),
    "s": st.integers(1, 4),
    "d": st.integers(1, 3),
})


@pytest.mark.parametrize("in_size, k, s, p, op, expected", [
    (28, 4, 2, 1, 0, 56),   # T1
    (14, 2, 2, 0, 0, 28),   # T2
    (56, 3, 1, 1, 0, 56),   # T3
    (3, 3, 2, 0, 1, 8),
    (5, 3, 3, 2, 2, 13),
])
def test_output_size_formula(in_size, k, s, p, op, expected):
    assert conv_transpose_output_size(in_size, k, stride=s, padding=p, output_padding=op) == expected


def test_modes_default_sizes_and_pairs():
    assert conv_transpose_output_size(3, 3, stride=2, padding="same") == 6
    assert conv_transpose_output_size(3, 3, stride=2, padding="valid") == 7
    assert conv_transpose_output_size(3, 3, stride=2, padding="valid", dilation=2) == 9
    assert conv_transpose_output_size(4, 3, padding="full") == 2  # adjoint of full = valid correlation
    assert conv_transpose_output_size((3, 4), (3, 1), stride=(2, 3), padding="same") == (6, 12)
    assert conv_transpose_output_sizes((3, 4), 3, stride=(2, 1), padding="same") == ((5, 6), (4,))


def test_same_padding_depends_on_output_size_as_in_tensorflow():
    assert conv_transpose_padding(3, 3, stride=2, padding="same") == (0, 1)  # output 6: odd pixel after
    assert conv_transpose_padding(3, 3, stride=2, padding="same", output_size=5) == (1, 1)
    assert conv_transpose_padding((3, 3), 3, stride=2, padding="valid") == ((0, 0), (0, 0))
    assert conv_transpose_padding(2, 2, padding=(1, 0)) == (1, 0)  # one axis: (before, after)
    assert conv_transpose_padding((2, 2), 2, padding=((1, 0), (0, 2))) == ((1, 0), (0, 2))


@settings(max_examples=200, deadline=None)
@given(axis, st.integers(0, 3), st.integers(0, 3))
def test_explicit_sizes_are_exactly_the_sizes_conv2d_maps_back(a, p0, p1):
    """Brute force: {out : conv2d(out) == in} equals the reachable sizes with offset < stride."""
    in_size, k, s, d = a["in_size"], a["k"], a["s"], a["d"]
    k_eff = effective_kernel_size(k, d)
    brute = {o for o in range(1, in_size * s + k_eff + 10)
             if o + p0 + p1 >= k_eff and (o + p0 + p1 - k_eff) // s + 1 == in_size}
    sizes = conv_transpose_output_sizes(in_size, k, stride=s, padding=(p0, p1), dilation=d)
    base = (in_size - 1) * s - p0 - p1 + k_eff
    assert {o for o in sizes if o - base < s} == brute
    assert len(sizes) == len([a for a in range(max(s, d)) if base + a >= 1])
    for o in sizes:
        offset = o - base
        # the offset formula of docs/conv_transpose.md
        assert offset == (o + p0 + p1 - k_eff) % s or offset >= s
        # invariant of formula (1) for the conv2d this is the adjoint of (when it maps back)
        if offset < s:
            assert (in_size - 1) * s + k_eff <= o + p0 + p1 < in_size * s + k_eff


@settings(max_examples=150, deadline=None)
@given(axis)
def test_same_sizes_are_exactly_the_sizes_conv2d_same_maps_back(a):
    in_size, k, s, d = a["in_size"], a["k"], a["s"], a["d"]
    brute = [o for o in range(1, in_size * s + 10)
             if conv_output_size(o, k, stride=s, padding="same", dilation=d) == in_size]
    assert list(conv_transpose_output_sizes(in_size, k, stride=s, padding="same", dilation=d)) == brute
    for o in brute:
        pads = conv_transpose_padding(in_size, k, stride=s, padding="same", dilation=d, output_size=o)
        assert pads == shapes.same_padding(o, k, stride=s, dilation=d)
    assert conv_transpose_output_size(in_size, k, stride=s, padding="same", dilation=d) == in_size * s


@settings(max_examples=100, deadline=None)
@given(axis, st.sampled_from(["valid", "full"]))
def test_valid_and_full_sizes_map_back(a, mode):
    in_size, k, s, d = a["in_size"], a["k"], a["s"], a["d"]
    k_eff = effective_kernel_size(k, d)
    base = (in_size - 1) * s + k_eff - (0 if mode == "valid" else 2 * (k_eff - 1))
    for o in conv_transpose_output_sizes(in_size, k, stride=s, padding=mode, dilation=d):
        if o - base < s:
            assert conv_output_size(o, k, stride=s, padding=mode, dilation=d) == in_size
        else:
            assert conv_output_size(o, k, stride=s, padding=mode, dilation=d) > in_size


def test_shape_errors():
    with pytest.raises(ValueError, match=r"output_padding must be < max\(stride, dilation\) = \(2, 2\)"):
        conv_transpose_output_size(3, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"output_padding must be 0 with padding 'same'"):
        conv_transpose_output_size(3, 3, stride=2, padding="same", output_padding=1)
    with pytest.raises(ValueError, match=r"output_size must be reachable .* heights \[5, 6\], widths \[5, 6\]; got \(7, 7\)"):
        conv_transpose_padding(3, 3, stride=2, padding="same", output_size=7)
    with pytest.raises(ValueError, match=r"output size must be >= 1, got \(0, 0\) for input size \(2, 2\)"):
        conv_transpose_output_size(2, 1, padding=1)
    with pytest.raises(ValueError, match=r"padding must be one of 'valid', 'same', 'full', got 'half'"):
        conv_transpose_output_size(3, 3, padding="half")
    with pytest.raises(ValueError, match=r"in_size must be >= 1, got 0"):
        conv_transpose_output_sizes(0, 3)
    with pytest.raises(TypeError, match=r"output_padding must be an int or a pair of ints, got 0.5"):
        conv_transpose_output_size(3, 3, output_padding=0.5)
