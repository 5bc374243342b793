"""``python -m mpifl predict MODEL DATA``: score new rows with a tree model (model.json), without MPI.

DATA is a .npy file of rows, an .npz file with an ``X`` array, or a CSV of numbers (a header line is skipped;
an empty field is missing).  The output is a CSV: each row's prediction, then each class's probability for a
classifier.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mpifl.errors import DataError, MpiflError


def read_rows(path: Path) -> np.ndarray:
    """The rows of a .npy, .npz (key X) or CSV file, as float64."""
    if not path.exists():
        raise DataError(f"{path}: no such data file.")
    try:
        if path.suffix == ".npy":
            X = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "X" not in archive:
                    raise DataError(f"{path}: an .npz of rows must hold an array named X; it has {list(archive)}.")
                X = archive["X"]
        else:
            first = path.read_text().split("\n", 1)[0]
            header = any(c.isalpha() and c not in "eE" for c in first.replace("nan", "").replace("NaN", ""))
            X = np.genfromtxt(path, delimiter=",", skip_header=1 if header else 0, dtype=np.float64)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read rows ({exc}).") from None
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(1, -1) if X.ndim == 1 else X


def main(argv: list[str]) -> int:
    from mpifl.trees import model_file

    parser = argparse.ArgumentParser(prog="python -m mpifl predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a tree model: RUN_DIR/model.json")
    parser.add_argument("data", type=Path, help="rows to score: .npy, .npz (X) or .csv")
    parser.add_argument("--out", type=Path, help="write the CSV here (default: standard output)")
    args = parser.parse_args(argv)
    try:
        booster = model_file.read(args.model)
        X = read_rows(args.data)
        predicted = booster.predict(X)
        columns, header = [predicted], ["prediction"]
        if booster.loss != "linear":
            probabilities = booster.probabilities(X)
            columns += list(probabilities.T)
            header += [f"p{k}" for k in range(probabilities.shape[1])]
    except MpiflError as exc:
        print(f"mpifl predict: {exc}", file=sys.stderr)
        return exc.exit_code
    table = np.column_stack(columns)
    out = open(args.out, "w") if args.out else sys.stdout
    try:
        np.savetxt(out, table, delimiter=",", header=",".join(header), comments="", fmt="%.17g")
    finally:
        if args.out:
            out.close()
    return 0
