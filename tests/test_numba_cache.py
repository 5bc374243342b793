"""What a start pays Numba for: the load-only JIT cache (mpifl.numba_cache) and the thread pool.

Whether a warm run really skips Numba's registries, and gives the same model,
is checked on whole jobs in test_compile_plan.py.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core.caching import NullCache

from mpifl import compile as compiling
from mpifl import numba_cache
from mpifl.kernels.checks import all_finite

VECTOR = (numba.float64[::1],)  # all_finite's signature for np.ones(3)


def test_every_cached_mpifl_kernel_gets_the_load_only_cache_and_others_keep_numbas():
    assert numba_cache.USABLE  # the Numba installed has the internals the cache relies on
    assert isinstance(all_finite._cache, numba_cache.LoadOnlyCache)
    assert isinstance(numba_cache.attach(numba.njit(lambda x: x))._cache, NullCache)  # no cache=True: left alone


def test_a_miss_loads_the_registries_before_numba_compiles(tmp_path, monkeypatch):
    refreshed = []
    monkeypatch.setattr(numba_cache.numba_setup, "refresh_registries", refreshed.append)
    cache = numba_cache.LoadOnlyCache(all_finite.py_func)
    monkeypatch.setattr(cache, "_load_overload", lambda sig, context: None)  # nothing on disk
    assert cache.load_overload(VECTOR, all_finite.targetctx) is None
    assert refreshed == [all_finite.targetctx]


def test_a_failing_load_refreshes_and_takes_numbas_own_path(monkeypatch):
    all_finite(np.ones(3))  # compiled or loaded: now on disk
    cache = numba_cache.LoadOnlyCache(all_finite.py_func)
    original, calls, refreshed = cache._load_overload, [], []
    monkeypatch.setattr(numba_cache.numba_setup, "refresh_registries", refreshed.append)

    def fails_first(sig, context):
        calls.append(sig)
        if len(calls) == 1:
            raise KeyError("a registry the load needed")
        return original(sig, context)

    monkeypatch.setattr(cache, "_load_overload", fails_first)
    loaded = cache.load_overload(VECTOR, all_finite.targetctx)
    assert loaded is not None and len(calls) == 2 and refreshed == [all_finite.targetctx]
    assert loaded.entry_point(np.array([1.0, np.nan, 2.0])) is False  # the loaded code works


def test_a_one_thread_job_leaves_the_thread_pool_unstarted_unless_an_earlier_job_started_it(monkeypatch):
    calls = []
    monkeypatch.setattr(compiling.numba, "set_num_threads", calls.append)
    monkeypatch.setattr(compiling, "_threads_set", False)
    compiling.set_threads(1)
    assert calls == []
    compiling.set_threads(2)
    compiling.set_threads(1)  # back to one thread for the next job in this process
    assert calls == [min(2, numba.config.NUMBA_NUM_THREADS), 1]


def test_every_kernel_is_keyed_by_all_kernel_sources_so_an_edit_elsewhere_recompiles_it(monkeypatch):
    """Numba checks only a cached function's own file; an MLP kernel calls the losses of another module, so an
    edit there must change the key under which the MLP's machine code is looked up."""
    from mpifl.kernels.mlp import flat_sgd_step, mlp_entries

    sgd_epoch = mlp_entries(0, 0, 0)[0]
    for dispatcher in (flat_sgd_step, sgd_epoch, all_finite):
        cache = dispatcher._cache
        assert isinstance(cache, numba_cache.LoadOnlyCache)
        codegen = dispatcher.targetctx.codegen()
        key = cache._index_key(VECTOR, codegen)
        assert key[-1] == numba_cache.kernel_sources_digest()
        monkeypatch.setattr(numba_cache, "kernel_sources_digest", lambda: "an edited kernel module")
        assert cache._index_key(VECTOR, codegen) != key
        monkeypatch.undo()


def test_without_the_internals_to_key_by_sources_the_disk_cache_is_off_rather_than_stale(monkeypatch):
    monkeypatch.setattr(numba_cache, "USABLE", False)
    dispatcher = numba_cache.attach(numba.njit(cache=True)(lambda x: x + 1))
    assert isinstance(dispatcher._cache, NullCache)
