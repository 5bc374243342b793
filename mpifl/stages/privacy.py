"""The privacy stage: DP-FedAvg's clip and noise share on the client, the noised mean and accounting on the server.

The mechanism itself is mpifl.privacy.mechanism; this module plugs it into
the chain and is the only place that imports it (and with it dp-accounting),
so a job without [privacy] never pays for the accountant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpifl.errors import ConfigError
from mpifl.privacy.mechanisms import PRIVACY_MECHANISMS
from mpifl.protocol import FLOAT64, Field
from mpifl.stages.base import Declared, Outgoing, Stage, StageBuild

CLIP = "privacy_clip"  # downlink field: this round's clip C
WITHIN = "privacy_within"  # uplink float64 field: 1 if the client's delta was within the clip before clipping


class PrivacyStage(Stage):
    name = "privacy"
    section = "privacy"
    summary_key = "privacy"
    mode_reason = "differential privacy here is client-level DP for federated rounds"
    downlink = (Field(CLIP, 1),)
    uplink = (Field(WITHIN, 1, FLOAT64),)
    releases_empty_rounds = True  # every round releases a noised mean, even of no client
    weighs_clients_equally = True

    @staticmethod
    def enabled(cfg) -> bool:
        """Privacy is on when it adds noise: a noise multiplier or a target epsilon."""
        return cfg.privacy.noise_multiplier > 0 or cfg.privacy.target_epsilon > 0

    @classmethod
    def check(cls, cfg, origin) -> None:
        """[privacy] against the rest of the job: what DP-FedAvg's analysis needs beyond the declarations."""
        local = cfg.privacy.where == "local"
        if local and not cls.enabled(cfg):
            raise ConfigError(f"The 'privacy.where' parameter in {origin('privacy.where')} is 'local', but no noise is "
                              "set: give privacy.noise_multiplier > 0, or privacy.target_epsilon > 0 (the epsilon of "
                              "one client's release).")
        if not cls.enabled(cfg):
            return
        key = "privacy.target_epsilon" if cfg.privacy.target_epsilon > 0 else "privacy.noise_multiplier"
        where = f"The '{key}' parameter in {origin(key)} turns on differential privacy"
        if cfg.privacy.target_epsilon > 0 and cfg.privacy.noise_multiplier > 0:
            raise ConfigError(f"{where}; give privacy.noise_multiplier or privacy.target_epsilon, not both "
                              f"(the first fixes the noise, the second finds it).")
        if local:
            cls.check_local(cfg, origin)
            return
        if PRIVACY_MECHANISMS[cfg.privacy.mechanism].local_only:
            raise ConfigError(f"The 'privacy.mechanism' parameter in {origin('privacy.mechanism')} is "
                              f"{cfg.privacy.mechanism!r}, a local mechanism (each client noises its own update). "
                              "Set privacy.where = \"local\", or use privacy.mechanism = \"gaussian\" for central "
                              "DP-FedAvg.")
        if cfg.privacy.accountant == "pld" and cfg.server.sampling != "poisson":
            raise ConfigError(f"The 'privacy.accountant' parameter in {origin('privacy.accountant')} is 'pld', which "
                              "dp-accounting supports only for Poisson sampling. Set server.sampling = \"poisson\" "
                              "or privacy.accountant = \"rdp\".")
        distributed = cfg.privacy.noise == "distributed"
        if distributed and cfg.server.sampling == "poisson":
            raise ConfigError(f"The 'privacy.noise' parameter in {origin('privacy.noise')} is 'distributed': each of "
                              "the m expected clients adds 1/m of the noise variance, so a Poisson cohort smaller than "
                              "m would carry less noise than accounted. Use server.sampling = \"fixed\".")
        if distributed and cfg.train.stragglers > 0 and cfg.server.drop_stragglers:
            raise ConfigError(f"The 'privacy.noise' parameter in {origin('privacy.noise')} is 'distributed', and "
                              "dropped stragglers would take their noise shares with them. Keep the stragglers "
                              "(server.drop_stragglers = false) or use privacy.noise = \"central\".")

    @classmethod
    def check_local(cls, cfg, origin) -> None:
        """Local DP: the settings that would put something un-noised on the wire, or have no meaning locally."""
        if not PRIVACY_MECHANISMS[cfg.privacy.mechanism].runs_locally:
            raise ConfigError(f"The 'privacy.mechanism' parameter in {origin('privacy.mechanism')} is "
                              f"{cfg.privacy.mechanism!r}, which has no local form (local_clip, local_noise, "
                              "local_event). Use gaussian or laplace with privacy.where = \"local\".")
        if cfg.privacy.noise == "distributed":
            raise ConfigError(f"The 'privacy.noise' parameter in {origin('privacy.noise')} is 'distributed', but "
                              "privacy.where = \"local\" already has each client add the whole noise. Remove "
                              "privacy.noise.")
        if cfg.privacy.adaptive:
            raise ConfigError(f"The 'privacy.adaptive' parameter in {origin('privacy.adaptive')} is true, but adaptive "
                              "clipping needs each client's clipped-or-not bit, which local DP would send un-noised. "
                              "Set privacy.adaptive = false.")
        if cfg.evaluate.per_client:
            raise ConfigError(f"The 'evaluate.per_client' parameter in {origin('evaluate.per_client')} writes each "
                              "client's figures, which under local DP never leave its rank. Set "
                              "evaluate.per_client = false.")
        if cfg.stop.patience and not cfg.secagg.enabled:
            raise ConfigError(f"The 'stop.patience' parameter in {origin('stop.patience')} stops on "
                              f"{cfg.stop.metric!r}, a figure of the clients' rows, which under local DP alone never "
                              "reaches the server. Add secagg.enabled = true (its masked sum carries the clients' "
                              "figures), or set stop.patience = 0.")

    @classmethod
    def declares(cls, cfg) -> Declared:
        key = "privacy.target_epsilon" if cfg.privacy.target_epsilon > 0 else "privacy.noise_multiplier"
        if cfg.privacy.where == "local":
            return Declared("local differential privacy", "privacy.where", needs={
                "noised_only": "lets nothing about a client's data leave its rank except its noised update",
            })
        return Declared("differential privacy", key, needs={
            "cohorts": "accounts each round as one release of a sampled cohort (an asynchronous buffer's members are "
                      "not sampled independently; dp-accounting has no event for it)",
            "sum_step": "replaces the server step's mean of the deltas with the noised mean of the clipped deltas",
            "bounded_norms": "bounds each client's contribution by the clip (its sensitivity analysis is that of "
                             "the clipped sum)",
        })

    @classmethod
    def settle(cls, comm, cfg, n_clients: int, dtype: np.dtype, is_root: bool):
        """The mechanism's settings on every rank (the Gaussian mechanism's root finds the noise multiplier a
        target epsilon needs); a problem fails every rank together."""
        return PRIVACY_MECHANISMS[cfg.privacy.mechanism].settle(comm, cfg, n_clients, dtype, is_root)

    def __init__(self, build: StageBuild):
        mechanism = PRIVACY_MECHANISMS[build.cfg.privacy.mechanism]
        self.settings = build.settled
        self.cfg = build.cfg
        self.local = build.cfg.privacy.where == "local"
        self.releases_empty_rounds = not self.local  # local DP: no client, no release, nothing to add
        self.hides_client_stats = self.local  # a client's loss or row count would leave its rank un-noised
        self.client = mechanism.client(self.settings) if build.hosted else None
        self.server = None if build.hosted else mechanism.server(self.settings, build.n_clients, build.cfg.rounds)

    # the client's half: clip, and with distributed noise add this client's share, before anything leaves

    def send(self, update: Outgoing) -> None:
        clip = float(update.downlink[CLIP][0])
        update.stats[WITHIN][0] = self.client.apply(update.delta, clip, update.round, update.client)

    # the server's half: the noised mean replaces the mean (the strategy calls it through its Setup)

    def release(self):
        """What a strategy's combine() calls instead of its aggregator (central DP); local DP's updates arrive
        noised, so the aggregator runs on them as it is (post-processing)."""
        return None if self.local else self.server

    def receive(self, results, key):
        """Local DP: count each delivered update as one release of its client's."""
        if self.local:
            self.server.received(results.clients)
        return results

    def downlink_values(self) -> dict[str, np.ndarray]:
        return {CLIP: self.server.clip}

    def round_metrics(self, rnd: int, training: bool, logged: bool) -> dict[str, Any]:
        if not (training and logged):
            return {}
        if self.local:  # each client's epsilon after its own releases: the worst, and the spread
            spread = self.server.spread()
            return {"epsilon": spread["epsilon_max"], **spread} if "epsilon_max" in spread else spread
        epsilon = self.server.epsilon()  # None without noise
        return {} if epsilon is None else {"epsilon": epsilon}  # at the job's delta, after the rounds so far

    def server_state(self) -> dict[str, np.ndarray]:
        return self.server.state()

    def banner(self) -> list[str]:
        cfg, s = self.cfg, self.settings
        if self.local:
            return [f"privacy: local {s.distribution} noise, multiplier {s.noise_multiplier:.4f} (scale "
                    f"{s.scale:g}): epsilon {s.epsilon_per_release():.4g} per release at delta {cfg.privacy.delta:g}, "
                    f"composed per client ({cfg.privacy.accountant} accountant)"]
        if cfg.privacy.target_epsilon <= 0:
            return []
        return [f"privacy: noise multiplier {s.noise_multiplier:.4f} reaches epsilon {cfg.privacy.target_epsilon:g} "
                f"at delta {cfg.privacy.delta:g} after {cfg.rounds} rounds ({cfg.privacy.accountant} "
                f"accountant, {cfg.server.sampling} sampling)"]

    def summary(self, records: list) -> dict[str, Any]:
        """[privacy] as run: the final (epsilon, delta), the accountant, the sampling and the noise that gave them."""
        cfg, s = self.cfg, self.settings
        if self.local:  # every rank writes it, from the records: the last recorded spread of the clients' epsilon
            spread = next((r.stages[self.name] for r in reversed(records)
                           if r.stages and "epsilon" in r.stages.get(self.name, {})), {})
            return {"privacy": {
                "where": "local", "mechanism": s.distribution, "clip": s.clip, "noise_multiplier": s.noise_multiplier,
                "noise_scale": s.scale, "delta": s.delta, "accountant": s.accountant, "noise_seed": s.source,
                "target_epsilon": cfg.privacy.target_epsilon or None,
                "epsilon_per_release": s.epsilon_per_release(), "epsilon": None, **spread,
            }}
        last_clip = next((r.server["clip"] for r in reversed(records) if r.server and "clip" in r.server), None)
        return {"privacy": {
            "epsilon": next((r.stages[self.name]["epsilon"] for r in reversed(records)
                             if r.stages and "epsilon" in r.stages.get(self.name, {})), None),
            "delta": cfg.privacy.delta, "accountant": cfg.privacy.accountant, "sampling": cfg.server.sampling,
            "sampling_rate": cfg.server.fraction, "clients": s.sampling.clients,
            "expected_cohort": s.sampling.expected_cohort, "noise_multiplier": s.noise_multiplier,
            "target_epsilon": cfg.privacy.target_epsilon or None, "noise": cfg.privacy.noise,
            "adaptive_clipping": cfg.privacy.adaptive, "clip": cfg.privacy.clip, "final_clip": last_clip,
            "where": "server",
        }}

