"""One round of secure aggregation as pure steps on bytes: no MPI, no I/O (mpifl.secagg.transport moves them).

The round of Bonawitz et al. (2017), semi-honest server, with the neighbour
graph of SecAgg+ (Bell et al. 2020) as an option.  For each client u of the
cohort:

1. advertise: two X25519 public keys (c_u for the channel, s_u for masks) and
   a SHA-256 commitment to a fresh self-mask seed b_u;
2. share: Shamir t-of-k shares of s_u's private key and of b_u, one pair for
   each neighbour v, sealed with AES-GCM under HKDF(X25519(c_u, c_v)), sent
   through the server, which cannot open them;
3. masked input: y_u = x_u + PRG(b_u) + sum over neighbours v of
   +-PRG(HKDF(X25519(s_u, s_v))) in Z_(2^bits) (+ when u < v), x_u the
   fixed-point update; a client that drops out sends nothing from here on;
4. unmask: each survivor sends, for each neighbour, its share of b_v if v
   survived or of s_v's private key if v dropped, never both for one v.  The
   server needs t shares per client: it removes the survivors' self-masks and
   the dropped clients' pairwise masks, and reads the sum.

The server checks every reconstruction against what was advertised (s_v's
public key, b_v's commitment), so a corrupt share is detected and named.

Against an actively malicious server (Bonawitz et al. 2017, §4; ``signed``),
each client also holds a long-term Ed25519 key whose public half every
client knows from set-up (a PKI):

- its advert carries a signature over (round, its id, its keys, its
  commitment), and every client verifies its neighbours' adverts before
  sharing with them, so a server cannot substitute keys (forge) or pass off
  an advert of another round or client (replay);
- the shares need no signature of their own: each is sealed with AES-GCM
  under a key agreed from two signed channel keys, with (round, sender,
  receiver) as associated data, so only the two ends can make or open it;
- the consistency round: after the masked inputs, each survivor signs the
  survivor list the server gave it, and before revealing any share checks
  that every signature the server forwards is on that same list and that at
  least t of its neighbours signed it.  With t above half of its neighbours,
  no two lists can both gather t signatures, so a server that tells some
  clients "v survived" (to collect v's self-mask shares) and others "v
  dropped" (to collect its mask key's shares) is caught before either half
  is revealed; a client told that it dropped although it sent its masked
  input refuses too.  A client that catches the server raises
  ``ServerCaught`` and reveals nothing that round.  With SecAgg+'s graph the
  check runs over each client's neighbourhood (t of its k neighbours), the
  threshold its secrets are shared under.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from mpifl.secagg import crypto, shamir
from mpifl.secagg.encoding import FixedPoint

ADVERT_BYTES = 3 * crypto.KEY_BYTES  # c_pk | s_pk | commitment to b
SIGNED_ADVERT_BYTES = ADVERT_BYTES + crypto.SIGNATURE_BYTES  # ... | the owner's signature over them
SEALED_SHARES = crypto.sealed_size(2 * shamir.SHARE_BYTES)  # one neighbour's shares of s_sk and b, sealed
CHANNEL, MASK = b"mpifl-secagg channel", b"mpifl-secagg mask"


class SecAggError(Exception):
    """The round cannot be completed: a share failed authentication or reconstruction, or too few survived."""


class ServerCaught(SecAggError):
    """A client caught the server lying (a forged or replayed advert, a survivor list it contradicts, too few
    signatures on its list); it reveals no share this round."""


def advert_message(rnd: int, client: int, advert: bytes) -> bytes:
    """What a client signs of its advert: the round and its id bind the keys to this round and this client."""
    return b"mpifl-secagg advert" + struct.pack("<qq", rnd, client) + advert[:ADVERT_BYTES]


def survivors_message(rnd: int, survived) -> bytes:
    """What a survivor signs in the consistency round: the round and the survivor list it was given."""
    return b"mpifl-secagg survivors" + struct.pack("<q", rnd) + np.array(sorted(survived), dtype="<i8").tobytes()


@dataclass(frozen=True)
class RoundPlan:
    """What every party knows of a round before it starts."""

    round: int
    cohort: tuple[int, ...]  # client ids, sorted
    neighbours: dict[int, tuple[int, ...]]
    threshold: float  # share of a client's neighbours whose shares reconstruct its secrets
    encoding: FixedPoint
    length: int  # values per client vector

    def needed(self, client: int) -> int:
        """t for this client's secrets: ceil(threshold k), at least 2 (at least 1 with a single neighbour)."""
        k = len(self.neighbours[client])
        return min(k, max(2, math.ceil(self.threshold * k)))


def _sign(u: int, v: int) -> int:
    return 1 if u < v else -1


def _point(client: int) -> int:
    return client + 1  # a client's Shamir x coordinate; 0 is the secret's


