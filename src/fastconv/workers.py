"""The process's helper threads for work items run from Python (not numba's ``prange``).

conv_transpose2d's col2im path and conv2d_backward's band GEMMs split a call into work items, each a BLAS
GEMM plus a serial numba kernel, and hand them out dynamically to the calling thread and
``fastconv.get_num_threads() - 1`` helper threads of one shared pool (numpy's matmul and the kernels
release the GIL). Run them with OpenBLAS on one thread (``fastconv.blas.one_blas_thread``).

conv2d's Winograd kernel runs its per-thread worker on these threads too (:func:`run_workers`): a
``prange`` wrapper around it cost ~2.8 s of compilation on the first call (numba optimises the callee's
code again inside the parallel function), a third of the cold start.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

_POOL = None
_POOL_PID = None
_POOL_LOCK = threading.Lock()


_PREFIX = "fastconv-col2im"


def in_helper_thread():
    """True on one of the pool's helper threads (which must not wait on the pool: it may be the only one)."""
    return threading.current_thread().name.startswith(_PREFIX)


def executor():
    """The process's helper-thread pool, ``NUMBA_NUM_THREADS - 1`` threads (at least one), created on
    first use and recreated after a fork (a forked child inherits the pool object but not its threads)."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                       thread_name_prefix=_PREFIX)
            _POOL_PID = os.getpid()
        return _POOL


def run_workers(work, threads):
    """Call ``work(worker)`` once for each ``worker`` in ``range(threads)``: 0 on the calling thread, the
    others on the helper pool, and return when all are done (exceptions propagate). A helper call still
    queued when the calling thread is done (the pool busy with another call) is taken back and run on the
    calling thread, so a static split of the work is complete too; ``work`` must release the GIL.
    """
    helpers = [executor().submit(work, worker) for worker in range(1, threads)]
    try:
        work(0)
    finally:
        for worker, helper in enumerate(helpers, start=1):
            if helper.cancel():
                work(worker)
            else:
                helper.result()
