"""Compressed sums across ranks equal their serial equivalent, and whole compressed runs do what a user relies on
(mpiexec -n 2, -n 4): topk at ratio 1 and int8 with error feedback reduce to the uncompressed run, the byte counts
are the messages' sizes, a run repeats bitwise, and attack.clients names the malicious clients."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from rank_counts import on_first_ranks

import mpifl
from mpifl import config
from mpifl.compressed_sum import CompressedSum
from mpifl.compression import ErrorFeedback, make_codec
from mpifl.compression import codec_from_config
from mpifl.data.shards import balanced_blocks
from mpifl.data.catalog import model_spec, resolve
from mpifl.errors import ConfigError
from mpifl.federated import make_wire
from mpifl.metrics import RoundTimer
from mpifl.stages import build_chain
from mpifl.strategies import STRATEGIES
from mpifl.runner import run_job

COMM = MPI.COMM_WORLD
N = 300


def vector(rank: int, step: int) -> np.ndarray:
    return np.random.default_rng([rank, step]).standard_normal(N)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("method, kw", [("topk", {"ratio": 0.1}), ("randk", {"ratio": 0.2}),
                                        ("qsgd", {"bits": 4, "bucket": 64}), ("int8", {})])
@pytest.mark.parametrize("error_feedback", [False, True])
def test_the_compressed_sum_equals_the_serial_sum_of_every_ranks_decoded_message(method, kw, error_feedback):
    codec = make_codec(method, N, np.dtype(np.float32), **kw)
    timer = RoundTimer()
    summed = CompressedSum(COMM, codec, error_feedback, seed=5, timer=timer)
    size = COMM.Get_size()
    serial = [ErrorFeedback(codec, 1, error_feedback) for _ in range(size)]  # every rank's memory, replayed here
    out = np.empty(N)
    for step in range(3):
        summed(vector(COMM.rank, step), out, rnd=2, step=step)
        expected = np.zeros(N)
        for r in range(size):
            key = (5, 2, step) if method == "randk" else (5, 2, step, r)
            expected += serial[r].send(0, vector(r, step), key, np.zeros(codec.nbytes, dtype=np.uint8))
        # randk's values add up on the wire, in the model's float32; the others are summed in float64 after decoding
        tolerance = 1e-6 if method == "randk" else 1e-12
        np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(summed.feedback.residual, serial[COMM.rank].residual)
    gathered = method != "randk"
    assert timer.uplink_bytes == 3 * codec.nbytes
    assert timer.downlink_bytes == 3 * codec.nbytes * (size if gathered else 1)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["federated", "distributed"])
def test_a_compressed_mlp_trains_and_counts_fewer_uplink_bytes(mode, tmp_path):
    common = ["data.name=synthetic", "data.n_samples=400", "data.n_features=6", "data.n_classes=3",
              "model.kind=mlp", "model.hidden=[8]", "rounds=4", "train.lr=0.2", f"mode={mode}"]
    out = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    plain = run_job(COMM, config.load(overrides=common), out / "plain", verbose=False)
    packed = run_job(COMM, config.load(overrides=[*common, "compress.uplink=int8", "compress.error_feedback=true"]),
                     out / "int8", verbose=False)
    assert packed.summary["uplink_bytes"] < plain.summary["uplink_bytes"] / 3
    assert packed.summary["compression"]["achieved_ratio"] > 3
    assert abs(packed.summary["final_loss"] - plain.summary["final_loss"]) < 0.05 * plain.summary["final_loss"]


# The whole runs below use three ranks (a server and two client ranks, or three workers): the byte counts
# are worked out for that layout.
FEDERATED = {"data__clients": 6, "rounds": 8, "server__fraction": 0.5}
DISTRIBUTED = {"mode": "distributed", "train__algorithm": "gradient_averaging", "rounds": 3, "log_every": 1}


def on_three_ranks(test):
    on_first_ranks(COMM, 3, test)


@pytest.mark.mpi(min_size=3)
def test_federated_topk_at_ratio_1_reproduces_the_uncompressed_model_bitwise():
    def test(comm):
        plain = mpifl.run(None, comm, **FEDERATED)
        topk = mpifl.run(None, comm, **FEDERATED, compress__uplink="topk", compress__ratio=1.0,
                         compress__error_feedback=True)
        np.testing.assert_array_equal(topk.model, plain.model)
        assert topk.summary["compression"]["achieved_ratio"] < 1  # indices travel with every value: more bytes
    on_three_ranks(test)


@pytest.mark.mpi(min_size=3)
def test_federated_int8_with_error_feedback_stays_within_the_quantisation_error():
    def test(comm):
        plain = mpifl.run(None, comm, **FEDERATED)
        int8 = mpifl.run(None, comm, **FEDERATED, compress__uplink="int8", compress__error_feedback=True)
        assert np.linalg.norm(int8.model - plain.model) <= 0.02 * np.linalg.norm(plain.model)
        assert abs(int8.summary["final_accuracy"] - plain.summary["final_accuracy"]) <= 0.01
        # float64 -> int8, less the scales and the 12 float64 statistics a client reports each round
        assert 6.0 < int8.summary["compression"]["achieved_ratio"] < 8
    on_three_ranks(test)


@pytest.mark.mpi(min_size=3)
@pytest.mark.parametrize("method, setting", [("topk", {"compress__ratio": 0.2}), ("qsgd", {"compress__bits": 3}),
                                             ("randk", {"compress__ratio": 0.3}), ("int8", {"compress__bits": 4})])
def test_federated_uplink_bytes_are_the_messages_sizes(method, setting):
    settings = {**FEDERATED, "compress__uplink": method, **setting, "log_every": 1}

    def test(comm):
        result = mpifl.run(None, comm, **settings)
        rows, summary = result.history, result.summary
        cfg = mpifl.job(None, **settings)
        spec = model_spec(cfg)
        codec = codec_from_config(cfg, spec.size, spec.dtype)
        blocks = balanced_blocks(resolve(cfg).client_rows(6), 2)
        chain = build_chain(MPI.COMM_SELF, cfg, spec, 6, STRATEGIES["fedavg"], 0, True)
        wire = make_wire(STRATEGIES["fedavg"], chain, spec, blocks, fraction=cfg.server.fraction)
        stats = sum(wire.stats_counts(np.arange(6))) * 8  # every round is recorded: all 6 clients report
        row_bytes = -(-codec.nbytes // spec.dtype.itemsize) * spec.dtype.itemsize  # the message, padded to the dtype
        for row in rows[1:]:
            assert row["uplink_bytes"] == row["participants"] * row_bytes + stats
        sent = sum(r["uplink_bytes"] for r in rows[1:])
        whole = sum(r["participants"] * spec.size * spec.dtype.itemsize + stats for r in rows[1:])
        assert (summary["uplink_bytes"], summary["compression"]["uplink_bytes_uncompressed"]) == (sent, whole)
        assert summary["compression"]["achieved_ratio"] == pytest.approx(whole / sent)
        assert all(r["stages"]["compress"]["encode_seconds"] >= 0 and r["stages"]["compress"]["decode_seconds"] > 0
                   for r in rows[1:])
    on_three_ranks(test)


@pytest.mark.mpi(min_size=3)
def test_a_compressed_run_repeats_bitwise():
    def test(comm):
        settings = {**FEDERATED, "compress__uplink": "qsgd", "compress__error_feedback": True}
        first = mpifl.run(None, comm, **settings)
        second = mpifl.run(None, comm, **settings)
        np.testing.assert_array_equal(first.model, second.model)
    on_three_ranks(test)


@pytest.mark.mpi(min_size=3)
def test_distributed_topk_at_ratio_1_matches_the_allreduce_run_and_counts_its_allgather():
    def test(comm):
        plain = mpifl.run(None, comm, **DISTRIBUTED)
        topk = mpifl.run(None, comm, **DISTRIBUTED, compress__uplink="topk", compress__ratio=1.0)
        np.testing.assert_allclose(topk.model, plain.model, rtol=1e-12, atol=1e-12)  # only the sum's order differs
        spec = model_spec(mpifl.job(None, **DISTRIBUTED))
        plain_rows, rows = plain.history, topk.history
        steps = plain_rows[1]["uplink_bytes"] // (3 * spec.size * 8)  # Allreduce: each rank sends its gradient
        assert plain_rows[1]["uplink_bytes"] == plain_rows[1]["downlink_bytes"] == 3 * steps * spec.size * 8
        message = spec.size * (4 + 8)
        assert rows[1]["uplink_bytes"] == 3 * steps * message  # each rank's (index, value) pairs
        assert rows[1]["downlink_bytes"] == 3 * steps * 3 * message  # ... and every rank receives all three
        assert topk.summary["uplink_bytes"] == rows[-1]["uplink_bytes_total"] == 3 * rows[1]["uplink_bytes"]
    on_three_ranks(test)


@pytest.mark.mpi(min_size=3)
def test_explicit_malicious_clients_replace_the_draw_and_are_checked_against_the_client_count():
    def test(comm):
        named = mpifl.run(None, comm, **FEDERATED, attack__kind="sign_flip", attack__clients=[4, 1])
        assert named.summary["attack"]["malicious"] == [1, 4]
        with pytest.raises(ConfigError, match="attack.clients names client 9, but this job has 6 clients"):
            mpifl.run(None, comm, **FEDERATED, attack__kind="sign_flip", attack__clients=[9])
    on_three_ranks(test)
