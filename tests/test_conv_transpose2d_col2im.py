"""conv_transpose2d(algo="col2im"): work items (folded images, channel blocks, row bands), the col2im
gather kernel's edge cases, the helper threads and the BLAS thread count.

Every test runs the OpenBLAS engine (items with few GEMM rows would otherwise take the compiled
kernel); the reference tests run the compiled engine (``_kernels/col2im_gemm.py``) as well.

Results are compared with the float64 reference (``fastconv.reference.conv_transpose2d``) under the shared
tolerance table of ``conftest.py``.
"""

import contextlib
import multiprocessing
import sys
import threading
import zlib

import numpy as np
import pytest
from conftest import FLOAT_DTYPES, assert_close_to
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import blas
from fastconv import conv_transpose as ct
from fastconv import conv_transpose2d
from fastconv.reference import conv_transpose2d as ref_conv_transpose2d


def _reference(x, w, b, **kwargs):
    as64 = (lambda a: None if a is None else a.astype(np.float64))
    return ref_conv_transpose2d(as64(x), as64(w), as64(b), **kwargs)


@contextlib.contextmanager
def gemm_engine(name):
    """Run col2im's items on OpenBLAS ("blas") or on the compiled kernel whatever their GEMM rows
    ("compiled": it still needs one image per item)."""
    saved = ct.COL2IM_COMPILED_MAX_ROWS, ct.COMPILED_MAX_TILE_WASTE
    ct.COL2IM_COMPILED_MAX_ROWS, ct.COMPILED_MAX_TILE_WASTE = (0, 0) if name == "blas" else (10**9, 10**9)
    try:
        yield
    finally:
        ct.COL2IM_COMPILED_MAX_ROWS, ct.COMPILED_MAX_TILE_WASTE = saved


@pytest.fixture(autouse=True, scope="module")
def blas_engine():
    with gemm_engine("blas"):
        yield


ENGINES = ("blas", "compiled")


def _problem(x_shape, w_shape, stride=1, padding=0, output_padding=0, dilation=1, groups=1, dtype=np.float32):
    return ct.conv_transpose2d_problem("test", x_shape, w_shape, stride, padding, output_padding, None, dilation,
                                       groups, np.dtype(dtype))


# ------------------------------------------------------------------------------------------------
# Work items: a pure function of the shape
# ------------------------------------------------------------------------------------------------

def test_split_of_the_benchmark_cases():
    t1 = ct.col2im_split(_problem((16, 128, 28, 28), (128, 64, 4, 4), 2, 1))
    assert (t1.images, t1.channels, t1.rows, t1.bands, t1.items) == (1, 64, 1024, 1, 16)
    t2 = ct.col2im_split(_problem((32, 256, 14, 14), (256, 128, 2, 2), 2, 0))
    assert (t2.images, t2.channels, t2.rows, t2.bands, t2.items) == (1, 128, 512, 1, 32)
    t3 = ct.col2im_split(_problem((8, 64, 56, 56), (64, 3, 3, 3), 1, 1))
    assert (t3.images, t3.channels, t3.rows, t3.bands, t3.items) == (1, 3, 28, 1, 8)  # 27 rows padded to 28


def test_split_feeds_every_core_from_one_image():
    # Many output channels: channel blocks of at least COL2IM_MIN_SPLIT_ROWS GEMM rows.
    blocks = ct.col2im_split(_problem((1, 128, 28, 28), (128, 64, 4, 4), 2, 1))
    assert blocks.items >= ct.COL2IM_MIN_ITEMS and blocks.bands == 1
    assert blocks.channels * 16 >= ct.COL2IM_MIN_SPLIT_ROWS
    # Few output channels: bands of output rows.
    bands = ct.col2im_split(_problem((1, 64, 56, 56), (64, 3, 3, 3), 1, 1))
    assert (bands.bands, bands.band_rows, bands.items) == (ct.COL2IM_MIN_ITEMS, 56 // ct.COL2IM_MIN_ITEMS,
                                                           ct.COL2IM_MIN_ITEMS)
    # ... as many as COL2IM_MIN_BAND_ROWS allows.
    short = ct.col2im_split(_problem((1, 64, 20, 20), (64, 3, 3, 3), 1, 1))
    assert short.band_rows >= ct.COL2IM_MIN_BAND_ROWS and short.items < ct.COL2IM_MIN_ITEMS
    # Small images are folded several per GEMM when the batch allows it.
    folded = ct.col2im_split(_problem((64, 32, 7, 7), (32, 16, 4, 4), 2, 1))
    assert folded.images == 2 and folded.fold_len == 32 * 2 * 49


