"""Benchmark section: conv_transpose2d, direct vs col2im vs "auto", with torch and onnxruntime side by side.

Cases (issue 3), NCHW input -> output channels, kernel, stride, padding (float32):

* T1 (16, 128, 28, 28) -> 64, k=4, stride 2, padding 1   (DCGAN-style 2x upsampling)
* T2 (32, 256, 14, 14) -> 128, k=2, stride 2, padding 0  (U-Net-style, non-overlapping)
* T3 (8, 64, 56, 56) -> 3, k=3, stride 1, padding 1      (few output channels)

GFLOP/s counts ``2 * N * C_in * H * W * O * kH * kW`` (the useful multiply-adds). Every candidate of a
case is timed interleaved in one process (fastest of ``repeat`` rounds, :func:`.common.best_times`), all
returning fresh results in default-allocator mode (fastconv's results come from its caching pool, torch's
from its allocator, onnxruntime's from its arena), all on ``os.cpu_count()`` threads:

* ``torch``: ``torch.nn.functional.conv_transpose2d`` on the same arrays (NCHW);
* ``ort``: one ONNX ``ConvTranspose`` node (same weight, strides, pads) through onnxruntime's CPU provider,
  timed twice, with its default spinning intra-op threads and with spinning off
  (:func:`.common.ort_single_node`); the faster of the two is the peer.

``ratio`` = "auto" / the best installed peer (None when no peer is installed). Every candidate's result is
checked against the ``direct`` one before timing.
"""

import os

import numpy as np

from ..conv_transpose import conv_transpose2d, conv_transpose2d_problem, plan_conv_transpose2d
from .common import (MIN_SECONDS, best_times, gemm_gflops, ort_single_node, try_import_onnxruntime,
                     try_import_torch)

SECTION = "conv_transpose2d"

CASES = {
    # name: (x_shape, c_out, k, stride, padding)
    "T1": ((16, 128, 28, 28), 64, 4, 2, 1),
    "T2": ((32, 256, 14, 14), 128, 2, 2, 0),
    "T3": ((8, 64, 56, 56), 3, 3, 1, 1),
}
ALGOS = ("direct", "col2im")


def _ort_runner(ort, x, w, stride, padding, threads):
    """A zero-argument callable running ONNX ConvTranspose through onnxruntime with its default session
    options (spinning intra-op threads)."""
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
    return lambda: session.run(None, feeds)[0]


def _candidates(x, w, stride, padding, torch, ort, threads):
    """name -> zero-argument callable returning the (N, O, OH, OW) result."""
    candidates = {
        algo: (lambda algo=algo: conv_transpose2d(x, w, stride=stride, padding=padding, algo=algo))
        for algo in ALGOS
    }
    if torch is not None:
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        fn = torch.nn.functional.conv_transpose2d
        candidates["torch"] = lambda: fn(tx, tw, stride=stride, padding=padding)
    if ort is not None:
        candidates["ort"] = _ort_runner(ort, x, w, stride, padding, threads)
        no_spin = ort_single_node("ConvTranspose", x.shape, x.dtype, {"w": w},
                                  dict(strides=[stride, stride], pads=[padding] * 4,
                                       kernel_shape=list(w.shape[2:])), ort)
        candidates["ort_nospin"] = lambda: no_spin(x)
    return candidates


def run(quick=False, repeat=None):
    """Measure every case; return one row per case: GFLOP/s of ``direct``, ``col2im``, the algorithm
    "auto" picks and its GFLOP/s, ``torch``, ``ort`` (best of spinning / not), the sgemm peak of the run,
    and ``ratio`` = auto / best peer. ``quick`` shrinks the batch to 2 and the rounds to 3 (for CI)."""
    threads = os.cpu_count() or 1
    repeat = repeat or (3 if quick else 10)
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
        auto = plan_conv_transpose2d(x.shape, w.shape, stride=stride, padding=padding).algo
        candidates = _candidates(x, w, stride, padding, torch, ort, threads)
        expected = np.asarray(candidates["direct"]())
        for key, fn in candidates.items():
            np.testing.assert_allclose(np.asarray(fn()), expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max(),
                                       err_msg=f"{name} {key}")
        seconds = best_times(candidates, repeat=repeat, spinning={"ort"}, min_seconds=0 if quick else MIN_SECONDS)
        gflops = {key: problem.flops / t / 1e9 for key, t in seconds.items()}
        ort_best = max([gflops[p] for p in ("ort", "ort_nospin") if p in gflops], default=None)
        peers = [v for v in (gflops.get("torch"), ort_best) if v is not None]
        rows.append({
            "case": name,
            "shape": f"{x_shape}->{c_out} k{k} s{stride} p{padding}",
            "direct": gflops["direct"],
            "col2im": gflops["col2im"],
            "auto": auto,
            "auto_gflops": gflops[auto],
            "auto_ms": seconds[auto] * 1e3,
            "torch_gflops": gflops.get("torch"),
            "ort_gflops": ort_best,
            "ort_spin_gflops": gflops.get("ort"),
            "ort_nospin_gflops": gflops.get("ort_nospin"),
            "peak_gflops": peak,
            "ratio": gflops[auto] / max(peers) if peers else None,
        })
    return rows


COLUMNS = [("case", "case", None), ("shape", "shape", None), ("direct", "direct", "{:.1f}"),
           ("col2im", "col2im", "{:.1f}"), ("auto", "auto", None), ("auto_ms", "auto ms", "{:.2f}"),
           ("auto_gflops", "auto GFLOP/s", "{:.1f}"), ("torch_gflops", "torch", "{:.1f}"),
           ("ort_spin_gflops", "ort", "{:.1f}"), ("ort_nospin_gflops", "ort no-spin", "{:.1f}"),
           ("peak_gflops", "sgemm peak", "{:.0f}"), ("ratio", "auto/best peer", "{:.2f}")]


if __name__ == "__main__":
    import sys

    from .common import format_table

    print(format_table(run(quick="--quick" in sys.argv), COLUMNS))
