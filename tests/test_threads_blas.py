"""Thread policy helpers: small problems run serially without changing results or leaking the setting;
small GEMMs run on one BLAS thread and restore BLAS's thread count; the BLAS thread-count context
managers and the helper-thread pool."""

import numba
import numpy as np
import pytest

import fastconv
from fastconv import blas, threads, workers


def test_serial_if_small_sets_and_restores_the_thread_count():
    before = numba.get_num_threads()
    with threads.serial_if_small(10, limit=100) as ctx:
        assert ctx.serial and numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with threads.serial_if_small(1000, limit=100) as ctx:
        assert not ctx.serial and numba.get_num_threads() == before
    assert numba.get_num_threads() == before


def test_serial_if_small_restores_after_an_exception():
    before = numba.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with threads.serial_if_small(0):
            raise RuntimeError("boom")
    assert numba.get_num_threads() == before


@pytest.mark.parametrize("limit", [0, 10**12], ids=["parallel", "serial"])
def test_small_and_large_paths_give_identical_results(limit, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    baseline = fastconv.conv2d(x, w, padding=1, algo="direct")
    monkeypatch.setattr(threads, "SERIAL_MACS", limit)
    monkeypatch.setattr(fastconv.conv, "serial_if_small",
                        lambda work: threads.serial_if_small(work, limit=limit))
    np.testing.assert_array_equal(fastconv.conv2d(x, w, padding=1, algo="direct"), baseline)


@pytest.mark.parametrize("shape", [((3, 4, 5), (3, 5, 2)), ((64, 300), (300, 200)), ((300, 300), (300, 300))],
                         ids=["tiny", "small", "large"])
def test_blas_matmul_equals_numpy(shape):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(shape[0]), rng.standard_normal(shape[1])
    # Below SMALL_GEMM_FLOPS one BLAS thread computes it; OpenBLAS may split sums differently with more
    # threads, so only agreement to rounding is required there. Above it, it is exactly np.matmul.
    if 2 * a.shape[-2] * a.shape[-1] * b.shape[-1] >= blas.SMALL_GEMM_FLOPS:
        np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))
    else:
        np.testing.assert_allclose(blas.matmul(a, b), np.matmul(a, b), rtol=1e-12, atol=1e-12)
    out = np.empty(np.matmul(a, b).shape)
    assert blas.matmul(a, b, out=out) is out


@pytest.mark.skipif(not blas.blas_available(), reason="numpy is not built with OpenBLAS here")
def test_blas_thread_count_is_restored():
    before = blas.blas_num_threads()
    blas.matmul(np.ones((4, 4)), np.ones((4, 4)))
    assert blas.blas_num_threads() == before


def test_blas_num_threads_is_none_exactly_without_openblas():
    assert (blas.blas_num_threads() is None) == (not blas.blas_available())


@pytest.mark.skipif(not blas.blas_available(), reason="numpy is not built with OpenBLAS here")
@pytest.mark.parametrize("manager", [blas.one_blas_thread, blas.single_blas_thread],
                         ids=["one_blas_thread", "single_blas_thread"])
def test_blas_context_managers_set_one_thread_and_restore_after_an_exception(manager):
    before = blas.blas_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with manager():
            assert blas.blas_num_threads() == 1
            raise RuntimeError("boom")
    assert blas.blas_num_threads() == before


@pytest.mark.skipif(not blas.blas_available(), reason="numpy is not built with OpenBLAS here")
def test_one_blas_thread_is_reference_counted():
    before = blas.blas_num_threads()
    with blas.one_blas_thread():
        with blas.one_blas_thread():  # nested, as concurrent callers: the inner exit keeps one thread
            assert blas.blas_num_threads() == 1
        assert blas.blas_num_threads() == 1
    assert blas.blas_num_threads() == before


def test_workers_executor_is_one_pool_per_process():
    pool = workers.executor()
    assert workers.executor() is pool
    assert pool.submit(lambda: 42).result() == 42
