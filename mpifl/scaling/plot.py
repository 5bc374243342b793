"""scaling.png: speedup and efficiency against the ideal, the compute/communication split, and the model."""

from __future__ import annotations

from pathlib import Path

from mpifl.errors import MpiflError
from mpifl.scaling.collect import ScalingRow
from mpifl.scaling.projection import Projected


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MpiflError('Plotting needs matplotlib: pip install "mpifl[plot]" (scaling.csv is written).') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(rows: list[ScalingRow], projected: list[Projected], path: Path, title: str) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    workers = [r.workers for r in rows]
    over = [r.oversubscribed for r in rows]
    kind = rows[0].kind

    ax = axes[0, 0]
    ax.plot(workers, [r.ideal_speedup for r in rows], "k--", label="ideal")
    _points(ax, workers, [r.speedup for r in rows], over, "measured")
    ax.set(xlabel="workers", ylabel="speedup" if kind == "strong" else "scaled speedup", title="Speedup")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.legend()

    ax = axes[0, 1]
    ax.axhline(1.0, color="k", linestyle="--", label="ideal")
    _points(ax, workers, [r.efficiency for r in rows], over, "measured")
    ax.set(xlabel="workers", ylabel="parallel efficiency", title=f"{kind.capitalize()} scaling efficiency",
           ylim=(0, max(1.1, max(r.efficiency for r in rows) * 1.1)))
    ax.set_xscale("log", base=2)
    ax.legend()

    ax = axes[1, 0]
    labels = [f"{r.ranks}" + ("*" if r.oversubscribed else "") for r in rows]
    compute = [r.compute_seconds * 1e3 for r in rows]
    transfer = [r.transfer_seconds * 1e3 for r in rows]
    wait = [r.wait_seconds * 1e3 for r in rows]
    ax.bar(labels, compute, label="compute")
    ax.bar(labels, transfer, bottom=compute, label="communication")
    ax.bar(labels, wait, bottom=[c + t for c, t in zip(compute, transfer)], label="waiting (imbalance)")
    ax.set(xlabel="ranks (* = more ranks than cores)", ylabel="ms per round, mean over ranks",
           title="Where a round goes")
    ax.legend()

    ax = axes[1, 1]
    if projected:
        ranks = [p.ranks for p in projected]
        ax.plot(ranks, [p.seconds * 1e3 for p in projected], "C0-", label="alpha-beta model: round")
        ax.plot(ranks, [p.comm_seconds * 1e3 for p in projected], "C1:", label="model: communication")
        measured = [(p.ranks, p.measured_seconds * 1e3) for p in projected if p.measured_seconds is not None]
        if measured:
            ax.plot(*zip(*measured), "ko", label="measured")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no projection (needs probes on 2+ ranks)", ha="center", va="center")
    ax.set(xlabel="ranks", ylabel="ms per round", title="Projection (a model, not a measurement)")

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _points(ax, x, y, oversubscribed, label):
    ax.plot(x, y, "C0-")
    ax.scatter([a for a, o in zip(x, oversubscribed) if not o], [b for b, o in zip(y, oversubscribed) if not o],
               color="C0", label=label, zorder=3)
    if any(oversubscribed):
        ax.scatter([a for a, o in zip(x, oversubscribed) if o], [b for b, o in zip(y, oversubscribed) if o],
                   facecolors="none", edgecolors="C0", label=f"{label}, more ranks than cores", zorder=3)
