"""Explicit SIMD for the kernels: a 256-bit vector type and a few intrinsics (numba's extension API, LLVM IR).

Why: LLVM's loop vectoriser handles the plain row loops, but on rows of 56-112 cells it vectorises
32 cells per iteration and leaves the remainder (up to 31 cells) to a scalar loop with branchy NaN
selects, and a fixed 8-lane inner loop is not SLP-vectorised either (measured: 10x slower). With an
explicit vector of ``LANES = 32 // itemsize`` cells a row is processed as ``ceil(n / LANES)`` chunks,
the last one shifted back to end at ``n``: it recomputes a few cells with the same inputs, so values
are unchanged (the destination never aliases a source). Loads and stores are unaligned. The direct
convolution's register-blocked micro-kernel (``conv_direct.py``) builds on the same type.
The vector type never crosses a kernel boundary: kernels still take only arrays and ints.
"""

import operator
import platform

import numba
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

VEC_BYTES = 32  # AVX2 register; LLVM splits it on narrower targets
IS_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
# maxps via its x86 intrinsic only when compiling for this (AVX) host, numba's default target.
_HOST_TARGET = numba.config.CPU_NAME in (None, "host") and numba.config.CPU_FEATURES is None
_HOST_FEATURES = llvm_binding.get_host_cpu_features().flatten() + "," if _HOST_TARGET else ""
HAS_AVX = IS_X86 and "+avx," in _HOST_FEATURES
# 512-bit vectors and 32 vector registers (AVX-512F), when compiling for such a host: the direct
# convolution's micro-kernel then uses wider tiles (conv_direct.py).
HAS_AVX512 = IS_X86 and "+avx512f," in _HOST_FEATURES


class Vec(types.Type):
    """A vector of ``VEC_BYTES // itemsize`` lanes of a float dtype (internal to the kernels)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VEC_BYTES * 8 // dtype.bitwidth
        super().__init__(name=f"Vec({dtype} x {self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def float_array(arr):
    return isinstance(arr, types.Array) and isinstance(arr.dtype, types.Float)


def address(context, builder, arrty, arr, index):
    """Pointer to ``arr.flat[index]`` (C-contiguous array; no wrap-around or bounds check)."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [index], inbounds=True)


def vector_pointer(context, builder, arrty, arr, index, lanes):
    elt = context.get_value_type(arrty.dtype)
    return builder.bitcast(address(context, builder, arrty, arr, index), ir.VectorType(elt, lanes).as_pointer())


def shuffle_mask(values):
    return ir.Constant(ir.VectorType(ir.IntType(32), len(values)), list(values))


@intrinsic
def vec_lanes(typingctx, arr):
    """Lanes of a vector of ``arr``'s dtype (a compile-time constant)."""
    if not float_array(arr):
        return None
    lanes = VEC_BYTES * 8 // arr.dtype.bitwidth
    return types.intp(arr), lambda context, builder, sig, args: ir.Constant(ir.IntType(64), lanes)


@intrinsic
def vload(typingctx, arr, index):
    """``arr.flat[index : index + lanes]`` (unaligned load)."""
    if not float_array(arr):
        return None
    vt = Vec(arr.dtype)

    def codegen(context, builder, sig, args):
        ptr = vector_pointer(context, builder, sig.args[0], args[0], args[1], vt.lanes)
        return builder.load(ptr, align=arr.dtype.bitwidth // 8)
    return vt(arr, index), codegen


@intrinsic
def prefetch_l2(typingctx, arr, index):
    """Hint the cache line holding ``arr.flat[index]`` into L2 (``prefetcht1``; a hint, never a fault).
    L2, not L1: on T3's input fresh from DRAM, one thread, L1 prefetches 1.75-1.82 ms, L2 1.15-1.25,
    none 1.92 (the L1 hints crowd out the lines the micro-kernel is reading)."""
    if not float_array(arr):
        return None

    def codegen(context, builder, sig, args):
        i8p = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p] + [ir.IntType(32)] * 3), "llvm.prefetch.p0i8")
        ptr = builder.bitcast(address(context, builder, sig.args[0], args[0], args[1]), i8p)
        builder.call(fn, [ptr] + [ir.Constant(ir.IntType(32), v) for v in (0, 2, 1)])
        return context.get_dummy_value()
    return types.void(arr, index), codegen


