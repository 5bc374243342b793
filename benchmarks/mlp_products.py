"""The MLP's three products at the 2NN's shapes: BLAS (Numba's np.dot) against hand-written loops.

    python benchmarks/mlp_products.py [--repeat 200] [--out benchmarks/results]

Forward Z = H W, weight gradient H^T R and input delta R W^T, float32, one
thread, at B = 10 and 50.  The loops skip the zero activations a ReLU leaves
(half of them here), the one advantage a hand-written loop has over a GEMM.
This is the measurement behind the MLP kernels using BLAS for every product.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402

from mpifl.jit import KERNEL_OPTIONS  # noqa: E402

OPTIONS = {k: v for k, v in KERNEL_OPTIONS.items() if k != "cache"}


@numba.njit(**OPTIONS)
def forward_loops(H, W, Z):
    m, n = H.shape
    for i in range(m):
        Z[i, :] = 0
        for k in range(n):
            h = H[i, k]
            if h != 0.0:
                for j in range(W.shape[1]):
                    Z[i, j] += h * W[k, j]


@numba.njit(**OPTIONS)
def forward_blas(H, W, Z):
    np.dot(H, W, Z)


@numba.njit(**OPTIONS)
def weights_loops(H, R, G):
    m, n = H.shape
    G[:, :] = 0
    for i in range(m):
        for k in range(n):
            h = H[i, k]
            if h != 0.0:
                for j in range(R.shape[1]):
                    G[k, j] += h * R[i, j]


@numba.njit(**OPTIONS)
def weights_blas(H, R, G):
    np.dot(H.T, R, G)


@numba.njit(**OPTIONS)
def delta_loops(R, W, D):
    for i in range(R.shape[0]):
        for k in range(W.shape[0]):
            total = 0.0
            for j in range(R.shape[1]):
                total += R[i, j] * W[k, j]
            D[i, k] = total


@numba.njit(**OPTIONS)
def delta_blas(R, W, D):
    np.dot(R, W.T, D)


def best(repeat: int, fn, *args) -> float:
    fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows, data = [], []
    for batch in (10, 50):
        for n, w, relu in ((784, 200, False), (200, 200, True), (200, 10, True)):
            H = rng.random((batch, n), dtype=np.float32)
            if relu:
                H[H < 0.5] = 0.0
            W = rng.standard_normal((n, w)).astype(np.float32)
            R = rng.standard_normal((batch, w)).astype(np.float32)
            Z, G, D = (np.empty(shape, np.float32) for shape in ((batch, w), (n, w), (batch, n)))
            for name, blas, loops, operands in (("H W", forward_blas, forward_loops, (H, W, Z)),
                                                 ("H^T R", weights_blas, weights_loops, (H, R, G)),
                                                 ("R W^T", delta_blas, delta_loops, (R, W, D))):
                b, loop = best(args.repeat, blas, *operands), best(args.repeat, loops, *operands)
                rows.append(f"| B = {batch} | {n} x {w} | {name} | {b * 1e6:.1f} µs | {loop * 1e6:.1f} µs | "
                            f"{loop / b:.1f}x |")
                data.append({"batch": batch, "n": n, "w": w, "product": name, "blas": b, "loops": loop})
    table = markdown_table(f"MLP products, float32, one thread, best of {args.repeat}; {machine()}",
                           ["batch", "layer", "product", "BLAS", "loops", "loops / BLAS"], rows)
    print(table)
    write_results(args.out, "mlp_products", table, {"cases": data, "machine": machine()})


if __name__ == "__main__":
    main()
