"""Personal accuracy on each client's own test rows, on real ranks (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import mpifl

COMM = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=3)
def test_personal_accuracy_with_held_out_client_rows_and_fine_tuning_is_the_same_on_fewer_ranks():
    common = dict(rounds=4, data__clients=6, data__alpha=0.1, data__client_test_fraction=0.25,
                  train__finetune_epochs=2)
    first = mpifl.run(None, COMM, **common)
    plain = mpifl.run(None, COMM, **{**common, "train__finetune_epochs": 0})
    assert first.model.tobytes() == plain.model.tobytes()  # evaluation leaves training alone
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(None, pair, **common)
        pair.Free()
        if COMM.rank == 0:
            assert fewer.history[-1]["personal"] == first.history[-1]["personal"]
    if COMM.rank == 0:
        tuned, untuned = first.history[-1]["personal"], plain.history[-1]["personal"]
        assert set(tuned) == {"mean", "p10", "worst", "jain"}
        assert tuned["mean"] > untuned["mean"]  # fine-tuning on label-skewed clients helps them
        assert first.summary["final_mean_personal_accuracy"] == tuned["mean"]
        assert first.summary["final_p10_personal_accuracy"] == tuned["p10"]


def ditto_reference(cfg, k: int, lam: float) -> dict:
    """Ditto from its paper, serially: FedAvg for the global model; each sampled client also takes its local epochs
    on v_k with the pull lam (v_k - theta), v_k starting from the global model; personal accuracy of v_k (or of
    theta for a client never sampled) on the client's own held-out rows."""
    from mpifl.data.shards import with_client_tests
    from mpifl.data.catalog import model_spec, resolve
    from mpifl.kernels import ModelKernels
    from mpifl.local import LocalSettings, LocalTrainer
    from mpifl.round_records import spread
    from mpifl.strategies.sampling import round_plan

    spec, settings = model_spec(cfg), LocalSettings.from_config(cfg)
    data = with_client_tests(resolve(cfg).clients(range(k), k), range(k), cfg.data.client_test_fraction, cfg.seed)
    trainers = [LocalTrainer(d.train, ModelKernels(spec), settings, cfg.seed, c) for c, d in enumerate(data)]
    theta, personal = spec.initial(cfg.seed).astype(np.float64), [None] * k
    for rnd in range(1, cfg.rounds + 1):
        epochs = round_plan(cfg.seed, rnd, k, cfg.server.fraction, cfg.train.epochs, 0.0, False)
        models, sizes = [], []
        for c in np.flatnonzero(epochs):
            y = theta.copy()
            trainers[c].train(y, rnd, int(epochs[c]))
            v = theta.copy() if personal[c] is None else personal[c]
            trainers[c].train(v, rnd, int(epochs[c]), (theta, lam, None))
            personal[c] = v
            models.append(y)
            sizes.append(trainers[c].shard.n)
        p = np.array(sizes, dtype=np.float64) / sum(sizes)
        theta = sum(pk * yk for pk, yk in zip(p, models))
    accuracy = []
    kernels = ModelKernels(spec)
    for c, d in enumerate(data):
        model = theta if personal[c] is None else personal[c]
        accuracy.append(kernels.evaluate_sums(d.test.X, d.test.y, model)[1] / d.test.n)
    return spread(np.array(accuracy)), theta


