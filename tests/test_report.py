"""python -m mpifl plot and compare over run directories (serial tools, no MPI)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import tomli_w

from serial_tools import mpifl_command

import mpifl
from mpifl import report_cli
from mpifl.errors import ConfigError
from mpifl.rundirs import RunDir, labels


def make_run(path, lr, final_accuracy, rounds=4, clients=True, **overrides):
    """A run directory as mpifl writes it, with a made-up history."""
    path.mkdir(parents=True)
    job = mpifl.job(None, train__lr=lr, rounds=rounds, **overrides)
    (path / "config.toml").write_text(tomli_w.dumps(job.as_nested()))
    rows = []
    for r in range(rounds + 1):
        acc = final_accuracy * r / rounds
        each = np.array([acc - 0.1, acc, acc + 0.05])
        rows.append({"round": r, "loss": 2.0 / (r + 1), "accuracy": acc, "seconds": 0.002,
                     "clients": {"accuracy": summary_of(each)} if clients else None})
        if clients:
            write_figures(path, r, accuracy=each)
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (path / "summary.json").write_text(json.dumps({
        "status": "finished", "rounds_run": rounds, "final_loss": rows[-1]["loss"], "final_accuracy": final_accuracy,
        "best_round": rounds - 1, "best_metric": "val_loss", "best_value": 0.5, "best_test_accuracy": final_accuracy,
        "seconds_per_round": 0.002}))
    return path


def summary_of(values):
    from mpifl.round_records import summarize

    return summarize(np.asarray(values, dtype=float), np.ones(len(values)), True)


def write_figures(path, rnd, **figures):
    """A round's per-client figures as evaluate.per_client writes them (NaN where a client has none)."""
    n = len(next(iter(figures.values())))
    nan = np.full(n, np.nan)
    full = {"client": np.arange(n), "accuracy": nan, "test_accuracy": nan, "personal_accuracy": nan,
            **{k: np.asarray(v, dtype=float) for k, v in figures.items()}}
    (path / "clients").mkdir(exist_ok=True)
    np.savez(path / "clients" / f"round_{rnd:06d}.npz", **full)


def test_runs_are_labelled_by_what_differs(tmp_path):
    a = RunDir.read(make_run(tmp_path / "a", 0.5, 0.9))
    b = RunDir.read(make_run(tmp_path / "b", 0.05, 0.8))
    assert labels([a, b]) == ["lr=0.5", "lr=0.05"]
    assert labels([a, RunDir.read(make_run(tmp_path / "c", 0.5, 0.7))]) == ["a", "c"]
    assert a.series("accuracy") == ([0, 1, 2, 3, 4], [0.0, 0.225, 0.45, 0.675, 0.9])


