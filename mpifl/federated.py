"""Federated mode: rank 0 is the server; ranks 1..p-1 host the K clients, a contiguous block each.

A round, as seen by every rank (mpifl.protocol lays out every buffer from
the algorithm's declared fields, so no algorithm writes transport code):
1. Bcast of the downlink [theta | declared fields | epochs per client | stop]
   (stop: 0 to go on, STOP_SIGNAL after a signal, STOP_SIGNAL + a Diverged
   code once the server saw a non-finite loss or model);
2. each client rank evaluates theta on each of its clients (on recorded
   rounds), and trains every client whose epochs are > 0, one after another,
   from theta under its algorithm's local objective; each client keeps its
   own momentum and algorithm state (SCAFFOLD's c_k) on this rank;
3. Gatherv of one payload row [delta | declared model-sized fields] per
   client that trained (counts follow from the epochs every rank already
   has), and Gatherv of the per-client statistics and per-rank timings;
   with [compress], delta travels as its codec's message (with the client's
   error-feedback residual added first) and the server decodes it;
4. the server's strategy aggregates the results, and the server tests the
   new theta on its test set.

The clients' evaluation of theta_r arrives with round r+1, so the row for
round r is written then, and a final evaluation-only round (no client
trains) closes the run.  The server holds the test split and nothing else.
This module and mpifl.roles are the only places that know which rank plays
which role.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from mpifl import comm as collectives
from mpifl.attacks import configured_attack
from mpifl.compression import Codec, ErrorFeedback, codec_from_config
from mpifl.data.shards import ClientData, Shard
from mpifl.errors import Diverged, SecAggAborted
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.loop import Loop
from mpifl.metrics import RoundTimer
from mpifl.model import ModelSpec
from mpifl.progress import RoundRecord, is_logged, time_breakdown
from mpifl.privacy.mechanism import CLIP, WITHIN, ClientPrivacy, PrivacySettings
from mpifl.protocol import FLOAT64, MESSAGE, Field, Wire
from mpifl.secagg import graph
from mpifl.secagg.encoding import FixedPoint
from mpifl.secagg.protocol import RoundPlan
from mpifl.secagg.transport import PhaseSeconds, RoundLayout, client_round, dropouts, server_round
from mpifl.stopping import divergence
from mpifl.strategies import RoundResults, Strategy, strategy_params
from mpifl.strategies.base import LocalRun

SERVER = 0
STOP_SIGNAL = 1  # the downlink's stop code after SIGTERM/SIGUSR1; above it, 1 + a Diverged code
SECAGG_HALT = 64  # the downlink's stop code after a secure round without enough survivors (secagg.abort = "stop")
# On a node with more ranks than cores, rounds whose compute took longer than this are waited for by polling with sleeps
# (mpifl.comm.wait_patiently); shorter ones wait in MPI, where a sleep's wake-up latency would dominate.
LONG_ROUND_SECONDS = 2e-3
_PENDING = "round."  # server-state keys of the last aggregation's metrics, reported with the next record
_PENDING_LIST = "round_list."  # the same for list-valued metrics (an aggregator's selected ids or kept weights)
# server-state key: the last round's (downlink, uplink) bytes, their running totals, and the uplink's running total
# had compress.uplink been "none"
BYTES = "wire_bytes"
RESIDUAL = "compress.residual"  # client-rank state: each hosted client's error-feedback residual


def uplink_codec(cfg, spec: ModelSpec) -> Codec | None:
    """The job's codec for deltas, or None when updates travel uncompressed."""
    return codec_from_config(cfg, spec.size, spec.dtype)


def secure_length(wire: Wire, size: int) -> int:
    """Values in a client's secure vector: [weight delta | each model-dtype uplink field | weight | within]."""
    return size + sum(wire.summed_fields.values()) + 2


