"""fastconv.memory: the caching pool for large result arrays.

Reuse is observed through data pointers: a block handed out again has the same aligned address. Every
test starts from an empty pool with the default settings (``pool`` fixture, autouse) and compares
counter deltas, since the pool is process-global.
"""

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv import memory

MiB = 1 << 20
MAX_RATIO = 2  # the waste bound: a block is at most twice the request


def ptr(arr):
    return arr.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def pool():
    """Empty pool, caching on, default limit; settings restored and idle blocks freed afterwards."""
    enabled = memory.set_caching_enabled(True)
    limit = memory.set_pool_limit(memory._default_limit())
    memory.empty_cache()
    yield memory
    memory.set_caching_enabled(enabled)
    memory.set_pool_limit(limit)
    memory.empty_cache()


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter with extra environment variables; return the result."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FASTCONV_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True,
                          text=True, timeout=120)


# -- the returned array ------------------------------------------------------------------------------

DTYPES = [np.float32, np.float64, np.int8, np.uint16, np.int64, np.bool_, np.complex128, "M8[ns]", ">f4",
          "S7", "U3", [("a", "f4"), ("b", "i8"), ("c", "S3")], ("f4", (2, 3))]


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(np.dtype(d)) for d in DTYPES])
@pytest.mark.parametrize("shape", [(2, 3, 256, 256), (1 << 21,), (5, 0, 3), (3, 4)],
                         ids=["4d-large", "1d-large", "empty", "small"])
def test_array_matches_np_empty_contract(dtype, shape):
    arr = memory.empty(shape, dtype)
    expected = np.empty(shape, dtype)
    assert arr.shape == expected.shape and arr.dtype == expected.dtype
    assert arr.flags.c_contiguous and arr.flags.writeable and arr.flags.aligned == expected.flags.aligned
    if arr.nbytes >= memory.POOL_MIN_BYTES:
        assert type(arr.base).__name__ == "_Lease" or type(arr.base.base).__name__ == "_Lease"
        assert ptr(arr) % memory.ALIGNMENT == 0
    if expected.dtype.names is None:
        fill = np.ones(1, expected.dtype)
        arr[...] = fill
        assert (arr == fill).all()


def test_shape_forms_are_accepted_like_np_empty():
    assert memory.empty(1 << 18, np.float32).shape == (1 << 18,)
    assert memory.empty([np.int64(512), 1024], np.float32).shape == (512, 1024)
    assert memory.empty((), np.float64).shape == ()
    assert memory.empty((512, 1024)).dtype == np.float64  # default dtype, as np.empty


def test_pooled_array_is_aligned_and_does_not_own_data():
    arr = memory.empty((4, MiB), np.float32)
    assert ptr(arr) % 64 == 0
    assert not arr.flags.owndata and type(arr.base).__name__ == "_Lease"


# -- reuse and lifetime ------------------------------------------------------------------------------

def test_reuse_after_release():
    info = memory.cache_info()
    a = memory.empty((8, MiB), np.float32)
    p = ptr(a)
    del a
    assert memory.cache_info()["idle_blocks"] == 1
    b = memory.empty((8, MiB), np.float32)
    assert ptr(b) == p
    after = memory.cache_info()
    assert (after["hits"] - info["hits"], after["misses"] - info["misses"]) == (1, 1)


DERIVED = {
    "slice": lambda a: a[1:],
    "strided": lambda a: a[:, ::2],
    "element-row": lambda a: a[3],
    "reshape": lambda a: a.reshape(-1),
    "transpose": lambda a: a.T,
    "asarray": lambda a: np.asarray(a),
    "view-dtype": lambda a: a.view(np.uint8),
    "chain": lambda a: a[1:].reshape(-1)[5:][::3].view(np.int32),
    "base-object": lambda a: a.base if type(a.base).__name__ == "_Lease" else a.base.base,
    "asarray-of-base": lambda a: np.asarray(a.base),
    "memoryview": lambda a: memoryview(a),
    "frombuffer": lambda a: np.frombuffer(a, dtype=np.uint8),
    "list-holding": lambda a: [a[2:4]],
}