class ClientRound:
    """One client's side of one round; holds its private keys, which never leave it unshared."""

    def __init__(self, plan: RoundPlan, me: int, identity=None, pki: dict[int, bytes] | None = None):
        self.plan = plan
        self.me = me
        self._identity = identity  # its long-term signing key (the active-adversary protocol), or None
        self.pki = pki  # every neighbour's long-term public key, from set-up
        self._channel = crypto.new_private_key()
        self._mask = crypto.new_private_key()
        self._seed = crypto.random_seed()
        self._directory: dict[int, bytes] = {}
        self._held: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # neighbour -> (share of s_sk, share of b)

    def advertise(self) -> bytes:
        advert = crypto.public_bytes(self._channel) + crypto.public_bytes(self._mask) + crypto.commit(self._seed)
        if self._identity is None:
            return advert
        return advert + crypto.sign(self._identity, advert_message(self.plan.round, self.me, advert))

    def check_adverts(self, directory: dict[int, bytes]) -> None:
        """Each neighbour's advert signed by that neighbour, for this round (active-adversary protocol)."""
        for v in self.plan.neighbours[self.me]:
            advert = directory[v]
            if not crypto.verifies(self.pki[v], advert[ADVERT_BYTES:], advert_message(self.plan.round, v, advert)):
                raise ServerCaught(f"secure aggregation, round {self.plan.round}: client {self.me} caught the server: "
                                   f"the key advert it relayed for client {v} does not carry client {v}'s signature "
                                   "for this round (forged, altered, or replayed from another round or client)")

    def share(self, directory: dict[int, bytes]) -> list[bytes]:
        """Sealed shares for each neighbour, in the order of plan.neighbours[me]."""
        if self.pki is not None:
            self.check_adverts(directory)
        self._directory = directory
        mine = self.plan.neighbours[self.me]
        points = np.array([_point(v) for v in mine])
        t = self.plan.needed(self.me)
        key_shares = shamir.split(crypto.private_bytes(self._mask), points, t)
        seed_shares = shamir.split(self._seed, points, t)
        out = []
        for i, v in enumerate(mine):
            key = crypto.agree(self._channel, directory[v][: crypto.KEY_BYTES], CHANNEL, self.plan.round)
            plain = shamir.pack(key_shares[i]) + shamir.pack(seed_shares[i])
            out.append(crypto.seal(key, plain, crypto.associated(self.plan.round, self.me, v)))
        return out

    def receive(self, sealed: dict[int, bytes]) -> None:
        """Open the shares each neighbour sealed for this client; a failure names the pair."""
        for u, message in sealed.items():
            key = crypto.agree(self._channel, self._directory[u][: crypto.KEY_BYTES], CHANNEL, self.plan.round)
            try:
                plain = crypto.open_sealed(key, message, crypto.associated(self.plan.round, u, self.me))
            except crypto.Tampered:
                raise SecAggError(f"secure aggregation, round {self.plan.round}: client {self.me} could not "
                                  f"authenticate the shares client {u} sealed for it (altered in transit, or "
                                  "sealed under another key)") from None
            self._held[u] = (shamir.unpack(plain[: shamir.SHARE_BYTES]), shamir.unpack(plain[shamir.SHARE_BYTES:]))

    def masked_input(self, x: np.ndarray) -> np.ndarray:
        """y = encode(x) + PRG(b) + sum of +-PRG(s_uv) over the neighbours, in Z_(2^bits)."""
        enc = self.plan.encoding
        y = enc.encode(x)
        y += crypto.expand(self._seed, self.plan.length, enc.dtype)
        for v in self.plan.neighbours[self.me]:
            seed = crypto.agree(self._mask, self._directory[v][crypto.KEY_BYTES: 2 * crypto.KEY_BYTES], MASK,
                                self.plan.round)
            mask = crypto.expand(seed, self.plan.length, enc.dtype)
            if _sign(self.me, v) > 0:
                y += mask
            else:
                y -= mask
        return y

    def sign_survivors(self, survived: set[int]) -> bytes:
        """The consistency round: this survivor's signature on the list it was given; refused if the list says it
        dropped, for it sent its masked input."""
        if self.me not in survived:
            raise ServerCaught(f"secure aggregation, round {self.plan.round}: client {self.me} caught the server: it "
                               "was reported as dropped after it had sent its masked input")
        return crypto.sign(self._identity, survivors_message(self.plan.round, survived))

    def check_survivors(self, survived: set[int], signatures: dict[int, bytes]) -> None:
        """Before revealing any share: t of its neighbours signed the list this client was given, and no signature
        the server forwarded before those is on another list or from a client off the list (``signatures``:
        neighbour -> signature, as the server forwarded them).  Once t valid ones are in, the rest cannot matter:
        with t above half its neighbours, no other list can gather t of them, so it stops verifying there."""
        message = survivors_message(self.plan.round, survived)
        needed, signed = self.plan.needed(self.me), 0
        for v, signature in signatures.items():
            if v not in survived or not crypto.verifies(self.pki[v], signature, message):
                raise ServerCaught(f"secure aggregation, round {self.plan.round}: client {self.me} caught the server: "
                                   f"client {v}'s signature is not on the survivor list client {self.me} was given "
                                   "(the server sent different lists, or forged a signature)")
            signed += 1
            if signed >= needed:
                return
        raise ServerCaught(f"secure aggregation, round {self.plan.round}: client {self.me} caught the server: only "
                           f"{signed} of its neighbours signed the survivor list it was given; it needs {needed} (t) "
                           "before it reveals a share, so that no other list can be completed")

    def unmask_shares(self, survived: set[int]) -> bytes:
        """For each neighbour in order: its b share if it survived, its s_sk share if it dropped."""
        return b"".join(shamir.pack(self._held[v][1] if v in survived else self._held[v][0])
                        for v in self.plan.neighbours[self.me])


