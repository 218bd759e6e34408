"""Algorithm choice for conv2d: a pure function of the canonical problem (shapes, steps, dtype).

Rules and the measurements behind them are in docs/algorithms.md ("Dispatch").
"""

from dataclasses import dataclass

import numba
import numpy as np

from ._kernels.conv_direct import NP, channel_block
from ._kernels.conv_few import OB as FEW_OB
from ._kernels.simd import HAS_AVX512
from ._validate import FLOAT_DTYPES, check_choice
from .bands import split_bands
from .conv_layout import local_geometry, tile_geometry, tile_workspace
from .threads import SERIAL_MACS

CONV2D_ALGOS = ("auto", "direct", "im2col", "depthwise", "first_layer", "winograd", "measure")
CONV2D_KERNEL_ALGOS = ("direct", "im2col", "depthwise", "first_layer", "winograd")  # what "measure" may time

# Small problems (under SERIAL_MACS multiply-adds, run on one thread) whose output rows are shorter than
# this unfold batch-innermost (copy loops over OW * N values instead of OW): forward im2col and the
# conv2d gradients; at most this many groups (one GEMM per group).
BATCH_INNER_MAX_OW = 16
BATCH_INNER_MAX_GROUPS = 4

# Output channels per group below which the direct kernel's 16-channel (float32) micro-tile would be
# mostly padding, so ``algo="direct"`` uses its one-channel variant.
DIRECT_BLOCK_MIN_CHANNELS = 4

# The direct kernel splits its channel blocks until a call has at least this many work items (from the
# shape only, so results never depend on the thread count): 8 per thread on this 2-core machine.
DIRECT_MIN_ITEMS = 16

# Output positions per work item of the direct kernel on per-item padded tiles (zero padding): whole
# output rows, or whole small maps. Two threads, best of 10, alternating with the whole-input planes it
# replaced (GFLOP/s tiles vs planes), two rounds: 512 positions L2 212-213 vs 209-211, L3 200-201 vs
# 188-192, L4 211-216 vs 210-213, L5 219-222 vs 214-215, L8 103-114 vs 79-82; 256: L4 and L5 at parity,
# 1024: L5 210 vs 216 (14x14 maps, 5 images per item: too few items to share out).
DIRECT_TILE_POSITIONS = 512

# Taps per pass of the direct kernel over a work item's positions (16 channels of a 3x3 kernel): the
# pass's packed weights (144 x 16 float32 values, 9 KiB) stay in the 32 KiB L1 cache next to the input
# rows the pass reads. 2 threads, paired medians of 20 rounds, time with 144 / with 288 taps: L2 0.93-0.98,
# L3 0.93, L4 0.95-0.97, L5 0.97-0.99, L1 0.99 (one thread: 0.89-1.03).
DIRECT_CHUNK_TAPS = 144

# With at most this many output channels per group, conv2d runs the depthwise kernel (one output
# channel per pass; the first-layer kernel computes four per pass). Float32 GFLOP/s, one thread, best
# of 25, this machine (see docs/algorithms.md): L7 (depthwise 3x3, 56x56) depthwise 17-22 vs direct 3-5;
# (8, 64, 56, 56) -> 2 channels: 30 vs direct 15, first_layer 19, im2col 4; groups 32 with 2 -> 2
# channels: 29 vs first_layer 16-18, direct 9.
DEPTHWISE_MAX_CHANNELS = 3

# Four output channels per group and at most this many taps, 1x1 kernels included: the first-layer
# kernel (local row blocks, micro-tiles of 4 output channels) fits the group exactly, where the direct
# kernel's 32-channel micro-tile would be seven-eighths padding. 2 threads, float32 GFLOP/s,
# first_layer vs direct (2026-12-07): (8, 128, 28, 28) groups 32 (4 -> 4 channels) 44-70 vs 14-21;
# (8, 64, 28, 28) -> 128 groups 32 (2 -> 4) 35 vs 10; 1x1 groups 16 (4 -> 4) 10 vs 7. Larger kernels
# with more channels per group: the rules below.
FIRST_LAYER_CHANNELS = 4
FIRST_LAYER_MAX_TAPS = 72

