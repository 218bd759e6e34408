"""conv2d(algo="depthwise"): depthwise problems of every kind against the float64 reference, plus the
machinery both row-block kernels ("depthwise", "first_layer") share: row blocks and work chunks that
never change a result, bit-identical thread counts, padding taps that never touch the input, one
compiled specialisation per dtype."""

import numba
import numpy as np
import pytest
from conftest import FLOAT_DTYPES, assert_conv2d_matches_reference, conv2d_configs, conv_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.conv
import fastconv.conv_layout
from fastconv._kernels.conv_depthwise import conv_depthwise
from fastconv._kernels.conv_first import conv_first

ROW_BLOCK_ALGOS = ("depthwise", "first_layer")

# name -> (x shape, weight shape, options); groups == C unless the name says otherwise.
CASES = {
    "same_3x3": ((2, 8, 14, 14), (8, 1, 3, 3), dict(groups=8, padding="same")),
    "n1": ((1, 5, 9, 11), (5, 1, 3, 3), dict(groups=5, padding=1)),
    "odd_sizes": ((3, 7, 13, 5), (7, 1, 3, 3), dict(groups=7, padding=1)),
    "multiplier2": ((2, 3, 9, 8), (6, 1, 3, 3), dict(groups=3, padding=1)),
    "multiplier3_valid": ((2, 3, 9, 8), (9, 1, 3, 3), dict(groups=3)),
    "stride2_same": ((2, 4, 15, 16), (4, 1, 3, 3), dict(groups=4, stride=2, padding="same")),
    "stride3x2": ((2, 4, 15, 16), (4, 1, 3, 3), dict(groups=4, stride=(3, 2), padding=1)),
    "stride4_larger_than_kernel": ((1, 2, 17, 13), (2, 1, 3, 2), dict(groups=2, stride=4)),
    "dilation2": ((2, 4, 12, 13), (4, 1, 3, 3), dict(groups=4, dilation=2, padding="same")),
    "dilation2x3_stride2": ((1, 3, 16, 17), (3, 1, 3, 3), dict(groups=3, dilation=(2, 3), stride=2, padding=2)),
    "k5": ((2, 4, 12, 12), (4, 1, 5, 5), dict(groups=4, padding="same")),
    "k7_stride2": ((1, 2, 20, 21), (2, 1, 7, 7), dict(groups=2, padding=3, stride=2)),
    "k1": ((2, 4, 6, 7), (4, 1, 1, 1), dict(groups=4)),
    "k2x4_even_same": ((2, 4, 9, 10), (4, 1, 2, 4), dict(groups=4, padding="same")),
    "k1x3": ((2, 4, 6, 9), (4, 1, 1, 3), dict(groups=4, padding=(0, 1))),
    "pad_perside": ((2, 3, 8, 9), (3, 1, 3, 3), dict(groups=3, padding=((0, 2), (3, 1)))),
    "pad_larger_than_kernel": ((1, 3, 5, 6), (3, 1, 3, 3), dict(groups=3, padding=4)),
    "full": ((2, 3, 5, 6), (3, 1, 3, 3), dict(groups=3, padding="full")),
    "one_pixel_full": ((1, 2, 1, 1), (2, 1, 3, 3), dict(groups=2, padding="full")),
    "kernel_larger_than_input_full": ((1, 2, 2, 3), (4, 1, 5, 5), dict(groups=2, padding="full")),
    "kernel_equals_input": ((2, 3, 4, 5), (3, 1, 4, 5), dict(groups=3)),
    "reflect": ((2, 3, 8, 9), (3, 1, 3, 3), dict(groups=3, padding=((2, 1), (1, 3)), padding_mode="reflect")),
    "replicate_stride2": ((2, 3, 8, 9), (3, 1, 3, 3), dict(groups=3, padding=2, stride=2, padding_mode="replicate")),
    "circular_dil2": ((2, 3, 8, 9), (3, 1, 3, 3), dict(groups=3, padding="same", dilation=2,
                                                       padding_mode="circular")),
    "two_channels_per_group": ((2, 6, 9, 9), (3, 2, 3, 3), dict(groups=3, padding=1)),
    "few_outputs_many_inputs": ((1, 20, 9, 10), (2, 20, 3, 3), dict(padding=1)),
    "wide_and_tall": ((1, 2, 70, 90), (2, 1, 3, 3), dict(groups=2, padding="same")),
}


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case, dtype, with_bias, rng):
    assert_conv2d_matches_reference(rng, "depthwise", *CASES[case], with_bias, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_argument_is_filled_and_returned(dtype, rng, conv2d_ref64, assert_close):
    x, w, b = conv_inputs(rng, (2, 4, 11, 12), (8, 1, 3, 3), True, dtype)
    out = np.full((2, 8, 6, 6), np.nan, dtype=dtype)
    result = fastconv.conv2d(x, w, b, groups=4, stride=2, padding="same", algo="depthwise", out=out)
    assert result is out
    assert_close(out, conv2d_ref64(x, w, b, groups=4, stride=2, padding="same"), dtype)


def test_out_slice_of_a_larger_buffer_is_the_only_memory_written(rng, conv2d_ref64, assert_close):
    x, w, b = conv_inputs(rng, (2, 3, 9, 9), (3, 1, 3, 3), True, np.float64)
    buffer = np.full((4, 3, 9, 9), -7.0)
    fastconv.conv2d(x, w, b, groups=3, padding=1, algo="depthwise", out=buffer[1:3])
    assert_close(buffer[1:3], conv2d_ref64(x, w, b, groups=3, padding=1))
    assert (buffer[0] == -7.0).all() and (buffer[3] == -7.0).all()


@pytest.mark.parametrize("algo", ROW_BLOCK_ALGOS)
def test_padding_taps_never_read_the_input(algo, conv2d_ref64, assert_close):
    # 25 taps are padded to 27 with taps on the zero plane: an infinite input pixel must poison only
    # the outputs whose window covers it (0 * inf would spread NaN to the whole plane).
    x = np.zeros((1, 2, 9, 9))
    x[0, 0, 0, 0] = np.inf
    x[0, 1, 4, 4] = np.nan
    w = np.ones((2, 1, 5, 5))
    out = fastconv.conv2d(x, w, groups=2, padding="same", algo=algo)
    poisoned = np.zeros((9, 9), bool)
    poisoned[:3, :3] = True
    np.testing.assert_array_equal(~np.isfinite(out[0, 0]), poisoned)
    poisoned[:] = False
    poisoned[2:7, 2:7] = True
    np.testing.assert_array_equal(np.isnan(out[0, 1]), poisoned)


# Problems with many work items: several row blocks per image and more items than chunks.
SPLIT_CASES = {
    "depthwise_same": ((2, 16, 70, 40), (16, 1, 3, 3), dict(groups=16, padding="same")),
    "depthwise_stride2_reflect": ((2, 6, 45, 33), (12, 1, 3, 3), dict(groups=6, stride=2, padding=1,
                                                                      padding_mode="reflect")),
    "first_layer_like": ((3, 3, 41, 37), (10, 3, 3, 3), dict(padding="same")),
    "grouped_k5_dil2": ((2, 4, 30, 31), (12, 2, 5, 5), dict(groups=2, padding=4, dilation=2)),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("algo", ROW_BLOCK_ALGOS)
@pytest.mark.parametrize("case", list(SPLIT_CASES))
def test_bit_identical_for_1_and_2_threads(case, algo, dtype, rng, restore_threads, in_parallel):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2 to compare thread counts")
    x_shape, w_shape, options = SPLIT_CASES[case]
    x, w, b = conv_inputs(rng, x_shape, w_shape, True, dtype)
    results = []
    for n_threads in (1, 2):
        fastconv.set_num_threads(n_threads)
        results.append(fastconv.conv2d(x, w, b, algo=algo, **options))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("algo", ROW_BLOCK_ALGOS)
@pytest.mark.parametrize("case", list(SPLIT_CASES))
def test_row_blocks_and_chunks_do_not_change_results(case, algo, rng, monkeypatch, conv2d_ref64, assert_close):
    # Every output is computed by the same operations whatever the work split: one row per item, odd
    # row counts, whole maps of several images per item, a single chunk or an odd number of chunks
    # all give the default's exact bits.
    x_shape, w_shape, options = SPLIT_CASES[case]
    x, w, b = conv_inputs(rng, x_shape, w_shape, True, np.float32)
    default = fastconv.conv2d(x, w, b, algo=algo, **options)
    assert_close(default, conv2d_ref64(x, w, b, **options), np.float32)
    for positions in (1, 3 * 50, 10**6):  # one row; three rows of the widest case; whole maps
        for chunks in (1, 7):
            monkeypatch.setattr(fastconv.conv, "DEPTHWISE_ITEM_POSITIONS", positions)
            monkeypatch.setattr(fastconv.conv, "FIRST_LAYER_ITEM_POSITIONS", positions)
            monkeypatch.setattr(fastconv.conv, "LOCAL_CHUNKS", chunks)
            monkeypatch.setattr(fastconv.conv_layout, "LOCAL_IMAGES_POSITIONS", positions)
            np.testing.assert_array_equal(fastconv.conv2d(x, w, b, algo=algo, **options), default)


@pytest.mark.parametrize("algo", ROW_BLOCK_ALGOS)
def test_empty_batch(algo, rng):
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    out = fastconv.conv2d(np.zeros((0, 4, 6, 6), np.float32), w, groups=2, padding="same", algo=algo)
    assert out.shape == (0, 6, 6, 6) and out.dtype == np.float32


def test_one_compiled_specialisation_per_dtype(rng):
    # Every way of calling the row-block kernels: both dtypes, mixed dtypes, strided / Fortran /
    # read-only inputs, numpy-int options, out=, no bias, every padding mode.
    def readonly(a):
        a = a.copy()
        a.setflags(write=False)
        return a

    for dtype in FLOAT_DTYPES:
        x = rng.standard_normal((2, 4, 9, 10)).astype(dtype)
        wd = rng.standard_normal((4, 1, 3, 3)).astype(dtype)
        wf = rng.standard_normal((8, 4, 3, 3)).astype(dtype)
        for w, groups in ((wd, 4), (wf, 1)):
            variants = [
                (x, w, None, {}),
                (x[:, :, ::2, ::-1], w, None, dict(stride=np.int64(2), padding=(np.int32(1), 2))),
                (np.asfortranarray(x), np.asfortranarray(w), None, dict(padding_mode="circular", padding=1)),
                (readonly(x), readonly(w), None, dict(dilation=(2, 1), padding_mode="replicate", padding=2)),
                (x.astype(np.float32), w.astype(np.float64), None, dict(padding="same")),
            ]
            for xv, wv, bv, options in variants:
                for algo in ROW_BLOCK_ALGOS:
                    fastconv.conv2d(xv, wv, bv, groups=groups, algo=algo, **options)
                    out = np.empty((2, w.shape[0], 7, 8), dtype=dtype)
                    fastconv.conv2d(x, w, readonly(np.ones(w.shape[0], dtype)), groups=groups, algo=algo,
                                    out=out)
    counts = {"conv_depthwise": len(conv_depthwise.signatures), "conv_first": len(conv_first.signatures)}
    assert all(1 <= n <= 2 for n in counts.values()), counts


@st.composite
def depthwise_channels(draw):
    """(groups, C_in, C_out): groups == C_in, C_out = C_in * (1..3) (a channel multiplier)."""
    channels = draw(st.integers(1, 4))
    return channels, channels, channels * draw(st.integers(1, 3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(config=conv2d_configs(depthwise_channels()))
def test_random_depthwise_configs_match_reference(config):
    assert_conv2d_matches_reference(np.random.default_rng(config["seed"]), "depthwise", config["x_shape"],
                                    config["w_shape"], config["options"], config["bias"], config["dtype"])
