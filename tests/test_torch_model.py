"""model.kind = "torch": a PyTorch module through the adapter, against the Numba MLP and in both modes."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from mpifl.errors import ConfigError
from mpifl.models import MODELS

torch = pytest.importorskip("torch")  # the optional extra: pip install "mpifl[torch]"

from torch_nets import from_mlp_theta  # noqa: E402

TORCH = {"model__kind": "torch", "model__dtype": "float64"}


def test_the_2nn_through_the_adapter_equals_the_numba_mlp_from_the_same_start():
    """Distributed local SGD on one rank, 5 rounds, from the same theta_0 and batch order."""
    common = dict(mode="distributed", rounds=5, train__batch_size=10, train__lr=0.05, train__momentum=0.5,
                  model__l2=1e-4)
    mlp = mpifl.run(None, MPI.COMM_SELF, model__kind="mlp", model__hidden=[200, 200], model__dtype="float64",
                    **common)
    adapted = mpifl.run(None, MPI.COMM_SELF, model__module="torch_nets:two_nn_from_the_mlps_start", **TORCH,
                        **common)
    expected = from_mlp_theta(mlp.model, (64, 200, 200, 10))
    np.testing.assert_allclose(adapted.model, expected, rtol=0, atol=1e-6)
    assert np.abs(adapted.model - expected).max() < 1e-10  # in float64 they agree far below the issue's 1e-6


def test_the_adapter_repeats_bitwise_and_seeds_its_start_from_the_job():
    common = dict(mode="distributed", rounds=3, model__module="torch_nets:two_nn", **TORCH)
    first = mpifl.run(None, MPI.COMM_SELF, **common)
    again = mpifl.run(None, MPI.COMM_SELF, **common)
    other = mpifl.run(None, MPI.COMM_SELF, seed=1, **common)
    assert first.model.tobytes() == again.model.tobytes()
    assert not np.array_equal(first.model, other.model)
    assert first.history[-1]["accuracy"] > 0.8


@pytest.mark.parametrize("overrides, message", [
    ({"model__kind": "torch"}, 'needs model.module = "package.module:build"'),
    ({"model__kind": "torch", "model__module": "torch_nets:missing"}, "module 'torch_nets' has no 'missing'"),
])
def test_a_torch_job_without_a_usable_module_is_refused(overrides, message):
    with pytest.raises(ConfigError) as info:
        mpifl.run(None, MPI.COMM_SELF, mode="distributed", rounds=1, **overrides)
    assert message in str(info.value)


@pytest.mark.slow  # the Numba models' kill-and-resume runs in the default tier (tests/test_checkpoint.py)
@pytest.mark.parametrize("model", [
    # momentum's velocity, and the buffers averaged in theta (a plain net's momentum adds nothing to this case)
    ["model.module=torch_nets:batch_norm_net", "train.momentum=0.9"],
    ["model.module=torch_nets:batch_norm_net", "model.buffers=local", "data.client_test_fraction=0.2"],  # FedBN
    ["model.module=torch_nets:dropout_net", "train.optimizer=adam", "train.lr=0.003"],  # Adam's moments, dropout
], ids=["momentum-and-averaged-buffers", "local-buffers", "adam"])
def test_a_killed_torch_run_resumes_to_the_same_bytes(tmp_path, model):
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")]))}
    common = ["--set", "rounds=12", "--set", "checkpoint.every=4", "--set", "model.kind=torch",
              "--set", "server.fraction=0.5", "--set", "train.lr=0.05", "--quiet"]
    common += [arg for setting in model for arg in ("--set", setting)]

    def launch(*args, script=None):
        head = [str(script)] if script else ["-m", "mpifl"]
        return subprocess.run([shutil.which("mpiexec"), "-n", "3", sys.executable, *head, *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)

    full = launch(*common, "--out", "full")
    assert full.returncode == 0, full.stderr
    killed = launch("10", "1", "SIGKILL", *common, "--out", "cut", script=here / "signal_at_round.py")
    assert killed.returncode != 0
    assert json.loads((tmp_path / "cut" / "checkpoint" / "latest.json").read_text())["round"] == 8
    resumed = launch("--resume", "cut", *common)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "cut" / "model.npz").read_bytes() == (tmp_path / "full" / "model.npz").read_bytes()
    records = [(tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1] for run in ("cut", "full")]
    final = [{k: v for k, v in json.loads(r).items() if "seconds" not in k and "breakdown" not in k and
              "slowest" not in k} for r in records]
    assert final[0] == final[1]  # the clients' own statistics and Adam's moments came back too


@pytest.mark.parametrize("layers, shape", [
    (("conv 5 4 same", "pool", "conv 3 6 valid", "pool", "dense 12"), (2, 12, 12)),
    (("conv 3 3 valid", "pool", "dense 8"), (1, 9, 9)),  # an odd side: pooling drops the last row and column
])
def test_the_numba_cnn_equals_torchs_conv2d_and_max_pool2d_on_the_same_weights(layers, shape):
    from mpifl.kernels import ModelKernels
    from mpifl.model import ModelSpec

    F = torch.nn.functional
    n_features = int(np.prod(shape))
    spec = ModelSpec(MODELS["cnn"], n_features, 5, np.dtype(np.float64), output="softmax", layers=layers, input_shape=shape)
    layout = spec.parameters
    rng = np.random.default_rng(7)
    theta = spec.initial(2) + 0.05 * rng.standard_normal(spec.shape)
    X, y = rng.standard_normal((6, n_features)), rng.integers(0, 5, 6).astype(np.float64)
    t = torch.from_numpy(theta).requires_grad_()
    a = torch.from_numpy(X).reshape(6, *shape)
    for (kind, ci, hi, wi, co, ho, wo, k, pad), (w, b) in zip(layout.prog, layout.poff):
        last = b == layout.poff[-1][1]
        if kind == 0:
            a = F.relu(F.conv2d(a, t[w:b].reshape(co, ci, k, k), t[b:b + co], padding=int(pad)))
        elif kind == 1:
            a = F.max_pool2d(a, 2)
        else:
            a = a.reshape(6, -1) @ t[w:b].reshape(co, -1).T + t[b:b + co]
            a = a if last else F.relu(a)
    loss = F.cross_entropy(a, torch.from_numpy(y).long(), reduction="sum")
    loss.backward()
    grad = spec.zeros()
    ours = ModelKernels(spec).full_gradient_sum(X, y, theta, grad, want_loss=True)
    assert ours == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-9, atol=1e-9)


def test_leafs_shakespeare_trains_through_the_adapter_with_an_lstm(tmp_path, monkeypatch):
    """Text LEAF files -> character codes -> examples/shakespeare_lstm.py's LSTM, in-process on one rank."""
    import sys
    from pathlib import Path

    from mpifl.data import partition_cli
    from test_leaf import write_shakespeare

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "examples"))
    write_shakespeare(tmp_path / "leaf", {f"ROLE{k}": (40, 8) for k in range(4)})
    assert partition_cli.main([str(tmp_path / "leaf"), "--out", str(tmp_path / "parts")]) == 0
    common = dict(mode="distributed", rounds=6, data__path=str(tmp_path / "parts"), model__kind="torch",
                  model__module="shakespeare_lstm:build_small", train__lr=1.0, train__batch_size=10)
    first = mpifl.run(None, MPI.COMM_SELF, **common)
    again = mpifl.run(None, MPI.COMM_SELF, **common)
    assert first.model.tobytes() == again.model.tobytes()
    losses = [h["loss"] for h in first.history]
    assert losses[-1] < losses[0] and losses[0] > 0.8 * np.log(80)  # learns from near-uniform over 80 letters
    assert "shakespeare_lstm" in sys.modules