# Kernels larger than 1x1 with at most this many taps, any number of output channels, output rows at
# least FIRST_LAYER_FEW_TAPS_MIN_WIDTH wide: the first-layer kernel (register micro-tiles of 4 output
# channels x 4 vectors of positions along the output rows, stored straight into them). With so few taps
# the direct kernel's micro-tile spends much of its time transposing its sums for the store. 2 threads,
# float32, paired medians of 12 rounds, time first_layer / direct (2026-12-07, AVX-512): L1 (8, 3, 224,
# 224) -> 32 0.65-0.74, -> 64 0.68, -> 16 0.49, stride 2 0.99; (8, 3, 128, 128) 0.64; (8, 1, 224, 224)
# 0.75; (16, 3, 64, 64) 0.66-0.78; (64, 3, 32, 32) 0.69-0.77; (8, 3, 56, 56) 0.90-0.98; (8, 4, 112, 112)
# 0.87; (8, 2, 112, 112) k5 0.93; (8, 8, 112, 112) (72 taps) 0.94, -> 128 0.95; (8, 3, 224, 224) -> 24
# k5 (75 taps) 0.73; float64 L1 0.82, (8, 8, 112, 112) 0.96. Not 1x1 kernels: a strided one gathers
# every stride phase and reads one, (32, 64, 56, 56) -> 128 1x1 stride 2 1.45, (8, 32, 56, 56) -> 64
# 1.39.
FIRST_LAYER_SPATIAL_MAX_TAPS = 80
# Both rules below want output rows at least this wide: a narrower row is one micro-tile of single
# vectors through a scratch buffer (the digits CNN's (32, 1, 8, 8) -> 16: direct 4.0 vs first_layer
# 2.9 GFLOP/s, one thread; (32, 3, 14, 14) -> 32 time ratio 1.03).
FIRST_LAYER_MIN_WIDTH = 16
# The few-taps rule (whole direct blocks) wants rows of at least two vectors. L8's 28-wide rows: the
# first-layer kernel is faster on one thread (67 vs 57 GFLOP/s through conv2d, two overlapping vectors
# per row), but in fifteen full benchmark runs it made 47-97 GFLOP/s against the direct kernel's 51-105.
FIRST_LAYER_FEW_TAPS_MIN_WIDTH = 32

# Kernels larger than 1x1 with at most this many taps whose output channels per group are not whole
# blocks of the direct kernel's micro-tile (``channel_block``: 32 float32, 16 float64 with AVX-512):
# the first-layer kernel too, whose blocks are 4 channels. Same method: (8, 24, 56, 56) -> 48 (216
# taps) 0.54, (8, 12, 56, 56) -> 48 0.90, (8, 20, 56, 56) -> 40 0.80; groups 4 with 16 -> 16 channels
# 0.66 (56x56), 0.52 (28x28), 0.78 (stride 2); groups 8 / 16 (16 -> 16) 0.65 / 0.78; float64 (8, 16, 56,
# 56) -> 24 0.80. Whole blocks stay direct: (8, 16, 56, 56) -> 32 1.07, -> 64 1.21, (32, 16, 14, 14) ->
# 32 1.16, float64 groups 8 (16 -> 16) 1.07. More taps fill a work item's local buffer past L2.
FIRST_LAYER_PARTIAL_BLOCK_MAX_TAPS = 256

