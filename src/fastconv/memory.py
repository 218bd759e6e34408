"""A caching pool for large result arrays (cf. onnxruntime's arena, PyTorch's caching allocator).

Why: glibc's malloc serves every buffer above its mmap threshold (32 MiB at most) with a fresh
``mmap``, so a new large result is page-faulted again on every call. On this machine filling a fresh
103 MB float32 array costs 6.5-12 ms more than filling one whose pages are already mapped, as much as
a pooling op itself (numbers in ``docs/memory.md``). :func:`empty` hands out large arrays carved
from raw blocks that were allocated (and page-faulted) once and are reused afterwards.

How a block lives:

* A *block* is a 1-D ``uint8`` array from ``np.empty`` (so numpy's huge-page advice applies), plus
  the 64-byte aligned address inside it and its usable size, a *size class*: the request rounded up
  to 8 classes per power of two (at most 12.5 % rounding waste, page multiples, 2 MiB multiples
  from 16 MiB up), so slightly different shapes share blocks.
* :func:`empty` wraps the block in a ``_Lease``: a tiny object exposing the block through
  ``__array_interface__``. ``np.asarray(lease)`` makes the result, whose ``.base`` is the lease; numpy
  never collapses a base chain past a non-ndarray, so every view, slice, reshape or ``np.asarray`` of
  the result keeps the result (and hence the lease) alive.
* When the last such array is collected, ``_Lease.__del__`` returns the block: it queues the block on
  a deque (an atomic append, no lock) and then drains the queue if the pool lock is free. A finalizer
  therefore never blocks: not when the garbage collector runs it inside the pool's own critical
  section (a non-reentrant lock would deadlock there), not at interpreter shutdown. A block queued
  while another thread held the lock is drained by the next pool call.
* A returned block becomes idle. A request takes the smallest idle block of at least the requested
  size and at most ``MAX_BLOCK_RATIO`` (2) times it; otherwise a new block is allocated.
* Idle bytes are bounded by the limit (``FASTCONV_POOL_BYTES``): returning a block evicts the least
  recently returned idle blocks until it fits; a block larger than the limit itself is freed.

Settings are read from the environment once, at import; ``set_caching_enabled`` and
``set_pool_limit`` change them at run time (reading the environment per call would cost ~1 us).
"""

import bisect
import collections
import os
import re
import sys
import threading
import warnings

import numpy as np

from ._validate import is_int

__all__ = ["POOL_MIN_BYTES", "MAX_BLOCK_RATIO", "cache_info", "empty", "empty_cache",
           "set_caching_enabled", "set_pool_limit"]

POOL_MIN_BYTES = 1 << 20  # smaller requests go to np.empty: malloc already reuses such buffers
MAX_BLOCK_RATIO = 2       # never hand out a block more than this many times the requested size
ALIGNMENT = 64            # bytes; the data pointer of every pooled array is a multiple of this
DEFAULT_LIMIT_BYTES = 1 << 30
_MAX_NBYTES = sys.maxsize - 2 * ALIGNMENT  # larger requests cannot be arrays at all

# Dtype kinds whose arrays need no initialisation (no object references, no heap-allocated strings).
_PLAIN_KINDS = frozenset("biufcmMSUV")

_ENV_ENABLED = "FASTCONV_CACHING_ALLOCATOR"
_ENV_LIMIT = "FASTCONV_POOL_BYTES"
_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_BYTES = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def _size_class(nbytes):
    """The block size serving a request of ``nbytes`` (> 0): ``nbytes`` rounded up to a multiple of
    ``2**(bit_length(nbytes - 1) - 4)``, i.e. 8 classes per power of two (``1.125 * 2**k``, ...,
    ``2 * 2**k``), and to at least a 4 KiB page. Rounding wastes at most 12.5 %."""
    shift = max((nbytes - 1).bit_length() - 4, 12)
    return (((nbytes - 1) >> shift) + 1) << shift


