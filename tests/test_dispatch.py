"""conv2d dispatch is a pure function of the canonical problem: one test per rule."""

import re

import numpy as np
import pytest

import fastconv
from fastconv import dispatch

SUITE = {  # the benchmark layers (docs/algorithms.md) and the algorithm each rule gives them
    "L1": ((8, 3, 224, 224), (32, 3, 3, 3), 1, 1, "first_layer"),
    "L2": ((32, 64, 56, 56), (64, 64, 3, 3), 1, 1, "winograd"),
    "L3": ((32, 64, 56, 56), (128, 64, 3, 3), 2, 1, "direct"),
    "L4": ((16, 128, 28, 28), (128, 128, 3, 3), 1, 1, "winograd"),
    "L5": ((32, 256, 14, 14), (256, 256, 3, 3), 1, 1, "winograd"),
    "L6": ((32, 256, 14, 14), (256, 256, 1, 1), 1, 1, "direct" if dispatch.HAS_AVX512 else "im2col"),
    "L7": ((32, 64, 56, 56), (64, 1, 3, 3), 1, 64, "depthwise"),
    "L8": ((64, 1, 28, 28), (32, 1, 5, 5), 1, 1, "direct"),
}


@pytest.mark.parametrize("layer", list(SUITE))
def test_suite_layers(layer):
    x_shape, w_shape, stride, groups, expected = SUITE[layer]
    padding = "same" if w_shape[2] > 1 else 0
    plan = fastconv.plan_conv2d(x_shape, w_shape, stride=stride, padding=padding, groups=groups)
    assert plan.algo == expected, plan.reason


def test_four_channel_groups_go_to_the_first_layer_kernel():
    # Four output channels per group, 36 taps (<= FIRST_LAYER_MAX_TAPS): the 4-channel pass fits exactly.
    plan = fastconv.plan_conv2d((8, 128, 28, 28), (128, 4, 3, 3), padding="same", groups=32)
    assert plan.algo == "first_layer" and "36 taps" in plan.reason
    # A 1x1 kernel with four output channels per group too.
    assert fastconv.plan_conv2d((8, 64, 56, 56), (64, 4, 1, 1), groups=16).algo == "first_layer"


def test_few_taps_go_to_the_first_layer_kernel():
    taps = dispatch.FIRST_LAYER_SPATIAL_MAX_TAPS
    assert taps == 80  # up to 8 channels of 3x3 or 3 of 5x5, the shapes measured
    plan = fastconv.plan_conv2d((8, 3, 224, 224), (32, 3, 3, 3), padding="same")
    assert plan.algo == "first_layer" and "27 taps" in plan.reason
    # Any stride, 32 output channels (whole direct blocks): the tap boundary.
    assert fastconv.plan_conv2d((1, 8, 32, 32), (32, 8, 3, 3), padding=1).algo == "first_layer"  # 72 taps
    assert fastconv.plan_conv2d((1, 9, 32, 32), (32, 9, 3, 3), padding=1).algo == "direct"  # 81 taps
    assert fastconv.plan_conv2d((1, 3, 128, 128), (32, 3, 5, 5), stride=2, padding=2).algo == "first_layer"
    # The width boundary: rows of at least two vectors (L8's 28-wide rows stay direct).
    width = dispatch.FIRST_LAYER_FEW_TAPS_MIN_WIDTH
    assert fastconv.plan_conv2d((1, 3, 8, width), (32, 3, 3, 3), padding=1).algo == "first_layer"
    assert fastconv.plan_conv2d((1, 3, 8, width - 1), (32, 3, 3, 3), padding=1).algo == "direct"
    assert fastconv.plan_conv2d((64, 1, 28, 28), (32, 1, 5, 5), padding="same").algo == "direct"
    # Not 1x1 kernels (a strided one would gather every stride phase to read one).
    assert fastconv.plan_conv2d((8, 32, 56, 56), (64, 32, 1, 1), stride=2).algo == "direct"