@pytest.mark.parametrize("derive", DERIVED.values(), ids=DERIVED.keys())
def test_no_reuse_while_a_derived_object_lives(derive):
    a = memory.empty((16, MiB // 4), np.float32)
    p = ptr(a)
    derived = derive(a)
    if isinstance(derived, np.ndarray):
        assert np.shares_memory(a, derived)  # a real view, not a copy
    del a
    gc.collect()
    b = memory.empty((16, MiB // 4), np.float32)  # the first block is still viewed: a new block
    assert ptr(b) != p
    if isinstance(derived, np.ndarray):
        assert not np.shares_memory(b, derived)
    del derived
    c = memory.empty((16, MiB // 4), np.float32)  # b is alive, so only the first block is idle
    assert ptr(c) == p


def test_writes_through_a_live_view_are_not_clobbered():
    a = memory.empty((4, MiB), np.float32)
    view = a[2:]
    view.fill(7.0)
    del a
    others = [memory.empty((4, MiB), np.float32) for _ in range(3)]
    for other in others:
        other.fill(-1.0)
    assert (view == 7.0).all()


def test_numba_sees_the_same_type_and_its_views_keep_the_block():
    numba = pytest.importorskip("numba")
    a = memory.empty((4, MiB), np.float32)
    assert numba.typeof(a) == numba.typeof(np.empty((4, MiB), np.float32))  # no new kernel specialisation

    @numba.njit
    def tail(x):
        return x[1:]

    view = tail(a)
    p = ptr(a)
    del a
    b = memory.empty((4, MiB), np.float32)
    assert ptr(b) != p and not np.shares_memory(b, view)
    del view
    assert ptr(memory.empty((4, MiB), np.float32)) == p


def test_view_of_view_keeps_base_chain_ending_at_the_lease():
    a = memory.empty((4, MiB), np.float32)
    v = a[1:].reshape(-1)[::2][5:]
    node = v
    while isinstance(node, np.ndarray):
        node = node.base
    assert type(node).__name__ == "_Lease"


def test_reference_cycle_returns_block_after_collection():
    class Holder:
        pass

    holder = Holder()
    holder.arr = memory.empty((4, MiB), np.float32)
    holder.me = holder
    p = ptr(holder.arr)
    del holder
    gc.collect()
    assert ptr(memory.empty((4, MiB), np.float32)) == p


# -- size classes and best fit -----------------------------------------------------------------------

@given(st.integers(min_value=1, max_value=1 << 40))
def test_size_class_rounds_up_by_at_most_an_eighth(nbytes):
    size = memory._size_class(nbytes)
    assert nbytes <= size
    assert size % 4096 == 0
    if nbytes >= 1 << 15:
        assert size <= nbytes + nbytes // 8 + 1
    if nbytes > 16 * MiB:
        assert size % (2 * MiB) == 0
    assert memory._size_class(size) == size  # a class is its own class


@given(st.integers(min_value=1, max_value=1 << 34), st.integers(min_value=1, max_value=1 << 34))
def test_size_class_is_monotone(x, y):
    lo, hi = sorted((x, y))
    assert memory._size_class(lo) <= memory._size_class(hi)


@pytest.mark.parametrize("first_mib, second_mib, reused", [
    (8, 8, True),
    (8, 7.9, True),     # slightly different shape, same size class
    (8, 5, True),       # 8 MiB block for 5 MiB: 1.6x, within the waste bound
    (8, 4, True),       # exactly 2x
    (8, 3.9, False),    # more than 2x: a new block
    (8, 9, False),      # larger than the block
], ids=lambda v: str(v))
def test_reuse_within_the_waste_bound_only(first_mib, second_mib, reused):
    a = memory.empty(int(first_mib * MiB), np.uint8)
    p = ptr(a)
    del a
    b = memory.empty(int(second_mib * MiB), np.uint8)
    assert (ptr(b) == p) is reused


def test_best_fit_takes_the_smallest_suitable_idle_block():
    big, mid, small = (memory.empty(n * MiB, np.uint8) for n in (7, 5, 3))
    pointers = {"big": ptr(big), "mid": ptr(mid), "small": ptr(small)}
    del big, mid, small
    assert ptr(memory.empty(4 * MiB, np.uint8)) == pointers["mid"]     # 5 fits better than 7; 3 too small
    x = memory.empty(int(2.5 * MiB), np.uint8)
    assert ptr(x) == pointers["small"]


# -- the bound ---------------------------------------------------------------------------------------

def test_idle_bytes_stay_within_the_limit_evicting_least_recently_returned():
    memory.set_pool_limit(5 * MiB)
    before = memory.cache_info()
    a, b, c = (memory.empty(2 * MiB, np.uint8) for _ in range(3))
    pb, pc = ptr(b), ptr(c)
    del a, b, c  # returned in this order: a is the least recently used
    info = memory.cache_info()
    assert info["idle_bytes"] == 4 * MiB and info["idle_blocks"] == 2
    assert info["evictions"] - before["evictions"] == 1
    again = [memory.empty(2 * MiB, np.uint8) for _ in range(3)]
    assert {ptr(x) for x in again[:2]} == {pb, pc}
    assert memory.cache_info()["misses"] - info["misses"] == 1  # the third is a new block (a was freed)


def test_block_larger_than_the_limit_is_freed():
    memory.set_pool_limit(MiB)
    a = memory.empty(2 * MiB, np.uint8)
    del a
    assert memory.cache_info()["idle_bytes"] == 0


def test_lowering_the_limit_evicts_at_once_and_returns_previous():
    arrays = [memory.empty(2 * MiB, np.uint8) for _ in range(4)]
    del arrays
    assert memory.cache_info()["idle_bytes"] == 8 * MiB
    previous = memory.set_pool_limit(3 * MiB)
    assert previous == memory._default_limit()
    assert memory.cache_info()["idle_bytes"] == 2 * MiB
    memory.set_pool_limit(0)
    assert memory.cache_info()["idle_blocks"] == 0
    a = memory.empty(2 * MiB, np.uint8)
    del a
    assert memory.cache_info()["idle_blocks"] == 0  # limit 0: nothing is cached


def test_memory_error_frees_idle_blocks_and_retries(monkeypatch):
    arrays = [memory.empty(4 * MiB, np.uint8) for _ in range(2)]
    del arrays
    real, calls = memory._Block, []

    def failing_once(nbytes):
        calls.append(nbytes)
        if len(calls) == 1:
            raise MemoryError("simulated")
        return real(nbytes)

    monkeypatch.setattr(memory, "_Block", failing_once)
    arr = memory.empty(16 * MiB, np.uint8)  # no idle block fits: allocate, fail, free idle, retry
    assert arr.nbytes == 16 * MiB and len(calls) == 2
    assert memory.cache_info()["idle_blocks"] == 0


# -- empty_cache and cache_info ----------------------------------------------------------------------

def test_empty_cache_frees_idle_blocks_only():
    keep = memory.empty(3 * MiB, np.uint8)
    arrays = [memory.empty(2 * MiB, np.uint8) for _ in range(2)]
    del arrays
    assert memory.empty_cache() == 4 * MiB
    info = memory.cache_info()
    assert info["idle_bytes"] == 0 and info["idle_blocks"] == 0
    assert info["in_use_blocks"] == 1 and info["in_use_bytes"] == memory._size_class(3 * MiB)
    del keep  # an in-use block returns to the pool as usual after empty_cache
    assert memory.cache_info()["idle_bytes"] == memory._size_class(3 * MiB)


def test_cache_info_keys_and_accounting():
    info = memory.cache_info()
    assert set(info) == {"enabled", "limit_bytes", "min_bytes", "idle_bytes", "idle_blocks", "in_use_bytes",
                         "in_use_blocks", "hits", "misses", "evictions"}
    assert info["enabled"] is True and info["min_bytes"] == memory.POOL_MIN_BYTES
    a = memory.empty(int(1.5 * MiB), np.uint8)
    assert memory.cache_info()["in_use_bytes"] - info["in_use_bytes"] == memory._size_class(int(1.5 * MiB))
    del a
    assert memory.cache_info()["in_use_bytes"] == info["in_use_bytes"]


# -- what bypasses the pool --------------------------------------------------------------------------

@pytest.mark.parametrize("shape, dtype", [
    ((MiB // 4 - 1,), np.float32),   # one element below POOL_MIN_BYTES
    ((100, 100), np.float64),
    ((0, 1 << 30), np.float32),
    ((1 << 20,), object),            # must be initialised (to None), never pooled
    ((1 << 20,), [("a", object), ("b", "f8")]),
    ((1 << 20,), np.dtypes.StringDType()),
], ids=["just-below-threshold", "small", "zero-size", "object", "structured-with-object", "StringDType"])
def test_bypass_returns_plain_np_empty(shape, dtype):
    info = memory.cache_info()
    arr = memory.empty(shape, dtype)
    assert arr.flags.owndata and arr.base is None
    assert arr.shape == shape and arr.dtype == np.dtype(dtype)
    after = memory.cache_info()
    assert (after["hits"], after["misses"]) == (info["hits"], info["misses"])
    if arr.dtype == object and arr.size:
        assert arr[0] is None


def test_threshold_is_inclusive():
    arr = memory.empty(memory.POOL_MIN_BYTES, np.uint8)
    assert not arr.flags.owndata


def test_set_caching_enabled_off_is_np_empty_and_frees_blocks():
    keep = memory.empty(2 * MiB, np.uint8)
    idle = memory.empty(2 * MiB, np.uint8)
    del idle
    assert memory.set_caching_enabled(False) is True
    info = memory.cache_info()
    assert info["enabled"] is False and info["idle_blocks"] == 0
    arr = memory.empty(4 * MiB, np.uint8)
    assert arr.flags.owndata and arr.base is None
    del keep  # leased while on, released while off: freed, not cached
    assert memory.cache_info()["idle_blocks"] == 0 and memory.cache_info()["in_use_blocks"] == 0
    assert memory.set_caching_enabled(True) is False
    assert not memory.empty(4 * MiB, np.uint8).flags.owndata


def test_env_switch_off_makes_empty_np_empty():
    result = run_python("""
        import numpy as np
        from fastconv import memory
        arr = memory.empty((64, 1 << 20), np.float32)
        info = memory.cache_info()
        assert arr.flags.owndata and arr.base is None, arr.base
        assert info["enabled"] is False and info["misses"] == 0, info
        print("ok")
    """, FASTCONV_CACHING_ALLOCATOR="0")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_env_limit_is_read_at_import():
    result = run_python("""
        from fastconv import memory
        print(memory.cache_info()["limit_bytes"], memory.cache_info()["enabled"])
    """, FASTCONV_POOL_BYTES="8M", FASTCONV_CACHING_ALLOCATOR="on")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(8 * MiB), "True"]


@pytest.mark.parametrize("env, expected", [
    ({}, (True, None)),
    ({"FASTCONV_CACHING_ALLOCATOR": "0"}, (False, None)),
    ({"FASTCONV_CACHING_ALLOCATOR": "False"}, (False, None)),
    ({"FASTCONV_CACHING_ALLOCATOR": "off"}, (False, None)),
    ({"FASTCONV_CACHING_ALLOCATOR": "1"}, (True, None)),
    ({"FASTCONV_POOL_BYTES": "1048576"}, (True, MiB)),
    ({"FASTCONV_POOL_BYTES": "512M"}, (True, 512 * MiB)),
    ({"FASTCONV_POOL_BYTES": "2GiB"}, (True, 2 << 30)),
    ({"FASTCONV_POOL_BYTES": "64k"}, (True, 64 << 10)),
    ({"FASTCONV_POOL_BYTES": "0"}, (True, 0)),
    ({"FASTCONV_POOL_BYTES": ""}, (True, None)),
], ids=lambda v: repr(v))
def test_read_env(env, expected):
    enabled, limit = memory._read_env(env)
    assert enabled is expected[0]
    assert limit == (memory._default_limit() if expected[1] is None else expected[1])


def test_default_limit_is_at_most_a_gib_and_a_quarter_of_ram():
    limit = memory._default_limit()
    assert 0 < limit <= 1 << 30
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert limit <= physical // 4


@pytest.mark.parametrize("env, match", [
    ({"FASTCONV_CACHING_ALLOCATOR": "maybe"}, r"FASTCONV_CACHING_ALLOCATOR must be one of .*got 'maybe'"),
    ({"FASTCONV_POOL_BYTES": "1.5G"}, r"FASTCONV_POOL_BYTES must be a byte count .*got '1.5G'; using the default"),
    ({"FASTCONV_POOL_BYTES": "-3"}, r"FASTCONV_POOL_BYTES must be a byte count .*got '-3'"),
])
def test_malformed_env_warns_and_uses_default(env, match):
    with pytest.warns(RuntimeWarning, match=match):
        enabled, limit = memory._read_env(env)
    assert enabled is True and limit == memory._default_limit()


# -- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, exc, match", [
    (lambda: memory.empty((4, -1)), ValueError, r"empty: shape must have no negative entry, got \(4, -1\)"),
    (lambda: memory.empty(-5), ValueError, r"empty: shape must have no negative entry, got -5"),
    (lambda: memory.empty(2.5), TypeError, r"empty: shape must be an int or a sequence of ints, got 2.5"),
    (lambda: memory.empty((3, "a")), TypeError,
     r"empty: shape must be an int or a sequence of ints, got \(3, 'a'\)"),
    (lambda: memory.empty((True, 3)), TypeError, r"empty: shape must be an int or a sequence of ints"),
    (lambda: memory.empty(3, "nope"), TypeError, r"empty: dtype must be a numpy dtype, got 'nope'"),
    (lambda: memory.set_pool_limit(-1), ValueError, r"set_pool_limit: limit_bytes must be >= 0, got -1"),
    (lambda: memory.set_pool_limit(1.5), TypeError, r"set_pool_limit: limit_bytes must be an int, got 1.5"),
    (lambda: memory.set_caching_enabled(1), TypeError, r"set_caching_enabled: flag must be a bool, got 1"),
], ids=["negative-dim", "negative-int", "float-shape", "str-dim", "bool-dim", "bad-dtype", "negative-limit",
        "float-limit", "int-flag"])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("shape", [(1 << 40, 1 << 40), (1 << 62,)], ids=["product-overflows", "too-big"])
def test_impossible_sizes_raise_numpys_own_error(shape):
    with pytest.raises(ValueError, match="array is too big"):
        np.empty(shape, np.float32)
    with pytest.raises(ValueError, match="array is too big"):
        memory.empty(shape, np.float32)
    assert memory.cache_info()["in_use_blocks"] == 0


# -- threads, finalizers, shutdown, fork -------------------------------------------------------------

@pytest.mark.parametrize("limit", [1 << 30, 6 * MiB], ids=["default-limit", "small-limit-evicting"])
def test_threads_never_share_a_block(limit):
    memory.set_pool_limit(limit)
    info = memory.cache_info()
    sizes = [int(1.1 * MiB), 2 * MiB, 3 * MiB, int(3.5 * MiB)]
    live, live_lock, errors = {}, threading.Lock(), []
    iterations = 150

    def worker(tid):
        rng = np.random.default_rng(tid)
        try:
            for i in range(iterations):
                arr = memory.empty(int(rng.choice(sizes)), np.uint8)
                start, stop = ptr(arr), ptr(arr) + arr.nbytes
                with live_lock:
                    for other_start, other_stop in live.values():
                        if start < other_stop and other_start < stop:
                            errors.append(f"thread {tid}: block overlaps a live one")
                    live[tid] = (start, stop)
                arr.fill(tid)
                time.sleep(0.0005 if i % 10 == 0 else 0)
                if not (arr == tid).all():
                    errors.append(f"thread {tid}: array overwritten by another thread")
                with live_lock:
                    del live[tid]
                del arr
        except Exception as exc:  # surfaced by the assertion below
            errors.append(f"thread {tid}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(tid,)) for tid in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    after = memory.cache_info()
    assert after["in_use_blocks"] == 0 and after["in_use_bytes"] == 0
    assert after["idle_bytes"] <= limit
    assert (after["hits"] - info["hits"]) + (after["misses"] - info["misses"]) == 4 * iterations
    assert after["hits"] - info["hits"] > 0


def test_release_while_the_lock_is_held_does_not_deadlock():
    # A finalizer may run while the pool lock is held: in another thread, or in the same thread when
    # the garbage collector runs inside the critical section. It must queue the block, not block.
    a = memory.empty(2 * MiB, np.uint8)
    p = ptr(a)
    box = [a]
    del a
    done = threading.Event()

    def release_under_lock():
        with memory._pool._lock:
            box.clear()   # last reference: _Lease.__del__ runs here, lock held by this very thread
        done.set()

    t = threading.Thread(target=release_under_lock, daemon=True)
    t.start()
    t.join(timeout=10)
    assert done.is_set(), "finalizer deadlocked on the pool lock"
    assert memory.cache_info()["idle_blocks"] == 1  # the queued block is drained by the next pool call
    assert ptr(memory.empty(2 * MiB, np.uint8)) == p


def test_gc_collection_inside_the_critical_section_does_not_deadlock():
    class Cycle:
        pass

    c = Cycle()
    c.me, c.arr = c, memory.empty(2 * MiB, np.uint8)
    del c
    done = threading.Event()

    def collect_under_lock():
        with memory._pool._lock:
            gc.collect()
        done.set()

    t = threading.Thread(target=collect_under_lock, daemon=True)
    t.start()
    t.join(timeout=10)
    assert done.is_set()
    assert memory.cache_info()["idle_blocks"] == 1


def test_interpreter_shutdown_with_live_arrays_is_silent():
    result = run_python("""
        import threading
        import numpy as np
        from fastconv import memory
        GLOBAL = memory.empty((4, 1 << 20), np.float32)
        VIEW = memory.empty((4, 1 << 20), np.float32)[1:]
        class Cycle:
            pass
        c = Cycle(); c.me = c; c.arr = memory.empty(3 << 20, np.uint8)
        local = threading.local(); local.arr = memory.empty(2 << 20, np.uint8)
        idle = memory.empty(5 << 20, np.uint8); del idle
        print("ok")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "ok"
    assert result.stderr == ""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_uses_the_pool():
    result = run_python("""
        import os, signal, threading
        import numpy as np
        from fastconv import memory
        stop = threading.Event()
        def churn():
            while not stop.is_set():
                a = memory.empty(2 << 20, np.uint8); a[:] = 1; del a
        t = threading.Thread(target=churn); t.start()
        statuses = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                signal.alarm(10)  # a stuck lock would hang: be killed instead
                a = memory.empty(2 << 20, np.uint8); p = a.ctypes.data; del a
                b = memory.empty(2 << 20, np.uint8)
                info = memory.cache_info()
                os._exit(0 if b.ctypes.data == p and info["in_use_blocks"] >= 1 else 3)
            statuses.append(os.waitpid(pid, 0)[1])
        stop.set(); t.join()
        print(statuses)
        assert all(s == 0 for s in statuses), statuses
        assert memory.cache_info()["in_use_blocks"] == 0
    """)
    assert result.returncode == 0, result.stdout + result.stderr


# -- a model-based property test ---------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=MiB // 2, max_value=5 * MiB),
                          st.integers(min_value=0, max_value=7)), min_size=1, max_size=30),
       st.sampled_from([0, 3 * MiB, 8 * MiB, 1 << 30]))
def test_random_alloc_free_sequences_keep_the_invariants(ops, limit):
    memory.empty_cache()
    memory.set_pool_limit(limit)
    try:
        live = []  # (array, the byte value written into all of it)
        for step, (allocate, nbytes, index) in enumerate(ops):
            if allocate or not live:
                arr = memory.empty(nbytes, np.uint8)
                arr.fill(step)
                assert not any(np.shares_memory(arr, other) for other, _ in live)  # a genexpr: no
                # loop variable left behind to keep an array alive
                live.append((arr, step))
                del arr
            else:
                live.pop(index % len(live))
            info = memory.cache_info()
            pooled = [a.nbytes for a, _ in live if not a.flags.owndata]
            assert info["in_use_blocks"] == len(pooled)
            assert sum(pooled) <= info["in_use_bytes"] <= MAX_RATIO * sum(pooled)
            assert info["idle_bytes"] <= limit
        assert all((arr == value).all() for arr, value in live)  # nothing written over a live array
        del live
        assert memory.cache_info()["in_use_blocks"] == 0
    finally:
        memory.set_pool_limit(memory._default_limit())


# ---------------------------------------------------------------------------------------------------
# The ops allocate their results from the pool
# ---------------------------------------------------------------------------------------------------

def test_op_results_come_from_the_pool_and_views_keep_them_alive():
    import fastconv

    x = np.random.default_rng(0).standard_normal((4, 64, 64, 64)).astype(np.float32)  # results of 4 MiB
    y = fastconv.avg_pool2d(x, 3, stride=1, padding=1)
    assert isinstance(y.base, memory._Lease)
    view = y[:, 1:, 5]
    expected = view.copy()
    del y
    z = fastconv.max_pool2d(x, 3, stride=1, padding=1)  # same size: must not take the block the view holds
    assert not np.shares_memory(z, view)
    np.testing.assert_array_equal(view, expected)
    z_ptr = ptr(z)
    del z
    before = memory.cache_info()["hits"]
    w = fastconv.conv2d(x, np.ones((64, 64, 1, 1), np.float32))  # same size: reuses z's idle block
    assert memory.cache_info()["hits"] == before + 1 and ptr(w) == z_ptr
    np.testing.assert_array_equal(view, expected)


def test_out_argument_allocates_nothing():
    import fastconv

    x = np.random.default_rng(1).standard_normal((4, 64, 64, 64)).astype(np.float32)
    out = np.empty_like(x)
    before = memory.cache_info()
    assert fastconv.avg_pool2d(x, 3, stride=1, padding=1, out=out) is out
    after = memory.cache_info()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])
