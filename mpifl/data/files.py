"""Data from files: a partition directory (per-client files), or one .npy file (distributed mode).

A rank opens only what it needs: a client rank its own clients' files, the
server the test files, a worker its clients' files and the rows of the test
set that are its share.  Every array is memory-mapped, so only the pages a
rank touches are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpifl.data.partition import _bounds
from mpifl.data.sparse import CSR
from mpifl.data.store import Manifest, load_part, read_manifest
from mpifl.errors import DataError


def is_partition(path: str) -> bool:
    return Path(path).is_dir()


def manifest_of(path: str) -> Manifest:
    return read_manifest(Path(path))


def concat(parts: list[tuple[np.ndarray | CSR, np.ndarray]]) -> tuple[np.ndarray | CSR, np.ndarray]:
    """One worker's rows from several clients (zero-copy for a single client)."""
    if len(parts) == 1:
        return parts[0]
    Xs, ys = zip(*parts)
    y = np.concatenate(ys)
    if isinstance(Xs[0], CSR):
        lengths = np.concatenate([np.diff(X.indptr) for X in Xs])
        indptr = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        data = np.concatenate([X.data[X.indptr[0] : X.indptr[-1]] for X in Xs])
        indices = np.concatenate([X.indices[X.indptr[0] : X.indptr[-1]] for X in Xs])
        return CSR(data, indices, indptr, Xs[0].n_features), y
    return np.concatenate(Xs), y


def client_parts(path: str, clients: range, dtype: np.dtype, verify: bool) -> list[tuple[np.ndarray | CSR, np.ndarray]]:
    manifest = manifest_of(path)
    return [load_part(manifest, manifest.client(k), f"client {k}", dtype, verify) for k in clients]


def client_test_parts(path: str, clients: range, dtype: np.dtype, verify: bool) -> list[tuple | None]:
    """Each client's own test rows (LEAF users have them), or None for a client without."""
    manifest = manifest_of(path)
    return [load_part(manifest, manifest.client(k)["test"], f"client {k}'s test rows", dtype, verify)
            if "test" in manifest.client(k) else None for k in clients]


def client_validation_parts(path: str, clients: range, dtype: np.dtype, verify: bool) -> list[tuple | None]:
    """Each client's own validation rows (``partition --validation-fraction``), or None for a client without."""
    manifest = manifest_of(path)
    return [load_part(manifest, manifest.client(k)["validation"], f"client {k}'s validation rows", dtype, verify)
            if "validation" in manifest.client(k) else None for k in clients]


def test_part(path: str, dtype: np.dtype, verify: bool, share: tuple[int, int] | None = None):
    """The test set, or rows [lo, hi) of it (a distributed worker's share)."""
    manifest = manifest_of(path)
    entry = manifest.doc["test"]
    if int(entry["rows"]) == 0:
        return _empty(manifest, dtype)
    X, y = load_part(manifest, entry, "the test set", dtype, verify)
    if share is None:
        return X, y
    lo, hi = share
    if isinstance(X, CSR):
        return X.take(np.arange(lo, hi)), y[lo:hi]
    return X[lo:hi], y[lo:hi]


def _empty(manifest: Manifest, dtype: np.dtype):
    if manifest.sparse:
        return CSR(np.empty(0, dtype), np.empty(0, np.int32), np.zeros(1, np.int64), manifest.n_features), np.empty(0, dtype)
    return np.empty((0, manifest.n_features), dtype), np.empty(0, dtype)


def npy_rows(path: str, label_column: int, test_fraction: float, worker: int, n_workers: int, dtype: np.dtype):
    """A worker's disjoint train and test row ranges of one .npy file, read through a memory map.

    The last round(n * test_fraction) rows are the test set; the file should
    be shuffled.  Only this worker's rows are read.
    """
    try:
        table = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} cannot be read as .npy (truncated or corrupt?): {exc}") from None
    if table.ndim != 2 or table.shape[1] < 2:
        raise DataError(f"{path} must hold a 2-D array of features and a label column; its shape is {table.shape}.")
    n, width = table.shape
    if not -width <= label_column < width:
        raise DataError(f"data.label_column = {label_column} is out of range for {path}, which has {width} columns.")
    label = label_column % width
    n_test = int(round(n * test_fraction))
    train_lo, train_hi = _bounds(n - n_test, n_workers)[worker]
    test_lo, test_hi = _bounds(n_test, n_workers)[worker]
    test_lo, test_hi = test_lo + n - n_test, test_hi + n - n_test
    keep = [c for c in range(width) if c != label]

    def rows(lo, hi):
        block = np.asarray(table[lo:hi])  # reads only these rows
        return np.ascontiguousarray(block[:, keep], dtype=dtype), np.ascontiguousarray(block[:, label], dtype=dtype)

    return rows(train_lo, train_hi), rows(test_lo, test_hi), width - 1
