"""One client's epoch of the field's reference CNNs: mpifl's Numba CNN against PyTorch, side by side.

    python benchmarks/cnn.py [--rows 600] [--repeat 3] [--out benchmarks/results]

The FedAvg paper's MNIST CNN and LEAF's FEMNIST CNN on 28x28 inputs, one
epoch of ``--rows`` rows at B = 10 and B = 50, float32, one thread.  Both
start from the same weights (mpifl's, loaded into torch's conv2d and
linear layers) and walk the rows in the same order.  Times compare only at
equal results, so each case first runs a shorter epoch in float64, where
the two must agree to 1e-9, and the benchmark fails loudly when they do not.
(In float32 the losses after an epoch differ by up to 1e-2: mpifl's link
works in float64 and torch's in float32, and at these learning rates SGD
amplifies rounding differences; float64 shows the same arithmetic to 1e-16.)
Without PyTorch it times mpifl alone.

The hardware column is the epoch's floating-point work (the forward pass's
multiply-adds, twice more for the two backward GEMMs, less the input
gradient of the first layer) at the speed this machine's BLAS multiplies
two 1024x1024 float32 matrices on one thread: no convolution can run its
GEMMs faster, so "GEMM-bound" says how far each system is from the limit.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402
from mlp import best_of, blas, has_torch  # noqa: E402

from mpifl.kernels import ModelKernels  # noqa: E402
from mpifl.model import ModelSpec  # noqa: E402
from mpifl.models import MODELS  # noqa: E402
from mpifl.models.cnn import ARCHITECTURES  # noqa: E402

LR = 0.02
AGREE = 1e-9  # relative, in the float64 check epoch
CHECK_ROWS = 60


def spec_of(name: str, dtype=np.float32) -> ModelSpec:
    classes = 62 if name == "femnist" else 10
    return ModelSpec(MODELS["cnn"], 784, classes, np.dtype(dtype), output="softmax", layers=ARCHITECTURES[name],
                     input_shape=(1, 28, 28))


def mpifl_epoch(spec, theta0, X, y, order, batch):
    kernels = ModelKernels(spec)
    theta, velocity, grad = theta0.copy(), spec.zeros(), spec.zeros()
    kernels.sgd_epoch(X[:4], y[:4], theta, velocity, grad, np.arange(4), 2, LR, 0.0, 0.0)  # compile or load

    def run():
        theta[...] = theta0
        kernels.sgd_epoch(X, y, theta, velocity, grad, order, batch, LR, 0.0, 0.0)

    def loss():
        return kernels.evaluate_sums(X, y, theta)[0] / X.shape[0]
    return run, loss


def torch_epoch(spec, theta0, X, y, order, batch):
    import torch

    torch.set_num_threads(1)
    layout, layers = spec.parameters, []
    for kind, ci, _, _, co, _, _, k, pad in layout.prog:
        if kind == 0:
            layers += [torch.nn.Conv2d(int(ci), int(co), int(k), padding=int(pad)), torch.nn.ReLU()]
        elif kind == 1:
            layers.append(torch.nn.MaxPool2d(2))
        else:
            if not any(isinstance(m, torch.nn.Flatten) for m in layers):
                layers.append(torch.nn.Flatten())
            layers += [torch.nn.LazyLinear(int(co)), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])  # no ReLU after the logits
    if X.dtype == np.float64:
        net = net.double()
    Xt = torch.from_numpy(X).reshape(-1, *layout.shape_in)
    yt = torch.from_numpy(y.astype(np.int64))
    net(Xt[:1])  # sizes the lazy layers
    start = torch.from_numpy(theta0.copy())
    batches = [torch.from_numpy(order[s:s + batch]) for s in range(0, len(order), batch)]
    optimiser = torch.optim.SGD(net.parameters(), lr=LR)
    criterion = torch.nn.CrossEntropyLoss()

    def run():
        with torch.no_grad():  # mpifl's layout is torch's: each layer's weights (out, in, k, k), then its biases
            torch.nn.utils.vector_to_parameters(start, net.parameters())
        for rows in batches:
            optimiser.zero_grad()
            criterion(net(Xt[rows]), yt[rows]).backward()
            optimiser.step()

    def loss():
        with torch.no_grad():
            return float(criterion(net(Xt), yt))
    return run, loss


def epoch_flops(spec, rows: int) -> float:
    """Floating-point operations of one SGD epoch: forward, weight-gradient and input-gradient GEMMs."""
    from mpifl.kernels.cnn import CONV, DENSE

    forward = []
    for kind, ci, hi, wi, co, ho, wo, k, _ in spec.parameters.prog:
        forward.append(ho * wo * co * ci * k * k if kind == CONV else ci * hi * wi * co if kind == DENSE else 0)
    return 2.0 * rows * (3 * sum(forward) - forward[0])


def gemm_rate(repeat: int) -> float:
    """Single-thread float32 GEMM speed (FLOP/s) of the BLAS that both systems call, at 1024^3."""
    rng = np.random.default_rng(1)
    a, b = (rng.random((1024, 1024), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    return 2.0 * 1024 ** 3 / best_of(max(repeat, 3), lambda: np.dot(a, b, out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((args.rows, 784), dtype=np.float32)
    order = rng.permutation(args.rows).astype(np.int64)
    systems = [("mpifl", mpifl_epoch)] + ([("PyTorch", torch_epoch)] if has_torch() else [])
    reference = systems[-1][0]
    rate = gemm_rate(args.repeat)
    rows, data, disagree = [], {"machine": machine(), "blas": blas(), "gemm_flops": rate, "cases": []}, []
    for name in ("fedavg", "femnist"):
        spec = spec_of(name)
        y = rng.integers(0, spec.n_classes, args.rows).astype(np.float32)
        theta0 = spec.initial(0)
        for batch in (10, 50):
            if len(systems) > 1:
                disagree += check(name, batch, X, y, order, systems)
            results = {}
            for system, make in systems:
                run, loss = make(spec, theta0, X, y, order, batch)
                results[system] = (best_of(args.repeat, run), loss())
            ref_seconds, ref_loss = results[reference]
            bound = epoch_flops(spec, args.rows) / rate
            for system, (seconds, loss) in results.items():
                gap = abs(loss - ref_loss) / abs(ref_loss)
                rows.append(f"| {name} | B = {batch} | {system} | {seconds:.3f} s | {ref_seconds / seconds:.2f}x | "
                            f"{bound / seconds:.2f} | {loss:.6f} | {gap:.1e} |")
                data["cases"].append({"model": name, "batch": batch, "system": system, "seconds": seconds,
                                      "loss": loss})
    table = markdown_table(
        f"One epoch of {args.rows} rows at 28x28, float32, one thread, best of {args.repeat}; {machine()}; "
        f"BLAS {data['blas']}; GEMM-bound = the epoch's FLOPs at {rate / 1e9:.0f} GFLOP/s (one-thread sgemm) / "
        "the epoch",
        ["model", "batch", "system", "epoch", f"speed vs {reference}", "GEMM-bound", "loss after", f"vs {reference}"],
        rows)
    print(table)
    write_results(args.out, "cnn", table, data)
    if disagree:
        raise SystemExit("benchmarks/cnn.py: the float64 check epochs disagree, so the times do not compare: "
                         + "; ".join(disagree))


def check(name: str, batch: int, X, y, order, systems) -> list[str]:
    """A float64 epoch over the first CHECK_ROWS rows with every system: the same arithmetic to AGREE."""
    spec = spec_of(name, np.float64)
    rows = order[order < CHECK_ROWS]
    losses = {}
    for system, make in systems:
        run, loss = make(spec, spec.initial(0), X[:CHECK_ROWS].astype(np.float64), y[:CHECK_ROWS].astype(np.float64),
                         rows, batch)
        run()
        losses[system] = loss()
    ref = losses[systems[-1][0]]
    return [f"{name} B = {batch} {system} {loss!r} against {ref!r}" for system, loss in losses.items()
            if abs(loss - ref) > AGREE * abs(ref)]


if __name__ == "__main__":
    main()
