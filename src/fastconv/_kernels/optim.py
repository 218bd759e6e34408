"""The Adam update as one pass over each parameter (``fastconv.nn.optim.Adam``).

numpy needs eight whole-array operations (and temporaries) per parameter; on the digits CNN's six
small parameters that was ~100 us of a ~1.6 ms training step, shared by every backend. This loop does
the same arithmetic element by element, in the same order and in the parameter's dtype (the caller
passes every scalar already rounded to it, as numpy rounds a Python float against a float32 array), so
the results are bit-identical to the numpy expression (tested).

Contract: ``p``, ``g``, ``m``, ``v`` 1-D C-contiguous arrays of one float dtype and length; ``consts``
the scalars ``(weight_decay, beta1, 1 - beta1, beta2, 1 - beta2, correction2, eps, step_size)`` in an
array of that dtype (one argument: numba's dispatcher types each scalar argument separately, ~5 us
apiece).
"""

import numpy as np

from .._jit import kernel


@kernel
def adam_update(p, g, m, v, consts):
    """``g' = g + wd * p``; ``m = m * b1 + (1 - b1) * g'``; ``v = v * b2 + (1 - b2) * (g' * g')``;
    ``p -= step_size * m / (sqrt(v / c2) + eps)`` -- numpy's operation order, element by element."""
    weight_decay, beta1, one_minus_beta1, beta2 = consts[0], consts[1], consts[2], consts[3]
    one_minus_beta2, correction2, eps, step_size = consts[4], consts[5], consts[6], consts[7]
    for i in range(p.shape[0]):
        gi = g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * p[i]
        mi = m[i] * beta1
        mi = mi + one_minus_beta1 * gi
        vi = v[i] * beta2
        vi = vi + one_minus_beta2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        denom = np.sqrt(vi / correction2) + eps
        p[i] = p[i] - step_size * mi / denom
