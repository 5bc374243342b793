"""mpifl side by side with Flower, PyTorch DDP, scikit-learn and the hardware, from one command.

    pip install -e ".[bench]"
    python benchmarks/run.py [--only federated,algorithms,ddp,sklearn,hardware] [--repeat 3] [--out benchmarks/results]
    python benchmarks/run.py --smoke          # tiny sizes, what CI runs; peers that are not installed are skipped

Every comparison runs the systems in turn in one invocation (alternating,
repeated, median reported), on the same data, maths and seeds, and writes
bench.md (tables) and bench.json into --out.  The machine is named in both.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, markdown_table, write_results  # noqa: E402
from procmem import run as measure  # noqa: E402

from mpifl.data.builtin import load_digits  # noqa: E402
from mpifl.data.partition_cli import write_partition  # noqa: E402

PY = sys.executable
SECTIONS = ("federated", "algorithms", "ddp", "sklearn", "hardware", "mlp", "cnn")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def mpiexec() -> str:
    found = shutil.which("mpiexec")
    if found is None:
        sys.exit("mpiexec not found: pip install mpich, or load your MPI module")
    return found


def checked(result, what: str):
    if result.returncode != 0:
        sys.exit(f"{what} failed with exit code {result.returncode}:\n{result.stderr[-3000:]}")
    return result


# -- federated: mpifl against Flower's simulation engine and a plain NumPy loop ------------------------------

def digits_split(clients: int, tmp: Path) -> tuple[Path, Path]:
    """The issue's task: digits / 16, an 80/20 split with random_state 0, IID clients; npz + partition dir."""
    from sklearn.model_selection import train_test_split

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    ids = np.empty(y_train.size, dtype=np.int64)
    for k, part in enumerate(np.array_split(np.random.default_rng(0).permutation(y_train.size), clients)):
        ids[part] = k
    npz = tmp / f"digits-{clients}.npz"
    np.savez(npz, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, client_ids=ids)
    X_all = np.vstack([X_train, X_test])
    y_all = np.concatenate([y_train, y_test])
    parts = tmp / f"digits-{clients}"
    write_partition(parts, X_all, y_all, [np.flatnonzero(ids == k) for k in range(clients)],
                    np.arange(y_train.size, y_all.size), np.dtype("float64"), list(range(10)),
                    {"source": "digits, train_test_split(test_size=0.2, random_state=0)", "method": "iid"})
    return npz, parts


def federated(tmp: Path, repeat: int, smoke: bool) -> tuple[str, dict]:
    """mpifl on cores + 1 ranks (a server and one client rank per core, each hosting several clients,
    like Flower's one worker per core), and on 9 ranks (one rank per client for 8 clients)."""
    cases = [(8, 3)] if smoke else [(8, 50), (64, 20), (512, 20)]
    small = len(os.sched_getaffinity(0)) + 1
    mpifl_layouts = {f"mpifl, {small} ranks": small, "mpifl, 9 ranks": 9}
    peers = ["numpy"] + (["flower"] if installed("flwr") and not smoke else [])
    systems = [*mpifl_layouts, *peers]
    rows, data = [], {}
    for clients, rounds in cases:
        npz, parts = digits_split(clients, tmp)
        runs: dict[str, list[dict]] = {s: [] for s in systems}
        for rep in range(repeat):
            for system in systems:
                out = tmp / f"{system}-{clients}-{rep}.json"
                if system in mpifl_layouts:
                    ranks = mpifl_layouts[system]
                    run_dir = tmp / f"mpifl-{ranks}-{clients}-{rep}"
                    m = checked(measure([mpiexec(), "-n", str(ranks), PY, "-m", "mpifl", "run",
                                         "--set", f"data.path={parts}", "--set", f"rounds={rounds}",
                                         "--set", "train.batch_size=32", "--set", "train.lr=0.5",
                                         "--set", f"log_every={rounds}", "--out", str(run_dir), "--quiet"]),
                                "mpifl")
                    summary = json.loads((run_dir / "summary.json").read_text())
                    result = {"accuracy": summary["final_accuracy"], "seconds_per_round": summary["seconds_per_round"]}
                else:
                    script = HERE / "peers" / ("flower_fedavg.py" if system == "flower" else "numpy_fedavg.py")
                    m = checked(measure([PY, str(script), str(npz), str(rounds), str(out)]), system)
                    result = json.loads(out.read_text())
                runs[system].append({**result, "wall": m.wall_seconds, "peak_mib": m.peak_pss_mib})
        summary = {s: {k: statistics.median(r[k] for r in runs[s]) for k in ("wall", "seconds_per_round", "accuracy")}
                   | {"peak_mib": max(r["peak_mib"] for r in runs[s])} for s in systems}
        data[str(clients)] = summary
        base = summary[systems[0]]
        for system in systems:
            s = summary[system]
            ratio = "" if system == systems[0] else (f"{s['seconds_per_round'] / base['seconds_per_round']:.1f}x / "
                                                  f"{s['wall'] / base['wall']:.1f}x")
            rows.append(f"| {clients} | {rounds} | {system} | {s['wall']:.2f} s | {s['seconds_per_round'] * 1e3:.2f} ms "
                        f"| {s['peak_mib']:.0f} MiB | {s['accuracy']:.4f} | {ratio} |")
        if "flower" not in systems:
            rows.append(f"| {clients} | {rounds} | flower | not run ({'smoke' if smoke else 'not installed'}) "
                        "| | | | |")
    table = markdown_table(
        f"Federated softmax regression on digits (FedAvg, 1 local epoch, batch 32, lr 0.5); median of {repeat}",
        ["clients", "rounds", "system", "wall (with start-up)", "per round", "peak memory (PSS)", "accuracy",
         f"system / {systems[0]}: per round / wall"], rows)
    return table, data


