"""Who reports in a round, and what of their figures reaches the server: the same computation on every rank.

The clients that train (the cohort) and those sampled to evaluate are the
round's active clients; each sends a statistics row, unless the chain seals
them (secure aggregation, local DP: mpifl.protocol.Wire.sealed_stats).
Sealed, the figures travel inside a masked sum when the exchange carries
them, and not at all otherwise; every client that sent an update then
weighs 1, since its row count never left its rank.
"""

from __future__ import annotations

import numpy as np

from mpifl.strategies.sampling import active_clients, evaluated, sealed_evaluation


def members(cfg, wire, exchange, rnd: int, cohort: np.ndarray, held_out, logged: bool, validating: bool
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the clients that score the model on their training rows, those that validate, every active client) of
    the round whose record is ``rnd``; an exchange that carries the figures is told who joins its sum."""
    scored, judged = evaluated(cfg.seed, rnd, wire.n_clients, cfg.evaluate.fraction, held_out, logged, validating)
    if wire.sealed_stats:
        scored, judged = sealed_evaluation(scored, judged, cohort, exchange.carries_stats)
    return scored, judged, active_clients(cohort, scored, judged)


def server_figures(wire, exchange, stats, epochs: np.ndarray) -> dict[str, float] | None:
    """Sealed: each client that sent an update weighs 1 (in ``stats``), and the figures are the exchange's sum, or
    None; in the clear, None (the record reads ``stats``)."""
    if not wire.sealed_stats:
        return None
    stats["weight"][stats.at(wire.sending(epochs))] = 1.0
    return exchange.figures_sum() if exchange.carries_stats else None
