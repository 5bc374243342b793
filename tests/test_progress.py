"""Round records: the per-rank time breakdown, the slowest rank, and their strict-JSON line."""

from __future__ import annotations

import json
from dataclasses import fields

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


def test_a_records_json_line_is_as_json_dumped_and_strict_when_a_value_is_not_finite():
    record = RoundRecord(3, 0.25, 0.9, 0.01, 0.004, 0.006, clients={"loss": {"mean": 0.5, "max": 0.75}},
                         breakdown={"compute": [1.0, 2.0]}, personal={"mean": 0.8})
    assert record.json_line() == json.dumps(record.as_json())
    bad = RoundRecord(4, float("nan"), None, 0.01, 0.004, 0.006, clients={"loss": {"mean": 0.5, "max": float("inf")}},
                      breakdown={"compute": [float("-inf"), 2.0]})
    row = json.loads(bad.json_line(), parse_constant=lambda name: pytest.fail(f"{name} in metrics.jsonl"))
    assert row["loss"] is None and row["clients"]["loss"] == {"mean": 0.5, "max": None}
    assert row["breakdown"]["compute"] == [None, 2.0]
    assert list(row) == [f.name for f in fields(RoundRecord)]