# The direct kernel re-reads each 16-channel block's packed weights once per tile of 192 positions, so
# when the weights are large against the positions (per group: (O/g) * taps weights per output position
# above this), im2col's GEMM, which streams them better, wins. 2 threads, float32 GFLOP/s, direct vs
# im2col (weights per position), two runs: (32, 256, 7, 7) 107 / 114 vs 118 / 117 (376); (4, 256, 14, 14)
# 92 / 92 vs 110 / 106 (752); (32, 512, 7, 7) 106 / 134 vs 119 / 146 (1505); at or below the threshold
# it goes either way or to direct: L5 (32, 256, 14, 14) 109 / 122 / 160 vs 118 / 127 / 150 (94), (32,
# 128, 7, 7) 88 / 116 vs 90 / 94 (94).
#
# With AVX-512 the direct kernel's 32-channel, 8-position micro-tiles change the balance (2026-12-07,
# Zen 4, 2 threads, float32 GFLOP/s, direct vs im2col in separate processes, best of 8): it wins up to
# ~1500 weights per position, (32, 512, 7, 7) 191 vs 178 (1505), (2, 256, 14, 14) 139 vs 124 (1505),
# (32, 256, 7, 7) 189 vs 166 (376), (4, 256, 14, 14) 175 vs 157 (752); im2col wins from ~3000: (16, 512,
# 7, 7) 152 vs 175 (3009), (1, 256, 14, 14) 86 vs 116 (3009), (8, 512, 7, 7) 130 vs 172 (6019).
DIRECT_MAX_WEIGHTS_PER_POSITION = 2048 if HAS_AVX512 else 192

# 1x1 stride-1 unpadded convolutions are a plain GEMM for im2col (no column copy), and the direct kernel
# reads their input in place. With AVX2 the GEMM wins; with AVX-512 the direct kernel does while the
# weights are small against the positions (same method as above): L6 (32, 256, 14, 14) -> 256 186 vs
# 153 (10 weights per position), (32, 64, 56, 56) -> 256 176 vs 135, (8, 1024, 14, 14) -> 256 192 vs
# 164 (167), (32, 512, 7, 7) -> 2048 179 vs 166 (669); but (1, 1024, 14, 14) -> 256 81 vs 143 (1337),
# (2, 512, 7, 7) -> 2048 67 vs 144 (10700): its 1x1 taps each read another plane, so with few positions
# per channel block the input streams from L2.
POINTWISE_DIRECT_MAX_WEIGHTS_PER_POSITION = 1024 if HAS_AVX512 else 0

# Local positions (output rows x padded row length) per work item of the depthwise kernel: a 56x56 map
# (row length 58) is one item per plane, larger maps are split into row blocks.
DEPTHWISE_ITEM_POSITIONS = 4096

# The same for the first-layer kernel, whose accumulators are four rows of that many positions
# (L1: 2048 -> 9 rows of 226). With the static split 512 and 2048 measured slower than 1024; since
# the chunks are claimed dynamically, 2048 takes less time (paired medians, 2 threads, 14-24 rounds,
# time 2048 / 1024: L1 0.93-0.97, its stride-2 form 0.94-0.96, one input channel on 224x224 0.90,
# grouped 4 -> 4 channels on 28x28 maps 1.00-1.09, (8, 64, 28, 28) -> 128 groups 32 1.00).
FIRST_LAYER_ITEM_POSITIONS = 2048

# The direct kernel's few-channel variant (``conv_few``: at most 3 output channels per group, all in
# one register-blocked micro-tile) against the depthwise kernel (one channel per pass), 2 threads,
# best of 10 interleaved, float32 GFLOP/s (AVX-512): 64 -> 3 channels 3x3 on (8, 56, 56) 63 vs 56, 64 -> 2
# 39 vs 34, 16 -> 3 52 vs 29, 4 -> 2 18 vs 9, 32 -> 3 on 112x112 81 vs 60, 8 -> 1 11 vs 10; with fewer
# input channels per group the depthwise kernel wins or ties: L7 (1 -> 1) 20 vs 35, groups 32 of
# 2 -> 2 17 vs 18. The AVX2 build on the same machine (NUMBA_CPU_NAME=haswell) likewise: 73 vs 60, 36 vs
# 37, 56 vs 39, 21 vs 18, 93 vs 74, 17 vs 14. Work items of 512 / 1024 / 2048 local positions measured
# alike (1.1-1.3 ms on the 64 -> 3 case, noise), 256 and 4096 slower.
FEW_MIN_INPUT_CHANNELS = 4
FEW_ITEM_POSITIONS = 1024

