"""LEAF-format data (Caldas et al. 2018): a directory of ``train/`` and ``test/`` JSON files, one entry per user.

Each file holds ``{"users": [...], "num_samples": [...], "user_data": {user: {"x": [...], "y": [...]}}}``
(and optionally "hierarchies").  A user's rows may span several files of a
split; every user must appear in both splits, since each becomes one client
with its own test rows.  FEMNIST-style images (flattened pixel lists) and the
FedProx repository's Synthetic(α, β) files (LEAF-format) read as they are.
Text, as in LEAF's Shakespeare (x a string of 80 characters, y the next
character), is encoded as LEAF's own models encode it: each character becomes
its index in LEAF's 80-letter vocabulary (``LETTERS``), so a row is 80
features holding character codes and the label is the next character's code,
one of 80 classes.  A sequence model then embeds the codes; mpifl runs it
through the torch adapter (``model.kind = "torch"``, examples/shakespeare_lstm.py),
not a Numba kind.

Every problem names the file, the user and what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.errors import DataError

SPLITS = ("train", "test")
# LEAF's Shakespeare vocabulary (leaf/models/utils/language_utils.py), in its order: a character's code is its index.
LETTERS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
CODES = {c: i for i, c in enumerate(LETTERS)}
KEYS = ("users", "num_samples", "user_data")


@dataclass(frozen=True)
class LeafData:
    """Users in the order the train files list them, and each user's rows in both splits."""

    users: list[str]
    train: dict[str, tuple[np.ndarray, np.ndarray]]
    test: dict[str, tuple[np.ndarray, np.ndarray]]
    text: bool = False  # rows and labels are character codes: the classes are LETTERS, all of them

    @property
    def classes(self) -> list[float] | None:
        """The label values fixed by the encoding (text), or None when the labels' own values decide."""
        return [float(i) for i in range(len(LETTERS))] if self.text else None

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
    empty = [u for u, (_, (x, _)) in splits["train"].items() if x.shape[0] == 0]
    if empty:
        raise DataError(f"{root}: {len(empty)} user(s) have no training rows: {_names(empty)}.")
    kinds = {text for part in splits.values() for text, _ in part.values() if text is not None}
    if len(kinds) > 1:
        raise DataError(f"{root}: some users' x hold text and others numbers; a LEAF directory holds one kind.")
    widths = {x.shape[1] for part in splits.values() for _, (x, _) in part.values() if x.shape[0]}
    if len(widths) > 1:
        raise DataError(f"{root}: the users' rows have different feature counts: {sorted(widths)}.")
    train, test = ({u: rows for u, (_, rows) in splits[split].items()} for split in SPLITS)
    return LeafData(list(train), train, test, text=kinds == {True})


def _names(users: list[str], most: int = 5) -> str:
    return ", ".join(map(repr, users[:most])) + (", ..." if len(users) > most else "")


Rows = tuple[np.ndarray, np.ndarray]


def _read_split(folder: Path) -> dict[str, tuple[bool | None, Rows]]:
    """Every user's (whether x is text, rows) in one split, in file order (files sorted by name)."""
    users: dict[str, tuple[bool | None, Rows]] = {}
    for path in sorted(folder.glob("*.json")):
        for user, rows in _read_file(path).items():
            if user in users:
                raise DataError(f"{path}: user {user!r} appears again (already in another file of {folder.name}/).")
            users[user] = rows
    return users


def _read_file(path: Path) -> dict[str, tuple[bool | None, Rows]]:
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


def _rows(path: Path, user: str, entry, count) -> tuple[bool | None, Rows]:
    """One user's (whether x is text, or None with no rows; (X, y)), checked against its num_samples."""
    if not isinstance(entry, dict) or "x" not in entry or "y" not in entry:
        raise DataError(f"{path}: user {user!r} needs 'x' and 'y' in 'user_data'.")
    x, y = entry["x"], entry["y"]
    if len(x) != len(y) or len(x) != count:
        raise DataError(f"{path}: user {user!r} has {len(x)} x rows and {len(y)} labels, but num_samples says {count}.")
    if x and isinstance(x[0], str):
        return True, _encoded(path, user, x, y)
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
    return (None if not x else False), (X, labels)


def _encoded(path: Path, user: str, x: list, y: list) -> Rows:
    """Text rows as LETTERS codes: x strings of one length, y single characters."""
    if not all(isinstance(row, str) for row in x) or len({len(row) for row in x}) != 1:
        raise DataError(f"{path}: user {user!r}'s x must be strings of one length (LEAF's Shakespeare: 80 characters).")
    if not all(isinstance(c, str) and len(c) == 1 for c in y):
        raise DataError(f"{path}: user {user!r}'s y must be single characters, the character after each x.")
    unknown = sorted(({c for row in x for c in row} | set(y)) - CODES.keys())
    if unknown:
        raise DataError(f"{path}: user {user!r}'s text has characters outside LEAF's vocabulary: {unknown[:10]}.")
    X = np.array([[CODES[c] for c in row] for row in x], dtype=np.float64)
    return X, np.array([CODES[c] for c in y], dtype=np.float64)
