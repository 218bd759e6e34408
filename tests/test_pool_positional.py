"""Pooling functions take PyTorch's positional order (issue 4's signatures), so torch code ports as is."""

import numpy as np

import fastconv
import fastconv.reference as ref

X = np.random.default_rng(3).standard_normal((2, 3, 9, 8))


def test_max_pool2d_positional_matches_keywords():
    for mod in (fastconv, ref):
        got, idx = mod.max_pool2d(X, 3, 2, 1, 1, True, True)
        want, want_idx = mod.max_pool2d(X, 3, stride=2, padding=1, dilation=1, ceil_mode=True,
                                        return_indices=True)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(idx, want_idx)


def test_avg_pool2d_positional_matches_keywords():
    for mod in (fastconv, ref):
        np.testing.assert_array_equal(mod.avg_pool2d(X, 3, 2, 1, True, False, 5),
                                      mod.avg_pool2d(X, 3, stride=2, padding=1, ceil_mode=True,
                                                     count_include_pad=False, divisor_override=5))


def test_adaptive_and_spp_positional_match_keywords():
    for mod in (fastconv, ref):
        np.testing.assert_array_equal(mod.adaptive_max_pool2d(X, (2, 3), True)[1],
                                      mod.adaptive_max_pool2d(X, (2, 3), return_indices=True)[1])
        np.testing.assert_array_equal(mod.spatial_pyramid_pool2d(X, (1, 2), "avg"),
                                      mod.spatial_pyramid_pool2d(X, (1, 2), mode="avg"))


def test_backward_positional_matches_keywords():
    g = np.random.default_rng(4).standard_normal((2, 3, 5, 4))
    for mod in (fastconv, ref):
        np.testing.assert_array_equal(mod.max_pool2d_backward(g, X, 3, 2, 1),
                                      mod.max_pool2d_backward(g, X, 3, stride=2, padding=1))
        np.testing.assert_array_equal(mod.avg_pool2d_backward(g, X, 3, 2, 1, False, False),
                                      mod.avg_pool2d_backward(g, X, 3, stride=2, padding=1,
                                                              count_include_pad=False))
