"""LEAF-format data (Caldas et al. 2018): a directory of ``train/`` and ``test/`` JSON files, one entry per user.

Each file holds ``{"users": [...], "num_samples": [...], "user_data": {user: {"x": [...], "y": [...]}}}``
(and optionally "hierarchies").  A user's rows may span several files of a
split; every user must appear in both splits, since each becomes one client
with its own test rows.  FEMNIST-style images (flattened pixel lists) and the
FedProx repository's Synthetic(α, β) files (LEAF-format) read as they are.
Text (Shakespeare's x is a string of characters) needs an encoding that a
model kind defines; this reader refuses it with that reason.

Every problem names the file, the user and what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.errors import DataError

SPLITS = ("train", "test")
KEYS = ("users", "num_samples", "user_data")


@dataclass(frozen=True)
class LeafData:
    """Users in the order the train files list them, and each user's rows in both splits."""

    users: list[str]
    train: dict[str, tuple[np.ndarray, np.ndarray]]
    test: dict[str, tuple[np.ndarray, np.ndarray]]

    @property
    def n_features(self) -> int:
        return int(next(iter(self.train.values()))[0].shape[1])


def is_leaf(path: str | Path) -> bool:
    """A directory with train/ and test/ folders of .json files."""
    root = Path(path)
    return root.is_dir() and all((root / split).is_dir() and any((root / split).glob("*.json")) for split in SPLITS)


def read(path: str | Path) -> LeafData:
    """Read and check a LEAF directory; the rows come back as float64 features and labels."""
    root = Path(path)
    if not is_leaf(root):
        raise DataError(f"{root} is not a LEAF directory: it needs train/ and test/ folders of .json files.")
    splits = {split: _read_split(root / split) for split in SPLITS}
    train_only = [u for u in splits["train"] if u not in splits["test"]]
    test_only = [u for u in splits["test"] if u not in splits["train"]]
    if train_only or test_only:
        raise DataError(
            f"{root}: each user must appear in both splits (every user becomes a client with its own test rows). "
            + (f"{len(train_only)} user(s) only in train/: {_names(train_only)}. " if train_only else "")
            + (f"{len(test_only)} user(s) only in test/: {_names(test_only)}." if test_only else ""))
    empty = [u for u, (x, _) in splits["train"].items() if x.shape[0] == 0]
    if empty:
        raise DataError(f"{root}: {len(empty)} user(s) have no training rows: {_names(empty)}.")
    widths = {x.shape[1] for part in splits.values() for x, _ in part.values() if x.shape[0]}
    if len(widths) > 1:
        raise DataError(f"{root}: the users' rows have different feature counts: {sorted(widths)}.")
    return LeafData(list(splits["train"]), splits["train"], splits["test"])


def _names(users: list[str], most: int = 5) -> str:
    return ", ".join(map(repr, users[:most])) + (", ..." if len(users) > most else "")


def _read_split(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every user's rows in one split, in file order (files sorted by name)."""
    users: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in sorted(folder.glob("*.json")):
        for user, rows in _read_file(path).items():
            if user in users:
                raise DataError(f"{path}: user {user!r} appears again (already in another file of {folder.name}/).")
            users[user] = rows
    return users


def _read_file(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror}.") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON (truncated?): {exc}.") from None
    if not isinstance(doc, dict) or any(key not in doc for key in KEYS):
        missing = [key for key in KEYS if not isinstance(doc, dict) or key not in doc]
        raise DataError(f"{path} is not a LEAF file: it lacks {', '.join(missing)}.")
    users, counts, data = doc["users"], doc["num_samples"], doc["user_data"]
    if not (isinstance(users, list) and isinstance(counts, list) and len(users) == len(counts)):
        raise DataError(f"{path}: 'users' and 'num_samples' must be lists of the same length.")
    out = {}
    for user, count in zip(users, counts):
        if user not in data:
            raise DataError(f"{path}: user {user!r} is listed but has no entry in 'user_data'.")
        out[str(user)] = _rows(path, str(user), data[user], count)
    return out


def _rows(path: Path, user: str, entry, count) -> tuple[np.ndarray, np.ndarray]:
    """One user's (X, y), checked against its num_samples."""
    if not isinstance(entry, dict) or "x" not in entry or "y" not in entry:
        raise DataError(f"{path}: user {user!r} needs 'x' and 'y' in 'user_data'.")
    x, y = entry["x"], entry["y"]
    if len(x) != len(y) or len(x) != count:
        raise DataError(f"{path}: user {user!r} has {len(x)} x rows and {len(y)} labels, but num_samples says {count}.")
    if x and isinstance(x[0], str):
        raise DataError(f"{path}: user {user!r}'s x holds text (as LEAF's Shakespeare does); text needs an encoding "
                        "that a model kind defines, and mpifl's LEAF reader takes numeric rows only.")
    try:
        X = np.asarray(x, dtype=np.float64)
        labels = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: user {user!r}'s rows are not numeric, or not all of one length: {exc}.") from None
    if X.ndim == 1 and X.size == 0:
        X = X.reshape(0, 0)
    if X.ndim != 2 or labels.ndim != 1:
        raise DataError(f"{path}: user {user!r}'s x must be a list of equal-length rows and y a list of labels.")
    if not (np.isfinite(X).all() and np.isfinite(labels).all()):
        raise DataError(f"{path}: user {user!r}'s rows contain NaN or inf values.")
    return X, labels
