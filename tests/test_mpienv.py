"""Process settings chosen before MPI_Init: thread level and threads per rank."""

from __future__ import annotations

from mpifl.mpienv import choose_thread_level, threads_per_rank


def test_default_thread_level_is_multiple():
    assert choose_thread_level({}) == "multiple"


def test_explicit_level_wins():
    assert choose_thread_level({"MPIFL_THREAD_LEVEL": "Single"}) == "single"
    assert choose_thread_level({"MPIFL_THREAD_LEVEL": "funneled"}) == "funneled"


def test_unknown_level_falls_back_to_the_default():
    assert choose_thread_level({"MPIFL_THREAD_LEVEL": "fast"}) == "multiple"


def test_threads_per_rank():
    assert threads_per_rank(0, {}) == 1
    assert threads_per_rank(0, {"SLURM_CPUS_PER_TASK": "4"}) == 4
    assert threads_per_rank(2, {"SLURM_CPUS_PER_TASK": "4"}) == 2
    assert threads_per_rank(0, {"SLURM_CPUS_PER_TASK": "x"}) == 1
