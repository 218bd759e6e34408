"""Pooling section of fastconv.shapes: invariants and brute force."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastconv import shapes


def brute_force_count(in_size, k, s, d, p0, p1, ceil_mode):
    """Count window starts (padded coordinates) directly.

    Floor: windows inside the padded input. Ceil: windows whose predecessor does not reach the padded end
    (rounding up), then PyTorch drops a last window that starts in the right padding.
    """
    extent = d * (k - 1) + 1
    padded = in_size + p0 + p1
    if extent > padded:
        return 0
    if not ceil_mode:
        return sum(1 for start in range(0, padded, s) if start + extent <= padded)
    starts = [start for start in range(0, padded + s, s) if start == 0 or start - s + extent < padded]
    if starts[-1] >= in_size + p0:
        starts.pop()
    return len(starts)


@settings(max_examples=50, deadline=None)
@given(i=st.integers(1, 40), k=st.integers(1, 6), s=st.integers(1, 5), d=st.integers(1, 3),
       p0=st.integers(0, 4), p1=st.integers(0, 4), ceil_mode=st.booleans())
def test_output_size_brute_force_and_invariants(i, k, s, d, p0, p1, ceil_mode):
    out = shapes.pool_output_size_1d(i, k, s, p0, p1, d, ceil_mode)
    assert out == brute_force_count(i, k, s, d, p0, p1, ceil_mode)
    extent = d * (k - 1) + 1
    assume(out and shapes.window_without_input(i, out, k, s, p0, d) < 0)  # valid geometry only below
    if not ceil_mode:  # formula (1) invariant
        assert (out - 1) * s + extent <= i + p0 + p1 < out * s + extent
    else:  # every window starts inside the input or the left padding
        assert (out - 1) * s < i + p0


def test_known_sizes():
    assert shapes.pool_output_size(112, 2) == 56
    assert shapes.pool_output_size(112, 3, 2, padding=1) == 56
    assert shapes.pool_output_size(13, 3, 2) == 6
    assert shapes.pool_output_size(5, 2, 2, padding=1, ceil_mode=True) == 3  # 4th window dropped
    assert shapes.pool_output_size((5, 7), 3, 2, padding="same") == (3, 4)
    assert shapes.pool_output_size(5, 3, 1, padding=(0, 2)) == 5


@pytest.mark.parametrize("a,n,count", [(11, 4, 5), (13, 4, 4), (5, 3, 4), (7, 4, 6), (3, 4, 0), (12, 6, 6)])
def test_paper_bin_count(a, n, count):
    assert shapes.paper_bin_count(a, n) == count
    window, stride = shapes.paper_window_stride(a, n)
    assert count == (0 if stride == 0 else sum(1 for st_ in range(0, a, stride) if st_ + window <= a))


@settings(max_examples=50, deadline=None)
@given(a=st.integers(1, 64), n=st.integers(1, 16))
def test_adaptive_bins_cover_and_never_empty(a, n):
    bins = shapes.adaptive_bins(a, n)
    assert len(bins) == n and bins[0][0] == 0 and bins[-1][1] == a
    for (lo, hi), (nlo, _) in zip(bins, bins[1:] + [(a, a)]):
        assert lo < hi and nlo <= hi  # non-empty, no gap
    for i, (lo, hi) in enumerate(bins):
        assert lo * n <= i * a < (lo + 1) * n and (hi - 1) * n < (i + 1) * a <= hi * n  # floor / ceil


def test_window_without_input():
    assert shapes.window_without_input(6, 4, 3, 1, 3) == 0
    assert shapes.window_without_input(2, 3, 2, 1, 2, dilation=3) == 1
    assert shapes.window_without_input(6, 3, 2, 2, 0) == -1
    assert shapes.spp_output_length(256, (1, 2, (4, 3))) == 256 * 17
