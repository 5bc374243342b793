"""Histogram gradient boosting: mpifl's trees against LightGBM, XGBoost and scikit-learn, side by side.

One core each, the same trees: 100 rounds (trees) of 31 leaves, 255 bins, learning rate 0.1, no L2 on the
leaves, at least 20 rows a leaf.

1. make_classification, 1,000,000 x 32 float32 rows (25% held out): fit seconds, the fit over the trees (binning
   included, for every system) and test accuracy; mpifl's binning alone is named under the table.
2. breast_cancer and the digits: test accuracy, with the same settings (50 rounds, 15 leaves).
3. Distributed mpifl on 1 and 2 ranks (mpiexec, on this machine's cores): seconds per tree and the histogram
   Allreduce bytes per tree.
4. Random forests against scikit-learn's RandomForestClassifier on breast_cancer and the digits.
5. Federated trees on the digits over 64 clients (Dirichlet(0.5)) and 512 (IID), every client or half of them
   a round, against the central model on the same rows; and with the client ranks' histograms masked.

The peers are optional (``pip install lightgbm xgboost``); a missing one is left out of the table and named.
    python benchmarks/trees.py [--rows 1000000] [--trees 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]


def table(rows: int, seed: int = 0):
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(n_samples=rows, n_features=32, n_informative=16, random_state=seed)
    return train_test_split(X.astype(np.float32), y, test_size=0.25, random_state=seed)


def mpifl_fit(Xtr, ytr, trees, leaves, classes):
    from mpifl.trees import kernels
    from mpifl.trees.boosting import BoostParams, fit
    from mpifl.trees.losses import Logistic, Softmax
    from mpifl.trees.grower import TreeParams
    from mpifl.trees.warm import warm_up

    warm_up()
    binned = []
    real = kernels.bin_rows

    def timed(*args):  # the binning, apart from the trees
        started = time.perf_counter()
        real(*args)
        binned.append(time.perf_counter() - started)

    kernels.bin_rows = timed
    import mpifl.trees.boosting as boosting

    boosting.bin_rows = timed
    try:
        params = BoostParams(rounds=trees, bins=255, tree=TreeParams(max_leaves=leaves, l2=0.0, min_child_rows=20,
                                                                     min_child_weight=1e-3, lr=0.1))
        started = time.perf_counter()
        told = {}
        booster = fit(Xtr, ytr.astype(np.float64), Logistic() if classes == 2 else Softmax(classes), params,
                      told=told)
        seconds = time.perf_counter() - started
    finally:
        kernels.bin_rows = boosting.bin_rows = real
    LAST_CHOICE.clear()
    LAST_CHOICE.update(told)
    return booster.predict, seconds, binned[0]


LAST_CHOICE: dict = {}  # the histogram variant mpifl's last fit timed and chose (mpifl.trees.variants)


def lightgbm_fit(Xtr, ytr, trees, leaves, classes):
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=trees, num_leaves=leaves, max_bin=255, learning_rate=0.1,
                                    reg_lambda=0.0, min_child_samples=20, n_jobs=1, verbose=-1, max_depth=-1,
                                    subsample=1.0, colsample_bytree=1.0)
    started = time.perf_counter()
    model.fit(Xtr, ytr)
    return model.predict, time.perf_counter() - started, None


def xgboost_fit(Xtr, ytr, trees, leaves, classes):
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=trees, max_leaves=leaves, max_depth=0, grow_policy="lossguide",
                                  tree_method="hist", max_bin=255, learning_rate=0.1, reg_lambda=0.0, n_jobs=1,
                                  min_child_weight=1e-3)
    started = time.perf_counter()
    model.fit(Xtr, ytr)
    return model.predict, time.perf_counter() - started, None


def sklearn_fit(Xtr, ytr, trees, leaves, classes):
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=trees, max_leaf_nodes=leaves, max_bins=255, learning_rate=0.1,
                                           l2_regularization=0.0, min_samples_leaf=20, early_stopping=False)
    started = time.perf_counter()
    model.fit(Xtr, ytr)
    return model.predict, time.perf_counter() - started, None


SYSTEMS = {"mpifl": mpifl_fit, "LightGBM": lightgbm_fit, "XGBoost": xgboost_fit,
           "scikit-learn HistGradientBoosting": sklearn_fit}
MODULES = {"LightGBM": "lightgbm", "XGBoost": "xgboost", "scikit-learn HistGradientBoosting": "sklearn"}


def available() -> tuple[dict, list[str]]:
    import importlib.util

    have = {name: fn for name, fn in SYSTEMS.items() if name not in MODULES or importlib.util.find_spec(MODULES[name])}
    return have, [name for name in SYSTEMS if name not in have]


def speed_study(rows: int, trees: int) -> tuple[list[str], dict]:
    Xtr, Xte, ytr, yte = table(rows)
    systems, _ = available()
    out, data = [], {}
    for name, fit in systems.items():
        predict, seconds, binning = fit(Xtr, ytr, trees, 31, 2)
        accuracy = float((predict(Xte) == yte).mean())
        per_tree = seconds / trees  # every system's whole fit, its binning included
        data[name] = {"fit": seconds, "per_tree": per_tree, "accuracy": accuracy, "binning": binning}
        if name == "mpifl":
            data[name]["histogram"] = dict(LAST_CHOICE)
    mine = data["mpifl"]
    for name, d in data.items():
        ratio = d["per_tree"] / mine["per_tree"]
        out.append(f"| {name} | {d['fit']:.1f} | {d['per_tree'] * 1e3:.0f} | {ratio:.2f}x | {d['accuracy']:.4f} |")
    return out, data


def accuracy_study() -> tuple[list[str], dict]:
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split

    systems, _ = available()
    out, data = [], {}
    for set_name, loader in [("breast_cancer", load_breast_cancer), ("digits", load_digits)]:
        X, y = loader(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
        scores = {}
        for name, fit in systems.items():
            predict, _, _ = fit(Xtr, ytr, 50, 15, len(np.unique(y)))
            scores[name] = float((predict(Xte) == yte).mean())
        data[set_name] = scores
        out.append(f"| {set_name} | " + " | ".join(f"{scores[n]:.4f}" for n in systems) + " |")
    return out, data


def run_job(work: Path, name: str, job: dict, ranks: int) -> dict | None:
    """One tree job under mpiexec: its summary.json, or None (its error printed) when it failed."""
    import tomli_w

    (work / f"{name}.toml").write_text(tomli_w.dumps(job))
    proc = subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                           str(work / f"{name}.toml"), "--out", str(work / name), "--quiet"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads((work / name / "summary.json").read_text())


def distributed_study(rows: int, trees: int, work: Path) -> tuple[list[str], dict]:
    """The job through mpiexec on 1 and 2 ranks: per-tree time and histogram bytes."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=32, n_informative=16, random_state=0)
    np.save(work / "rows.npy", np.column_stack([X, y]).astype(np.float32))  # the label last; mpifl holds out 25%
    job = {"mode": "distributed", "rounds": trees, "log_every": trees,
           "data": {"path": str(work / "rows.npy"), "test_fraction": 0.25},
           "model": {"kind": "gbdt", "output": "logistic", "dtype": "float32", "max_leaves": 31, "bins": 255},
           "train": {"lr": 0.1}}
    out, data = [], {}
    for ranks in (1, 2):
        out.append(measured_row(work, f"distributed-{ranks}", job, ranks, str(ranks), data, ranks))
    return out, data


