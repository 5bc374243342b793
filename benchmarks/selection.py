"""Model selection: mpifl's cross-validated sweep against scikit-learn's GridSearchCV, and Optuna against a grid.

    python benchmarks/selection.py [--quick] [--out DIR]

1. The same answer as GridSearchCV.  On breast_cancer (569 x 30, standardized) and a synthetic 200,000 x 50
   table, in distributed mode with L-BFGS, a grid over model.l2 with cv = 5 (KFold(5) on the training rows) is
   compared with GridSearchCV over the same l2 (LogisticRegression(C = 1 / (l2 n)) on each fold's n rows, the
   same objective), n_jobs = 2, on the same folds.  mpifl's sweep runs on 2 ranks (2 groups of 1).
2. Adaptive search pays.  On jobs/fedprox_synthetic.toml (FedProx, 30 clients, 20% of each client's rows for
   validation) over (train.lr, server.proximal_mu, train.epochs): the grid's 4 x 4 x 3 points against Optuna's TPE
   with the median pruner, charged in client rounds (each sampled client's round counts one).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, save_figure, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
L2 = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
TEST_FRACTION = 0.2


def sklearn_search(X, y, folds: int):
    """GridSearchCV over l2 on the training rows, with mpifl's objective: mean log-loss + l2/2 ||w||^2."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, KFold

    class MeanLossLogistic(ClassifierMixin, BaseEstimator):
        def __init__(self, l2=1.0):
            self.l2 = l2

        def fit(self, X, y):
            self.model_ = LogisticRegression(C=1.0 / (self.l2 * len(y)), tol=1e-10, max_iter=10_000).fit(X, y)
            self.classes_ = self.model_.classes_
            return self

        def predict(self, X):
            return self.model_.predict(X)

    search = GridSearchCV(MeanLossLogistic(), {"l2": L2}, cv=KFold(folds), n_jobs=2, scoring="accuracy")
    started = time.perf_counter()
    search.fit(X, y)
    return search, time.perf_counter() - started


def mpifl_search(work: Path, table: Path, folds: int) -> tuple[list[dict], dict, float]:
    sweep = work / "sweep.toml"
    out = work / f"cv-{table.stem}"
    sweep.write_text(
        f'ranks_per_job = 1\nout = "{out}"\nselect = "val_accuracy"\ncv = {folds}\n[grid]\n"model.l2" = {L2}\n'
        f'[set]\nmode = "distributed"\nrounds = 500\nlog_every = 1000\n"data.path" = "{table}"\n'
        f'"data.n_classes" = 2\n"data.test_fraction" = {TEST_FRACTION}\n"model.kind" = "logistic"\n'
        '"model.dtype" = "float64"\n"train.optimizer" = "lbfgs"\n"train.tol" = 1e-9\n"train.history" = 20\n')
    started = time.perf_counter()
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "2", sys.executable, "-m", "mpifl", "sweep", str(sweep),
                           "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"the cv sweep failed:\n{proc.stderr}")
    with open(out / "cv_results.csv") as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((out / "best.json").read_text()), seconds


def tables(quick: bool):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    yield "breast_cancer", X, y.astype(np.float64)
    rng = np.random.default_rng(0)
    n = 20_000 if quick else 200_000
    X = rng.standard_normal((n, 50))
    w = rng.standard_normal(50) / np.sqrt(50) * 3
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w)))).astype(np.float64)
    yield f"synthetic {n:,} x 50", X, y


def gridsearch_study(work: Path, quick: bool) -> tuple[list[str], dict]:
    rows, data = [], {}
    for name, X, y in tables(quick):
        n_train = len(y) - int(round(len(y) * TEST_FRACTION))
        path = work / f"{name.split()[0]}.npy"
        np.save(path, np.column_stack([X, y]))
        ours, best, ours_seconds = mpifl_search(work, path, 5)
        theirs, theirs_seconds = sklearn_search(X[:n_train], y[:n_train], 5)
        their_means = theirs.cv_results_["mean_test_score"]
        our_means = [float(r["mean_score"]) for r in ours]
        gap = max(abs(a - b) for a, b in zip(our_means, their_means))
        same = best["params"]["model.l2"] == theirs.best_params_["l2"]
        rows.append(f"| {name} | {best['params']['model.l2']:g} | {theirs.best_params_['l2']:g} | "
                    f"{'yes' if same else 'no'} | {gap:.1e} | {ours_seconds:.1f} | {theirs_seconds:.1f} | "
                    f"{theirs_seconds / ours_seconds:.2f}x |")
        data[name] = {"mpifl_best": best["params"]["model.l2"], "sklearn_best": theirs.best_params_["l2"],
                      "mpifl_means": our_means, "sklearn_means": their_means.tolist(), "max_mean_gap": gap,
                      "mpifl_seconds": ours_seconds, "sklearn_seconds": theirs_seconds}
    return rows, data


