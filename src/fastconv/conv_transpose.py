"""Public transposed 2-D convolution: the adjoint (input gradient) of conv2d, on NCHW numpy arrays.

Sections: problem canonicalisation, dispatch (``choose_conv_transpose2d_algo``, ``plan_conv_transpose2d``),
layouts for the direct kernel (output phases, packed weights), the public wrapper, the direct runner, and
the col2im runner (work items, helper threads, one BLAS thread per item). Kernel index algebra:
``fastconv/_kernels/conv_transpose.py`` (direct) and ``fastconv/_kernels/conv_transpose_col2im.py``.
Formulas: ``fastconv/shapes.py`` ("Transposed convolution") and docs/conv_transpose.md.
"""

import functools
import itertools
from dataclasses import dataclass

import numba
import numpy as np

from . import memory
from ._kernels.col2im_gemm import GEMM_ROWS, GEMM_VECTORS, col2im_gemm
from ._kernels.conv_direct import MICRO_VEC_BYTES, channel_block
from ._kernels.conv_transpose import OB, conv_transpose_phases_ob1, conv_transpose_phases_ob8, interleave_phases
from ._kernels.conv_transpose_col2im import col2im_item, pack_gemm_weights
from ._kernels.conv_transpose_interleave import ROWS as INTERLEAVE_ROWS, conv_transpose_interleave
from ._kernels.conv_transpose_interleave import interleave_row_bias, interleave_weights, interleave_workspace_bytes
from ._kernels.simd import HAS_AVX512
from ._validate import (as_kernel_array, as_pair, check_array, check_choice, check_out, common_dtype,
                        conv_shapes_and_steps)
from .blas import one_blas_thread
from .conv import conv2d, run_blocked_tiles
from .conv_layout import pack_taps, tile_geometry, tile_workspace
from .dispatch import (DIRECT_BLOCK_MIN_CHANNELS, DIRECT_TILE_POSITIONS, TAP_GEMM_MAX_ROWS, TAP_GEMM_MIN_DEPTH,
                       plan_conv2d)
from .plan_cache import memoised_plan
from .shapes import transpose_geometry_2d
from .threads import current_threads, serial_if_small
from .workers import run_workers

# ---------------------------------------------------------------------------------------------------
# Problem
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvTranspose2dProblem:
    """A canonical conv_transpose2d problem: everything dispatch and the runners need, ints only."""

    n_batch: int
    c_in: int
    c_out: int
    in_hw: tuple
    kernel_hw: tuple
    stride: tuple
    dilation: tuple
    pads: tuple  # ((top, bottom), (left, right)) of the conv2d this is the adjoint of
    groups: int
    out_hw: tuple
    itemsize: int

    @property
    def flops(self):
        """``2 * N * C_in * H * W * (O / groups) * kH * kW`` (every input pixel meets every tap)."""
        kh, kw = self.kernel_hw
        return (2 * self.n_batch * self.c_in * self.in_hw[0] * self.in_hw[1]
                * (self.c_out // self.groups) * kh * kw)


def _output_hw(fn, output_size, n_batch, c_out):
    """(H, W) from an (H, W) or (N, C, H, W) ``output_size``; None stays None."""
    if output_size is None:
        return None
    if isinstance(output_size, (tuple, list)) and len(output_size) == 4:
        if tuple(output_size[:2]) != (n_batch, c_out):
            raise ValueError(
                f"{fn}: output_size must start with (N, O) = {(n_batch, c_out)} when 4 values are given, "
                f"got {tuple(output_size)!r}"
            )
        output_size = tuple(output_size[2:])
    if not (isinstance(output_size, (tuple, list)) and len(output_size) == 2):
        raise TypeError(f"{fn}: output_size must be (H, W) or (N, C, H, W), got {output_size!r}")
    return as_pair(fn, "output_size", output_size, 1)


def conv_transpose2d_problem(fn, x_shape, weight_shape, stride, padding, output_padding, output_size,
                             dilation, groups, dtype):
    """Validate shapes and options and return the canonical :class:`ConvTranspose2dProblem`."""
    x_shape, weight_shape, groups, stride, dilation = conv_shapes_and_steps(
        fn, x_shape, weight_shape, "(C_in, O/groups, kH, kW)", groups, stride, dilation,
        x_layout="(N, C_in, H, W)")
    n_batch, c_in, ih, iw = x_shape
    c_w, og, kh, kw = weight_shape
    if c_in < 1 or og < 1 or kh < 1 or kw < 1 or ih < 1 or iw < 1:
        raise ValueError(
            f"{fn}: channels, spatial sizes and kernel sizes must be >= 1, got x {x_shape}, weight {weight_shape}"
        )
    if c_w != c_in:
        raise ValueError(
            f"{fn}: weight.shape[0] must equal the input channels {c_in}, got {c_w} "
            f"(weight shape {weight_shape}, layout (C_in, O/groups, kH, kW))"
        )
    if c_in % groups:
        raise ValueError(f"{fn}: groups must divide the input channels {c_in}, got {groups}")
    c_out = og * groups
    out_hw = _output_hw(fn, output_size, n_batch, c_out)
    pads, out_hw = transpose_geometry_2d(fn, (ih, iw), (kh, kw), stride, dilation, padding, output_padding,
                                         out_hw)
    return ConvTranspose2dProblem(n_batch, c_in, c_out, (ih, iw), (kh, kw), stride, dilation, pads, groups,
                                  out_hw, np.dtype(dtype).itemsize)


# ---------------------------------------------------------------------------------------------------
# Dispatch (conv_transpose_dispatch): a pure function of the problem. Measurements: docs/conv_transpose.md.
# ---------------------------------------------------------------------------------------------------

CONV_TRANSPOSE2D_ALGOS = ("auto", "direct", "col2im")

# Output channels per group from which the 8-channel kernel beats the one-channel kernel (it skips
# empty halves, and reads each input run once for all channels). Measured on T3's input (8, 64, 56, 56),
# k=3, kernel only, GFLOP/s one-channel vs 8-channel: O=1 28.5 vs 24.3, O=2 43.4 vs 47.2, O=3 51.1 vs 61.7.
TRANSPOSE_OB8_MIN_CHANNELS = 2

# "auto": GEMM + col2im unless the GEMM is shallow (C_in/groups < COL2IM_MIN_DEPTH) and an output
# phase has many taps (kH * kW / (sH * sW) >= DIRECT_MIN_PHASE_TAPS), where the direct kernel reads each
# input once for all of them. Measured (one thread, CPU time, 84 problems, docs/conv_transpose.md
# "Dispatch"): col2im 1.15-7.7x the direct kernel on every problem with C_in/groups >= 4; with
# C_in/groups == 1, 0.31-0.68x at k3 s1 (9 taps per phase), 0.75-1.36x at k4 s2 (4), 1.65-3.9x at k2 s2 (1).
COL2IM_MIN_DEPTH = 4
DIRECT_MIN_PHASE_TAPS = 6

# Stride 1 (no padding beyond the kernel's reach): "direct" runs the equivalent conv2d, whose direct
# kernels beat GEMM + col2im (2026-12-07, AVX-512, 2 threads, best of 10 interleaved, GFLOP/s conv2d vs
# col2im): T3 (8, 64, 56, 56) -> 3 k3 74 vs 59; -> 64 197 vs 163; (16, 128, 28, 28) -> 64 195 vs 178;
# (32, 256, 14, 14) -> 128 202 vs 181; 1x1 99 vs 82; (8, 16, 56, 56) -> 3 k5 99 vs 41; but one output
# channel, (32, 64, 56, 56) -> 1 k3, 29 vs 38 (the few-channel kernel computes 3). AVX-512 only: with the
# AVX2 build (NUMBA_CPU_NAME=haswell, same machine) conv2d's own dispatch sends some of these to im2col,
# e.g. (8, 256, 14, 14) -> 256 k3 p0: 116 vs col2im 152 GFLOP/s, and a 1x1 loses too (92 vs 97).
CONV2D_MIN_CHANNELS = 2

# Before that rule: the compiled GEMM + col2im kernel (``col2im`` with at most COL2IM_COMPILED_MAX_ROWS
# GEMM rows) when the GEMM is deep enough (C_in/groups >= COMPILED_MIN_DEPTH) and the kernel is not 1x1.
# Measured 2026-12-07 (2 threads, 20 ms pause before each call as in the benchmark, best of 14,
# GFLOP/s compiled col2im vs the conv2d route): (8, 64, 56, 56) -> 1 k3 32 vs 14, -> 3 (T3) 80 vs 75,
# -> 8 110 vs 47, -> 16 138 vs 93, but -> 32 139 vs 184; (32, 64, 56, 56) -> 3 123 vs 86;
# (4, 256, 14, 14) -> 6 33 vs 15; shallow (8, 16, 56, 56) -> 3 k5 52 vs 54-65; 1x1 -> 64 100 vs 133.
COMPILED_MIN_DEPTH = TAP_GEMM_MIN_DEPTH

# Direct kernel work items: at most this many accumulator bytes per half block (4 channels x tile
# positions, so an L1-resident 16 KiB), measured best on T1 (tile 1024 float32: 87 GFLOP/s vs 62 at 256,
# because each 3-tap step has a fixed set-up cost amortised over the tile); and at least
# DIRECT_MIN_ITEMS work items so a single image still feeds every core. A pure function of the shape:
# never of the thread count (bit-identical results).
DIRECT_ACC_BYTES = 16 * 2**10
DIRECT_MIN_ITEMS = 32


@dataclass(frozen=True)
class TransposePlan:
    """What ``conv_transpose2d`` would run: the algorithm, why, and its cost."""

    algo: str
    reason: str
    flops: int
    workspace_bytes: int
    out_shape: tuple


def choose_conv_transpose2d_algo(problem, algo="auto"):
    """Return ``(algo, reason)``; an ``algo`` other than "auto" is honoured.

    "auto" picks "col2im" when every output pixel has exactly one tap (stride = kernel (kH, 2), no padding,
    at least ``INTERLEAVE_ROWS`` GEMM rows per group: the GEMM's micro-tiles go straight into the output,
    ``uses_interleave``); then "col2im" (a GEMM per work item, compiled micro-tiles or single-threaded BLAS by shape,
    then a col2im gather) when its items have few GEMM rows on a deep GEMM; else the stride-1 conv2d
    route from 2 output channels per group (AVX-512); else "col2im" unless the per-group GEMM is too
    shallow for BLAS (``C_in/groups < COL2IM_MIN_DEPTH``) while each output phase
    has many taps (``kH * kW / (sH * sW) >= DIRECT_MIN_PHASE_TAPS``): then "direct", which reads each
    input once for all the taps of a phase (depthwise k3 stride 1: 2x col2im). Measurements behind the
    thresholds: docs/conv_transpose.md.
    """
    check_choice("conv_transpose2d", "algo", algo, CONV_TRANSPOSE2D_ALGOS)
    if algo != "auto":
        return algo, "requested by the caller"
    if uses_interleave(problem):
        return "col2im", ("stride = kernel (kH, 2), no padding: GEMM micro-tiles interleaved straight into the "
                          "output (each output pixel has one tap: no col2im sum)")
    kh, kw = problem.kernel_hw
    sh, sw = problem.stride
    depth = problem.c_in // problem.groups
    taps = kh * kw / (sh * sw)
    if depth >= COMPILED_MIN_DEPTH and kh * kw > 1 and has_few_gemm_rows(problem, col2im_split(problem)):
        return "col2im", (f"{problem.c_out // problem.groups} output channels x {kh * kw} taps per group "
                          f"(<= {COL2IM_COMPILED_MAX_ROWS} GEMM rows) on C_in/groups = {depth} (>= "
                          f"{COMPILED_MIN_DEPTH}): compiled GEMM micro-tiles + col2im")
    if (HAS_AVX512 and problem.c_out // problem.groups >= CONV2D_MIN_CHANNELS
            and conv2d_pads(problem) is not None):
        return "direct", (f"stride 1 with {problem.c_out // problem.groups} output channels per group (>= "
                          f"{CONV2D_MIN_CHANNELS}): the equivalent conv2d (flipped kernel) and its dispatch")
    if depth >= COL2IM_MIN_DEPTH:
        return "col2im", (f"GEMM depth C_in/groups = {depth} >= {COL2IM_MIN_DEPTH}: "
                          f"per-item GEMMs (compiled micro-tiles or BLAS) + col2im")
    if taps < DIRECT_MIN_PHASE_TAPS:
        return "col2im", (f"GEMM depth C_in/groups = {depth} < {COL2IM_MIN_DEPTH} but {taps:.3g} taps per "
                          f"output phase (< {DIRECT_MIN_PHASE_TAPS}): per-item GEMMs (compiled micro-tiles or "
                          "BLAS) + col2im")
    return "direct", (f"GEMM depth C_in/groups = {depth} < {COL2IM_MIN_DEPTH} and {taps:.3g} taps per output "
                      f"phase (>= {DIRECT_MIN_PHASE_TAPS}): direct phase-gather kernel")


def _workspace_bytes(problem, algo):
    if algo == "col2im" and uses_interleave(problem):  # scratch tiles, a padded weight copy, the row biases
        return interleave_workspace_bytes(problem.c_in, problem.c_out, problem.groups, problem.kernel_hw[0],
                                          problem.in_hw, problem.itemsize, numba.config.NUMBA_NUM_THREADS)
    if algo == "col2im":  # every worker thread's buffers, plus the packed weights when rows are padded
        split = col2im_split(problem)
        kh, kw = problem.kernel_hw
        if uses_compiled_gemm(problem, split):  # plus the padded weights, unless read in place
            og = problem.c_out // problem.groups
            packed = 0 if rows_fill_blocks(og, kh * kw, split) else (
                problem.c_in * _ceil_div(og, split.channels) * compiled_rows(problem, split))
            return (compiled_workspace_bytes(problem, split) * numba.config.NUMBA_NUM_THREADS
                    + packed * problem.itemsize)
        packed = 0
        if split.rows != split.channels * kh * kw:
            packed = problem.c_in * _ceil_div(problem.c_out // problem.groups, split.channels) * split.rows
        return (split.workspace_bytes(problem.itemsize) * numba.config.NUMBA_NUM_THREADS
                + packed * problem.itemsize)
    pads = conv2d_pads(problem)
    if pads is not None:  # the equivalent conv2d's workspace, plus its flipped weights
        (kh, kw), og = problem.kernel_hw, problem.c_out // problem.groups
        w_shape = (problem.c_out, problem.c_in // problem.groups, kh, kw)
        plan = plan_conv2d((problem.n_batch, problem.c_in) + problem.in_hw, w_shape, padding=pads,
                           dilation=problem.dilation, groups=problem.groups, dtype=_FLOAT_OF_SIZE[problem.itemsize])
        return plan.workspace_bytes + problem.c_in * og * kh * kw * problem.itemsize
    if problem.c_out // problem.groups >= DIRECT_BLOCK_MIN_CHANNELS:
        return _phase_tiles_workspace(problem)
    layout = phase_layout(problem)
    return problem.c_in * layout.buffer_len(problem.n_batch) * problem.itemsize


_FLOAT_OF_SIZE = {4: np.float32, 8: np.float64}


def tap_gemm_problem(conv_problem):
    """The transposed convolution equal to a stride-1 conv2d problem whose padding is within the kernel's
    reach (conv2d's tap-GEMM route, ``dispatch.tap_gemm_fits``): the flipped kernel (:func:`conv2d_weight`),
    the same input, output and channels, and padding ``(k - 1) * d - p`` per side (the inverse of
    :func:`conv2d_pads`)."""
    p = conv_problem
    (kh, kw), (dh, dw) = p.kernel_hw, p.dilation
    (top, bottom), (left, right) = p.pads
    pads = (((kh - 1) * dh - top, (kh - 1) * dh - bottom), ((kw - 1) * dw - left, (kw - 1) * dw - right))
    return ConvTranspose2dProblem(p.n_batch, p.c_in, p.c_out, p.in_hw, p.kernel_hw, (1, 1), p.dilation, pads,
                                  p.groups, p.out_hw, p.itemsize)


def tap_gemm_compiles(conv_problem):
    """Whether the equivalent transposed convolution of a stride-1 conv2d runs the compiled kernel."""
    problem = tap_gemm_problem(conv_problem)
    return uses_compiled_gemm(problem, col2im_split(problem))


def tap_gemm_workspace(conv_problem):
    """Workspace bytes of conv2d's tap-GEMM route: the equivalent transposed convolution's col2im buffers
    plus the flipped weights."""
    p = conv_problem
    (kh, kw) = p.kernel_hw
    return (_workspace_bytes(tap_gemm_problem(p), "col2im")
            + p.c_in * (p.c_out // p.groups) * kh * kw * p.itemsize)


def run_tap_gemm(conv_problem, x, weight, bias, dtype, out):
    """conv2d's tap-GEMM route: ``out = conv2d(x, weight) + bias`` as the col2im path of
    :func:`tap_gemm_problem` (``weight`` (O, C/g, kH, kW); ``bias`` (O,); ``x`` already padded for padding
    modes other than zeros, ``conv_problem`` describing it)."""
    _run_col2im(tap_gemm_problem(conv_problem), x, conv2d_weight(weight, conv_problem.groups, dtype), bias, dtype,
                out)


def plan_conv_transpose2d(x_shape, weight_shape, *, stride=1, padding=0, output_padding=0, output_size=None,
                          dilation=1, groups=1, dtype=np.float32, algo="auto"):
    """Tell which algorithm ``conv_transpose2d`` would run for these shapes, why, FLOPs and workspace bytes.

    >>> plan = plan_conv_transpose2d((16, 128, 28, 28), (128, 64, 4, 4), stride=2, padding=1)
    >>> plan.algo, plan.out_shape
    ('col2im', (16, 64, 56, 56))
    """
    fn = "plan_conv_transpose2d"
    problem = conv_transpose2d_problem(fn, tuple(x_shape), tuple(weight_shape), stride, padding, output_padding,
                                       output_size, dilation, groups, np.dtype(dtype))
    chosen, reason = choose_conv_transpose2d_algo(problem, algo)
    return TransposePlan(algo=chosen, reason=reason, flops=problem.flops,
                         workspace_bytes=_workspace_bytes(problem, chosen),
                         out_shape=(problem.n_batch, problem.c_out) + tuple(problem.out_hw))


# ---------------------------------------------------------------------------------------------------
# Layout for the direct kernel: output phases, shifted taps, padded planes, packed weights
# ---------------------------------------------------------------------------------------------------


def _ceil_div(a, b):
    return -(-a // b)


def _axis_phases(in_size, k, s, d, p0, out_size):
    """Per phase ``r`` with at least one output row: (r, n_rows, [(tap k, shift q), ...])."""
    phases = []
    for r in range(s):
        n_rows = _ceil_div(out_size - r, s)
        if n_rows > 0:
            taps = [(ky, (r + p0 - ky * d) // s) for ky in range(k) if (r + p0 - ky * d) % s == 0]
            phases.append((r, n_rows, taps))
    return phases


@dataclass(frozen=True)
class PhaseLayout:
    """Geometry of the padded input planes and the per-phase tap lists (see the kernel module)."""

    pad_top: int
    pad_left: int
    rows: int
    row_len: int
    phase_geom: np.ndarray  # int64 (P, 4): ry, rx, ny, nx
    tap_start: np.ndarray  # int64 (P + 1,)
    tap_chan: np.ndarray  # int64 (T,)
    tap_ky: np.ndarray
    tap_kx: np.ndarray
    tap_off: np.ndarray

    @property
    def plane_len(self):
        return self.rows * self.row_len

    def buffer_len(self, n_batch):
        """Per channel: every image's plane back to back plus one row of slack for discarded positions."""
        return n_batch * self.plane_len + self.row_len


@functools.lru_cache(maxsize=64)
def phase_layout(problem):
    """Phases, taps and plane geometry of a canonical problem (integer bookkeeping, no input data).

    Cached per problem (a frozen dataclass); the kernels only read the arrays.
    """
    (ih, iw), (kh, kw) = problem.in_hw, problem.kernel_hw
    (sh, sw), (dh, dw) = problem.stride, problem.dilation
    ((top, _), (left, _)), (oh, ow) = problem.pads, problem.out_hw
    ys = _axis_phases(ih, kh, sh, dh, top, oh)
    xs = _axis_phases(iw, kw, sw, dw, left, ow)
    pad_top = max([0] + [-q for _, _, taps in ys for _, q in taps])
    pad_left = max([0] + [-q for _, _, taps in xs for _, q in taps])
    # Widest row any phase reads (valid columns), and the rows any phase reads.
    row_len = max([iw + pad_left] + [n + q + pad_left for _, n, taps in xs for _, q in taps])
    rows = max([ih + pad_top] + [n + q + pad_top for _, n, taps in ys for _, q in taps])
    cg = problem.c_in // problem.groups
    geom, start, parts = [], [0], []
    for ry, ny, ytaps in ys:
        for rx, nx, xtaps in xs:
            geom.append((ry, rx, ny, nx))
            # taps of this phase in (c, ky, kx) order (no zero-weight padding taps: 0 * inf = NaN)
            c, iy, ix = (a.ravel() for a in np.meshgrid(np.arange(cg), np.arange(len(ytaps)),
                                                        np.arange(len(xtaps)), indexing="ij"))
            ky = np.array([k for k, _ in ytaps], dtype=np.int64)[iy]
            kx = np.array([k for k, _ in xtaps], dtype=np.int64)[ix]
            qy = np.array([q for _, q in ytaps], dtype=np.int64)[iy]
            qx = np.array([q for _, q in xtaps], dtype=np.int64)[ix]
            parts.append(np.stack([c, ky, kx, (qy + pad_top) * row_len + qx + pad_left]))
            start.append(start[-1] + c.size)
    taps = np.concatenate(parts, axis=1) if parts else np.zeros((4, 0), dtype=np.int64)
    chan, tky, tkx, off = (np.ascontiguousarray(row, dtype=np.int64) for row in taps)
    return PhaseLayout(pad_top, pad_left, rows, row_len, np.array(geom, dtype=np.int64).reshape(-1, 4),
                       np.array(start, dtype=np.int64), chan, tky, tkx, off)


def pack_transpose_weights(weight, layout, groups, block, dtype):
    """(C_in, O/g, kh, kw) -> (G, n_blocks, T, block): tap-ordered, channels blocked (zeros beyond O / G)."""
    c_in, og, kh, kw = weight.shape
    cg = c_in // groups
    # (G, cg, kh, kw, og) so that [:, chan, ky, kx, :] gathers (G, T, og)
    wg = weight.reshape(groups, cg, og, kh, kw).transpose(0, 1, 3, 4, 2)
    taps = wg[:, layout.tap_chan, layout.tap_ky, layout.tap_kx, :].astype(dtype)
    n_blocks = _ceil_div(og, block)
    packed = np.zeros((groups, taps.shape[1], n_blocks * block), dtype=dtype)
    packed[:, :, :og] = taps
    return np.ascontiguousarray(packed.reshape(groups, taps.shape[1], n_blocks, block).transpose(0, 2, 1, 3))


# ---------------------------------------------------------------------------------------------------
# Public wrapper
# ---------------------------------------------------------------------------------------------------


def conv_transpose2d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0, output_size=None,
                     dilation=1, groups=1, algo="auto", out=None):
    """Transposed 2-D convolution: the adjoint (input gradient) of :func:`fastconv.conv2d`.

    ``conv2d`` is a cross-correlation (no kernel flip); this is its transpose, so it scatters each input
    pixel times the (unflipped) kernel into the output. Equals ``torch.nn.functional.conv_transpose2d``
    for int/pair padding, and TensorFlow's ``conv2d_transpose`` for "same"/"valid".

    Parameters
    ----------
    x : ndarray, (N, C_in, H, W), float32 or float64
    weight : ndarray, (C_in, O / groups, kH, kW)
    bias : ndarray, (O,), optional
    stride, dilation : int or (int, int), >= 1
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid", "same" or "full"
        The padding of the conv2d this is the adjoint of. Modes use conv2d's rule on an input of the
        output's size (TensorFlow): "same" gives ``OH = H * sh`` by default, "valid"
        ``OH = (H - 1) * sh + dh * (kH - 1) + 1``, "full" is the adjoint of conv2d's "full".
    output_padding : int or (int, int), ``0 <= output_padding < max(stride, dilation)``
        Selects among the reachable output sizes (must be 0 with "same" or with ``output_size``).
    output_size : (H, W) or (N, O, H, W), optional
        Target size, one of :func:`fastconv.shapes.conv_transpose_output_sizes`.
    groups : int, divides C_in (``groups == C_in`` is depthwise)
    algo : "auto", "direct" or "col2im" (see :func:`plan_conv_transpose2d`)
    out : ndarray, optional. C-contiguous result buffer of the exact shape and dtype.

    Returns
    -------
    ndarray, (N, O, OH, OW), dtype ``np.result_type(x, weight, bias)``.

    Notes
    -----
    Shapes: ``OH = (H - 1) * sh - pad_top - pad_bottom + dh * (kH - 1) + 1 + output_padding[0]``, same for W.
    ``out[n, g*og + o, y, x] = bias + sum x[n, g*cg + c, i, j] * weight[g*cg + c, o, ky, kx]`` over
    ``y + pad_top = i*sh + ky*dh`` and ``x + pad_left = j*sw + kx*dw`` (``cg = C_in/groups``, ``og = O/groups``).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 1, 3, 3), np.float32)
    >>> fastconv.conv_transpose2d(x, np.ones((1, 1, 3, 3), np.float32), stride=2, padding="same",
    ...                           output_size=(5, 5))[0, 0]
    array([[1., 2., 1., 2., 1.],
           [2., 4., 2., 4., 2.],
           [1., 2., 1., 2., 1.],
           [2., 4., 2., 4., 2.],
           [1., 2., 1., 2., 1.]], dtype=float32)
    """
    fn = "conv_transpose2d"
    check_array(fn, "x", x, 4)
    check_array(fn, "weight", weight, 4)
    if bias is not None:
        check_array(fn, "bias", bias, 1)
    dtype = common_dtype(x, weight, bias)
    problem, chosen = _call_plan(x.shape, weight.shape, None if bias is None else bias.shape, stride, padding,
                                 output_padding, output_size, dilation, groups, dtype, algo)
    out = check_out(fn, out, (problem.n_batch, problem.c_out) + problem.out_hw, dtype, (x, weight, bias))
    if problem.n_batch == 0:
        return out
    bias_k = np.zeros(problem.c_out, dtype=dtype) if bias is None else as_kernel_array(bias, dtype)
    with serial_if_small(problem.flops // 2):
        if chosen == "direct":
            _run_direct(problem, x, weight, bias_k, dtype, out)
        else:
            _run_col2im(problem, x, weight, bias_k, dtype, out)
    return out


@memoised_plan
def _call_plan(x_shape, weight_shape, bias_shape, stride, padding, output_padding, output_size, dilation, groups,
               dtype, algo):
    """``(problem, algo)`` of a ``conv_transpose2d`` call, its options validated (memoised per signature)."""
    fn = "conv_transpose2d"
    problem = conv_transpose2d_problem(fn, x_shape, weight_shape, stride, padding, output_padding, output_size,
                                       dilation, groups, dtype)
    if bias_shape is not None and bias_shape[0] != problem.c_out:
        raise ValueError(f"{fn}: bias must have shape ({problem.c_out},), got {bias_shape}")
    return problem, choose_conv_transpose2d_algo(problem, algo)[0]


def conv2d_pads(problem):
    """``((top, bottom), (left, right))`` of the conv2d that equals this transposed convolution when the
    stride is 1 (kernel flipped, input and output channels swapped), or None (a stride, or a side that
    would need negative padding).

    With stride 1, ``out[y] = sum_ky x[y + top - ky * dh] * w[ky]``: a cross-correlation of ``x`` padded
    by ``dh * (kH - 1) - top`` before with the flipped kernel; the padding after follows from the
    output size (it absorbs ``output_padding``).
    """
    if problem.stride != (1, 1):
        return None
    pads = []
    for axis in (0, 1):
        span = problem.dilation[axis] * (problem.kernel_hw[axis] - 1)
        before = span - problem.pads[axis][0]
        after = problem.out_hw[axis] - problem.in_hw[axis] - before + span
        if before < 0 or after < 0:
            return None
        pads.append((before, after))
    return tuple(pads)


def conv2d_weight(weight, groups, dtype):
    """(C_in, O/g, kH, kW) transposed-conv weights -> the (O, C_in/g, kH, kW) flipped conv2d weights of
    :func:`conv2d_pads`: ``w[g*og + o, c, ky, kx] = weight[g*cg + c, o, kH-1-ky, kW-1-kx]``."""
    c_in, og, kh, kw = weight.shape
    per_group = weight.astype(dtype, copy=False).reshape(groups, c_in // groups, og, kh, kw)
    return np.ascontiguousarray(per_group.transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]).reshape(
        groups * og, c_in // groups, kh, kw)


def _run_direct(problem, x, weight, bias, dtype, out):
    """Stride 1: the equivalent conv2d's direct kernels. Else zero-padded channel-major planes +
    per-phase tap lists + the gather kernel (bias fused)."""
    pads = conv2d_pads(problem)
    if pads is not None:
        conv2d(x, conv2d_weight(weight, problem.groups, dtype), bias, padding=pads, dilation=problem.dilation,
               groups=problem.groups, out=out)
        return
    if problem.c_out // problem.groups >= DIRECT_BLOCK_MIN_CHANNELS:
        _run_phase_tiles(problem, x, weight, bias, dtype, out)
        return
    layout = phase_layout(problem)
    n_batch, c_in, ih, iw = x.shape
    top, left = layout.pad_top, layout.pad_left
    buf = memory.empty((c_in, layout.buffer_len(n_batch)), dtype)
    buf[:, n_batch * layout.plane_len:] = 0  # slack row
    planes = buf[:, :n_batch * layout.plane_len].reshape(c_in, n_batch, layout.rows, layout.row_len)
    # Zero only the border, then copy the interior channel-major (one pass over the input).
    planes[:, :, :top] = 0
    planes[:, :, top + ih:] = 0
    planes[:, :, top:top + ih, :left] = 0
    planes[:, :, top:top + ih, left + iw:] = 0
    planes[:, :, top:top + ih, left:left + iw] = x.transpose(1, 0, 2, 3)
    if problem.c_out // problem.groups >= TRANSPOSE_OB8_MIN_CHANNELS:
        block, kernel = OB, conv_transpose_phases_ob8
    else:
        block, kernel = 1, conv_transpose_phases_ob1
    wpk = pack_transpose_weights(weight, layout, problem.groups, block, dtype)
    imgs, tile = direct_split(n_batch, layout.plane_len, layout.row_len,
                              problem.groups * wpk.shape[1] * layout.phase_geom.shape[0], problem.itemsize)
    kernel(buf, layout.phase_geom, layout.tap_start, layout.tap_chan, layout.tap_off, wpk, bias, out, layout.rows,
           layout.row_len, problem.stride[0], problem.stride[1], imgs, tile, current_threads())


@dataclass(frozen=True)
class PhaseTile:
    """One output phase of the strided direct path: rows ``ry + sH * m`` (``m < ny``), columns
    ``rx + sW * q`` (``q < nx``), its taps (kernel index, input shift) per axis, and the tile geometry
    of the correlation that computes it (zero padding ``pad_y``, ``pad_x`` of the input)."""

    ry: int
    ny: int
    rx: int
    nx: int
    kys: np.ndarray
    qys: np.ndarray
    kxs: np.ndarray
    qxs: np.ndarray
    pad_y: tuple
    pad_x: tuple
    geometry: tuple  # tile_geometry: (row_len, rows_per_item, img_rows, images_per_item)

    @property
    def has_taps(self):
        return self.kys.size > 0 and self.kxs.size > 0


@functools.lru_cache(maxsize=64)
def phase_tiles(problem):
    """The :class:`PhaseTile` of every output phase, in ``(ry, rx)`` order (integer bookkeeping only;
    cached per problem, read only)."""
    (ih, iw), (kh, kw) = problem.in_hw, problem.kernel_hw
    (sh, sw), (dh, dw) = problem.stride, problem.dilation
    ((top, _), (left, _)), (oh, ow) = problem.pads, problem.out_hw
    phases = []
    for (ry, ny, ytaps), (rx, nx, xtaps) in itertools.product(_axis_phases(ih, kh, sh, dh, top, oh),
                                                               _axis_phases(iw, kw, sw, dw, left, ow)):
        kys, qys = (np.array([t[i] for t in ytaps], dtype=np.int64) for i in (0, 1))
        kxs, qxs = (np.array([t[i] for t in xtaps], dtype=np.int64) for i in (0, 1))
        pad_y = pad_x = geometry = ()
        if kys.size and kxs.size:
            # Input row (column) m + q for phase row (column) m and shift q: zero padding before and after.
            pad_y = (max(0, -int(qys.min())), max(0, ny - ih + int(qys.max())))
            pad_x = (max(0, -int(qxs.min())), max(0, nx - iw + int(qxs.max())))
            reach = (int(qys.max()) + pad_y[0] + 1, int(qxs.max()) + pad_x[0] + 1)  # a kernel of that size
            geometry = tile_geometry((ih, iw), (pad_y, pad_x), reach, (1, 1), (1, 1), (ny, nx), problem.n_batch,
                                     DIRECT_TILE_POSITIONS)
        phases.append(PhaseTile(ry, ny, rx, nx, kys, qys, kxs, qxs, pad_y, pad_x, geometry))
    return tuple(phases)


def _phase_tiles_workspace(problem):
    """Bytes besides the result of :func:`_run_phase_tiles`: the phase blocks (one result's worth) and,
    per thread, the largest phase's tile and partial sums."""
    cg, block = problem.c_in // problem.groups, channel_block(problem.itemsize)
    per_thread = max([tile_workspace(cg, ph.geometry, ph.nx, block, problem.itemsize)
                      for ph in phase_tiles(problem) if ph.has_taps], default=0)
    blocks = problem.n_batch * problem.c_out * problem.out_hw[0] * problem.out_hw[1] * problem.itemsize
    return blocks + per_thread * numba.config.NUMBA_NUM_THREADS


def _run_phase_tiles(problem, x, weight, bias, dtype, out):
    """Strided: each output phase ``(ry, rx)`` (every ``sH``-th row from ``ry``, every ``sW``-th column from
    ``rx``) is a stride-1 correlation of the input with the phase's taps at their shifts, run by the
    direct conv2d's register-blocked kernel on per-item tiles into a block of its own; one pass then
    interleaves the phases into ``out``. A phase no tap reaches (``output_padding`` beyond the kernel)
    is the bias."""
    kh, kw = problem.kernel_hw
    n_batch, groups = problem.n_batch, problem.groups
    cg, og = problem.c_in // groups, problem.c_out // groups
    xk = as_kernel_array(x, dtype)
    block = channel_block(problem.itemsize)
    wg = weight.reshape(groups, cg, og, kh, kw)
    phases = phase_tiles(problem)
    sizes = [n_batch * problem.c_out * ph.ny * ph.nx for ph in phases]
    phase_off = np.cumsum([0] + sizes[:-1]).astype(np.int64)
    buf = memory.empty(sum(sizes), dtype)
    for ph, off, size in zip(phases, phase_off, sizes):
        block_out = buf[off:off + size].reshape(n_batch, problem.c_out, ph.ny, ph.nx)
        if not ph.has_taps:
            block_out[...] = bias[None, :, None, None]
            continue
        row_len, _, img_rows, images = ph.geometry
        plane_len = images * img_rows * row_len
        c, iy, ix = (a.ravel() for a in np.meshgrid(np.arange(cg), np.arange(ph.kys.size), np.arange(ph.kxs.size),
                                                    indexing="ij"))
        starts = c * plane_len + (ph.qys[iy] + ph.pad_y[0]) * row_len + ph.qxs[ix] + ph.pad_x[0]
        # (G, og, taps) in the tap order of ``starts``
        taps = wg[:, c, :, ph.kys[iy], ph.kxs[ix]].transpose(1, 2, 0)
        run_blocked_tiles(xk, ph.pad_y[0], ph.pad_x[0], ph.geometry, starts, pack_taps(taps, block, starts.size, dtype),
                          bias, groups, block_out, 1, 1)
    interleave_phases(buf, phase_off, np.array([ph.ny for ph in phases], dtype=np.int64),
                      np.array([ph.nx for ph in phases], dtype=np.int64), out, *problem.stride)


def direct_split(n_batch, plane_len, row_len, other_items, itemsize):
    """(images per chunk, positions per work item) for the direct kernel; a pure function of the shape.

    A tile holds at most DIRECT_ACC_BYTES of accumulators per half block; small images are folded
    into chunks so a tile is long. Then tiles are split further (down to 64 positions) until there are
    DIRECT_MIN_ITEMS work items, so one image still feeds every core. Tiles are multiples of 8.
    """
    limit = max(8, DIRECT_ACC_BYTES // (4 * itemsize))
    imgs = max(1, min(n_batch, limit // plane_len))
    chunk_pos = (imgs - 1) * plane_len + plane_len
    n_chunks = _ceil_div(n_batch, imgs)
    n_tiles = _ceil_div(chunk_pos, limit)
    while n_chunks * other_items * n_tiles < DIRECT_MIN_ITEMS and _ceil_div(chunk_pos, n_tiles + 1) >= 64:
        n_tiles += 1
    return imgs, _ceil_div(_ceil_div(chunk_pos, n_tiles), 8) * 8


# ---------------------------------------------------------------------------------------------------
# col2im: per work item one single-threaded BLAS GEMM, then the item's col2im, on a few Python threads
# ---------------------------------------------------------------------------------------------------

# Work-item shape (a pure function of the problem, never of the thread count). Measurements behind
# the values: docs/conv_transpose.md ("col2im").
# - Images narrower than COL2IM_MIN_COLS positions are folded, several per GEMM (T2's 14x14: 2 images).
# - An item's columns (its GEMM result) take at most COL2IM_ITEM_BYTES; more output channels are split
#   into blocks. Big GEMMs beat L2-resident columns: T1 with 4 images, one thread (CPU time), items of
#   256 KiB 71.8 GFLOP/s, 1 MiB 78.1, 4 MiB 80.6 (all 1024 GEMM rows).
# - There are at least COL2IM_MIN_ITEMS items so one image still feeds both cores: first images are
#   unfolded, then channel blocks split (down to COL2IM_MIN_SPLIT_ROWS GEMM rows), then output rows
#   split into bands (down to COL2IM_MIN_BAND_ROWS rows; a band's GEMM recomputes the few input rows
#   it shares with its neighbours). Each split costs efficiency (one thread, batch 1, minimum 1 / 4 / 8
#   items: T2 54.6 / 52.3 / 48.0 GFLOP/s, T3 44.2 / 36.5 / 31.1), hence 4: two items per core here.
COL2IM_MIN_COLS = 64
COL2IM_ITEM_BYTES = 4 * 2**20
COL2IM_MIN_ITEMS = 4
COL2IM_MIN_SPLIT_ROWS = 128
COL2IM_MIN_BAND_ROWS = 8
# OpenBLAS's sgemm runs a row count that is a multiple of 4 faster: on T3's 64 x 3136 operand, one
# thread, 27 rows 61 GFLOP/s, 28 rows 74 (18 rows 58, 20 rows 68). Items pad their rows with zero weights.
COL2IM_ROW_ALIGN = 4
# Items with at most this many GEMM rows (output channels x taps) run the compiled GEMM + col2im kernel
# (``_kernels/col2im_gemm.py``) instead of OpenBLAS: measurements in docs/conv_transpose.md ("col2im").
COL2IM_COMPILED_MAX_ROWS = TAP_GEMM_MAX_ROWS
# ... and so do items with more rows whose positions fill whole micro-tiles (at most this many computed
# per real position: the last micro-tile of a 14x14 image computes 48 positions for 4). Measured
# 2026-12-07 (2 threads, 20 ms pause, best of 15, GFLOP/s OpenBLAS / compiled, k4 s2 p1 unless noted):
# 28x28 images (1.04): T1 182 / 189, (16, 64, 28, 28) -> 32 152 / 162, k2 s2 -> 64 140 / 151,
# (8, 256, 28, 28) -> 128 k3 191 / 196; (8, 64, 56, 56) -> 32 (1.01) 152 / 167; (16, 128, 32, 32) -> 64
# (1.03) 174 / 194; but 14x14 (1.22): T2 165 / 152, (8, 512, 14, 14) -> 256 179 / 161; 16x16 (1.12):
# (1, 256, 16, 16) -> 128 96 / 83.
COMPILED_MAX_TILE_WASTE = 1.06


@dataclass(frozen=True)
class Col2imSplit:
    """How ``_run_col2im`` cuts a problem into work items (see :func:`col2im_split`)."""

    images: int  # images per column block (1 when bands > 1)
    channels: int  # output channels per block
    rows: int  # GEMM rows per item: channels * kH * kW rounded up to COL2IM_ROW_ALIGN (zero weights)
    bands: int  # output-row bands per image
    band_rows: int  # output rows per band (the last may be shorter)
    items: int
    cols_len: int  # largest GEMM result of an item, in elements
    acc_len: int  # col2im accumulator elements
    fold_len: int  # folded-images GEMM operand elements (0 when images == 1)

    def workspace_bytes(self, itemsize):
        """Bytes of one worker thread's buffers."""
        return (self.cols_len + self.acc_len + self.fold_len) * itemsize


def _band_input_rows(problem, y0, y1):
    """Input rows ``[iy_lo, iy_hi)`` that output rows ``[y0, y1)`` read (empty when none)."""
    (ih, _), (kh, _) = problem.in_hw, problem.kernel_hw
    (sh, _), (dh, _) = problem.stride, problem.dilation
    top = problem.pads[0][0]
    iy_lo = max(0, _ceil_div(y0 + top - (kh - 1) * dh, sh))
    iy_hi = min(ih, (y1 - 1 + top) // sh + 1)
    return iy_lo, max(iy_lo, iy_hi)


@functools.lru_cache(maxsize=64)
def col2im_split(problem):
    """The work items of the col2im path: a pure function of the problem (bit-identical results).

    >>> p = conv_transpose2d_problem("f", (16, 128, 28, 28), (128, 64, 4, 4), 2, 1, 0, None, 1, 1, np.float32)
    >>> s = col2im_split(p)
    >>> s.images, s.channels, s.rows, s.bands, s.items
    (1, 64, 1024, 1, 16)
    """
    n_batch, groups, itemsize = problem.n_batch, problem.groups, problem.itemsize
    (ih, iw), (kh, kw), oh = problem.in_hw, problem.kernel_hw, problem.out_hw[0]
    kk, hw, og = kh * kw, ih * iw, problem.c_out // groups
    images = 1 if hw >= COL2IM_MIN_COLS else max(1, min(n_batch, _ceil_div(COL2IM_MIN_COLS, hw)))
    n_blocks = min(og, max(1, _ceil_div(og * kk * images * hw * itemsize, COL2IM_ITEM_BYTES)))
    bands = 1

    def count():
        return _ceil_div(n_batch, images) * bands * groups * _ceil_div(og, _ceil_div(og, n_blocks))

    while count() < COL2IM_MIN_ITEMS:
        if images > 1:
            images = max(1, images // 2)
        elif n_blocks < og and _ceil_div(og, n_blocks + 1) * kk >= COL2IM_MIN_SPLIT_ROWS:
            n_blocks += 1
        elif bands < oh and _ceil_div(oh, bands + 1) >= COL2IM_MIN_BAND_ROWS:
            bands += 1
        else:
            break
    channels = _ceil_div(og, n_blocks)
    rows = _ceil_div(channels * kk, COL2IM_ROW_ALIGN) * COL2IM_ROW_ALIGN
    band_rows = _ceil_div(oh, bands)
    if bands == 1:
        ncols = images * hw
    else:
        ncols = iw * max(hi - lo for lo, hi in (_band_input_rows(problem, y0, min(oh, y0 + band_rows))
                                                for y0 in range(0, oh, band_rows)))
    acc_len = problem.stride[1] * _ceil_div(band_rows, problem.stride[0]) * iw
    return Col2imSplit(images, channels, rows, bands, band_rows, count(), rows * ncols, acc_len,
                       problem.c_in // groups * images * hw if images > 1 else 0)


def pack_col2im_weights(weight, split, groups, dtype):
    """(C_in, O/g, kh, kw) -> (G, n_blocks, rows, C_in/g): per channel block the GEMM's left operand,
    row ``(o, ky, kx)`` = ``weight[g*cg + c, o0 + o, ky, kx]`` over ``c``, zero rows up to ``rows``."""
    c_in, og, kh, kw = weight.shape
    n_blocks = _ceil_div(og, split.channels)
    packed = memory.empty((groups, n_blocks, split.rows, c_in // groups), dtype)
    pack_gemm_weights(as_kernel_array(weight, dtype).reshape(groups, c_in // groups, og * kh * kw), packed,
                      split.channels, kh * kw)
    return packed


def _as_blas_operand(arr, dtype):
    """``arr`` itself when it is C-contiguous in ``dtype`` (read-only is fine: only BLAS reads it), else a
    C-contiguous copy from the caching pool."""
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    copy = memory.empty(arr.shape, dtype)
    np.copyto(copy, arr)
    return copy


def has_few_gemm_rows(problem, split):
    """One image per item and at most COL2IM_COMPILED_MAX_ROWS GEMM rows per item."""
    kh, kw = problem.kernel_hw
    return split.images == 1 and split.channels * kh * kw <= COL2IM_COMPILED_MAX_ROWS


def uses_compiled_gemm(problem, split):
    """Whether the col2im path runs the compiled GEMM kernel: few GEMM rows, or one image per item whose
    positions fill whole micro-tiles (at most COMPILED_MAX_TILE_WASTE computed per real position)."""
    if has_few_gemm_rows(problem, split):
        return True
    cols = split.cols_len // split.rows  # the longest item's positions
    return (split.images == 1
            and compiled_cols_stride(split, problem.itemsize) <= COMPILED_MAX_TILE_WASTE * cols)


def compiled_micro_positions(itemsize):
    """Positions per micro-tile of the compiled GEMM."""
    return GEMM_VECTORS * MICRO_VEC_BYTES // itemsize


def compiled_cols_stride(split, itemsize):
    """The compiled kernel's column row stride: the longest item's columns in whole micro-tiles."""
    micro = compiled_micro_positions(itemsize)
    return _ceil_div(split.cols_len // split.rows, micro) * micro


def compiled_rows(problem, split):
    """GEMM rows of a channel block in the compiled kernel: ``channels * kH * kW`` in whole row blocks."""
    kh, kw = problem.kernel_hw
    return _ceil_div(split.channels * kh * kw, GEMM_ROWS) * GEMM_ROWS


def compiled_workspace_bytes(problem, split):
    """One worker's buffers in the compiled kernel: columns, accumulator, the last micro-tile's inputs."""
    cg = problem.c_in // problem.groups
    return (compiled_rows(problem, split) * compiled_cols_stride(split, problem.itemsize) + split.acc_len
            + cg * compiled_micro_positions(problem.itemsize)) * problem.itemsize


def rows_fill_blocks(og, kk, split):
    """Whether every channel block's GEMM rows (``og * kk`` per group in blocks of ``split.channels * kk``)
    come in whole row blocks of ``GEMM_ROWS``: the compiled kernel can read the weight where it lies."""
    return split.channels * kk % GEMM_ROWS == 0 and og * kk % GEMM_ROWS == 0


def row_block_weights(weight, split, groups, dtype):
    """``(wf, (w_group, w_block, w_rows, w_step))``: the compiled kernel's flat weights and their strides per
    group, channel block, row block of ``GEMM_ROWS`` and input channel.

    The weight itself when every block's rows come in whole row blocks (no copy: after an idle pause the
    packing cost T3 ~0.1 ms of a ~1 ms call): channel ``c``'s rows ``(o, ky, kx)`` are contiguous there.
    Else a packed copy (G, n_blocks, n_row_blocks, C_in/G, GEMM_ROWS), zero past each block's rows, a row
    block's weights contiguous (T1's 16-tap rows: a block's 128 channels would otherwise be 128 rows of
    4 KiB apart)."""
    c_in, og, kh, kw = weight.shape
    cg, kk = c_in // groups, kh * kw
    if (rows_fill_blocks(og, kk, split) and weight.dtype == dtype and weight.flags.c_contiguous
            and weight.flags.writeable):
        return weight.reshape(-1), (cg * og * kk, split.channels * kk, GEMM_ROWS, og * kk)
    n_blocks = _ceil_div(og, split.channels)
    block_rows = split.channels * kk
    n_rb = _ceil_div(block_rows, GEMM_ROWS)
    w3 = as_kernel_array(weight, dtype).reshape(groups, cg, og * kk)
    rows = np.zeros((groups, cg, n_blocks, n_rb * GEMM_ROWS), dtype=dtype)
    for blk in range(n_blocks):
        r0 = blk * block_rows
        n = min(block_rows, og * kk - r0)
        rows[:, :, blk, :n] = w3[:, :, r0:r0 + n]
    packed = memory.empty((groups, n_blocks, n_rb, cg, GEMM_ROWS), dtype)
    np.copyto(packed, rows.reshape(groups, cg, n_blocks, n_rb, GEMM_ROWS).transpose(0, 2, 3, 1, 4))
    return packed.reshape(-1), (n_blocks * n_rb * cg * GEMM_ROWS, n_rb * cg * GEMM_ROWS, cg * GEMM_ROWS, GEMM_ROWS)


def _run_col2im_compiled(problem, split, x, weight, bias, dtype, out):
    """The col2im items in one compiled parallel kernel (GEMM by micro-tiles, then ``col2im_item``)."""
    (kh, kw), (sh, sw), (dh, dw) = problem.kernel_hw, problem.stride, problem.dilation
    ((top, _), (left, _)) = problem.pads
    wf, (w_group, w_block, w_rows, w_step) = row_block_weights(weight, split, problem.groups, dtype)
    col2im_gemm(as_kernel_array(x, dtype), wf, w_group, w_block, w_rows, w_step, bias, out, problem.groups,
                split.channels, split.bands, split.band_rows, kh, kw, sh, sw, dh, dw, top, left,
                compiled_cols_stride(split, problem.itemsize), split.acc_len, current_threads())


def uses_interleave(problem):
    """The interleaving kernel (``_kernels/conv_transpose_interleave.py``) runs ``col2im``: stride equal to
    the kernel, kernel width 2, no padding, dilation 1, no output padding (every output pixel gets exactly
    one tap), on AVX-512, with at least one block of ``INTERLEAVE_ROWS`` GEMM rows per group."""
    (ih, iw), (kh, kw), (oh, ow) = problem.in_hw, problem.kernel_hw, problem.out_hw
    return (HAS_AVX512 and problem.stride == (kh, kw) and kw == 2 and problem.dilation == (1, 1)
            and problem.pads == ((0, 0), (0, 0)) and (oh, ow) == (ih * kh, iw * kw)
            and problem.c_out // problem.groups * kh * kw >= INTERLEAVE_ROWS)


def _run_interleave(problem, x, weight, bias, dtype, out):
    """GEMM micro-tiles whose columns are interleaved straight into the output (no col2im sum)."""
    kh = problem.kernel_hw[0]
    conv_transpose_interleave(as_kernel_array(x, dtype), interleave_weights(weight, dtype),
                              interleave_row_bias(bias, problem.groups, kh, dtype), out, problem.groups,
                              current_threads())


def _run_col2im(problem, x, weight, bias, dtype, out):
    """Work items (column block, group, channel block), each: one BLAS GEMM on the calling thread
    ``cols = W_block (rows x C_in/g) @ x_block (C_in/g x positions)``, then :func:`col2im_item` into the
    item's outputs.

    Items are handed out dynamically to ``fastconv.get_num_threads()`` threads (the caller and helper
    threads); each owns disjoint outputs and computes them the same way whichever thread runs it.
    """
    if uses_interleave(problem):
        _run_interleave(problem, x, weight, bias, dtype, out)
        return
    split = col2im_split(problem)
    if uses_compiled_gemm(problem, split):
        _run_col2im_compiled(problem, split, x, weight, bias, dtype, out)
        return
    n_batch, groups = problem.n_batch, problem.groups
    (ih, iw), (kh, kw), (oh, ow) = problem.in_hw, problem.kernel_hw, problem.out_hw
    (sh, sw), (dh, dw) = problem.stride, problem.dilation
    ((top, _), (left, _)) = problem.pads
    cg, og, hw = problem.c_in // groups, problem.c_out // groups, ih * iw
    if split.rows != split.channels * kh * kw:
        # Zero rows pad the GEMM: packed, (G, n_blocks, rows, C_in/g).
        packed = pack_col2im_weights(weight, split, groups, dtype)

        def weight_block(g, blk):
            return packed[g, blk]
    else:
        # The weight as it is, (G, C_in/g, O/g * kh * kw): BLAS reads a block's transpose in place, and no
        # serial packing pass precedes the parallel work (one thread, CPU time: T1 81.4 GFLOP/s against
        # 78.8 packed, T2 74.6 against 75.5; the results are the same bits).
        wg = _as_blas_operand(weight, dtype).reshape(groups, cg, og * kh * kw)
        step = split.channels * kh * kw

        def weight_block(g, blk):
            return wg[g, :, blk * step:(blk + 1) * step].T
    x = _as_blas_operand(x, dtype).reshape(n_batch, groups, cg, hw)
    out_flat = out.reshape(-1)
    images, channels, bands, band_rows = split.images, split.channels, split.bands, split.band_rows
    n_blocks = _ceil_div(og, channels)
    counter = itertools.count()  # next() on it is atomic: each item is taken exactly once

    def worker():
        item = next(counter)
        if item >= split.items:  # a helper that started late: nothing left
            return
        buf = memory.empty(split.cols_len + split.acc_len, dtype)  # columns, then the accumulator
        fold = memory.empty(split.fold_len, dtype) if split.fold_len else None
        while item < split.items:
            blk, rest = item % n_blocks, item // n_blocks  # blocks fastest: neighbours share x
            g, rest = rest % groups, rest // groups
            band, chunk = rest % bands, rest // bands
            o0 = blk * channels
            ob = min(channels, og - o0)
            n0 = chunk * images
            m = min(images, n_batch - n0)
            y0 = band * band_rows
            y1 = min(oh, y0 + band_rows)
            iy_lo = 0
            if bands > 1:  # input rows of the band (a strided view: BLAS reads it in place)
                iy_lo, iy_hi = _band_input_rows(problem, y0, y1)
                operand = x[n0, g][:, iy_lo * iw:iy_hi * iw]
            elif m > 1:  # small images folded side by side: (cg, m * hw)
                operand = fold[:cg * m * hw].reshape(cg, m, hw)
                operand[...] = x[n0:n0 + m, g].transpose(1, 0, 2)
                operand = operand.reshape(cg, m * hw)
            else:
                operand = x[n0, g]
            ncols = operand.shape[1]
            w_block = weight_block(g, blk)  # rows (o, ky, kx) (the last block may have fewer channels)
            rows = w_block.shape[0]
            np.matmul(w_block, operand, out=buf[:rows * ncols].reshape(rows, ncols))
            col2im_item(buf, ncols, split.cols_len, out_flat, bias, n0, m, g * og + o0, ob, y0, y1, iy_lo,
                        problem.c_out, oh, ow, ih, iw, kh, kw, sh, sw, dh, dw, top, left)
            item = next(counter)

    threads = min(numba.get_num_threads(), split.items)
    with one_blas_thread():
        run_workers(lambda _: worker(), threads)  # a helper taken back runs on the caller: nothing left