def test_partial_direct_blocks_go_to_the_first_layer_kernel():
    limit, block = dispatch.FIRST_LAYER_PARTIAL_BLOCK_MAX_TAPS, dispatch.channel_block(4)
    c_at = limit // 9  # 3x3 taps at or under the limit
    plan = fastconv.plan_conv2d((8, c_at, 56, 56), (block + 16, c_at, 3, 3), padding=1)
    assert plan.algo == "first_layer" and "not whole" in plan.reason
    assert fastconv.plan_conv2d((8, c_at + 1, 56, 56), (block + 16, c_at + 1, 3, 3), padding=1).algo == "direct"
    # Whole blocks stay direct; grouped 16 -> 16 channels do not (float32 blocks of 32), on 28-wide rows too.
    assert fastconv.plan_conv2d((8, 16, 56, 56), (2 * block, 16, 3, 3), padding=1).algo == "direct"
    if block == 32:
        assert fastconv.plan_conv2d((8, 64, 28, 28), (64, 16, 3, 3), groups=4, padding=1).algo == "first_layer"
    # Rows narrower than one vector stay direct.
    narrow = dispatch.FIRST_LAYER_MIN_WIDTH - 1
    assert fastconv.plan_conv2d((8, c_at, 9, narrow), (block + 16, c_at, 3, 3), padding=1).algo == "direct"


def test_reasons_name_the_rule():
    assert "weights per output position" in fastconv.plan_conv2d((1, 256, 16, 16), (256, 256, 3, 3),
                                                                 padding=1).reason
    assert "direct" in fastconv.plan_conv2d((8, 16, 16, 16), (8, 16, 3, 3), padding=1).reason
    assert "depthwise" in fastconv.plan_conv2d((1, 8, 16, 16), (8, 1, 3, 3), groups=8).reason
    assert "taps" in fastconv.plan_conv2d((1, 8, 16, 16), (16, 2, 3, 3), groups=4).reason
    assert "GEMM" in fastconv.plan_conv2d((1, 1024, 14, 14), (256, 1024, 1, 1)).reason


def test_depthwise_rule_boundary_on_output_channels_per_group():
    limit = dispatch.DEPTHWISE_MAX_CHANNELS
    at = fastconv.plan_conv2d((1, 4, 16, 16), (4 * limit, 1, 3, 3), groups=4, padding=1)
    above = fastconv.plan_conv2d((1, 4, 16, 16), (4 * (limit + 1), 1, 3, 3), groups=4, padding=1)
    assert (at.algo, above.algo) == ("depthwise", "first_layer")



def test_few_output_channels_from_many_inputs_go_to_the_direct_kernel():
    # A 2-class head or an RGB output layer: the direct kernel's few-channel variant from
    # FEW_MIN_INPUT_CHANNELS input channels per group, the depthwise kernel below.
    limit = dispatch.FEW_MIN_INPUT_CHANNELS
    plan = fastconv.plan_conv2d((1, 16, 32, 32), (2, 16, 3, 3), padding=1)
    assert plan.algo == "direct" and "few-channel" in plan.reason
    strided = fastconv.plan_conv2d((1, 64, 32, 32), (2, 64, 3, 3), stride=2, padding=1)  # not tap GEMM
    assert strided.algo == "direct" and "few-channel" in strided.reason
    assert fastconv.plan_conv2d((1, limit, 32, 32), (3, limit, 3, 3), padding=1).algo == "direct"
    assert fastconv.plan_conv2d((1, limit - 1, 32, 32), (3, limit - 1, 3, 3), padding=1).algo == "depthwise"
    # per group: 32 groups of 2 -> 2 channels stay depthwise
    assert fastconv.plan_conv2d((1, 64, 32, 32), (64, 2, 3, 3), groups=32, padding=1).algo == "depthwise"


