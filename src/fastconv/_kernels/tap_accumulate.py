"""The inner loops shared by the direct conv and the direct transposed conv: accumulate a run of taps
into L1-resident accumulator rows.

For taps ``t`` in ``[t_lo, t_hi)``::

    acc[j, p] += w[t, j] * planes[first_plane + tap_plane[t], base + tap_off[t] + p]    for p < plen

Three taps at a time, so each accumulator row is loaded and stored once per three taps, then the last
one or two taps alone (no zero-weight padding taps: ``0 * inf`` on real input would give NaN); the loop
over ``p`` is unit-stride and branch-free (LLVM vectorises it). Callers own ``acc`` (one work item each).
"""

from .._jit import kernel


@kernel(fastmath={"contract"})
def accumulate_taps_4(acc, j0, planes, first_plane, tap_plane, tap_off, t_lo, t_hi, base, w_blk, plen):
    """Rows ``j0 .. j0 + 3`` of ``acc`` with weights ``w_blk[t, j0 .. j0 + 3]``: each input vector loaded
    feeds 4 output channels x 3 taps."""
    a0 = acc[j0]
    a1 = acc[j0 + 1]
    a2 = acc[j0 + 2]
    a3 = acc[j0 + 3]
    t_three = t_hi - (t_hi - t_lo) % 3
    for t in range(t_lo, t_three, 3):
        xs0 = planes[first_plane + tap_plane[t], base + tap_off[t]:]
        xs1 = planes[first_plane + tap_plane[t + 1], base + tap_off[t + 1]:]
        xs2 = planes[first_plane + tap_plane[t + 2], base + tap_off[t + 2]:]
        w0 = w_blk[t]
        w1 = w_blk[t + 1]
        w2 = w_blk[t + 2]
        w00, w01, w02, w03 = w0[j0], w0[j0 + 1], w0[j0 + 2], w0[j0 + 3]
        w10, w11, w12, w13 = w1[j0], w1[j0 + 1], w1[j0 + 2], w1[j0 + 3]
        w20, w21, w22, w23 = w2[j0], w2[j0 + 1], w2[j0 + 2], w2[j0 + 3]
        for p in range(plen):
            v0 = xs0[p]
            v1 = xs1[p]
            v2 = xs2[p]
            a0[p] += w00 * v0 + w10 * v1 + w20 * v2
            a1[p] += w01 * v0 + w11 * v1 + w21 * v2
            a2[p] += w02 * v0 + w12 * v1 + w22 * v2
            a3[p] += w03 * v0 + w13 * v1 + w23 * v2
    for t in range(t_three, t_hi):
        xs = planes[first_plane + tap_plane[t], base + tap_off[t]:]
        w = w_blk[t]
        w0, w1, w2, w3 = w[j0], w[j0 + 1], w[j0 + 2], w[j0 + 3]
        for p in range(plen):
            v = xs[p]
            a0[p] += w0 * v
            a1[p] += w1 * v
            a2[p] += w2 * v
            a3[p] += w3 * v


@kernel(fastmath={"contract"})
def accumulate_taps_1(acc, planes, first_plane, tap_plane, tap_off, t_lo, t_hi, base, w_o, plen):
    """Row 0 of ``acc`` with weights ``w_o[t, 0]`` (one output channel: depthwise)."""
    a0 = acc[0]
    t_three = t_hi - (t_hi - t_lo) % 3
    for t in range(t_lo, t_three, 3):
        xs0 = planes[first_plane + tap_plane[t], base + tap_off[t]:]
        xs1 = planes[first_plane + tap_plane[t + 1], base + tap_off[t + 1]:]
        xs2 = planes[first_plane + tap_plane[t + 2], base + tap_off[t + 2]:]
        w0 = w_o[t, 0]
        w1 = w_o[t + 1, 0]
        w2 = w_o[t + 2, 0]
        for p in range(plen):
            a0[p] += w0 * xs0[p] + w1 * xs1[p] + w2 * xs2[p]
    for t in range(t_three, t_hi):
        xs = planes[first_plane + tap_plane[t], base + tap_off[t]:]
        w = w_o[t, 0]
        for p in range(plen):
            a0[p] += w * xs[p]