@pytest.mark.mpi(min_size=2)
def test_ditto_equals_its_serial_reference_and_its_personal_models_never_travel():
    from mpifl import config

    k = 2 * (COMM.size - 1)
    common = dict(mode="federated", rounds=4, data__clients=k, data__alpha=0.1, data__client_test_fraction=0.25,
                  server__fraction=0.75, train__epochs=2)
    ditto = mpifl.run(None, COMM, server__strategy="ditto", server__personal_lambda=0.5, **common)
    fedavg = mpifl.run(None, COMM, **common)
    assert ditto.model.tobytes() == fedavg.model.tobytes()  # the global model is FedAvg's
    if COMM.rank == 0:
        cfg = config.load(overrides=[f"{key.replace('__', '.')}={value}" for key, value in common.items()]
                          + ["server.strategy=ditto", "server.personal_lambda=0.5"])
        expected, theta = ditto_reference(cfg, k, 0.5)
        np.testing.assert_allclose(ditto.model, theta, rtol=1e-10, atol=1e-12)
        got = ditto.history[-1]["personal"]
        assert got == pytest.approx(expected, abs=1e-12)
        assert got["mean"] > fedavg.history[-1]["personal"]["mean"]
        # the uplink carries what FedAvg's does, round by round: the personal models stay on their ranks
        assert [h["uplink_bytes"] for h in ditto.history] == [h["uplink_bytes"] for h in fedavg.history]


@pytest.mark.mpi(min_size=2)
def test_as_lambda_grows_dittos_personal_models_follow_the_global_model(tmp_path):
    """The global model is FedAvg's at every lambda.  The personal models are pulled to the global model they trained
    beside: at lr lambda = 1 (the largest stable pull of the SGD step) each step restarts v_k from that theta, so
    v_k is one gradient step from it; the clients' personal accuracies then sit closer to the global model's on
    their own rows than at a weak pull (not on it: v_k is the model of the round its client last trained in), and
    both equal the serial reference's."""
    from mpifl import config

    k = 2 * (COMM.size - 1)
    common = dict(mode="federated", rounds=4, data__clients=k, data__alpha=0.1, data__client_test_fraction=0.25,
                  server__fraction=0.75, train__epochs=2, train__lr=0.05)
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    fedavg = mpifl.run(None, COMM, out=root / "fedavg", evaluate__per_client=True, **common)
    gaps = []
    for lam in (0.01, 1 / 0.05):
        ditto = mpifl.run(None, COMM, out=root / f"ditto-{lam}", evaluate__per_client=True, server__strategy="ditto",
                          server__personal_lambda=lam, **common)
        assert ditto.model.tobytes() == fedavg.model.tobytes()
        if COMM.rank == 0:
            own, shared = (r.clients()["personal_accuracy"] for r in (ditto, fedavg))
            gaps.append(float(np.abs(own - shared).mean()))
            cfg = config.load(overrides=[f"{key.replace('__', '.')}={value}" for key, value in common.items()]
                              + ["server.strategy=ditto", f"server.personal_lambda={lam}"])
            assert ditto.history[-1]["personal"] == pytest.approx(ditto_reference(cfg, k, lam)[0], abs=1e-12)
    if COMM.rank == 0:
        assert gaps[1] < gaps[0]


