"""Software prefetch: ask for the rows a kernel will read next while it computes on the current ones.

A chunked kernel alternates between streaming a chunk in (logits) and
computing on it from L1 (link, gradient).  The hardware prefetchers go idle in
the compute phases, so without help the two add up instead of overlapping.
Spreading prefetches of the rows a few chunks ahead across the phases keeps
the memory system busy throughout.  A prefetch is only a hint: it never
faults and never changes a result.  ``evict`` does the opposite, for
timing: it drops an array from the caches.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

from mpifl.jit import inline_kernel, kernel
from mpifl.kernels.flags import row_at

LINE_BYTES = 64


def _byte_address(context, builder, signature, args):
    """The i8* address of element args[1] (C order) of the array args[0]."""
    data = context.make_array(signature.args[0])(context, builder, args[0]).data
    return builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())


@intrinsic
def prefetch(typingctx, array, flat_index):
    """Hint the cache hierarchy to fetch array's element ``flat_index`` (C order) for reading."""
    sig = types.void(array, flat_index)

    def codegen(context, builder, signature, args):
        address = _byte_address(context, builder, signature, args)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [address.type], fnty)
        # read (0), keep in every cache level (3), data cache (1)
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@inline_kernel
def prefetch_rows(X, rows, indexed, first, count, stop):
    """Prefetch every cache line of the range's rows first .. first+count-1 (those below stop)."""
    d = X.shape[1]
    step = max(LINE_BYTES // X.itemsize, 1)
    for k in range(first, min(first + count, stop)):
        base = np.int64(row_at(rows, indexed, k)) * d
        for j in range(0, d, step):
            prefetch(X, base + j)


@inline_kernel
def prefetch_csr_rows(data, indices, indptr, rows, indexed, first, count, stop):
    """Prefetch the nonzeros (values and column indices) of the range's rows first .. first+count-1."""
    step = max(LINE_BYTES // data.itemsize, 1)
    for k in range(first, min(first + count, stop)):
        r = row_at(rows, indexed, k)
        for p in range(indptr[r], indptr[r + np.uint64(1)], step):
            prefetch(data, p)
            prefetch(indices, p)


@intrinsic
def _clflush(typingctx, array, flat_index):
    """Write back and drop the cache line holding array's element ``flat_index`` (x86 CLFLUSH)."""
    sig = types.void(array, flat_index)

    def codegen(context, builder, signature, args):
        address = _byte_address(context, builder, signature, args)
        fnty = ir.FunctionType(ir.VoidType(), [address.type])
        builder.call(builder.module.declare_intrinsic("llvm.x86.sse2.clflush", (), fnty), [address])
        return context.get_dummy_value()

    return sig, codegen


@kernel
def _flush_lines(flat):
    step = max(LINE_BYTES // flat.itemsize, 1)
    for i in range(0, flat.size, step):
        _clflush(flat, i)


def evict(array) -> bool:
    """Drop a C-contiguous array from every cache level, so the next pass reads it from memory.

    The variant chooser uses it to time full-batch gradients as they run on a
    real shard (streamed from DRAM) on a small sample; a CPU's last-level cache
    can hold hundreds of MiB.  Returns False where there is no CLFLUSH (not x86).
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i686"):
        return False
    _flush_lines(array.reshape(-1))
    return True
