"""Robust aggregation and attacks in whole runs through mpifl.run, on a server and two client ranks (the first
three ranks under mpiexec -n 4): attackers are recorded and repeat bitwise, Krum records its pick, and a job
with too few updates for Krum is refused on every rank."""

from __future__ import annotations

import pytest
from mpi4py import MPI
from rank_counts import on_first_ranks

import mpifl
from mpifl.errors import ConfigError

COMM = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=3)
def test_a_run_under_attack_records_its_attackers_and_repeats_bitwise():
    def test(comm):
        def run(**settings):
            return mpifl.run(None, comm, data__clients=10, rounds=6, **settings)

        attacked = run(attack__kind="gaussian", attack__fraction=0.2)
        again = run(attack__kind="gaussian", attack__fraction=0.2)
        summary = attacked.summary
        assert summary["attack"] == {"kind": "gaussian", "malicious": summary["attack"]["malicious"], "scale": 1.0}
        assert len(summary["attack"]["malicious"]) == 2 and attacked.model.tobytes() == again.model.tobytes()
        clean = run()
        assert clean.summary["attack"] is None and clean.model.tobytes() != attacked.model.tobytes()
        nobody = run(attack__kind="label_flip", attack__fraction=0.0)
        assert nobody.summary["attack"]["malicious"] == []
        assert nobody.model.tobytes() == clean.model.tobytes()  # no malicious client, no change
    on_first_ranks(COMM, 3, test)


@pytest.mark.mpi(min_size=3)
def test_a_krum_run_records_the_client_it_selected_each_round_and_too_few_updates_are_refused():
    def test(comm):
        rows = mpifl.run(None, comm, server__aggregator="krum", data__clients=6, rounds=3).history
        assert all(len(r["server"]["selected"]) == 1 and 0 <= r["server"]["selected"][0] < 6 for r in rows[1:])
        with pytest.raises(ConfigError, match=r"needs more than 2f \+ 2 = 4 updates a round; this job has 2"):
            mpifl.run(None, comm, server__aggregator="krum", rounds=3)
    on_first_ranks(COMM, 3, test)
