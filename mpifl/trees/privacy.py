"""Differentially private boosted trees: the server adds Gaussian noise to every sum a federated tree job
releases, and the accountant counts the releases (record-level DP: neighbouring data sets differ in one row).

What a job releases, each a Gaussian mechanism of noise multiplier z on a sum whose L2 sensitivity to one row
is known (so each costs what one Gaussian of multiplier z costs):

1. the sketch: F x 16,384 bucket counts between public feature bounds (model.feature_low, feature_high; one
   row adds 1 to one bucket of each feature: sensitivity sqrt(F));
2. the class counts (or, for squared error, the row count) that set the base score and bound the fixed point
   (sensitivity 1; squared error starts from 0);
3. each released node histogram: a row adds (g / C, h / C, 1) to one bin of each feature, its gradient
   clipped to [-C, C] and its Hessian to [0, C] (C = privacy.clip): sensitivity sqrt(3 F).  The nodes of one
   depth hold disjoint rows, so one depth is one release (parallel composition); a tree releases at most
   min(max_depth, max_leaves - 1) + 1 depths, and the accountant counts that bound for every tree, so epsilon is
   fixed before the first tree and does not depend on the trees grown.

Splits, leaf values and siblings by subtraction are computed from the noised sums: post-processing.  Client
sampling would amplify the guarantee; the accountant does not claim it.  The gradient peaks and row counts that
fix the fixed-point scale come from the clip and the noised counts, never from the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpifl.errors import ConfigError
from mpifl.rng import Purpose, stream

SKETCH, COUNTS = 0, 1  # the first two releases' stream keys; node histograms follow as (2, tree, histogram)


@dataclass(frozen=True)
class TreePrivacy:
    """A private tree job's settings, the same on every rank."""

    noise_multiplier: float
    clip: float
    delta: float
    low: float
    high: float
    releases: int  # the Gaussian releases the accountant counts for the whole job
    seed: int

    def noise(self, shape, *key: int) -> np.ndarray:
        """Standard normals for one release, from (seed, TREE_PRIVACY, *key)."""
        return stream(self.seed, Purpose.TREE_PRIVACY, *key).standard_normal(shape)

    def noised_counts(self, counts: np.ndarray, sensitivity: float, *key: int) -> None:
        """counts += round(N(0, (z sensitivity)^2)), floored at 0, in place (int64)."""
        counts += np.rint(self.noise_multiplier * sensitivity * self.noise(counts.shape, *key)).astype(np.int64)
        np.maximum(counts, 0, out=counts)

    def epsilon(self) -> float:
        return epsilon(self.noise_multiplier, self.releases, self.delta)


def releases(rounds: int, outputs: int, max_leaves: int, max_depth: int) -> int:
    """The sketch, the counts, and each tree's most depths."""
    depths = min(max_depth if max_depth else max_leaves - 1, max_leaves - 1) + 1
    return 2 + rounds * outputs * depths


def epsilon(noise_multiplier: float, count: int, delta: float) -> float:
    """Epsilon at delta after ``count`` Gaussian releases of multiplier z (dp-accounting's RDP accountant)."""
    import dp_accounting
    from dp_accounting import rdp

    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier), count))
    return float(accountant.get_epsilon(delta))


def noise_for(target: float, count: int, delta: float) -> float:
    """The smallest multiplier whose epsilon after ``count`` releases is at most ``target``."""
    import dp_accounting
    from dp_accounting import rdp

    return float(dp_accounting.calibrate_dp_mechanism(
        rdp.RdpAccountant, lambda z: dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), count),
        target, delta, bracket_interval=dp_accounting.ExplicitBracketInterval(1e-3, 1e4), tol=1e-3))


def settle(cfg, outputs: int) -> TreePrivacy | None:
    """The job's TreePrivacy, or None when privacy is off; settings that cannot work are refused."""
    p = cfg.privacy
    if not (p.noise_multiplier > 0 or p.target_epsilon > 0):
        return None
    if not cfg.model.feature_low < cfg.model.feature_high:
        raise ConfigError("Differentially private trees bin between public bounds: set model.feature_low < "
                          "model.feature_high (every feature's range, known without the rows).")
    if p.noise != "central" or p.adaptive or p.accountant != "rdp":
        raise ConfigError("Private trees take the server's noise and the RDP accountant: privacy.noise = "
                          "\"central\", privacy.adaptive = false, privacy.accountant = \"rdp\".")
    count = releases(cfg.rounds, outputs, cfg.model.max_leaves, cfg.model.max_depth)
    z = p.noise_multiplier or noise_for(p.target_epsilon, count, p.delta)
    return TreePrivacy(z, p.clip, p.delta, cfg.model.feature_low, cfg.model.feature_high, count, cfg.seed)


def histogram_sensitivity(features: int) -> float:
    """A row's (g / C, h / C, 1) in one bin of each feature."""
    return math.sqrt(3.0 * features)