def strided_load(phase):
    @intrinsic
    def load(typingctx, arr, index):
        if not float_array(arr):
            return None
        vt = Vec(arr.dtype)

        def codegen(context, builder, sig, args):
            wide = builder.load(vector_pointer(context, builder, sig.args[0], args[0], args[1], 2 * vt.lanes),
                                align=arr.dtype.bitwidth // 8)
            return builder.shuffle_vector(wide, ir.Constant(wide.type, ir.Undefined),
                                          shuffle_mask(range(phase, 2 * vt.lanes, 2)))
        return vt(arr, index), codegen
    return load


vload_even = strided_load(0)  # arr.flat[index + 2 * l], l < lanes (reads 2 * lanes cells from index)
vload_odd = strided_load(1)   # arr.flat[index + 1 + 2 * l]


@intrinsic
def vstore(typingctx, arr, index, v):
    """``arr.flat[index : index + lanes] = v`` (unaligned store)."""
    if not (float_array(arr) and isinstance(v, Vec)):
        return None

    def codegen(context, builder, sig, args):
        ptr = vector_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[2].lanes)
        builder.store(args[2], ptr, align=arr.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.void(arr, index, v), codegen


@intrinsic
def vstore_stream(typingctx, arr, index, v):
    """``arr.flat[index : index + lanes] = v`` as a non-temporal store: the line goes to memory without
    being read first (no read-for-ownership) and without displacing the caches. The address must be a
    multiple of ``VEC_BYTES``; the stores are weakly ordered until :func:`store_fence`."""
    if not (float_array(arr) and isinstance(v, Vec)):
        return None

    def codegen(context, builder, sig, args):
        ptr = vector_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[2].lanes)
        store = builder.store(args[2], ptr, align=VEC_BYTES)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()
    return types.void(arr, index, v), codegen


@intrinsic
def store_fence(typingctx):
    """Order the calling thread's non-temporal stores before everything it does next (``sfence``)."""
    def codegen(context, builder, sig, args):
        if IS_X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse.sfence")
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def data_address(typingctx, arr):
    """The address of ``arr``'s first element, as an integer (to align streamed stores)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))
    return types.int64(arr), codegen


@intrinsic
def vsplat(typingctx, arr, value):
    """A vector of ``arr``'s dtype with every lane ``value``."""
    if not float_array(arr):
        return None
    vt = Vec(arr.dtype)

    def codegen(context, builder, sig, args):
        scalar = context.cast(builder, args[1], sig.args[1], arr.dtype)
        undef = ir.Constant(ir.VectorType(scalar.type, vt.lanes), ir.Undefined)
        one = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, undef, shuffle_mask([0] * vt.lanes))
    return vt(arr, value), codegen


def _vector_binop(name):
    @intrinsic
    def op(typingctx, a, b):
        if not isinstance(a, Vec) or a != b:
            return None
        return a(a, b), lambda context, builder, sig, args: getattr(builder, name)(args[0], args[1])
    return op


vadd = _vector_binop("fadd")
vsub = _vector_binop("fsub")
vmul = _vector_binop("fmul")
vdiv = _vector_binop("fdiv")


def _vector_operator(op, intrinsic_op):
    """``a <op> b`` on two vectors of one type, so one ``@inline`` formula serves scalars and vectors."""
    @overload(op)
    def impl(a, b):
        if isinstance(a, Vec) and a == b:
            return lambda a, b: intrinsic_op(a, b)


_vector_operator(operator.add, vadd)
_vector_operator(operator.sub, vsub)


@intrinsic
def vstore_strided(typingctx, arr, index, stride, v):
    """``arr.flat[index + l * stride] = v[l]`` for every lane ``l`` (one scalar store per lane)."""
    if not (float_array(arr) and isinstance(v, Vec) and arr.dtype == v.dtype):
        return None

    def codegen(context, builder, sig, args):
        arr_v, index_v, stride_v, vec = args
        for lane in range(sig.args[3].lanes):
            at = builder.add(index_v, builder.mul(stride_v, ir.Constant(index_v.type, lane)))
            builder.store(builder.extract_element(vec, ir.Constant(ir.IntType(32), lane)),
                          address(context, builder, sig.args[0], arr_v, at))
        return context.get_dummy_value()
    return types.void(arr, index, stride, v), codegen


@intrinsic
def vpick(typingctx, v, m, a, b):
    """Lane by lane ``a if (v > m or v != v) else b``: the running-maximum rule of the max pools (a larger
    value, or a NaN, replaces the maximum), applied to the value and to whatever travels with it.
    A vector select: on x86 a scalar float select becomes a branch, mispredicted on real data."""
    if not (isinstance(v, Vec) and v == m == a == b):
        return None

    def codegen(context, builder, sig, args):
        v_, m_, a_, b_ = args
        take = builder.or_(builder.fcmp_ordered(">", v_, m_), builder.fcmp_unordered("uno", v_, v_))
        return builder.select(take, a_, b_)
    return v(v, m, a, b), codegen


