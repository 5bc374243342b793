"""A vectorisable exp, in the arrays' own precision.

``math.exp`` is a scalar libm call that stops LLVM from vectorising the loop
around it, and it dominated the logistic gradient.  This version does the usual
range reduction ``exp(x) = 2**k * exp(r)`` with a polynomial for ``exp(r)``;
``2**k`` is built from its bits (the biased exponent k + bias shifted into
place), not looked up in a table: in a vectorised loop a table lookup is a
gather, which AMD's Zen cores run microcoded.  Both give the same bits.  float64 uses degree 11 (about 1e-14 relative);
float32 computes in float32 with the two-constant Cody-Waite reduction and
degree 7 (about 2e-7 relative), so a float32 kernel does no float64
conversions and uses twice the SIMD lanes.  Which path runs is fixed by the
array's dtype at compile time.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

from mpifl.jit import inline_kernel, kernel
from mpifl.kernels.flags import subtract_labels

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_EXP_MIN = -708.0
_EXP_MAX = 709.0

# float32: cephes' split of ln 2 and the float32 exponent range
_LN2_HI32 = 0.693359375
_LN2_LO32 = -2.12194440e-4
_EXP_MIN32 = -87.0
_EXP_MAX32 = 88.0


@intrinsic
def _bits_as_float32(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (a register move, free in SIMD lanes)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)) if args[0].type.width > 32 else args[0],
                               ir.FloatType())
    return types.float32(bits), codegen


@intrinsic
def _bits_as_float64(typingctx, bits):
    """The float64 whose bit pattern is the int64 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(bits), codegen


@inline_kernel
def pow2_32(k):
    """2.0**k in float32 for an integer k in [-126, 127] (normal numbers): k + 127 in the exponent field."""
    return _bits_as_float32(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))


@inline_kernel
def pow2_64(k):
    """2.0**k in float64 for an integer k in [-1022, 1023]: k + 1023 in the exponent field."""
    return _bits_as_float64(np.int64((np.int64(k) + np.int64(1023)) << np.int64(52)))


@inline_kernel
def exp64(x):
    """exp(x) in float64, inputs clamped to the float64 range."""
    t = min(max(np.float64(x), _EXP_MIN), _EXP_MAX)
    kf = math.floor(t * _LOG2E + 0.5)
    r = (t - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * pow2_64(kf)


@inline_kernel
def exp32(x):
    """exp(x) in float32 arithmetic, inputs clamped to the float32 range."""
    t = min(max(np.float32(x), np.float32(_EXP_MIN32)), np.float32(_EXP_MAX32))
    # np.floor keeps float32 (math.floor returns an int64, and an int64 times a float32 is a float64 in NumPy's
    # rules: the whole polynomial would run in float64 through scalar conversions that do not vectorise)
    kf = np.floor(t * np.float32(_LOG2E) + np.float32(0.5))
    r = (t - kf * np.float32(_LN2_HI32)) - kf * np.float32(_LN2_LO32)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    return p * pow2_32(np.int32(kf))


@kernel
def exp_block(src, dst, m):
    """Write exp(src[i]) to dst[i] for i < m, in the precision of dst."""
    if dst.itemsize == 4:
        for i in range(m):
            dst[i] = exp32(src[i])
    else:
        for i in range(m):
            dst[i] = exp64(src[i])


@kernel
def sigmoid_residuals(Z, y, rows, indexed, s, m):
    """Z[i] = 1 / (1 + exp(-Z[i])) - y[row i], one vectorised pass in the precision of Z.

    The sigmoid pass and the label pass (flags.subtract_labels) are separate
    loops, so that neither holds a branch and both vectorise.
    """
    if Z.itemsize == 4:
        one = np.float32(1.0)
        for i in range(m):
            Z[i] = one / (one + exp32(-Z[i]))
    else:
        for i in range(m):
            Z[i] = 1.0 / (1.0 + exp64(-Z[i]))
    subtract_labels(Z, y, rows, indexed, s, m)
