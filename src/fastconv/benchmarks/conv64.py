"""conv2d float64 benchmark section: L2 and L5 of the suite against torch (onnxruntime has no float64
convolution) and numpy's dgemm in the same run (issue 8: >= 1.5x torch, >= 80 % of dgemm)."""

import numpy as np

from . import conv

SECTION = "conv2d float64"
LAYERS = ("L2", "L5")
COLUMNS = conv.COLUMNS


def run(quick=False):
    return conv.run(quick=quick, dtype=np.float64, layers=LAYERS)
