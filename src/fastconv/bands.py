"""Band GEMMs on worker threads: conv2d's im2col and the convolution gradients.

A convolution is split into *bands* of output positions (a few rows of one image, or several whole small
images); per band a worker unfolds the input into columns (``_kernels/im2col.py``, ``im2col_band``,
zero padding inline), sized to stay in the cache, and multiplies them right away with a
single-threaded BLAS GEMM. The bands are handed out dynamically to the calling thread and the helper
threads of ``fastconv.workers.executor`` (numpy's BLAS releases the GIL), each with its own scratch
buffers. Every band writes memory no other band touches and is computed the same way on any thread, so
results are bit-identical for any thread count.

A *task* has ``units`` (work items), ``macs`` (its size) and ``run(unit, buffers)``.
"""

import itertools
from dataclasses import dataclass

import numba
import numpy as np

from . import memory
from ._kernels.backward_conv_gemm import gemm
from ._kernels.im2col import im2col_band
from .blas import one_blas_thread
from .threads import SERIAL_MACS
from .workers import run_workers

# A band's columns stay under this many bytes, so the GEMM reads them from
# the cache right after the unfold wrote them (one image row at least).
BAND_BYTES = 4 * 2**20
# Smaller maps put several whole images in a band so that its GEMM's inner dimension has at least this
# many positions. L5 (14 x 14 = 196 positions) runs faster one image per band (weight-gradient GEMM on one
# thread: 89 GFLOP/s with 196 positions vs 75 with 392) than with two (which also costs a transposing copy).
BAND_MIN_POSITIONS = 128
# conv2d's bands: at least this many per call when the rows allow (a single 14x14 image with 256 channels
# was one band on one thread: 75 GFLOP/s against 93-101 for the GEMM on both BLAS threads).
CONV_MIN_BANDS = 4


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class Bands:
    """A split of ``n_batch`` images of ``rows_total x cols`` positions into GEMM bands.

    A band is ``(n0, m, y0, rows)``: images ``n0 .. n0 + m - 1``, rows ``y0 .. y0 + rows - 1`` of each.
    Either ``m == 1`` (large maps: row bands of one image) or ``rows == rows_total`` (small maps: several
    whole images, so the GEMM's inner dimension is at least ``BAND_MIN_POSITIONS``).
    """

    images: int
    rows: int
    n_batch: int
    rows_total: int
    cols: int

    @property
    def count(self):
        return _ceil_div(self.n_batch, self.images) * _ceil_div(self.rows_total, self.rows)

    @property
    def max_len(self):
        return self.images * self.rows * self.cols

    def band(self, b):
        per_image = _ceil_div(self.rows_total, self.rows)
        chunk, part = divmod(b, per_image)
        n0, y0 = chunk * self.images, part * self.rows
        return n0, min(self.images, self.n_batch - n0), y0, min(self.rows, self.rows_total - y0)