# -- distributed: mpifl against PyTorch DDP ---------------------------------------------------------------

def ddp(tmp: Path, repeat: int, smoke: bool) -> tuple[str, dict]:
    rows_per_rank, steps, lr = (20_000, 5, 0.5) if smoke else (1_000_000, 20, 0.5)
    results: dict[str, list[dict]] = {"mpifl": [], "ddp": []}
    have_torch = installed("torch")
    for rep in range(repeat):
        run_dir = tmp / f"ddp-mpifl-{rep}"
        checked(measure([mpiexec(), "-n", "2", PY, "-m", "mpifl", "run", "--set", "mode=distributed",
                         "--set", "data.name=synthetic", "--set", f"data.rows_per_rank={rows_per_rank}",
                         "--set", "data.n_features=32", "--set", "data.n_classes=2", "--set", "data.noise=0.5",
                         "--set", "data.test_fraction=0", "--set", "model.kind=logistic",
                         "--set", "model.dtype=float32", "--set", "train.algorithm=gradient_averaging",
                         "--set", "train.batch_size=0", "--set", f"train.lr={lr}", "--set", f"rounds={steps}",
                         "--set", "log_every=1", "--out", str(run_dir), "--quiet"]), "mpifl")
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        timed = [r for r in records if r["breakdown"]][1:]
        results["mpifl"].append({
            "seconds_per_step": statistics.median(r["seconds"] for r in timed),
            "compute_seconds": statistics.median(r["breakdown"]["compute"][2] for r in timed),
            "comm_seconds": statistics.median(r["breakdown"]["comm"][1] + r["breakdown"]["wait"][1] for r in timed),
            "final_loss": records[-1]["loss"]})
        if have_torch:
            out = tmp / f"ddp-{rep}.json"
            checked(measure([PY, str(HERE / "peers" / "ddp_logistic.py"), "2", str(rows_per_rank), "32", str(steps),
                             str(lr), str(out)]), "PyTorch DDP")
            results["ddp"].append(json.loads(out.read_text()))
    summary = {s: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for s, runs in results.items() if runs}
    rows = []
    for system, s in summary.items():
        ratio = "" if system == "mpifl" else f"**{s['seconds_per_step'] / summary['mpifl']['seconds_per_step']:.2f}x**"
        rows.append(f"| {system} | {s['seconds_per_step'] * 1e3:.1f} ms | {s['compute_seconds'] * 1e3:.1f} ms | "
                    f"{s['comm_seconds'] * 1e3:.2f} ms | {s['final_loss']:.7f} | {ratio} |")
    if not have_torch:
        rows.append("| ddp | not installed (pip install -e \".[bench]\") | | | | |")
    if "ddp" in summary:
        summary["loss_difference"] = abs(summary["ddp"]["final_loss"] - summary["mpifl"]["final_loss"])
    table = markdown_table(
        f"Distributed logistic regression, full-batch GD, 2 ranks x {rows_per_rank:,} x 32 float32 rows, "
        f"{steps} steps, one thread per rank; median of {repeat}",
        ["system", "per step", "compute", "communication", "final loss", "DDP / mpifl"], rows)
    return table, summary


