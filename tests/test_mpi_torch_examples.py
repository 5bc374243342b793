"""The PyTorch examples, run as their job files say (fewer rounds): a CNN with BatchNorm under FedAvg and
FedBN, transfer learning from a saved model.pt, and federated LoRA of a transformer.  Each is the same bytes
on repeat and on fewer ranks (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mpi4py import MPI

import mpifl

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
COMM = MPI.COMM_WORLD


def job(name: str) -> str:
    return str(ROOT / "examples" / f"{name}.toml")


def shared_dir(tmp_path: Path) -> Path:
    return COMM.bcast(tmp_path if COMM.rank == 0 else None)


def on_fewer_ranks(run) -> bytes | None:
    """The model of the same job on ranks 0 and 1 only (None on the other ranks)."""
    if COMM.size <= 2:  # the repeat checks it at -n 2; -n 4 checks the two ranks
        return None
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair == MPI.COMM_NULL:
        return None
    try:
        return run(pair).model.tobytes()
    finally:
        pair.Free()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", ["batchnorm_fedavg", "batchnorm_fedbn"])
def test_the_batchnorm_cnn_examples(name):
    def run(comm):
        return mpifl.run(job(name), comm, rounds=4, data__clients=6)

    first, again = run(COMM), run(COMM)
    assert first.model.tobytes() == again.model.tobytes()
    fewer = on_fewer_ranks(run)
    assert fewer is None or fewer == first.model.tobytes()
    last = first.history[-1]
    assert last["mean_client_accuracy"] > 0.8
    if name == "batchnorm_fedbn":
        assert last["accuracy"] is None  # judged on the clients' own rows, with their own statistics
    else:
        assert last["accuracy"] > 0.8


@pytest.mark.mpi(min_size=2)
def test_transfer_learning_loads_the_pretrained_body_and_trains_only_the_head(tmp_path):
    from examples.transfer import write

    root = shared_dir(tmp_path)
    if COMM.rank == 0:
        write(root / "parts", clients=6)
    COMM.Barrier()
    pretrain = mpifl.run(job("transfer_pretrain"), COMM, out=root / "pretrain", rounds=10,
                         data__path=str(root / "parts" / "pretrain"))
    assert pretrain.history[-1]["accuracy"] > 0.9

    def finetune(comm, init=str(root / "pretrain" / "model.pt")):
        return mpifl.run(job("transfer_finetune"), comm, rounds=4, data__path=str(root / "parts" / "finetune"),
                         model__init=init)

    tuned = finetune(COMM)
    assert tuned.model.size == 64 * 10 + 10  # the head alone travels
    assert tuned.summary["model_init"]["sha256"] == hashlib.sha256(
        (root / "pretrain" / "model.pt").read_bytes()).hexdigest()
    fewer = on_fewer_ranks(finetune)
    assert fewer is None or fewer == tuned.model.tobytes()
    scratch = finetune(COMM, init="")  # the same frozen body, but random
    assert tuned.history[-1]["accuracy"] > scratch.history[-1]["accuracy"] + 0.05


@pytest.mark.mpi(min_size=2)
def test_federated_lora_sends_only_the_adapters_and_starts_from_the_pretrained_base(tmp_path):
    pytest.importorskip("peft")
    from examples.lora_text import write

    root = shared_dir(tmp_path)
    if COMM.rank == 0:
        write(root / "parts", clients=6)
    COMM.Barrier()
    mpifl.run(job("lora_pretrain"), COMM, out=root / "pretrain", rounds=3, data__path=str(root / "parts" / "pretrain"))
    base = torch.load(root / "pretrain" / "model.pt")

    def finetune(comm, name="lora_finetune", out=None):
        return mpifl.run(job(name), comm, out=out, rounds=2, data__path=str(root / "parts" / "finetune"),
                         model__init=str(root / "pretrain" / "model.pt"))

    lora = finetune(COMM, out=root / "lora")
    full = finetune(COMM, "lora_full")
    assert lora.model.size == 2308 and full.model.size == 76676
    assert full.history[-1]["uplink_bytes"] > 20 * lora.history[-1]["uplink_bytes"]
    assert lora.history[0]["accuracy"] == full.history[0]["accuracy"]  # both start from the pretrained base
    tuned = torch.load(root / "lora" / "model.pt")
    frozen = "model.base_model.model.bert.encoder.layer.0.attention.self.query.base_layer.weight"
    assert torch.equal(tuned[frozen], base["model.bert.encoder.layer.0.attention.self.query.weight"])
    fewer = on_fewer_ranks(finetune)
    assert fewer is None or fewer == lora.model.tobytes()
