"""Cold-start section: a fresh process doing ``import fastconv`` + its first conv2d on L2.

Measured twice in subprocesses sharing a new, empty compile-cache directory: the first run compiles
every kernel it needs and writes the cache; the second loads them. Targets (issue 8): <= 10 s with an
empty cache, <= 1.5 s warm. The input arrays are created before the clock starts.
"""

import os
import shutil
import subprocess
import sys
import tempfile

SECTION = "cold start"
COLUMNS = [("cache", "compile cache", None), ("import_s", "import s", "{:.2f}"),
           ("first_call_s", "first conv2d L2 s", "{:.2f}"), ("total_s", "total s", "{:.2f}"),
           ("target_s", "target s", "{:.1f}")]

_SCRIPT = """
import time
import numpy as np
x = np.random.default_rng(0).standard_normal(({batch}, 64, 56, 56)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((64, 64, 3, 3)).astype(np.float32)
t0 = time.perf_counter()
import fastconv
t1 = time.perf_counter()
fastconv.conv2d(x, w, padding="same")
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _measure(cache_dir, batch):
    env = dict(os.environ, FASTCONV_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(batch=batch)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def run(quick=False):
    """Two rows: empty cache, then warm cache (same directory)."""
    cache_dir = tempfile.mkdtemp(prefix="fastconv-coldstart-")
    batch = 2 if quick else 32
    try:
        rows = []
        for cache, target in (("empty", 10.0), ("warm", 1.5)):
            import_s, call_s = _measure(cache_dir, batch)
            rows.append({"cache": cache, "import_s": import_s, "first_call_s": call_s,
                         "total_s": import_s + call_s, "target_s": target, "batch": batch})
        return rows
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    from .common import format_table

    print(format_table(run(quick="--quick" in sys.argv), COLUMNS))
