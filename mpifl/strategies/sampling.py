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

from mpifl.rng import Purpose, stream


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
    """Local epochs per client for round ``rnd`` (0 = not training), as int64."""
    sampled = np.flatnonzero(sample_clients(seed, rnd, n_clients, fraction, poisson))
    plan = np.zeros(n_clients, dtype=np.int64)
    plan[sampled] = epochs
    slow = int(round(stragglers * sampled.size))
    if slow:
        rng = stream(seed, Purpose.STRAGGLERS, rnd)
        chosen = np.sort(rng.choice(sampled, slow, replace=False))
        plan[chosen] = 0 if drop else rng.integers(1, epochs + 1, size=slow)
    return plan



def evaluation_sample(seed: int, rnd: int, candidates: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the clients that evaluate on their validation rows in round ``rnd`` (evaluate.fraction):
    round(fraction n) of the n candidate clients, at least one, drawn per (seed, round) apart from training's draw."""
    mask = np.zeros(candidates.size, dtype=bool)
    pool = np.flatnonzero(candidates)
    count = min(cohort_size(fraction, pool.size), pool.size)
    if count == pool.size:
        mask[pool] = True
    else:
        mask[np.sort(stream(seed, Purpose.EVALUATION, rnd).choice(pool, count, replace=False))] = True
    return mask
