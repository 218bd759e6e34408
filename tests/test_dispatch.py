"""conv2d dispatch is a pure function of the canonical problem: one test per rule."""

import numpy as np
import pytest

import fastconv
from fastconv import dispatch

SUITE = {  # the benchmark layers (docs/algorithms.md) and the algorithm each rule gives them
    "L1": ((8, 3, 224, 224), (32, 3, 3, 3), 1, 1, "im2col"),
    "L2": ((32, 64, 56, 56), (64, 64, 3, 3), 1, 1, "direct"),
    "L3": ((32, 64, 56, 56), (128, 64, 3, 3), 2, 1, "im2col"),
    "L4": ((16, 128, 28, 28), (128, 128, 3, 3), 1, 1, "im2col"),
    "L5": ((32, 256, 14, 14), (256, 256, 3, 3), 1, 1, "im2col"),
    "L6": ((32, 256, 14, 14), (256, 256, 1, 1), 1, 1, "im2col"),
    "L7": ((32, 64, 56, 56), (64, 1, 3, 3), 1, 64, "direct"),
    "L8": ((64, 1, 28, 28), (32, 1, 5, 5), 1, 1, "im2col"),
}


@pytest.mark.parametrize("layer", list(SUITE))
def test_suite_layers(layer):
    x_shape, w_shape, stride, groups, expected = SUITE[layer]
    padding = "same" if w_shape[2] > 1 else 0
    plan = fastconv.plan_conv2d(x_shape, w_shape, stride=stride, padding=padding, groups=groups)
    assert plan.algo == expected, plan.reason


def test_l1_goes_to_im2col_by_the_taps_rule():
    # L1 has 27 taps (< DIRECT_MIN_TAPS).
    plan = fastconv.plan_conv2d((8, 3, 224, 224), (32, 3, 3, 3), padding="same")
    assert plan.algo == "im2col" and "taps" in plan.reason


def test_reasons_name_the_rule():
    assert "stride" in fastconv.plan_conv2d((1, 8, 32, 32), (8, 8, 3, 3), stride=2).reason
    assert "small output maps" in fastconv.plan_conv2d((1, 8, 16, 16), (8, 8, 3, 3), padding=1).reason
    assert "depthwise" in fastconv.plan_conv2d((1, 8, 16, 16), (8, 1, 3, 3), groups=8).reason
    assert "GEMM" in fastconv.plan_conv2d((1, 8, 16, 16), (8, 8, 1, 1)).reason


def test_thresholds_are_boundaries():
    side = int(np.sqrt(dispatch.IM2COL_MAX_POSITIONS))
    at = fastconv.plan_conv2d((1, 8, side, side), (8, 8, 3, 3), padding="same")
    above = fastconv.plan_conv2d((1, 8, side + 1, side + 1), (8, 8, 3, 3), padding="same")
    assert (at.algo, above.algo) == ("im2col", "direct")
    few = fastconv.plan_conv2d((1, 3, 64, 64), (8, 3, 3, 3), padding="same")     # 27 taps
    enough = fastconv.plan_conv2d((1, 4, 64, 64), (8, 4, 3, 3), padding="same")  # 36 taps
    assert (few.algo, enough.algo) == ("im2col", "direct")


def test_explicit_algo_is_honoured():
    for algo in ("direct", "im2col"):
        assert fastconv.plan_conv2d((32, 256, 14, 14), (256, 256, 1, 1), algo=algo).algo == algo