def secure_layout(cfg, blocks: list[range], epochs: np.ndarray, rnd: int, length: int) -> RoundLayout:
    """Round ``rnd``'s secure-aggregation plan, the same on every rank: the cohort (the clients that train), its
    neighbour graph, the fixed-point encoding, who hosts whom, and the simulated dropouts."""
    cohort = tuple(int(k) for k in np.flatnonzero(epochs))
    degree = (cfg["secagg.neighbours"] or graph.default_degree(len(cohort))) if cfg["secagg.plus"] else None
    plan = RoundPlan(rnd, cohort, graph.neighbours(np.array(cohort), cfg["seed"], rnd, degree),
                     cfg["secagg.threshold"], FixedPoint(cfg["secagg.bits"], cfg["secagg.clip_range"], len(cohort)),
                     length)
    hosted = [[k for k in block if epochs[k] > 0] for block in blocks]
    return RoundLayout(plan, hosted, dropouts(cfg["seed"], rnd, cohort, cfg["secagg.dropout"]))


def make_wire(strategy: type[Strategy], spec: ModelSpec, blocks: list[range], codec: Codec | None,
              private: bool = False) -> Wire:
    """The round's buffers for this algorithm, the same on every rank; blocks[h] are client rank h+1's clients.
    With [privacy], the clip travels down and each client's within-the-clip bit up."""
    down, up = strategy.downlink, strategy.uplink
    if private:
        down, up = (*down, Field(CLIP, 1)), (*up, Field(WITHIN, 1, FLOAT64))
    return Wire(down, up, spec.shape, spec.dtype, blocks, codec.nbytes if codec else 0)


