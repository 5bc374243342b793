"""Which kernel builds the histograms of a fit's large nodes, chosen by timing them on the running machine.

Three variants sum the same integers, so the choice never changes a tree, only its time: ``plain`` (the floor:
feature by feature, each row's values read where they lie), ``tiled`` (a tile of rows' values gathered, then
four features a pass) and ``rows`` (row by row, each row's bins one contiguous run, fetched ahead).  The first
histogram of a fit that holds at least 1/SPARSE_NODE of the rows is built REPEATS times by each, and the fit
keeps the fastest; nodes below that share are built row by row (measured: mpifl.trees.kernels.SPARSE_NODE).
MPIFL_TREE_HISTOGRAM pins a variant and times nothing.  Every rank chooses for itself, on its own rows.
"""

from __future__ import annotations

import os
import time

from mpifl.errors import ConfigError
from mpifl.trees import kernels as K

REPEATS = 3  # rounds of the three variants, alternating; each keeps its best time
PIN = "MPIFL_TREE_HISTOGRAM"


def _plain(grower, rows, start, stop, gq, hp, hist):
    K.build_histogram_plain(grower.binned, rows, start, stop, gq, hp, hist)


def _tiled(grower, rows, start, stop, gq, hp, hist):
    K.build_histogram(grower.binned, rows, start, stop, gq, hp, grower.ordered, hist)


def _rows(grower, rows, start, stop, gq, hp, hist):
    K.build_histogram_by_rows(grower.binned_rows, rows, start, stop, gq, hp, hist)


VARIANTS = {"plain": _plain, "tiled": _tiled, "rows": _rows}


def pinned() -> str | None:
    """The variant MPIFL_TREE_HISTOGRAM names, or None."""
    name = os.environ.get(PIN)
    if name is not None and name not in VARIANTS:
        raise ConfigError(f"{PIN}={name!r} is not a histogram variant; use one of {', '.join(VARIANTS)}.")
    return name


def fastest(grower, rows, start, stop, gq, hp, hist) -> tuple[str, dict[str, float]]:
    """(the variant that built this node's histogram fastest, each one's best seconds); ``hist`` holds it after."""
    name = pinned()
    if name is not None:
        VARIANTS[name](grower, rows, start, stop, gq, hp, hist)
        return name, {}
    best = {name: float("inf") for name in VARIANTS}
    for _ in range(REPEATS):
        for name, build in VARIANTS.items():
            started = time.perf_counter()
            build(grower, rows, start, stop, gq, hp, hist)
            best[name] = min(best[name], time.perf_counter() - started)
    return min(best, key=lambda n: (best[n], n != "plain")), best
