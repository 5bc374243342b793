"""The compression codecs' loops as kernels: qsgd's bucket norms, stochastic levels and bit packing, in one pass
each way (mpifl.compression calls them; tests/test_compression.py checks them against NumPy)."""

from __future__ import annotations

import numpy as np

from mpifl.jit import kernel


@kernel
def qsgd_encode(x, uniforms, bucket, levels, bits, norms, packed):
    """Per bucket of ``bucket`` values its L2 norm into ``norms``; per value the offset-binary code
    sign * level + levels, level = floor(|x| levels / norm) rounded up with probability of the remainder
    (``uniforms`` in [0, 1)), packed ``bits`` to a code, most significant bit first, into ``packed`` (zeroed)."""
    n = x.shape[0]
    buckets = norms.shape[0]
    for b in range(buckets):
        total = 0.0
        for i in range(b * bucket, min(n, (b + 1) * bucket)):
            total += x[i] * x[i]
        norms[b] = np.sqrt(total)
    word = np.uint64(0)
    held = 0
    out = 0
    mask = np.uint64((1 << bits) - 1)
    for i in range(n):
        norm = norms[i // bucket]
        level = 0
        if norm > 0.0:
            scaled = abs(x[i]) * levels / norm
            low = np.floor(scaled)
            level = int(low) + (1 if uniforms[i] < scaled - low else 0)
            level = min(level, levels)
        code = levels + level if x[i] > 0.0 else (levels - level if x[i] < 0.0 else levels)
        word = (word << np.uint64(bits)) | (np.uint64(code) & mask)
        held += bits
        while held >= 8:
            held -= 8
            packed[out] = np.uint8((word >> np.uint64(held)) & np.uint64(0xFF))
            out += 1
    if held > 0:
        packed[out] = np.uint8((word << np.uint64(8 - held)) & np.uint64(0xFF))


@kernel
def qsgd_decode(packed, norms, bucket, levels, bits, out):
    """out[i] = norm of i's bucket * (code_i - levels) / levels, codes read as qsgd_encode packed them."""
    n = out.shape[0]
    word = np.uint64(0)
    held = 0
    src = 0
    mask = np.uint64((1 << bits) - 1)
    for i in range(n):
        while held < bits:
            word = (word << np.uint64(8)) | np.uint64(packed[src])
            src += 1
            held += 8
        held -= bits
        code = int((word >> np.uint64(held)) & mask)
        out[i] = norms[i // bucket] * (code - levels) / levels