def serve(loop: Loop, test: Shard, blocks: list[range], strategy: Strategy) -> np.ndarray:
    """The server's loop; returns the final global parameters."""
    comm, cfg, spec = loop.comm, loop.cfg, loop.kernels.spec
    codec = uplink_codec(cfg, spec)
    privacy = strategy.setup.privacy  # with [privacy]: every round releases a noised mean, even of no client
    secure = cfg["secagg.enabled"]  # the server receives masked vectors and unmasks only their sum
    last_secagg = None  # with [secagg]: the parts' seconds of the round that produced theta
    wire = make_wire(type(strategy), spec, blocks, codec, privacy is not None)
    n_clients = wire.n_clients
    attack = configured_attack(cfg, n_clients)  # the omniscient attacks are simulated here, before aggregation
    tester = LocalTrainer(test, loop.kernels, LocalSettings.from_config(cfg), cfg["seed"], SERVER)
    checkpoints = loop.checkpoints
    theta = checkpoints.theta.copy() if checkpoints.resumed else spec.initial(cfg["seed"])
    strategy.load_state(checkpoints.server)
    pending = _load_pending(checkpoints.server)
    downlink = wire.downlink_buffer()
    down = wire.downlink_views(downlink)
    payload = wire.payload_buffer(n_clients)
    gathered = np.empty(sum(wire.stats_counts))
    nothing = np.empty(0, dtype=spec.dtype)
    timer = RoundTimer()
    gather_payload = collectives.GatherToRoot(comm, [0] * comm.Get_size(), spec.dtype, SERVER)
    gather_stats = collectives.GatherToRoot(comm, wire.stats_counts, np.float64, SERVER)
    poll = False  # how every rank waits in this round's collectives; the server decides, the downlink tells
    # timings of the round that produced theta, reported with the next round's record
    last_seconds, last_compute, last_server = 0.0, 0.0, (0.0, 0.0)
    # (downlink, uplink) bytes of that round, counted at the collectives, and their running totals
    counted = checkpoints.server.get(BYTES, np.zeros(5)).astype(np.int64)
    last_bytes, totals = (int(counted[0]), int(counted[1])), [int(counted[2]), int(counted[3]), int(counted[4])]
    last_rank_compute = np.zeros(len(wire.blocks))
    last_codec = (0.0, 0.0)  # with [compress]: (slowest client rank's encoding, the server's decoding) seconds
    halt = 0  # the downlink's stop code for this round (see STOP_SIGNAL)
    for it in range(checkpoints.start_round + 1, cfg["rounds"] + 2):
        timer.reset()
        halt = 0 if halt == STOP_SIGNAL and it > cfg["rounds"] else halt  # the last round ends the run anyway
        training = it <= cfg["rounds"] and not halt
        epochs = strategy.plan(it) if training else np.zeros(n_clients, dtype=np.int64)
        down["theta"][...] = theta
        for name, value in strategy.downlink_values().items():
            down[name][...] = value
        if privacy is not None:
            down[CLIP][0] = privacy.clip[0]
        down["epochs"][:] = epochs
        down["stop"][0] = halt
        down["poll"][0] = loop.patient and last_compute > LONG_ROUND_SECONDS  # compute: no feedback from the wait
        collectives.bcast(comm, downlink, timer, root=SERVER, poll=poll)
        poll = bool(down["poll"][0])
        if halt:
            _halt(loop, it, theta, halt, {}, {**strategy.state(), **_pending_state(pending),
                                              BYTES: np.array([*last_bytes, *totals], dtype=np.float64)})
        trained = np.flatnonzero(epochs)
        secure_total, secure_seconds = None, None
        if trained.size and secure:
            secure_total, secure_seconds = server_round(
                comm, secure_layout(cfg, blocks, epochs, it, secure_length(wire, spec.size)), timer, poll)
        elif trained.size:
            gather_payload.set_counts(wire.payload_counts(epochs))
            gather_payload(nothing, payload, timer, poll)
        gather_stats(np.empty(0), gathered, timer, poll)
        stats, rank_stats = wire.split_stats(gathered)
        with timer.compute():
            record = None
            if is_logged(it - 1, cfg):
                record = _record(it - 1, theta, stats, tester, cfg["model.l2"], last_seconds, last_compute, pending)
                record = replace(record, downlink_bytes=last_bytes[0], uplink_bytes=last_bytes[1],
                                 downlink_bytes_total=totals[0], uplink_bytes_total=totals[1],
                                 uplink_bytes_uncompressed_total=totals[2] if codec else None)
                if codec:
                    record = replace(record, encode_seconds=last_codec[0], decode_seconds=last_codec[1])
                if last_secagg is not None:
                    record = replace(record, secagg_seconds=last_secagg)
                if it > 1:
                    spread, slowest = time_breakdown(
                        np.concatenate(([last_server[0]], last_rank_compute)),
                        np.concatenate(([last_server[1]], rank_stats["comm"])),
                    )
                    record = replace(record, breakdown=spread, slowest_rank=slowest)
            aborted = secure and trained.size > 0 and secure_total is None
            if secure and training:
                last_secagg = _secure_seconds(secure_seconds, rank_stats)
            if aborted:  # too few survivors to unmask: no update this round, and nothing revealed
                pending = {"participants": 0.0, "secagg_aborted": 1.0}
            elif secure and (trained.size or (privacy is not None and training)):
                layout = secure_layout(cfg, blocks, epochs, it, secure_length(wire, spec.size))
                results = _secure_results(wire, layout, secure_total, spec.size, it)
                theta, metrics = strategy.aggregate(it, theta, results)
                pending = {"participants": float(len(layout.survivors)), **metrics,
                           "secagg_dropped": float(len(layout.dropped))}
            elif trained.size or (privacy is not None and training):
                results, decode_seconds = _results(wire, payload, stats, trained, codec, (cfg["seed"], it))
                theta, metrics = strategy.aggregate(it, theta, attack.colluded(results))
                pending = {"participants": float(trained.size), **metrics}
                last_codec = (float(rank_stats["encode"].max()), decode_seconds)
            if privacy is not None and privacy.account is not None and training and is_logged(it, cfg):
                pending["epsilon"] = privacy.epsilon()  # at the job's delta, after the rounds released so far
        if record is not None:
            loop.report(record)
        last_seconds = timer.elapsed()
        last_compute = float(rank_stats["compute"].max()) + timer.compute_seconds
        last_rank_compute = rank_stats["compute"].copy()
        last_server = (timer.compute_seconds, timer.comm_seconds)
        last_bytes = (timer.downlink_bytes, timer.uplink_bytes)
        totals = [totals[0] + last_bytes[0], totals[1] + last_bytes[1],
                  totals[2] + last_bytes[1] + wire.saved_bytes(trained.size)]
        if checkpoints.due(it):
            loop.save(it, theta, {}, {**strategy.state(), **_pending_state(pending),  # not committed if diverged
                                      BYTES: np.array([*last_bytes, *totals], dtype=np.float64)})
        diverged = divergence(theta, record.loss if record is not None else 0.0)
        signalled = loop.stop.requested or bool(rank_stats["stop"].max() > 0)
        halt = STOP_SIGNAL + diverged if diverged else int(signalled)
        if training and aborted and cfg["secagg.abort"] == "stop" and not diverged:
            halt = SECAGG_HALT
    return theta


