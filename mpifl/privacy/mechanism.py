"""DP-FedAvg's mechanism (McMahan et al. 2018) with adaptive clipping (Andrew et al. 2021), in two halves.

- ``ClientPrivacy`` runs on a client's own rank: it clips the client's delta
  to L2 norm C (the clip the server sent this round), reports whether the
  delta was already within C (for adaptive clipping), and with
  ``privacy.noise = "distributed"`` adds its share of the noise,
  N(0, sigma^2 / m), so that the m shares sum to the central noise.
- ``ServerPrivacy`` replaces the weighted mean inside every strategy that
  averages deltas: the sum of the clipped deltas (clipped again, so a
  client that skipped clipping gains nothing), plus N(0, sigma^2) with
  central noise, over the *expected* cohort size m (a fixed denominator, so
  the cohort's actual size is never released).  The strategy's server step
  (FedAvg's, or a FedOpt optimizer's) runs on that noised mean.

sigma = z_delta C.  Without adaptive clipping z_delta is the accounted noise
multiplier z.  With it, the clipped-count fraction is released with noise
sigma_b = m / 20 (the paper's choice), and z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2,
so that the two releases together cost what one Gaussian of multiplier z costs.
Then C <- C exp(-clip_lr (b - target_quantile)), b the noised fraction of
clients whose delta was within C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpifl.privacy.accounting import RunningAccount, Sampling
from mpifl.rng import Purpose, stream

SERVER_NOISE, COUNT_NOISE, CLIENT_SHARE = 0, 1, 2  # keys of the noise streams, after (seed, PRIVACY, round)
WITHIN = "privacy_within"  # uplink float64 field: 1 if the client's delta was within the clip before clipping


@dataclass(frozen=True)
class PrivacySettings:
    """[privacy] as the mechanism uses it; the same on every rank."""

    clip: float
    noise_multiplier: float  # z, accounted (found from target_epsilon when that is set)
    delta: float
    adaptive: bool
    target_quantile: float
    clip_lr: float
    noise: str  # "central" | "distributed"
    accountant: str
    sampling: Sampling
    seed: int
    dtype: np.dtype  # the model's: the clip travels in it, so both sides round it alike

    @property
    def count_noise(self) -> float:
        """sigma_b, the clipped count's noise (adaptive clipping only)."""
        return self.sampling.expected_cohort / 20.0

    @property
    def delta_noise_multiplier(self) -> float:
        """z_delta: the noise multiplier of the deltas' sum."""
        z = self.noise_multiplier
        if not self.adaptive or z == 0.0:
            return z
        return (z ** -2 - (2.0 * self.count_noise) ** -2) ** -0.5

    def check(self) -> str | None:
        """A message if the settings cannot work together, else None."""
        if self.adaptive and self.noise_multiplier >= 2.0 * self.count_noise:
            return (f"adaptive clipping splits the noise between the deltas and the clipped count (sigma_b = m/20 = "
                    f"{self.count_noise:g} for an expected cohort of m = {self.sampling.expected_cohort:g}); it needs "
                    f"privacy.noise_multiplier < 2 sigma_b = {2 * self.count_noise:g}, got {self.noise_multiplier:g}. "
                    "Sample more clients a round, lower the noise, or set privacy.adaptive = false.")
        return None


def clip_to(delta: np.ndarray, clip: float) -> bool:
    """Scale delta (in place) to L2 norm at most ``clip``; whether it was within the clip already."""
    size = float(np.sqrt(np.sum(np.square(delta, dtype=np.float64))))
    if size > clip:
        delta *= clip / size
    return size <= clip


class ClientPrivacy:
    """The client's half: clip, and with distributed noise, add this client's share."""

    def __init__(self, settings: PrivacySettings):
        self.settings = settings

    def apply(self, delta: np.ndarray, clip: float, rnd: int, client: int) -> float:
        """Clip delta in place (and add the noise share); returns 1.0 if it was within the clip, else 0.0."""
        within = clip_to(delta, clip)
        s = self.settings
        if s.noise == "distributed" and s.noise_multiplier > 0.0:
            sigma = s.delta_noise_multiplier * clip / math.sqrt(s.sampling.expected_cohort)
            noise = stream(s.seed, Purpose.PRIVACY, rnd, CLIENT_SHARE, client).standard_normal(delta.shape)
            delta += (sigma * noise).astype(delta.dtype)
        return float(within)


class ServerPrivacy:
    """The server's half: the noised mean of the clipped deltas, adaptive clipping, and the running epsilon."""

    def __init__(self, settings: PrivacySettings):
        self.settings = settings
        self.clip = np.array([float(np.asarray(settings.clip, dtype=settings.dtype))])  # checkpointed
        self.rounds = np.zeros(1)  # rounds released so far, checkpointed: the accountant is rebuilt from it
        self.account = RunningAccount(settings.accountant, settings.noise_multiplier, settings.sampling,
                                      settings.delta) if settings.noise_multiplier > 0 else None

    def combine(self, rnd: int, deltas: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, dict]:
        """(the noised mean of the clipped rows of ``deltas`` (m, n), float64; metrics for the round's record)."""
        s = self.settings
        clip = float(self.clip[0])
        rows = deltas.astype(np.float64)
        if s.noise == "central":  # clip again: a client that skipped clipping gains nothing (distributed noise
            # shares make each row larger than the clip, so there the clients' clipping is all there is)
            sizes = np.sqrt(np.einsum("ij,ij->i", rows, rows))
            rows *= np.minimum(1.0, clip / np.maximum(sizes, 1e-300))[:, None]
        total = rows.sum(axis=0) if rows.shape[0] else np.zeros(deltas.shape[1])
        return self.release(rnd, total, float(np.sum(within)))

    def combine_results(self, results) -> tuple[np.ndarray, dict]:
        """The noised mean of a round's RoundResults: from the rows, or from the sums secure aggregation gives."""
        if results.summed is not None:
            return self.release(results.round, results.summed, results.summed_within)
        within = results.fields.get(WITHIN, np.zeros(results.count))
        return self.combine(results.round, results.deltas.reshape(results.count, -1), within)

    def release(self, rnd: int, total: np.ndarray, within_count: float) -> tuple[np.ndarray, dict]:
        """The noised mean from the clipped deltas' sum (which secure aggregation gives without the rows)."""
        s = self.settings
        clip = float(self.clip[0])
        total = np.array(total, dtype=np.float64)
        if s.noise == "central" and s.noise_multiplier > 0.0:
            noise = stream(s.seed, Purpose.PRIVACY, rnd, SERVER_NOISE).standard_normal(total.shape)
            total += s.delta_noise_multiplier * clip * noise
        said = {"clip": clip}
        if s.adaptive:
            count = within_count
            if s.noise_multiplier > 0.0:
                count += s.count_noise * float(stream(s.seed, Purpose.PRIVACY, rnd, COUNT_NOISE).standard_normal())
            fraction = count / s.sampling.expected_cohort
            updated = clip * math.exp(-s.clip_lr * (fraction - s.target_quantile))
            self.clip[0] = float(np.asarray(updated, dtype=s.dtype))
            said["within_clip_noised"] = fraction
        self.rounds[0] += 1
        return total / s.sampling.expected_cohort, said

    def epsilon(self) -> float | None:
        """Epsilon at the job's delta after the rounds released so far; None without noise."""
        return None if self.account is None else self.account.epsilon_after(int(self.rounds[0]))

    def state(self) -> dict[str, np.ndarray]:
        return {"privacy_clip": self.clip, "privacy_rounds": self.rounds}
