"""Choices a kernel makes at compile time, so a job compiles only the code it runs.

A kernel's model kind and variant are small ints.  Passed as constants from
the entry points (mpifl.kernels.entries), they reach Numba as literal types,
and each call site written with :func:`compile_time_choice` resolves to one
implementation while the kernel is typed.  The paths not taken are never
typed, lowered or compiled: a softmax job with the ``tuned`` variant does not
compile the logistic link or the one-row loops.
"""

from __future__ import annotations

from numba import types
from numba.core.errors import TypingError
from numba.extending import overload

from mpifl.jit import CHOICE_OPTIONS


def constant(value_type, what: str) -> int:
    """The value of a compile-time constant argument, from its Numba literal type."""
    if isinstance(value_type, (types.IntegerLiteral, types.BooleanLiteral)):
        return value_type.literal_value
    raise TypingError(f"{what} must be a compile-time constant (pass it from mpifl.kernels.entries); got {value_type}")


def compile_time_choice(stub):
    """Register ``stub``'s implementations: the decorated function gets the argument
    types (the deciding ones literal) and returns the implementation to compile."""
    return overload(stub, prefer_literal=True, **CHOICE_OPTIONS)
