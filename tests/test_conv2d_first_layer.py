"""conv2d(algo="first_layer"): few input channels, many output channels (a network's first layer)
against the float64 reference. The row-block machinery it shares with the depthwise kernel (work
splits, thread counts, padding taps, specialisations) is tested in test_conv2d_depthwise.py."""

import numpy as np
import pytest
from conftest import FLOAT_DTYPES, assert_conv2d_matches_reference, conv2d_configs, conv_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.conv

# name -> (x shape, weight shape, options)
CASES = {
    "rgb_3x3_same": ((2, 3, 20, 24), (32, 3, 3, 3), dict(padding="same")),
    "n1": ((1, 3, 17, 19), (16, 3, 3, 3), dict(padding=1)),
    "odd_sizes": ((3, 3, 13, 7), (12, 3, 3, 3), dict(padding=1)),
    "partial_channel_block": ((2, 3, 11, 12), (13, 3, 3, 3), dict(padding="same")),  # 3 x 4 + 1
    "fewer_channels_than_a_block": ((2, 3, 11, 12), (3, 3, 3, 3), dict(padding="same")),
    "one_input_channel_k5": ((4, 1, 14, 14), (8, 1, 5, 5), dict(padding="same")),  # 25 taps: 2 zero taps
    "stem_stride2": ((2, 3, 23, 22), (8, 3, 3, 3), dict(stride=2, padding="same")),
    "stem_7x7_stride2": ((1, 3, 30, 29), (8, 3, 7, 7), dict(stride=2, padding=3)),
    "stride3x1": ((2, 3, 16, 15), (8, 3, 3, 3), dict(stride=(3, 1), padding=1)),
    "dilation2": ((2, 3, 15, 16), (8, 3, 3, 3), dict(dilation=2, padding="same")),
    "dilation1x2_stride2": ((2, 3, 15, 16), (8, 3, 3, 3), dict(dilation=(1, 2), stride=2, padding=2)),
    "k2x2_even_same": ((2, 4, 9, 10), (8, 4, 2, 2), dict(padding="same")),
    "k1_strided": ((2, 16, 9, 10), (8, 16, 1, 1), dict(stride=2)),
    "valid": ((2, 3, 9, 10), (8, 3, 3, 3), dict(padding="valid")),
    "full": ((2, 3, 5, 6), (8, 3, 3, 3), dict(padding="full")),
    "pad_perside": ((2, 3, 8, 9), (8, 3, 3, 3), dict(padding=((0, 2), (3, 1)))),
    "kernel_larger_than_input_full": ((1, 2, 2, 3), (8, 2, 5, 5), dict(padding="full")),
    "reflect": ((2, 3, 8, 9), (8, 3, 3, 3), dict(padding=((2, 1), (1, 3)), padding_mode="reflect")),
    "replicate_stride2": ((2, 3, 9, 9), (8, 3, 3, 3), dict(padding=2, stride=2, padding_mode="replicate")),
    "circular": ((2, 3, 8, 9), (8, 3, 3, 3), dict(padding="same", padding_mode="circular")),
    "groups2": ((2, 6, 10, 11), (16, 3, 3, 3), dict(groups=2, padding=1)),
    "groups3_partial_block": ((2, 6, 10, 11), (15, 2, 3, 3), dict(groups=3, padding=1)),  # 5 per group
    "depthwise_multiplier8": ((2, 4, 10, 11), (32, 1, 3, 3), dict(groups=4, padding=1)),
    "sixteen_channels": ((1, 16, 12, 13), (8, 16, 3, 3), dict(padding="same")),  # 144 taps
    "tall_image_many_row_blocks": ((1, 3, 83, 61), (8, 3, 3, 3), dict(padding="same")),
    # Rows of whole micro-tiles plus single vectors, the last shifted back (float32 AVX-512: 64-position
    # tiles; 150 = 2 x 64 + 16 + 6), with a partial channel block; a row of exactly one tile; stride 2.
    "wide_rows_tiles_and_tail": ((2, 3, 6, 150), (13, 3, 3, 3), dict(padding="same")),
    "row_of_one_tile": ((1, 3, 4, 64), (8, 3, 3, 3), dict(padding=1)),
    "wide_rows_stride2": ((1, 3, 7, 301), (8, 3, 3, 3), dict(stride=2, padding=1)),
}


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case, dtype, with_bias, rng):
    assert_conv2d_matches_reference(rng, "first_layer", *CASES[case], with_bias, dtype)


@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_any_number_of_rows_per_work_item(rows, rng, monkeypatch, conv2d_ref64, assert_close):
    # Item sizes of 1, 2, 3 and 5 rows of 26 positions: odd and even blocks, a short last block.
    x, w, b = conv_inputs(rng, (2, 3, 17, 24), (8, 3, 3, 3), True, np.float64)
    monkeypatch.setattr(fastconv.conv, "FIRST_LAYER_ITEM_POSITIONS", rows * 26)
    out = fastconv.conv2d(x, w, b, padding="same", algo="first_layer")
    assert_close(out, conv2d_ref64(x, w, b, padding="same"))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_argument_is_filled_and_returned(dtype, rng, conv2d_ref64, assert_close):
    x, w, b = conv_inputs(rng, (2, 3, 12, 11), (13, 3, 3, 3), True, dtype)
    out = np.full((2, 13, 6, 6), np.nan, dtype=dtype)
    result = fastconv.conv2d(x, w, b, stride=2, padding="same", algo="first_layer", out=out)
    assert result is out
    assert_close(out, conv2d_ref64(x, w, b, stride=2, padding="same"), dtype)


def test_auto_picks_it_for_four_channel_groups_and_matches_explicit_choice(rng):
    x, w, b = conv_inputs(rng, (2, 8, 32, 32), (16, 2, 5, 5), True, np.float32)
    assert fastconv.plan_conv2d(x.shape, w.shape, padding="same", groups=4).algo == "first_layer"
    np.testing.assert_array_equal(fastconv.conv2d(x, w, b, padding="same", groups=4),
                                  fastconv.conv2d(x, w, b, padding="same", groups=4, algo="first_layer"))


@st.composite
def first_layer_channels(draw):
    """(groups, C_in, C_out): 1 or 2 groups of 1..4 input channels and 1, 3, 4, 5, 8 or 9 output channels
    (full and partial blocks of four)."""
    groups = draw(st.integers(1, 2))
    return groups, groups * draw(st.integers(1, 4)), groups * draw(st.sampled_from([1, 3, 4, 5, 8, 9]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(config=conv2d_configs(first_layer_channels()))
def test_random_first_layer_configs_match_reference(config):
    assert_conv2d_matches_reference(np.random.default_rng(config["seed"]), "first_layer", config["x_shape"],
                                    config["w_shape"], config["options"], config["bias"], config["dtype"])
