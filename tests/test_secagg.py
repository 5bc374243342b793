"""Secure aggregation: the sum is exact, no row is readable, dropouts recover, tampering is named, keys stay
private.  Whole secure runs on real ranks: tests/test_mpi_secagg.py."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from mpifl import config
from mpifl.errors import ConfigError
from mpifl.secagg import crypto, graph, shamir
from mpifl.secagg.encoding import FixedPoint
from mpifl.secagg.protocol import ClientRound, RoundPlan, SecAggError, ServerRound

RNG = np.random.default_rng(0)


def make_round(n=12, length=500, plus=False, threshold=0.6, bits=64, clip_range=10.0):
    cohort = np.arange(n)
    degree = graph.default_degree(n) if plus else None
    plan = RoundPlan(3, tuple(range(n)), graph.neighbours(cohort, 0, 3, degree), threshold,
                     FixedPoint(bits, clip_range, n), length)
    clients = {u: ClientRound(plan, u) for u in range(n)}
    server = ServerRound(plan)
    return plan, clients, server


def run_round(plan, clients, server, xs, dropped=(), capture=None, tamper=None):
    """Every step of one round in process; ``capture`` collects every message that would travel."""
    sent = capture if capture is not None else []
    adverts = {u: c.advertise() for u, c in clients.items()}
    sent += adverts.values()
    server.collect_adverts(adverts)
    sealed = {u: c.share(server.directory) for u, c in clients.items()}
    inbox = {v: {} for v in clients}
    for u, messages in sealed.items():
        sent += messages
        for v, m in zip(plan.neighbours[u], messages):
            inbox[v][u] = m
    if tamper:
        tamper(inbox)
    for v, c in clients.items():
        c.receive(inbox[v])
    survived = set(clients) - set(dropped)
    masked = {u: clients[u].masked_input(xs[u]) for u in survived}
    shares = {u: clients[u].unmask_shares(survived) for u in survived}
    sent += [m.tobytes() for m in masked.values()] + list(shares.values())
    return masked, shares, server


@pytest.mark.parametrize("plus", [False, True])
@pytest.mark.parametrize("dropped", [(), (2, 7)])
def test_the_unmasked_sum_is_the_plaintext_sum_within_the_quantisation_error(plus, dropped):
    plan, clients, server = make_round(plus=plus)
    xs = {u: RNG.uniform(-5, 5, plan.length) for u in clients}
    masked, shares, server = run_round(plan, clients, server, xs, dropped)
    total = server.unmask(masked, shares)
    expected = sum(xs[u] for u in clients if u not in dropped)
    assert np.abs(total - expected).max() <= len(masked) / (2 * plan.encoding.scale) + 1e-12


def test_every_masked_row_is_uniform_over_the_ring():
    plan, clients, server = make_round(n=6, length=20_000, bits=32)
    xs = {u: np.zeros(plan.length) for u in clients}  # all-zero updates: whatever shows is mask
    masked, _, _ = run_round(plan, clients, server, xs)
    for row in masked.values():
        for shift in (0, 12, 24):  # low, middle and high bits
            counts = np.bincount((row >> shift) & 0xFF, minlength=256)
            assert stats.chisquare(counts).pvalue > 1e-4


def test_below_the_threshold_the_server_cannot_unmask():
    plan, clients, server = make_round(n=8, threshold=0.9)
    xs = {u: np.ones(plan.length) for u in clients}
    dropped = (0, 1, 2)
    masked, shares, server = run_round(plan, clients, server, xs, dropped)
    assert not server.enough_survive(set(masked))
    with pytest.raises(SecAggError, match="need 7 shares; 5 of its neighbours survived"):
        server.unmask(masked, shares)


def test_a_tampered_ciphertext_is_detected_and_names_the_pair():
    plan, clients, server = make_round(n=5)

    def flip(inbox):
        message = bytearray(inbox[3][1])
        message[20] ^= 1
        inbox[3][1] = bytes(message)

    with pytest.raises(SecAggError, match="client 3 could not authenticate the shares client 1 sealed"):
        run_round(plan, clients, server, {u: np.zeros(plan.length) for u in clients}, tamper=flip)


def test_a_wrong_key_is_detected():
    plan, clients, server = make_round(n=5)
    adverts = {u: c.advertise() for u, c in clients.items()}
    impostor = crypto.public_bytes(crypto.new_private_key())
    directory = dict(adverts)
    directory[2] = impostor + adverts[2][32:]  # the server hands client 0 a channel key that is not client 2's
    server.collect_adverts(adverts)
    sealed = clients[0].share(directory)
    clients[2].share(adverts)
    with pytest.raises(SecAggError, match="client 2 could not authenticate the shares client 0 sealed"):
        clients[2].receive({0: sealed[plan.neighbours[0].index(2)]})


def test_a_corrupt_unmasking_share_is_detected_and_names_the_client():
    plan, clients, server = make_round(n=6)
    xs = {u: np.zeros(plan.length) for u in clients}
    masked, shares, server = run_round(plan, clients, server, xs, dropped=(4,))
    bad = bytearray(shares[0])
    bad[0] ^= 0x01  # holder 0's share of its first neighbour's secret (client 1's seed)
    shares[0] = bytes(bad)
    with pytest.raises(SecAggError, match="client 1's .* do not rebuild what client 1 advertised"):
        server.unmask(masked, shares)


def test_no_private_key_or_seed_ever_travels_in_the_clear():
    plan, clients, server = make_round(n=6)
    captured = []
    run_round(plan, clients, server, {u: RNG.standard_normal(plan.length) for u in clients}, dropped=(5,),
              capture=captured)
    wire = b"".join(bytes(m) for m in captured)
    assert len(captured) > 30
    for c in clients.values():
        for secret in (crypto.private_bytes(c._channel), crypto.private_bytes(c._mask), c._seed):
            assert secret not in wire
            for start in range(0, 32, 8):  # nor any 8-byte piece of one
                assert secret[start:start + 8] not in wire


def test_shamir_any_t_shares_rebuild_the_secret_and_fewer_do_not():
    secret = crypto.random_seed()
    xs = np.arange(1, 8)
    shares = shamir.split(secret, xs, t=4)
    for subset in combinations(range(7), 4):
        assert shamir.reconstruct([int(xs[i]) for i in subset], shares[list(subset)]) == secret
    try:
        wrong = shamir.reconstruct([1, 2, 3], shares[:3])
    except shamir.CorruptShares:
        wrong = None
    assert wrong != secret


def test_secagg_plus_graph_is_regular_symmetric_and_the_same_everywhere():
    cohort = np.arange(100)
    k = graph.default_degree(100)
    nb = graph.neighbours(cohort, 7, 2, k)
    assert k == 20 and all(len(v) == k for v in nb.values())
    assert all(u in nb[v] for u in nb for v in nb[u])
    assert nb == graph.neighbours(cohort, 7, 2, k) and nb != graph.neighbours(cohort, 7, 3, k)


@pytest.mark.parametrize("bits", [32, 64])
def test_fixed_point_sums_wrap_and_decode_within_half_a_step(bits):
    enc = FixedPoint(bits, 4.0, 10)
    xs = RNG.uniform(-4, 4, (10, 1000))
    total = np.zeros(1000, dtype=enc.dtype)
    for x in xs:
        total += enc.encode(x)
    assert np.abs(enc.decode(total) - xs.sum(axis=0)).max() <= 10 / (2 * enc.scale) + 1e-13  # + float64's sum


@pytest.mark.parametrize("overrides, message", [
    (["secagg.enabled=true", "server.aggregator=krum"], "needs the individual updates"),
    (["secagg.enabled=true", "server.strategy=fednova"], "the server sees only the sum"),
    (["secagg.enabled=true", "attack.kind=alie"], "secure aggregation hides"),
    (["secagg.enabled=true", "compress.uplink=int8"], "cannot shrink"),
    (["secagg.enabled=true", "secagg.plus=true", "secagg.neighbours=5"], "must be even"),
    (["secagg.enabled=true", "secagg.threshold=0.4"], "'secagg.threshold' parameter"),
    (["secagg.enabled=true", "secagg.bits=16"], "'secagg.bits' parameter"),
])
def test_secagg_settings_are_validated_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load(overrides=overrides)