def _halt(loop: Loop, it: int, theta: np.ndarray, code: int, local: dict, server: dict | None = None) -> None:
    """Act on the downlink's stop code, on every rank alike: report divergence, or checkpoint and stop."""
    if code == SECAGG_HALT:
        raise SecAggAborted(it - 1)
    if code > STOP_SIGNAL:
        raise Diverged(it - 1, code - STOP_SIGNAL, loop.cfg["train.lr"])
    loop.stop_after(it - 1, theta, local, server)


def _results(wire: Wire, payload: np.ndarray, stats: dict[str, np.ndarray], trained: np.ndarray,
             codec: Codec | None, key: tuple[int, int]) -> tuple[RoundResults, float]:
    """(The trained clients' rows, by field name, in client order; seconds spent decoding their deltas)."""
    columns = wire.payload.columns(payload[: trained.size])
    fields = {name: columns[name] if name in columns else stats[name][trained] for name in wire.uplink_names}
    t0 = time.perf_counter()
    if codec is None:
        deltas = columns["delta"]
    else:
        messages = columns[MESSAGE].view(np.uint8)[:, : codec.nbytes]
        deltas = np.stack([codec.decode(m, (*key, int(k))) for m, k in zip(messages, trained)])
        deltas = deltas.astype(wire.dtype).reshape(trained.size, *wire.payload.shape)
    results = RoundResults(clients=trained, deltas=deltas, weights=stats["weight"][trained], fields=fields,
                           round=key[1])
    return results, time.perf_counter() - t0


def _secure_results(wire: Wire, layout: RoundLayout, total: np.ndarray | None, size: int,
                    rnd: int) -> RoundResults:
    """What the server has of a secure round: the survivors and their sums, no client's own update."""
    if total is None:  # no client trained: a private round releases its noise all the same
        total = np.zeros(secure_length(wire, size))
    sums, offset = {}, size
    for name, count in wire.summed_fields.items():
        sums[name] = total[offset: offset + count]
        offset += count
    survivors = np.array(layout.survivors, dtype=np.int64)
    return RoundResults(clients=survivors, deltas=np.empty((0, size)), weights=np.empty(0), fields={}, round=rnd,
                        summed=total[:size], summed_weight=float(total[offset]),
                        summed_within=float(total[offset + 1]), summed_fields=sums)


def _secure_seconds(server: PhaseSeconds | None, rank_stats: dict[str, np.ndarray]) -> dict[str, float]:
    """Each part's seconds in a secure round: the slowest client rank's, and the server's unmasking."""
    parts = {name: float(rank_stats[f"secagg_{name}"].max()) for name in ("agree", "share", "mask", "unmask")}
    if server is not None:
        parts["server_unmask"] = server.unmask
        parts["server_route"] = server.share
    return parts


def _pending_state(pending: dict) -> dict[str, np.ndarray]:
    """The round's metrics awaiting their record, as checkpoint arrays: numbers, and lists (an aggregator's
    selected client ids, or the weights it kept) under their own prefix."""
    out = {}
    for name, value in pending.items():
        if isinstance(value, list):
            out[_PENDING_LIST + name] = np.asarray(value, dtype=np.float64)
        else:
            out[_PENDING + name] = np.array([value])
    return out


def _load_pending(server_state: dict[str, np.ndarray]) -> dict:
    pending: dict = {k[len(_PENDING):]: float(v[0]) for k, v in server_state.items() if k.startswith(_PENDING)}
    for k, v in server_state.items():
        if k.startswith(_PENDING_LIST):
            name = k[len(_PENDING_LIST):]
            pending[name] = [int(x) for x in v] if name == "selected" else [float(x) for x in v]
    return pending


