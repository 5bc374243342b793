"""Client-level privacy mechanisms by their config name (privacy.mechanism): the one registry of them.

A mechanism is the pair the privacy stage (mpifl.stages.privacy) runs: a
client half that clips (and may add a noise share) before an update leaves
its rank, and a server half that turns the round's clipped updates into the
released mean, keeps the clip and the accountant, and says epsilon.  Its
``settle`` finds, once and on every rank together, what the halves share
(the noise multiplier a target epsilon needs).  Each mechanism imports its
accountant only when a job uses it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mpifl.constraints import Constraint
from mpifl.errors import ConfigError
from mpifl.registry import Registry


class Mechanism:
    name: ClassVar[str] = ""
    local_only: ClassVar[bool] = False  # only privacy.where = "local" runs it (no central accountant for it)
    runs_locally: ClassVar[bool] = False  # privacy.where = "local" can run it: it has the local_* methods below
    parameters: ClassVar[dict[str, tuple[Any, Constraint]]] = {}  # its privacy.<key> beyond the schema's

    @classmethod
    def settle(cls, comm, cfg, n_clients: int, dtype: np.dtype, is_root: bool) -> Any:
        """What both halves are built from, the same on every rank (collective)."""
        raise TypeError(f"privacy mechanism {cls.name!r} settles nothing.")

    @classmethod
    def client(cls, settings):
        """The client half: ``apply(delta, clip, round, client) -> float`` (1.0 if delta was within the clip)."""
        raise TypeError(f"privacy mechanism {cls.name!r} has no client half.")

    # -- local DP (mpifl.privacy.local): the noise a client adds to its own clipped update ------------------------

    @staticmethod
    def local_clip(delta: np.ndarray, clip: float) -> bool:
        """Clip delta in place to the norm whose sensitivity the noise is calibrated to; whether it was within."""
        raise TypeError("this privacy mechanism has no local form.")

    @staticmethod
    def local_noise(generator: np.random.Generator, scale: float, shape: tuple) -> np.ndarray:
        """Noise of the given scale (z C) for every value."""
        raise TypeError("this privacy mechanism has no local form.")

    @staticmethod
    def local_event(noise_multiplier: float):
        """One release as dp-accounting's event: the noise over the sensitivity 2C is z / 2."""
        raise TypeError("this privacy mechanism has no local form.")

    @staticmethod
    def pure_epsilon(noise_multiplier: float) -> float | None:
        """Epsilon of one release where it is pure (delta 0) DP, else None."""
        return None

    @staticmethod
    def pure_noise_for(epsilon: float) -> float | None:
        """The noise multiplier whose one release is pure epsilon-DP, where there is a formula, else None."""
        return None

    @classmethod
    def server(cls, settings, n_clients: int = 0, rounds: int = 0):
        """The server half: ``clip`` (a 1-value array sent down each round), ``combine_results(results)``,
        ``epsilon()`` (None without noise) and ``state()``."""
        raise TypeError(f"privacy mechanism {cls.name!r} has no server half.")


class GaussianMechanism(Mechanism):
    """DP-FedAvg (McMahan et al. 2018): clip each delta to C, add N(0, z^2 C^2) to the sum (centrally, or as the
    clients' shares), adaptive clipping (Andrew et al. 2021), accounted by dp-accounting's RDP or PLD.  With
    privacy.where = "local", each client adds N(0, z^2 C^2) to its own clipped delta (mpifl.privacy.local)."""

    name = "gaussian"
    runs_locally = True

    @staticmethod
    def local_clip(delta, clip):
        size = float(np.sqrt(np.sum(np.square(delta, dtype=np.float64))))  # the L2 norm
        if size > clip:
            delta *= clip / size
        return size <= clip

    @staticmethod
    def local_noise(generator, scale, shape):
        return scale * generator.standard_normal(shape)

    @staticmethod
    def local_event(noise_multiplier):
        import dp_accounting

        return dp_accounting.GaussianDpEvent(noise_multiplier / 2.0)

    @classmethod
    def settle(cls, comm, cfg, n_clients, dtype, is_root):
        from mpifl.agree import collectively
        from mpifl.privacy import settings as privacy_config

        if cfg.privacy.where == "local":
            z = collectively(comm, lambda: privacy_config.local_noise_multiplier(cfg, cls) if is_root else 0.0)
            return privacy_config.local_settings(cfg, cls, comm.bcast(z, root=0))
        z = collectively(comm, lambda: privacy_config.noise_multiplier(cfg, n_clients) if is_root else 0.0)
        settings = privacy_config.settings(cfg, n_clients, dtype, comm.bcast(z, root=0))
        collectively(comm, lambda: _refuse(settings.check()))
        return settings

    @classmethod
    def client(cls, settings):
        from mpifl.privacy.local import LocalClientPrivacy, LocalSettings
        from mpifl.privacy.mechanism import ClientPrivacy

        return LocalClientPrivacy(settings) if isinstance(settings, LocalSettings) else ClientPrivacy(settings)

    @classmethod
    def server(cls, settings, n_clients: int = 0, rounds: int = 0):
        from mpifl.privacy.local import LocalServerPrivacy, LocalSettings
        from mpifl.privacy.mechanism import ServerPrivacy

        if isinstance(settings, LocalSettings):
            return LocalServerPrivacy(settings, n_clients, rounds)
        return ServerPrivacy(settings)


class LaplaceMechanism(GaussianMechanism):
    """Local only: each client clips its delta to L1 norm C and adds Laplace(0, z C) noise to every value, an
    (2/z, 0)-DP release a round, composed per client by dp-accounting."""

    name = "laplace"
    local_only = True

    @staticmethod
    def local_clip(delta, clip):
        size = float(np.sum(np.abs(delta, dtype=np.float64)))  # the L1 norm, Laplace's sensitivity
        if size > clip:
            delta *= clip / size
        return size <= clip

    @staticmethod
    def local_noise(generator, scale, shape):
        return generator.laplace(0.0, scale, shape)

    @staticmethod
    def local_event(noise_multiplier):
        import dp_accounting

        return dp_accounting.LaplaceDpEvent(noise_multiplier / 2.0)

    @staticmethod
    def pure_epsilon(noise_multiplier):
        return 2.0 / noise_multiplier  # sensitivity 2C over scale z C

    @staticmethod
    def pure_noise_for(epsilon):
        return 2.0 / epsilon


def _refuse(problem: str | None) -> None:
    if problem:
        raise ConfigError(f"privacy: {problem}")


PRIVACY_MECHANISMS: Registry = Registry("privacy mechanism", "privacy.mechanism", Mechanism,
                                        group="mpifl.privacy_mechanisms")
PRIVACY_MECHANISMS.register(GaussianMechanism)
PRIVACY_MECHANISMS.register(LaplaceMechanism)


def local_mechanisms() -> list[str]:
    """The privacy.mechanism names that privacy.where = "local" can run."""
    return [name for name, cls in PRIVACY_MECHANISMS.items() if cls.runs_locally]