# -- time to loss: mpifl's distributed L-BFGS against scikit-learn --------------------------------------------

def sklearn_case(tmp: Path, repeat: int, smoke: bool) -> tuple[str, dict]:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    n = 5_000 if smoke else 200_000
    X, y = make_classification(n_samples=n, n_features=32, random_state=0)
    path = tmp / "classification.npy"
    np.save(path, np.column_stack([X, y]))
    best = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, y)
    z = X @ best.coef_[0] + best.intercept_[0]
    optimum = float(np.mean(np.logaddexp(0.0, z) - y * z))
    target = optimum + 1e-3
    results: dict[str, list[dict]] = {"mpifl lbfgs, 1 rank": [], "mpifl lbfgs, 2 ranks": [],
                                      "scikit-learn lbfgs": [], "scikit-learn SGDClassifier": []}
    for rep in range(repeat):
        for ranks in (1, 2):
            run_dir = tmp / f"lbfgs-{ranks}-{rep}"
            checked(measure([mpiexec(), "-n", str(ranks), PY, "-m", "mpifl", "run", "--set", "mode=distributed",
                             "--set", f"data.path={path}", "--set", "data.test_fraction=0",
                             "--set", "model.kind=logistic", "--set", "data.n_classes=2",
                             "--set", "train.optimizer=lbfgs", "--set", "train.tol=1e-9", "--set", "rounds=200",
                             "--set", "log_every=1", "--out", str(run_dir), "--quiet"]), "mpifl")
            records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            elapsed, reached = 0.0, None
            for r in records:
                elapsed += r["seconds"]
                if r["loss"] <= target:
                    reached = {"seconds": elapsed, "iterations": r["round"], "loss": r["loss"]}
                    break
            results[f"mpifl lbfgs, {ranks} rank{'s' * (ranks > 1)}"].append(reached or {"seconds": None})
        out = tmp / f"sklearn-{rep}.json"
        checked(measure([PY, str(HERE / "peers" / "sklearn_logreg.py"), str(path), repr(target), str(out)]),
                "scikit-learn")
        found = json.loads(out.read_text())
        results["scikit-learn lbfgs"].append(found.get("lbfgs", {"seconds": None}))
        results["scikit-learn SGDClassifier"].append(found["sgd"] if found["sgd"].get("reached") else
                                                     {"seconds": None, "epochs": found["sgd"]["epochs"],
                                                      "loss": found["sgd"]["loss"]})
    reference = statistics.median(r["seconds"] for r in results["scikit-learn lbfgs"] if r["seconds"])
    rows, summary = [], {"optimum": optimum, "target": target}
    for system, runs in results.items():
        times = [r["seconds"] for r in runs if r.get("seconds") is not None]
        if not times:
            last = runs[-1]
            rows.append(f"| {system} | not reached in {last.get('epochs', '?')} epochs "
                        f"(loss {last.get('loss', float('nan')):.5f}) | | |")
            summary[system] = None
            continue
        t = statistics.median(times)
        steps = runs[0].get("iterations", runs[0].get("epochs"))
        summary[system] = {"seconds": t, "steps": steps}
        rows.append(f"| {system} | {t * 1e3:.1f} ms | {steps} | **{reference / t:.2f}x** |")
    table = markdown_table(
        f"Time to within 1e-3 of the optimal log-loss ({optimum:.5f}), make_classification(n_samples={n:,}, "
        f"n_features=32, random_state=0), no penalty; training time only (mpifl: its rounds' times; start-up, "
        f"data loading and compile are reported apart); median of {repeat}",
        ["system", "time to target", "iterations / epochs", "speed vs scikit-learn lbfgs"], rows)
    return table, summary


# -- the hardware: kernels against the read bandwidth, collectives against raw mpi4py ------------------------

def hardware(tmp: Path, repeat: int, smoke: bool) -> tuple[str, dict]:
    k = checked(measure([PY, str(HERE / "kernels.py"), "--repeat", str(max(repeat, 3)), "--out", str(tmp)]
                        + (["--small"] if smoke else [])), "kernels benchmark")
    c_json = tmp / "collectives.json"
    c = checked(measure([mpiexec(), "-n", "2" if smoke else "8", PY, str(HERE / "collectives.py"),
                         "--iters", "50" if smoke else "2000", "--json", str(c_json)]), "collectives benchmark")
    table = (tmp / "kernels.md").read_text().strip() + "\n\nCollectives, mpifl against raw mpi4py on the same buffers\n\n"
    table += "\n".join(line for line in c.stdout.splitlines() if line.startswith("|"))
    return table, {"kernels": json.loads((tmp / "kernels.json").read_text()),
                   "collectives": json.loads(c_json.read_text()), "stdout": k.stdout[-200:]}


