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
from mpifl.secagg.protocol import (ADVERT_BYTES, SIGNED_ADVERT_BYTES, ClientRound, RoundPlan, SecAggError,
                                   ServerCaught, ServerRound, advert_message)

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


# -- against an active server: signed adverts and the consistency round (Bonawitz et al. 2017, §4) ---------------


def signed_round(n=8, rnd=5, plus=False, length=50):
    """A round of the signed protocol: each client's long-term key, and the PKI every client got at set-up."""
    plan, _, server = make_round(n=n, length=length, plus=plus)
    plan = RoundPlan(rnd, plan.cohort, plan.neighbours, plan.threshold, plan.encoding, plan.length)
    identities = {u: crypto.new_signing_key() for u in plan.cohort}
    pki = {u: crypto.verify_key_bytes(k) for u, k in identities.items()}
    clients = {u: ClientRound(plan, u, identities[u], pki) for u in plan.cohort}
    return plan, clients, ServerRound(plan), identities, pki


def share_all(plan, clients, directory):
    inbox = {v: {} for v in clients}
    for u, c in clients.items():
        for v, m in zip(plan.neighbours[u], c.share(directory)):
            inbox[v][u] = m
    for v, c in clients.items():
        c.receive(inbox[v])


def through_masked_inputs(n: int):
    """A signed round of n clients up to the consistency round: adverts, shares and zero masked inputs sent."""
    plan, clients, server, _, _ = signed_round(n=n)
    server.collect_adverts({u: c.advertise() for u, c in clients.items()})
    share_all(plan, clients, server.directory)
    for u in clients:
        clients[u].masked_input(np.zeros(plan.length))
    return plan, clients


def consistency(plan, clients, told, forward):
    """Each survivor signs the list it was told; ``forward(u, signed)`` is what the server passes u; returns each
    client's unmasking shares, or the ServerCaught it raised."""
    signed = {u: clients[u].sign_survivors(told[u]) for u in told if u in told[u]}
    out = {}
    for u in told:
        try:
            if u not in told[u]:
                clients[u].sign_survivors(told[u])
            clients[u].check_survivors(told[u], forward(u, signed))
            out[u] = clients[u].unmask_shares(told[u])
        except ServerCaught as exc:
            out[u] = exc
    return out


def test_the_signed_protocol_unmasks_the_same_sum_as_the_semi_honest_one():
    plan, clients, server, _, _ = signed_round()
    xs = {u: RNG.uniform(-5, 5, plan.length) for u in clients}
    adverts = {u: c.advertise() for u, c in clients.items()}
    assert all(len(a) == SIGNED_ADVERT_BYTES for a in adverts.values())
    server.collect_adverts(adverts)
    share_all(plan, clients, server.directory)
    survived = set(clients)
    masked = {u: clients[u].masked_input(xs[u]) for u in survived}
    shares = consistency(plan, clients, {u: survived for u in survived},
                         lambda u, signed: {v: signed[v] for v in plan.neighbours[u]})
    total = server.unmask(masked, shares)
    assert np.abs(total - sum(xs.values())).max() <= len(masked) / (2 * plan.encoding.scale) + 1e-12


def test_a_forged_advert_is_caught_before_any_share_leaves_a_client():
    plan, clients, server, _, _ = signed_round()
    adverts = {u: c.advertise() for u, c in clients.items()}
    victim = plan.cohort[0]
    forged = dict(adverts)  # the server's own mask key in the victim's advert, to unmask the victim alone later
    forged[victim] = (adverts[victim][: crypto.KEY_BYTES] + crypto.public_bytes(crypto.new_private_key())
                      + adverts[victim][2 * crypto.KEY_BYTES:])
    neighbour = plan.neighbours[victim][0]
    with pytest.raises(ServerCaught, match=f"relayed for client {victim} does not carry client {victim}'s signature"):
        clients[neighbour].share(forged)
    # an advert signed by the wrong key (a server that made its own identity for the victim) fails alike
    impostor = crypto.new_signing_key()
    resigned = dict(adverts)
    body = forged[victim][:ADVERT_BYTES]
    resigned[victim] = body + crypto.sign(impostor, advert_message(plan.round, victim, body))
    with pytest.raises(ServerCaught, match="forged, altered, or replayed"):
        clients[neighbour].share(resigned)


def test_a_replayed_advert_is_caught_whether_from_another_round_or_another_client():
    plan, clients, _, identities, pki = signed_round(rnd=5)
    earlier_plan = RoundPlan(4, plan.cohort, plan.neighbours, plan.threshold, plan.encoding, plan.length)
    victim, other = plan.cohort[0], plan.cohort[1]
    old = ClientRound(earlier_plan, victim, identities[victim], pki).advertise()  # the victim's advert of round 4
    adverts = {u: c.advertise() for u, c in clients.items()}
    for name, directory in (("round", {**adverts, victim: old}), ("client", {**adverts, other: adverts[victim]})):
        target = victim if name == "round" else other
        reader = next(u for u in plan.cohort if target in plan.neighbours[u])
        with pytest.raises(ServerCaught, match=f"client {target}'s signature for this round"):
            clients[reader].share(directory)


