"""Benchmark section: conv2d_backward (grad_x + grad_weight) vs torch autograd, side by side.

Cases (issue 8), NCHW input -> output channels, 3x3, stride 1, padding 1 ("same"), float32:

* L2 (32, 64, 56, 56) -> 64
* L4 (16, 128, 28, 28) -> 128
* L5 (32, 256, 14, 14) -> 256

and the two convolutions of the digits training loop (issue 5), timed per call over a loop of calls:

* digits-conv1 (32, 1, 8, 8) -> 16, ``output_mask=(False, True, True)`` (a first layer: no grad_x)
* digits-conv2 (32, 16, 4, 4) -> 32, all three gradients

torch: ``y = F.conv2d(x, w, padding=1)`` once with ``x`` and ``w`` requiring grad (plus ``b`` for the
digits cases), then ``torch.autograd.grad(y, inputs, g, retain_graph=True)`` is timed: the backward alone,
both gradients in one call, as ``y.backward(g)`` runs it. fastconv: ``conv2d_backward(g, x, w, padding=1,
output_mask=...)`` with the same gradients requested (L cases: ``(True, True, False)``).

GFLOP/s counts ``2 * 2 * MACs`` (grad_x and grad_weight, ``MACs = N * O * OH * OW * C * kH * kW``) over the
time. ``ratio`` = fastconv GFLOP/s / torch GFLOP/s (= torch time / fastconv time); ``sgemm`` is numpy's
float32 GEMM peak measured in the same run. Fastest of ``repeat`` interleaved rounds
(:func:`.common.best_times`); the machine's load shows up in ``sgemm``.
"""

import numpy as np

from ..backward import conv2d_backward
from .common import best_times, gemm_gflops, try_import_torch

SECTION = "conv2d_backward"

CASES = {
    # name: (x_shape, c_out, k, output_mask, calls per timing)
    "L2": ((32, 64, 56, 56), 64, 3, (True, True, False), 1),
    "L4": ((16, 128, 28, 28), 128, 3, (True, True, False), 1),
    "L5": ((32, 256, 14, 14), 256, 3, (True, True, False), 1),
    "digits-conv1": ((32, 1, 8, 8), 16, 3, (False, True, True), 200),
    "digits-conv2": ((32, 16, 4, 4), 32, 3, (True, True, True), 200),
}
QUICK_BATCH = 2  # batch of the L cases with ``quick`` (the digits cases keep theirs: they are tiny)


def _looped(fn, calls):
    """``fn`` called ``calls`` times (per-call overhead cases are timed over a loop)."""
    if calls == 1:
        return fn

    def loop():
        for _ in range(calls):
            fn()

    return loop


def _torch_backward(torch, x, w, g, mask):
    """A zero-argument callable timing torch autograd's backward of conv2d for the masked gradients."""
    import torch.nn.functional as F

    tx = torch.from_numpy(x).requires_grad_(mask[0])
    tw = torch.from_numpy(w).requires_grad_(True)
    tb = torch.zeros(w.shape[0], dtype=tx.dtype, requires_grad=True) if mask[2] else None
    y = F.conv2d(tx, tw, tb, padding=w.shape[2] // 2)
    inputs = [t for t, wanted in zip((tx, tw, tb), mask) if wanted]
    tg = torch.from_numpy(g)
    return lambda: torch.autograd.grad(y, inputs, tg, retain_graph=True)


def run(quick=False):
    """Measure every case; rows ``case, shape, ms, us_per_call, gflops, torch_ms, torch_gflops, ratio,
    sgemm``. ``quick`` cuts the L cases' batch to 2 and the rounds to 3 (for CI)."""
    repeat = 3 if quick else 7
    torch = try_import_torch()
    peak = gemm_gflops(np.float32, size=1024 if quick else 2048, repeat=repeat)
    rng = np.random.default_rng(0)
    rows = []
    for name, (x_shape, c_out, k, mask, calls) in CASES.items():
        if quick and calls == 1:
            x_shape = (QUICK_BATCH,) + x_shape[1:]
        n_batch, c_in, ih, iw = x_shape
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = (rng.standard_normal((c_out, c_in, k, k)) / np.sqrt(c_in * k * k)).astype(np.float32)
        g = rng.standard_normal((n_batch, c_out, ih, iw)).astype(np.float32)
        candidates = {"fastconv": _looped(lambda: conv2d_backward(g, x, w, padding=k // 2, output_mask=mask),
                                          calls)}
        if torch is not None:
            candidates["torch"] = _looped(_torch_backward(torch, x, w, g, mask), calls)
        seconds = {key: t / calls for key, t in best_times(candidates, repeat=repeat).items()}
        macs = n_batch * c_out * ih * iw * c_in * k * k
        flops = 2 * macs * (int(mask[0]) + int(mask[1]))
        gflops = {key: flops / t / 1e9 for key, t in seconds.items()}
        rows.append({
            "case": name,
            "shape": f"{x_shape}->{c_out} k{k} mask{''.join('1' if m else '0' for m in mask)}",
            "ms": seconds["fastconv"] * 1e3,
            "us_per_call": seconds["fastconv"] * 1e6,
            "gflops": gflops["fastconv"],
            "torch_ms": seconds["torch"] * 1e3 if "torch" in seconds else None,
            "torch_gflops": gflops.get("torch"),
            "ratio": gflops["fastconv"] / gflops["torch"] if "torch" in gflops else None,
            "sgemm": peak,
        })
    return rows


COLUMNS = [("case", "case", None), ("shape", "shape", None), ("ms", "ms", "{:.3f}"),
           ("gflops", "GFLOP/s", "{:.1f}"), ("torch_ms", "torch ms", "{:.3f}"),
           ("torch_gflops", "torch GFLOP/s", "{:.1f}"), ("ratio", "ratio", "{:.2f}"), ("sgemm", "sgemm", "{:.0f}")]


if __name__ == "__main__":
    import sys

    from .common import format_table

    print(format_table(run(quick="--quick" in sys.argv), COLUMNS))