def test_split_rows_are_aligned_and_buffers_cover_every_item():
    for x_shape, w_shape, s, p in [((3, 5, 9, 11), (5, 7, 3, 3), 1, 0), ((1, 4, 40, 9), (4, 5, 4, 3), 2, 1),
                                   ((9, 6, 5, 5), (6, 3, 2, 2), 3, 0)]:
        problem = _problem(x_shape, w_shape, s, p)
        split = ct.col2im_split(problem)
        assert split.rows % ct.COL2IM_ROW_ALIGN == 0 and split.rows >= split.channels * w_shape[2] * w_shape[3]
        oh = problem.out_hw[0]
        for y0 in range(0, oh, split.band_rows):
            lo, hi = ct._band_input_rows(problem, y0, min(oh, y0 + split.band_rows))
            ncols = (hi - lo) * x_shape[3] if split.bands > 1 else split.images * x_shape[2] * x_shape[3]
            assert split.rows * ncols <= split.cols_len


def test_band_input_rows_cover_every_row_the_band_reads():
    problem = _problem((1, 2, 13, 4), (2, 3, 5, 2), stride=3, padding=((2, 1), (0, 0)), dilation=2)
    (ih, _), (kh, _), (sh, _), (dh, _) = problem.in_hw, problem.kernel_hw, problem.stride, problem.dilation
    top = problem.pads[0][0]
    oh = problem.out_hw[0]
    for y0 in range(oh):
        for y1 in range(y0 + 1, oh + 1):
            needed = {(y + top - ky * dh) // sh for y in range(y0, y1) for ky in range(kh)
                      if (y + top - ky * dh) % sh == 0 and 0 <= (y + top - ky * dh) // sh < ih}
            lo, hi = ct._band_input_rows(problem, y0, y1)
            assert needed <= set(range(lo, hi))


# ------------------------------------------------------------------------------------------------
# Against the reference: every kind of work item and the kernel's edge cases
# ------------------------------------------------------------------------------------------------

CASES = [
    # (name, x_shape, (og, kh, kw), stride, padding, output_padding, dilation, groups)
    ("bands_k4s2", (1, 8, 32, 10), (3, 4, 4), 2, 1, 0, 1, 1),
    ("bands_k3s1_pad0_wide_phases", (1, 5, 40, 6), (2, 3, 3), 1, 0, 0, 1, 1),  # OW > W: columns past W
    ("bands_s3_d2_op", (1, 4, 30, 7), (3, 3, 2), 3, ((2, 1), (0, 2)), (2, 1), (2, 1), 1),
    ("bands_without_input_rows", (1, 8, 1, 3), (1, 1, 1), 16, 0, (15, 0), 1, 1),  # rows 1..15 bias only
    ("channel_blocks", (1, 16, 12, 12), (37, 4, 4), 2, 1, 0, 1, 1),
    ("folded_images_partial_chunk", (19, 6, 5, 7), (4, 3, 3), 2, 1, 1, 1, 1),
    ("groups", (2, 6, 9, 8), (5, 3, 3), 2, 1, 1, 1, 3),
    ("depthwise_k4s2", (2, 6, 9, 8), (1, 4, 4), 2, 1, 0, 1, 6),
    ("kernel_equals_stride", (3, 8, 7, 5), (6, 2, 2), 2, 0, 0, 1, 1),  # phases read the columns directly
    ("kernel_equals_stride_cropped", (3, 8, 7, 5), (6, 2, 3), (2, 3), 1, 0, 1, 1),
    ("stride_3_interleave", (2, 4, 6, 6), (5, 4, 5), 3, 2, 2, 1, 1),
    ("dilation_past_the_image", (2, 3, 2, 2), (4, 3, 3), 1, 0, 0, 3, 1),
    ("same", (2, 5, 7, 6), (4, 3, 3), 2, "same", 0, 1, 1),
    ("full", (1, 3, 8, 8), (2, 3, 3), 1, "full", 0, 1, 1),
    ("one_pixel", (4, 3, 1, 1), (5, 2, 3), 1, 0, 0, 1, 1),
    ("tap_shift_past_the_rows", (2, 3, 1, 1), (2, 1, 4), 1, ((0, 0), (2, 0)), 0, (1, 2), 1),  # |qx| > span
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_reference(case, dtype, engine):
    name, x_shape, (og, kh, kw), s, p, op, d, g = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((x_shape[1], og, kh, kw)).astype(dtype)
    b = rng.standard_normal(og * g).astype(dtype)
    kwargs = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    expected = _reference(x, w, b, **kwargs)
    with gemm_engine(engine):
        assert_close_to(conv_transpose2d(x, w, b, algo="col2im", **kwargs), expected, dtype)
        assert_close_to(conv_transpose2d(x, w, algo="col2im", **kwargs), _reference(x, w, None, **kwargs), dtype)


@contextlib.contextmanager
def forced_split(min_cols, min_items):
    """Split small problems as far as the rules allow: up to ``min_items`` items (1-row bands, one-channel
    blocks), images folded until ``min_cols`` columns."""
    names = ("COL2IM_MIN_COLS", "COL2IM_MIN_ITEMS", "COL2IM_MIN_SPLIT_ROWS", "COL2IM_MIN_BAND_ROWS")
    saved = [getattr(ct, name) for name in names]
    for name, value in zip(names, (min_cols, min_items, 1, 1)):
        setattr(ct, name, value)
    ct.col2im_split.cache_clear()
    try:
        yield
    finally:
        for name, value in zip(names, saved):
            setattr(ct, name, value)
        ct.col2im_split.cache_clear()


@st.composite
def configs(draw):
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    ih, iw = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = ((draw(st.integers(0, 2)), draw(st.integers(0, 2))), (draw(st.integers(0, 2)), draw(st.integers(0, 2))))
    sizes = fastconv.shapes.conv_transpose_output_sizes((ih, iw), (kh, kw), stride=s, padding=padding, dilation=d)
    if not sizes[0] or not sizes[1]:
        padding = 0
        sizes = fastconv.shapes.conv_transpose_output_sizes((ih, iw), (kh, kw), stride=s, padding=0, dilation=d)
    output_size = (draw(st.sampled_from(sizes[0])), draw(st.sampled_from(sizes[1])))
    return dict(x_shape=(draw(st.integers(1, 5)), groups * cg, ih, iw), w_shape=(groups * cg, og, kh, kw),
                kwargs=dict(stride=s, padding=padding, dilation=d, groups=groups, output_size=output_size))


@settings(max_examples=60, deadline=None)
@given(configs(), st.sampled_from(["bands", "fold", "default"]), st.sampled_from(FLOAT_DTYPES),
       st.integers(0, 2**16), st.sampled_from(ENGINES))
def test_hypothesis_every_split_matches_reference(cfg, mode, dtype, seed, engine):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x_shape"]).astype(dtype)
    w = rng.standard_normal(cfg["w_shape"]).astype(dtype)
    b = rng.standard_normal(cfg["w_shape"][1] * cfg["kwargs"]["groups"]).astype(dtype)
    limits = {"bands": (1, 10**6), "fold": (10**6, 1), "default": (ct.COL2IM_MIN_COLS, ct.COL2IM_MIN_ITEMS)}
    with forced_split(*limits[mode]), gemm_engine(engine):
        got = conv_transpose2d(x, w, b, algo="col2im", **cfg["kwargs"])
    assert_close_to(got, _reference(x, w, b, **cfg["kwargs"]), dtype)


def test_forced_splits_agree_with_the_default_split():
    """Bands recompute their halo rows in their own GEMMs, folded images share one, channel blocks are
    separate GEMMs: the col2im sums are the same, so results agree with the default split (with this
    OpenBLAS even to the last bit; only the tolerance is asserted, a BLAS may block columns differently)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 6, 11, 9)).astype(np.float32)
    w = rng.standard_normal((6, 5, 4, 3)).astype(np.float32)
    kwargs = dict(stride=2, padding=1, output_padding=1)
    default = conv_transpose2d(x, w, algo="col2im", **kwargs)
    for limits in [(1, 10**6), (10**6, 1)]:
        with forced_split(*limits):
            split = ct.col2im_split(_problem(x.shape, w.shape, 2, 1, 1))
            assert split.bands > 1 or split.images > 1
            forced = conv_transpose2d(x, w, algo="col2im", **kwargs)
        assert_close_to(forced, _reference(x, w, None, **kwargs), np.float32)
        np.testing.assert_allclose(forced, default, rtol=1e-6, atol=1e-6)


def test_one_row_bands_with_shifts_longer_than_the_band():
    """Regression: with 1-row bands of a 1-pixel-wide image, x taps shifted by up to 4 columns made the
    first tap's zeroing pass run past the accumulator (a heap overrun, found with NUMBA_BOUNDSCHECK=1)."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 2, 9, 1)).astype(np.float32)
    w = rng.standard_normal((2, 8, 1, 4)).astype(np.float32)
    kwargs = dict(stride=(3, 1), padding=((1, 0), (2, 0)), dilation=(1, 2), output_size=(25, 6))
    with forced_split(1, 10**6):
        got = conv_transpose2d(x, w, algo="col2im", **kwargs)
    assert_close_to(got, _reference(x, w, None, **kwargs), np.float32)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f32", "f64"])
def test_compiled_kernel_reads_the_weight_in_place_when_its_rows_fill_blocks(dtype):
    """``row_block_weights``: the weight itself when every channel block's GEMM rows come in whole blocks of
    ``GEMM_ROWS`` (here a kernel of exactly ``GEMM_ROWS`` taps, in 2-channel blocks with a partial last
    one), a zero-padded copy otherwise (10 taps, a read-only weight); all agree with the reference."""
    rows = ct.GEMM_ROWS
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 6, 7, 9)).astype(dtype)
    whole = (6, 5, rows // 3, 3) if rows % 3 == 0 else (6, 5, rows // 2, 2)  # GEMM_ROWS taps: 9 or 4
    cases = [(whole, True, True), ((6, 5, 2, 5), True, False), (whole, False, False)]
    with gemm_engine("compiled"):
        for w_shape, writeable, in_place in cases:
            w = rng.standard_normal(w_shape).astype(dtype)
            w.flags.writeable = writeable
            problem = _problem(x.shape, w_shape, dtype=dtype)
            split = ct.Col2imSplit(**{**ct.col2im_split(problem).__dict__, "channels": 2})
            wf, strides = ct.row_block_weights(w, split, 1, dtype)
            assert np.shares_memory(wf, w) == in_place
            assert all(step % rows == 0 for step in strides)
            expected = _reference(x, w, None)
            got = np.empty(expected.shape, dtype)
            ct._run_col2im_compiled(problem, split, x, w, np.zeros(5, dtype), dtype, got)
            assert_close_to(got, expected, dtype)
            assert_close_to(conv_transpose2d(x, w, algo="col2im"), expected, dtype)


def test_strided_readonly_and_mixed_dtype_inputs():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 6, 16, 9)).astype(np.float32)[:, :, ::2]  # strided
    x.flags.writeable = False
    w = np.asfortranarray(rng.standard_normal((6, 4, 3, 3)))  # float64: the result is float64
    got = conv_transpose2d(x, w, stride=2, padding=1, algo="col2im")
    assert got.dtype == np.float64
    assert_close_to(got, _reference(x, w, None, stride=2, padding=1), np.float64)


