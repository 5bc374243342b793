"""model.init: a job starts from trained weights (an mpifl run's model.npz, a PyTorch state_dict), checked against
the job's model, recorded with its sha256, and evaluated at round 0."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from mpifl import model_init
from mpifl.data.catalog import model_spec
from mpifl.errors import ConfigError, DataError

JOB = dict(mode="distributed", train__batch_size=32, train__lr=0.1)


def test_a_run_starts_from_an_earlier_runs_model_and_round_0_evaluates_it(tmp_path):
    first = mpifl.run(None, MPI.COMM_SELF, rounds=4, out=tmp_path / "a", **JOB)
    loaded = mpifl.run(None, MPI.COMM_SELF, rounds=1, model__init=str(tmp_path / "a"), **JOB)
    fresh = mpifl.run(None, MPI.COMM_SELF, rounds=1, **JOB)
    assert loaded.history[0]["loss"] == first.history[-1]["loss"]
    assert loaded.history[0]["accuracy"] == first.history[-1]["accuracy"]
    assert fresh.history[0]["loss"] != loaded.history[0]["loss"]  # the seeded start is another model
    digest = hashlib.sha256((tmp_path / "a" / "model.npz").read_bytes()).hexdigest()
    assert loaded.summary["model_init"] == {"path": str(tmp_path / "a" / "model.npz"), "sha256": digest}
    assert fresh.summary["model_init"] is None


def test_a_file_of_another_model_is_refused_naming_both_shapes(tmp_path):
    mpifl.run(None, MPI.COMM_SELF, rounds=1, out=tmp_path / "a", **JOB)
    with pytest.raises(DataError, match=r"shape \(10, 65\); this job's mlp 64-8-10 .* has shape \(610,\)"):
        mpifl.run(None, MPI.COMM_SELF, rounds=1, model__init=str(tmp_path / "a"), model__kind="mlp",
                  model__hidden=[8], **JOB)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"not a zip file", "cannot be read as .npz"),
    ("weights", "holds weights, not an mpifl model's 'theta'"),
])
def test_a_missing_or_damaged_file_is_named(content, message, tmp_path):
    path = tmp_path / "model.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.savez(path, **{content: np.zeros(3)})
    spec = model_spec(mpifl.job(None))
    with pytest.raises(DataError, match=message) as info:
        model_init.load(str(path), spec)
    assert str(path) in str(info.value)


def test_named_tensors_are_refused_for_a_kind_that_has_no_names(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"weight": torch.zeros(10, 64)}, tmp_path / "net.pt")
    with pytest.raises(ConfigError, match="model.kind 'softmax' cannot place"):
        model_init.load(str(tmp_path / "net.pt"), model_spec(mpifl.job(None)))


def test_a_torch_state_dict_loads_by_name_and_the_first_mismatch_is_named(tmp_path):
    torch = pytest.importorskip("torch")
    from mpifl.models.torch_parts import build_module

    spec = model_spec(mpifl.job(None, model__kind="torch", model__module="torch_nets:two_nn", model__dtype="float64"))
    trained = build_module(spec, seed=7)
    torch.save(trained.state_dict(), tmp_path / "net.pt")
    theta = model_init.load(str(tmp_path / "net.pt"), spec).theta
    expected = np.concatenate([p.detach().numpy().reshape(-1) for p in trained.parameters()])
    assert theta.tobytes() == expected.tobytes()
    state = trained.state_dict()
    name = next(iter(state))
    torch.save({**state, name: torch.zeros(3, 3, dtype=torch.float64)}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match=f"tensor '{name}' has shape \\(3, 3\\)"):
        model_init.load(str(tmp_path / "bad.pt"), spec)
    torch.save({k: v for k, v in state.items() if k != name}, tmp_path / "short.pt")
    with pytest.raises(DataError, match=f"has no tensor '{name}'"):
        model_init.load(str(tmp_path / "short.pt"), spec)


def test_frozen_parameters_stay_out_of_theta_and_come_from_the_pretrained_file(tmp_path):
    """Only the parameters that train are theta (so only they travel and take l2 and momentum); the frozen body is
    each rank's own, set from model.init's state_dict: round 0's loss is the pretrained module's."""
    torch = pytest.importorskip("torch")
    from torch_nets import frozen_body

    from mpifl.data.catalog import worker_shards
    from mpifl.models.torch_parts import build_module

    job = mpifl.job(None, mode="distributed", model__kind="torch", model__module="torch_nets:frozen_body",
                    model__dtype="float64", train__momentum=0.9, model__l2=1e-3, train__batch_size=32)
    spec = model_spec(job)
    module = frozen_body(64, 10)
    assert spec.size == sum(p.numel() for p in module.parameters() if p.requires_grad) == 32 * 10 + 10
    pretrained = build_module(spec, seed=11).double()
    torch.save(pretrained.state_dict(), tmp_path / "pretrained.pt")
    start = model_init.load(str(tmp_path / "pretrained.pt"), spec)
    assert set(start.fixed) == {"0.weight", "0.bias"}
    result = mpifl.run(job, MPI.COMM_SELF, rounds=2, model__init=str(tmp_path / "pretrained.pt"))
    train, _ = worker_shards(job, 0, 1)
    with torch.no_grad():
        out = pretrained(torch.from_numpy(np.ascontiguousarray(train.X)))
        expected = torch.nn.functional.cross_entropy(out, torch.from_numpy(train.y).long()).item()
    penalty = 0.5 * 1e-3 * float((pretrained[2].weight.detach().numpy() ** 2).sum())
    assert result.history[0]["loss"] == pytest.approx(expected + penalty, rel=1e-12)
    assert result.model.size == spec.size
    head = np.concatenate([pretrained[2].weight.detach().numpy().reshape(-1), pretrained[2].bias.detach().numpy()])
    assert not np.array_equal(result.model, head)  # the head trained
