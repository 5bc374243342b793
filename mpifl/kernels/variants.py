"""The ways a kernel can walk its rows, and which one each operation uses.

A variant is a loop structure, not a different formula: every variant computes
the same sums, so results agree to rounding.  Which variant is fastest depends
on the CPU (AVX-512 or AVX2, how fast its libm ``exp`` is, how far its
prefetchers run ahead), so mpifl measures them on the running machine
(mpifl.tuning) instead of fixing one.  ``plain`` is the floor: the loop a
careful user would write first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mpifl.errors import ConfigError

PIN_VARIABLE = "MPIFL_KERNEL_VARIANT"
TUNING_VARIABLE = "MPIFL_KERNEL_TUNING"
TUNING_MODES = ("auto", "always", "never")  # auto: measure when the job is long enough to repay it (mpifl.tuning)


@dataclass(frozen=True)
class Variant:
    name: str
    code: int
    chunk_rows: int  # rows per chunk: logits, link and gradient run chunk by chunk
    dot_rows: int  # rows whose dot products run interleaved (dense data)
    axpy_rows: int  # rows added into the gradient per pass over it (dense data)
    poly_exp: bool  # mpifl.kernels.expo's vectorisable exp, else libm's
    lead_chunks: int  # prefetch the rows this many chunks ahead (0: leave it to the hardware)
    about: str
    single_pass: bool = False  # one-output models on dense rows: mpifl.kernels.fused (others walk as chunked)


VARIANTS = (
    Variant("tuned", 0, 64, 8, 4, True, 0,
            "64-row chunks, 8-row dot blocks, 4-row axpy blocks, polynomial exp (tuned on AVX-512)"),
    Variant("prefetch", 1, 32, 8, 8, True, 2,
            "32-row chunks, 8-row dot and axpy blocks, polynomial exp, the rows two chunks ahead prefetched"),
    Variant("libm4", 2, 64, 4, 4, False, 0, "64-row chunks, 4-row blocks, libm exp"),
    Variant("plain", 3, 1, 1, 1, False, 0,
            "one row at a time: dot, libm exp, axpy (the floor; mpifl.kernels.rowwise)"),
    Variant("fused", 4, 64, 8, 4, True, 0,
            "single pass: 4-row blocks loaded once for dots, link and gradient, polynomial exp "
            "(mpifl.kernels.fused; softmax and CSR walk as tuned)", single_pass=True),
    Variant("fused-libm", 5, 64, 8, 4, False, 0,
            "the single pass with libm's exp (softmax and CSR walk as tuned does, with libm's exp)", single_pass=True),
)
assert all(v.code == i for i, v in enumerate(VARIANTS)), "a variant's code is its index in the tables below"
BY_NAME = {v.name: v for v in VARIANTS}
FLOOR = BY_NAME["plain"]
FLOOR_CODE = FLOOR.code  # an int, for the compiled kernels
DEFAULT = BY_NAME["tuned"]  # what ModelKernels uses when nobody chose

# The operations chosen separately: they stress different things.
GRADIENT = "gradient"  # full-batch gradient and evaluation: streams the whole shard
SGD = "sgd"  # mini-batch epochs and batch gradients: small batches, data in cache
OPERATIONS = (GRADIENT, SGD)

# Per-variant tables the compiled kernels index by code.
CHUNK_ROWS = tuple(v.chunk_rows for v in VARIANTS)
DOT_ROWS = tuple(v.dot_rows for v in VARIANTS)
AXPY_ROWS = tuple(v.axpy_rows for v in VARIANTS)
POLY_EXP = tuple(v.poly_exp for v in VARIANTS)
LEAD_ROWS = tuple(v.lead_chunks * v.chunk_rows for v in VARIANTS)
SINGLE_PASS = tuple(v.single_pass for v in VARIANTS)
MAX_CHUNK_ROWS = max(CHUNK_ROWS)


def pinned() -> Variant | None:
    """The variant named by MPIFL_KERNEL_VARIANT, or None; an unknown name is a clear error."""
    name = os.environ.get(PIN_VARIABLE, "").strip()
    if not name:
        return None
    if name not in BY_NAME:
        raise ConfigError(
            f"{PIN_VARIABLE}={name!r} is not a kernel variant; use one of {', '.join(BY_NAME)} or unset it."
        )
    return BY_NAME[name]


def tuning_mode() -> str:
    """When to measure variants, from MPIFL_KERNEL_TUNING (default auto); an unknown value is a clear error."""
    mode = os.environ.get(TUNING_VARIABLE, "").strip() or "auto"
    if mode not in TUNING_MODES:
        raise ConfigError(f"{TUNING_VARIABLE}={mode!r} is not a tuning mode; use one of {', '.join(TUNING_MODES)}.")
    return mode


@dataclass(frozen=True)
class Selection:
    """The variant each operation runs with, for one model (kind, dtype, layout)."""

    gradient: Variant = DEFAULT
    sgd: Variant = DEFAULT
    how: str = "default"  # "default", "pinned", "measured" or "cached"
    note: str = ""  # why an operation kept the default, when the chooser did not measure it

    @classmethod
    def everywhere(cls, variant: Variant, how: str) -> Selection:
        return cls(variant, variant, how)

    @classmethod
    def from_names(cls, names: dict, how: str, note: str = "") -> Selection:
        """The named variant per operation; an operation left out keeps the default."""
        return cls(BY_NAME[names.get(GRADIENT, DEFAULT.name)], BY_NAME[names.get(SGD, DEFAULT.name)], how, note)

    def names(self) -> dict:
        return {GRADIENT: self.gradient.name, SGD: self.sgd.name}

    def describe(self) -> str:
        return f"{GRADIENT}: {self.gradient.name}, {SGD}: {self.sgd.name} ({self.how})"


def default_selection() -> Selection:
    """The pinned variant if MPIFL_KERNEL_VARIANT is set, else the default one, for every operation."""
    variant = pinned()
    return Selection.everywhere(variant, "pinned") if variant else Selection()
