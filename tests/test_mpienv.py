"""Process settings chosen before MPI_Init: thread level and threads per rank."""

from __future__ import annotations

from mpifl.mpienv import choose_thread_level, local_rank_count, threads_per_rank


def test_oversubscribed_node_uses_multiple():
    assert choose_thread_level({"MPI_LOCALNRANKS": "8"}, cores=2) == "multiple"


def test_one_core_per_rank_uses_single():
    assert choose_thread_level({"MPI_LOCALNRANKS": "2"}, cores=2) == "single"
    assert choose_thread_level({"OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, cores=16) == "single"


def test_unknown_launcher_is_safe():
    assert choose_thread_level({}, cores=2) == "multiple"


def test_explicit_level_wins():
    assert choose_thread_level({"MPIFL_THREAD_LEVEL": "funneled", "MPI_LOCALNRANKS": "8"}, cores=2) == "funneled"


def test_local_rank_count_sources():
    assert local_rank_count({"SLURM_NTASKS_PER_NODE": "4"}) == 4
    assert local_rank_count({}) is None


def test_threads_per_rank():
    assert threads_per_rank(0, {}) == 1
    assert threads_per_rank(0, {"SLURM_CPUS_PER_TASK": "4"}) == 4
    assert threads_per_rank(2, {"SLURM_CPUS_PER_TASK": "4"}) == 2
