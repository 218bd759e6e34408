"""The numpy reference backward passes: hand-computed examples and central finite differences (float64)
of the *reference* forwards, for every op and option. The kernels are compared with these references in
tests/test_backward_conv.py and tests/test_backward_pool.py."""

import numpy as np
import pytest

import fastconv.reference as ref
from conftest import FD_TOL, distinct, numeric_grad





# ------------------------------------------------------------------------------------------------------
# Hand-computed examples
# ------------------------------------------------------------------------------------------------------

def test_conv2d_backward_hand_example():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    gx, gw, gb = ref.conv2d_backward(np.ones((1, 1, 2, 2)), x, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(gx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_array_equal(gw[0, 0], [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])
    np.testing.assert_array_equal(gb, [4.0])


def test_conv2d_backward_reflect_folds_border():
    # 1x1 kernel of weight 1, reflect padding 1 on a 1x3 row: xpad = [x1, x0, x1, x2, x1]; every padded
    # cell has gradient 1, so x1 collects 3 and x0, x2 collect 1 each (per row; rows likewise with height 3).
    x = np.zeros((1, 1, 1, 3))
    gx, _, _ = ref.conv2d_backward(np.ones((1, 1, 1, 5)), x, np.ones((1, 1, 1, 1)), padding=((0, 0), (1, 1)),
                                   padding_mode="reflect")
    np.testing.assert_array_equal(gx[0, 0], [[1.0, 3.0, 1.0]])
    gx, _, _ = ref.conv2d_backward(np.ones((1, 1, 1, 5)), x, np.ones((1, 1, 1, 1)), padding=((0, 0), (1, 1)),
                                   padding_mode="replicate")
    np.testing.assert_array_equal(gx[0, 0], [[2.0, 1.0, 2.0]])
    gx, _, _ = ref.conv2d_backward(np.ones((1, 1, 1, 6)), x, np.ones((1, 1, 1, 1)), padding=((0, 0), (2, 1)),
                                   padding_mode="circular")
    np.testing.assert_array_equal(gx[0, 0], [[2.0, 2.0, 2.0]])


def test_conv_transpose2d_backward_hand_example():
    gx, gw, gb = ref.conv_transpose2d_backward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(gx[0, 0], 4 * np.ones((2, 2)))
    np.testing.assert_array_equal(gw[0, 0], 4 * np.ones((2, 2)))
    np.testing.assert_array_equal(gb, [9.0])


def test_max_pool2d_backward_hand_example_overlapping_windows_add():
    x = np.array([[[[1.0, 3.0, 2.0], [0.0, 3.0, -1.0]]]])
    # Both 2x2 windows pick the first 3 (row-major first maximum): 10 + 20.
    gx = ref.max_pool2d_backward(np.array([[[[10.0, 20.0]]]]), x, (2, 2), stride=1)
    np.testing.assert_array_equal(gx[0, 0], [[0, 30, 0], [0, 0, 0]])


def test_max_pool2d_backward_uses_given_indices():
    x = np.zeros((1, 1, 2, 2))
    gx = ref.max_pool2d_backward(np.array([[[[5.0]]]]), x, 2, indices=np.array([[[[3]]]]))
    np.testing.assert_array_equal(gx[0, 0], [[0, 0], [0, 5]])


def test_avg_pool2d_backward_hand_examples():
    gx = ref.avg_pool2d_backward(np.array([[[[4.0, 8.0]]]]), np.zeros((1, 1, 2, 3)), 2, stride=1)
    np.testing.assert_array_equal(gx[0, 0], [[1, 3, 2], [1, 3, 2]])
    # padding 1, count_include_pad=False: the corner window holds one input cell, divisor 1.
    gx = ref.avg_pool2d_backward(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), 2, padding=1,
                                 count_include_pad=False)
    np.testing.assert_array_equal(gx[0, 0], np.ones((2, 2)))
    gx = ref.avg_pool2d_backward(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), 2, padding=1)
    np.testing.assert_array_equal(gx[0, 0], 0.25 * np.ones((2, 2)))