def measured_row(work: Path, name: str, job: dict, ranks: int, label: str, data: dict, key) -> str:
    """Run one job; its summary into data[key] and its table row (label, accuracy, ms a tree, MiB a tree)."""
    s = run_job(work, name, job, ranks)
    if s is None:
        return f"| {label} | failed | | |"
    data[key] = s
    return (f"| {label} | {s['final_accuracy']:.4f} | {s['seconds_per_tree'] * 1e3:.1f} "
            f"| {s['histogram_bytes_per_tree'] / 2**20:.2f} |")


def federated_study(work: Path, rounds: int = 50) -> tuple[list[str], dict]:
    """Federated trees on the digits over 64 clients (Dirichlet(0.5)) and 512 (IID), 3 ranks, against the central
    model (distributed mode, one rank, the same rows)."""
    out, data = [], {}
    base = {"rounds": rounds, "log_every": rounds, "data": {"name": "digits", "partition": "dirichlet", "alpha": 0.5},
            "model": {"kind": "gbdt", "output": "softmax", "max_leaves": 15, "bins": 63, "min_child_rows": 10},
            "train": {"lr": 0.1}}
    runs = [("central (distributed, 1 rank)", 1, {"mode": "distributed"})]
    # 512 clients of the digits' 1,438 training rows: a Dirichlet draw leaves some empty, so they are dealt IID
    runs += [(f"federated, {k} clients ({split}), fraction {f}", 3,
              {"mode": "federated", "data": {"clients": k, "partition": split}, "server": {"fraction": f}})
             for k, split in ((64, "dirichlet"), (512, "iid")) for f in (1.0, 0.5)]
    # the same with each client rank's histograms masked (mpifl.trees.secure)
    runs += [(f"federated, {k} clients ({split}), fraction 1.0, masked (secagg)", 3,
              {"mode": "federated", "data": {"clients": k, "partition": split}, "secagg": {"enabled": True}})
             for k, split in ((64, "dirichlet"), (512, "iid"))]
    for i, (label, ranks, extra) in enumerate(runs):
        job = json.loads(json.dumps(base))
        for key, value in extra.items():
            job.setdefault(key, {}).update(value) if isinstance(value, dict) else job.__setitem__(key, value)
        out.append(measured_row(work, f"federated-{i}", job, ranks, label, data, label))
    return out, data