def _default_limit():
    """min(1 GiB, a quarter of physical memory); 1 GiB where sysconf cannot tell."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return DEFAULT_LIMIT_BYTES
    return min(DEFAULT_LIMIT_BYTES, physical // 4) if physical > 0 else DEFAULT_LIMIT_BYTES


def _parse_bytes(text):
    """``"1073741824"``, ``"512M"``, ``"512MiB"``, ``"2g"`` -> bytes (binary units); None if malformed."""
    match = _BYTES.fullmatch(text.strip().replace("_", ""))
    if match is None:
        return None
    return int(match.group(1)) * _SUFFIXES[match.group(2).lower()]


def _read_env(environ=os.environ):
    """(enabled, limit_bytes) from the environment. A malformed value warns and uses the default, as
    numba does for its own variables: a typo must not make ``import fastconv`` fail."""
    enabled = True
    flag = environ.get(_ENV_ENABLED)
    if flag is not None:
        word = flag.strip().lower()
        if word in ("0", "false", "off", "no"):
            enabled = False
        elif word not in ("1", "true", "on", "yes", ""):
            warnings.warn(f"fastconv.memory: {_ENV_ENABLED} must be one of '0', '1', 'true', 'false', "
                          f"'on', 'off', 'yes', 'no', got {flag!r}; the pool stays enabled",
                          RuntimeWarning, stacklevel=2)
    limit = _default_limit()
    text = environ.get(_ENV_LIMIT, "")
    if text.strip():
        parsed = _parse_bytes(text)
        if parsed is None:
            warnings.warn(f"fastconv.memory: {_ENV_LIMIT} must be a byte count such as '1073741824', "
                          f"'512M' or '2G', got {text!r}; using the default {limit}",
                          RuntimeWarning, stacklevel=2)
        else:
            limit = parsed
    return enabled, limit


class _Block:
    """One raw allocation: ``raw`` keeps the memory, ``ptr`` is its 64-byte aligned start and
    ``nbytes`` the usable size from ``ptr`` (a size class)."""

    __slots__ = ("raw", "ptr", "nbytes")

    def __init__(self, nbytes):
        self.raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
        address = self.raw.ctypes.data
        self.ptr = address + (-address) % ALIGNMENT
        self.nbytes = nbytes


class _Lease:
    """The owner (``.base``) of one array handed out by :func:`empty`; returns its block to the pool
    when collected. Holds the pool itself so that ``__del__`` needs no module global (they may already
    be None at interpreter shutdown)."""

    __slots__ = ("__array_interface__", "_pool", "_block")

    def __del__(self):
        try:
            self._pool._give_back(self._block)
        except BaseException:  # a finalizer must never raise (printed as "Exception ignored in ...")
            pass


class _Pool:
    """The pool's state. Every method ending in ``_locked`` requires ``self._lock`` held.

    Idle blocks: ``_by_size`` maps a size class to a stack of idle blocks (last returned on top),
    ``_sizes`` is the sorted list of its keys (for best fit by bisection) and ``_lru`` keeps every idle
    block in return order (oldest first, for eviction). ``_returned`` queues blocks released by
    finalizers until the next drain.
    """

    # Bound here, not looked up in the module at call time: finalizers run during interpreter shutdown,
    # when module globals may already be None.
    _bisect_left = staticmethod(bisect.bisect_left)
    _insort = staticmethod(bisect.insort)

    def __init__(self, enabled, limit):
        self.enabled = enabled
        self.limit = limit
        self._lock = threading.Lock()
        self._returned = collections.deque()
        self._by_size = {}
        self._sizes = []
        self._lru = collections.OrderedDict()
        self.idle_bytes = 0
        self.in_use_bytes = 0
        self.in_use_blocks = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._fork_held = False

    # -- handing out -------------------------------------------------------------------------------

    def take(self, nbytes):
        """A block of ``nbytes <= size <= MAX_BLOCK_RATIO * nbytes``: the smallest idle one, or new."""
        with self._lock:
            freed = self._drain_locked() if self._returned else []
            sizes = self._sizes
            i = self._bisect_left(sizes, nbytes)
            if i < len(sizes) and sizes[i] <= MAX_BLOCK_RATIO * nbytes:
                block = self._pop_idle_locked(sizes[i], i)
                self.hits += 1
                self.in_use_bytes += block.nbytes
                self.in_use_blocks += 1
                return block
        freed.clear()  # evicted blocks are unmapped here, outside the lock (on a hit: at return)
        block = self._new_block(_size_class(nbytes))
        with self._lock:
            self.misses += 1
            self.in_use_bytes += block.nbytes
            self.in_use_blocks += 1
        return block

    def _new_block(self, size):
        try:
            return _Block(size)
        except MemoryError:  # as PyTorch's allocator: free every idle block, then retry once
            self.release_idle()
            return _Block(size)

    def _pop_idle_locked(self, size, index):
        stack = self._by_size[size]
        block = stack.pop()
        if not stack:
            del self._by_size[size]
            del self._sizes[index]
        del self._lru[block]
        self.idle_bytes -= size
        return block

    # -- giving back -------------------------------------------------------------------------------

    def _give_back(self, block):
        """Called from ``_Lease.__del__`` in any thread: queue, then drain if nobody holds the lock."""
        self._returned.append(block)
        lock = self._lock
        if lock.acquire(False):
            try:
                freed = self._drain_locked()
            finally:
                lock.release()
            freed.clear()  # unmap evicted blocks outside the lock

    def _drain_locked(self):
        """Move every queued block to the idle set (or free it); returns the blocks to free, which the
        caller drops after releasing the lock (unmapping 100 MB takes a while)."""
        freed = []
        returned = self._returned
        while returned:
            block = returned.popleft()
            self.in_use_bytes -= block.nbytes
            self.in_use_blocks -= 1
            if not self.enabled or block.nbytes > self.limit:
                freed.append(block)
                continue
            self._evict_locked(self.limit - block.nbytes, freed)
            size = block.nbytes
            stack = self._by_size.get(size)
            if stack is None:
                self._by_size[size] = [block]
                self._insort(self._sizes, size)
            else:
                stack.append(block)
            self._lru[block] = None
            self.idle_bytes += size
        return freed

    def _evict_locked(self, keep_bytes, freed):
        """Free least recently returned idle blocks until at most ``keep_bytes`` stay idle."""
        while self.idle_bytes > keep_bytes:
            block = next(iter(self._lru))
            stack = self._by_size[block.nbytes]
            stack.remove(block)
            if not stack:
                del self._by_size[block.nbytes]
                self._sizes.remove(block.nbytes)
            del self._lru[block]
            self.idle_bytes -= block.nbytes
            self.evictions += 1
            freed.append(block)

    # -- maintenance -------------------------------------------------------------------------------

    def release_idle(self, keep_bytes=0):
        """Drain the queue, then free idle blocks (oldest first) down to ``keep_bytes``; returns the
        number of bytes freed."""
        with self._lock:
            freed = self._drain_locked()
            self._evict_locked(keep_bytes, freed)
        total = sum(block.nbytes for block in freed)
        freed.clear()
        return total

    def info(self):
        with self._lock:
            freed = self._drain_locked()
            info = {
                "enabled": self.enabled,
                "limit_bytes": self.limit,
                "min_bytes": POOL_MIN_BYTES,
                "idle_bytes": self.idle_bytes,
                "idle_blocks": len(self._lru),
                "in_use_bytes": self.in_use_bytes,
                "in_use_blocks": self.in_use_blocks,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }
        freed.clear()
        return info

    # -- fork --------------------------------------------------------------------------------------
    # As the logging module does: hold the lock across fork() so the child never inherits it locked
    # nor the state half-updated, then give the child a fresh lock. The timeout guards against a fork
    # from inside the critical section (from a finalizer run by the garbage collector there): the
    # child then drops its idle blocks rather than trust state that may be mid-update.

    def _before_fork(self):
        self._fork_held = self._lock.acquire(timeout=5.0)

    def _after_fork_in_parent(self):
        if self._fork_held:
            self._fork_held = False
            self._lock.release()

    def _after_fork_in_child(self):
        self._lock = threading.Lock()
        if not self._fork_held:
            self._by_size, self._sizes, self._lru, self.idle_bytes = {}, [], collections.OrderedDict(), 0
        self._fork_held = False


_pool = _Pool(*_read_env())
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_pool._before_fork, after_in_parent=_pool._after_fork_in_parent,
                        after_in_child=_pool._after_fork_in_child)

# dtype -> how empty() serves it: its __array_interface__ typestr (plain dtypes), _STRUCTURED (a view of
# raw bytes), _SUBARRAY (expand into the shape, as np.empty does) or None (np.empty: object or string
# dtypes must be initialised). Cached because dtype.str is rebuilt on every access (~0.4 us).
_MISSING, _STRUCTURED, _SUBARRAY = object(), object(), object()
_routes = {}


def _route(dtype):
    if dtype.hasobject or dtype.kind not in _PLAIN_KINDS:
        route = None
    elif dtype.subdtype is not None:
        route = _SUBARRAY
    elif dtype.names is not None:
        route = _STRUCTURED
    else:
        route = dtype.str
    if len(_routes) < 1024:  # user code may build many structured dtypes; keep the cache small
        _routes[dtype] = route
    return route


def _shape_tuple(shape):
    """``shape`` as a tuple of non-negative Python ints (an int is a 1-D shape, as for np.empty)."""
    if is_int(shape):
        dims = (int(shape),)
    else:
        try:
            dims = tuple(shape)
        except TypeError:
            dims = None
        if dims is None or not all(type(d) is int or is_int(d) for d in dims):
            raise TypeError(f"empty: shape must be an int or a sequence of ints, got {shape!r}")
        dims = tuple(int(d) for d in dims)
    for d in dims:
        if d < 0:
            raise ValueError(f"empty: shape must have no negative entry, got {shape!r}")
    return dims


def empty(shape, dtype=np.float64):
    """A new uninitialised C-contiguous array, from the caching pool when it is large.

    Same contract as ``np.empty(shape, dtype)`` (C order) except: the contents are arbitrary and, for a
    pooled array, may be the bytes of an earlier result (never rely on zeros); the data pointer is
    64-byte aligned; the array does not own its memory (``.base`` is the pool's lease object). Its block
    returns to the pool when the array and every view of it are garbage-collected.

    Requests below ``POOL_MIN_BYTES`` (1 MiB), object/string dtypes (they must be initialised) and all
    requests while the pool is off (``FASTCONV_CACHING_ALLOCATOR=0``, :func:`set_caching_enabled`)
    simply return ``np.empty(shape, dtype)``.

    Parameters
    ----------
    shape : int or sequence of int
        Non-negative sizes.
    dtype : data-type, default float64
        Any numpy dtype (a general allocator: int, bool, structured dtypes are fine).

    Returns
    -------
    numpy.ndarray
        Writeable, C-contiguous, aligned, of ``shape`` and ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import memory
    >>> a = memory.empty((4, 64, 32, 32), np.float32)          # 1 MiB: served by the pool
    >>> a.shape, a.dtype, a.flags.c_contiguous, a.ctypes.data % 64
    ((4, 64, 32, 32), dtype('float32'), True, 0)
    """
    try:
        dtype = np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"empty: dtype must be a numpy dtype, got {dtype!r}") from None
    nbytes = dtype.itemsize
    dims = shape if type(shape) is tuple else None
    if dims is not None:  # the common case, a tuple of ints, checked without building a new tuple
        for d in dims:
            if type(d) is not int or d < 0:
                dims = None
                break
            nbytes *= d
    if dims is None:
        dims = _shape_tuple(shape)
        nbytes = dtype.itemsize
        for d in dims:
            nbytes *= d
    pool = _pool
    if nbytes < POOL_MIN_BYTES or nbytes > _MAX_NBYTES or not pool.enabled:
        return np.empty(dims, dtype)  # (beyond _MAX_NBYTES for numpy's own "array is too big")
    route = _routes.get(dtype, _MISSING)
    if route is _MISSING:
        route = _route(dtype)
    if route is None:
        return np.empty(dims, dtype)
    if route is _SUBARRAY:  # np.empty((3,), ('f4', (2,))) is a (3, 2) float32 array
        base, inner = dtype.subdtype
        return empty(dims + inner, base)
    block = pool.take(nbytes)
    lease = _Lease()
    lease._pool = pool
    lease._block = block
    if route is not _STRUCTURED:
        lease.__array_interface__ = {"data": (block.ptr, False), "shape": dims, "typestr": route,
                                     "version": 3}
        return np.asarray(lease)
    # A structured dtype's typestr ("|V12") would lose its fields: expose raw bytes and view them.
    lease.__array_interface__ = {"data": (block.ptr, False), "shape": (nbytes,), "typestr": "|u1",
                                 "version": 3}
    return np.asarray(lease).view(dtype).reshape(dims)


def empty_cache():
    """Free every idle block; return the number of bytes freed.

    Blocks in use are not affected: when released later they return to the pool as usual (as in
    PyTorch's ``torch.cuda.empty_cache``).
    """
    return _pool.release_idle()


def cache_info():
    """The pool's state and counters, as a dict.

    ``enabled``, ``limit_bytes`` (bound on idle bytes), ``min_bytes`` (``POOL_MIN_BYTES``),
    ``idle_bytes``/``idle_blocks`` (cached, free for reuse), ``in_use_bytes``/``in_use_blocks`` (held by
    live arrays; block sizes, i.e. requests rounded up to their size class), ``hits``/``misses``
    (pooled requests served by an idle block / by a new block) and ``evictions`` (idle blocks freed to
    respect the limit).
    """
    return _pool.info()


def set_caching_enabled(flag):
    """Turn the pool on or off at run time; return the previous setting.

    Off: :func:`empty` is ``np.empty``, the idle blocks are freed and blocks still in use are freed
    (not cached) when released.
    """
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"set_caching_enabled: flag must be a bool, got {flag!r}")
    previous = _pool.enabled
    _pool.enabled = bool(flag)
    if not flag:
        _pool.release_idle()
    return previous


def set_pool_limit(limit_bytes):
    """Bound the idle bytes the pool keeps (``FASTCONV_POOL_BYTES`` at import); return the previous
    bound. Lowering it frees the least recently used idle blocks at once; 0 caches nothing."""
    if not is_int(limit_bytes):
        raise TypeError(f"set_pool_limit: limit_bytes must be an int, got {limit_bytes!r}")
    if limit_bytes < 0:
        raise ValueError(f"set_pool_limit: limit_bytes must be >= 0, got {limit_bytes!r}")
    with _pool._lock:
        previous = _pool.limit
        _pool.limit = int(limit_bytes)
    _pool.release_idle(keep_bytes=int(limit_bytes))
    return previous
