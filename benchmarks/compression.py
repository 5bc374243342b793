"""The compression study: accuracy against uplink bytes, codec costs, and when compression pays at scale.

    python benchmarks/compression.py [--ranks 5] [--out benchmarks/results]
                                     [--figure docs/images/compression.png]

1. **Accuracy against total uplink bytes.**  Each method at several
   settings, with and without error feedback, on two federated setups:
   - digits: jobs/default.toml with 20 clients, every client every round, 30 rounds;
   - the FedProx benchmark: jobs/fedprox_synthetic.toml (Synthetic(1, 1), 30
     devices, 10 a round), 60 rounds.
   Every point is one run of a sweep; the bytes are the run's summary, counted
   at the collectives.
2. **Codec costs**: encode and decode seconds per update of n float32 values,
   for n = the digits model, the digits MLP and a 1M-parameter model.
3. **Projection** (an alpha-beta model, not a measurement): Allreduce,
   Gather and Allgather fitted to probes on 2, 4 and 8 ranks of this machine,
   then one update exchange at 64 to 4,096 ranks, uncompressed against each
   codec (its encode, its exchange, and the receiver's decoding: a worker
   adds all p messages into its sum after an Allgather, touching only the k
   positions of a sparse one; the federated server decodes all p - 1 into
   rows, which a robust aggregator needs one by one).  This machine's fit is
   shared memory on 2 oversubscribed cores, so the same model is also
   evaluated with two assumed links, labelled as assumed: a 100 Gb/s fabric
   (alpha 2 us, beta 0.08 ns/byte) and a 1 Gb/s link, a federated client's
   uplink over a wide-area network (alpha 1 ms, beta 8 ns/byte).
"""

from __future__ import annotations

import argparse
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
from common import alternate, machine, markdown_table, run_sweep, save_figure, write_results  # noqa: E402

from mpifl.compression import Codec, make_codec  # noqa: E402
from mpifl.scaling import alphabeta  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETUPS = {
    "digits": {"job": REPO / "jobs" / "default.toml",
               "set": {"rounds": 30, "log_every": 10, "data.clients": 20, "server.fraction": 1.0}},
    "fedprox_synthetic": {"job": REPO / "jobs" / "fedprox_synthetic.toml", "set": {"rounds": 60, "log_every": 20}},
}
# (method, the key its setting goes under, the settings)
METHODS = [("topk", "compress.ratio", [0.01, 0.05, 0.2]), ("randk", "compress.ratio", [0.05, 0.2, 0.5]),
           ("qsgd", "compress.bits", [2, 4, 8]), ("int8", "compress.bits", [8])]
SIZES = {"digits softmax": 650, "digits MLP 64-200-200-10": 55_050, "1M parameters": 1_000_000}
CODECS = [("topk", {"ratio": 0.01}), ("topk", {"ratio": 0.1}), ("randk", {"ratio": 0.1}),
          ("qsgd", {"bits": 4}), ("qsgd", {"bits": 8}), ("int8", {})]
PROJECT_RANKS = (64, 256, 1024, 4096)
NETWORKS = {"an assumed 100 Gb/s fabric": (2e-6, 0.08e-9), "an assumed 1 Gb/s wide-area link": (1e-3, 8e-9)}


def sweep(work: Path, name: str, setup: dict, uplink: str, grid: dict, ranks: int, rounds: int) -> list[dict]:
    """One sweep; each finished point's setting, accuracy and byte totals (from its summary.json)."""
    settings = {**setup["set"], "compress.uplink": uplink, **({"rounds": rounds} if rounds else {})}
    points = []
    for row in run_sweep(work, name, {"job": str(setup["job"]), "ranks_per_job": ranks, "grid": grid,
                                      "set": settings}, ranks):
        summary = json.loads((work / row["run_dir"] / "summary.json").read_text()) if row["run_dir"] else {}
        points.append({"method": uplink, **{k: row[k] for k in grid}, "status": row["status"],
                       "accuracy": summary.get("final_accuracy"), "uplink_bytes": summary.get("uplink_bytes"),
                       "achieved_ratio": (summary.get("compression") or {}).get("achieved_ratio"),
                       "seconds_per_round": summary.get("seconds_per_round")})
    return points