def forest_study(splits: int = 4, trees: int = 100) -> tuple[list[str], dict]:
    """mpifl's random forest against scikit-learn's RandomForestClassifier (both their defaults: full trees, the
    square root of the features per split, bootstrap), test accuracy over ``splits`` 75/25 splits, one thread."""
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    from mpifl.trees.boosting import BoostParams, fit
    from mpifl.trees.grower import TreeParams
    from mpifl.trees.losses import ForestVote, ForestVotes

    out, data = [], {}
    for name, loader in (("breast_cancer", load_breast_cancer), ("digits", load_digits)):
        X, y = loader(return_X_y=True)
        classes = int(y.max()) + 1
        loss = ForestVote() if classes == 2 else ForestVotes(classes)
        ours, theirs, our_seconds, their_seconds = [], [], 0.0, 0.0
        for seed in range(splits):
            Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed)
            params = BoostParams(rounds=trees, bins=255, seed=seed, tree=TreeParams(
                max_leaves=2**31 - 1, l2=0.0, min_child_rows=1, min_child_weight=0.5, lr=1.0 / trees,
                split_features=np.sqrt(X.shape[1]) / X.shape[1], seed=seed))
            started = time.perf_counter()
            model = fit(Xtr, ytr.astype(float), loss, params)
            our_seconds += time.perf_counter() - started
            ours.append(float((model.predict(Xte) == yte).mean()))
            started = time.perf_counter()
            forest = RandomForestClassifier(trees, random_state=seed, n_jobs=1).fit(Xtr, ytr)
            their_seconds += time.perf_counter() - started
            theirs.append(float(forest.score(Xte, yte)))
        data[name] = {"mpifl": ours, "sklearn": theirs, "mpifl_seconds": our_seconds / splits,
                      "sklearn_seconds": their_seconds / splits}
        out.append(f"| {name} | {np.mean(ours):.4f} | {np.mean(theirs):.4f} | {our_seconds / splits:.2f} | "
                   f"{their_seconds / splits:.2f} |")
    return out, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--federated-rounds", type=int, default=50)
    parser.add_argument("--forest-trees", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    systems, missing = available()
    speed, data = speed_study(args.rows, args.trees)
    sections = [markdown_table(
        f"make_classification {args.rows:,} x 32 float32, {args.trees} trees of 31 leaves, 255 bins, one thread, "
        f"on {machine()}", ["system", "fit (s)", "fit / trees (ms)", "time vs mpifl", "test accuracy"], speed),
        f"mpifl's binning (the sketch's edges, then each value's bin) took {data['mpifl']['binning']:.2f} s of its "
        "fit. Its large nodes' histogram kernel, timed on the root: "
        + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in data["mpifl"]["histogram"]["histogram_seconds"].items())
        + f"; it chose {data['mpifl']['histogram']['histogram_kernel']}."]
    accuracy, data["accuracy"] = accuracy_study()
    sections.append(markdown_table("Test accuracy, 50 trees of 15 leaves (30% held out, stratified)",
                                   ["data", *systems], accuracy))
    rows, data["forest"] = forest_study(trees=args.forest_trees)
    sections.append(markdown_table(
        f"Random forests, {args.forest_trees} trees, scikit-learn's defaults (full trees, sqrt(features) per split, bootstrap): "
        "mean test accuracy over 4 splits (75/25), one thread",
        ["data", "mpifl forest", "RandomForestClassifier", "mpifl fit (s)", "scikit-learn fit (s)"], rows))
    with tempfile.TemporaryDirectory() as tmp:
        rows, data["distributed"] = distributed_study(args.rows, args.trees, Path(tmp))
        sections.append(markdown_table(
            "mpifl distributed (mpiexec, the ranks on this machine's cores)",
            ["ranks", "test accuracy", "ms a tree", "histogram Allreduce MiB a tree"], rows))
        rows, data["federated"] = federated_study(Path(tmp), args.federated_rounds)
    sections.append(markdown_table(
        f"Federated trees: digits over 64 clients (Dirichlet(0.5)) or 512 (IID), {args.federated_rounds} rounds of 10 "
        "trees of 15 leaves, 63 bins "
        "(3 ranks: a server with no rows and 2 client ranks)",
        ["run", "test accuracy", "ms a tree", "histogram MiB a client rank sends a tree"], rows))
    if missing:
        sections.append("Not installed here, so left out: " + ", ".join(missing) + ".")
    text = "\n\n".join(sections)
    write_results(args.out, "trees", text, data)
    print(text)


if __name__ == "__main__":
    main()
