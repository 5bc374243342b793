"""Read a data set into memory for partitioning: CSV, LIBSVM/svmlight, .npy/.npz or IDX files.

Only ``python -m mpifl partition`` reads whole data sets; training ranks read
their own partition files (mpifl.data.store).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.data import idx
from mpifl.data.sparse import CSR
from mpifl.errors import DataError

LIBSVM_SUFFIXES = (".svm", ".libsvm", ".svmlight", ".t", ".scale")


@dataclass(frozen=True)
class Table:
    """Features, labels and, for natural partitions, one group id per row.

    A built-in source that makes its own clients (FedProx's Synthetic) also
    gives its own test rows, its class count and the parameters it was made
    with; the partition command then keeps its clients as they are.
    """

    X: np.ndarray | CSR
    y: np.ndarray
    groups: np.ndarray | None = None
    test: np.ndarray | None = None  # the source's own test rows (then groups are its own clients)
    classes: int | None = None  # label values 0..classes-1, whether or not each occurs
    params: dict | None = None  # what the source was made with, for the manifest

    @property
    def n(self) -> int:
        return self.y.size


def read(source: str, label_column: str | None = None, id_column: str | None = None, fmt: str = "auto",
         features: str | None = None, split: str = "train") -> Table:
    """A file, by its suffix (or ``fmt``); the built-in sources give their own tables (DataSource.partition_table).
    ``features`` and ``split`` name a Hugging Face dataset's columns and split (mpifl.data.hf)."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"The source {source} does not exist (nor is it a built-in data source's name).")
    kind = fmt if fmt != "auto" else _format_of(path)
    if kind == "hf":
        from mpifl.data import hf

        return Table(*hf.read(path, label_column, id_column, features, split))
    if kind == "idx":
        return Table(*idx.read_images_and_labels(path))
    if kind == "csv":
        return read_csv(path, label_column, id_column)
    if kind == "libsvm":
        return read_libsvm(path)
    if kind == "npy":
        return read_npy(path, label_column)
    if kind == "npz":
        return read_npz(path)
    raise DataError(f"Cannot tell the format of {source}; pass --format csv|libsvm|npy|npz|idx.")


def _format_of(path: Path) -> str:
    from mpifl.data import hf

    if hf.is_hf(path):
        return "hf"
    if idx.is_idx(path):
        return "idx"
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".npy", ".npz"):
        return suffix[1:]
    if suffix in LIBSVM_SUFFIXES:
        return "libsvm"
    return "unknown"


def _column(spec: str | None, header: list[str] | None, width: int, path: Path, what: str) -> int | None:
    """A column named or indexed (negative from the end) by ``spec``."""
    if spec is None:
        return None
    if header is not None and spec in header:
        return header.index(spec)
    try:
        index = int(spec)
    except ValueError:
        names = ", ".join(header) if header else "none: the file has no header row"
        raise DataError(f"{path} has no {what} column {spec!r}. Columns: {names}.") from None
    if not -width <= index < width:
        raise DataError(f"The {what} column {index} is out of range for {path}, which has {width} columns.")
    return index % width


def read_csv(path: Path, label_column: str | None, id_column: str | None) -> Table:
    """A delimited text file; a first row that is not all numbers is a header."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    if not rows:
        raise DataError(f"{path} is empty.")
    header = rows[0] if not _numeric(rows[0]) else None
    body = rows[1:] if header is not None else rows
    width = len(rows[0])
    label = _column(label_column if label_column is not None else "-1", header, width, path, "label")
    group = _column(id_column, header, width, path, "id")
    values = np.empty((len(body), width))
    for i, row in enumerate(body):
        line = i + 1 + (header is not None)
        if len(row) != width:
            raise DataError(f"{path}, line {line}: {len(row)} fields, but the first row has {width}.")
        try:
            values[i] = [float(v) if v.strip() else np.nan for v in row]
        except ValueError:
            raise DataError(f"{path}, line {line}: a field is not a number: {row}.") from None
    keep = [c for c in range(width) if c not in (label, group)]
    return Table(values[:, keep], values[:, label], values[:, group] if group is not None else None)


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row if v.strip()]
    except ValueError:
        return False
    return True


def read_libsvm(path: Path) -> Table:
    """LIBSVM/svmlight text, kept sparse; a ``qid:`` field becomes the group id."""
    try:
        from sklearn.datasets import load_svmlight_file
    except ImportError:
        raise DataError('Reading LIBSVM files needs scikit-learn: pip install "mpifl[data]".') from None
    try:
        X, y, qid = load_svmlight_file(str(path), dtype=np.float64, query_id=True)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a valid LIBSVM/svmlight file: {exc}") from None
    return Table(CSR.from_scipy(X), y, qid if qid.size and qid.any() else None)


def read_npy(path: Path, label_column: str | None) -> Table:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path} cannot be read as .npy: {exc}") from None
    if array.ndim != 2 or array.shape[1] < 2:
        raise DataError(f"{path} must hold a 2-D array of features and a label column; its shape is {array.shape}.")
    label = _column(label_column if label_column is not None else "-1", None, array.shape[1], path, "label")
    keep = [c for c in range(array.shape[1]) if c != label]
    return Table(np.ascontiguousarray(array[:, keep], dtype=np.float64), array[:, label].astype(np.float64))


def read_npz(path: Path) -> Table:
    """Arrays ``X`` and ``y`` (and optionally ``groups``)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise DataError(f"{path} must hold arrays 'X' and 'y'; it lacks {', '.join(sorted(missing))}.")
            groups = archive["groups"] if "groups" in archive.files else None
            return Table(np.asarray(archive["X"], dtype=np.float64), np.asarray(archive["y"], dtype=np.float64),
                         groups)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} cannot be read as .npz: {exc}") from None
