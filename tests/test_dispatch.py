"""conv2d dispatch is a pure function of the canonical problem: one test per rule."""

import re

import numpy as np
import pytest

import fastconv
from fastconv import dispatch

SUITE = {  # the benchmark layers (docs/algorithms.md) and the algorithm each rule gives them
    "L1": ((8, 3, 224, 224), (32, 3, 3, 3), 1, 1, "direct"),
    "L2": ((32, 64, 56, 56), (64, 64, 3, 3), 1, 1, "direct"),
    "L3": ((32, 64, 56, 56), (128, 64, 3, 3), 2, 1, "im2col"),
    "L4": ((16, 128, 28, 28), (128, 128, 3, 3), 1, 1, "direct"),
    "L5": ((32, 256, 14, 14), (256, 256, 3, 3), 1, 1, "im2col"),
    "L6": ((32, 256, 14, 14), (256, 256, 1, 1), 1, 1, "im2col"),
    "L7": ((32, 64, 56, 56), (64, 1, 3, 3), 1, 64, "depthwise"),
    "L8": ((64, 1, 28, 28), (32, 1, 5, 5), 1, 1, "first_layer"),
}


@pytest.mark.parametrize("layer", list(SUITE))
def test_suite_layers(layer):
    x_shape, w_shape, stride, groups, expected = SUITE[layer]
    padding = "same" if w_shape[2] > 1 else 0
    plan = fastconv.plan_conv2d(x_shape, w_shape, stride=stride, padding=padding, groups=groups)
    assert plan.algo == expected, plan.reason


def test_single_channel_stems_go_to_the_first_layer_kernel():
    # L8: one input channel, 25 taps (<= FIRST_LAYER_MAX_TAPS); L1 (3 channels) is the direct kernel's.
    plan = fastconv.plan_conv2d((64, 1, 28, 28), (32, 1, 5, 5), padding="same")
    assert plan.algo == "first_layer" and "25 taps" in plan.reason
    assert fastconv.plan_conv2d((8, 3, 224, 224), (32, 3, 3, 3), padding="same").algo == "direct"


def test_reasons_name_the_rule():
    many = dispatch.FIRST_LAYER_MAX_TAPS // 9 + 1  # channels giving more 3x3 taps than the first-layer rule
    assert "stride" in fastconv.plan_conv2d((1, many, 32, 32), (8, many, 3, 3), stride=2).reason
    assert "weights per output position" in fastconv.plan_conv2d((1, 256, 16, 16), (256, 256, 3, 3),
                                                                 padding=1).reason
    assert "narrow maps" in fastconv.plan_conv2d((32, 256, 14, 14), (256, 256, 3, 3), padding=1).reason
    assert "tiny maps" in fastconv.plan_conv2d((32, 16, 4, 4), (32, 16, 3, 3), padding=1).reason
    assert "direct" in fastconv.plan_conv2d((8, many, 16, 16), (8, many, 3, 3), padding=1).reason
    assert "depthwise" in fastconv.plan_conv2d((1, 8, 16, 16), (8, 1, 3, 3), groups=8).reason
    assert "taps" in fastconv.plan_conv2d((1, 3, 16, 16), (8, 3, 3, 3)).reason
    assert "GEMM" in fastconv.plan_conv2d((1, 8, 16, 16), (8, 8, 1, 1)).reason


def test_depthwise_rule_boundary_on_output_channels_per_group():
    limit = dispatch.DEPTHWISE_MAX_CHANNELS
    at = fastconv.plan_conv2d((1, 4, 16, 16), (4 * limit, 1, 3, 3), groups=4, padding=1)
    above = fastconv.plan_conv2d((1, 4, 16, 16), (4 * (limit + 1), 1, 3, 3), groups=4, padding=1)
    assert (at.algo, above.algo) == ("depthwise", "first_layer")
    # Few output channels with many input channels (a 2-class head) is the depthwise kernel too.
    assert fastconv.plan_conv2d((1, 64, 32, 32), (2, 64, 3, 3), padding=1).algo == "depthwise"


