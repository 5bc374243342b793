"""scikit-learn's time to come within a tolerance of the optimal log-loss, on one core.

    python benchmarks/peers/sklearn_logreg.py DATA.npy TARGET_LOSS OUT.json

LogisticRegression(solver="lbfgs") is timed fitting with max_iter = 1, 2, 3, ...
until its loss is within the target; each fit starts from zero, so the time
of the first fit that gets there is the time to reach it.  SGDClassifier
(log_loss) runs epoch by epoch with partial_fit, timed cumulatively.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np


def mean_log_loss(X, y, w, b):
    z = X @ w + b
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def main(path: str, target: float, out: str) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    warnings.simplefilter("ignore", ConvergenceWarning)
    table = np.load(path)
    X, y = np.ascontiguousarray(table[:, :-1]), table[:, -1]
    result = {}
    for max_iter in range(1, 200):
        model = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=max_iter, tol=1e-12)
        t0 = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - t0
        loss = mean_log_loss(X, y, model.coef_[0], model.intercept_[0])
        if loss <= target:
            result["lbfgs"] = {"seconds": seconds, "iterations": int(model.n_iter_[0]), "loss": loss}
            break
    sgd = SGDClassifier(loss="log_loss", random_state=0)
    elapsed = 0.0
    classes = np.unique(y)
    result["sgd"] = {"seconds": None, "epochs": None, "loss": None}
    for epoch in range(1, 51):
        t0 = time.perf_counter()
        sgd.partial_fit(X, y, classes=classes)
        elapsed += time.perf_counter() - t0
        loss = mean_log_loss(X, y, sgd.coef_[0], sgd.intercept_[0])
        result["sgd"] = {"seconds": elapsed, "epochs": epoch, "loss": loss, "reached": loss <= target}
        if loss <= target:
            break
    json.dump(result, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
