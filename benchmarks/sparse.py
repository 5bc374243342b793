"""The CSR logistic kernel against scipy.sparse on rcv1-like data, with the read bandwidth as the ceiling.

    python benchmarks/sparse.py [--rows 1000000] [--features 47236] [--nnz 70] [--repeat 5] [--out DIR]

scipy computes X.T @ (sigmoid(X @ w) - y) in two sparse products (two
passes over X).  mpifl's chunked variants fuse the loss and gradient per
chunk of rows; its single-pass variant (mpifl/kernels/csr_single_pass.py)
reads each row's nonzeros once for the dot and once more from L1 for the
update, with the weights and the gradient side by side.  Every kernel
variant runs side by side, and the chooser's pick is marked and checked
against the fastest.  One thread, float64, as each MPI rank runs.  The
column indices ascend within each row, as in LIBSVM files and scipy's
canonical CSR.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.pop("MPIFL_KERNEL_VARIANT", None)  # every variant runs, and the chooser picks freely

import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.special import expit  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, markdown_table, write_results  # noqa: E402

from mpifl import tuning  # noqa: E402
from mpifl.data.sparse import CSR  # noqa: E402
from mpifl.kernels import ModelKernels  # noqa: E402
from mpifl.kernels.variants import Selection  # noqa: E402
from mpifl.machine import describe  # noqa: E402
from mpifl.model import ModelSpec  # noqa: E402
from mpifl.models import MODELS  # noqa: E402


@numba.njit(fastmath=True, cache=True)
def stream_csr(data, indices):
    """One pass over the values and column indices: what any CSR kernel must read."""
    total = 0.0
    count = 0
    for i in range(data.size):
        total += data[i]
        count += indices[i]
    return total + count


def rcv1_like(rows: int, features: int, nnz: int, seed: int = 0):
    """Rows with Poisson(nnz) nonzeros at random columns (ascending within a row), L2-normalised like rcv1's tf-idf
    rows."""
    rng = np.random.default_rng(seed)
    lengths = np.maximum(rng.poisson(nnz, rows), 1)
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = rng.integers(0, features, indptr[-1], dtype=np.int32)
    rows_of = np.repeat(np.arange(rows), lengths)
    indices = indices[np.lexsort((indices, rows_of))]  # ascending within each row, as LIBSVM files and scipy keep them
    data = rng.random(indptr[-1])
    norms = np.sqrt(np.add.reduceat(data * data, indptr[:-1]))
    data /= np.repeat(norms, lengths)
    y = (rng.random(rows) < 0.5).astype(np.float64)
    return CSR(data, indices, indptr, features), y


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=47_236)
    parser.add_argument("--nnz", type=int, default=70)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    X, y = rcv1_like(args.rows, args.features, args.nnz)
    matrix = sp.csr_matrix((X.data, X.indices, X.indptr), shape=X.shape)
    rng = np.random.default_rng(1)
    spec = ModelSpec(MODELS["logistic"], args.features, 2, np.dtype("float64"), sparse=True)
    theta = (0.1 * rng.standard_normal(spec.shape))
    w, b = theta[0, :-1].copy(), theta[0, -1]
    out = {}
    runs = {}
    variants = tuning.candidates_for(spec)  # the single-pass variants walk CSR rows as the chunked ones do
    for variant in variants:
        kernels, grad = ModelKernels(spec, 1, Selection.everywhere(variant, "benchmark")), spec.zeros()
        runs[f"mpifl {variant.name}"] = (lambda k=kernels, g=grad: k.full_gradient_sum(X, y, theta, g))
        out[variant.name] = grad

    def scipy_grad():
        r = expit(matrix @ w + b) - y
        out["scipy"] = (matrix.T @ r, r.sum())

    for run in runs.values():
        run()
    scipy_grad()
    ref = np.append(*out["scipy"])
    error = max(np.max(np.abs(out[v.name][0] - ref)) / np.max(np.abs(ref)) for v in variants)
    with tempfile.TemporaryDirectory() as tmp:
        pick = tuning.choose(spec, 32, 1, store=tuning.ChoiceStore(Path(tmp))).gradient.name
    times = alternate({**runs, "scipy": scipy_grad, "read": lambda: stream_csr(X.data, X.indices)}, args.repeat)
    nbytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + y.nbytes
    rows = [
        f"| mpifl CSR kernel, {name.split()[1]}{' (chosen)' if name == f'mpifl {pick}' else ''} | "
        f"{times[name] * 1e3:.1f} ms | {nbytes / times[name] / 1e9:.2f} GB/s | "
        f"**{times['scipy'] / times[name]:.2f}x** | {times['read'] / times[name]:.2f} |"
        for name in runs
    ] + [
        f"| scipy.sparse: X.T @ (sigmoid(X @ w) - y) | {times['scipy'] * 1e3:.1f} ms | "
        f"{nbytes / times['scipy'] / 1e9:.2f} GB/s | 1.00x | {times['read'] / times['scipy']:.2f} |",
        f"| one read of data + indices (Numba) | {times['read'] * 1e3:.1f} ms | "
        f"{(X.data.nbytes + X.indices.nbytes) / times['read'] / 1e9:.2f} GB/s | | 1.00 |",
    ]
    table = markdown_table(
        f"Logistic gradient on CSR, {args.rows:,} rows x {args.features:,} features, {X.nnz:,} nonzeros "
        f"({X.nnz / args.rows:.1f} a row), float64, one thread; median of {args.repeat}; {describe()}",
        ["case", "time", "bytes of X / time", "speed vs scipy", "fraction of one read"], rows,
    )
    print(table)
    fastest = min(runs, key=times.get)
    ratio = times[f"mpifl {pick}"] / times[fastest]
    verdict = "within 5% of it" if ratio <= 1.05 else f"{ratio:.2f}x its time: NOT within 5%"
    print(f"\nthe chooser picked `{pick}`; the fastest here is `{fastest.split()[1]}`, the pick {verdict}")
    print(f"max relative difference of the gradients (every variant against scipy): {error:.1e}")
    if args.out:
        write_results(args.out, "sparse", table, {"seconds": times, "nnz": X.nnz, "rows": args.rows,
                                                  "features": args.features, "max_rel_diff": error,
                                                  "chosen": pick, "pick_over_fastest": ratio,
                                                  "machine": describe()})
    if error > 1e-8:
        sys.exit(f"the gradients disagree: {error:.1e}")


if __name__ == "__main__":
    main()