def head_reference(cfg, k: int, strategy: str) -> tuple[dict, np.ndarray]:
    """FedPer and FedRep from their papers, serially, in NumPy: a sampled client trains from the global body with its
    own head (the global head the first time): FedPer body and head together for its epochs; FedRep the head alone
    for head_epochs, then the body alone for its epochs.  Its head stays with it; the server takes the weighted mean
    of the bodies' deltas, and its own head never changes.  Each client's heavy-ball velocity is its own, across
    rounds, and only the part in training moves.  Returns (spread of personal accuracy, final theta)."""
    import naive
    from mpifl.data.shards import with_client_tests
    from mpifl.data.catalog import model_spec, resolve
    from mpifl.kernels import ModelKernels
    from mpifl.local import LocalSettings, LocalTrainer
    from mpifl.round_records import spread
    from mpifl.strategies.sampling import round_plan

    spec, settings = model_spec(cfg), LocalSettings.from_config(cfg)
    layout, link = spec.layout, spec.link
    data = with_client_tests(resolve(cfg).clients(range(k), k), range(k), cfg.data.client_test_fraction, cfg.seed)
    orders = [LocalTrainer(d.train, ModelKernels(spec), settings, cfg.seed, c) for c, d in enumerate(data)]
    size, split = layout.size, int(layout.offsets[-1, 0])  # the output layer's weights start the head
    penalised = layout.penalised()
    theta = spec.initial(cfg.seed).astype(np.float64)
    start_head = theta[split:].copy()
    heads, velocity = [None] * k, [np.zeros(size) for _ in range(k)]

    def sgd(c, model, rnd, epochs, lo, hi):
        trained = np.zeros(size, dtype=bool)
        trained[lo:hi] = True
        X, y = data[c].train.X, data[c].train.y
        for order in orders[c].orders(rnd, epochs):
            for s in range(0, order.size, settings.batch_size or order.size):
                rows = order[s:s + (settings.batch_size or order.size)]
                _, g = naive.mlp_loss_and_grad_sum(layout, spec.activation, link, X[rows], y[rows], model)
                g = g / rows.size + settings.l2 * model * penalised
                velocity[c] = np.where(trained, settings.momentum * velocity[c] + g, velocity[c])
                model = np.where(trained, model - settings.lr * velocity[c], model)
        return model

    for rnd in range(1, cfg.rounds + 1):
        epochs = round_plan(cfg.seed, rnd, k, cfg.server.fraction, cfg.train.epochs, 0.0, False)
        deltas, sizes = [], []
        for c in np.flatnonzero(epochs):
            model = theta.copy()
            if heads[c] is not None:
                model[split:] = heads[c]
            if strategy == "fedrep":
                model = sgd(c, model, rnd, cfg.server.head_epochs, split, size)
                model = sgd(c, model, rnd, int(epochs[c]), 0, split)
            else:
                model = sgd(c, model, rnd, int(epochs[c]), 0, size)
            heads[c] = model[split:].copy()
            deltas.append(model[:split] - theta[:split])
            sizes.append(data[c].train.n)
        p = np.array(sizes, dtype=np.float64) / sum(sizes)
        theta[:split] += sum(pk * dk for pk, dk in zip(p, deltas))
    assert theta[split:].tobytes() == start_head.tobytes()
    kernels, accuracy = ModelKernels(spec), []
    for c, d in enumerate(data):
        model = theta.copy()
        if heads[c] is not None:
            model[split:] = heads[c]
        accuracy.append(kernels.evaluate_sums(d.test.X, d.test.y, model)[1] / d.test.n)
    return spread(np.array(accuracy)), theta


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("strategy", ["fedper", "fedrep"])
def test_fedper_and_fedrep_equal_their_serial_reference_and_only_the_body_travels(strategy):
    from mpifl import config
    from mpifl.data.catalog import model_spec
    from rank_counts import same_bytes_again_and_on_two_ranks

    k = 2 * (COMM.size - 1)
    common = dict(mode="federated", rounds=3, data__clients=k, data__alpha=0.1, data__client_test_fraction=0.25,
                  server__fraction=0.75, train__epochs=1, train__momentum=0.5, model__kind="mlp", model__hidden=[8])
    own = {"server__strategy": strategy, **({"server__head_epochs": 2} if strategy == "fedrep" else {})}
    got = same_bytes_again_and_on_two_ranks(COMM, **common, **own)
    fedavg = mpifl.run(None, COMM, **common)
    if COMM.rank == 0:
        cfg = config.load(overrides=[f"{key.replace('__', '.')}={value}" for key, value in {**common, **own}.items()])
        expected, theta = head_reference(cfg, k, strategy)
        np.testing.assert_allclose(got.model, theta, rtol=1e-9, atol=1e-12)
        assert got.history[-1]["personal"] == pytest.approx(expected, abs=1e-12)
        spec = model_spec(cfg)
        head = spec.head_size
        assert got.model[-head:].tobytes() == spec.initial(cfg.seed)[-head:].tobytes()  # no head reached the server
        shorter = [theirs["uplink_bytes"] - mine["uplink_bytes"] for mine, theirs in zip(got.history, fedavg.history)]
        assert shorter == [(mine["participants"] or 0) * head * 8 for mine in got.history]  # a row per trained client
        assert sum(shorter) > 0