def test_tap_gemm_rule_boundaries():
    # Stride 1, few GEMM rows (output channels x taps), a deep enough GEMM, padding within the kernel's
    # reach, enough positions per image: the tap-GEMM route of the direct kernel.
    rows, depth, positions = dispatch.TAP_GEMM_MAX_ROWS, dispatch.TAP_GEMM_MIN_DEPTH, dispatch.TAP_GEMM_MIN_POSITIONS

    def reason(x_shape, w_shape, **kw):
        plan = fastconv.plan_conv2d(x_shape, w_shape, **kw)
        return plan.algo, "tap-GEMM" in plan.reason

    assert reason((2, 64, 56, 56), (3, 64, 3, 3), padding=1) == ("direct", True)  # an RGB output layer
    if dispatch.HAS_AVX512:
        # rows == limit, then one channel more (14x14 maps: the extension below does not apply)
        assert reason((8, depth, 14, 14), (rows // 16, depth, 4, 4), padding=1)[1]
        assert not reason((8, depth, 14, 14), (rows // 16 + 1, depth, 4, 4), padding=1)[1]
    else:  # AVX2: at most FEW_OB output channels per group
        assert not reason((2, 64, 56, 56), (dispatch.FEW_OB + 1, 64, 3, 3), padding=1)[1]
    assert not reason((2, depth - 1, 16, 16), (3, depth - 1, 3, 3), padding=1)[1]
    assert not reason((2, 64, 16, 16), (3, 64, 3, 3), stride=2, padding=1)[1]
    assert not reason((2, 64, 16, 16), (3, 64, 1, 1))[1]  # 1x1: a plain GEMM
    assert not reason((2, 64, 16, 16), (3, 64, 3, 3), padding=3)[1]  # beyond the kernel's reach
    assert reason((2, 64, 16, 16), (3, 64, 3, 3), padding=1, dilation=2)[1]  # reach 2 with dilation 2
    assert reason((2, 64, 8, positions // 8), (3, 64, 3, 3), padding=1)[1]
    assert not reason((2, 64, 8, positions // 8 - 1), (3, 64, 3, 3), padding=1)[1]
    assert reason((2, 128, 16, 16), (6, 64, 3, 3), padding=1, groups=2)[1]  # per group: 64 -> 3
    plan = fastconv.plan_conv2d((8, 64, 56, 56), (3, 64, 3, 3), padding=1)
    assert 27 * 3136 * 4 < plan.workspace_bytes < 8 * 64 * 56 * 56 * 4  # col2im buffers, no padded copy
    # More rows when the blocked kernel's channel blocks would be partly padding and the positions fill
    # whole micro-tiles (56x56, not 14x14); full blocks stay on the blocked kernel. AVX-512 only.
    block = dispatch.channel_block(4)
    # (30 channels: 270 rows; from 32 output channels per group Winograd takes these layers)
    assert reason((8, 64, 56, 56), (block - 2, 64, 3, 3), padding=1) == ("direct", dispatch.HAS_AVX512)
    assert not reason((8, 64, 56, 56), (2 * block, 64, 3, 3), padding=1)[1]
    assert not reason((32, 256, 14, 14), (block + 16, 256, 3, 3), padding=1)[1]
    # a full block stays blocked even with few rows (float64: 16-channel blocks, 144 rows)
    block64 = dispatch.channel_block(8)
    assert not reason((8, 64, 56, 56), (block64, 64, 3, 3), padding=1, dtype=np.float64)[1]
    assert reason((8, 64, 56, 56), (block64 + 8, 64, 3, 3), padding=1, dtype=np.float64)[1] == dispatch.HAS_AVX512


def test_first_layer_rule_boundary_on_taps_and_channels():
    limit = dispatch.FIRST_LAYER_MAX_TAPS
    at = fastconv.plan_conv2d((1, 4 * (limit // 9), 32, 32), (16, limit // 9, 3, 3), groups=4, padding=1)
    above = fastconv.plan_conv2d((1, 4 * (limit // 9 + 1), 32, 32), (16, limit // 9 + 1, 3, 3), groups=4,
                                 padding=1)
    assert (at.algo, above.algo) == ("first_layer", "first_layer")  # the second by the partial-block rule
    assert "4 output channels per group" in at.reason and "not whole" in above.reason
    # A 1x1 kernel is past the rule with 4 + 1 input channels: direct.
    assert fastconv.plan_conv2d((1, 4 * (limit + 1), 32, 32), (16, limit + 1, 1, 1), groups=4).algo == "direct"
    # The rule holds for strided convolutions too.
    assert fastconv.plan_conv2d((1, 8, 32, 32), (16, 2, 3, 3), groups=4, stride=2).algo == "first_layer"


def test_strides_narrow_and_tiny_maps_stay_direct():
    # The direct kernel steps its positions by the stride and computes only real outputs, so neither
    # a stride, 14-wide maps nor 4x4 maps send a convolution to im2col.
    assert fastconv.plan_conv2d((32, 64, 56, 56), (128, 64, 3, 3), stride=2, padding="same").algo == "direct"
    assert fastconv.plan_conv2d((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3).algo == "direct"
    assert fastconv.plan_conv2d((8, 128, 7, 7), (128, 128, 3, 3), padding=1).algo == "direct"
    assert fastconv.plan_conv2d((32, 16, 4, 4), (32, 16, 3, 3), padding=1).algo == "direct"


def test_weights_per_position_boundary():
    # (O/g) * taps / (N * OH * OW) with 512 outputs and 576 taps: the boundary lies near 39 x 39 maps.
    limit = dispatch.DIRECT_MAX_WEIGHTS_PER_POSITION
    o_per_group, taps = 512, 64 * 9
    side = int(np.sqrt(o_per_group * taps / limit))
    at = fastconv.plan_conv2d((1, 64, side + 1, side + 1), (o_per_group, 64, 3, 3), padding="same")
    above = fastconv.plan_conv2d((1, 64, side - 1, side - 1), (o_per_group, 64, 3, 3), padding="same")
    assert o_per_group * taps / (side + 1) ** 2 <= limit < o_per_group * taps / (side - 1) ** 2
    assert (at.algo, above.algo) == ("direct", "im2col")
    # the batch counts: the same layer with 8 images has 8x the positions
    assert fastconv.plan_conv2d((8, 64, side - 1, side - 1), (o_per_group, 64, 3, 3), padding="same").algo == "direct"


def test_pointwise_rule_comes_first():
    # 1x1 stride 1 unpadded, groups 1, even with few taps (the first-layer rule is later): the direct
    # kernel in place while the weights per output position stay at most the limit (AVX-512 only, the
    # limit is 0 otherwise), else a plain GEMM.
    limit = dispatch.POINTWISE_DIRECT_MAX_WEIGHTS_PER_POSITION
    assert fastconv.plan_conv2d((1, 3, 16, 16), (32, 3, 1, 1)).algo == ("direct" if limit else "im2col")
    # fewer output channels than one of the direct kernel's channel blocks: the GEMM
    assert fastconv.plan_conv2d((1, 3, 16, 16), (8, 3, 1, 1)).algo == "im2col"
    c = 256
    side = int(np.sqrt(c * c / max(limit, 1)))
    assert c * c / (side + 1) ** 2 <= limit or not limit
    at = fastconv.plan_conv2d((1, c, side + 1, side + 1), (c, c, 1, 1))
    above = fastconv.plan_conv2d((1, c, side - 1, side - 1), (c, c, 1, 1))
    assert (at.algo, above.algo) == (("direct" if limit else "im2col"), "im2col")
    assert at.workspace_bytes == 0 and above.workspace_bytes == 0  # in place / a plain GEMM
    # Grouped 1x1 with one output channel per group is not a plain GEMM: depthwise.
    assert fastconv.plan_conv2d((1, 8, 16, 16), (8, 1, 1, 1), groups=8).algo == "depthwise"


@pytest.mark.parametrize("algo", ["direct", "im2col", "depthwise", "first_layer"])
def test_explicit_algo_is_honoured(algo):
    plan = fastconv.plan_conv2d((32, 256, 14, 14), (256, 256, 1, 1), algo=algo)
    assert plan.algo == algo and plan.reason == "requested by the caller"


def test_unknown_algo_lists_every_choice():
    choices = ", ".join(repr(a) for a in dispatch.CONV2D_ALGOS)
    assert {"depthwise", "first_layer", "winograd"} <= set(dispatch.CONV2D_ALGOS)
    with pytest.raises(ValueError, match=re.escape(f"conv2d: algo must be one of {choices}, got 'fft'")):
        dispatch.choose_conv2d_algo(dispatch.Conv2dProblem(1, 1, 1, (5, 5), (3, 3), (1, 1), (1, 1),
                                                           ((0, 0), (0, 0)), 1, (3, 3), 4), "fft")


def test_row_block_workspace_is_small_and_needs_no_padded_copy():
    # L7 (depthwise) and L1 on the first-layer kernel: local buffers only (per thread), far below one
    # padded copy of the input.
    for x_shape, w_shape, groups, algo in (((32, 64, 56, 56), (64, 1, 3, 3), 64, "auto"),
                                           ((8, 3, 224, 224), (32, 3, 3, 3), 1, "first_layer")):
        plan = fastconv.plan_conv2d(x_shape, w_shape, padding="same", groups=groups, algo=algo)
        padded_copy = x_shape[0] * x_shape[1] * (x_shape[2] + 2) * (x_shape[3] + 2) * 4
        assert 0 < plan.workspace_bytes < padded_copy / 20, (plan.algo, plan.workspace_bytes)


def test_digits_cnn_convs_go_to_the_direct_kernel():
    # The direct kernel computes only real outputs, so tiny maps waste nothing (digits conv2 forward, one
    # thread, float32 GFLOP/s: direct 19.9 vs im2col 13.2; conv1: 4.0 vs first_layer 2.9).
    assert fastconv.plan_conv2d((32, 1, 8, 8), (16, 1, 3, 3), padding=1).algo == "direct"
    assert fastconv.plan_conv2d((32, 16, 4, 4), (32, 16, 3, 3), padding=1).algo == "direct"