class ServerRound:
    """The server's side: routes sealed shares it cannot read, and unmasks only the sum."""

    def __init__(self, plan: RoundPlan):
        self.plan = plan
        self.directory: dict[int, bytes] = {}

    def collect_adverts(self, adverts: dict[int, bytes]) -> None:
        self.directory = dict(adverts)

    def enough_survive(self, survived: set[int]) -> bool:
        """Whether every client's secret can be rebuilt: t of its neighbours survived."""
        return all(sum(v in survived for v in self.plan.neighbours[u]) >= self.plan.needed(u)
                   for u in self.plan.cohort)

    def unmask(self, masked: dict[int, np.ndarray], shares: dict[int, bytes]) -> np.ndarray:
        """The float64 sum of the survivors' vectors from their masked inputs and the survivors' shares."""
        total = np.zeros(self.plan.length, dtype=self.plan.encoding.dtype)
        for y in masked.values():
            total += y
        return self.unmask_sum(total, set(masked), shares)

    def unmask_sum(self, total: np.ndarray, survived: set[int], shares: dict[int, bytes]) -> np.ndarray:
        """The same from the ring sum of the survivors' masked inputs (added on the client ranks and reduced, or
        here); ``total`` is changed in place."""
        plan, enc = self.plan, self.plan.encoding
        held: dict[int, dict[int, np.ndarray]] = {u: {} for u in plan.cohort}  # secret owner -> holder -> share
        for holder, raw in shares.items():
            for i, owner in enumerate(plan.neighbours[holder]):
                held[owner][holder] = shamir.unpack(raw[i * shamir.SHARE_BYTES: (i + 1) * shamir.SHARE_BYTES])
        for u in plan.cohort:
            secret = self._rebuild(u, held[u])
            if u in survived:
                if crypto.commit(secret) != self.directory[u][2 * crypto.KEY_BYTES: ADVERT_BYTES]:
                    raise SecAggError(self._corrupt(u, "self-mask seed", held[u]))
                total -= crypto.expand(secret, plan.length, enc.dtype)
                continue
            try:
                key = crypto.private_key_from(secret)
            except ValueError:
                raise SecAggError(self._corrupt(u, "mask key", held[u])) from None
            if crypto.public_bytes(key) != self.directory[u][crypto.KEY_BYTES: 2 * crypto.KEY_BYTES]:
                raise SecAggError(self._corrupt(u, "mask key", held[u]))
            for v in plan.neighbours[u]:
                if v in survived:  # v's masked input still carries +-PRG(s_vu); take it out
                    seed = crypto.agree(key, self.directory[v][crypto.KEY_BYTES: 2 * crypto.KEY_BYTES], MASK,
                                        plan.round)
                    mask = crypto.expand(seed, plan.length, enc.dtype)
                    if _sign(v, u) > 0:
                        total -= mask
                    else:
                        total += mask
        return enc.decode(total)

    def _rebuild(self, owner: int, shares: dict[int, np.ndarray]) -> bytes:
        t = self.plan.needed(owner)
        holders = sorted(shares)[:t]
        if len(holders) < t:
            raise SecAggError(f"secure aggregation, round {self.plan.round}: client {owner}'s secrets need {t} "
                              f"shares; {len(shares)} of its neighbours survived")
        try:
            return shamir.reconstruct([_point(h) for h in holders], np.stack([shares[h] for h in holders]))
        except shamir.CorruptShares:
            raise SecAggError(self._corrupt(owner, "secret", shares)) from None

    def _corrupt(self, owner: int, what: str, shares: dict[int, np.ndarray]) -> str:
        holders = sorted(shares)[: self.plan.needed(owner)]
        return (f"secure aggregation, round {self.plan.round}: the shares of client {owner}'s {what} held by clients "
                f"{holders} do not rebuild what client {owner} advertised: a share is corrupt")