def _record(
    rnd: int, theta: np.ndarray, stats: dict[str, np.ndarray], tester: LocalTrainer, l2: float,
    seconds: float, compute: float, aggregated: dict[str, float],
) -> RoundRecord:
    rows = stats["rows"].sum()
    test_loss, test_correct = tester.evaluate(theta)
    n_test = tester.shard.n
    own_test = stats["test_rows"] > 0
    client_test = None
    if own_test.any():
        client_test = np.divide(stats["test_correct"], stats["test_rows"], out=np.full(own_test.shape, np.nan),
                                where=own_test)
    server = {k: v for k, v in aggregated.items() if k not in ("participants", "epsilon")} if rnd > 0 else None
    return RoundRecord(
        round=rnd,
        loss=float(stats["loss"].sum() / rows) + tester.kernels.penalty(theta, l2),
        train_accuracy=float(stats["correct"].sum() / rows),
        test_loss=test_loss / n_test if n_test else float("nan"),
        accuracy=test_correct / n_test if n_test else float("nan"),
        seconds=seconds,
        compute_seconds=compute,
        comm_seconds=max(0.0, seconds - compute),
        client_loss=(stats["loss"] / stats["rows"]).tolist(),
        client_accuracy=(stats["correct"] / stats["rows"]).tolist(),
        client_test_accuracy=None if client_test is None else
        [float(a) if has else None for a, has in zip(client_test, own_test)],
        mean_client_accuracy=None if client_test is None else float(client_test[own_test].mean()),
        participants=int(aggregated["participants"]) if rnd > 0 and "participants" in aggregated else None,
        epsilon=aggregated.get("epsilon") if rnd > 0 else None,
        server=server or None,
    )


