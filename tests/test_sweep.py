"""python -m mpifl sweep: points on groups of ranks, bitwise like solo runs, failures recorded, files checked."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpifl.errors import ConfigError
from mpifl.sweep import Sweep

REPO = Path(__file__).resolve().parents[1]
MPIEXEC = shutil.which("mpiexec")
SWEEP = '''
job = "{job}"
ranks_per_job = 2
schedule = "{schedule}"
out = "out"

[grid]
seed = [1, 2]
"train.lr" = [0.2, 1e12, 0.5]

[set]
rounds = 4
'''


def mpiexec(n, *args, cwd):
    if MPIEXEC is None:
        pytest.fail("mpiexec not found: install the 'mpich' wheel or load your cluster's MPI")
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, "-m", "mpifl", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def solo_model(tmp_path_factory):
    """The model bytes of a solo 2-rank run of a point, run once for both schedules."""
    where = tmp_path_factory.mktemp("solo")
    models: dict[tuple[str, str], bytes] = {}

    def model(seed: str, lr: str) -> bytes:
        if (seed, lr) not in models:
            out = f"solo-{len(models)}"
            solo = mpiexec(2, "run", str(REPO / "jobs" / "distributed_synthetic.toml"), "--set", "rounds=4",
                           "--set", f"seed={seed}", "--set", f"train.lr={lr}", "--out", out, "--quiet", cwd=where)
            assert solo.returncode == 0, solo.stderr
            models[seed, lr] = (where / out / "model.npz").read_bytes()
        return models[seed, lr]

    return model


@pytest.mark.xdist_group("sweep-solo-runs")  # one worker runs both schedules, so the solo runs are made once
@pytest.mark.parametrize("schedule", ["dynamic", "static"])
def test_a_sweep_on_4_ranks_in_groups_of_2_equals_solo_runs_bit_for_bit(tmp_path, schedule, solo_model):
    job = REPO / "jobs" / "distributed_synthetic.toml"
    (tmp_path / "sweep.toml").write_text(SWEEP.format(job=job, schedule=schedule))
    proc = mpiexec(4, "sweep", "sweep.toml", cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr  # EXIT_SWEEP_FAILED: every point ran, and some failed
    assert "sweep: 6 points (2 failed) on 2 groups of 2 rank(s)" in proc.stdout
    assert "sweep point 1 failed: training diverged" in proc.stderr
    assert "sweep point 4 failed: training diverged" in proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "sweep.csv")))
    assert [row["point"] for row in rows] == ["0", "1", "2", "3", "4", "5"]
    assert {row["group"] for row in rows} == {"0", "1"}
    for row in rows:
        if row["train.lr"] == "1000000000000.0":  # a diverging point fails alone, with the usual message
            assert row["status"] == "failed" and "training diverged" in row["message"]
            continue
        assert row["status"] == "finished" and float(row["final_accuracy"]) > 0.5
        assert (tmp_path / row["run_dir"] / "model.npz").read_bytes() == solo_model(row["seed"], row["train.lr"])


def test_a_rank_count_that_does_not_split_into_groups_is_refused_on_every_rank(tmp_path):
    (tmp_path / "sweep.toml").write_text(SWEEP.format(job=REPO / "jobs" / "distributed_synthetic.toml",
                                                      schedule="dynamic"))
    proc = mpiexec(3, "sweep", "sweep.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("ranks_per_job=2 ranks, but the job has 3: start a multiple of 2 ranks") == 1
    again = mpiexec(2, "sweep", "sweep.toml", cwd=tmp_path)
    assert again.returncode == 4, again.stderr
    refused = mpiexec(2, "sweep", "sweep.toml", cwd=tmp_path)
    assert refused.returncode == 2 and "already holds a sweep" in refused.stderr


def test_sweep_files_are_checked_with_messages_that_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    for text, message in [
        ("ranks_per_job = 0\n[grid]\nseed = [1]", "'ranks_per_job' parameter in .*bad.toml must be an int >= 1"),
        ("[grid]\nseed = []", "must give each key a non-empty list"),
        ('schedule = "random"\n[grid]\nseed = [1]', "'schedule' parameter in .*bad.toml must be one of"),
        ("grids = 1", "Unknown key\\(s\\) grids in .*bad.toml"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            Sweep.read(path)


def test_points_are_the_product_of_the_grid_in_file_order(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[grid]\n"train.lr" = [0.1, 0.2]\nserver = {strategy = ["fedavg", "scaffold"]}\n')
    assert Sweep.read(path).points() == [
        {"train.lr": 0.1, "server.strategy": "fedavg"}, {"train.lr": 0.1, "server.strategy": "scaffold"},
        {"train.lr": 0.2, "server.strategy": "fedavg"}, {"train.lr": 0.2, "server.strategy": "scaffold"}]


def test_every_point_is_validated_before_any_runs_and_each_invalid_one_is_named(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(f'job = "{REPO / "jobs" / "default.toml"}"\n[grid]\n"train.lrr" = [0.1, 0.2]\n')
    with pytest.raises(ConfigError) as info:
        Sweep.read(path).check_points()
    text = str(info.value)
    assert text.startswith("2 of 2 sweep points are invalid; no point was run")
    assert "point 0 (train.lrr=0.1): Unknown key 'train.lrr'" in text and "point 1 (train.lrr=0.2)" in text
    path.write_text('[grid]\n"train.lr" = [0.1, -1.0]\n"server.strategy" = ["fedavg", "nope"]\n')
    with pytest.raises(ConfigError, match="3 of 4 sweep points are invalid") as info:
        Sweep.read(path).check_points()
    assert "point 1 (train.lr=0.1, server.strategy='nope')" in str(info.value)
    path.write_text('[grid]\n"train.lr" = [0.1, 0.2]\n')
    Sweep.read(path).check_points()  # valid points pass
