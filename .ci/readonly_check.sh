#!/usr/bin/env bash
# Install fastconv into a read-only location and run it with a HOME that cannot be written: numba must
# fall back to no on-disk cache instead of crashing. As root (CI here) file modes do not stop writes,
# so the install is bind-mounted read-only in a private mount namespace; otherwise chmod suffices.
set -euo pipefail
cd "$(dirname "$0")/.."
RO="$(mktemp -d)"
trap 'chmod -R u+w "$RO" 2>/dev/null; rm -rf "$RO"' EXIT
python -m pip install --quiet --target "$RO/site" .
mkdir -p "$RO/home"
chmod -R a-w "$RO/site" "$RO/home"
PY="$(python -c 'import os, sys; print(os.path.realpath(sys.executable))')"
CHECK='
import sys
import numpy as np, fastconv, fastconv.reference, fastconv._jit as jit
assert fastconv.__file__.startswith(sys.argv[1]), fastconv.__file__
assert not jit.CACHE_ENABLED, jit.CACHE_DIR
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
got = fastconv.conv2d(x, w, padding="same")
want = fastconv.reference.conv2d(x, w, padding="same")
np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
print("read-only install OK: cache disabled, conv2d correct")
'
RUN_ENV=(env -i PATH=/usr/bin:/bin HOME="$RO/home" PYTHONPATH="$RO/site" PYTHONDONTWRITEBYTECODE=1)
if [ "$(id -u)" = "0" ]; then
    unshare -m sh -c 'mount --bind -o ro "$1" "$1" && mount --bind -o ro "$2" "$2" && shift 2 && cd / && exec "$@"' \
        sh "$RO/site" "$RO/home" "${RUN_ENV[@]}" "$PY" -c "$CHECK" "$RO/site"
else
    (cd / && "${RUN_ENV[@]}" "$PY" -c "$CHECK" "$RO/site")
fi
