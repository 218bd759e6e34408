"""Benchmark section: pooling, with the machine's copy bandwidth and torch / onnxruntime side by side.

Cases (issue 4), float32 NCHW:

* P1 max 2x2 / stride 2 on (32, 64, 112, 112)
* P2 max 3x3 / stride 2 / padding 1 on (32, 64, 112, 112)   (ResNet stem, overlapping)
* P3 avg 2x2 / stride 2 on (32, 64, 112, 112)
* P4 avg 3x3 / stride 1 / padding 1 on (32, 64, 112, 112)   (count_include_pad, PyTorch's default)
* P5 SPP levels (1, 2, 4), max, on (32, 256, 13, 13); torch's SPP = adaptive_max_pool2d per level +
  reshape + cat. onnxruntime has no adaptive pooling; its SPP is a graph of one GlobalMaxPool (level 1) or
  MaxPool with the paper's window ``ceil(a / l)`` and stride ``floor(a / l)`` per level, each Flatten-ed,
  then Concat: the same bins (hence the same numbers) as ours whenever the paper rule gives PyTorch's
  adaptive bins, which holds for (1, 2, 4) on 13x13 (else ORT is not reported for that case).

Pooling is memory-bound, so the figure of merit is GB/s = (input bytes + output bytes) / time, next to
``copy_gbps`` (``np.copyto`` read + write bandwidth) measured in the same run. Every candidate of a case is
timed interleaved in one process (fastest of 20 rounds, :func:`.common.best_times`); ours writes
into a preallocated ``out`` (peers allocate theirs). ``speedup`` = best installed peer time / ours,
``torch_speedup`` = torch time / ours (the issue's target).
"""

import numpy as np

from ..pool import avg_pool2d, max_pool2d, spatial_pyramid_pool2d
from ..shapes import adaptive_bins, paper_bins, paper_window_stride
from .common import MIN_SECONDS, best_times, copy_gbps, try_import_onnxruntime, try_import_torch

SECTION = "pooling"

BIG = (32, 64, 112, 112)
CASES = {
    # name: (op, x_shape, kernel, stride, padding)
    "P1 max 2x2/s2": ("max", BIG, 2, 2, 0),
    "P2 max 3x3/s2/p1": ("max", BIG, 3, 2, 1),
    "P3 avg 2x2/s2": ("avg", BIG, 2, 2, 0),
    "P4 avg 3x3/s1/p1": ("avg", BIG, 3, 1, 1),
    "P5 SPP (1,2,4) max": ("spp", (32, 256, 13, 13), (1, 2, 4), None, None),
}
QUICK_BATCH = 2


