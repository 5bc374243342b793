"""Hugging Face ``datasets`` as a partition source: a ``save_to_disk`` directory, or Parquet or Arrow files.

``python -m mpifl partition DIR --format hf --label-column label --features
input_ids`` reads the named columns (every other column but the label and the
id by default; a ClassLabel becomes its integer codes, strings their sorted
codes), flattens each row's fixed-size values (a sequence of token ids, an
image's pixels) into one feature row, and hands the table to mpifl's
partitioners (IID, Dirichlet, shards, quantity skew, or natural ids with
``--id-column``), which write the same per-client files, manifest and hashes
as for any other source.  Only the partition command reads the whole data
set; training ranks read their own clients' files.  A DatasetDict's split is
``--split`` (train by default) and ``--test-split`` (test) when
``--test-source`` names the same directory.  Needs ``pip install "mpifl[hf]"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpifl.errors import DataError

SUFFIXES = (".parquet", ".arrow")


def is_hf(path: Path) -> bool:
    """A save_to_disk directory (its dataset_info.json or dataset_dict.json), or a Parquet or Arrow file."""
    if path.is_dir():
        return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
    return path.suffix.lower() in SUFFIXES


def load(path: Path, split: str):
    """The Dataset at ``path`` (a DatasetDict's ``split``)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{path} is a Hugging Face dataset, which needs the datasets package: "
                        'pip install "mpifl[hf]".') from None
    try:
        if path.is_dir():
            data = datasets.load_from_disk(str(path))
        elif path.suffix.lower() == ".parquet":
            data = datasets.Dataset.from_parquet(str(path))
        else:
            data = datasets.Dataset.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets and pyarrow raise many kinds for a damaged file
        raise DataError(f"{path} cannot be read as a Hugging Face dataset: {exc}") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DataError(f"{path} holds the splits {', '.join(data)}; --split {split!r} is not one of them.")
        data = data[split]
    return data


def read(path: Path, label_column: str | None, id_column: str | None, features: str | None, split: str = "train"):
    """(features, labels, natural ids or None): the dataset's feature columns, its label column and its ids."""
    data = load(path, split)
    label = label_column or "label"
    names = list(data.column_names)
    for column in [label, *([id_column] if id_column else [])]:
        if column not in names:
            raise DataError(f"{path} has no column {column!r} (it has {', '.join(names)}).")
    chosen = [c.strip() for c in features.split(",")] if features else [c for c in names if c not in (label, id_column)]
    for column in chosen:
        if column not in names:
            raise DataError(f"{path} has no feature column {column!r} (it has {', '.join(names)}).")
    data = data.with_format("numpy")
    blocks = []
    for column in chosen:
        try:
            values = np.asarray(data[column], dtype=np.float64)
        except (ValueError, TypeError):
            raise DataError(f"{path}: column {column!r} does not hold numbers of one shape in every row (pad "
                            "sequences to one length, or name other columns with --features).") from None
        blocks.append(values.reshape(len(data), -1))
    if not blocks:
        raise DataError(f"{path}: no feature column is left beside the label {label!r}.")
    X = np.concatenate(blocks, axis=1)
    if not np.isfinite(X).all():
        row = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
        raise DataError(f"{path}: row {row} holds a NaN or an infinity in its features.")
    return X, _codes(np.asarray(data[label])), _codes(np.asarray(data[id_column])) if id_column else None


def _codes(values: np.ndarray) -> np.ndarray:
    """Numbers as they are (float64); strings as their sorted codes."""
    if values.dtype.kind in "iufb":
        return values.astype(np.float64)
    return np.unique(values.astype(str), return_inverse=True)[1].astype(np.float64)
