"""The glue to Google's dp-accounting: which DP event a round is, and epsilon for a run of rounds.

mpifl writes no accountant of its own.  A round of DP-FedAvg is a Gaussian
mechanism with noise multiplier z on the clipped sum, amplified by how the
cohort was drawn:

- ``poisson`` sampling (each client independently with probability q):
  ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` under add-or-remove-one;
- ``fixed`` sampling (m of the N clients, without replacement):
  ``SampledWithoutReplacementDpEvent(N, m, GaussianDpEvent(z))`` under
  replace-one, which only the RDP accountant supports.

RDP is the default accountant (fast, and it supports both samplings); PLD
gives a tighter epsilon for Poisson sampling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import dp_accounting
import numpy as np
from dp_accounting import pld, rdp
from dp_accounting.pld import privacy_loss_distribution
from dp_accounting.rdp import rdp_privacy_accountant

logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting logs each RDP order it cannot bound

ACCOUNTANTS = ("rdp", "pld")
SAMPLINGS = ("fixed", "poisson")


@dataclass(frozen=True)
class Sampling:
    """How each round's cohort is drawn from ``clients``: Poisson with rate ``rate``, or ``cohort`` fixed."""

    kind: str
    clients: int
    rate: float

    @property
    def cohort(self) -> int:
        """Fixed sampling's cohort size (as mpifl.strategies.sampling draws it); Poisson's expected size, rounded."""
        return max(1, int(round(self.rate * self.clients)))

    @property
    def expected_cohort(self) -> float:
        """The fixed denominator of DP-FedAvg's mean: q N for Poisson sampling, the cohort for fixed."""
        return self.rate * self.clients if self.kind == "poisson" else float(self.cohort)


def round_event(noise_multiplier: float, sampling: Sampling) -> dp_accounting.DpEvent:
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling.kind == "poisson":
        return dp_accounting.PoissonSampledDpEvent(sampling.rate, gaussian)
    return dp_accounting.SampledWithoutReplacementDpEvent(sampling.clients, sampling.cohort, gaussian)


def fresh_accountant(kind: str, sampling: Sampling):
    if kind == "pld":
        if sampling.kind != "poisson":
            raise ValueError("the PLD accountant supports only Poisson sampling; use privacy.accountant = \"rdp\" "
                             "or server.sampling = \"poisson\"")
        return pld.PLDAccountant()
    relation = (dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE if sampling.kind == "poisson"
                else dp_accounting.NeighboringRelation.REPLACE_ONE)
    return rdp.RdpAccountant(neighboring_relation=relation)


class RunningAccount:
    """Epsilon after any number of rounds, from one round's analysis computed once.

    RDP composes by adding the per-order RDP, so one round's RDP is scaled (a
    sampled-without-replacement round takes 0.1 s to analyse); PLD composes
    by self-convolution of one round's privacy loss distribution (dp-accounting's
    own from_gaussian_mechanism, with the defaults its PLDAccountant uses)."""

    def __init__(self, kind: str, noise_multiplier: float, sampling: Sampling, delta: float):
        self.kind = kind
        self.delta = delta
        if kind == "rdp":
            accountant = fresh_accountant(kind, sampling)
            accountant.compose(round_event(noise_multiplier, sampling), 1)
            self._orders = np.asarray(accountant._orders)  # dp-accounting's RDP orders and one round's RDP
            self._one_round = np.asarray(accountant._rdp)
        else:
            fresh_accountant(kind, sampling)  # refuses what PLD cannot analyse
            self._one_round = privacy_loss_distribution.from_gaussian_mechanism(
                noise_multiplier, sampling_prob=sampling.rate)

    def epsilon_after(self, rounds: int) -> float:
        """Epsilon at the job's delta after ``rounds`` rounds."""
        if rounds == 0:
            return 0.0
        if self.kind == "rdp":
            return float(rdp_privacy_accountant.compute_epsilon(self._orders, rounds * self._one_round, self.delta)[0])
        return float(self._one_round.self_compose(rounds).get_epsilon_for_delta(self.delta))


@lru_cache(maxsize=64)
def epsilon(rounds: int, noise_multiplier: float, sampling: Sampling, delta: float, kind: str = "rdp") -> float:
    """Epsilon at ``delta`` after ``rounds`` rounds of noise ``noise_multiplier`` under ``sampling``."""
    return RunningAccount(kind, noise_multiplier, sampling, delta).epsilon_after(rounds)


@lru_cache(maxsize=64)
def noise_for(target_epsilon: float, rounds: int, sampling: Sampling, delta: float, kind: str = "rdp") -> float:
    """The smallest noise multiplier whose epsilon after ``rounds`` rounds is at most ``target_epsilon``
    (dp-accounting's calibrate_dp_mechanism, a bisection to 0.1% of the noise)."""
    def accountant():
        return fresh_accountant(kind, sampling)

    def event(z: float):
        return dp_accounting.SelfComposedDpEvent(round_event(z, sampling), rounds)

    return float(dp_accounting.calibrate_dp_mechanism(
        accountant, event, target_epsilon, delta, bracket_interval=dp_accounting.ExplicitBracketInterval(1e-3, 1e3),
        tol=1e-3))
