"""A million clients: what a federated round, its set-up, its memory and its records cost as the population grows.

    python benchmarks/population.py [--quick] [--max-clients N] [--baseline REV] [--out DIR]

FedAvg of softmax regression on the built-in synthetic source, each client 20 generated rows of 20 features and
10 classes (``data.rows_per_rank = 20``, a pure function of (seed, client)), 3 ranks (a server and 2 client
ranks), 10 rounds, every round recorded, ``evaluate.fraction`` sampling as many clients to evaluate as train.

1. Scale: 10^4 to 10^6 clients (``--max-clients`` for 10^7), 100 and 1,000 a round: seconds a round (recorded,
   and with only the last round recorded), set-up, rank 0's and the largest rank's peak memory, the largest
   metrics.jsonl record and the bytes the run wrote.
2. Before and after: the same jobs on the code before this work (``--baseline``, a git revision), side by side.
3. Per-client overhead: 2,000 clients trained every round on one client rank with their rows built (cached),
   the round's time per client less the training kernel's own time on a 20-row client; one Python call per
   client (the code before mpifl.cohort) against one cohort call.
4. Per-client state: SCAFFOLD (a control variate per client, and momentum) at 10^6 clients, in memory and on
   disk; and the error of float32, float16 and bfloat16 storage against the model's float64 on 10^4 clients.
5. The alpha-beta projection of a round at 10^7 clients and 1,000 a round to cluster rank counts, from this
   machine's collective probes (a model, not a measurement).
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

REPO = Path(__file__).resolve().parents[1]
RANKS = 3
ROUNDS = 10
POPULATION = {"mode": "federated", "seed": 0, "rounds": ROUNDS, "log_every": 1,
              "data": {"name": "synthetic", "n_features": 20, "n_classes": 10, "rows_per_rank": 20},
              "model": {"kind": "softmax"},
              "train": {"epochs": 1, "batch_size": 20, "lr": 0.1},
              "server": {"strategy": "fedavg"}}
BASELINE = "97f7395"  # main before population-scale rounds
ONE_BY_ONE = "fc37820"  # main before a round's clients trained as one cohort (mpifl.cohort)


def job(clients: int, per_round: int, **extra) -> dict:
    doc = json.loads(json.dumps(POPULATION))
    doc["data"]["clients"] = clients
    doc["server"]["fraction"] = per_round / clients
    doc["evaluate"] = {"fraction": per_round / clients}
    for dotted, value in extra.items():
        section, _, key = dotted.partition(".")
        if key:
            doc.setdefault(section, {})[key] = value
        else:
            doc[section] = value
    return doc


def run(work: Path, name: str, doc: dict, tree: Path = REPO, ranks: int = RANKS, timeout: float = 3600,
        keep: bool = False) -> dict:
    """One job under mpiexec from ``tree``'s mpifl: its summary, largest record and written bytes (and its model,
    with ``keep``), or what failed."""
    import tomli_w

    path = work / f"{name}.toml"
    path.write_text(tomli_w.dumps(doc))
    out = work / name
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    proc = subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                           str(path), "--out", str(out), "--quiet"], cwd=work, capture_output=True, text=True,
                          timeout=timeout, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {"failed": proc.stderr[-500:], "wall": wall}
    summary = json.loads((out / "summary.json").read_text())
    lines = (out / "metrics.jsonl").read_text().splitlines()
    written = sum(p.stat().st_blocks * 512 for p in out.rglob("*") if p.is_file())
    model = np.load(out / "model.npz")["theta"] if keep else None
    shutil.rmtree(out, ignore_errors=True)
    return {"summary": summary, "record_bytes": max(len(line) + 1 for line in lines), "records": len(lines),
            "written_bytes": written, "wall": wall, **({"model": model} if keep else {})}


REPEATS = 3  # runs of each scale point; the median round is reported (this machine's rounds vary by a few ms)


def median_run(work: Path, name: str, doc: dict, tree: Path) -> dict:
    results = [run(work, f"{name}-{r}", doc, tree) for r in range(REPEATS)]
    done = sorted((r for r in results if "failed" not in r), key=round_ms)
    return done[len(done) // 2] if done else results[0]


def round_ms(result: dict) -> float:
    return result["summary"]["seconds_per_round"] * 1e3


def scale_study(work: Path, populations: list[int], cohorts: list[int], tree: Path = REPO) -> tuple[list[str], dict]:
    rows, data = [], {}
    for clients in populations:
        for per_round in cohorts:
            recorded = median_run(work, f"scale-{clients}-{per_round}", job(clients, per_round), tree)
            quiet = median_run(work, f"quiet-{clients}-{per_round}", job(clients, per_round, log_every=ROUNDS), tree)
            data[f"{clients}/{per_round}"] = {"recorded": recorded, "unrecorded": quiet}
            if "failed" in recorded or "failed" in quiet:
                rows.append(f"| {clients:,} | {per_round:,} | failed | | | | | | |")
                continue
            s = recorded["summary"]
            rows.append(
                f"| {clients:,} | {per_round:,} | {round_ms(recorded):.1f} | {round_ms(quiet):.1f} "
                f"| {s['setup_seconds']:.2f} | {s['peak_memory_mib_rank0']:.0f} "
                f"| {s.get('peak_memory_mib_largest_rank', float('nan')):.0f} | {recorded['record_bytes'] / 1e3:.1f} "
                f"| {recorded['written_bytes'] / 1e6:.2f} |")
    return rows, data


def baseline_study(work: Path, revision: str, populations: list[int], per_round: int) -> tuple[list[str], dict]:
    """The same jobs on the code at ``revision`` and on this tree, alternately, one after the other."""
    tree = work / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=REPO, check=True,
                   capture_output=True)
    rows, data = [], {}
    try:
        for clients in populations:
            before = run(work, f"before-{clients}", job(clients, per_round), tree, timeout=1800)
            after = run(work, f"after-{clients}", job(clients, per_round))
            data[clients] = {"before": before, "after": after}
            if "failed" in before:
                rows.append(f"| {clients:,} | failed ({before['wall']:.0f} s) | {round_ms(after):.1f} | | | |")
                continue
            b, a = before["summary"], after["summary"]
            rows.append(
                f"| {clients:,} | {round_ms(before):.1f} | {round_ms(after):.1f} | {round_ms(before) / round_ms(after):.1f}x "
                f"| {b['setup_seconds']:.2f} / {a['setup_seconds']:.2f} "
                f"| {b['peak_memory_mib_rank0']:.0f} / {a['peak_memory_mib_rank0']:.0f} "
                f"| {before['record_bytes'] / 1e3:,.1f} / {after['record_bytes'] / 1e3:.1f} |")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    return rows, data


def kernel_seconds_per_client(rows: int = 20) -> float:
    """The training kernel's own time for one 20-row client's epoch (one mini-batch of 20), median of many."""
    from mpifl import config
    from mpifl.data.catalog import model_spec
    from mpifl.kernels import ModelKernels

    cfg = config.build(job(10_000, 100), "<population>")
    spec = model_spec(cfg)
    kernels = ModelKernels(spec)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((rows, 20)), rng.integers(0, 10, rows).astype(np.float64)
    theta, velocity, grad = spec.zeros(), spec.zeros(), spec.zeros()
    order = np.arange(rows)
    times = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(2000):
            kernels.sgd_epoch(X, y, theta, velocity, grad, order, rows, 0.1, 0.0, 0.0, None)
        times.append((time.perf_counter() - started) / 2000)
    return float(np.median(times))


def overhead_study(work: Path, revision: str) -> tuple[list[str], dict]:
    """2,000 clients trained every round on one client rank, by this tree (a round's clients as one cohort:
    mpifl.cohort) and by ``revision`` (one Python call per client), alternately."""
    clients = 2000
    doc = job(clients, clients, log_every=10**6, rounds=6)
    doc["data"]["cache_mib"] = 4096
    kernel = kernel_seconds_per_client()
    rows, data = [], {"kernel_seconds": kernel}
    tree = work / "overhead-baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=REPO, check=True,
                   capture_output=True)
    try:
        for label, code in [(f"one call a client ({revision})", tree), ("one cohort call (this tree)", REPO)]:
            runs = [run(work, f"overhead-{r}", doc, code, ranks=2) for r in range(REPEATS)]
            done = sorted((r for r in runs if "failed" not in r), key=round_ms)
            if not done:
                rows.append(f"| {label} | failed | | |")
                continue
            result = done[len(done) // 2]
            per_client = result["summary"]["seconds_per_round"] / clients
            data[label] = {"per_client": per_client, "summary": result["summary"]}
            rows.append(f"| {label} | {per_client * 1e6:.1f} | {kernel * 1e6:.1f} | {(per_client - kernel) * 1e6:.1f} |")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    return rows, data


def state_study(work: Path, clients: int) -> tuple[list[str], list[str], dict]:
    """SCAFFOLD's per-client state at ``clients`` clients, in memory and on disk; then storage dtypes' error."""
    memory_rows, data = [], {}
    for store in ("memory", "disk"):
        doc = job(clients, 1000, **{"server.strategy": "scaffold", "train.momentum": 0.5, "state.store": store,
                                    "rounds": 5})
        result = run(work, f"scaffold-{store}", doc)
        data[store] = result
        if "failed" in result:
            memory_rows.append(f"| {clients:,} | {store} | failed | | |")
            continue
        s = result["summary"]
        memory_rows.append(f"| {clients:,} | {store} | {round_ms(result):.1f} | {s['peak_memory_mib_largest_rank']:.0f} "
                           f"| {result['written_bytes'] / 2**20:.0f} |")
    dtype_rows, reference = [], None
    for dtype in ("model", "float32", "float16", "bfloat16"):
        doc = job(10_000, 1000, **{"server.strategy": "scaffold", "train.momentum": 0.5, "state.dtype": dtype,
                                   "rounds": 30, "log_every": 30})
        doc["data"]["test_rows"] = 20_000
        result = run(work, f"dtype-{dtype}", doc, keep=True)
        if "failed" in result:
            dtype_rows.append(f"| {dtype} | failed | | |")
            continue
        theta, summary = result.pop("model"), result["summary"]
        if reference is None:
            reference = theta
        gap = float(np.abs(theta - reference).max() / np.abs(reference).max())
        data[f"dtype-{dtype}"] = {"gap": gap, "final_loss": summary["final_loss"],
                                  "final_accuracy": summary["final_accuracy"]}
        dtype_rows.append(f"| {dtype if dtype != 'model' else 'float64 (the model)'} | {gap:.2e} "
                          f"| {summary['final_loss']:.5f} | {summary['final_accuracy']:.4f} |")
    return memory_rows, dtype_rows, data


def projection_study(work: Path, clients: int, compute_seconds: float) -> tuple[list[str], dict]:
    """Fit alpha and beta to probes on 2 and 3 ranks here, then model the round at cluster rank counts."""
    from mpifl import config
    from mpifl.scaling.projection import Inputs, fit_all, project

    samples = []
    for ranks in (2, 3):
        out = work / f"probe-{ranks}.json"
        subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl.scaling.probe",
                        str(out)], cwd=work, check=True, capture_output=True)
        samples += [(ranks, s["collective"], s["bytes"], s["seconds"]) for s in json.loads(out.read_text())["samples"]]
    fits = fit_all(samples)
    cfg = config.build(job(clients, 1000), "<population>")
    inputs = Inputs("strong", RANKS, RANKS - 1, compute_seconds, clients * 20, 210, fits, [2, 3])
    rows, data = [], {}
    for ranks in (64, 256, 1024, 4096):
        p = project(cfg, inputs, ranks)
        data[ranks] = {"compute": p.compute_seconds, "comm": p.comm_seconds}
        rows.append(f"| {ranks:,} | {p.seconds * 1e3:.2f} | {p.compute_seconds * 1e3:.2f} | {p.comm_seconds * 1e3:.2f} "
                    f"| {p.efficiency:.0%} |")
    return rows, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10^4 clients only, no baseline (the smoke test)")
    parser.add_argument("--max-clients", type=int, default=10**6)
    parser.add_argument("--baseline", default=BASELINE, help="the git revision to compare with ('' for none)")
    parser.add_argument("--one-by-one", default=ONE_BY_ONE,
                        help="the git revision whose rounds train each client in its own call (the overhead study)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    populations = [10**4] if args.quick else [p for p in (10**4, 10**5, 10**6, 10**7) if p <= args.max_clients]
    cohorts = [100] if args.quick else [100, 1000]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scale_rows, scale = scale_study(work, populations, cohorts)
        sections = [markdown_table(
            f"FedAvg, softmax, 20 rows a client, {RANKS} ranks, {ROUNDS} rounds, on {machine()}",
            ["clients", "a round", "ms a round, each recorded", "ms, unrecorded", "set-up (s)", "rank 0 peak (MiB)",
             "largest rank's peak (MiB)", "largest record (kB)", "run directory (MB)"], scale_rows)]
        data = {"machine": machine(), "scale": scale}
        if not args.quick:
            if args.baseline:
                rows, data["baseline"] = baseline_study(work, args.baseline, [10**4, 10**5], 100)
                sections.append(markdown_table(
                    f"Before ({args.baseline}) and after, 100 clients a round, each round recorded",
                    ["clients", "ms a round, before", "after", "speed-up", "set-up s (before / after)",
                     "rank 0 MiB (before / after)", "record kB (before / after)"], rows))
            rows, data["overhead"] = overhead_study(work, args.one_by_one)
            sections.append(markdown_table(
                "Per-client overhead: 2,000 clients of 20 rows, all trained every round, on one client rank "
                f"(medians of {REPEATS} runs)",
                ["code", "us a client", "of which the kernel", "overhead (us)"], rows))
            memory_rows, dtype_rows, data["state"] = state_study(work, min(10**6, args.max_clients))
            sections.append(markdown_table(
                "SCAFFOLD's per-client state (control variate and momentum, 2 x 210 float64 a client), 1,000 a round",
                ["clients", "state.store", "ms a round", "largest rank's peak (MiB)", "run directory (MiB)"],
                memory_rows))
            sections.append(markdown_table(
                "state.dtype: SCAFFOLD on 10,000 clients, 1,000 a round, 30 rounds, against float64 state",
                ["storage", "max |theta - theta_float64| / max |theta|", "final loss", "test accuracy"], dtype_rows))
            big = max(populations)
            compute = scale[f"{big}/1000"]["unrecorded"]["summary"]["seconds_per_round"]
            small, large = scale[f"{min(populations)}/100"], scale[f"{big}/100"]
            ratio = {kind: round_ms(large[kind]) / round_ms(small[kind]) for kind in ("recorded", "unrecorded")}
            data["ratio_100_a_round"] = ratio
            lazy = {}
            for clients in (min(populations), big):  # every client built when used, at both sizes
                doc = job(clients, 100)
                doc["data"]["cache_mib"] = 0
                lazy[clients] = median_run(work, f"lazy-{clients}", doc, REPO)
            lazy_ratio = round_ms(lazy[big]) / round_ms(lazy[min(populations)])
            data["ratio_100_a_round_built_when_used"] = lazy_ratio
            sections.insert(1, f"100 clients a round: the round at {big:,} clients costs "
                               f"{ratio['recorded']:.2f}x the round at {min(populations):,} (recorded), "
                               f"{ratio['unrecorded']:.2f}x (unrecorded), where the smaller population's rows "
                               f"fit data.cache_mib and are built once; with every client built when used at both "
                               f"sizes (data.cache_mib = 0), {lazy_ratio:.2f}x (recorded). Medians of {REPEATS} runs.")
            rows, data["projection"] = projection_study(work, 10**7, compute)
            sections.append(markdown_table(
                "PROJECTION (alpha-beta model, not a measurement): 10^7 clients, 1,000 a round, the compute of the "
                f"{big:,}-client round here spread over the client ranks",
                ["ranks", "round (ms)", "compute (ms)", "collectives (ms)", "efficiency"], rows))
    text = "\n\n".join(sections)
    write_results(args.out, "population", text, data)
    print(text)


if __name__ == "__main__":
    main()
