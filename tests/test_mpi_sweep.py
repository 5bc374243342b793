"""python -m mpifl sweep's command, in-process on real ranks (mpiexec -n 2, -n 4): points on groups of ranks give
the solo runs' bytes, failures are recorded and the sweep exits 4, and a sweep directory is never reused."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI
from rank_counts import on_first_ranks
from test_sweep import SWEEP

import mpifl
from mpifl import cli
from mpifl.errors import ConfigError

COMM = MPI.COMM_WORLD
JOB = Path(__file__).resolve().parents[1] / "jobs" / "distributed_synthetic.toml"
SOLO: dict[tuple[str, str], bytes] = {}  # the solo runs' models, made once for both schedules


def sweep_file(tmp_path: Path, schedule: str) -> Path:
    where = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    path = where / "sweep.toml"
    if COMM.rank == 0:
        path.write_text(SWEEP.format(job=JOB, schedule=schedule, out=where / "out"))
    COMM.Barrier()
    return path


def solo_model(comm, seed: str, lr: str) -> bytes:
    """A point run alone on two ranks (each pair of ``comm`` runs it), as its model's bytes."""
    if (seed, lr) not in SOLO:
        pair = comm.Split(comm.rank // 2, comm.rank)
        SOLO[seed, lr] = mpifl.run(JOB, pair, rounds=4, seed=int(seed), train__lr=float(lr)).model.tobytes()
        pair.Free()
    return SOLO[seed, lr]


@pytest.mark.mpi(min_size=4)
@pytest.mark.parametrize("schedule", ["dynamic", "static"])
def test_a_sweep_on_4_ranks_in_groups_of_2_equals_solo_runs_bit_for_bit(tmp_path, schedule, capsys):
    path = sweep_file(tmp_path, schedule)

    def test(comm):
        assert cli.main(comm, ["sweep", str(path)]) == 4  # EXIT_SWEEP_FAILED: every point ran, and some failed
        with open(path.parent / "out" / "sweep.csv") as table:
            rows = list(csv.DictReader(table))
        out, err = capsys.readouterr()
        if comm.rank == 0:
            assert "sweep: 6 points (2 failed) on 2 groups of 2 rank(s)" in out
            assert "sweep point 1 failed: training diverged" in err and "sweep point 4 failed: training diverged" in err
        assert [row["point"] for row in rows] == ["0", "1", "2", "3", "4", "5"]
        assert {row["group"] for row in rows} == {"0", "1"}
        for row in rows:
            if row["train.lr"] == "1000000000000.0":  # a diverging point fails alone, with the usual message
                assert row["status"] == "failed" and "training diverged" in row["message"]
                continue
            assert row["status"] == "finished" and float(row["final_accuracy"]) > 0.5
            with np.load(Path(row["run_dir"]) / "model.npz") as saved:
                assert saved["theta"].tobytes() == solo_model(comm, row["seed"], row["train.lr"])
    on_first_ranks(COMM, 4, test)


@pytest.mark.mpi(min_size=3)
def test_a_rank_count_that_does_not_split_into_groups_is_refused_on_every_rank(tmp_path):
    path = sweep_file(tmp_path, "dynamic")

    def test(comm):
        with pytest.raises(ConfigError, match="ranks_per_job=2 ranks, but the job has 3: start a multiple of 2"):
            cli.main(comm, ["sweep", str(path)])
    on_first_ranks(COMM, 3, test)


@pytest.mark.mpi(min_size=2)
def test_a_directory_that_holds_a_sweep_is_refused(tmp_path):
    path = sweep_file(tmp_path, "static")

    def test(comm):
        assert cli.main(comm, ["sweep", str(path), "--quiet"]) == 4
        with pytest.raises(ConfigError, match="already holds a sweep"):
            cli.main(comm, ["sweep", str(path), "--quiet"])
    on_first_ranks(COMM, 2, test)