# -- the MLP: one client's epoch of the FedAvg 2NN against PyTorch and NumPy ----------------------------------

def mlp(tmp: Path, repeat: int, smoke: bool) -> tuple[str, dict]:
    """One client's epoch against PyTorch and NumPy, then a 64-client round against Flower with PyTorch."""
    checked(measure([PY, str(HERE / "mlp.py"), "--repeat", str(max(repeat, 3)), "--out", str(tmp)]
                    + (["--rows", "60"] if smoke else [])), "MLP benchmark")
    checked(measure([PY, str(HERE / "mlp_federated.py"), "--out", str(tmp)]
                    + (["--clients", "4", "--rows", "700", "--rounds", "2", "--mpifl-only"] if smoke else [])),
            "federated MLP benchmark")
    table = (tmp / "mlp.md").read_text().strip() + "\n\n" + (tmp / "mlp_federated.md").read_text().strip()
    return table, {"epoch": json.loads((tmp / "mlp.json").read_text()),
                   "round": json.loads((tmp / "mlp_federated.json").read_text())}


# -- the CNN: one client's epoch of the FedAvg and FEMNIST CNNs against PyTorch ----------------------------------

def cnn(tmp: Path, repeat: int, smoke: bool) -> tuple[str, dict]:
    """One client's epoch of the reference CNNs against PyTorch, after a float64 check that both compute alike."""
    checked(measure([PY, str(HERE / "cnn.py"), "--repeat", str(repeat), "--out", str(tmp)]
                    + (["--rows", "16"] if smoke else [])), "CNN benchmark")
    return (tmp / "cnn.md").read_text().strip(), json.loads((tmp / "cnn.json").read_text())


# -- algorithms: FedProx and FedAdam on Synthetic(1,1), against Flower's strategies and a NumPy loop ------------

def fedprox_data(tmp: Path, clients: int) -> Path:
    """mpifl's own Synthetic(1,1) clients (seed 0) as one npz for the peers."""
    from mpifl import config
    from mpifl.data.catalog import resolve

    cfg = config.load(overrides=["data.name=fedprox_synthetic", "data.fedprox_alpha=1", "data.fedprox_beta=1",
                                 f"data.clients={clients}"])
    source = resolve(cfg)
    parts = source.clients(range(clients), clients)
    test = source.server_test()
    npz = tmp / f"synthetic11-{clients}.npz"
    np.savez(npz, X_train=np.vstack([p.train.X for p in parts]), y_train=np.concatenate([p.train.y for p in parts]),
             client_ids=np.concatenate([np.full(p.train.n, k) for k, p in enumerate(parts)]), X_test=test.X,
             y_test=test.y)
    return npz


# which peers run which algorithm: the NumPy loop and Flower have FedProx and FedAdam, pfl-research FedProx and SCAFFOLD
PEERS = {"numpy": ("numpy_fedopt.py", "numpy", ("fedprox", "fedadam")),
         "flower": ("flower_fedopt.py", "flwr", ("fedprox", "fedadam")),
         "pfl": ("pfl_fedopt.py", "pfl", ("fedprox", "scaffold"))}