def participate(loop: Loop, data: list[ClientData], clients: range, blocks: list[range],
                strategy: type[Strategy], privacy_settings: PrivacySettings | None = None) -> None:
    """A client rank's loop: for each of its clients, evaluate the global model, train when planned."""
    comm, cfg, spec = loop.comm, loop.cfg, loop.kernels.spec
    codec = uplink_codec(cfg, spec)
    privacy = ClientPrivacy(privacy_settings) if privacy_settings is not None else None
    secure = cfg["secagg.enabled"]
    wire = make_wire(strategy, spec, blocks, codec, privacy is not None)
    settings = LocalSettings.from_config(cfg)
    trainers = [LocalTrainer(c.train, loop.kernels, settings, cfg["seed"], k) for c, k in zip(data, clients)]
    testers = [None if c.test is None else LocalTrainer(c.test, loop.kernels, settings, cfg["seed"], k)
               for c, k in zip(data, clients)]
    half = strategy.client(strategy_params(cfg.values), spec.shape, spec.dtype)
    attack = configured_attack(cfg, blocks[-1].stop)
    states = {name: np.zeros((len(clients), *spec.shape), dtype=spec.dtype) for name in half.state}
    feedback = ErrorFeedback(codec, len(clients), cfg["compress.error_feedback"]) if codec else None
    _restore(loop.checkpoints.local, trainers, states, feedback)
    update = spec.zeros()  # a compressed client's delta, before encoding
    downlink = wire.downlink_buffer()
    down = wire.downlink_views(downlink)
    payload = wire.payload_buffer(len(clients))
    rows_out = [wire.payload.views(row) for row in payload]
    stats = wire.stats_buffer(len(clients))
    client_stats, own = wire.stats_views(stats, len(clients))
    theta = spec.zeros()
    unused = np.empty(0)  # receive side of Gatherv, ignored off the root
    timer = RoundTimer()
    gather_payload = collectives.GatherToRoot(comm, [0] * comm.Get_size(), spec.dtype, SERVER)
    gather_stats = collectives.GatherToRoot(comm, wire.stats_counts, np.float64, SERVER)
    poll = False  # how every rank waits in this round's collectives; the server decides, the downlink tells
    previous_comm = 0.0

    def local_state() -> dict[str, np.ndarray]:
        residual = {RESIDUAL: feedback.residual} if feedback is not None and feedback.enabled else {}
        return {"velocity": np.stack([t.velocity for t in trainers]),
                **{f"state.{name}": value for name, value in states.items()}, **residual}

    for it in range(loop.checkpoints.start_round + 1, cfg["rounds"] + 2):
        timer.reset()
        collectives.bcast(comm, downlink, timer, root=SERVER, poll=poll)
        poll = bool(down["poll"][0])
        if down["stop"][0]:
            _halt(loop, it, theta, int(down["stop"][0]), local_state())
        t0 = time.perf_counter()
        theta[...] = down["theta"]
        epochs = down["epochs"]
        stats[:] = 0.0
        sent = 0
        encode_seconds = 0.0
        vectors = {}  # with [secagg]: each training client's [weight delta | weight | within the clip]
        for j, (k, trainer) in enumerate(zip(clients, trainers)):
            mine = client_stats[j]
            if is_logged(it - 1, cfg):
                mine["loss"][0], mine["correct"][0] = trainer.evaluate(theta)
                mine["rows"][0] = trainer.shard.n
                if testers[j] is not None:
                    mine["test_loss"][0], mine["test_correct"][0] = testers[j].evaluate(theta)
                    mine["test_rows"][0] = testers[j].shard.n
            if epochs[k] > 0:
                out = rows_out[sent]
                own_state = {name: value[j] for name, value in states.items()}
                delta = update if codec or secure else out["delta"]
                delta[...] = theta
                steps = trainer.train(delta, it, int(epochs[k]), half.objective(theta, down, own_state))
                delta -= theta
                run = LocalRun(steps, settings.lr, settings.momentum)
                half.report(delta, down, own_state, run, {**out, **mine})
                if privacy is not None:  # clipped (and with distributed noise, noised) before anything leaves
                    mine[WITHIN][0] = privacy.apply(delta, float(down[CLIP][0]), it, k)
                attack.poison(k, it, delta)  # model poisoning: a malicious client's own update, on its rank
                if secure:
                    weight = float(trainer.shard.n) if strategy.weighs_by_rows and privacy is None else 1.0
                    within = mine[WITHIN][0] if privacy is not None else 0.0
                    extra = [out[name].reshape(-1).astype(np.float64) for name in wire.summed_fields]
                    vectors[k] = np.concatenate([weight * delta.reshape(-1).astype(np.float64), *extra,
                                                 [weight, within]])
                elif codec:
                    t_encode = time.perf_counter()
                    feedback.send(j, delta, (cfg["seed"], it, k), out[MESSAGE].view(np.uint8)[: codec.nbytes])
                    encode_seconds += time.perf_counter() - t_encode
                mine["weight"][0] = trainer.shard.n
                sent += 1
        own["compute"][0] = time.perf_counter() - t0
        own["stop"][0] = loop.stop.requested
        own["comm"][0] = previous_comm
        own["encode"][0] = encode_seconds
        if (epochs > 0).any() and secure:
            parts = client_round(comm, secure_layout(cfg, blocks, epochs, it, secure_length(wire, spec.size)), vectors,
                                 timer, poll)
            own["secagg_agree"][0], own["secagg_share"][0] = parts.agree, parts.share
            own["secagg_mask"][0], own["secagg_unmask"][0] = parts.mask, parts.unmask
        elif (epochs > 0).any():
            gather_payload.set_counts(wire.payload_counts(epochs))
            gather_payload(payload[:sent], unused, timer, poll)
        gather_stats(stats, unused, timer, poll)
        previous_comm = timer.comm_seconds
        if loop.checkpoints.due(it):
            loop.save(it, theta, local_state())


def _restore(local: dict[str, np.ndarray], trainers: list[LocalTrainer], states: dict[str, np.ndarray],
             feedback: ErrorFeedback | None) -> None:
    """Per-client momentum, algorithm state and error-feedback residuals from this rank's checkpoint file."""
    if feedback is not None and RESIDUAL in local:
        feedback.residual[...] = local[RESIDUAL]
    if "velocity" in local:
        for trainer, velocity in zip(trainers, local["velocity"]):
            trainer.velocity[:] = velocity
    for name, value in states.items():
        if f"state.{name}" in local:
            value[...] = local[f"state.{name}"]
