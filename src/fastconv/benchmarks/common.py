"""Measuring method shared by every benchmark section.

* Fastest of several runs (noise on a shared machine only adds time), peers interleaved in
  round-robin in one process, with a short pause between calls so idle spinning pools park.
* Machine limits measured in the same run: numpy GEMM GFLOP/s and copy GB/s.
"""

import time

import numpy as np

PAUSE_SECONDS = 0.02
# After a call of a peer whose idle threads spin (onnxruntime's default intra-op pool): long enough for
# them to park. Measured 2026-12-07, T2, the same fastconv call run right after onnxruntime and again
# after it: 131 vs 182 GFLOP/s with 20 ms between calls, 129 vs 183 with 30 ms, 180 vs 179 with 50 ms
# (torch's pool: 182 vs 182 after 20 ms).
SPIN_PARK_SECONDS = 0.06


# Rounds beyond ``repeat`` for short calls: continue until every candidate has run this long in all, at
# most MAX_ROUNDS rounds. A 1 ms call's fastest of 10 rounds was a lottery here: after the pause the
# second core is often not running (a numba parallel region's join waited 0.15 ms at the median and 7.8 ms
# at the 90th percentile after 20 ms idle, 4 us without the pause), and conv2d L8's ratio moved 0.72-1.57
# between runs. Every candidate gets the same rounds.
MIN_SECONDS = 0.25
MAX_ROUNDS = 40


def best_times(candidates, repeat=5, pause=PAUSE_SECONDS, spinning=(), min_seconds=0.0):
    """Interleave ``candidates`` (name -> zero-argument callable) and return name -> best seconds.

    Every callable is run once first (JIT compilation, warm caches), then ``repeat`` rounds in
    round-robin order, and more (up to ``MAX_ROUNDS``) until each has run ``min_seconds`` in all; each
    call is followed by ``pause`` seconds of sleep, or ``SPIN_PARK_SECONDS`` for the names in
    ``spinning`` (peers whose idle threads keep spinning and would slow the next call).
    """
    for fn in candidates.values():
        fn()
    best = {name: float("inf") for name in candidates}
    total = {name: 0.0 for name in candidates}
    rounds = 0
    while rounds < repeat or (rounds < MAX_ROUNDS and min(total.values()) < min_seconds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            seconds = time.perf_counter() - start
            best[name] = min(best[name], seconds)
            total[name] += seconds
            time.sleep(max(pause, SPIN_PARK_SECONDS) if name in spinning else pause)
        rounds += 1
    return best


def gemm_gflops(dtype=np.float32, size=2048, repeat=5):
    """The machine's GEMM peak as numpy/BLAS delivers it: best GFLOP/s of an NxN matmul."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    c = np.empty((size, size), dtype=dtype)
    seconds = best_times({"gemm": lambda: np.matmul(a, b, out=c)}, repeat=repeat)["gemm"]
    return 2 * size**3 / seconds / 1e9


def copy_gbps(nbytes=256 * 2**20, repeat=5):
    """Memory copy bandwidth: (read + write bytes) / best time of ``np.copyto`` on ``nbytes``."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    seconds = best_times({"copy": lambda: np.copyto(dst, src)}, repeat=repeat)["copy"]
    return 2 * nbytes / seconds / 1e9


def try_import_torch():
    """torch, set to the machine's core count, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    import os

    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def try_import_onnxruntime():
    """(onnxruntime, onnx) or None when either is not installed."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime, onnx


def format_table(rows, columns):
    """Plain-text table of ``rows`` (dicts) over ``columns`` [(key, header, format)]."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        line = []
        for key, _, fmt in columns:
            value = row.get(key)
            line.append("-" if value is None else (fmt.format(value) if fmt else str(value)))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    out = []
    for i, r in enumerate(cells):
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def ort_single_node(op_type, x_shape, dtype, initializers, attributes, ort_and_onnx):
    """An onnxruntime session running one ``op_type`` node on input "x" (2 intra-op threads, no spinning).

    ``initializers`` is an ordered dict name -> array (e.g. weight, bias) fed as constant inputs.
    Returns a callable ``run(x) -> ndarray``.
    """
    import os

    onnxruntime, onnx = ort_and_onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT if np.dtype(dtype) == np.float32 else TensorProto.DOUBLE
    x_info = helper.make_tensor_value_info("x", elem, list(x_shape))
    y_info = helper.make_tensor_value_info("y", elem, None)
    inits = [numpy_helper.from_array(np.ascontiguousarray(v), name=k) for k, v in initializers.items()]
    node = helper.make_node(op_type, ["x", *initializers], ["y"], **attributes)
    graph = helper.make_graph([node], "bench", [x_info], [y_info], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def full_size_requested():
    """True when ``FASTCONV_BENCH_FULL=1``: benchmarks use the issues' full sizes, not CI's reduced ones."""
    import os

    return os.environ.get("FASTCONV_BENCH_FULL") == "1"