def algorithms(tmp: Path, repeat: int, smoke: bool) -> tuple[str, dict]:
    """FedProx (mu = 1), FedAdam and SCAFFOLD, 30 clients all training each round, batch 10, lr 0.01, 20 local
    epochs: the same clients in every system; the same row orders and maths in mpifl, the NumPy loop and Flower
    (Flower's FedAdam keeps its own server maths; pfl draws its own batches)."""
    sys.path.insert(0, str(HERE / "peers"))
    from fedopt_common import SETTINGS

    clients, rounds = (6, 2) if smoke else (30, 20)
    npz = fedprox_data(tmp, clients)
    ranks = len(os.sched_getaffinity(0)) + 1
    available = {p for p, (_, module, _) in PEERS.items() if p == "numpy" or (installed(module) and not smoke)}
    s = SETTINGS
    mpifl_sets = {"fedprox": ["server.strategy=fedprox", f"server.proximal_mu={s['mu']}"],
                  "fedadam": ["server.strategy=fedadam", f"server.lr={s['eta']}", f"server.beta1={s['beta1']}",
                              f"server.beta2={s['beta2']}", f"server.tau={s['tau']}"],
                  "scaffold": ["server.strategy=scaffold"]}
    rows, data = [], {}
    for algorithm, extra in mpifl_sets.items():
        peers = [p for p in PEERS if algorithm in PEERS[p][2] and p in available]
        missing = [p for p in PEERS if algorithm in PEERS[p][2] and p not in available]
        runs: dict[str, list[dict]] = {"mpifl": [], **{p: [] for p in peers}}
        for rep in range(repeat):
            run_dir = tmp / f"alg-{algorithm}-{rep}"
            sets = ["data.name=fedprox_synthetic", "data.fedprox_alpha=1", "data.fedprox_beta=1",
                    f"data.clients={clients}", f"rounds={rounds}", f"log_every={rounds}", "server.fraction=1",
                    f"train.batch_size={s['batch']}", f"train.lr={s['lr']}", f"train.epochs={s['epochs']}", *extra]
            m = checked(measure([mpiexec(), "-n", str(ranks), PY, "-m", "mpifl", "run", "--out", str(run_dir),
                                 "--quiet", *[a for kv in sets for a in ("--set", kv)]]), "mpifl")
            summary = json.loads((run_dir / "summary.json").read_text())
            runs["mpifl"].append({"accuracy": summary["final_accuracy"], "seconds_per_round": summary["seconds_per_round"],
                                  "wall": m.wall_seconds, "peak_mib": m.peak_pss_mib})
            for peer in peers:
                out = tmp / f"alg-{algorithm}-{peer}-{rep}.json"
                script = HERE / "peers" / PEERS[peer][0]
                m = checked(measure([PY, str(script), algorithm, str(npz), str(rounds), str(out)]), peer)
                runs[peer].append({**json.loads(out.read_text()), "wall": m.wall_seconds, "peak_mib": m.peak_pss_mib})
        summary = {p: {k: statistics.median(r[k] for r in rs) for k in ("wall", "seconds_per_round", "accuracy")}
                   | {"peak_mib": max(r["peak_mib"] for r in rs)} for p, rs in runs.items()}
        data[algorithm] = summary
        base = summary["mpifl"]
        for system, v in summary.items():
            ratio = "" if system == "mpifl" else (f"**{v['seconds_per_round'] / base['seconds_per_round']:.0f}x** / "
                                                 f"{v['wall'] / base['wall']:.1f}x")
            name = f"mpifl, {ranks} ranks" if system == "mpifl" else system
            rows.append(f"| {algorithm} | {name} | {v['wall']:.2f} s | {v['seconds_per_round'] * 1e3:.1f} ms | "
                        f"{v['peak_mib']:.0f} MiB | {v['accuracy']:.4f} | {ratio} |")
        for peer in missing:
            rows.append(f"| {algorithm} | {peer} | not run ({'smoke' if smoke else 'not installed'}) | | | | |")
    table = markdown_table(
        f"FedProx (mu = {s['mu']}), FedAdam (eta {s['eta']}, beta1 {s['beta1']}, beta2 {s['beta2']}, tau {s['tau']}) "
        f"and SCAFFOLD "
        f"on Synthetic(1,1), {clients} clients all training, batch {s['batch']}, lr {s['lr']}, {s['epochs']} local "
        f"epochs, {rounds} rounds; median of {repeat}",
        ["algorithm", "system", "wall (with start-up)", "per round", "peak memory (PSS)", "accuracy",
         "system / mpifl: per round / wall"], rows)
    return table, data


RUNNERS = {"federated": federated, "algorithms": algorithms, "ddp": ddp, "sklearn": sklearn_case, "hardware": hardware,
           "mlp": mlp, "cnn": cnn}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; no peer is required")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if not installed("sklearn"):
        sys.exit('scikit-learn is needed for the data splits: pip install -e ".[bench]"')
    tables, data = [f"# mpifl benchmarks\n\nMachine: {machine()}\n"], {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        for section in chosen:
            print(f"bench: {section}", flush=True)
            table, data[section] = RUNNERS[section](Path(tmp), 1 if args.smoke else args.repeat, args.smoke)
            tables.append(table)
            print(table + "\n", flush=True)
    write_results(args.out, "bench", "\n\n".join(tables), data)
    print(f"results: {args.out / 'bench.md'}, {args.out / 'bench.json'}")


if __name__ == "__main__":
    main()
