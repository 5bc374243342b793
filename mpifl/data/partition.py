"""Train/test split and partitions of training rows over clients or workers.

Pure functions: they take sizes, labels and generators and return index arrays,
so any rank's share can be computed (and tested) without communicating.
"""

from __future__ import annotations

import numpy as np

from mpifl.errors import DataError

DIRICHLET_MAX_DRAWS = 1000


def split_train_test(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train, test) row indices, each sorted; the test part has round(n * f) rows."""
    order = rng.permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def iid(n: int, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle the n rows and cut them into ``parts`` near-equal parts."""
    return [np.sort(p) for p in np.array_split(rng.permutation(n), parts)]


def contiguous(n: int, parts: int) -> list[np.ndarray]:
    """Near-equal contiguous ranges; used for sharding data that is already shuffled."""
    return [np.arange(lo, hi) for lo, hi in _bounds(n, parts)]


def _bounds(n: int, parts: int) -> list[tuple[int, int]]:
    return [(k * n // parts, (k + 1) * n // parts) for k in range(parts)]


def dirichlet(labels: np.ndarray, parts: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Label skew (Hsu et al. 2019): each class is split over parts by proportions ~ Dir(alpha).

    Draws are repeated until every part holds at least one row; the draws come
    from the given generator, so the result is a function of its seed.
    """
    classes = np.unique(labels)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    for _ in range(DIRICHLET_MAX_DRAWS):
        shares: list[list[np.ndarray]] = [[] for _ in range(parts)]
        for rows in by_class:
            proportions = rng.dirichlet(np.full(parts, alpha))
            cuts = (np.cumsum(proportions)[:-1] * rows.size).astype(np.int64)
            for k, piece in enumerate(np.split(rows, cuts)):
                shares[k].append(piece)
        result = [np.sort(np.concatenate(s)) for s in shares]
        if min(r.size for r in result) > 0:
            return result
    raise DataError(
        f"A Dirichlet partition with alpha={alpha} left a client empty in "
        f"{DIRICHLET_MAX_DRAWS} draws ({labels.size} rows over {parts} clients). "
        "Raise data.alpha, use fewer ranks, or use data.partition = \"iid\"."
    )


def shards(labels: np.ndarray, parts: int, per_client: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The pathological non-IID split of McMahan et al. (2017).

    Rows are sorted by label (ties in random order), cut into parts * per_client
    equal shards, and each client gets per_client shards drawn at random.
    """
    n_shards = parts * per_client
    if n_shards > labels.size:
        raise DataError(f"Cannot cut {labels.size} rows into {n_shards} shards ({parts} clients x {per_client}).")
    order = rng.permutation(labels.size)
    order = order[np.argsort(labels[order], kind="stable")]
    pieces = np.array_split(order, n_shards)
    dealt = rng.permutation(n_shards).reshape(parts, per_client)
    return [np.sort(np.concatenate([pieces[s] for s in mine])) for mine in dealt]


def quantity(n: int, parts: int, rng: np.random.Generator, distribution: str = "lognormal",
             spread: float = 1.0) -> list[np.ndarray]:
    """Quantity skew: client sizes proportional to log-normal(0, spread) or Pareto(spread) draws.

    Every client gets at least one row; the rest are dealt by largest remainder.
    """
    if parts > n:
        raise DataError(f"Cannot partition {n} rows over {parts} clients: every client needs at least one row.")
    if distribution == "lognormal":
        weights = rng.lognormal(0.0, spread, parts)
    elif distribution == "powerlaw":
        weights = rng.pareto(spread, parts) + 1.0
    else:
        raise DataError(f"Unknown quantity distribution {distribution!r}; use 'lognormal' or 'powerlaw'.")
    share = weights / weights.sum() * (n - parts)
    counts = np.floor(share).astype(np.int64)
    remainder = n - parts - int(counts.sum())
    counts[np.argsort(share - counts, kind="stable")[::-1][:remainder]] += 1
    counts += 1
    order = rng.permutation(n)
    return [np.sort(p) for p in np.split(order, np.cumsum(counts)[:-1])]


def natural(groups: np.ndarray) -> list[np.ndarray]:
    """One client per distinct group id (a writer, a user, a device), in increasing id order."""
    ids, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inverse, minlength=ids.size))[:-1])


def partition(method: str, labels: np.ndarray, parts: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Dispatch on the config's data.partition."""
    if parts > labels.size:
        raise DataError(
            f"Cannot partition {labels.size} training rows over {parts} clients: "
            "every client needs at least one row."
        )
    if method == "iid":
        return iid(labels.size, parts, rng)
    if method == "dirichlet":
        return dirichlet(labels, parts, alpha, rng)
    raise DataError(f"Unknown partition method {method!r}.")
