"""conv2d(algo="winograd"): Winograd F(2x2, 3x3) for 3x3 kernels, stride 1, dilation 1, against the float64
reference; its work-item splits, thread counts, errors, dispatch rule and compiled specialisations."""

import threading

import numpy as np
import pytest
from conftest import FLOAT_DTYPES, assert_conv2d_matches_reference, at_one_and_two_threads, conv_inputs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.conv
from fastconv import dispatch, workers
from fastconv._kernels import winograd

# name -> (x shape, weight shape, options)
CASES = {
    "same_even": ((2, 8, 10, 12), (16, 8, 3, 3), dict(padding=1)),
    "odd_sizes": ((3, 5, 9, 7), (12, 5, 3, 3), dict(padding=1)),  # the last tile row and column are cut
    "valid": ((2, 6, 9, 10), (8, 6, 3, 3), dict(padding="valid")),
    "full": ((2, 4, 5, 6), (8, 4, 3, 3), dict(padding="full")),
    "pad_perside": ((2, 4, 8, 9), (8, 4, 3, 3), dict(padding=((0, 2), (3, 1)))),
    "one_pixel_input": ((2, 3, 1, 1), (5, 3, 3, 3), dict(padding=1)),
    "one_output": ((1, 3, 3, 3), (4, 3, 3, 3), dict()),
    "partial_channel_block": ((2, 6, 8, 8), (37, 6, 3, 3), dict(padding=1)),  # 32 + 5 float32 channels
    "groups3": ((2, 9, 7, 8), (15, 3, 3, 3), dict(groups=3, padding=1)),
    "depthwise": ((2, 6, 7, 7), (6, 1, 3, 3), dict(groups=6, padding=1)),
    "many_chunks": ((3, 4, 20, 22), (8, 4, 3, 3), dict(padding=1)),  # 330 tiles: 6 work items of 64
    "two_channel_passes": ((1, 130, 6, 6), (8, 130, 3, 3), dict(padding=1)),  # 128 + 2 input channels
    "many_blocks_one_chunk": ((1, 4, 6, 6), (100, 4, 3, 3), dict(padding=1)),  # runs over channel blocks
    "reflect": ((2, 3, 8, 9), (8, 3, 3, 3), dict(padding=((2, 1), (1, 2)), padding_mode="reflect")),
    "replicate": ((2, 3, 9, 9), (8, 3, 3, 3), dict(padding=2, padding_mode="replicate")),
    "circular": ((2, 3, 8, 9), (8, 3, 3, 3), dict(padding="same", padding_mode="circular")),
}


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case, dtype, with_bias, rng):
    assert_conv2d_matches_reference(rng, "winograd", *CASES[case], with_bias, dtype)


@pytest.mark.parametrize("tiles, channels", [(8, 128), (16, 3), (24, 5), (128, 1)])
def test_any_chunk_of_tiles_and_channels(tiles, channels, rng, monkeypatch, conv2d_ref64, assert_close):
    # Work items of 8 to 128 tiles (one image's tiles split across items, several images per item) and
    # micro-kernel passes of 1 to 128 input channels (partial sums carried between passes).
    x, w, b = conv_inputs(rng, (3, 7, 11, 13), (20, 7, 3, 3), True, np.float64)
    monkeypatch.setattr(fastconv.conv, "WINOGRAD_CHUNK_TILES", tiles)
    monkeypatch.setattr(fastconv.conv, "WINOGRAD_CHUNK_CHANNELS", channels)
    assert_close(fastconv.conv2d(x, w, b, padding=1, algo="winograd"), conv2d_ref64(x, w, b, padding=1))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_bit_identical_for_any_thread_count(dtype, rng):
    x, w, b = conv_inputs(rng, (4, 16, 18, 17), (40, 16, 3, 3), True, dtype)
    one, two = at_one_and_two_threads(lambda: fastconv.conv2d(x, w, b, padding=1, algo="winograd"))
    np.testing.assert_array_equal(one, two)


