"""[privacy] from a validated job config: whether it is on, its sampling, and the noise multiplier."""

from __future__ import annotations

import numpy as np

from mpifl.privacy.accounting import Sampling, noise_for
from mpifl.privacy.mechanism import PrivacySettings


def enabled(cfg) -> bool:
    """Privacy is on when it adds noise: a noise multiplier or a target epsilon."""
    return cfg.privacy.noise_multiplier > 0 or cfg.privacy.target_epsilon > 0


def sampling_of(cfg, n_clients: int) -> Sampling:
    return Sampling(cfg.server.sampling, n_clients, cfg.server.fraction)


def noise_multiplier(cfg, n_clients: int) -> float:
    """privacy.noise_multiplier, or the one that reaches privacy.target_epsilon after the job's rounds."""
    if cfg.privacy.target_epsilon > 0:
        try:
            return noise_for(cfg.privacy.target_epsilon, cfg.rounds, sampling_of(cfg, n_clients),
                             cfg.privacy.delta, cfg.privacy.accountant)
        except Exception as exc:  # dp-accounting's bracket search says why it found none
            from mpifl.errors import ConfigError
            raise ConfigError(f"privacy.target_epsilon = {cfg.privacy.target_epsilon}: no noise multiplier in "
                              f"[0.001, 1000] reaches it after {cfg.rounds} rounds ({exc}).") from None
    return cfg.privacy.noise_multiplier


def settings(cfg, n_clients: int, dtype: np.dtype, z: float) -> PrivacySettings | None:
    """The mechanism's settings with noise multiplier z, or None when privacy is off."""
    if not enabled(cfg):
        return None
    return PrivacySettings(
        clip=cfg.privacy.clip, noise_multiplier=z, delta=cfg.privacy.delta, adaptive=cfg.privacy.adaptive,
        target_quantile=cfg.privacy.target_quantile, clip_lr=cfg.privacy.clip_lr, noise=cfg.privacy.noise,
        accountant=cfg.privacy.accountant, sampling=sampling_of(cfg, n_clients), seed=cfg.seed,
        dtype=np.dtype(dtype),
    )


def local_noise_multiplier(cfg, mechanism: type) -> float:
    """Local DP's z: privacy.noise_multiplier, or the one whose single release costs privacy.target_epsilon."""
    from mpifl.privacy.local import noise_for as local_noise_for

    if cfg.privacy.target_epsilon > 0:
        try:
            return local_noise_for(mechanism, cfg.privacy.target_epsilon, cfg.privacy.delta, cfg.privacy.accountant)
        except Exception as exc:  # dp-accounting's bracket search says why it found none
            from mpifl.errors import ConfigError
            raise ConfigError(f"privacy.target_epsilon = {cfg.privacy.target_epsilon}: no noise multiplier in "
                              f"[0.1, 10000] makes one local release cost it ({exc}).") from None
    return cfg.privacy.noise_multiplier


def local_settings(cfg, mechanism: type, z: float):
    from mpifl.privacy.local import LocalSettings

    return LocalSettings(mechanism=mechanism, clip=cfg.privacy.clip, noise_multiplier=z, delta=cfg.privacy.delta,
                         accountant=cfg.privacy.accountant, seed=cfg.seed, source=cfg.privacy.noise_seed)