FEDPROX_SET = {"rounds": 20, "server.strategy": "fedprox", "data.validation_fraction": 0.2}
GRID = {"train.lr": [0.003, 0.01, 0.03, 0.1], "server.proximal_mu": [0.001, 0.01, 0.1, 1.0], "train.epochs": [1, 5, 20]}
SPACE = {"train.lr": {"low": 0.003, "high": 0.1, "log": True}, "server.proximal_mu": {"low": 0.001, "high": 1.0,
                                                                                    "log": True},
         "train.epochs": {"low": 1, "high": 20, "int": True}}


def run_search(work: Path, name: str, body: dict) -> list[dict]:
    import tomli_w

    doc = {"job": str(REPO / "jobs" / "fedprox_synthetic.toml"), "ranks_per_job": 2, "out": str(work / name),
           "select": "val_loss", "score": "best", **body, "set": FEDPROX_SET}
    (work / f"{name}.toml").write_text(tomli_w.dumps(doc))
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "4", sys.executable, "-m", "mpifl", "sweep",
                           str(work / f"{name}.toml"), "--quiet"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"the sweep {name} failed:\n{proc.stderr}")
    with open(work / name / "cv_results.csv") as handle:
        return list(csv.DictReader(handle))


def curve(rows: list[dict]) -> tuple[list[int], list[float]]:
    """Best validation loss so far against the client rounds spent so far, in the order the points were tried."""
    spent, best, xs, ys = 0, math.inf, [], []
    for row in sorted(rows, key=lambda r: int(r["point"])):
        spent += int(row["client_rounds"] or 0)
        if row["mean_score"] and row["state"] == "complete":
            best = min(best, float(row["mean_score"]))
        xs.append(spent)
        ys.append(best)
    return xs, ys


def adaptive_study(work: Path, quick: bool, figure: Path | None) -> tuple[list[str], dict]:
    grid = GRID if not quick else {k: v[:2] for k, v in GRID.items()}
    trials = 24 if not quick else 4
    grid_rows = run_search(work, "grid", {"grid": grid})
    optuna_rows = run_search(work, "optuna", {"search": "optuna", "trials": trials, "prune": "median", "seed": 0,
                                              "space": SPACE})
    gx, gy = curve(grid_rows)
    ox, oy = curve(optuna_rows)
    target = gy[-1]
    reached = next((x for x, y in zip(ox, oy) if y <= target), None)
    rows = [f"| grid ({len(grid_rows)} points) | {gy[-1]:.4f} | {gx[-1]:,} | {gx[next(i for i, y in enumerate(gy) if y <= target)]:,} |",
            f"| Optuna TPE + median pruner ({len(optuna_rows)} trials, "
            f"{sum(r['state'] == 'pruned' for r in optuna_rows)} pruned) | {oy[-1]:.4f} | {ox[-1]:,} | "
            f"{f'{reached:,}' if reached is not None else 'not reached'} |"]
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.step(gx, gy, where="post", label="grid")
        ax.step(ox, oy, where="post", label="Optuna TPE + median pruner")
        ax.axhline(target, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("client rounds spent")
        ax.set_ylabel("best validation loss so far")
        ax.legend()
        save_figure(fig, figure)
    return rows, {"grid": {"client_rounds": gx, "best": gy}, "optuna": {"client_rounds": ox, "best": oy},
                  "grid_best": target, "optuna_reached_at": reached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 20k-row table and a 2x2x2 grid (the smoke test)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    published = args.out.resolve() == (Path(__file__).parent / "results").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cv_rows, cv_data = gridsearch_study(work, args.quick)
        search_rows, search_data = adaptive_study(work, args.quick,
                                                  REPO / "docs" / "images" / "selection.png" if published else None)
    text = "\n\n".join([
        markdown_table(f"Cross-validated grid over model.l2 (cv = 5), distributed L-BFGS, on {machine()}",
                       ["table", "mpifl's best l2", "GridSearchCV's", "same", "largest gap in mean score",
                        "mpifl sweep, 2 ranks (s)", "GridSearchCV, n_jobs=2 (s)", "speed-up"], cv_rows),
        markdown_table("FedProx on Synthetic(1,1), 20 rounds a point, 4 ranks (2 groups of 2): best validation loss "
                       "and its cost", ["search", "best val_loss", "client rounds spent",
                                        "client rounds to the grid's best"], search_rows),
    ])
    write_results(args.out, "selection", text, {"gridsearch": cv_data, "adaptive": search_data, "machine": machine()})
    print(text)


if __name__ == "__main__":
    main()
