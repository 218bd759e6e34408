"""Every error message of the pooling family (TypeError for the wrong kind, ValueError for a wrong value)."""

import numpy as np
import pytest

import fastconv

X = np.zeros((1, 2, 6, 6), np.float32)


@pytest.mark.parametrize("fn", [fastconv.max_pool2d, fastconv.avg_pool2d])
def test_window_pool_errors(fn):
    name = fn.__name__
    with pytest.raises(TypeError, match=rf"{name}: x must be a numpy.ndarray, got list"):
        fn([[1.0]], 2)
    with pytest.raises(TypeError, match=rf"{name}: x must be float32 or float64, got int64; use x.astype"):
        fn(np.zeros((1, 1, 4, 4), np.int64), 2)
    with pytest.raises(ValueError, match=rf"{name}: x must be 4-D, got shape \(4, 4\)"):
        fn(np.zeros((4, 4)), 2)
    with pytest.raises(TypeError, match=rf"{name}: kernel_size must be an int or a pair of ints, got 2.0"):
        fn(X, 2.0)
    with pytest.raises(ValueError, match=rf"{name}: kernel_size must be >= 1, got 0"):
        fn(X, 0)
    with pytest.raises(ValueError, match=rf"{name}: stride must be >= 1, got \(1, 0\)"):
        fn(X, 2, stride=(1, 0))
    with pytest.raises(TypeError, match=rf"{name}: ceil_mode must be a bool, got 1"):
        fn(X, 2, ceil_mode=1)
    with pytest.raises(ValueError, match=rf"{name}: kernel_size must fit in the padded input, got kernel_size "
                                         rf"\(7, 7\) \(dilated extent 7 along height\) for input size \(6, 6\)"):
        fn(X, 7)
    with pytest.raises(ValueError, match=rf"{name}: padding must leave at least one input cell in every window, "
                                         rf"got padding \(\(3, 3\), \(3, 3\)\): window 0 along height"):
        fn(X, 3, stride=1, padding=3)
    with pytest.raises(ValueError, match=rf"{name}: padding must be one of 'valid', 'same', got 'full'"):
        fn(X, 3, padding="full")
    with pytest.raises(ValueError, match=rf"{name}: padding must be >= 0 on every side"):
        fn(X, 3, padding=((0, -1), (0, 0)))
    with pytest.raises(TypeError, match=rf"{name}: padding must be an int, a pair"):
        fn(X, 3, padding=1.5)
    with pytest.raises(ValueError, match=rf"{name}: out must have shape \(1, 2, 3, 3\), got \(1, 2, 2, 2\)"):
        fn(X, 2, out=np.empty((1, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=rf"{name}: out must have dtype float32, got float64"):
        fn(X, 2, out=np.empty((1, 2, 3, 3)))


def test_max_pool_specific_errors():
    with pytest.raises(ValueError, match=r"max_pool2d: dilation must be >= 1, got 0"):
        fastconv.max_pool2d(X, 2, dilation=0)
    with pytest.raises(TypeError, match=r"max_pool2d: return_indices must be a bool, got 'yes'"):
        fastconv.max_pool2d(X, 2, return_indices="yes")
    # Dilated taps that straddle a 2-wide input: window 0 holds column 1, window 1 only columns -1 and 2.
    with pytest.raises(ValueError, match=r"max_pool2d: padding must leave .* window 1 along width"):
        fastconv.max_pool2d(np.zeros((1, 1, 1, 2)), (1, 2), stride=1, dilation=(1, 3), padding=((0, 0), (2, 2)))


def test_avg_pool_specific_errors():
    with pytest.raises(TypeError, match=r"avg_pool2d: divisor_override must be an int or None, got 2.5"):
        fastconv.avg_pool2d(X, 2, divisor_override=2.5)
    with pytest.raises(ValueError, match=r"avg_pool2d: divisor_override must be non-zero, got 0"):
        fastconv.avg_pool2d(X, 2, divisor_override=0)
    with pytest.raises(TypeError, match=r"avg_pool2d: count_include_pad must be a bool, got 'no'"):
        fastconv.avg_pool2d(X, 2, count_include_pad="no")
    with pytest.raises(TypeError, match=r"avg_pool2d\(\) got an unexpected keyword argument 'dilation'"):
        fastconv.avg_pool2d(X, 2, dilation=2)


@pytest.mark.parametrize("fn", [fastconv.adaptive_max_pool2d, fastconv.adaptive_avg_pool2d])
def test_adaptive_errors(fn):
    name = fn.__name__
    with pytest.raises(TypeError, match=rf"{name}: output_size must be an int or a pair of ints or None, got 2.0"):
        fn(X, 2.0)
    with pytest.raises(TypeError, match=rf"{name}: output_size must be an int or a pair of ints or None, got None"):
        fn(X, None)
    with pytest.raises(ValueError, match=rf"{name}: output_size must be >= 1, got \(0, 3\)"):
        fn(X, (0, 3))
    with pytest.raises(ValueError, match=rf"{name}: x must have height and width >= 1, got shape \(1, 2, 0, 6\)"):
        fn(np.zeros((1, 2, 0, 6)), 2)
    with pytest.raises(TypeError, match=rf"{name}: x must be float32 or float64, got int32"):
        fn(np.zeros((1, 1, 2, 2), np.int32), 1)
    with pytest.raises(ValueError, match=rf"{name}: out must not overlap an input array"):
        fn(X, 6, out=X)


def test_spp_errors():
    fn = fastconv.spatial_pyramid_pool2d
    name = "spatial_pyramid_pool2d"
    with pytest.raises(ValueError, match=rf"{name}: levels must be non-empty, got \(\); e.g. levels=\(1, 2, 4\)"):
        fn(X, ())
    with pytest.raises(TypeError, match=rf"{name}: levels must be a sequence of ints or \(h, w\) pairs, got 4"):
        fn(X, 4)
    with pytest.raises(ValueError, match=rf"{name}: levels must be >= 1, got 0"):
        fn(X, (1, 0))
    with pytest.raises(TypeError, match=rf"{name}: levels must be an int or a pair of ints, got 'a'"):
        fn(X, ("a",))
    with pytest.raises(ValueError, match=rf"{name}: mode must be one of 'max', 'avg', got 'sum'"):
        fn(X, mode="sum")
    with pytest.raises(ValueError, match=rf"{name}: rule must be one of 'adaptive', 'paper', got 'he'"):
        fn(X, rule="he")
    with pytest.raises(ValueError, match=rf"{name}: x must have height and width >= 1"):
        fn(np.zeros((1, 1, 3, 0)))
    with pytest.raises(ValueError, match=rf"{name}: out must have shape \(1, 42\), got \(1, 2, 21\)"):
        fn(X, out=np.empty((1, 2, 21), np.float32))


def test_shape_helper_errors():
    with pytest.raises(ValueError, match=r"pool_output_size: kernel_size must fit in the padded input"):
        fastconv.shapes.pool_output_size(3, 4)
    with pytest.raises(TypeError, match=r"pool_output_size: padding must be an int, a pair \(before, after\)"):
        fastconv.shapes.pool_output_size(3, 2, padding=[[1]])
    with pytest.raises(ValueError, match=r"spp_output_length: channels must be >= 0, got -1"):
        fastconv.shapes.spp_output_length(-1, (1,))
