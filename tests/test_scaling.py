"""Scaling studies: the alpha-beta fit, the traffic model, the projection, and `mpifl scale` end to end."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from mpifl import config
from mpifl.errors import ConfigError
from mpifl.scaling import alphabeta, traffic
from mpifl.scaling.launch import render_sbatch
from mpifl.scaling.projection import Inputs, project
from mpifl.scaling.study import SlurmOptions, Study

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "jobs" / "distributed_synthetic.toml"


@pytest.mark.parametrize("collective", alphabeta.COLLECTIVES)
def test_fit_recovers_alpha_and_beta_from_exact_samples(collective):
    alpha, beta = 3e-6, 2e-10
    samples = [(p, m, alpha * alphabeta.latency_term(p) + beta * alphabeta.volume_term(collective, p, m))
               for p in (2, 4, 8) for m in (8, 4096, 2**20)]
    fit = alphabeta.fit(collective, samples)
    assert fit.alpha == pytest.approx(alpha, rel=1e-9)
    assert fit.beta == pytest.approx(beta, rel=1e-9)
    assert fit.rms_relative_error < 1e-9
    assert fit.seconds(1024, 1e6) == pytest.approx(alpha * 10 + beta * alphabeta.volume_term(collective, 1024, 1e6))


def test_fit_keeps_alpha_and_beta_non_negative():
    # times that fall with message size would need a negative beta
    fit = alphabeta.fit("Allreduce", [(2, 8, 2e-6), (2, 1e6, 1e-6), (4, 8, 4e-6)])
    assert fit.alpha >= 0 and fit.beta == 0


def test_fit_needs_two_samples_on_two_or_more_ranks():
    with pytest.raises(ValueError, match="at least 2"):
        alphabeta.fit("Bcast", [(1, 8, 1e-6), (2, 8, 1e-6)])


def test_volume_terms_follow_the_textbook_costs():
    assert alphabeta.volume_term("Allreduce", 4, 100) == 150  # 2 (p-1)/p m
    assert alphabeta.volume_term("Gather", 4, 100) == 300  # the root receives (p-1) m
    assert alphabeta.latency_term(5) == 3 and alphabeta.latency_term(1) == 0


def test_traffic_counts_one_allreduce_per_minibatch_step():
    cfg = config.load(SYNTHETIC, ["train.batch_size=100"])
    per_round = traffic.per_round(cfg, 4, rows_per_worker=1050)
    assert [(c.name, c.nbytes, c.count) for c in per_round] == [("Allreduce", 33 * 4, 11), ("Allreduce", 8, 1)]
    full = traffic.per_round(config.load(SYNTHETIC, ["train.batch_size=0", "train.epochs=3"]), 4, 1050)
    assert full[0].count == 3


def test_traffic_of_a_federated_round_is_one_bcast_and_two_gathers():
    cfg = config.load(None)  # the default job: softmax on digits, 650 float64 parameters, a client on each rank
    per_round = traffic.per_round(cfg, 8, rows_per_worker=200)
    # downlink [theta | stop | poll | cohort | a plan slot (id, epochs) per client of 7]; a payload row; 12 client
    # statistics (4 of them federated evaluation's validation sums) and 3 rank ones
    assert [(c.name, c.nbytes) for c in per_round] == [("Bcast", (650 + 3 + 7) * 8), ("Gather", 650 * 8),
                                                       ("Gather", (12 + 3) * 8)]
    reduced = traffic.per_round(config.load(None, ["server.exchange=reduce"]), 8, rows_per_worker=200)
    assert [(c.name, c.nbytes) for c in reduced[1:3]] == [("Allreduce", 3 * 8), ("Allreduce", (650 + 2) * 8)]
    compressed = traffic.per_round(config.load(None, ["compress.uplink=topk", "compress.ratio=0.1"]), 8, 200)
    assert compressed[1].nbytes < 650 * 8 / 4 and compressed[2].nbytes == (12 + 4) * 8  # + the encoding seconds
    assert traffic.workers("federated", 8) == 7 and traffic.train_rows(cfg, 8) == 1797 - 359


def _inputs(kind):
    fits = {name: alphabeta.Fit(name, 1e-6, 1e-9, 2, 0.0) for name in alphabeta.COLLECTIVES}
    return Inputs(kind, 1, 1, 0.064, 64_000, 33, fits, [2])


def test_strong_projection_divides_compute_and_adds_the_modelled_collectives():
    cfg = config.load(SYNTHETIC, ["train.batch_size=0"])
    row = project(cfg, _inputs("strong"), 64)
    assert row.compute_seconds == pytest.approx(0.001)
    expected_comm = (1e-6 * 6 + 1e-9 * 2 * 63 / 64 * 132) + (1e-6 * 6 + 1e-9 * 2 * 63 / 64 * 8)
    assert row.comm_seconds == pytest.approx(expected_comm)
    assert row.efficiency == pytest.approx(0.001 / (0.001 + expected_comm))


def test_weak_projection_keeps_compute_per_worker():
    cfg = config.load(SYNTHETIC, ["train.batch_size=0"])
    assert project(cfg, _inputs("weak"), 4096).compute_seconds == pytest.approx(0.064)


def test_weak_study_grows_the_data_with_the_workers():
    study = Study(job=SYNTHETIC, kind="weak", ranks=(2, 4, 8))
    study.validate()
    assert study.config(2)["data.n_samples"] == 200_000
    assert study.config(8)["data.n_samples"] == 800_000
    assert Study(job=SYNTHETIC, kind="strong", ranks=(2, 8)).config(8)["data.n_samples"] == 200_000
    per_rank = Study(job=SYNTHETIC, kind="weak", ranks=(1, 4), overrides=("data.rows_per_rank=5000",))
    assert per_rank.point_overrides(4) == []  # each worker makes its own 5,000 rows at any rank count
    assert traffic.train_rows(per_rank.config(4), 4) == 20_000


@pytest.mark.parametrize(
    "study, message",
    [
        (Study(job=None, kind="weak", ranks=(2, 4)), r"\(data.name = 'synthetic'\); the job uses 'digits'"),
        (Study(job=None, kind="strong", ranks=(1, 2)), "Federated mode needs at least 2 ranks"),
        (Study(job=SYNTHETIC, kind="strong", ranks=(4, 2)), "increasing order"),
        (Study(job=SYNTHETIC, kind="strong", ranks=(1, 2), overrides=("train.lr=-1",)), "'train.lr' parameter"),
        (Study(job=SYNTHETIC, kind="sideways", ranks=(1, 2)), "kind must be one of"),
    ],
)
def test_a_bad_study_is_refused_before_any_point_runs(study, message):
    with pytest.raises(ConfigError, match=message):
        study.validate()


def test_sbatch_files_run_every_repeat_and_the_probe_in_one_allocation(tmp_path):
    study = Study(job=SYNTHETIC, kind="strong", ranks=(1, 16), repeat=2,
                  slurm=SlurmOptions(tasks_per_node=8, partition="batch", cpus_per_task=2))
    files = render_sbatch(study, tmp_path)
    assert [f.name for f in files] == ["p0001.sbatch", "p0016.sbatch"]
    one, sixteen = (f.read_text() for f in files)
    assert "#SBATCH --ntasks=16" in sixteen and "#SBATCH --nodes=2" in sixteen
    assert "#SBATCH --ntasks-per-node=8" in sixteen and "#SBATCH --partition=batch" in sixteen
    assert "#SBATCH --cpus-per-task=2" in sixteen
    runs = [ln for ln in sixteen.splitlines() if ln.startswith("srun --mpi=pmi2")]
    assert len(runs) == 3 and "p0016-r0" in runs[0] and "p0016-r1" in runs[1] and "mpifl.scaling.probe" in runs[2]
    assert "mpifl.scaling.probe" not in one  # nothing to fit on one rank
    assert (tmp_path / "submit.sh").read_text().count("sbatch --parsable") == 2


def scale(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "mpifl", "scale", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})}, check=False)


def test_scale_runs_each_point_and_reports_the_median_of_the_repeats(tmp_path):
    proc = scale(str(SYNTHETIC), "--ranks", "1,2", "--kind", "strong", "--repeat", "2", "--set", "rounds=4",
                 "--set", "data.n_samples=20000", "--set", "log_every=1", "--out", "study", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "study"
    rows = list(csv.DictReader((out / "scaling.csv").read_text().splitlines()))
    assert [int(r["ranks"]) for r in rows] == [1, 2] and all(r["repeats"] == "2" for r in rows)
    for row in rows:
        medians = []
        for run in row["run_dirs"].split(";"):
            records = [json.loads(ln) for ln in (out / run / "metrics.jsonl").read_text().splitlines()]
            timed = [r["seconds"] for r in records if r["breakdown"]][1:]
            medians.append(statistics.median(timed))
            assert json.loads((out / run / "summary.json").read_text())["ranks"] == int(row["ranks"])
        assert float(row["seconds_per_round"]) == pytest.approx(statistics.median(medians))
    base, two = rows
    assert float(base["speedup"]) == pytest.approx(1.0)
    assert float(two["speedup"]) == pytest.approx(float(base["seconds_per_round"]) / float(two["seconds_per_round"]))
    assert float(two["efficiency"]) == pytest.approx(float(two["speedup"]) / 2)
    projection = (out / "projection.txt").read_text()
    assert "PROJECTION (alpha-beta model, not a measurement)" in projection
    assert "fitted to probes on 2 ranks" in projection
    assert [ln.split()[0] for ln in projection.splitlines()[-8:]] == ["2", "64", "128", "256", "512", "1024",
                                                                      "2048", "4096"]
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the analysis can be redone from the directory alone, as after sbatch jobs
    again = scale("--collect", "study", "--no-plot", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert list(csv.DictReader((out / "scaling.csv").read_text().splitlines())) == rows


def test_scale_refuses_to_run_inside_an_mpi_job(tmp_path):
    proc = scale(str(SYNTHETIC), "--ranks", "1,2", "--kind", "strong", cwd=tmp_path, env={"PMI_RANK": "0"})
    assert proc.returncode == 2 and "without mpiexec or srun" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_failing_point_stops_the_study_and_names_its_log(tmp_path):
    # 1 training row: the 1-rank point runs, the 2-rank point cannot give both workers a row
    proc = scale(str(SYNTHETIC), "--ranks", "1,2", "--kind", "strong", "--set", "data.n_samples=2",
                 "--set", "data.test_fraction=0.5", "--set", "rounds=2", "--out", "study", cwd=tmp_path)
    assert proc.returncode == 2
    assert "A study point failed" in proc.stderr and "p0002-r0.log" in proc.stderr
    assert "Cannot partition 1 training rows over 2 clients" in proc.stderr
    assert (tmp_path / "study" / "points" / "p0001-r0" / "summary.json").exists()
    assert not (tmp_path / "study" / "scaling.csv").exists()


@pytest.mark.parametrize("path", sorted((REPO / "slurm" / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_study_files_are_valid_from_any_directory(path, tmp_path, monkeypatch):
    from mpifl.scaling import study as studies

    monkeypatch.chdir(tmp_path)
    study = studies.load(path, {})
    study.validate()
    assert study.job is None or study.job.exists()
    files = render_sbatch(study, tmp_path / "out")
    assert len(files) == len(study.ranks)
