#!/usr/bin/env bash
# Install fastconv into a directory nobody can write, then import and compute as an unprivileged
# user with no HOME: numba must fall back to no on-disk cache instead of crashing.
set -euo pipefail
cd "$(dirname "$0")/.."
RO="$(mktemp -d)"
trap 'rm -rf "$RO"' EXIT
chmod 755 "$RO"
python -m pip install --quiet --target "$RO/site" . 
chmod -R a-w,a+rX "$RO/site"
BASE_PY="$(python -c 'import os, sys; print(os.path.realpath(sys.executable))')"
if [ "$(id -u)" = "0" ]; then
    RUN=(setpriv --reuid=65534 --regid=65534 --clear-groups)
else
    RUN=()
fi
cd /
"${RUN[@]}" env -i PATH=/usr/bin:/bin HOME=/nonexistent PYTHONPATH="$RO/site" PYTHONDONTWRITEBYTECODE=1 \
    "$BASE_PY" -I -c '
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, fastconv, fastconv.reference, fastconv._jit as jit
assert not jit.CACHE_ENABLED, jit.CACHE_DIR
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
got = fastconv.conv2d(x, w, padding="same")
want = fastconv.reference.conv2d(x, w, padding="same")
np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
print("read-only install OK: cache disabled, conv2d correct")
' "$RO/site"