def test_complete_while_the_helper_threads_are_busy(rng):
    # Its workers run on the helper pool; a helper queued behind other work is run on the calling thread
    # instead (the filter transform splits its work statically: every share must run). A first call with
    # other weights leaves its transformed filters in the pooled buffer, so a share left undone shows.
    # Large enough for two threads (smaller problems run on one: fastconv.threads.serial_if_small).
    x, w, b = conv_inputs(rng, (8, 16, 40, 40), (40, 16, 3, 3), True, np.float32)
    fastconv.conv2d(x, -w, b, padding=1, algo="winograd")
    release = threading.Event()
    pool = workers.executor()
    blockers = [pool.submit(release.wait) for _ in range(pool._max_workers)]
    try:
        busy = fastconv.conv2d(x, w, b, padding=1, algo="winograd").copy()
    finally:
        release.set()
        for blocker in blockers:
            blocker.result()
    one, _ = at_one_and_two_threads(lambda: fastconv.conv2d(x, w, b, padding=1, algo="winograd"))
    np.testing.assert_array_equal(busy, one)


def test_run_workers_runs_every_share_once():
    release = threading.Event()
    pool = workers.executor()
    blockers = [pool.submit(release.wait) for _ in range(pool._max_workers)]
    seen = []
    try:
        workers.run_workers(seen.append, 4)
    finally:
        release.set()
        for blocker in blockers:
            blocker.result()
    assert sorted(seen) == [0, 1, 2, 3]
    seen.clear()
    workers.run_workers(seen.append, 3)  # a free pool
    assert sorted(seen) == [0, 1, 2]


def test_out_buffer_is_filled_and_returned(rng, conv2d_ref64, assert_close):
    x, w, b = conv_inputs(rng, (2, 8, 9, 9), (16, 8, 3, 3), True, np.float32)
    out = np.full((2, 16, 9, 9), np.nan, dtype=np.float32)
    result = fastconv.conv2d(x, w, b, padding=1, algo="winograd", out=out)
    assert result is out
    assert_close(out, conv2d_ref64(x, w, b, padding=1), np.float32)


@pytest.mark.parametrize("w_shape, options, got", [
    ((4, 3, 5, 5), dict(padding=2), r"kernel \(5, 5\), stride \(1, 1\), dilation \(1, 1\)"),
    ((4, 3, 3, 3), dict(stride=2), r"kernel \(3, 3\), stride \(2, 2\), dilation \(1, 1\)"),
    ((4, 3, 3, 3), dict(dilation=(1, 2)), r"kernel \(3, 3\), stride \(1, 1\), dilation \(1, 2\)"),
])
def test_rejects_problems_it_cannot_run(w_shape, options, got):
    x = np.zeros((1, 3, 9, 9), np.float32)
    match = r"conv2d: algo='winograd' needs a 3x3 kernel with stride 1 and dilation 1, got " + got
    with pytest.raises(ValueError, match=match):
        fastconv.conv2d(x, np.zeros(w_shape, np.float32), algo="winograd", **options)
    with pytest.raises(ValueError, match=match):
        fastconv.plan_conv2d(x.shape, w_shape, algo="winograd", **options)