def test_adaptive_and_spp_backward_hand_examples():
    gx = ref.adaptive_avg_pool2d_backward(np.array([[[[6.0, 12.0]]]]), np.zeros((1, 1, 1, 3)), (1, 2))
    np.testing.assert_array_equal(gx[0, 0], [[3, 9, 6]])  # bins [0, 2) and [1, 3) share the middle cell
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    gx = ref.spatial_pyramid_pool2d_backward(np.array([[1.0, 10.0, 20.0, 30.0, 40.0]]), x, levels=(1, 2))
    np.testing.assert_array_equal(gx[0, 0], [[10, 20], [30, 41]])


# ------------------------------------------------------------------------------------------------------
# Finite differences of the reference forwards
# ------------------------------------------------------------------------------------------------------

CONV_CASES = {
    "plain": dict(),
    "stride2-pad1": dict(stride=2, padding=1),
    "pair-pad-dil2": dict(padding=(2, 1), dilation=2),
    "per-side-pad": dict(padding=((0, 2), (1, 0)), stride=(1, 2)),
    "same-stride2": dict(padding="same", stride=2),
    "full": dict(padding="full"),
    "groups2": dict(groups=2, padding=1),
    "depthwise": dict(groups=4, padding=1, stride=2),
    "reflect": dict(padding=1, padding_mode="reflect"),
    "replicate": dict(padding=(2, 1), padding_mode="replicate"),
    "circular": dict(padding=((2, 1), (0, 3)), padding_mode="circular", stride=2),
}


