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
    parameters: ClassVar[dict[str, tuple[Any, Constraint]]] = {}  # its privacy.<key> beyond the schema's

    @classmethod
    def settle(cls, comm, cfg, n_clients: int, dtype: np.dtype, is_root: bool) -> Any:
        """What both halves are built from, the same on every rank (collective)."""
        raise TypeError(f"privacy mechanism {cls.name!r} settles nothing.")

    @classmethod
    def client(cls, settings):
        """The client half: ``apply(delta, clip, round, client) -> float`` (1.0 if delta was within the clip)."""
        raise TypeError(f"privacy mechanism {cls.name!r} has no client half.")

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
    distribution = "gaussian"

    @classmethod
    def settle(cls, comm, cfg, n_clients, dtype, is_root):
        from mpifl.agree import collectively
        from mpifl.privacy import settings as privacy_config

        if cfg.privacy.where == "local":
            z = collectively(comm, lambda: privacy_config.local_noise_multiplier(cfg, cls.distribution)
                             if is_root else 0.0)
            return privacy_config.local_settings(cfg, cls.distribution, comm.bcast(z, root=0))
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
    distribution = "laplace"
    local_only = True


def _refuse(problem: str | None) -> None:
    if problem:
        raise ConfigError(f"privacy: {problem}")


PRIVACY_MECHANISMS: Registry = Registry("privacy mechanism", "privacy.mechanism", Mechanism,
                                        group="mpifl.privacy_mechanisms")
PRIVACY_MECHANISMS.register(GaussianMechanism)
PRIVACY_MECHANISMS.register(LaplaceMechanism)