def test_measure_times_it_only_where_it_applies():
    three = dispatch.Conv2dProblem(2, 8, 8, (9, 9), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 1, (9, 9), 4)
    strided = dispatch.Conv2dProblem(2, 8, 8, (9, 9), (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 1, (5, 5), 4)
    assert "winograd" in dispatch.kernel_algos(three)
    assert "winograd" not in dispatch.kernel_algos(strided)
    assert set(dispatch.kernel_algos(strided)) == set(dispatch.CONV2D_KERNEL_ALGOS) - {"winograd"}


def _plan(x_shape, o, groups=1, dtype=np.float32):
    return fastconv.plan_conv2d(x_shape, (o, x_shape[1] // groups, 3, 3), padding=1, groups=groups, dtype=dtype)


def test_auto_rule_boundaries():
    # The suite's 3x3 stride-1 layers take it, in both dtypes, and the reason says why.
    for x_shape, o in (((32, 64, 56, 56), 64), ((16, 128, 28, 28), 128), ((32, 256, 14, 14), 256)):
        for dtype in FLOAT_DTYPES:
            plan = _plan(x_shape, o, dtype=dtype)
            assert plan.algo == "winograd" and "Winograd F(2x2, 3x3)" in plan.reason, plan
    # Channels per group: 32 in and out at least.
    assert _plan((8, 32, 56, 56), 32).algo == "winograd"
    assert _plan((8, 31, 56, 56), 32).algo != "winograd"
    assert _plan((8, 32, 56, 56), 31).algo != "winograd"
    assert _plan((8, 64, 56, 56), 64, groups=2).algo == "winograd"
    assert _plan((8, 64, 56, 56), 64, groups=4).algo != "winograd"  # 16 per group
    # Tiles: 512 at least (a 16 x 16 map has 64).
    assert _plan((8, 128, 16, 16), 128).algo == "winograd"
    assert _plan((7, 128, 16, 16), 128).algo != "winograd"  # 448 tiles
    # Tiles x channels: 2^22 at least.
    assert _plan((4, 64, 28, 28), 64).algo != "winograd"  # 784 tiles x 4096 = 3.2M
    assert _plan((1, 64, 64, 64), 64).algo == "winograd"  # 1024 x 4096 = 2^22
    assert _plan((1, 64, 64, 62), 64).algo != "winograd"  # 992 x 4096 < 2^22
    # Not a 3x3 stride-1 problem: never.
    assert fastconv.plan_conv2d((32, 64, 56, 56), (64, 64, 3, 3), stride=2, padding=1).algo != "winograd"
    assert fastconv.plan_conv2d((32, 64, 56, 56), (64, 64, 5, 5), padding=2).algo != "winograd"


def test_workspace_is_reported():
    plan = fastconv.plan_conv2d((32, 256, 14, 14), (256, 256, 3, 3), padding=1)
    filters = 16 * 256 * 256 * 4  # transformed filters, float32
    assert plan.algo == "winograd" and filters < plan.workspace_bytes < filters + 8 * 2**20


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 3), groups=st.integers(1, 3), c=st.integers(1, 5), o=st.integers(1, 40),
       h=st.integers(1, 12), w=st.integers(1, 12), pads=st.tuples(*[st.integers(0, 2)] * 4),
       mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]), bias=st.booleans(),
       dtype=st.sampled_from(FLOAT_DTYPES), seed=st.integers(0, 2**32 - 1))
def test_random_problems_match_reference(n, groups, c, o, h, w, pads, mode, bias, dtype, seed):
    top, bottom, left, right = pads
    assume(h + top + bottom >= 3 and w + left + right >= 3)  # a non-empty output
    # PyTorch's padding limits for these modes
    assume(not (mode == "reflect" and max(pads) >= min(h, w) or mode == "circular" and max(pads) > min(h, w)))
    options = dict(padding=((top, bottom), (left, right)), groups=groups, padding_mode=mode)
    assert_conv2d_matches_reference(np.random.default_rng(seed), "winograd", (n, c * groups, h, w),
                                    (o * groups, c, 3, 3), options, bias, dtype)


def test_compiled_specialisations_stay_few(rng):
    for dtype in FLOAT_DTYPES:
        x, w, b = conv_inputs(rng, (2, 4, 7, 8), (8, 4, 3, 3), True, dtype)
        fastconv.conv2d(x, w, b, padding=1, algo="winograd")
        fastconv.conv2d(x, w, None, padding=2, padding_mode="reflect", algo="winograd")
        fastconv.conv2d(x[:, :, ::-1], w.astype(np.float64), b, algo="winograd")
    # One per float dtype (the helpers compile inside winograd_worker's compilation, not on their own).
    for kern in (winograd.winograd_weights, winograd.winograd_worker):
        assert 1 <= len(kern.signatures) <= 2, (kern, kern.signatures)
