"""Divergence ends a run on every rank with one message, exit code 3 and nothing good written over."""

from __future__ import annotations

import json

import numpy as np
from mpi4py import MPI

from mpifl.checkpointing import Checkpoints
from mpifl import checkpoint, config
from mpifl.errors import EXIT_DIVERGED, Diverged
from mpifl.stopping import divergence

COMM = MPI.COMM_WORLD
LINEAR_BLOWUP = ["data.name=synthetic", "data.partition=iid", "model.kind=linear", "train.lr=1e30",
                 "train.momentum=0.99", "rounds=6", "log_every=1"]


def strict(text: str):
    """json.loads that refuses NaN and Infinity, as jq and JavaScript do."""
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_divergence_names_the_quantity():
    theta = np.ones((1, 3))
    assert divergence(theta, 1.0) == 0
    assert divergence(theta, float("nan")) == Diverged.LOSS
    assert divergence(theta, float("inf")) == Diverged.LOSS
    theta[0, 1] = np.inf
    assert divergence(theta, 1.0) == Diverged.PARAMETERS
    assert Diverged(4, Diverged.PARAMETERS, 0.5).exit_code == EXIT_DIVERGED == 3
    assert "the parameters stopped being finite by round 4. Try a smaller train.lr (this run used 0.5)" in str(
        Diverged(4, Diverged.PARAMETERS, 0.5))


def test_a_diverged_model_is_never_committed_over_a_good_checkpoint(tmp_path):
    cfg = config.load(overrides=["mode=distributed", "checkpoint.every=2", "rounds=6"])
    saves = Checkpoints(MPI.COMM_SELF, tmp_path, cfg)
    saves.prepare()
    good = np.ones((10, 65))
    saves.save(2, good, {"velocity": good}, {}, [])
    saves.save(4, np.full((10, 65), np.nan), {"velocity": good}, {}, [])
    assert checkpoint.read_latest(tmp_path / "checkpoint")["round"] == 2
    resumed = Checkpoints(MPI.COMM_SELF, tmp_path, cfg)
    resumed.resume(cfg_spec(cfg))
    assert resumed.start_round == 2 and np.array_equal(resumed.theta, good)


def cfg_spec(cfg):
    from mpifl.data.catalog import model_spec

    return model_spec(cfg)