@intrinsic
def vswap_halves(typingctx, v):
    """The vector with its lower and upper halves exchanged."""
    if not isinstance(v, Vec):
        return None
    half = v.lanes // 2

    def codegen(context, builder, sig, args):
        order = list(range(half, v.lanes)) + list(range(half))
        return builder.shuffle_vector(args[0], ir.Constant(args[0].type, ir.Undefined), shuffle_mask(order))
    return v(v), codegen


@intrinsic
def vlow_halves(typingctx, a, b):
    """The lower half of ``a`` followed by the lower half of ``b``."""
    if not (isinstance(a, Vec) and a == b):
        return None
    half = a.lanes // 2

    def codegen(context, builder, sig, args):
        return builder.shuffle_vector(args[0], args[1], shuffle_mask(list(range(half)) +
                                                                     list(range(a.lanes, a.lanes + half))))
    return a(a, b), codegen


def _vector_shuffle(order):
    """A two-vector shuffle intrinsic: lane ``i`` of the result is lane ``order(lanes)[i]`` of ``a ++ b``."""
    @intrinsic
    def op(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return builder.shuffle_vector(args[0], args[1], shuffle_mask(order(a.lanes)))
        return a(a, b), codegen
    return op


vevens = _vector_shuffle(lambda n: range(0, 2 * n, 2))  # lanes 0, 2, 4, ... of a ++ b
vodds = _vector_shuffle(lambda n: range(1, 2 * n, 2))   # lanes 1, 3, 5, ... of a ++ b
vshift_in = _vector_shuffle(lambda n: range(1, n + 1))  # a's lanes 1 .. n - 1, then b's lane 0
vshift_dup = _vector_shuffle(lambda n: [0] + list(range(n - 1)))  # a's lane 0 twice, then lanes 1 .. n - 2 (b unused)
vshift_back = _vector_shuffle(lambda n: [n - 1] + list(range(n, 2 * n - 1)))  # a's last lane, then b's 0 .. n - 2


@intrinsic
def viota(typingctx, arr, start, step):
    """A vector of ``arr``'s dtype with lanes ``start + l * step``."""
    if not float_array(arr):
        return None
    vt = Vec(arr.dtype)

    def codegen(context, builder, sig, args):
        elt = context.get_value_type(arr.dtype)
        s = context.cast(builder, args[1], sig.args[1], arr.dtype)
        d = context.cast(builder, args[2], sig.args[2], arr.dtype)
        lanes = ir.Constant(ir.VectorType(elt, vt.lanes), [float(i) for i in range(vt.lanes)])
        undef = ir.Constant(ir.VectorType(elt, vt.lanes), ir.Undefined)
        splat = shuffle_mask([0] * vt.lanes)
        sv = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0)), undef, splat)
        dv = builder.shuffle_vector(builder.insert_element(undef, d, ir.Constant(ir.IntType(32), 0)), undef, splat)
        return builder.fadd(sv, builder.fmul(lanes, dv))
    return vt(arr, start, step), codegen


@intrinsic
def vstore_int64(typingctx, arr, index, v):
    """``arr.flat[index : index + lanes] = v`` converted to int64 (``arr`` int64; values exact integers)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and isinstance(v, Vec)):
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        ints = builder.fptosi(args[2], ir.VectorType(i64, sig.args[2].lanes))
        ptr = builder.bitcast(address(context, builder, sig.args[0], args[0], args[1]),
                              ir.VectorType(i64, sig.args[2].lanes).as_pointer())
        builder.store(ints, ptr, align=8)
        return context.get_dummy_value()
    return types.void(arr, index, v), codegen


def transpose_rows(builder, rows):
    """The lanes x lanes transpose of ``rows`` (a list of vectors): log2(lanes) butterfly stages, stage
    ``h`` swapping the off-diagonal h x h blocks of every 2h x 2h block (two-source shuffles)."""
    lanes = len(rows)
    rows = list(rows)
    h = 1
    while h < lanes:
        for i in range(lanes):
            if i & h:
                continue
            x, y = rows[i], rows[i + h]
            low = [p if not p & h else lanes + p - h for p in range(lanes)]
            high = [p + h if not p & h else lanes + p for p in range(lanes)]
            rows[i] = builder.shuffle_vector(x, y, shuffle_mask(low))
            rows[i + h] = builder.shuffle_vector(x, y, shuffle_mask(high))
        h *= 2
    return rows