def _ort_runner(ort, x, op, kernel, stride, padding, threads):
    """A zero-argument callable running ONNX MaxPool / AveragePool (count_include_pad=1) on ``x``."""
    from onnx import TensorProto, helper

    attrs = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[padding] * 4)
    if op == "avg":
        attrs["count_include_pad"] = 1
    node = helper.make_node("MaxPool" if op == "max" else "AveragePool", ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    session = _ort_session(ort, graph, threads)
    feeds = {"x": x}
    return lambda: session.run(None, feeds)


def _ort_session(ort, graph, threads):
    """An onnxruntime session for ``graph`` (opset 13, CPU, ``threads`` intra-op threads)."""
    onnxruntime = ort[0]
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _ort_spp_runner(ort, x, levels, threads):
    """A zero-argument callable running SPP max as an ONNX graph (GlobalMaxPool / MaxPool per level, Flatten,
    Concat), or None when the paper's window/stride rule does not give the adaptive bins on ``x``'s size."""
    from onnx import TensorProto, helper

    h, w = x.shape[2:]
    nodes, outputs = [], []
    for i, level in enumerate(levels):
        lh, lw = (level, level) if isinstance(level, int) else level
        if paper_bins(h, lh) != adaptive_bins(h, lh) or paper_bins(w, lw) != adaptive_bins(w, lw):
            return None
        pooled, flat = f"p{i}", f"f{i}"
        if (lh, lw) == (1, 1):
            nodes.append(helper.make_node("GlobalMaxPool", ["x"], [pooled]))
        else:
            (kh, sh), (kw, sw) = paper_window_stride(h, lh), paper_window_stride(w, lw)
            nodes.append(helper.make_node("MaxPool", ["x"], [pooled], kernel_shape=[kh, kw], strides=[sh, sw]))
        nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
        outputs.append(flat)
    nodes.append(helper.make_node("Concat", outputs, ["y"], axis=1))
    graph = helper.make_graph(nodes, "spp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    session = _ort_session(ort, graph, threads)
    feeds = {"x": x}
    return lambda: session.run(None, feeds)


def _candidates(op, x, kernel, stride, padding, out, torch, ort, threads):
    """name -> zero-argument callable for ours and every installed peer."""
    if op == "spp":
        cands = {"ours": lambda: spatial_pyramid_pool2d(x, kernel, mode="max", out=out)}
        if torch is not None:
            tx = torch.from_numpy(x)
            amp = torch.nn.functional.adaptive_max_pool2d
            cands["torch"] = lambda: torch.cat([amp(tx, lv).reshape(x.shape[0], -1) for lv in kernel], dim=1)
        runner = None if ort is None else _ort_spp_runner(ort, x, kernel, threads)
        if runner is not None:
            cands["ort"] = runner
        return cands
    if op == "max":
        cands = {"ours": lambda: max_pool2d(x, kernel, stride=stride, padding=padding, out=out)}
    else:
        cands = {"ours": lambda: avg_pool2d(x, kernel, stride=stride, padding=padding, out=out)}
    if torch is not None:
        tx = torch.from_numpy(x)
        fn = torch.nn.functional.max_pool2d if op == "max" else torch.nn.functional.avg_pool2d
        cands["torch"] = lambda: fn(tx, kernel, stride, padding)
    if ort is not None:
        cands["ort"] = _ort_runner(ort, x, op, kernel, stride, padding, threads)
    return cands


def _reference_output(op, x, kernel, stride, padding):
    if op == "spp":
        return spatial_pyramid_pool2d(x, kernel)
    if op == "max":
        return max_pool2d(x, kernel, stride=stride, padding=padding)
    return avg_pool2d(x, kernel, stride=stride, padding=padding)


def run(quick=False):
    """Measure every case; rows ``case, shape, ms, gbps, copy_gbps, torch_ms, ort_ms, speedup, torch_speedup``.

    ``quick`` shrinks the batch to 2 and the rounds to 3 (for CI); the full run uses the issue's sizes.
    """
    import os

    threads = os.cpu_count() or 1
    repeat = 3 if quick else 20
    torch = try_import_torch()
    ort = try_import_onnxruntime()
    copy = copy_gbps(nbytes=(16 if quick else 256) * 2**20, repeat=repeat)
    rng = np.random.default_rng(0)
    rows = []
    for name, (op, x_shape, kernel, stride, padding) in CASES.items():
        if quick:
            x_shape = (QUICK_BATCH,) + x_shape[1:]
        x = rng.standard_normal(x_shape, dtype=np.float32)
        out = _reference_output(op, x, kernel, stride, padding)
        times = best_times(_candidates(op, x, kernel, stride, padding, out, torch, ort, threads), repeat=repeat,
                           spinning={"ort"}, min_seconds=0 if quick else MIN_SECONDS)
        ours = times["ours"]
        peers = [t for k, t in times.items() if k != "ours"]
        rows.append(dict(
            case=name, shape=str(x_shape), ms=ours * 1e3, gbps=(x.nbytes + out.nbytes) / ours / 1e9, copy_gbps=copy,
            torch_ms=times["torch"] * 1e3 if "torch" in times else None,
            ort_ms=times["ort"] * 1e3 if "ort" in times else None,
            speedup=min(peers) / ours if peers else None,
            torch_speedup=times["torch"] / ours if "torch" in times else None,
        ))
    return rows


COLUMNS = [("case", "case", None), ("shape", "shape", None), ("ms", "ms", "{:.2f}"), ("gbps", "GB/s", "{:.1f}"),
           ("copy_gbps", "copy GB/s", "{:.1f}"), ("torch_ms", "torch ms", "{:.2f}"), ("ort_ms", "ort ms", "{:.2f}"),
           ("torch_speedup", "vs torch", "{:.1f}x"), ("speedup", "vs best peer", "{:.1f}x")]


if __name__ == "__main__":
    import sys

    from .common import format_table

    print(format_table(run(quick="--quick" in sys.argv), COLUMNS))
