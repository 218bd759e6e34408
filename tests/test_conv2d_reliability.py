"""Reliability of conv2d: thread-count independence, concurrent callers, thread-count API, compiled
specialisations, lazy compilation at import, and the dispatch plan."""

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import fastconv
from fastconv import dispatch
from fastconv._kernels import conv_direct, conv_direct_tiles, conv_few
from fastconv._kernels import im2col as im2col_module
from fastconv.bands import BAND_BYTES

ALGOS = ("auto", "direct", "im2col")

# (x shape, weight shape, options): register-blocked direct kernel, one-channel (depthwise) kernel,
# strided, and enough positions for several tiles per image so the work is really split.
THREAD_CASES = {
    "dense": ((2, 6, 21, 19), (16, 6, 3, 3), dict(padding=1)),
    "channel_blocks": ((3, 8, 20, 17), (40, 8, 3, 3), dict(padding=1)),  # 3 / 5 blocks (AVX2), 2 / 3 (AVX-512)
    "depthwise": ((2, 8, 21, 19), (8, 1, 3, 3), dict(padding="same", groups=8)),
    "few_channels": ((2, 16, 67, 45), (3, 16, 3, 3), dict(padding=1)),  # several row blocks per image
    "strided_reflect": ((1, 5, 23, 17), (12, 5, 5, 3), dict(stride=2, padding=2, padding_mode="reflect")),
}


@pytest.fixture
def restore_threads():
    before = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", list(THREAD_CASES))
def test_bit_identical_for_1_and_2_threads(case, algo, dtype, rng, restore_threads, in_parallel):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2 to compare thread counts")
    x_shape, w_shape, options = THREAD_CASES[case]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    results = {}
    for n_threads in (1, 2):
        fastconv.set_num_threads(n_threads)
        assert numba.get_num_threads() == n_threads
        results[n_threads] = fastconv.conv2d(x, w, b, algo=algo, **options)
    np.testing.assert_array_equal(results[1], results[2])


def test_set_num_threads_round_trip(restore_threads):
    for n in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        fastconv.set_num_threads(n)
        assert fastconv.get_num_threads() == n == numba.get_num_threads()
    fastconv.set_num_threads(np.int64(1))  # numpy ints are ints
    assert fastconv.get_num_threads() == 1


@pytest.mark.parametrize(
    "value, exc, pattern",
    [
        (0, ValueError, r"set_num_threads: n must be >= 1, got 0"),
        (-3, ValueError, r"set_num_threads: n must be >= 1, got -3"),
        (10_000, ValueError, r"set_num_threads: n must be <= \d+ \(NUMBA_NUM_THREADS\), got 10000"),
        (1.0, TypeError, r"set_num_threads: n must be an int, got 1\.0"),
        (True, TypeError, r"set_num_threads: n must be an int, got True"),
        ("2", TypeError, r"set_num_threads: n must be an int, got '2'"),
        (None, TypeError, r"set_num_threads: n must be an int, got None"),
    ],
    ids=["zero", "negative", "too_many", "float", "bool", "str", "none"],
)
def test_set_num_threads_validation(value, exc, pattern, restore_threads):
    before = fastconv.get_num_threads()
    with pytest.raises(exc, match=pattern):
        fastconv.set_num_threads(value)
    assert fastconv.get_num_threads() == before  # a refused value changes nothing


