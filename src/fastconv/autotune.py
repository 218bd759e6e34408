"""``algo="measure"``: time the candidate algorithms once per problem and remember the winner.

Like cuDNN's benchmark mode (``torch.backends.cudnn.benchmark``): the first call of a problem runs
every candidate (each once to compile and warm up, then ``REPEAT`` interleaved timed rounds, fastest
round wins: noise only adds time), and every later call with the same key goes straight to the winner.
The key holds everything the choice depends on: op, shapes, strides, pads, dilation, groups, dtype
and the thread count.

Winners are kept in memory and in a JSON file, so later processes skip the measurement:

* ``$FASTCONV_AUTOTUNE_CACHE`` (a file path; ``off`` keeps the choices in memory only), else
* ``autotune.json`` in fastconv's compile-cache directory (``fastconv._jit.CACHE_DIR``), else
* memory only (a read-only install with no writable HOME: nothing is written, nothing fails).

The file is rewritten atomically (a temporary file, then ``os.replace``), merged with what other
processes wrote meanwhile; an unreadable or corrupt file is treated as empty. Entries carry the
fastconv and numba versions in their key, so an upgrade re-measures. Thread-safe: one lock guards the
table; two threads measuring the same new key at once both measure, and the last writer wins.
"""

import json
import os
import tempfile
import threading
import time

import numba

from . import _jit

REPEAT = 3
_OFF_VALUES = ("", "0", "off", "none", "false")
_ENV = "FASTCONV_AUTOTUNE_CACHE"

_lock = threading.Lock()
_table = {}  # key -> winner name
_loaded_from = None  # the path whose contents are merged into _table


def cache_path():
    """The JSON file the winners are written to, or None when they stay in memory."""
    explicit = os.environ.get(_ENV)
    if explicit is not None:
        return None if explicit.strip().lower() in _OFF_VALUES else explicit
    if _jit.CACHE_DIR is None:
        return None
    return os.path.join(os.path.dirname(_jit.CACHE_DIR.rstrip(os.sep)), "autotune.json")


def make_key(op, **fields):
    """A stable string key of ``op`` and the problem ``fields`` (plus versions and thread count)."""
    from . import __version__

    parts = [f"{name}={fields[name]!r}" for name in sorted(fields)]
    parts.append(f"threads={numba.get_num_threads()}")
    return f"{op}|fastconv={__version__}|numba={numba.__version__}|" + "|".join(parts)


def _read(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(data, dict) else {}


def _load_locked(path):
    global _loaded_from
    if path is not None and path != _loaded_from:
        _table.update(_read(path))
        _loaded_from = path


def _write_locked(path, key, winner):
    """Merge ``key: winner`` into the file at ``path``; silently keep memory only when it fails."""
    try:
        merged = _read(path)
        merged[key] = winner
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".autotune-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(merged, f, indent=0, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def lookup(key):
    """The remembered winner of ``key``, or None."""
    with _lock:
        _load_locked(cache_path())
        return _table.get(key)


def choose(key, candidates, *, repeat=REPEAT, timer=time.perf_counter):
    """Name of the fastest of ``candidates`` (name -> zero-argument callable) for ``key``.

    A remembered winner is returned without running anything. Otherwise every candidate runs once
    (compilation, warm-up) and then ``repeat`` interleaved timed rounds; the winner runs last, so
    whatever the candidates write (they share the caller's output buffer) is the winner's result.
    """
    known = lookup(key)
    if known in candidates:
        return known
    for run in candidates.values():
        run()
    best = {name: float("inf") for name in candidates}
    for _ in range(repeat):
        for name, run in candidates.items():
            start = timer()
            run()
            best[name] = min(best[name], timer() - start)
    winner = min(best, key=best.get)
    if list(candidates)[-1] != winner:
        candidates[winner]()
    with _lock:
        _table[key] = winner
        path = cache_path()
        if path is not None:
            _write_locked(path, key, winner)
    return winner


def clear(disk=False):
    """Forget every remembered winner (and delete the file too when ``disk``)."""
    global _loaded_from
    with _lock:
        _table.clear()
        _loaded_from = None
        path = cache_path()
        if disk and path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass
