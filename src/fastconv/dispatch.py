"""Algorithm choice for conv2d: a pure function of the canonical problem (shapes, steps, dtype).

Rules and the measurements behind them are in docs/algorithms.md ("Dispatch").
"""

from dataclasses import dataclass

import numpy as np

from ._validate import FLOAT_DTYPES, check_choice

CONV2D_ALGOS = ("auto", "direct", "im2col")

# im2col columns are built in batch chunks whose size stays under this many bytes (one image at
# least): large enough that each GEMM is efficient, small enough to stay far from 32 MiB mmap costs
# dominating and to keep memory bounded.
IM2COL_WORKSPACE_BYTES = 32 * 2**20

# Below this many output positions per image, im2col does one GEMM per group over the whole batch
# chunk (then a transposing copy into the result) instead of one small GEMM per image.
IM2COL_FOLD_BATCH_POSITIONS = 256

# Output channels per group below which the 8-channel register block of the direct kernel would be
# mostly padding, so the one-channel kernel is used (depthwise convolutions). L7 (depthwise 3x3):
# direct 5.0-5.6 GFLOP/s vs im2col 2.1-2.8.
DIRECT_OB8_MIN_CHANNELS = 4

# Below this many taps per output (C/groups * kH * kW) the direct kernel's loops are too short to
# amortise; BLAS does better. L8 (C=1, 5x5: 25 taps): im2col 21.6-22.2 vs direct 11.6-17.4 GFLOP/s;
# L1 (C=3, 3x3: 27 taps): a tie (27.2-27.4 vs 25.1-28.3).
DIRECT_MIN_TAPS = 32

# At or below this many output positions per image, im2col's GEMMs are efficient and the direct kernel
# wastes its padding columns: L5 (14x14): im2col 108.8-119.8 vs direct 77.7-105.5 GFLOP/s; L4 (28x28):
# im2col 85.4-116.9 vs direct 80.7-114.5. L2 (56x56) stays direct: 79.0-114.8 vs 55.4-62.1.
IM2COL_MAX_POSITIONS = 1024

@dataclass(frozen=True)
class Conv2dProblem:
    """A canonical conv2d problem: everything dispatch needs, ints only."""

    n_batch: int
    c_in: int
    c_out: int
    in_hw: tuple
    kernel_hw: tuple
    stride: tuple
    dilation: tuple
    pads: tuple
    groups: int
    out_hw: tuple
    itemsize: int

    @property
    def flops(self):
        c_per_group = self.c_in // self.groups
        return (2 * self.n_batch * self.c_out * self.out_hw[0] * self.out_hw[1]
                * c_per_group * self.kernel_hw[0] * self.kernel_hw[1])

    @property
    def is_pointwise(self):
        """1x1, stride 1, no padding: the convolution is a plain GEMM on the input (no im2col copy)."""
        return (self.kernel_hw == (1, 1) and self.stride == (1, 1)
                and self.pads == ((0, 0), (0, 0)))

    def im2col_batch_chunk(self):
        """Images per im2col chunk under IM2COL_WORKSPACE_BYTES (at least one)."""
        per_image = self.col_bytes_per_image()
        return max(1, min(self.n_batch, IM2COL_WORKSPACE_BYTES // max(per_image, 1)))

    def col_bytes_per_image(self):
        kh, kw = self.kernel_hw
        return self.c_in * kh * kw * self.out_hw[0] * self.out_hw[1] * self.itemsize


@dataclass(frozen=True)
class Plan:
    """What ``conv2d`` would run: the algorithm, why, and its cost."""

    algo: str
    reason: str
    flops: int
    workspace_bytes: int
    out_shape: tuple


def choose_conv2d_algo(problem, algo="auto", fn="conv2d"):
    """Return ``(algo, reason)`` for a canonical problem; ``algo`` other than "auto" is honoured."""
    check_choice(fn, "algo", algo, CONV2D_ALGOS)
    if algo != "auto":
        return algo, "requested by the caller"
    if problem.is_pointwise and problem.groups == 1:
        return "im2col", "1x1 stride-1 unpadded: a single GEMM with no column copy"
    o_per_group = problem.c_out // problem.groups
    if o_per_group < DIRECT_OB8_MIN_CHANNELS:
        return "direct", "few output channels per group (depthwise-like): direct one-channel kernel"
    if problem.stride != (1, 1):
        return "im2col", "stride > 1: im2col reads only the strided windows (L3: 79-94 vs 64-81 GFLOP/s)"
    taps = problem.c_in // problem.groups * problem.kernel_hw[0] * problem.kernel_hw[1]
    if taps < DIRECT_MIN_TAPS:
        return "im2col", f"{taps} taps per output (< {DIRECT_MIN_TAPS}): too few for the direct kernel's loops"
    positions = problem.out_hw[0] * problem.out_hw[1]
    if positions <= IM2COL_MAX_POSITIONS:
        return "im2col", f"small output maps ({positions} <= {IM2COL_MAX_POSITIONS} positions): GEMM-friendly"
    return "direct", "large stride-1 maps with many taps: the register-blocked direct kernel"


def workspace_bytes(problem, algo):
    """Bytes of temporary memory besides the result."""
    kh, kw = problem.kernel_hw
    (top, bottom), (left, right) = problem.pads
    padded = (problem.n_batch * problem.c_in * (problem.in_hw[0] + top + bottom + kh)
              * (problem.in_hw[1] + left + right) * problem.itemsize)
    if algo == "im2col":
        if problem.is_pointwise:
            return 0
        return padded + problem.im2col_batch_chunk() * problem.col_bytes_per_image()
    return padded


def plan_for(problem, algo="auto", fn="plan_conv2d"):
    """The :class:`Plan` for a canonical problem."""
    chosen, reason = choose_conv2d_algo(problem, algo, fn)
    return Plan(algo=chosen, reason=reason, flops=problem.flops,
                workspace_bytes=workspace_bytes(problem, chosen),
                out_shape=(problem.n_batch, problem.c_out) + tuple(problem.out_hw))


def plan_conv2d(x_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
                dtype=np.float32, algo="auto"):
    """Tell which algorithm ``conv2d`` would run for these shapes, why, its FLOPs and workspace bytes.

    >>> plan = plan_conv2d((32, 64, 56, 56), (64, 64, 3, 3), padding="same")
    >>> plan.algo, plan.out_shape
    ('direct', (32, 64, 56, 56))
    """
    from .conv import conv2d_problem  # late import: conv imports dispatch

    fn = "plan_conv2d"
    if np.dtype(dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {np.dtype(dtype)}")
    problem = conv2d_problem(fn, tuple(x_shape), tuple(weight_shape), stride, padding,
                             dilation, groups, np.dtype(dtype))
    return plan_for(problem, algo)