CONCURRENT_SCRIPT = textwrap.dedent(
    """
    import json, threading
    import numpy as np
    import fastconv, fastconv.reference

    rng = np.random.default_rng(7)
    jobs = []
    for i in range(12):
        algo = ("auto", "direct", "im2col")[i % 3]
        groups = (1, 2, 4)[i % 3]
        x = rng.standard_normal((2, 4, 11 + i % 3, 13)).astype(np.float32)
        w = rng.standard_normal((8, 4 // groups, 3, 3)).astype(np.float32)
        opts = dict(padding="same", stride=1 + i % 2, groups=groups)
        expected = fastconv.reference.conv2d(x.astype(np.float64), w.astype(np.float64), **opts)
        jobs.append((x, w, opts, algo, expected))
    # Winograd on problems large enough for two threads: its workers run on the shared helper pool.
    for i in range(2):
        x = rng.standard_normal((8, 32, 24, 24)).astype(np.float32)
        w = (rng.standard_normal((32, 32, 3, 3)) / 16).astype(np.float32)
        expected = fastconv.reference.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
        jobs.append((x, w, dict(padding=1), "winograd", expected))

    errors = []
    barrier = threading.Barrier(4)

    def worker(k):
        try:
            barrier.wait()
            for rep in range(5):
                for j, (x, w, opts, algo, expected) in enumerate(jobs):
                    if (j + k) % 2:
                        continue
                    out = fastconv.conv2d(x, w, algo=algo, **opts)
                    if not np.allclose(out, expected, rtol=TOL["rtol"], atol=TOL["atol"]):
                        errors.append(f"thread {k} job {j} rep {rep}: max error "
                                      f"{float(np.abs(out - expected).max())}")
        except Exception as e:  # reported to the parent test
            errors.append(f"thread {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import numba
    print(json.dumps({"errors": errors, "layer": numba.threading_layer()}))
    """
)


def test_concurrent_calls_from_four_python_threads(tol):
    # In a subprocess: numba's "workqueue" layer aborts the whole process on concurrent parallel
    # calls, which must fail this test, not kill the test run.
    script = f"TOL = {tol[np.dtype(np.float32)]!r}\n" + CONCURRENT_SCRIPT
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"child exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert report["layer"] in ("omp", "tbb")


def _conv_dispatchers():
    return {
        "conv_taps_blocked": conv_direct.conv_taps_blocked,
        "conv_blocked_tiles": conv_direct_tiles.conv_blocked_tiles,
        "conv_few": conv_few.conv_few,
        "_store_block": conv_direct._store_block,
        "virtual_positions": conv_direct.virtual_positions,
        "im2col_band": im2col_module.im2col_band,
    }


def test_few_compiled_specialisations(rng):
    # Exercise everything that might leak a new type into a kernel: both dtypes, mixed dtypes,
    # strided / Fortran / read-only / negative-stride inputs, numpy-int options, out=, no bias,
    # every padding mode, strides, groups and both direct kernels. Each kernel must still have at
    # most one specialisation per float dtype (whatever else the test session ran before).
    def readonly(a):
        a = a.copy()
        a.setflags(write=False)
        return a

    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 4, 9, 10)).astype(dtype)
        w = rng.standard_normal((8, 4, 3, 3)).astype(dtype)
        wd = rng.standard_normal((4, 1, 3, 3)).astype(dtype)
        b = rng.standard_normal(8).astype(dtype)
        variants = [
            (x, w, b, {}),
            (x, w, None, dict(padding="same", padding_mode="reflect")),
            (x[:, :, ::2, ::-1], w, b, dict(stride=np.int64(2), padding=(np.int32(1), 2))),
            (np.asfortranarray(x), np.asfortranarray(w), b[::-1], dict(padding_mode="circular", padding=1)),
            (readonly(x), readonly(w), readonly(b), dict(dilation=(2, 1), padding_mode="replicate", padding=2)),
            (x, wd, None, dict(groups=4, padding="full")),
            (x, w[:, :2], b, dict(groups=2)),
            (x.astype(np.float32), w.astype(np.float64), None, {}),
            (x, w[:, :, :1, :1], b, {}),
        ]
        for xv, wv, bv, options in variants:
            for algo in ALGOS:
                fastconv.conv2d(xv, wv, bv, algo=algo, **options)
        out = np.empty((2, 8, 7, 8), dtype=dtype)
        for algo in ALGOS:
            fastconv.conv2d(x, w, b, algo=algo, out=out)
        # rows wider than BATCH_INNER_MAX_OW: im2col's band path (this test must compile it itself)
        fastconv.conv2d(rng.standard_normal((1, 4, 5, 40)).astype(dtype), w, b, algo="im2col")
    counts = {name: len(d.signatures) for name, d in _conv_dispatchers().items()}
    # One specialisation per float dtype for every kernel, including the helper _store_block that the
    # jitted kernel calls (passed int64 counts, so typed once per dtype), and at most one of the
    # dtype-free virtual_positions.
    limits = {"conv_taps_blocked": 2, "conv_blocked_tiles": 2, "conv_few": 2, "im2col_band": 2, "_store_block": 2,
              "virtual_positions": 1}
    assert all(counts[name] <= limit for name, limit in limits.items()), counts
    # Not vacuous: the kernels called from Python did compile (a helper inlined into a caller's
    # compilation, like _store_block, may show none).
    assert min(counts["conv_taps_blocked"], counts["conv_blocked_tiles"], counts["conv_few"],
               counts["im2col_band"]) >= 1, counts


