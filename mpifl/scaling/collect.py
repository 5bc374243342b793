"""Collect a study's run directories into scaling rows: time per round, split, speedup, efficiency.

Speedup and efficiency are relative to the smallest point, taken as ideal:
strong scaling speedup is w0 * T(p0) / T(p) for w workers (the ideal is w),
and efficiency is speedup / w.  Weak scaling efficiency is T(p0) / T(p)
(the ideal is 1) and its scaled speedup is w * efficiency.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mpifl.errors import MpiflError
from mpifl.scaling.launch import points, run_dir
from mpifl.scaling.study import Study
from mpifl.scaling.traffic import train_rows, workers


@dataclass(frozen=True)
class ScalingRow:
    kind: str
    mode: str
    ranks: int
    workers: int
    repeats: int
    train_rows: int  # in the whole job
    seconds_per_round: float  # a training round on the critical path, evaluation excluded; median over repeats
    seconds_per_round_min: float
    seconds_per_round_max: float
    compute_seconds: float  # per round, mean over ranks (from the recorded rounds)
    transfer_seconds: float  # communication time less the estimated waiting
    wait_seconds: float  # waiting for slower ranks (load imbalance)
    speedup: float
    ideal_speedup: float
    efficiency: float
    wall_seconds_per_round: float  # training time / rounds, evaluation of logged rounds included
    oversubscribed: bool  # more ranks x threads on a node than it has cores
    final_loss: float
    final_accuracy: float | None
    run_dirs: str  # relative to the study directory


def _read_run(directory: Path) -> tuple[dict, list[dict]]:
    summary_path = directory / "summary.json"
    if not summary_path.exists():
        raise MpiflError(f"{directory} has no summary.json: that point did not finish (see the study's logs/).")
    summary = json.loads(summary_path.read_text())
    records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return summary, records


def round_times(records: list[dict]) -> tuple[float, float, float, float]:
    """Round seconds (median) and mean compute, transfer and wait per rank over the recorded rounds.

    The first training round, a warm-up, is left out when there are others.
    """
    timed = [r for r in records if r.get("breakdown")]
    timed = timed[1:] or timed
    if not timed:
        raise MpiflError("A point recorded no timed round; run it with log_every <= rounds.")
    compute = statistics.fmean(r["breakdown"]["compute"][1] for r in timed)
    transfer = statistics.fmean(r["breakdown"]["comm"][1] for r in timed)  # waiting already taken out
    wait = statistics.fmean(r["breakdown"]["wait"][1] for r in timed)
    return statistics.median(r["seconds"] for r in timed), compute, transfer, wait


def _oversubscribed(info: dict) -> bool:
    return info["ranks_per_node"] * info.get("threads_per_rank", 1) > info["cores_per_node"]


def collect(study: Study, out: Path) -> list[ScalingRow]:
    by_ranks: dict[int, list[Path]] = {}
    for point in points(study):
        by_ranks.setdefault(point.ranks, []).append(run_dir(out, point))
    rows: list[ScalingRow] = []
    for ranks, dirs in by_ranks.items():
        runs = [_read_run(d) for d in dirs]
        summaries = [s for s, _ in runs]
        splits = [round_times(records) for _, records in runs]
        times = [t[0] for t in splits]
        cfg = study.config(ranks)
        w = workers(cfg.mode, ranks)
        rows.append(
            ScalingRow(
                kind=study.kind, mode=cfg.mode, ranks=ranks, workers=w, repeats=len(runs),
                train_rows=train_rows(cfg, ranks),
                seconds_per_round=statistics.median(times), seconds_per_round_min=min(times),
                seconds_per_round_max=max(times),
                compute_seconds=statistics.median(s[1] for s in splits),
                transfer_seconds=statistics.median(s[2] for s in splits),
                wait_seconds=statistics.median(s[3] for s in splits),
                wall_seconds_per_round=statistics.median(s["seconds_per_round"] for s in summaries),
                speedup=float("nan"), ideal_speedup=float(w), efficiency=float("nan"),
                oversubscribed=any(_oversubscribed(s) for s in summaries),
                final_loss=summaries[0]["final_loss"], final_accuracy=summaries[0]["final_accuracy"],
                run_dirs=";".join(str(d.relative_to(out)) for d in dirs),
            )
        )
    return with_speedup(rows)


def with_speedup(rows: list[ScalingRow]) -> list[ScalingRow]:
    base = rows[0]
    out = []
    for row in rows:
        if row.kind == "strong":
            speedup = base.workers * base.seconds_per_round / row.seconds_per_round
            efficiency = speedup / row.workers
        else:
            efficiency = base.seconds_per_round / row.seconds_per_round
            speedup = row.workers * efficiency
        out.append(replace(row, speedup=speedup, efficiency=efficiency))
    return out


def write_csv(rows: list, path: Path) -> None:
    if not rows:
        raise MpiflError("Nothing to write: the study has no rows.")
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def load_probes(study: Study, out: Path) -> tuple[list[tuple[int, str, float, float]], list[int]]:
    """(ranks, collective, bytes, seconds) samples for the fit, and the rank counts they came from.

    Probes with more ranks than cores time the scheduler, not the network,
    so they are left out when probes without oversubscription exist.
    """
    probes = []
    for ranks in study.ranks:
        path = out / "probe" / f"p{ranks:04d}.json"
        if ranks >= 2 and path.exists():
            probes.append(json.loads(path.read_text()))
    fitting = [p for p in probes if not _oversubscribed(p)] or probes
    samples = [(p["ranks"], s["collective"], s["bytes"], s["seconds"]) for p in fitting for s in p["samples"]]
    return samples, [p["ranks"] for p in fitting]