def test_first_layer_rule_boundary_on_taps():
    side = int(np.sqrt(dispatch.FIRST_LAYER_MAX_TAPS))  # one channel, side x side taps <= limit
    at = fastconv.plan_conv2d((1, 1, 64, 64), (8, 1, side, side), padding="same")
    above = fastconv.plan_conv2d((1, 1, 64, 64), (8, 1, side + 1, side + 1), padding="same")
    assert side * side <= dispatch.FIRST_LAYER_MAX_TAPS < (side + 1) ** 2
    assert (at.algo, above.algo) == ("first_layer", "direct")
    # Two input channels are past the rule however few the taps.
    assert fastconv.plan_conv2d((1, 2, 64, 64), (8, 2, 3, 3), padding="same").algo == "direct"
    # The rule comes before the stride rule (a strided stem) and the small-maps rules.
    assert fastconv.plan_conv2d((1, 1, 224, 224), (32, 1, 3, 3), stride=2, padding="same").algo == "first_layer"
    assert fastconv.plan_conv2d((32, 1, 8, 8), (32, 1, 3, 3), padding="same").algo == "first_layer"
    # 7x7 stride-2 RGB stem: im2col by the stride rule.
    assert fastconv.plan_conv2d((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3).algo == "im2col"


def test_narrow_maps_boundary():
    width, taps = dispatch.NARROW_MAP_MAX_WIDTH, dispatch.NARROW_MAP_MIN_TAPS
    channels = -(-taps // 9)  # 3x3: channels * 9 >= taps
    plan = fastconv.plan_conv2d((32, channels, width, width), (64, channels, 3, 3), padding="same")
    assert plan.algo == "im2col" and "narrow maps" in plan.reason
    wider = fastconv.plan_conv2d((32, channels, width + 1, width + 1), (64, channels, 3, 3), padding="same")
    fewer = fastconv.plan_conv2d((32, channels - 1, width, width), (64, channels - 1, 3, 3), padding="same")
    assert (wider.algo, fewer.algo) == ("direct", "direct")


def test_weights_per_position_boundary():
    # (O/g) * taps / (N * OH * OW) with 512 outputs and 576 taps: the boundary lies near 39 x 39 maps
    # (wider than the narrow-maps rule).
    limit = dispatch.DIRECT_MAX_WEIGHTS_PER_POSITION
    o_per_group, taps = 512, 64 * 9
    side = int(np.sqrt(o_per_group * taps / limit))
    at = fastconv.plan_conv2d((1, 64, side + 1, side + 1), (o_per_group, 64, 3, 3), padding="same")
    above = fastconv.plan_conv2d((1, 64, side - 1, side - 1), (o_per_group, 64, 3, 3), padding="same")
    assert side - 1 > dispatch.NARROW_MAP_MAX_WIDTH
    assert o_per_group * taps / (side + 1) ** 2 <= limit < o_per_group * taps / (side - 1) ** 2
    assert (at.algo, above.algo) == ("direct", "im2col")
    # the batch counts: the same layer with 8 images has 8x the positions
    assert fastconv.plan_conv2d((8, 64, side - 1, side - 1), (o_per_group, 64, 3, 3), padding="same").algo == "direct"


def test_pointwise_rule_comes_first():
    # 1x1 stride 1 unpadded, groups 1: a plain GEMM even with few taps (the first-layer rule is later).
    assert fastconv.plan_conv2d((1, 3, 16, 16), (8, 3, 1, 1)).algo == "im2col"
    # Grouped 1x1 with one output channel per group is not a plain GEMM: depthwise.
    assert fastconv.plan_conv2d((1, 8, 16, 16), (8, 1, 1, 1), groups=8).algo == "depthwise"


@pytest.mark.parametrize("algo", ["direct", "im2col", "depthwise", "first_layer"])
def test_explicit_algo_is_honoured(algo):
    plan = fastconv.plan_conv2d((32, 256, 14, 14), (256, 256, 1, 1), algo=algo)
    assert plan.algo == algo and plan.reason == "requested by the caller"


def test_unknown_algo_lists_every_choice():
    choices = ", ".join(repr(a) for a in dispatch.CONV2D_ALGOS)
    assert {"depthwise", "first_layer"} <= set(dispatch.CONV2D_ALGOS)
    with pytest.raises(ValueError, match=re.escape(f"conv2d: algo must be one of {choices}, got 'winograd'")):
        dispatch.choose_conv2d_algo(dispatch.Conv2dProblem(1, 1, 1, (5, 5), (3, 3), (1, 1), (1, 1),
                                                           ((0, 0), (0, 0)), 1, (3, 3), 4), "winograd")


def test_row_block_workspace_is_small_and_needs_no_padded_copy():
    # L7 (depthwise) and L1 on the first-layer kernel: local buffers only (per thread), far below one
    # padded copy of the input.
    for x_shape, w_shape, groups, algo in (((32, 64, 56, 56), (64, 1, 3, 3), 64, "auto"),
                                           ((8, 3, 224, 224), (32, 3, 3, 3), 1, "first_layer")):
        plan = fastconv.plan_conv2d(x_shape, w_shape, padding="same", groups=groups, algo=algo)
        padded_copy = x_shape[0] * x_shape[1] * (x_shape[2] + 2) * (x_shape[3] + 2) * 4
        assert 0 < plan.workspace_bytes < padded_copy / 20, (plan.algo, plan.workspace_bytes)


def test_digits_cnn_convs_tiny_maps_with_many_taps_go_to_im2col():
    first = fastconv.plan_conv2d((32, 1, 8, 8), (16, 1, 3, 3), padding=1)
    second = fastconv.plan_conv2d((32, 16, 4, 4), (32, 16, 3, 3), padding=1)
    assert first.algo == "first_layer"  # 9 taps
    assert second.algo == "im2col"  # 144 taps on 4x4 maps: the batch-innermost GEMM
    # More channels and images on 4x4 maps are no longer a small problem: the direct kernel
    # (32 * 576 / (64 * 16) = 18 weights per position).
    assert fastconv.plan_conv2d((64, 64, 4, 4), (32, 64, 3, 3), padding=1).algo == "direct"
