"""The process's helper threads for work items run from Python (not numba's ``prange``).

conv_transpose2d's col2im path and conv2d_backward's band GEMMs split a call into work items, each a BLAS
GEMM plus a serial numba kernel, and hand them out dynamically to the calling thread and
``fastconv.get_num_threads() - 1`` helper threads of one shared pool (numpy's matmul and the kernels
release the GIL). Run them with OpenBLAS on one thread (``fastconv.blas.one_blas_thread``).
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