IMPORT_SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import fastconv
    import fastconv._kernels as kernels
    from numba.core.dispatcher import Dispatcher

    for info in pkgutil.iter_modules(kernels.__path__):
        importlib.import_module(f"fastconv._kernels.{info.name}")
    found = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("fastconv") and module is not None:
            for attr, obj in vars(module).items():
                if isinstance(obj, Dispatcher):
                    found[f"{name}.{attr}"] = len(obj.signatures)
    print(json.dumps(found))
    """
)


def test_import_compiles_nothing():
    proc = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NUMBA_DEBUG_CACHE": "0"})
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "fastconv._kernels.conv_direct.conv_taps_blocked" in found  # the scan sees the kernels
    assert {name: n for name, n in found.items() if n} == {}


def _flops(n, c, o, oh, ow, groups, kh, kw):
    """2 flops per multiply-add: every output element sums (C / groups) * kH * kW products."""
    return 2 * n * o * oh * ow * (c // groups) * kh * kw


def test_plan_pointwise_needs_no_workspace():
    plan = fastconv.plan_conv2d((8, 64, 14, 14), (32, 64, 1, 1))
    assert plan.algo == ("direct" if dispatch.HAS_AVX512 else "im2col")
    # the input itself is the GEMM operand (im2col) or read in place (direct): no columns, no padding
    assert plan.workspace_bytes == 0
    assert fastconv.plan_conv2d((8, 64, 14, 14), (32, 64, 1, 1), algo="im2col").workspace_bytes == 0
    assert plan.out_shape == (8, 32, 14, 14)
    assert plan.flops == _flops(8, 64, 32, 14, 14, 1, 1, 1)
    assert isinstance(plan.reason, str) and plan.reason


def test_plan_3x3_same_uses_winograd():
    plan = fastconv.plan_conv2d((32, 64, 56, 56), (64, 64, 3, 3), padding="same")
    assert plan.algo == "winograd"
    assert plan.out_shape == (32, 64, 56, 56)
    assert plan.flops == _flops(32, 64, 64, 56, 56, 1, 3, 3)


def test_plan_depthwise_and_stride():
    plan = fastconv.plan_conv2d((4, 16, 15, 15), (32, 1, 3, 3), stride=2, padding="same", groups=16,
                                dtype=np.float64)
    assert plan.algo == "depthwise"  # 2 output channels per group (docs/algorithms.md, dispatch rule 2)
    assert plan.out_shape == (4, 32, 8, 8)  # ceil(15 / 2)
    assert plan.flops == _flops(4, 16, 32, 8, 8, 16, 3, 3)


def test_plan_honours_requested_algo_and_bounds_im2col_workspace():
    x_shape, w_shape = (32, 64, 56, 56), (64, 64, 3, 3)
    plan = fastconv.plan_conv2d(x_shape, w_shape, padding=1, algo="im2col")
    assert plan.algo == "im2col"
    columns_per_image = 64 * 3 * 3 * 56 * 56 * 4
    padded_input = 32 * 64 * 58 * 58 * 4
    # Columns are built in cache-sized bands, one per worker thread: far below the batch's column matrix.
    assert plan.workspace_bytes < 2 * padded_input + columns_per_image < 32 * columns_per_image
    assert plan.workspace_bytes <= padded_input + numba.config.NUMBA_NUM_THREADS * 2 * BAND_BYTES
    assert fastconv.plan_conv2d(x_shape, w_shape, padding=1, algo="direct").algo == "direct"
