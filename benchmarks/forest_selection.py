"""The textbook model selection, side by side: a random forest's n_estimators chosen by 5-fold cross-validation,
as an mpifl sweep and as scikit-learn's GridSearchCV, on the same rows and the same folds.

    python benchmarks/forest_selection.py [--quick] [--out DIR]

The digits' training rows as mpifl deals them (data.test_fraction = 0.2); both search n_estimators in
[10, 50, 100, 200] with KFold(5) on those rows (unshuffled: the same folds), pick the best mean validation
accuracy, refit on every training row and score the test rows once.  mpifl runs jobs/sweeps/forest_digits.toml
on 2 ranks (2 groups of 1); GridSearchCV runs RandomForestClassifier(random_state=0) with n_jobs = 2.  Written to
forest_selection.md and .json under --out (default benchmarks/results, which also publishes the table).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine, markdown_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "jobs" / "sweeps" / "forest_digits.toml"


def digits_rows():
    """The digits job's training and test rows, in the order the sweep's folds cut them."""
    import mpifl
    from mpifl.data.catalog import resolve

    cfg = mpifl.job(REPO / "jobs" / "forest_digits.toml")
    train, test = resolve(cfg).worker(0, 1)
    return train.X, train.y.astype(np.int64), test.X, test.y.astype(np.int64)


def mpifl_search(work: Path, grid: list[int]) -> tuple[list[dict], dict, float]:
    import tomllib

    import tomli_w

    sweep = tomllib.loads(SWEEP.read_text())
    sweep.update(job=str(REPO / "jobs" / "forest_digits.toml"), out=str(work / "sweep"), grid={"rounds": grid})
    (work / "sweep.toml").write_text(tomli_w.dumps(sweep))
    started = time.perf_counter()
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "2", sys.executable, "-m", "mpifl", "sweep",
                           str(work / "sweep.toml"), "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"the sweep failed:\n{proc.stderr}")
    with open(work / "sweep" / "cv_results.csv") as handle:
        rows = list(csv.DictReader(handle))
    refit = json.loads((work / "sweep" / "refit" / "summary.json").read_text())
    return rows, {**json.loads((work / "sweep" / "best.json").read_text()), "test": refit["final_accuracy"]}, seconds


def sklearn_search(grid: list[int]):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV, KFold

    Xtr, ytr, Xte, yte = digits_rows()
    search = GridSearchCV(RandomForestClassifier(random_state=0), {"n_estimators": grid}, cv=KFold(5), n_jobs=2,
                          scoring="accuracy", refit=True)
    started = time.perf_counter()
    search.fit(Xtr, ytr)
    seconds = time.perf_counter() - started
    return search, search.score(Xte, yte), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n_estimators in [5, 10] (the smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    grid = [5, 10] if args.quick else [10, 50, 100, 200]
    with tempfile.TemporaryDirectory() as tmp:
        ours, best, ours_seconds = mpifl_search(Path(tmp), grid)
    theirs, their_test, their_seconds = sklearn_search(grid)
    rows, data = [], {"machine": machine(), "grid": grid, "points": []}
    for row, mean, std in zip(ours, theirs.cv_results_["mean_test_score"], theirs.cv_results_["std_test_score"]):
        rows.append(f"| {row['rounds']} | {float(row['mean_score']):.4f} ± {float(row['std_score']):.4f} | "
                    f"{mean:.4f} ± {std:.4f} |")
        data["points"].append({"n_estimators": int(row["rounds"]), "mpifl_mean": float(row["mean_score"]),
                               "mpifl_std": float(row["std_score"]), "sklearn_mean": float(mean),
                               "sklearn_std": float(std)})
    rows.append(f"| **chosen, then refit and tested** | {best['params']['rounds']}: test {best['test']:.4f} | "
                f"{theirs.best_params_['n_estimators']}: test {their_test:.4f} |")
    rows.append(f"| **search wall time (2 cores)** | {ours_seconds:.1f} s | {their_seconds:.1f} s |")
    data.update(mpifl_best=best["params"]["rounds"], mpifl_test=best["test"], mpifl_seconds=ours_seconds,
                sklearn_best=theirs.best_params_["n_estimators"], sklearn_test=float(their_test),
                sklearn_seconds=their_seconds)
    table = markdown_table(
        f"Random forest, n_estimators by 5-fold CV on the digits' 1,437 training rows ({machine()})",
        ["n_estimators", "mpifl sweep: mean val accuracy ± std", "GridSearchCV: mean ± std"], rows)
    print(table)
    write_results(args.out, "forest_selection", table, data)


if __name__ == "__main__":
    main()
