"""The one place where Numba JIT options are set.

Every kernel in mpifl is compiled with these options, so a change of policy
(fast-math flags, caching) is made here and nowhere else.
"""

from __future__ import annotations

import numba

from mpifl.numba_cache import attach

# Reassociation and contraction let LLVM vectorise reductions and use FMA.
# 'nnan' and 'ninf' are left out on purpose: a NaN in the data or a diverging
# run must still propagate into the loss so that the finiteness checks see it.
FASTMATH_FLAGS = frozenset({"contract", "reassoc", "nsz", "arcp", "afn"})

KERNEL_OPTIONS = {
    "nogil": True,
    "cache": True,  # Numba writes cache files atomically; see mpifl.compile
    "fastmath": set(FASTMATH_FLAGS),
    "error_model": "numpy",
    "boundscheck": False,
}


# Loops that gather through an index array (CSR rows): reassociation would let LLVM vectorise the gathered dot
# with vgather, which AMD's Zen cores run microcoded; 1.65x slower than two scalar chains there (rcv1-like rows).
GATHER_OPTIONS = {**KERNEL_OPTIONS, "fastmath": set(FASTMATH_FLAGS - {"reassoc"})}


# For the compile-time choices (mpifl.kernels.switch): the chosen implementation is
# inlined into its caller, so choosing costs no call.
CHOICE_OPTIONS = {"inline": "always", "jit_options": {k: KERNEL_OPTIONS[k] for k in ("fastmath", "error_model", "boundscheck")}}


def kernel(fn):
    """Compile a serial kernel with the project's options."""
    return attach(numba.njit(**KERNEL_OPTIONS)(fn))


def gather_kernel(fn):
    """Compile a serial kernel whose inner loops gather through indices (GATHER_OPTIONS)."""
    return attach(numba.njit(**GATHER_OPTIONS)(fn))


def threaded_kernel(fn):
    """Compile a kernel whose outer loop is a ``prange`` over row ranges."""
    return attach(numba.njit(parallel=True, **KERNEL_OPTIONS)(fn))


def inline_kernel(fn):
    """A kernel inlined into its callers at Numba IR level: for the per-chunk phases, whose
    call overhead (every array passed as its exploded fields) would dominate short chunks."""
    return attach(numba.njit(inline="always", **KERNEL_OPTIONS)(fn))