# ------------------------------------------------------------------------------------------------
# Threads: helper threads, bit-identity, concurrency, BLAS thread count, fork
# ------------------------------------------------------------------------------------------------

# Big enough (67M multiply-adds) that the call is not run serially (fastconv.threads.SERIAL_MACS).
BIG = dict(x_shape=(2, 64, 32, 32), w_shape=(64, 32, 4, 4), stride=2, padding=1)


def _big(dtype=np.float32):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(BIG["x_shape"]).astype(dtype)
    w = rng.standard_normal(BIG["w_shape"]).astype(dtype)
    b = rng.standard_normal(BIG["w_shape"][1]).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f32", "f64"])
def test_bit_identical_for_one_and_two_threads_on_a_parallel_problem(dtype):
    x, w, b = _big(dtype)
    assert ct.col2im_split(_problem(x.shape, w.shape, 2, 1, dtype=dtype)).items >= 2
    before = fastconv.get_num_threads()
    results = []
    try:
        for n in (1, min(2, before)):
            fastconv.set_num_threads(n)
            results.append(conv_transpose2d(x, w, b, stride=2, padding=1, algo="col2im"))
    finally:
        fastconv.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
    assert_close_to(results[0], _reference(x, w, b, stride=2, padding=1), dtype)


def test_helper_threads_run_work_items(monkeypatch):
    if fastconv.get_num_threads() < 2:
        pytest.skip("one thread only")
    seen = set()
    kernel = ct.col2im_item

    def recording(*args):
        seen.add(threading.get_ident())
        return kernel(*args)

    monkeypatch.setattr(ct, "col2im_item", recording)
    x, w, b = _big()
    for _ in range(20):  # the helper is handed items dynamically: it gets some unless the caller is faster
        conv_transpose2d(x, w, b, stride=2, padding=1, algo="col2im")
        if len(seen) > 1:
            break
    assert len(seen) > 1


def test_concurrent_calls_from_python_threads_give_the_same_bits():
    x, w, b = _big()
    expected = conv_transpose2d(x, w, b, stride=2, padding=1, algo="col2im")
    results = [None] * 4

    def work(i):
        results[i] = conv_transpose2d(x, w, b, stride=2, padding=1, algo="col2im")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_blas_thread_count_is_restored():
    if not blas.blas_available():
        pytest.skip("numpy's BLAS is not OpenBLAS")
    before = blas.blas_num_threads()
    x, w, b = _big()
    conv_transpose2d(x, w, b, stride=2, padding=1, algo="col2im")
    assert blas.blas_num_threads() == before


def _child_runs_col2im(queue):
    x, w, b = _big()
    out = conv_transpose2d(x, w, b, stride=2, padding=1, algo="col2im")
    queue.put(float(np.abs(out).sum()))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_col2im_works_in_a_forked_child():
    x, w, b = _big()
    expected = float(np.abs(conv_transpose2d(x, w, b, stride=2, padding=1, algo="col2im")).sum())  # pool made
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_runs_col2im, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == expected
