"""slurm/mpifl.sbatch on a real single-node Slurm (started by slurm/cluster/start.sh).

The cluster is started for this module and stopped after it.  If Slurm cannot
be started, the tests fail and say why; they are never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

# a real Slurm, minutes (tests/run.sh --all); one cluster at a time, so all on one xdist worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "slurm" / "mpifl.sbatch"
JOB = REPO / "jobs" / "default.toml"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm-state")
    start = subprocess.run([str(REPO / "slurm" / "cluster" / "start.sh"), str(state)],
                           capture_output=True, text=True, timeout=300)
    if start.returncode != 0:
        pytest.fail(f"could not start Slurm (root and Debian's slurm-wlm are needed):\n{start.stdout}\n{start.stderr}")
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    try:
        yield env
    finally:
        subprocess.run([str(REPO / "slurm" / "cluster" / "stop.sh"), str(state)], timeout=60)


def sbatch(env, cwd, *args, wait=True, extra_env=None):
    cmd = ["sbatch", "--parsable", *(["--wait"] if wait else []), *args]
    return subprocess.run(cmd, cwd=cwd, env={**env, **(extra_env or {})}, capture_output=True, text=True, timeout=300)


def job_state(env, job_id):
    """The job's state as squeue reports it ("" once it has left the queue)."""
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=env, capture_output=True, text=True,
                          timeout=30).stdout.strip()


def what_happened(env, job_id, cwd):
    out = cwd / "out.txt"
    return (f"\njob {job_id}: state {job_state(env, job_id) or 'gone'}\n"
            + (out.read_text() if out.exists() else "(no out.txt yet)"))


def test_sbatch_runs_the_default_job_on_8_tasks(slurm, tmp_path):
    proc = sbatch(slurm, tmp_path, "--output=out.txt", str(SBATCH), str(JOB), str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr + (tmp_path / "out.txt").read_text()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ranks"] == 8 and summary["status"] == "finished" and summary["final_accuracy"] >= 0.90
    assert "round   50" in (tmp_path / "out.txt").read_text()


def test_tasks_that_come_up_as_singletons_fail_at_once(slurm, tmp_path):
    started = time.monotonic()
    proc = sbatch(slurm, tmp_path, "--ntasks=4", "--output=out.txt", str(SBATCH), str(JOB), str(tmp_path / "run"),
                  extra_env={"MPIFL_SRUN_MPI": "none"})
    out = (tmp_path / "out.txt").read_text()
    assert proc.returncode != 0
    assert "rank 0 of 1, but 4 tasks were started" in out and "singletons" in out
    assert time.monotonic() - started < 60


def test_signal_checkpoints_requeues_and_resumes_to_the_same_model(slurm, tmp_path):
    # The signal is sent once round 1000 of 12,000 is recorded, so some 11,000 rounds (seconds) are left for it to
    # land mid-run; the requeued run finishes well inside the wait below on a loaded 2-core machine.
    args = ["--set", "rounds=12000", "--set", "log_every=1000"]
    job = sbatch(slurm, tmp_path, "--ntasks=4", "--output=out.txt", str(SBATCH), str(JOB), str(tmp_path / "run"),
                 *args, wait=False)
    assert job.returncode == 0, job.stderr
    job_id = job.stdout.strip().split(";")[0]
    metrics = tmp_path / "run" / "metrics.jsonl"
    # a freshly started node may hold the job pending for a while: wait for it to run, then for round 1000
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        assert job_state(slurm, job_id) in ("PENDING", "CONFIGURING", "RUNNING"), what_happened(slurm, job_id, tmp_path)
        time.sleep(0.1)
    assert metrics.exists() and len(metrics.read_text().splitlines()) >= 2, what_happened(slurm, job_id, tmp_path)
    # what --signal=B:USR1@120 does before the time limit, without waiting for it
    signal = subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=slurm, capture_output=True,
                            text=True, timeout=30)
    assert signal.returncode == 0, signal.stderr + what_happened(slurm, job_id, tmp_path)
    summary = tmp_path / "run" / "summary.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (summary.exists() and '"finished"' in summary.read_text()):
        time.sleep(0.5)
    out = (tmp_path / "out.txt").read_text()
    assert "stopped after a checkpoint; requeueing" in out, out
    assert "restart 1: resuming" in out, out
    assert json.loads(summary.read_text())["status"] == "finished", out
    reference = subprocess.run(
        [shutil.which("mpiexec"), "-n", "4", sys.executable, "-m", "mpifl", *args, "--out", "ref", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert reference.returncode == 0, reference.stderr
    assert (tmp_path / "run" / "model.npz").read_bytes() == (tmp_path / "ref" / "model.npz").read_bytes()


def test_a_rendered_scaling_study_runs_under_slurm_and_is_collected(slurm, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(
        f'[study]\njob = "{REPO / "jobs" / "distributed_synthetic.toml"}"\nkind = "weak"\nranks = [1, 2]\n'
        'set = ["data.n_samples=20000", "rounds=4", "log_every=1"]\n[slurm]\ntime = "00:05:00"\n'
    )
    render = subprocess.run([sys.executable, "-m", "mpifl", "scale", str(study), "--sbatch", "--out", "st"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert render.returncode == 0, render.stderr
    files = sorted((tmp_path / "st" / "sbatch").glob("*.sbatch"))
    assert [f.name for f in files] == ["p0001.sbatch", "p0002.sbatch"]
    for path in files:
        proc = sbatch(slurm, tmp_path, str(path))
        assert proc.returncode == 0, proc.stderr + (tmp_path / "st" / "logs" / f"{path.stem}.out").read_text()
    collected = subprocess.run([sys.executable, "-m", "mpifl", "scale", "--collect", "st"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr
    rows = (tmp_path / "st" / "scaling.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("weak,distributed,1,1,") and rows[2].startswith("weak,distributed,2,2,")
    sizes = [tomllib.loads((tmp_path / "st" / "points" / p / "config.toml").read_text())["data"]["n_samples"]
             for p in ("p0001-r0", "p0002-r0")]
    assert sizes == [20000, 40000]  # weak scaling: rows per worker held
    assert "PROJECTION (alpha-beta model" in collected.stdout


def test_a_sweep_runs_inside_one_allocation(slurm, tmp_path):
    (tmp_path / "sweep.toml").write_text(
        f'job = "{REPO / "jobs" / "distributed_synthetic.toml"}"\nranks_per_job = 2\nout = "sweep"\n'
        '[grid]\nseed = [1, 2, 3]\n[set]\nrounds = 3\n'
    )
    proc = sbatch(slurm, tmp_path, "--ntasks=4", "--output=out.txt", str(REPO / "slurm" / "sweep.sbatch"),
                  "sweep.toml")
    out = (tmp_path / "out.txt").read_text()
    assert proc.returncode == 0, proc.stderr + out
    assert "sweep: 3 points (0 failed) on 2 groups of 2 rank(s)" in out
    rows = (tmp_path / "sweep" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 4 and all(",finished," in row for row in rows[1:])
