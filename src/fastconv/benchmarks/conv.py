"""conv2d benchmark section: the layer suite L1-L8 of issue 2, GFLOP/s per algo and per peer."""

import numpy as np

import fastconv

from ..conv import conv2d_problem
from ..dispatch import CONV2D_KERNEL_ALGOS, kernel_algos
from .common import (MIN_SECONDS, best_times, gemm_gflops, ort_single_node, try_import_onnxruntime,
                     try_import_torch)

SECTION = "conv2d"

# name: (N, C, H, W, O, k, stride, groups); padding "same" everywhere.
LAYERS = {
    "L1": (8, 3, 224, 224, 32, 3, 1, 1),
    "L2": (32, 64, 56, 56, 64, 3, 1, 1),
    "L3": (32, 64, 56, 56, 128, 3, 2, 1),
    "L4": (16, 128, 28, 28, 128, 3, 1, 1),
    "L5": (32, 256, 14, 14, 256, 3, 1, 1),
    "L6": (32, 256, 14, 14, 256, 1, 1, 1),
    "L7": (32, 64, 56, 56, 64, 3, 1, 64),
    "L8": (64, 1, 28, 28, 32, 5, 1, 1),
}
QUICK_BATCH = 2
ALGOS = CONV2D_KERNEL_ALGOS  # every fastconv algorithm (auto picks one); a column each


def layer_arrays(name, dtype=np.float32, batch=None):
    """Random (x, weight, bias, stride, groups) for one suite layer; ``batch`` overrides N."""
    n, c, h, w, o, k, stride, groups = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch or n, c, h, w)).astype(dtype)
    weight = (rng.standard_normal((o, c // groups, k, k)) / np.sqrt(c // groups * k * k)).astype(dtype)
    bias = rng.standard_normal(o).astype(dtype)
    return x, weight, bias, stride, groups


def _torch_conv(torch, x, weight, bias, stride, groups):
    """torch's conv2d with TF 'same' padding (explicit per-side pad when stride > 1)."""
    import torch.nn.functional as F

    pads = fastconv.shapes.resolve_padding(x.shape[2:], weight.shape[2:], stride, "same")
    (top, bottom), (left, right) = pads
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)
    if top == bottom and left == right:
        return lambda: F.conv2d(xt, wt, bt, stride=stride, padding=(top, left), groups=groups)
    return lambda: F.conv2d(F.pad(xt, (left, right, top, bottom)), wt, bt, stride=stride, groups=groups)


def _ort_conv(ort, x, weight, bias, stride, groups):
    (top, bottom), (left, right) = fastconv.shapes.resolve_padding(x.shape[2:], weight.shape[2:], stride, "same")
    run = ort_single_node("Conv", x.shape, x.dtype, {"w": weight, "b": bias},
                          dict(strides=[stride, stride], pads=[top, left, bottom, right], group=groups,
                               kernel_shape=list(weight.shape[2:])), ort)
    return lambda: run(x)


def run(quick=False, dtype=np.float32, layers=None, repeat=None):
    """One row per layer: GFLOP/s of each fastconv algo and of each installed peer (fastest of ``repeat``
    interleaved rounds: 10, 3 with ``quick``; with 5 the fastest round of a 40 ms call still moved
    10-20 % between runs on this shared machine)."""
    repeat = repeat or (3 if quick else 10)
    torch = try_import_torch()
    ort = try_import_onnxruntime() if np.dtype(dtype) == np.float32 else None
    peak = gemm_gflops(dtype, size=1024 if quick else 2048)
    rows = []
    for name in layers or LAYERS:
        x, weight, bias, stride, groups = layer_arrays(name, dtype, QUICK_BATCH if quick else None)
        flops = fastconv.shapes.conv2d_flops(
            x.shape, weight.shape, fastconv.shapes.conv_output_size(x.shape[2:], weight.shape[2:], stride, "same"))
        plan = fastconv.plan_conv2d(x.shape, weight.shape, stride=stride, padding="same", groups=groups, dtype=dtype)
        algos = kernel_algos(conv2d_problem("bench", x.shape, weight.shape, stride, "same", 1, groups, dtype))
        candidates = {
            algo: (lambda a=algo: fastconv.conv2d(x, weight, bias, stride=stride, padding="same", groups=groups,
                                                  algo=a))
            for algo in algos
        }
        if torch is not None:
            candidates["torch"] = _torch_conv(torch, x, weight, bias, stride, groups)
        if ort is not None:
            candidates["onnxruntime"] = _ort_conv(ort, x, weight, bias, stride, groups)
        best = best_times(candidates, repeat=repeat, min_seconds=0 if quick else MIN_SECONDS)
        gf = {k: flops / v / 1e9 for k, v in best.items()}
        ours = max(gf[algo] for algo in algos)
        auto = gf[plan.algo]
        peers = [gf[p] for p in ("torch", "onnxruntime") if p in gf]
        rows.append({
            "case": name, "shape": "x".join(map(str, x.shape)) + f" O{weight.shape[0]} k{weight.shape[2]}"
            f" s{stride}" + (f" g{groups}" if groups > 1 else ""),
            **{algo: gf.get(algo) for algo in ALGOS}, "auto": plan.algo, "auto_gflops": auto,
            "best_ours": ours, "peak": peak, "torch": gf.get("torch"), "onnxruntime": gf.get("onnxruntime"),
            "ratio": (auto / max(peers)) if peers else None,
        })
    return rows


COLUMNS = [
    ("case", "case", None), ("shape", "shape", None), ("direct", "direct", "{:.1f}"),
    ("im2col", "im2col", "{:.1f}"), ("depthwise", "depthwise", "{:.1f}"), ("first_layer", "first_layer", "{:.1f}"),
    ("winograd", "winograd", "{:.1f}"), ("auto", "auto", None), ("peak", "gemm peak", "{:.0f}"),
    ("torch", "torch", "{:.1f}"), ("onnxruntime", "onnxrt", "{:.1f}"), ("ratio", "auto/best peer", "{:.2f}"),
]