# The tap-GEMM route (``_kernels/col2im_gemm.py``, shared with conv_transpose2d's col2im): with stride 1,
# conv2d is a transposed convolution of the flipped kernel, so a GEMM computes every tap's product plane
# (``O/g * kH * kW`` rows over the input positions, read in place) and col2im sums the shifted planes into
# the outputs. It needs few GEMM rows (the micro-kernel's accumulators span rows x positions), a deep
# enough GEMM, no 1x1 kernel (a plain GEMM then), padding within the kernel's reach (else the
# equivalent transposed convolution would crop), and at least TAP_GEMM_MIN_POSITIONS input positions
# per image (one image per work item: ``conv_transpose.COL2IM_MIN_COLS``). Measured 2026-12-07, float32,
# 2 threads, 20 ms pause before each call, best of 14, GFLOP/s auto before / im2col / tap GEMM:
# (8, 64, 56, 56) k3 -> 1 17 / 10 / 48, -> 3 44 / 14 / 73, -> 8 26 / 38 / 87, -> 16 51 / 54 / 91,
# -> 24 76 / 65 / 89; k5 -> 3 68 / 15 / 146; (16, 128, 28, 28) -> 3 47 / 15 / 68; (8, 32, 112, 112) -> 3
# 51 / 16 / 73; (4, 256, 28, 28) -> 8 24 / 48 / 81; (8, 32, 56, 56) -> 8 25 / 36 / 72.
# More GEMM rows take the route too when the blocked kernel's channel blocks would be partly padding
# (output channels per group not a multiple of 32 float32 / 16 float64) and the transposed conv runs
# them compiled (positions filling whole micro-tiles). Same protocol, GFLOP/s blocked / tap GEMM:
# (8, 64, 56, 56) k3 -> 40 132 / 183, -> 48 157 / 187, -> 80 179 / 189; (16, 128, 28, 28) -> 48 148 / 187;
# k5 -> 12 81 / 175, -> 16 108 / 180; full blocks stay: -> 32 194 / 176, -> 64 209 / 186, -> 96 214 /
# 193, k5 -> 32 212 / 187; (32, 256, 14, 14) -> 48 (14x14: not compiled) 154 / 155. Full blocks stay
# blocked whatever the rows: float64 (16-channel blocks) -> 16 k3 92 / 88, while -> 3 45 / 66, -> 8 42 /
# 79, -> 24 76 / 91, k5 -> 12 78 / 91, (16, 128, 28, 28) -> 20 62 / 93.
# The AVX2 build (NUMBA_CPU_NAME=haswell, same machine, same protocol; tap GEMM / previous direct):
# -> 3 90 / 76, but -> 16 123 / 141 and -> 40 137 / 165 (k5 -> 12 169 / 153): at most FEW_OB channels there.
TAP_GEMM_MAX_ROWS = 256
TAP_GEMM_MIN_DEPTH = 32
TAP_GEMM_MIN_POSITIONS = 64


def tap_gemm_fits(problem):
    """Whether conv2d runs the tap-GEMM route (the rule above) for this problem."""
    (kh, kw), (dh, dw) = problem.kernel_hw, problem.dilation
    (top, bottom), (left, right) = problem.pads
    o_per_group = problem.c_out // problem.groups
    if not (problem.stride == (1, 1) and kh * kw > 1
            and problem.c_in // problem.groups >= TAP_GEMM_MIN_DEPTH
            and problem.in_hw[0] * problem.in_hw[1] >= TAP_GEMM_MIN_POSITIONS
            and max(top, bottom) <= (kh - 1) * dh and max(left, right) <= (kw - 1) * dw):
        return False
    if not HAS_AVX512:  # AVX2: its 4 x 3 micro-tile beats the others on few output channels only
        return o_per_group <= FEW_OB and o_per_group * kh * kw <= TAP_GEMM_MAX_ROWS
    if o_per_group % channel_block(problem.itemsize) == 0:
        return False  # the blocked kernel's channel blocks are full: it is faster
    if o_per_group * kh * kw <= TAP_GEMM_MAX_ROWS:
        return True
    from .conv_transpose import tap_gemm_compiles  # late: conv_transpose imports this module

    return tap_gemm_compiles(problem)


