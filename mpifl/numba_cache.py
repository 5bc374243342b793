"""Load cached kernels without first loading Numba's compiler registries.

Numba's ``FunctionCache.load_overload`` refreshes the target context before
it looks in the cache: it imports and registers every typing and lowering
implementation Numba has, about 0.25 s of CPU per process here.  Only
compiling needs them.  Machine code loaded from the cache needs the runtime
(NRT) it links against and nothing else.  On a warm cache that refresh was
the largest single cost of the default job's start-up: 8 ranks on 2 cores
paid about 1 s of wall time for registries no rank used.

``LoadOnlyCache`` initialises the runtime, looks in the cache, and refreshes
(through ``mpifl.numba_setup``, which may hide SciPy's BLAS) only on a miss,
before Numba compiles.  A compile therefore sees the same registries as
before.  Should a Numba release rename the internals this relies on,
``attach`` leaves Numba's own cache in place.
"""

from __future__ import annotations

from numba.core.caching import FunctionCache
from numba.core.runtime import nrt

from mpifl import numba_setup


class LoadOnlyCache(FunctionCache):
    """Numba's per-function disk cache, minus the registry refresh on a hit."""

    def load_overload(self, sig, target_context):
        nrt.rtsys.initialize(target_context)  # the cached code calls into NRT
        try:
            with self._guard_against_spurious_io_errors():
                cres = self._load_overload(sig, target_context)
        except Exception:  # noqa: BLE001 - whatever a refreshed context might have avoided: take Numba's own path
            numba_setup.refresh_registries(target_context)
            return super().load_overload(sig, target_context)
        if cres is None:  # a miss: Numba compiles next, which needs the registries
            numba_setup.refresh_registries(target_context)
        return cres


def _usable() -> bool:
    return all(hasattr(FunctionCache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors"))


USABLE = _usable()


def attach(dispatcher):
    """Give a ``cache=True`` dispatcher the load-only cache; returns the dispatcher."""
    if USABLE and type(getattr(dispatcher, "_cache", None)) is FunctionCache:
        dispatcher._cache.__class__ = LoadOnlyCache  # the same state, one method more: no second cache lookup
    return dispatcher
