"""Who trains in a round, and for how many local epochs: pure functions of (seed, round).

Client sampling is uniform without replacement across all K clients (fixed:
round(fraction K) of them), or Poisson: each client independently with
probability ``fraction``, so the cohort's size varies (the sampling that
differential privacy's accountant analyses with add-or-remove neighbours).
Systems heterogeneity follows the FedProx paper (Li et al. 2020, section 5.2):
a share ``stragglers`` of the sampled clients run a number of local epochs
drawn uniformly from 1..epochs; with ``drop``, they are dropped instead, as
the paper's FedAvg baseline does.
"""

from __future__ import annotations

import numpy as np

from mpifl.protocol import Plan
from mpifl.rng import Purpose, stream

MIN_PLAN_SLOTS = 64  # the least cohort the downlink's plan holds in its one Bcast (mpifl.protocol)


def cohort_size(fraction: float, n_clients: int) -> int:
    """Clients a round samples under fixed sampling (the expected cohort under Poisson): at least one."""
    return max(1, int(round(fraction * n_clients)))


def sample_clients(seed: int, rnd: int, n_clients: int, fraction: float, poisson: bool = False) -> np.ndarray:
    """Boolean mask of the clients sampled in round ``rnd``."""
    if poisson:
        return stream(seed, Purpose.CLIENT_SAMPLING, rnd).random(n_clients) < fraction
    count = cohort_size(fraction, n_clients)
    mask = np.zeros(n_clients, dtype=bool)
    if count == n_clients:
        mask[:] = True
    else:
        mask[stream(seed, Purpose.CLIENT_SAMPLING, rnd).choice(n_clients, count, replace=False)] = True
    return mask


def round_plan(
    seed: int, rnd: int, n_clients: int, fraction: float, epochs: int, stragglers: float, drop: bool,
    poisson: bool = False,
) -> np.ndarray:
    """Local epochs per client for round ``rnd`` (0 = not training), as int64 (a Plan that knows its cohort)."""
    sampled = _sampled_ids(seed, rnd, n_clients, fraction, poisson)
    plan = np.zeros(n_clients, dtype=np.int64)
    plan[sampled] = epochs
    slow = int(round(stragglers * sampled.size))
    if slow:
        rng = stream(seed, Purpose.STRAGGLERS, rnd)
        chosen = np.sort(rng.choice(sampled, slow, replace=False))
        plan[chosen] = 0 if drop else rng.integers(1, epochs + 1, size=slow)
        if drop:
            sampled = sampled[plan[sampled] > 0]
    return Plan(plan, sampled)


def _sampled_ids(seed: int, rnd: int, n_clients: int, fraction: float, poisson: bool) -> np.ndarray:
    """The ids sample_clients marks, ascending, without a pass over the population under fixed sampling."""
    if poisson:
        return np.flatnonzero(sample_clients(seed, rnd, n_clients, fraction, poisson))
    count = cohort_size(fraction, n_clients)
    if count == n_clients:
        return np.arange(n_clients, dtype=np.int64)
    return np.sort(stream(seed, Purpose.CLIENT_SAMPLING, rnd).choice(n_clients, count, replace=False))



def evaluation_sample(seed: int, rnd: int, candidates: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the clients that evaluate on their validation rows in round ``rnd`` (evaluate.fraction):
    round(fraction n) of the n candidate clients, at least one, drawn per (seed, round) apart from training's draw."""
    mask = np.zeros(candidates.size, dtype=bool)
    mask[_sample(seed, rnd, np.flatnonzero(candidates), fraction, ())] = True
    return mask


def _sample(seed: int, rnd: int, pool: np.ndarray | int, fraction: float, keys: tuple[int, ...]) -> np.ndarray:
    """round(fraction n) of the ids in ``pool`` (ascending; an int n: 0..n-1, drawn as from arange(n) without
    making it), at least one: drawn per (seed, round, *keys); all of them at fraction 1."""
    size = pool if isinstance(pool, int) else pool.size
    count = min(cohort_size(fraction, size), size)
    if count == size:
        return np.arange(size, dtype=np.int64) if isinstance(pool, int) else pool
    return np.sort(stream(seed, Purpose.EVALUATION, rnd, *keys).choice(pool, count, replace=False)).astype(np.int64)


def evaluated(seed: int, rnd: int, n_clients: int, fraction: float, held_out: np.ndarray | None,
              recorded: bool, validating: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(the clients that report the global model's figures on their training and own test rows, the clients that
    evaluate on their validation rows) in a recorded round, as ascending ids; both empty in other rounds.

    Each is evaluate.fraction of its pool, drawn per (seed, round): the first
    from the clients that train (a held-out fold's never do), the second from
    those that hold validation rows (the held-out fold, or every client; none
    unless ``validating``).  A recorded round then costs what it samples, not
    the population.
    """
    empty = np.empty(0, dtype=np.int64)
    if not recorded:
        return empty, empty
    trains = n_clients if held_out is None else np.flatnonzero(~held_out)
    validates = n_clients if held_out is None else np.flatnonzero(held_out)
    return (_sample(seed, rnd, trains, fraction, (1,)),
            _sample(seed, rnd, validates, fraction, ()) if validating else empty)


def plan_capacity(fraction: float, n_clients: int) -> int:
    """The plan's slots in the downlink: twice the expected cohort (a Poisson draw rarely exceeds it; a larger
    cohort takes a second Bcast), at least 64, at most the population."""
    return min(n_clients, max(MIN_PLAN_SLOTS, 2 * cohort_size(fraction, n_clients)))


def sealed_evaluation(scored: np.ndarray, judged: np.ndarray, cohort: np.ndarray, carried: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Who evaluates when no client's figures may travel in the clear: with an exchange that carries them in its
    masked sum (secure aggregation), the clients that train score the model on their training rows (so a training
    round's secure sum spans its cohort alone), those sampled to validate still do, and a round without training
    scores as sampled; with none (local DP alone), nobody: no figure could reach the server."""
    if not carried:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return (np.intersect1d(scored, cohort) if cohort.size else scored), judged


def active_clients(cohort: np.ndarray, scored: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """The clients that send a statistics row this round, ascending: those that train or evaluate."""
    if not scored.size and not judged.size:
        return cohort
    return np.union1d(np.union1d(cohort, scored), judged)
