"""Partition directories: one directory of .npy files per client, a test directory, manifest.json.

    DIR/manifest.json             format, task, dtype, per-client rows, label counts, sha256 of every file
    DIR/client_00000/X.npy y.npy  dense rows, or data.npy indices.npy indptr.npy y.npy for CSR
    DIR/test/...                  the held-out rows (read by the server only)

Plain .npy files can be memory-mapped, so a rank maps its clients' files and
the operating system reads only the pages it touches.  Nothing is ever
unpickled (allow_pickle=False).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.data.sparse import CSR
from mpifl.errors import DataError
from mpifl.kernels.checks import all_finite, labels_in_range

FORMAT = "mpifl-partition"
VERSION = 1
MANIFEST = "manifest.json"
DENSE_FILES = ("X.npy", "y.npy")
SPARSE_FILES = ("data.npy", "indices.npy", "indptr.npy", "y.npy")


def client_dir(k: int) -> str:
    return f"client_{k:05d}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _save(path: Path, array: np.ndarray) -> str:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)
    return sha256(path)


def write_part(root: Path, name: str, X: np.ndarray | CSR, y: np.ndarray, dtype: np.dtype) -> dict[str, str]:
    """Write one client's (or the test set's) rows; returns {file: sha256}."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(X, CSR):
        arrays = {"data.npy": X.data.astype(dtype), "indices.npy": X.indices, "indptr.npy": X.indptr}
    else:
        arrays = {"X.npy": X.astype(dtype)}
    arrays["y.npy"] = y.astype(dtype)
    return {f"{name}/{file}": _save(directory / file, array) for file, array in arrays.items()}


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, root / MANIFEST)


@dataclass(frozen=True)
class Manifest:
    """What a partition directory holds; read by every rank (it contains no rows)."""

    root: Path
    doc: dict

    @property
    def n_clients(self) -> int:
        return len(self.doc["clients"])

    @property
    def n_features(self) -> int:
        return int(self.doc["n_features"])

    @property
    def n_classes(self) -> int:
        return int(self.doc["n_classes"])

    @property
    def sparse(self) -> bool:
        return bool(self.doc["sparse"])

    @property
    def is_classifier(self) -> bool:
        return self.doc["task"] == "classification"

    def client(self, k: int) -> dict:
        return self.doc["clients"][k]


def read_manifest(root: Path) -> Manifest:
    path = Path(root) / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} is missing: data.path must be a directory written by 'python -m mpifl partition'.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} cannot be read as JSON: {exc}") from None
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise DataError(f"{path} is not an {FORMAT} manifest of version {VERSION}.")
    missing = {"n_features", "task", "n_classes", "sparse", "clients", "test"} - set(doc)
    if missing:
        raise DataError(f"{path} lacks {', '.join(sorted(missing))}.")
    return Manifest(Path(root), doc)


def load_part(manifest: Manifest, entry: dict, who: str, dtype: np.dtype, verify: bool) -> tuple[np.ndarray | CSR, np.ndarray]:
    """Map one part's files and check them against the manifest; every error names the file and ``who``."""
    root = manifest.root
    arrays = {}
    for rel, digest in entry["files"].items():
        path = root / rel
        if not path.exists():
            raise DataError(f"{who}: {path} is missing (listed in {root / MANIFEST}).")
        if verify and sha256(path) != digest:
            raise DataError(f"{who}: {path} does not match its sha256 in {root / MANIFEST} (changed or corrupt).")
        try:
            arrays[Path(rel).name] = np.load(path, mmap_mode="c", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{who}: {path} cannot be read as .npy (truncated or corrupt?): {exc}") from None
    rows = int(entry["rows"])
    if rows == 0:
        raise DataError(f"{who} has no rows ({root / entry['dir']}); every client needs at least one.")
    y = _as(arrays["y.npy"], dtype)
    if manifest.sparse:
        X = CSR(_as(arrays["data.npy"], dtype), np.asarray(arrays["indices.npy"]), np.asarray(arrays["indptr.npy"]),
                manifest.n_features)
        shape_ok = X.indptr.size == rows + 1 and X.indptr[-1] == X.data.size == X.indices.size
        features_ok = X.indices.size == 0 or (0 <= int(X.indices.min()) and int(X.indices.max()) < manifest.n_features)
        finite = all_finite(X.data)
    else:
        X = _as(arrays["X.npy"], dtype)
        shape_ok = X.ndim == 2 and X.shape[0] == rows
        features_ok = X.ndim == 2 and X.shape[1] == manifest.n_features
        finite = X.ndim == 2 and all_finite(X.reshape(-1))
    where = root / entry["dir"]
    if not shape_ok or y.shape != (rows,):
        raise DataError(f"{who}: the arrays in {where} do not hold the {rows} rows {root / MANIFEST} lists.")
    if not features_ok:
        found = "column indices beyond" if manifest.sparse else f"{X.shape[1] if X.ndim == 2 else '?'} features, not"
        raise DataError(f"{who}: {where} has {found} the manifest's n_features = {manifest.n_features} "
                        "(the clients disagree on the feature count).")
    if not finite or not all_finite(y):
        raise DataError(f"{who}: {where} contains NaN or inf values.")
    if manifest.is_classifier:
        bad = labels_in_range(y, manifest.n_classes)
        if bad >= 0:
            raise DataError(f"{who}: {where} has label {y[bad]:g}, outside the manifest's "
                            f"{manifest.n_classes} classes 0..{manifest.n_classes - 1}.")
    return X, y


def _as(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A plain ndarray view of a memory map when the dtype already matches; a converted copy otherwise.

    Maps are opened copy-on-write ("c"), so the arrays are writable: Numba
    types read-only arrays differently and would compile the kernels again.
    Nothing writes to them, so no page is ever copied.
    """
    if array.dtype == dtype:
        return np.asarray(array)
    return np.ascontiguousarray(array, dtype=dtype)