def accuracy_study(ranks: int, rounds: int, setups: list[str], methods: list[str]) -> dict[str, list[dict]]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in setups:
            setup = SETUPS[name]
            points = sweep(work, f"{name}-none", setup, "none", {"seed": [setup["set"].get("seed", 0)]}, ranks,
                           rounds)
            for method, key, settings in (m for m in METHODS if m[0] in methods):
                points += sweep(work, f"{name}-{method}", setup, method,
                                {key: settings, "compress.error_feedback": [False, True]}, ranks, rounds)
            results[name] = points
    return results


def label(point: dict) -> str:
    if point["method"] == "none":
        return "none"
    setting = point.get("compress.ratio") or point.get("compress.bits")
    unit = "ratio" if "compress.ratio" in point else "bits"
    return f"{point['method']} {unit} {setting}" + (" +EF" if point["compress.error_feedback"] == "True" else "")


def accuracy_tables(results: dict[str, list[dict]]) -> list[str]:
    tables = []
    for name, points in results.items():
        base = next(p for p in points if p["method"] == "none")
        rows = []
        for p in points:
            acc = "diverged" if p["accuracy"] is None else f"{p['accuracy']:.3f}"
            ratio = base["uplink_bytes"] / p["uplink_bytes"] if p["uplink_bytes"] else math.nan
            rows.append(f"| {label(p)} | {acc} | {p['uplink_bytes'] / 1e6 if p['uplink_bytes'] else math.nan:.3f} "
                        f"| {ratio:.1f}x |")
        tables.append(markdown_table(f"{name}: final test accuracy against total uplink bytes",
                                     ["uplink", "accuracy", "uplink MB", "fewer bytes than none"], rows))
    return tables


def codec_costs(repeat: int) -> dict[str, dict[str, dict[str, float]]]:
    """Median encode and decode seconds per update, per model size and codec."""
    costs = {}
    for size_name, n in SIZES.items():
        x = np.random.default_rng(0).standard_normal(n)
        costs[size_name] = {}
        for method, kw in CODECS:
            codec = make_codec(method, n, np.dtype(np.float32), **kw)
            message = np.zeros(codec.nbytes, dtype=np.uint8)
            codec.encode(x, (0, 1, 2), message)
            total = np.zeros(n)
            times = alternate({"encode": lambda: codec.encode(x, (0, 1, 2), message),
                               "decode": lambda: codec.decode(message, (0, 1, 2)),
                               "accumulate": lambda: codec.accumulate(message, (0, 1, 2), total)}, repeat)
            costs[size_name][codec_name(method, kw)] = {**times, "bytes": codec.nbytes, "raw_bytes": 4 * n}
    return costs


def codec_name(method: str, kw: dict) -> str:
    return method + "".join(f" {k} {v}" for k, v in kw.items())


def probe_fits() -> dict[str, alphabeta.Fit]:
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in (2, 4, 8):
            out = Path(tmp) / f"probe-{p}.json"
            subprocess.run([shutil.which("mpiexec"), "-n", str(p), sys.executable, "-m", "mpifl.scaling.probe",
                            str(out)], check=True, capture_output=True)
            samples += [(p, s["collective"], s["bytes"], s["seconds"]) for s in json.loads(out.read_text())["samples"]]
    return {name: alphabeta.fit(name, [(p, m, t) for p, c, m, t in samples if c == name])
            for name in ("Allreduce", "Gather", "Allgather")}


def exchange_seconds(fits, mode: str, p: int, n: int, codec: Codec | None, cost: dict | None) -> float:
    """One update exchange at p ranks: uncompressed (codec None) or through codec, with its costs."""
    raw = 4 * n
    if codec is None:
        return fits["Allreduce" if mode == "distributed" else "Gather"].seconds(p, raw)
    if mode == "federated":  # every client encodes at once; the server decodes the p - 1 messages
        return cost["encode"] + fits["Gather"].seconds(p, codec.nbytes) + (p - 1) * cost["decode"]
    if codec.shares_indices:  # shared indices: the values Allreduce
        return cost["encode"] + fits["Allreduce"].seconds(p, codec.nbytes) + cost["decode"]
    return cost["encode"] + fits["Allgather"].seconds(p, codec.nbytes) + p * cost["accumulate"]