def split_bands(n_batch, rows_total, cols, k_rows, itemsize, min_bands=1):
    """Bands whose columns ``(k_rows, band positions)`` stay under ``BAND_BYTES`` (cache-resident for the
    GEMM that reads them), with at least ``BAND_MIN_POSITIONS`` positions when the images allow it, and
    (row bands) at least ``min_bands`` bands when there are rows enough, so that one image still feeds
    every worker (a pure function of the shape: never of the thread count)."""
    budget = max(cols, BAND_BYTES // max(1, k_rows * itemsize))  # positions
    positions = rows_total * cols
    if positions >= BAND_MIN_POSITIONS or n_batch == 1:
        rows = max(1, min(rows_total, budget // cols))
        per_image = _ceil_div(min_bands, n_batch)
        if _ceil_div(rows_total, rows) < per_image:
            rows = max(1, _ceil_div(rows_total, per_image))
        rows = _ceil_div(rows_total, _ceil_div(rows_total, rows))  # equal bands
        return Bands(1, rows, n_batch, rows_total, cols)
    images = max(_ceil_div(BAND_MIN_POSITIONS, positions), budget // positions)
    images = min(n_batch, images)
    images = _ceil_div(n_batch, _ceil_div(n_batch, images))
    return Bands(images, rows_total, n_batch, rows_total, cols)


class Buffers:
    """One worker's scratch arrays, grown on demand and reused across its work items."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, size, dtype):
        arr = self._arrays.get(name)
        if arr is None or arr.size < size or arr.dtype != dtype:
            arr = memory.empty(size, dtype)
            self._arrays[name] = arr
        return arr


def run_tasks(tasks):
    """Run every unit of every task; units are handed out dynamically to ``fastconv.get_num_threads()``
    threads (the caller and the helper threads of ``fastconv.workers.executor``) when the work is large,
    else all on the calling thread. Each unit writes memory no other unit touches and computes it the same
    way on any thread (BLAS on one thread per call), so results are bit-identical for any thread count."""
    items = [(task, unit) for task in tasks for unit in range(task.units)]
    macs = sum(task.macs for task in tasks)
    threads = 1 if macs < SERIAL_MACS else min(numba.get_num_threads(), len(items))
    counter = itertools.count()

    def worker():
        buffers = Buffers()
        while True:
            i = next(counter)
            if i >= len(items):
                return
            task, unit = items[i]
            task.run(unit, buffers)

    with one_blas_thread():
        run_workers(lambda _: worker(), threads)


class ConvBands:
    """A convolution by band GEMMs (a task): per band, unfold ``x`` with the zero padding inline
    (``im2col_band``) into a cache-resident buffer and multiply by each group's weights on one BLAS
    thread, writing the band's output rows in place (a band of several small images goes through a
    buffer and one transposing copy). Each band owns its outputs: bit-identical for any thread count.

    ``x`` (N, C, H, W) C-contiguous; ``wmat`` (G, O/G, C/G * kh * kw) C-contiguous; ``steps`` =
    ``(sh, sw, dh, dw)``; ``top``, ``left`` the zero padding before ``x``; ``out`` (N, O, OH, OW)
    C-contiguous, fully written. No bias. conv2d's im2col, and conv2d_backward's stride-1 input gradient
    (``grad_out`` with the flipped, channel-swapped filters).
    """

    def __init__(self, x, wmat, kernel_hw, steps, top, left, out, macs, min_bands=1):
        self.x, self.wmat, self.out = x, wmat, out
        self.dtype = x.dtype
        self.groups, self.og, self.k_group = wmat.shape
        self.c_in, self.ih, self.iw = x.shape[1], x.shape[2], x.shape[3]
        self.kernel, self.steps = kernel_hw, steps
        self.top, self.left = top, left
        self.oh, self.ow = out.shape[2], out.shape[3]
        self.k_rows = self.c_in * kernel_hw[0] * kernel_hw[1]
        self.bands = split_bands(x.shape[0], self.oh, self.ow, self.k_rows, x.itemsize, min_bands)
        self.units = self.bands.count
        self.macs = macs

    def run(self, band, buffers):
        n0, m, y0, rows = self.bands.band(band)
        kh, kw = self.kernel
        img_len = self.c_in * self.ih * self.iw
        length = m * rows * self.ow
        col_buf = buffers.get("col", self.k_rows * self.bands.max_len, self.dtype)
        im2col_band(self.x.reshape(-1), n0 * img_len, m, img_len, self.c_in, self.ih, self.iw, col_buf, y0, rows,
                    self.ow, self.top, self.left, kh, kw, *self.steps)
        col = col_buf[:self.k_rows * length].reshape(self.k_rows, length)
        c_out, positions = self.groups * self.og, self.oh * self.ow
        if m == 1:
            dst = self.out[n0].reshape(c_out, positions)[:, y0 * self.ow:(y0 + rows) * self.ow]
        else:
            dst = buffers.get("out", c_out * self.bands.max_len, self.dtype)[:c_out * length].reshape(c_out, length)
        k, og = self.k_group, self.og
        for gr in range(self.groups):
            gemm(self.wmat[gr], col[gr * k:(gr + 1) * k], dst[gr * og:(gr + 1) * og], False)
        if m > 1:
            np.copyto(self.out[n0:n0 + m].reshape(m, c_out, positions),
                      dst.reshape(c_out, m, positions).transpose(1, 0, 2))
