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
before.

It also keys every cached mpifl kernel by a digest of all kernel sources.
Numba checks only a cached function's own file before loading it, so a
kernel whose callees changed in another module (an MLP kernel calling the
losses) would load stale machine code; with the digest in the index key,
any edit to a kernel module recompiles every kernel.  Should a Numba release
rename the internals this relies on, ``attach`` turns the disk cache off for
mpifl's kernels rather than risk stale code.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from numba.core.caching import FunctionCache, NullCache
from numba.core.runtime import nrt

from mpifl import numba_setup


@lru_cache(maxsize=1)
def kernel_sources_digest() -> str:
    """A hash of every kernel source and of the JIT options (mpifl/jit.py, mpifl/kernels/*.py)."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([root / "jit.py", *(root / "kernels").glob("*.py")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class LoadOnlyCache(FunctionCache):
    """Numba's per-function disk cache, keyed by the kernel sources too, minus the registry refresh on a hit."""

    def _index_key(self, sig, codegen):
        return (*super()._index_key(sig, codegen), kernel_sources_digest())

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
    return all(hasattr(FunctionCache, name)
               for name in ("_load_overload", "_guard_against_spurious_io_errors", "_index_key"))


USABLE = _usable()


def attach(dispatcher):
    """Give a ``cache=True`` dispatcher the load-only cache keyed by the kernel sources; returns the dispatcher."""
    if type(getattr(dispatcher, "_cache", None)) is FunctionCache:
        if USABLE:
            dispatcher._cache.__class__ = LoadOnlyCache  # the same state, two methods more: no second lookup
        else:  # no way to key the cache by the sources: compile every time rather than load stale code
            dispatcher._cache = NullCache()
    return dispatcher