def projection(fits, costs) -> tuple[list[str], dict]:
    links = {"this machine's fitted collectives": fits}
    for where, (alpha, beta) in NETWORKS.items():
        links[where] = {name: alphabeta.Fit(name, alpha, beta, 0, 0.0) for name in fits}
    tables, data = [], {}
    for size_name in ("digits MLP 64-200-200-10", "1M parameters"):
        n = SIZES[size_name]
        for where, use in links.items():
            rows = []
            for mode in ("distributed", "federated"):
                for method, kw in CODECS:
                    codec = make_codec(method, n, np.dtype(np.float32), **kw)
                    cost = costs[size_name][codec_name(method, kw)]
                    speedups = [exchange_seconds(use, mode, p, n, None, None) /
                                exchange_seconds(use, mode, p, n, codec, cost) for p in PROJECT_RANKS]
                    data[f"{size_name}/{where}/{mode}/{codec_name(method, kw)}"] = speedups
                    rows.append(f"| {mode} | {codec_name(method, kw)} | "
                                + " | ".join(f"{s:.2f}x" for s in speedups) + " |")
            tables.append(markdown_table(
                f"PROJECTION (alpha-beta model, not a measurement): uncompressed exchange time over compressed, "
                f"{size_name} (float32), {where}; > 1 means compression pays",
                ["mode", "codec", *(f"{p} ranks" for p in PROJECT_RANKS)], rows))
    return tables, data


def plot(path: Path, results: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"none": "black", "topk": "C0", "randk": "C1", "qsgd": "C2", "int8": "C3"}
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5))
    for ax, (name, points) in zip(np.atleast_1d(axes), results.items()):
        for p in points:
            if p["accuracy"] is None or not p["uplink_bytes"]:
                continue
            ef = p.get("compress.error_feedback") == "True"
            ax.scatter(p["uplink_bytes"] / 1e6, p["accuracy"], color=colours[p["method"]],
                       marker="o" if ef or p["method"] == "none" else "x", s=40)
            ax.annotate(label(p).replace(" +EF", "").split(" ", 1)[-1] if p["method"] != "none" else "none",
                        (p["uplink_bytes"] / 1e6, p["accuracy"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("total uplink MB (counted at the collectives)")
        ax.set_ylabel("final test accuracy")
        ax.set_title(name)
        for method, colour in colours.items():
            ax.scatter([], [], color=colour, label=method)
        ax.scatter([], [], color="grey", marker="o", label="with error feedback")
        ax.scatter([], [], color="grey", marker="x", label="without")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=5, help="ranks per federated run (1 server + client ranks)")
    parser.add_argument("--repeat", type=int, default=15, help="timed repeats of each codec")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--figure", type=Path, default=Path("docs/images/compression.png"))
    parser.add_argument("--rounds", type=int, default=0, help="rounds per run (0: the study's)")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated setups to run")
    parser.add_argument("--methods", default=",".join(m[0] for m in METHODS), help="comma-separated codecs to run")
    args = parser.parse_args()
    started = time.perf_counter()
    results = accuracy_study(args.ranks, args.rounds, args.setups.split(","), args.methods.split(","))
    plot(args.figure, results)
    costs = codec_costs(args.repeat)
    cost_rows = [f"| {size} | {name} | {c['bytes']:,} | {c['raw_bytes'] / c['bytes']:.1f}x | "
                 f"{c['encode'] * 1e3:.3f} | {c['decode'] * 1e3:.3f} | {c['accumulate'] * 1e3:.3f} |"
                 for size, per in costs.items() for name, c in per.items()]
    fits = probe_fits()
    fit_lines = [f"{f.collective}: alpha {f.alpha * 1e6:.2f} us/step, beta {f.beta * 1e9:.4f} ns/byte "
                 f"({f.points} samples, rms error {f.rms_relative_error:.0%})" for f in fits.values()]
    projected, projected_data = projection(fits, costs)
    tables = [
        f"Compression study; {machine()}",
        *accuracy_tables(results),
        markdown_table("Codec costs per update (float32 values; median of "
                       f"{args.repeat})", ["model", "codec", "message bytes", "smaller", "encode ms", "decode ms", "add-into-sum ms"],
                       cost_rows),
        "Collectives fitted to probes on 2, 4, 8 ranks of this machine: " + "; ".join(fit_lines),
        *projected,
        f"(whole study: {time.perf_counter() - started:.0f} s)",
    ]
    print("\n\n".join(tables))
    write_results(args.out, "compression", "\n\n".join(tables), {
        "accuracy": results, "codec_costs": costs, "projection": projected_data,
        "fits": {name: {"alpha": f.alpha, "beta": f.beta} for name, f in fits.items()}, "machine": machine()})


if __name__ == "__main__":
    main()