def test_a_client_reported_dropped_after_its_masked_input_refuses_and_its_self_mask_stays_secret():
    plan, clients, server, _, _ = signed_round()
    adverts = {u: c.advertise() for u, c in clients.items()}
    server.collect_adverts(adverts)
    share_all(plan, clients, server.directory)
    xs = {u: RNG.uniform(-5, 5, plan.length) for u in clients}
    masked = {u: clients[u].masked_input(xs[u]) for u in clients}  # everyone sent its masked input
    victim = plan.cohort[0]
    lie = set(clients) - {victim}  # told to everyone: the victim dropped
    shares = consistency(plan, clients, {u: lie for u in clients},
                         lambda u, signed: {v: signed[v] for v in plan.neighbours[u] if v in signed})
    assert isinstance(shares[victim], ServerCaught) and "reported as dropped" in str(shares[victim])
    # the others reveal, for the "dropped" victim, shares of its mask key only: what they rebuild is that key, never
    # its self-mask seed b, so its masked input y = x + PRG(b) + masks stays uniform whatever else the server knows
    held = {}
    for holder in lie:
        at = plan.neighbours[holder].index(victim)
        held[holder] = shamir.unpack(shares[holder][at * shamir.SHARE_BYTES: (at + 1) * shamir.SHARE_BYTES])
    secret = server._rebuild(victim, held)
    assert crypto.public_bytes(crypto.private_key_from(secret)) == adverts[victim][crypto.KEY_BYTES: 2 * crypto.KEY_BYTES]
    assert crypto.commit(secret) != adverts[victim][2 * crypto.KEY_BYTES: ADVERT_BYTES]


@pytest.mark.parametrize("forwarding", ["matching", "everything"])
def test_different_survivor_lists_are_caught_before_both_halves_of_a_secret_are_revealed(forwarding):
    """The split: half the clients are told the victim survived (they would reveal its self-mask seed's shares),
    half that it dropped (its mask key's).  A server forwarding each client only the signatures on its own list
    gathers fewer than t on each; one forwarding everything shows signatures on another list."""
    plan, clients = through_masked_inputs(9)
    victim = plan.cohort[0]
    truth = set(clients)
    others = [u for u in plan.cohort if u != victim]
    lied = set(others[1::2])
    told = {u: truth - {victim} if u in lied else truth for u in clients}
    if forwarding == "matching":
        def forward(u, signed):
            return {v: signed[v] for v in plan.neighbours[u] if v in signed and told[v] == told[u]}
    else:
        def forward(u, signed):
            return {v: signed[v] for v in plan.neighbours[u] if v in signed}
    shares = consistency(plan, clients, told, forward)
    caught = [u for u, s in shares.items() if isinstance(s, ServerCaught)]
    revealed_seed = [u for u in plan.neighbours[victim] if u not in caught and victim in told[u]]
    revealed_key = [u for u in plan.neighbours[victim] if u not in caught and victim not in told[u]]
    t = plan.needed(victim)
    assert caught and not (len(revealed_seed) >= t and len(revealed_key) >= t)
    if forwarding == "everything":  # whoever met a signature on the other list before t on its own says so
        assert any("not on the survivor list" in str(shares[u]) for u in caught)


def test_the_consistency_check_needs_t_signatures_from_neighbours_on_the_same_list():
    plan, clients = through_masked_inputs(6)
    me = plan.cohort[0]
    survived = set(clients)
    signed = {u: clients[u].sign_survivors(survived) for u in clients}
    t = plan.needed(me)
    too_few = {v: signed[v] for v in plan.neighbours[me][: t - 1]}
    with pytest.raises(ServerCaught, match=f"only {t - 1} of its neighbours signed"):
        clients[me].check_survivors(survived, too_few)
    enough = {v: signed[v] for v in plan.neighbours[me][:t]}
    clients[me].check_survivors(survived, enough)  # t signatures on its own list: it may reveal
    bad = dict(enough)
    bad[plan.neighbours[me][0]] = bytes(64)
    with pytest.raises(ServerCaught, match="not on the survivor list"):
        clients[me].check_survivors(survived, bad)


@pytest.mark.parametrize("overrides, message", [
    (["secagg.enabled=true", "secagg.server_lies=split"], "only the active-adversary protocol"),
    (["secagg.enabled=true", "secagg.server_lies=bribe", "secagg.malicious=true"], "'secagg.server_lies' parameter"),
    (["secagg.enabled=true", "evaluate.per_client=true"], "only as a masked sum"),
])
def test_malicious_settings_are_validated_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load(overrides=overrides)
