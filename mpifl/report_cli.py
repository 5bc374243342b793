"""``python -m mpifl plot RUN_DIR ... --out curves.png [--clients clients.png]`` and ``python -m mpifl compare``.

Serial tools over finished (or stopped) run directories: no MPI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mpifl.errors import ConfigError, MpiflError
from mpifl.metrics import read_client_figures
from mpifl.rundirs import RunDir, labels

BAND = (10, 90)  # percentiles of the clients' accuracy drawn as a band


def main(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m mpifl {command}")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    if command == "plot":
        parser.add_argument("--out", type=Path, default=Path("curves.png"), help="image file (default: curves.png)")
        parser.add_argument("--clients", type=Path, metavar="IMAGE",
                            help="also draw each run's last recorded per-client (personal) accuracy as a "
                                 "distribution: the share of clients at or below each accuracy")
    else:
        parser.add_argument("--target", type=float, help="also the first round at or above this test accuracy "
                                                          "(rounds to target, as the FedAvg paper reports)")
    args = parser.parse_args(argv)
    try:
        runs = [RunDir.read(path) for path in args.runs]
        if command == "plot":
            plot(runs, args.out)
            print(f"wrote {args.out}")
            if args.clients is not None:
                _save(*clients_figure(runs), args.clients)
                print(f"wrote {args.clients}")
        else:
            print(compare(runs, args.target))
    except MpiflError as exc:
        print(f"mpifl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def compare(runs: list[RunDir], target: float | None = None) -> str:
    """A markdown table of the runs' final and best metrics and their time per round; with ``target``, the
    first recorded round whose test accuracy reached it ("not reached" if none did)."""
    extra = f" rounds to {target:g} |" if target is not None else ""
    rows = ["| run | status | rounds | final loss | final accuracy | best round (metric) | test accuracy there | "
            "ms per round |" + extra,
            "|---|---|---|---|---|---|---|---|" + ("---|" if target is not None else "")]
    for run, label in zip(runs, labels(runs)):
        s = run.summary
        row = (f"| {label} | {s.get('status', 'running or killed')} | {s.get('rounds_run', len(run.history))} | "
               f"{_num(s.get('final_loss'), '.5f')} | {_num(s.get('final_accuracy'), '.4f')} | "
               f"{_best(s)} | {_num(s.get('best_test_accuracy'), '.4f')} | {_num(_ms(s.get('seconds_per_round')), '.2f')} |")
        if target is not None:
            rounds, accuracy = run.series("accuracy")
            reached = [r for r, a in zip(rounds, accuracy) if a is not None and a >= target]
            row += f" {reached[0] if reached else 'not reached'} |"
        rows.append(row)
    return "\n".join(rows)


def _best(summary: dict) -> str:
    """The round the run judged best on its validation metric, and the metric (chosen without the test set)."""
    if summary.get("best_round") is None:
        return "n/a"
    return f"{summary['best_round']} ({summary.get('best_metric')} {_num(summary.get('best_value'), '.4f')})"


def plot(runs: list[RunDir], out: Path) -> None:
    """Write the curves of ``runs`` (figure) to ``out``."""
    _save(*figure(runs), out)


def _save(plt, fig, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("Plots need matplotlib: pip install 'mpifl[plot]' (or pip install matplotlib).") from None
    return plt


def clients_figure(runs: list[RunDir]):
    """(pyplot, figure): each run's last recorded per-client accuracy (personal where recorded) as an empirical
    distribution, one step line per run, with its 10th percentile marked: how the worst-off clients fare."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for run, label in zip(runs, labels(runs)):
        values = _last_client_accuracy(run)
        if values is None:
            continue
        share = np.arange(1, values.size + 1) / values.size
        (line,) = ax.step(values, share, where="post", label=f"{label} (mean {values.mean():.3f})")
        ax.axvline(float(np.percentile(values, BAND[0])), color=line.get_color(), linestyle=":", linewidth=1)
        drawn += 1
    if not drawn:
        raise ConfigError("None of these runs wrote per-client figures (evaluate.per_client = true) with accuracy "
                          "on the clients' own rows.")
    ax.set_xlabel("client's accuracy on its own test rows (personal where the strategy keeps a model)")
    ax.set_ylabel("share of clients at or below")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    return plt, fig


CLIENT_FIGURES = ("personal_accuracy", "test_accuracy", "accuracy")  # the clients' accuracy, by preference


def _last_client_accuracy(run: RunDir) -> np.ndarray | None:
    """The sorted per-client accuracies of the run's last recorded round (evaluate.per_client's file): personal,
    else on the clients' own test rows, else on their training rows; None without the file."""
    try:
        figures = read_client_figures(run.path)
    except MpiflError:
        return None
    for key in CLIENT_FIGURES:
        values = figures[key][~np.isnan(figures[key])]
        if values.size:
            return np.sort(values)
    return None


def figure(runs: list[RunDir]):
    """(pyplot, figure): test accuracy, the clients' spread and training loss, against round and training time.

    One line per run.  The clients' spread has its own row, so several runs stay
    readable: each run's 10th-to-90th-percentile band is drawn light and its
    10th percentile as a line.  The legend sits below the panels, inside the figure.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(3, 2, figsize=(11, 9.5), sharey="row", sharex="col")
    handles = []
    for run, label in zip(runs, labels(runs)):
        per_round = run.summary.get("seconds_per_round") or _mean_round_seconds(run)
        for col, scale in enumerate((1.0, per_round)):
            rounds, acc = run.series("accuracy")
            (line,) = axes[0, col].plot(np.array(rounds) * scale, acc, label=label)
            band = _client_band(run)
            if band is not None:
                r, low, high = band
                x = np.array(r) * scale
                axes[1, col].fill_between(x, low, high, color=line.get_color(), alpha=0.08, linewidth=0)
                axes[1, col].plot(x, low, color=line.get_color(), linestyle="--")
            rounds, loss = run.series("loss")
            axes[2, col].plot(np.array(rounds) * scale, loss, color=line.get_color())
            if col == 0:
                handles.append(line)
    for col, xlabel in enumerate(("round", "training time (s)")):
        axes[2, col].set_xlabel(xlabel)
    axes[0, 0].set_ylabel("test accuracy")
    axes[1, 0].set_ylabel(f"clients' (personal) accuracy\n(band {BAND[0]}th-{BAND[1]}th pct., dashed {BAND[0]}th)")
    axes[2, 0].set_ylabel("training loss")
    axes[2, 0].set_yscale("log")
    columns = min(len(handles), 3)
    rows = -(-len(handles) // columns) if handles else 0
    fig.legend(handles=handles, loc="lower center", ncol=max(columns, 1), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03 + 0.03 * rows, 1, 1))
    return plt, fig


def _client_band(run: RunDir):
    """(rounds, p10, p90) of the clients' accuracy from the records' summaries, where the run recorded them: their
    personal accuracy on their own test rows, else the global model's there, else on their training rows."""
    summaries = [(r["round"], r["clients"]) for r in run.history if r.get("clients")]
    key = next((k for k in CLIENT_FIGURES if any(c.get(k) for _, c in summaries)), None)
    rows = [(rnd, c[key]) for rnd, c in summaries if key is not None and c.get(key)]
    if not rows:
        return None
    return [rnd for rnd, _ in rows], [s["p10"] for _, s in rows], [s["p90"] for _, s in rows]


def _mean_round_seconds(run: RunDir) -> float:
    seconds = [r["seconds"] for r in run.history if r.get("seconds")]
    return float(np.mean(seconds)) if seconds else 1.0


def _ms(seconds):
    return None if seconds is None else seconds * 1e3


def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)