def test_compare_prints_final_and_best_metrics_and_time_per_round(tmp_path):
    make_run(tmp_path / "a", 0.5, 0.9)
    make_run(tmp_path / "b", 0.05, 0.8)
    proc = mpifl_command("compare", "a", "b", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| lr=0.5 | finished | 4 | 0.40000 | 0.9000 | 3 (val_loss 0.5000) | 0.9000 | 2.00 |" in proc.stdout
    assert "| lr=0.05 | finished | 4 | 0.40000 | 0.8000 | 3 (val_loss 0.5000) | 0.8000 | 2.00 |" in proc.stdout


def test_plot_writes_curves_for_two_runs(tmp_path):
    pytest.importorskip("matplotlib")
    make_run(tmp_path / "a", 0.5, 0.9)
    make_run(tmp_path / "b", 0.05, 0.8, clients=False)
    proc = mpifl_command("plot", "a", "b", "--out", "figs/curves.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    image = (tmp_path / "figs" / "curves.png").read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 20_000


def test_a_directory_without_a_run_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty is not a run directory: it has no config.toml"):
        RunDir.read(tmp_path / "empty")
    proc = mpifl_command("compare", "empty", cwd=tmp_path)
    assert proc.returncode == 2 and "is not a run directory" in proc.stderr


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    from mpifl import report_cli

    make_run(tmp_path / "a", 0.5, 0.9)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'mpifl\[plot\]'"):
        report_cli.plot([RunDir.read(tmp_path / "a")], tmp_path / "x.png")


def test_compare_gives_the_rounds_to_a_target_accuracy(tmp_path):
    make_run(tmp_path / "a", 0.5, 0.9)  # accuracy 0, 0.225, 0.45, 0.675, 0.9 over rounds 0..4
    make_run(tmp_path / "b", 0.05, 0.6)
    proc = mpifl_command("compare", "a", "b", "--target", "0.65", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| rounds to 0.65 |" in proc.stdout
    assert "| lr=0.5 | finished | 4 | 0.40000 | 0.9000 | 3 (val_loss 0.5000) | 0.9000 | 2.00 | 3 |" in proc.stdout
    assert "| lr=0.05 | finished | 4 | 0.40000 | 0.6000 | 3 (val_loss 0.5000) | 0.6000 | 2.00 | not reached |" in proc.stdout


def three_strategies(tmp_path):
    return [RunDir.read(make_run(tmp_path / name, 0.05, acc, **extra)) for name, acc, extra in (
        ("avg", 0.8, {"server__strategy": "fedavg"}),
        ("prox", 0.85, {"server__strategy": "fedprox", "server__proximal_mu": 0.1}),
        ("adam", 0.9, {"server__strategy": "fedadam", "server__lr": 0.03}))]


def test_strategies_are_labelled_by_the_keys_each_sets_never_by_keys_it_lacks(tmp_path):
    assert labels(three_strategies(tmp_path)) == ["fedavg", "fedprox proximal_mu=0.1", "fedadam lr=0.03"]


def test_a_plot_of_three_runs_keeps_its_legend_inside_the_figure_and_off_the_data(tmp_path):
    pytest.importorskip("matplotlib")
    plt, fig = report_cli.figure(three_strategies(tmp_path))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)
    for ax in fig.axes:  # below every panel, so it covers no data
        assert not box.overlaps(ax.get_window_extent(renderer))
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["fedavg", "fedprox proximal_mu=0.1", "fedadam lr=0.03"] and not any("None" in t for t in texts)
    plt.close(fig)


def test_the_clients_band_shows_personal_accuracy_where_the_run_recorded_it(tmp_path):
    path = make_run(tmp_path / "ditto", 0.05, 0.8)
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row["clients"]["test_accuracy"] = summary_of([0.1, 0.2, 0.3])
        row["clients"]["personal_accuracy"] = summary_of([0.7, 0.8])
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    _, low, high = report_cli._client_band(RunDir.read(path))
    assert low[-1] == pytest.approx(np.percentile([0.7, 0.8], 10)) and high[-1] == pytest.approx(
        np.percentile([0.7, 0.8], 90))


def test_the_clients_distribution_draws_each_runs_last_personal_accuracies(tmp_path):
    pytest.importorskip("matplotlib")
    paths = [make_run(tmp_path / name, lr, 0.8) for name, lr in (("a", 0.05), ("b", 0.1))]
    write_figures(paths[0], 4, accuracy=[0.1, 0.2, 0.3, 0.4], personal_accuracy=[0.9, 0.5, np.nan, 0.7])
    runs = [RunDir.read(p) for p in paths]
    assert report_cli._last_client_accuracy(runs[0]).tolist() == [0.5, 0.7, 0.9]  # personal, None dropped, sorted
    plt, fig = report_cli.clients_figure(runs)
    (ax,) = fig.axes
    steps = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert len(steps) == 2 and list(steps[0].get_xdata()) == [0.5, 0.7, 0.9]
    np.testing.assert_allclose(steps[1].get_xdata(), [0.7, 0.8, 0.85])  # the other run's client_accuracy
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lr=0.05 (mean 0.700)",
                                                                   "lr=0.1 (mean 0.783)"]
    plt.close(fig)
    assert report_cli.main("plot", [str(p) for p in paths] + ["--out", str(tmp_path / "c.png"),
                                                              "--clients", str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "d.png").stat().st_size > 0
    bare = make_run(tmp_path / "bare", 0.05, 0.8, clients=False)
    with pytest.raises(ConfigError, match="per-client figures"):
        report_cli.clients_figure([RunDir.read(bare)])
