"""Every kernel variant side by side with NumPy and the read bandwidth, measured in the same run.

    python benchmarks/kernels.py [--repeat 9] [--out benchmarks/results]

Single thread (NumPy's BLAS is pinned to one thread too), as each MPI rank
runs.  For each case it prints every variant, the variant mpifl's chooser
picks on this machine (timed on its own small sample, as a job would), how
the pick compares with the plain fused loop (the floor), and whether the
issue's targets hold here.  The CPU model and the vector extensions the code
was generated for head the table.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.pop("MPIFL_KERNEL_VARIANT", None)  # the benchmark compares them all

import numba  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, markdown_table, write_results  # noqa: E402

from mpifl import machine, tuning  # noqa: E402
from mpifl.kernels import ModelKernels  # noqa: E402
from mpifl.kernels.variants import FLOOR, GRADIENT, SGD, VARIANTS, Selection  # noqa: E402
from mpifl.model import ModelSpec  # noqa: E402
from mpifl.models import MODELS  # noqa: E402

# (case, minimum speed vs NumPy, minimum fraction of one stream read of X) from the kernels issue
TARGETS = {
    "logistic 1M x 32 float64": (1.8, 0.6),
    "logistic 1M x 32 float32": (1.3, None),
    "softmax 200k x 64, 10 classes, float64": (1.5, None),
}


@numba.njit(fastmath=True, cache=True)
def stream_sum(flat):
    """A vectorised one-pass read: the practical read-bandwidth ceiling of one core."""
    total = 0.0
    for i in range(flat.size):
        total += flat[i]
    return total


@numba.njit(fastmath=True, cache=True)
def one_row_loop(X, y, w, b, g):
    """The reference a user would write: per row a dot, a sigmoid, an axpy, compiled with every fast-math
    flag (Numba's fastmath=True, which also assumes no NaN or Inf; mpifl's kernels do not)."""
    n, d = X.shape
    gb = 0.0
    for i in range(n):
        z = b
        for j in range(d):
            z += X[i, j] * w[j]
        r = 1.0 / (1.0 + math.exp(-z)) - y[i]
        for j in range(d):
            g[j] += r * X[i, j]
        gb += r
    return gb


def variant_runs(spec, call) -> dict:
    """One run per variant, each with its own kernels and buffers."""
    return {f"mpifl {v.name}": call(ModelKernels(spec, 1, Selection.everywhere(v, "benchmark"))) for v in VARIANTS}


def logistic_case(n, d, dtype, rng):
    X = rng.standard_normal((n, d)).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    spec = ModelSpec(MODELS["logistic"], d, 2, np.dtype(dtype))
    theta = spec.zeros()
    theta[0, :d] = 0.1 * rng.standard_normal(d)
    w, b = theta[0, :d].copy(), theta[0, d]

    def numpy_grad():
        r = 1.0 / (1.0 + np.exp(-(X @ w + b))) - y
        return X.T @ r, r.sum()

    def call(kernels):
        grad = spec.zeros()
        return lambda: kernels.full_gradient_sum(X, y, theta, grad)

    g = np.zeros(d, dtype=dtype)
    loop = {"one-row loop": lambda: one_row_loop(X, y, w, b, g)}
    return spec, X, GRADIENT, {"numpy": numpy_grad, **loop, **variant_runs(spec, call)}


def softmax_case(n, d, C, dtype, rng):
    X = rng.standard_normal((n, d)).astype(dtype)
    labels = rng.integers(0, C, n)
    y = labels.astype(dtype)
    spec = ModelSpec(MODELS["softmax"], d, C, np.dtype(dtype))
    theta = (0.1 * rng.standard_normal(spec.shape)).astype(dtype)
    W, b = theta[:, :d].T.copy(), theta[:, d].copy()
    onehot = np.eye(C, dtype=dtype)[labels]

    def numpy_grad():
        Z = X @ W + b
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        P -= onehot
        return X.T @ P, P.sum(axis=0)

    def call(kernels):
        grad = spec.zeros()
        return lambda: kernels.full_gradient_sum(X, y, theta, grad)

    return spec, X, GRADIENT, {"numpy": numpy_grad, **variant_runs(spec, call)}


def sgd_case(n, d, C, batch, rng):
    """One local epoch of mini-batch SGD, as a federated client runs it; NumPy loops over the batches."""
    X = rng.standard_normal((n, d))
    labels = rng.integers(0, C, n)
    y = labels.astype(np.float64)
    spec = ModelSpec(MODELS["softmax"], d, C, np.dtype(np.float64))
    start = 0.01 * rng.standard_normal(spec.shape)
    onehot = np.eye(C)[labels]
    order = rng.permutation(n)

    def numpy_epoch():
        theta = start.copy()
        for s in range(0, n, batch):
            rows = order[s:s + batch]
            Z = X[rows] @ theta[:, :d].T + theta[:, d]
            Z -= Z.max(axis=1, keepdims=True)
            P = np.exp(Z)
            P /= P.sum(axis=1, keepdims=True)
            P -= onehot[rows]
            theta[:, :d] -= 0.01 / len(rows) * (P.T @ X[rows])
            theta[:, d] -= 0.01 / len(rows) * P.sum(axis=0)
        return theta

    def call(kernels):
        theta, velocity, grad = start.copy(), spec.zeros(), spec.zeros()

        def epoch():
            theta[...] = start
            kernels.sgd_epoch(X, y, theta, velocity, grad, order, batch, 0.01, 0.0, 0.0)

        return epoch

    return spec, X, SGD, {"numpy": numpy_epoch, **variant_runs(spec, call)}


def chosen(spec, operation, batch) -> str:
    """What the chooser picks here, measured afresh (a private cache, so no earlier choice is reused)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = tuning.ChoiceStore(Path(tmp))
        selection = tuning.choose(spec, batch, 1, store=store)
    return getattr(selection, operation).name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--small", action="store_true", help="tiny sizes, for a smoke run")
    args = parser.parse_args()
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    scale = 100 if args.small else 1
    batch = 32
    cases = [
        ("logistic 1M x 32 float64", *logistic_case(1_000_000 // scale, 32, np.float64, rng)),
        ("logistic 1M x 32 float32", *logistic_case(1_000_000 // scale, 32, np.float32, rng)),
        ("softmax 200k x 64, 10 classes, float64", *softmax_case(200_000 // scale, 64, 10, np.float64, rng)),
        ("SGD epoch 20k x 64, 10 classes, batch 32, float64", *sgd_case(20_000 // scale, 64, 10, batch, rng)),
    ]
    label = machine.describe()
    rows, verdicts = [], []
    data = {"machine": label, "identity": machine.identity(), "repeat": args.repeat, "cases": {}}
    for name, spec, X, operation, runs in cases:
        flat = X.ravel()
        pick = chosen(spec, operation, batch)
        runs = {"X.sum()": X.sum, "stream read": lambda flat=flat: stream_sum(flat), **runs}
        t = alternate(runs, args.repeat)
        read, floor, picked = t["stream read"], t[f"mpifl {FLOOR.name}"], t[f"mpifl {pick}"]
        data["cases"][name] = {"seconds": t, "bytes": X.nbytes, "chosen": pick, "operation": operation}
        for system in [k for k in runs if k.startswith(("numpy", "mpifl", "one-row"))]:
            mark = " (chosen)" if system == f"mpifl {pick}" else ""
            rows.append(
                f"| {name} | {system}{mark} | {t[system] * 1e3:.2f} | {X.nbytes / t[system] / 1e9:.1f} | "
                f"{t['numpy'] / t[system]:.2f}x | {floor / t[system]:.2f}x | {read / t[system]:.2f} |"
            )
        rows.append(
            f"| {name} | (read X once: stream / X.sum()) | {read * 1e3:.2f} / {t['X.sum()'] * 1e3:.2f} | "
            f"{X.nbytes / read / 1e9:.1f} | | | 1.00 |"
        )
        best_name = min((k for k in t if k.startswith("mpifl ")), key=t.get)
        within = picked <= 1.05 * t[best_name]
        loop_text = (f"; {t['one-row loop'] / picked:.2f}x the fast-math one-row loop "
                     f"({'target >= 1.0 met' if picked <= t['one-row loop'] else 'target >= 1.0 missed'})"
                     if "one-row loop" in t else "")
        verdicts.append(f"- {name}: chosen `{pick}` is {floor / picked:.2f}x the plain loop "
                        f"({'at or above the floor' if picked <= floor * 1.05 else 'BELOW the floor by more than 5%'})"
                        f"; the fastest variant here is `{best_name[6:]}`, the pick "
                        f"{'within 5% of it' if within else f'{picked / t[best_name]:.2f}x its time: NOT within 5%'}"
                        + loop_text + _target_text(name, t["numpy"] / picked, read / picked))
    title = f"Kernels, one thread, median of {args.repeat} alternating runs; {label}"
    table = markdown_table(
        title, ["case", "system", "ms", "GB/s of X", "speed vs NumPy", "speed vs plain loop",
                "fraction of stream read"], rows,
    ) + "\n\n" + "\n".join(verdicts)
    print(table)
    write_results(args.out, "kernels", table, data)


def _target_text(name: str, vs_numpy: float, of_stream: float) -> str:
    if name not in TARGETS:
        return ""
    speed, stream = TARGETS[name]
    met = vs_numpy >= speed and (stream is None or of_stream >= stream)
    want = f">= {speed}x NumPy" + (f" and >= {stream} of a stream read" if stream else "")
    return f"; target {want}: {'met' if met else 'missed'} ({vs_numpy:.2f}x, {of_stream:.2f})"


if __name__ == "__main__":
    main()
