"""Validation rows: what every choice mpifl makes is judged on, so that the test set judges only once.

Two ways to hold rows out, set in the job (``data.validation_fraction``, or
``data.folds`` with ``data.fold``), each a pure function of the seed and of
a row's or client's identity, never of the rank that hosts it:

- federated mode, a share: each client holds out a seeded share of its own
  rows, drawn per (seed, client) as its own test rows are.
- federated mode, folds: leave-clients-out.  The clients are dealt into K
  folds (a seeded permutation of the ids, cut as scikit-learn's ``KFold``
  cuts); the held-out fold's clients train nothing and keep all their rows
  for validation, the others train on all of theirs.
- distributed mode: rows are identified by their place in the job's
  training rows (``DataSource.worker_ids``).  A share holds out the rows
  whose place comes first in a seeded permutation of the N places; folds are
  ``KFold(K)``'s contiguous blocks of the N places, unshuffled, so that
  scikit-learn's ``GridSearchCV(cv=KFold(K))`` sees the same folds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mpifl.data.shards import ClientData, Shard, hold_out, take
from mpifl.errors import DataError
from mpifl.rng import Purpose, stream


def kfold_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """scikit-learn's KFold: K contiguous blocks, the first n % K of them one longer."""
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    ends = np.cumsum(sizes)
    return [(int(e - s), int(e)) for s, e in zip(sizes, ends)]


def fold_of_places(places: np.ndarray, n: int, k: int) -> np.ndarray:
    """The fold of each place 0..n-1 under kfold_bounds(n, k)."""
    ends = np.array([hi for _, hi in kfold_bounds(n, k)])
    return np.searchsorted(ends, places, side="right")


def client_folds(seed: int, n_clients: int, k: int) -> np.ndarray:
    """Each client's fold: a seeded permutation of the ids, cut into KFold's blocks (leave-clients-out)."""
    order = stream(seed, Purpose.VALIDATION).permutation(n_clients)
    folds = np.empty(n_clients, dtype=np.int64)
    folds[order] = fold_of_places(np.arange(n_clients), n_clients, k)
    return folds


def check(folds: int, fold: int, fraction: float, units: int, what: str) -> None:
    """Refuse folds that cannot be cut: K of 1, a fold past K, more folds than clients or rows, both ways at once."""
    if folds == 0:
        if fold:
            raise DataError(f"data.fold = {fold} needs data.folds (the number of folds, K >= 2).")
        return
    if fraction:
        raise DataError("data.folds and data.validation_fraction both hold rows out; set one of them.")
    if folds < 2:
        raise DataError(f"data.folds = {folds}: K-fold cross-validation needs K >= 2 (0 turns it off).")
    if fold >= folds:
        raise DataError(f"data.fold = {fold} is not one of the {folds} folds (0..{folds - 1}).")
    if folds > units:
        raise DataError(f"data.folds = {folds} is more than the job's {units} {what}: every fold needs one.")


def federated_split(clients: list[ClientData], ids, n_clients: int, seed: int, fraction: float, folds: int,
                    fold: int) -> list[ClientData]:
    """The clients ``ids`` this rank hosts, each with its validation rows (None: it has none).  A client whose
    partition directory holds a validation split keeps it."""
    if folds:
        held = client_folds(seed, n_clients, folds) == fold  # these never train (mpifl.strategies.sampling)
        return [replace(c, validation=c.train) if held[k] else replace(c, validation=None)
                for c, k in zip(clients, ids)]
    return hold_out(clients, ids, fraction, seed, Purpose.VALIDATION, "validation")


def held_out_clients(seed: int, n_clients: int, folds: int, fold: int) -> np.ndarray | None:
    """Boolean mask of the clients that train nothing (the held-out fold), or None without folds."""
    return client_folds(seed, n_clients, folds) == fold if folds else None


def distributed_split(train: Shard, places: np.ndarray, n: int, seed: int, fraction: float, folds: int,
                      fold: int) -> tuple[Shard, Shard | None]:
    """(a worker's training rows, its validation rows) from its rows' places among the job's n training rows."""
    if places.shape != (train.n,):
        raise DataError(f"The data source gave {places.size} row places for a shard of {train.n} rows.")
    if folds:
        held = fold_of_places(places, n, folds) == fold
    elif fraction > 0:
        rank = np.empty(n, dtype=np.int64)
        rank[stream(seed, Purpose.VALIDATION).permutation(n)] = np.arange(n)
        held = rank[places] < int(round(fraction * n))
    else:
        return train, None
    return take(train, np.flatnonzero(~held)), take(train, np.flatnonzero(held))