# Winograd F(2x2, 3x3) (``_kernels/winograd.py``): 3x3 kernels, stride 1, dilation 1 only; 2.25x fewer
# multiply-adds than the direct kernel plus transforms linear in the input, output and filter sizes. The
# filter transform (O/g x C/g pairs) and the work-item overheads make it lose on small problems; ``auto``
# takes it with at least WINOGRAD_MIN_CHANNELS input and output channels per group, WINOGRAD_MIN_TILES
# 2x2 output tiles (N * ceil(OH / 2) * ceil(OW / 2)) and WINOGRAD_MIN_PRODUCTS tiles x input x output
# channels per group. Measured 2026-12-07 with its first (scalar-transform) version, float32, 2 threads,
# 20 ms pause before each call, best of 4-12, effective GFLOP/s (direct FLOPs / time), previous auto /
# winograd: L2 (32, 64, 56, 56) -> 64 211 / 295, L4 (16, 128, 28, 28) 208 / 339, L5 (32, 256, 14, 14)
# 201 / 380, (32, 512, 7, 7) 189 / 268, (8, 512, 14, 14) 209 / 313, (32, 64, 56, 56) -> 128 219 / 340,
# -> 48 194 / 232, (8, 64, 56, 56) -> 32 186 / 209, (8, 32, 56, 56) -> 64 174 / 197, -> 32 190 / 199,
# (8, 64, 28, 28) -> 64 157 / 200, (2, 64, 56, 56) 157 / 178, (1, 64, 112, 112) 203 / 268, (32, 128, 7, 7)
# 157 / 187 (512 tiles); left out by the rule: (4, 64, 28, 28) 140 / 127 and (1, 64, 56, 56) 132 / 134
# (3.2M products), (8, 64, 11, 11) -> 512 147 / 135 (288 tiles), (4, 128, 16, 16) 133 / 117 and (16, 128,
# 8, 8) 152 / 152 (256 tiles), (2, 128, 28, 28) 147 / 170 (392 tiles: a win given up), (1, 128, 28, 28)
# 141 / 118, (4, 256, 14, 14) 188 / 216, (1, 512, 14, 14) 133 / 102, (4, 512, 7, 7) 90 / 99, (8, 128, 7,
# 7) 106 / 67, (2, 256, 7, 7) 75 / 54, (1, 256, 14, 14) 120 / 62, (8, 64, 56, 56) -> 16 172 / 124, (8, 16,
# 56, 56) -> 16 78 / 58. Float64: L2 108 / 174, L4 110 / 194, L5 112 / 206, (32, 512, 7, 7) 99 / 146.
# The vector transforms since took L2 / L4 / L5 / (32, 512, 7, 7) to 348 / 395 / 431 / 312.
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_TILES = 512
WINOGRAD_MIN_PRODUCTS = 1 << 22

# Tiles per work item and input channels per pass of its micro-kernel (the pass's transformed filters,
# 128 x 32 float32 values, 16 KiB, stay in L1). L5, 2 threads, effective GFLOP/s for 32 / 48 / 64 / 96
# tiles per item: 318-325 / 323-328 / 327-329 / 325-326 (L2 149 / 163 / 170 / 175): insensitive above 48.
WINOGRAD_CHUNK_TILES = 64
WINOGRAD_CHUNK_CHANNELS = 128


def winograd_applies(problem):
    """Whether ``algo="winograd"`` can run this problem: a 3x3 kernel, stride 1, dilation 1."""
    return problem.kernel_hw == (3, 3) and problem.stride == (1, 1) and problem.dilation == (1, 1)


