"""Round records: the per-rank time breakdown and the slowest rank."""

from __future__ import annotations

import numpy as np
import pytest

from mpifl.progress import RoundRecord, slowest_overall, time_breakdown


def test_wait_is_bounded_by_the_gap_to_the_slowest_rank():
    spread, slowest = time_breakdown(np.array([1.0, 3.0, 2.0]), np.array([2.5, 0.2, 1.5]))
    assert slowest == 1
    assert spread["wait"] == pytest.approx([0.0, 1.0, 2.0])  # waits 2, 0, 1
    assert spread["comm"] == pytest.approx([0.2, 0.4, 0.5])  # transfers 0.5, 0.2, 0.5
    assert spread["compute"] == pytest.approx([1.0, 2.0, 3.0])


def test_balanced_ranks_do_not_wait():
    spread, _ = time_breakdown(np.full(4, 2.0), np.full(4, 0.3))
    assert spread["wait"] == [0.0, 0.0, 0.0] and spread["comm"] == pytest.approx([0.3, 0.3, 0.3])


def record(rnd, slowest):
    return RoundRecord(round=rnd, loss=0.0, accuracy=None, seconds=0.0, compute_seconds=0.0,
                       comm_seconds=0.0, slowest_rank=slowest)


def test_slowest_overall_is_the_most_frequent_and_ignores_round_zero():
    assert slowest_overall([record(0, 5), record(1, 2), record(2, 3), record(3, 2)]) == 2
    assert slowest_overall([record(0, 1)]) is None