@pytest.mark.parametrize("options", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_reference_conv2d_backward_matches_finite_differences(rng, options):
    groups = options.get("groups", 1)
    x = rng.standard_normal((2, 4, 5, 4))
    w = rng.standard_normal((4, 4 // groups, 3, 2))
    b = rng.standard_normal(4)
    g = rng.standard_normal(ref.conv2d(x, w, b, **options).shape)
    gx, gw, gb = ref.conv2d_backward(g, x, w, **options)

    def loss():
        return float(np.sum(ref.conv2d(x, w, b, **options) * g))

    np.testing.assert_allclose(gx, numeric_grad(loss, x), **FD_TOL)
    np.testing.assert_allclose(gw, numeric_grad(loss, w), **FD_TOL)
    np.testing.assert_allclose(gb, numeric_grad(loss, b), **FD_TOL)


TRANSPOSE_CASES = {
    "plain": dict(),
    "stride2-pad1-op1": dict(stride=2, padding=1, output_padding=1),
    "dil3-op2": dict(dilation=3, output_padding=2),  # output_padding >= stride: unreached rows
    "per-side": dict(padding=((1, 0), (0, 2)), stride=(2, 1)),
    "same": dict(padding="same", stride=2),
    "valid": dict(padding="valid", stride=(1, 2), output_padding=(0, 1)),
    "full": dict(padding="full"),
    "groups2": dict(groups=2, stride=2),
    "depthwise": dict(groups=4, padding=1),
}


@pytest.mark.parametrize("options", TRANSPOSE_CASES.values(), ids=TRANSPOSE_CASES.keys())
def test_reference_conv_transpose2d_backward_matches_finite_differences(rng, options):
    groups = options.get("groups", 1)
    x = rng.standard_normal((2, 4, 3, 4))
    w = rng.standard_normal((4, 6 // groups if groups != 4 else 1, 2, 3))
    b = rng.standard_normal(w.shape[1] * groups)
    g = rng.standard_normal(ref.conv_transpose2d(x, w, b, **options).shape)
    gx, gw, gb = ref.conv_transpose2d_backward(g, x, w, **options)

    def loss():
        return float(np.sum(ref.conv_transpose2d(x, w, b, **options) * g))

    np.testing.assert_allclose(gx, numeric_grad(loss, x), **FD_TOL)
    np.testing.assert_allclose(gw, numeric_grad(loss, w), **FD_TOL)
    np.testing.assert_allclose(gb, numeric_grad(loss, b), **FD_TOL)


MAX_CASES = {
    "k2": (2, dict()),
    "k3s2p1-ceil": (3, dict(stride=2, padding=1, ceil_mode=True)),
    "dil2": (3, dict(stride=1, padding=1, dilation=2)),
    "rect-per-side": ((3, 2), dict(stride=(2, 1), padding=((1, 0), (0, 1)))),
    "same": (3, dict(stride=2, padding="same")),
}


@pytest.mark.parametrize("kernel_size, options", MAX_CASES.values(), ids=MAX_CASES.keys())
def test_reference_max_pool2d_backward_matches_finite_differences(rng, kernel_size, options):
    x = distinct(rng, (2, 2, 6, 5))
    g = rng.standard_normal(ref.max_pool2d(x, kernel_size, **options).shape)
    gx = ref.max_pool2d_backward(g, x, kernel_size, **options)
    fd = numeric_grad(lambda: float(np.sum(ref.max_pool2d(x, kernel_size, **options) * g)), x)
    np.testing.assert_allclose(gx, fd, **FD_TOL)


AVG_CASES = {
    "k2": (2, dict()),
    "k3s2p1-ceil": (3, dict(stride=2, padding=1, ceil_mode=True)),
    "k3s2p1-ceil-exclude": (3, dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    "divisor": ((3, 2), dict(stride=(1, 2), padding=(1, 0), divisor_override=5)),
    "same": (3, dict(stride=2, padding="same")),
    "same-include": (2, dict(padding="same", stride=1, count_include_pad=True)),
    "per-side": (2, dict(stride=1, padding=((1, 0), (0, 1)))),
}


@pytest.mark.parametrize("kernel_size, options", AVG_CASES.values(), ids=AVG_CASES.keys())
def test_reference_avg_pool2d_backward_matches_finite_differences(rng, kernel_size, options):
    x = rng.standard_normal((2, 2, 6, 5))
    g = rng.standard_normal(ref.avg_pool2d(x, kernel_size, **options).shape)
    gx = ref.avg_pool2d_backward(g, x, kernel_size, **options)
    fd = numeric_grad(lambda: float(np.sum(ref.avg_pool2d(x, kernel_size, **options) * g)), x)
    np.testing.assert_allclose(gx, fd, **FD_TOL)


@pytest.mark.parametrize("output_size", [1, (2, 3), (4, 5), (7, 6), (None, 2)], ids=str)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_reference_adaptive_backward_matches_finite_differences(rng, output_size, mode):
    x = distinct(rng, (1, 2, 5, 4))  # (7, 6) is larger than the input: bins repeat cells
    fwd = ref.adaptive_max_pool2d if mode == "max" else ref.adaptive_avg_pool2d
    bwd = ref.adaptive_max_pool2d_backward if mode == "max" else ref.adaptive_avg_pool2d_backward
    g = rng.standard_normal(fwd(x, output_size).shape)
    fd = numeric_grad(lambda: float(np.sum(fwd(x, output_size) * g)), x)
    np.testing.assert_allclose(bwd(g, x, output_size), fd, **FD_TOL)


@pytest.mark.parametrize("levels, rule", [((1, 2, 4), "adaptive"), ((1, (2, 3)), "adaptive"), ((1, 2, 3), "paper")],
                         ids=["124", "1-23", "paper"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_reference_spp_backward_matches_finite_differences(rng, levels, rule, mode):
    x = distinct(rng, (2, 2, 6, 7))
    g = rng.standard_normal(ref.spatial_pyramid_pool2d(x, levels, mode=mode, rule=rule).shape)
    fd = numeric_grad(lambda: float(np.sum(ref.spatial_pyramid_pool2d(x, levels, mode=mode, rule=rule) * g)), x)
    np.testing.assert_allclose(ref.spatial_pyramid_pool2d_backward(g, x, levels, mode=mode, rule=rule), fd,
                               **FD_TOL)


def test_reference_backward_rejects_wrong_grad_out_shape():
    x, w = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d_backward: grad_out must have shape \(1, 1, 2, 2\)"):
        ref.conv2d_backward(np.zeros((1, 1, 3, 3)), x, w)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: grad_out must have shape \(1, 1, 2, 2\)"):
        ref.max_pool2d_backward(np.zeros((1, 1, 3, 3)), x, 2)


@pytest.mark.parametrize("module", ["fastconv.backward", "fastconv.reference.backward"])
def test_backward_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), verbose=False)
    assert result.attempted > 0 and result.failed == 0
