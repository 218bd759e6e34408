"""Numba specialisations of the pooling kernels stay few (one per float dtype).

This module sorts after test_pool_adaptive/avg/max, so the kernels have already seen strided, read-only,
float32/float64, int/pair/numpy-int arguments, out buffers and both thread counts.
"""

import numpy as np

import fastconv
from fastconv._kernels import pool as kernels

KERNELS = (kernels.window_pool2d_kernel, kernels.pool2x2_kernel, kernels.max_pool2d_indices_kernel,
           kernels.pool2x2_indices_kernel, kernels.bin_max_kernel, kernels.bin_avg_kernel,
           kernels.bin_max_indices_kernel)


def test_kernel_specialisations_stay_few():
    x64 = np.zeros((1, 2, 6, 6))
    x32 = np.zeros((1, 2, 12, 6), np.float32)[:, :, ::2]  # strided
    for x in (x64, x32):
        fastconv.max_pool2d(x, (2, 2), stride=np.int64(2), padding="same")
        fastconv.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
        fastconv.max_pool2d(x, 2, return_indices=True)
        fastconv.avg_pool2d(x, 2, divisor_override=3)
        fastconv.adaptive_max_pool2d(x, (None, 2), return_indices=True)
        fastconv.spatial_pyramid_pool2d(x, (1, (2, 3)), mode="avg")
    for k in KERNELS:
        assert 1 <= len(k.signatures) <= 2, (k, k.signatures)
