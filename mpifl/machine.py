"""What CPU this process runs on and what the JIT compiles for: the key for every tuned choice."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import numba

# The instruction-set extensions that decide which kernel variant wins.
VECTOR_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx", "sse4.2")


def cpu_model() -> str:
    """The marketing name of the CPU ('AMD EPYC 7763 64-Core Processor'), or the platform's best guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def codegen_target() -> tuple[str, str, str]:
    """(triple, CPU name, feature string) that Numba compiles for, NUMBA_CPU_NAME and _FEATURES included.

    This is the tuple Numba keys its own JIT cache by; if its internals move,
    the host's own name and features (what Numba compiles for by default) stand in.
    """
    try:
        from numba.core.registry import cpu_target

        return tuple(cpu_target.target_context.codegen().magic_tuple())
    except (ImportError, AttributeError):
        import llvmlite.binding as llvm

        name = numba.config.CPU_NAME or llvm.get_host_cpu_name()
        features = numba.config.CPU_FEATURES or llvm.get_host_cpu_features().flatten()
        return (llvm.get_default_triple(), name, features)


def vector_flags() -> list[str]:
    """The vector extensions the compiled code may use, widest first ('avx512f', 'avx2', ...)."""
    features = set(codegen_target()[2].split(","))
    return [flag for flag in VECTOR_FLAGS if f"+{flag}" in features]


def identity() -> dict:
    """Everything a measured kernel choice depends on: the CPU, the code generated for it, Numba."""
    triple, cpu_name, features = codegen_target()
    return {
        "cpu": cpu_model(),
        "llvm_cpu": cpu_name,
        "vector_flags": vector_flags(),
        "features_sha256": hashlib.sha256(features.encode()).hexdigest()[:16],
        "triple": triple,
        "numba": numba.__version__,
    }


def identity_key(ident: dict) -> str:
    """A short, file-name-safe key for an identity."""
    text = "|".join(f"{k}={ident[k]}" for k in sorted(ident))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe() -> str:
    """'Intel(R) Xeon(R) ..., LLVM target sapphirerapids (avx512f, avx2, fma), 2 usable cores'."""
    ident = identity()
    return (
        f"{ident['cpu']}, LLVM target {ident['llvm_cpu']} ({', '.join(ident['vector_flags']) or 'no AVX'}), "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} usable cores"
    )
