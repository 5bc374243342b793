"""Kernel throughput against NumPy and against the read bandwidth measured in the same run.

    python benchmarks/kernels.py [--repeat 9] [--out benchmarks/results]

Single thread (NumPy's BLAS is pinned to one thread too), as each MPI rank runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numba  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, machine, markdown_table, write_results  # noqa: E402

from mpifl.kernels import ModelKernels  # noqa: E402
from mpifl.model import ModelSpec  # noqa: E402


@numba.njit(fastmath=True, cache=True)
def stream_sum(flat):
    """A vectorised one-pass read: the practical read-bandwidth ceiling of one core."""
    total = 0.0
    for i in range(flat.size):
        total += flat[i]
    return total


def logistic_case(n, d, dtype, rng):
    X = rng.standard_normal((n, d)).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    spec = ModelSpec("logistic", d, 2, np.dtype(dtype))
    theta = spec.zeros()
    theta[0, :d] = 0.1 * rng.standard_normal(d)
    w, b = theta[0, :d].copy(), theta[0, d]
    kernels, grad = ModelKernels(spec), spec.zeros()

    def numpy_grad():
        r = 1.0 / (1.0 + np.exp(-(X @ w + b))) - y
        return X.T @ r, r.sum()

    return X, {
        "numpy": numpy_grad,
        "mpifl": lambda: kernels.full_gradient_sum(X, y, theta, grad),
        "mpifl+loss": lambda: kernels.full_gradient_sum(X, y, theta, grad, want_loss=True),
    }


def softmax_case(n, d, C, dtype, rng):
    X = rng.standard_normal((n, d)).astype(dtype)
    labels = rng.integers(0, C, n)
    y = labels.astype(dtype)
    spec = ModelSpec("softmax", d, C, np.dtype(dtype))
    theta = (0.1 * rng.standard_normal(spec.shape)).astype(dtype)
    W, b = theta[:, :d].T.copy(), theta[:, d].copy()
    onehot = np.eye(C, dtype=dtype)[labels]
    kernels, grad = ModelKernels(spec), spec.zeros()

    def numpy_grad():
        Z = X @ W + b
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        P -= onehot
        return X.T @ P, P.sum(axis=0)

    return X, {"numpy": numpy_grad, "mpifl": lambda: kernels.full_gradient_sum(X, y, theta, grad)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--small", action="store_true", help="tiny sizes, for a smoke run")
    args = parser.parse_args()
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    scale = 100 if args.small else 1
    cases = [
        ("logistic 1M x 32 float64", *logistic_case(1_000_000 // scale, 32, np.float64, rng)),
        ("logistic 1M x 32 float32", *logistic_case(1_000_000 // scale, 32, np.float32, rng)),
        ("softmax 200k x 64, 10 classes, float64", *softmax_case(200_000 // scale, 64, 10, np.float64, rng)),
    ]
    rows, data = [], {"machine": machine(), "repeat": args.repeat, "cases": {}}
    for name, X, runs in cases:
        flat = X.ravel()
        runs = {"X.sum()": X.sum, "stream read": lambda flat=flat: stream_sum(flat), **runs}
        t = alternate(runs, args.repeat)
        read = t["stream read"]
        data["cases"][name] = {"seconds": t, "bytes": X.nbytes}
        for system in [k for k in runs if k.startswith(("numpy", "mpifl"))]:
            rows.append(
                f"| {name} | {system} | {t[system] * 1e3:.1f} | {X.nbytes / t[system] / 1e9:.1f} | "
                f"{t['numpy'] / t[system]:.2f}x | {read / t[system]:.2f} | {t['X.sum()'] / t[system]:.2f} |"
            )
        rows.append(
            f"| {name} | (read X once: stream / X.sum()) | {read * 1e3:.1f} / {t['X.sum()'] * 1e3:.1f} | "
            f"{X.nbytes / read / 1e9:.1f} | | 1.00 | |"
        )
    table = markdown_table(
        f"Kernels, one thread, median of {args.repeat} alternating runs; {machine()}",
        ["case", "system", "ms", "GB/s of X", "speed vs NumPy", "fraction of stream read", "fraction of X.sum()"],
        rows,
    )
    print(table)
    write_results(args.out, "kernels", table, data)


if __name__ == "__main__":
    main()
