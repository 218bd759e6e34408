"""Benchmark section: conv_transpose2d, direct vs col2im, with torch and onnxruntime side by side.

Cases (issue 3), NCHW input -> output channels, kernel, stride, padding (float32):

* T1 (16, 128, 28, 28) -> 64, k=4, stride 2, padding 1   (DCGAN-style 2x upsampling)
* T2 (32, 256, 14, 14) -> 128, k=2, stride 2, padding 0  (U-Net-style, non-overlapping)
* T3 (8, 64, 56, 56) -> 3, k=3, stride 1, padding 1      (few output channels)

GFLOP/s counts ``2 * N * C_in * H * W * O * kH * kW`` (the useful multiply-adds). Every candidate of a
case is timed interleaved in one process (fastest of ``repeat`` rounds, :func:`.common.best_times`).
``ratio`` = ours / the best installed peer (None when no peer is installed).
"""

import numpy as np

from ..conv_transpose import conv_transpose2d, conv_transpose2d_problem
from .common import best_times, gemm_gflops, try_import_onnxruntime, try_import_torch

SECTION = "conv_transpose2d"

CASES = {
    # name: (x_shape, c_out, k, stride, padding)
    "T1": ((16, 128, 28, 28), 64, 4, 2, 1),
    "T2": ((32, 256, 14, 14), 128, 2, 2, 0),
    "T3": ((8, 64, 56, 56), 3, 3, 1, 1),
}
ALGOS = ("direct", "col2im")


def _ort_runner(ort, x, w, stride, padding, threads):
    """A zero-argument callable running ONNX ConvTranspose through onnxruntime on ``x``."""
    onnxruntime, onnx = ort
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[stride, stride],
                            pads=[padding] * 4, kernel_shape=list(w.shape[2:]))
    graph = helper.make_graph(
        [node], "conv_transpose",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, name="w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    feeds = {"x": x}
    return lambda: session.run(None, feeds)


def run(quick=False):
    """Measure every case; return rows ``case, shape, algo, ms, gflops, peak_gflops, torch_gflops,
    ort_gflops, ratio``. ``quick`` shrinks the batch to 2 and the rounds to 3 (for CI)."""
    import os

    threads = os.cpu_count() or 1
    repeat = 3 if quick else 10
    torch = try_import_torch()
    ort = try_import_onnxruntime()
    peak = gemm_gflops(np.float32, size=1024 if quick else 2048, repeat=repeat)
    rng = np.random.default_rng(0)
    rows = []
    for name, (x_shape, c_out, k, stride, padding) in CASES.items():
        if quick:
            x_shape = (2,) + x_shape[1:]
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal((x_shape[1], c_out, k, k)).astype(np.float32)
        problem = conv_transpose2d_problem(SECTION, x.shape, w.shape, stride, padding, 0, None, 1, 1, np.float32)
        out = np.empty((x_shape[0], c_out) + problem.out_hw, np.float32)
        candidates = {
            algo: (lambda algo=algo: conv_transpose2d(x, w, stride=stride, padding=padding, algo=algo, out=out))
            for algo in ALGOS
        }
        if torch is not None:
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            fn = torch.nn.functional.conv_transpose2d
            candidates["torch"] = lambda: fn(tx, tw, stride=stride, padding=padding)
        if ort is not None:
            candidates["ort"] = _ort_runner(ort, x, w, stride, padding, threads)
        seconds = best_times(candidates, repeat=repeat)
        gflops = {key: problem.flops / t / 1e9 for key, t in seconds.items()}
        peers = [gflops[p] for p in ("torch", "ort") if p in gflops]
        for algo in ALGOS:
            rows.append({
                "case": name,
                "shape": f"{x_shape}->{c_out} k{k} s{stride} p{padding}",
                "algo": algo,
                "ms": seconds[algo] * 1e3,
                "gflops": gflops[algo],
                "peak_gflops": peak,
                "torch_gflops": gflops.get("torch"),
                "ort_gflops": gflops.get("ort"),
                "ratio": gflops[algo] / max(peers) if peers else None,
            })
    return rows


COLUMNS = [("case", "case", None), ("shape", "shape", None), ("algo", "algo", None), ("ms", "ms", "{:.2f}"),
           ("gflops", "GFLOP/s", "{:.1f}"), ("torch_gflops", "torch", "{:.1f}"), ("ort_gflops", "ort", "{:.1f}"),
           ("ratio", "ratio", "{:.2f}"), ("peak_gflops", "sgemm peak", "{:.0f}")]


if __name__ == "__main__":
    import sys

    from .common import format_table

    print(format_table(run(quick="--quick" in sys.argv), COLUMNS))
