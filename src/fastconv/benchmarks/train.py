"""Toy-training section: seconds per digits epoch with fastconv, the numpy reference and PyTorch.

The three runners train the same model from the same initial weights on the same batches
(``fastconv.nn.train_digits``); their epochs are interleaved in round-robin so load on the shared
machine hits them alike, and each backend's fastest epoch after the first (JIT compilation, warm-up)
is reported. Targets (issues 5 and 8): fastconv >= 10x faster than the reference, and faster than torch.
"""

import time

import numpy as np

from ..nn import train_digits
from .common import try_import_torch

SECTION = "training"
BATCH_SIZE = 32
COLUMNS = [("backend", "backend", None), ("data", "data", None), ("steps", "steps/epoch", None),
           ("epoch_s", "s/epoch (best)", "{:.3f}"), ("ms_per_step", "ms/step", "{:.2f}"),
           ("fastconv_speedup", "fastconv speed-up", "{:.2f}x")]


def _data(quick):
    try:
        return "digits", train_digits.load_data("digits", seed=0)
    except SystemExit:  # scikit-learn absent: a random stand-in of the same shape
        return "random", train_digits.load_data("random", seed=0, n_random=320 if quick else 1797)


def _epoch(runner, x, y, order, batch_size):
    start = time.perf_counter()
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        runner.step(x[idx], y[idx])
    return time.perf_counter() - start


def run(quick=False, epochs=None, dtype="float32"):
    """One row per backend: best seconds per epoch and fastconv's speed-up over it."""
    source, (x_train, y_train, _, _) = _data(quick)
    if quick:
        x_train, y_train = x_train[:320], y_train[:320]
    x_train = x_train.astype(dtype)
    backends = ["fastconv", "reference"] + (["torch"] if try_import_torch() is not None else [])
    runners = {b: train_digits.make_runner(b, dtype, 0, 3e-3) for b in backends}
    order_rng = np.random.default_rng(1)
    best = {b: float("inf") for b in backends}
    for epoch in range(epochs or (2 if quick else 4)):
        order = order_rng.permutation(len(y_train))
        for b in backends:
            seconds = _epoch(runners[b], x_train, y_train, order, BATCH_SIZE)
            if epoch > 0:
                best[b] = min(best[b], seconds)
            time.sleep(0.05)  # let idle thread pools park
    steps = -(-len(y_train) // BATCH_SIZE)
    rows = [{"backend": b, "data": source, "dtype": dtype, "steps": steps, "epoch_s": best[b],
             "ms_per_step": best[b] / steps * 1e3, "fastconv_speedup": best[b] / best["fastconv"]}
            for b in backends]
    for row in rows:
        if row["backend"] == "torch":
            row["case"], row["ratio"] = "digits epoch", row["fastconv_speedup"]  # the peer comparison
    return rows


if __name__ == "__main__":
    import sys

    from .common import format_table

    print(format_table(run(quick="--quick" in sys.argv), COLUMNS))
