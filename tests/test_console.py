"""Rank 0's console: a live bar where a person watches, the plain lines in a log."""

from __future__ import annotations

import io
import math

from mpifl.console import Console, watched
from mpifl.progress import RoundRecord


def record(rnd: int, loss: float = 0.5, accuracy: float = 0.9) -> RoundRecord:
    return RoundRecord(round=rnd, loss=loss, accuracy=accuracy, seconds=0.002, compute_seconds=0.001,
                       comm_seconds=0.001)


def test_a_log_gets_one_plain_line_per_recorded_round():
    out = io.StringIO()
    console = Console(4, stream=out, live=False)
    for rnd in (0, 2, 4):
        console.show(record(rnd))
    console.say("done")
    console.close()
    lines = out.getvalue().splitlines()
    assert lines == [record(0).line(), record(2).line(), record(4).line(), "done"]


def test_a_terminal_gets_one_bar_with_loss_accuracy_and_time_per_round():
    out = io.StringIO()
    console = Console(10, stream=out, live=True)
    for rnd in range(0, 11, 5):
        console.show(record(rnd, loss=0.25 / (rnd + 1), accuracy=math.nan if rnd == 0 else 0.95))
    console.close()
    text = out.getvalue()
    assert "10/10 rounds" in text and "loss 0.02273, acc 0.9500, 2.00 ms/round" in text
    assert "round   10  train loss" not in text  # the bar replaces the lines


def test_a_resumed_run_starts_its_bar_at_the_checkpoint():
    out = io.StringIO()
    console = Console(10, first_round=6, stream=out, live=True)
    console.show(record(8))
    console.close()
    assert "8/10 rounds" in out.getvalue()


def test_who_is_watching(monkeypatch):
    monkeypatch.setenv("MPIFL_PROGRESS", "bar")
    assert watched(io.StringIO())
    monkeypatch.setenv("MPIFL_PROGRESS", "lines")
    assert not watched(io.StringIO())
    monkeypatch.delenv("MPIFL_PROGRESS")
    assert not watched(io.StringIO())  # not a terminal, and pytest's parent is no MPI launcher