def winograd_tiles(problem):
    """2x2 output tiles of the Winograd kernel over the batch."""
    return problem.n_batch * ((problem.out_hw[0] + 1) // 2) * ((problem.out_hw[1] + 1) // 2)


def whole_micro_tiles(tiles):
    """``tiles`` rounded up to whole micro-tiles of the direct kernel (``NP`` positions; AVX2: 6): the
    Winograd work items' size."""
    return -(-tiles // NP) * NP


def winograd_fits(problem):
    """Whether ``auto`` runs Winograd for this problem (the rule above)."""
    c_per_group, o_per_group = problem.c_in // problem.groups, problem.c_out // problem.groups
    tiles = winograd_tiles(problem)
    return (winograd_applies(problem) and min(c_per_group, o_per_group) >= WINOGRAD_MIN_CHANNELS
            and tiles >= WINOGRAD_MIN_TILES and tiles * c_per_group * o_per_group >= WINOGRAD_MIN_PRODUCTS)


def kernel_algos(problem):
    """The algorithms that can run ``problem`` (what ``algo="measure"`` times)."""
    return tuple(a for a in CONV2D_KERNEL_ALGOS if a != "winograd" or winograd_applies(problem))


# The depthwise kernel's multiply-adds cost about this many of the compute-bound kernels' (one core,
# GFLOP/s: L7 depthwise 22 vs L2 direct 57, L1 first_layer 60): used to decide when a call is small
# enough to run on one thread (``fastconv.threads.serial_if_small``).
DEPTHWISE_MAC_COST = 3


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

    def batch_inner_fits(self):
        """Tiny feature maps on a small problem: unfold with the batch innermost (see ``_kernels/im2col.py``)."""
        return (self.out_hw[1] < BATCH_INNER_MAX_OW and self.flops // 2 < SERIAL_MACS
                and self.groups <= BATCH_INNER_MAX_GROUPS)


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
    if algo == "measure":
        from . import autotune  # late import: autotune imports the package version

        winner = autotune.lookup(measure_key(problem))
        if winner is not None:
            return winner, "measured: the fastest candidate when this problem was first run with algo='measure'"
        return "measure", "not measured yet: the first conv2d call with algo='measure' times every algorithm"
    if algo == "winograd" and not winograd_applies(problem):
        raise ValueError(f"{fn}: algo='winograd' needs a 3x3 kernel with stride 1 and dilation 1, got kernel "
                         f"{problem.kernel_hw}, stride {problem.stride}, dilation {problem.dilation}; use "
                         "algo='auto' or 'direct'")
    if algo != "auto":
        return algo, "requested by the caller"
    o_per_group = problem.c_out // problem.groups
    positions = max(1, problem.n_batch * problem.out_hw[0] * problem.out_hw[1])  # an empty batch: any choice
    if problem.is_pointwise and problem.groups == 1:
        if (problem.c_out >= channel_block(problem.itemsize)
                and problem.c_out * problem.c_in / positions <= POINTWISE_DIRECT_MAX_WEIGHTS_PER_POSITION):
            return "direct", (f"1x1 stride-1 unpadded with at most {POINTWISE_DIRECT_MAX_WEIGHTS_PER_POSITION} "
                              "weights per output position: the direct kernel reads the input in place "
                              "(L6: 186 vs im2col 153 GFLOP/s with AVX-512)")
        return "im2col", "1x1 stride-1 unpadded: a single GEMM with no column copy"
    c_per_group = problem.c_in // problem.groups
    if winograd_fits(problem):
        return "winograd", (f"3x3 stride 1, {c_per_group} -> {o_per_group} channels per group on "
                            f"{winograd_tiles(problem)} 2x2 output tiles: Winograd F(2x2, 3x3), 2.25x fewer "
                            "multiply-adds (L5: 431 vs direct 220 effective GFLOP/s)")
    if tap_gemm_fits(problem):
        kk = problem.kernel_hw[0] * problem.kernel_hw[1]
        why = (f"<= {TAP_GEMM_MAX_ROWS} GEMM rows" if o_per_group * kk <= TAP_GEMM_MAX_ROWS else
               f"not a multiple of the blocked kernel's {channel_block(problem.itemsize)}-channel blocks")
        return "direct", (f"stride 1, {o_per_group} output channels x {kk} taps per group ({why}) from "
                          f"{c_per_group} input channels (>= {TAP_GEMM_MIN_DEPTH}): the tap-GEMM route, a GEMM "
                          "of every tap's products then col2im (64 -> 3 channels 3x3 on 56x56: 73 vs "
                          "few-channel direct 44 GFLOP/s)")
    if o_per_group <= DEPTHWISE_MAX_CHANNELS and c_per_group >= FEW_MIN_INPUT_CHANNELS:
        return "direct", (f"{o_per_group} output channel(s) per group from {c_per_group} input channels (>= "
                          f"{FEW_MIN_INPUT_CHANNELS}): the direct kernel's few-channel variant, all of a group's "
                          "output channels per micro-tile (64 -> 3 channels on 56x56: 63 vs depthwise 56 GFLOP/s)")
    if o_per_group <= DEPTHWISE_MAX_CHANNELS:
        return "depthwise", (f"{o_per_group} output channel(s) per group (depthwise-like): the depthwise "
                             "kernel, one output channel per pass (L7: 17-22 vs direct 3-5 GFLOP/s, 1 thread)")
    taps = problem.c_in // problem.groups * problem.kernel_hw[0] * problem.kernel_hw[1]
    if o_per_group == FIRST_LAYER_CHANNELS and taps <= FIRST_LAYER_MAX_TAPS:
        return "first_layer", (f"{o_per_group} output channels per group and {taps} taps per output (<= "
                               f"{FIRST_LAYER_MAX_TAPS}): the first-layer kernel's 4-channel micro-tiles fit the "
                               "group (groups 32 of 4 -> 4: 70 vs direct 21 GFLOP/s)")
    spatial = problem.kernel_hw[0] * problem.kernel_hw[1] > 1 and problem.out_hw[1] >= FIRST_LAYER_MIN_WIDTH
    if spatial and taps <= FIRST_LAYER_SPATIAL_MAX_TAPS and problem.out_hw[1] >= FIRST_LAYER_FEW_TAPS_MIN_WIDTH:
        return "first_layer", (f"{taps} taps per output (<= {FIRST_LAYER_SPATIAL_MAX_TAPS}): the first-layer "
                               "kernel's micro-tiles store whole output rows (L1: 0.65-0.74x the direct "
                               "kernel's time)")
    block = channel_block(problem.itemsize)
    if spatial and taps <= FIRST_LAYER_PARTIAL_BLOCK_MAX_TAPS and o_per_group % block:
        return "first_layer", (f"{o_per_group} output channels per group, not whole {block}-channel blocks of the "
                               f"direct kernel, and {taps} taps (<= {FIRST_LAYER_PARTIAL_BLOCK_MAX_TAPS}): the "
                               "first-layer kernel's 4-channel blocks ((8, 24, 56, 56) -> 48: 0.54x the direct "
                               "kernel's time)")
    weights_per_position = o_per_group * taps / positions
    if weights_per_position > DIRECT_MAX_WEIGHTS_PER_POSITION:
        return "im2col", (f"{weights_per_position:.0f} weights per output position (> "
                          f"{DIRECT_MAX_WEIGHTS_PER_POSITION}): the GEMM streams the large weights better")
    return "direct", ("the register-blocked direct kernel (L2: 165 vs im2col 135, L3 stride 2: 141 vs 124 "
                      "GFLOP/s)")


def measure_key(problem):
    """The :mod:`fastconv.autotune` key of a conv2d problem (everything the timing depends on)."""
    from . import autotune

    return autotune.make_key("conv2d", n=problem.n_batch, c_in=problem.c_in, c_out=problem.c_out,
                             in_hw=tuple(problem.in_hw), kernel_hw=tuple(problem.kernel_hw),
                             stride=tuple(problem.stride), dilation=tuple(problem.dilation),
                             pads=tuple(map(tuple, problem.pads)), groups=problem.groups,
                             itemsize=problem.itemsize)


def workspace_bytes(problem, algo):
    """Bytes of temporary memory besides the result."""
    if algo == "measure":  # the candidates run one after another
        return max(workspace_bytes(problem, a) for a in kernel_algos(problem))
    kh, kw = problem.kernel_hw
    (top, bottom), (left, right) = problem.pads
    padded = (problem.n_batch * problem.c_in * (problem.in_hw[0] + top + bottom + kh)
              * (problem.in_hw[1] + left + right) * problem.itemsize)
    if algo == "im2col":
        if problem.is_pointwise:
            return 0
        # per worker thread: one band's columns (and its output when a band folds several images)
        k_rows = problem.c_in * kh * kw
        bands = split_bands(problem.n_batch, problem.out_hw[0], problem.out_hw[1], k_rows, problem.itemsize)
        per_thread = bands.max_len * (k_rows + (problem.c_out if bands.images > 1 else 0)) * problem.itemsize
        return padded + numba.config.NUMBA_NUM_THREADS * per_thread
    if algo == "depthwise":
        return _local_buffer_bytes(problem, DEPTHWISE_ITEM_POSITIONS, 1)
    if algo == "first_layer":
        return _local_buffer_bytes(problem, FIRST_LAYER_ITEM_POSITIONS, 0)
    if algo == "winograd":
        return winograd_workspace(problem)
    if tap_gemm_fits(problem):
        from .conv_transpose import tap_gemm_workspace  # late: conv_transpose imports this module

        return tap_gemm_workspace(problem)
    if problem.c_out // problem.groups < DIRECT_BLOCK_MIN_CHANNELS:  # the few-channel variant: row blocks
        return _local_buffer_bytes(problem, FEW_ITEM_POSITIONS, FEW_OB)
    if problem.pads == ((0, 0), (0, 0)):
        return 0  # the register-blocked kernel reads an unpadded input in place
    return _tile_bytes(problem)


def winograd_workspace(problem):
    """The transformed filters, plus per thread the transformed input and products of one work item, its
    padded input rows and its index tables (other padding modes add a padded copy, not counted here)."""
    block = channel_block(problem.itemsize)
    c_per_group, o_per_group = problem.c_in // problem.groups, problem.c_out // problem.groups
    filters = problem.groups * 16 * -(-o_per_group // block) * block * (c_per_group + 1)
    tw = (problem.out_hw[1] + 1) // 2
    chunk = whole_micro_tiles(WINOGRAD_CHUNK_TILES)
    slots = chunk + (chunk + tw - 1) // tw
    # two planes of padded input rows, plus room for the vector loads past them (2 * 8 + 4 values)
    rows = 2 * ((min((problem.out_hw[0] + 1) // 2, (chunk + tw - 2) // tw + 1) + 1) * (2 * tw + 2) + 20)
    per_thread = (16 * (c_per_group * slots + 16) + 16 * (chunk * block + 16) + rows) * problem.itemsize
    tables = 8 * (16 * chunk + c_per_group)  # int64 slot table and channel offsets
    return filters * problem.itemsize + (per_thread + tables) * numba.config.NUMBA_NUM_THREADS


def _tile_bytes(problem):
    """The direct kernel's per-item padded tiles and partial sums, one set per thread (zero padding; other
    padding modes add a padded copy, not counted here)."""
    geometry = tile_geometry(problem.in_hw, problem.pads, problem.kernel_hw, problem.stride, problem.dilation,
                             problem.out_hw, problem.n_batch, DIRECT_TILE_POSITIONS)
    per_thread = tile_workspace(problem.c_in // problem.groups, geometry, problem.out_hw[1],
                                channel_block(problem.itemsize), problem.itemsize)
    return per_thread * numba.config.NUMBA_NUM_THREADS


def _local_buffer_bytes(problem, item_positions, accumulator_rows):
    """The row-block kernels' local buffers (input phase planes + a zero plane + accumulators), one set
    per thread; zero padding needs no padded copy (other padding modes add one, not counted here)."""
    (top, bottom), (left, right) = problem.pads
    padded_hw = (problem.in_hw[0] + top + bottom, problem.in_hw[1] + left + right)
    row_len, _, _, _, buf_rows = local_geometry(padded_hw, problem.kernel_hw, problem.stride, problem.dilation,
                                                problem.out_hw, problem.n_batch, item_positions)
    planes = problem.c_in // problem.groups * problem.stride[0] * problem.stride[1] + 1
    per_thread = (planes + accumulator_rows) * buf_rows * row_len * problem.itemsize
    return per_thread * numba.config.NUMBA_NUM_THREADS


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
    ('winograd', (32, 64, 56, 56))
    """
    from .conv import conv2d_problem  # late import: conv imports dispatch

    fn = "plan_conv2d"
    if np.dtype(dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {np.dtype(dtype)}")
    problem = conv2d_problem(fn, tuple(x_shape), tuple(weight_shape), stride, padding,
                             dilation, groups, np.dtype(dtype))
    return plan_for(problem, algo)
