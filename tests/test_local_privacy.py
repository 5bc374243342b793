"""Local differential privacy: each client's clip and noise against the mechanisms' formulas, its epsilon against
dp-accounting by hand, the release counts behind the spread, and the settings refused (whole runs:
tests/test_mpi_local_privacy.py)."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp
from scipy.stats import norm

from mpifl import config
from mpifl.errors import ConfigError
from mpifl.privacy import local
from mpifl.privacy.local import LocalClientPrivacy, LocalSettings, Participation, release_event
from mpifl.privacy.mechanisms import PRIVACY_MECHANISMS


def epsilon_after(name, z, releases, delta, kind):
    return local.epsilon_after(PRIVACY_MECHANISMS[name], z, releases, delta, kind)


def noise_for(name, target, delta, kind):
    return local.noise_for(PRIVACY_MECHANISMS[name], target, delta, kind)

N = 200_000


def settings(**kw) -> LocalSettings:
    base = dict(mechanism=PRIVACY_MECHANISMS["gaussian"], clip=0.7, noise_multiplier=1.3, delta=1e-5, accountant="rdp", seed=4,
                source="job")
    return LocalSettings(**{**base, **kw})


def noised(s: LocalSettings, delta: np.ndarray, rnd=3, client=11) -> np.ndarray:
    out = delta.copy()
    LocalClientPrivacy(s).apply(out, s.clip, rnd, client)
    return out


def test_gaussian_noise_has_std_z_times_clip_around_the_l2_clipped_delta():
    s = settings()
    delta = np.full(N, 10.0)  # far outside the clip: scaled to L2 norm 0.7, each value 0.7 / sqrt(N)
    out = noised(s, delta)
    noise = out - 0.7 / math.sqrt(N)
    assert abs(noise.std() / (1.3 * 0.7) - 1) < 0.01  # 200,000 draws: within 0.3% (2 sigma)
    assert abs(noise.mean()) < 5 * 1.3 * 0.7 / math.sqrt(N)


def test_laplace_noise_has_scale_z_times_clip_around_the_l1_clipped_delta():
    s = settings(mechanism=PRIVACY_MECHANISMS["laplace"], noise_multiplier=0.5)
    b = 0.5 * 0.7
    noise = noised(s, np.full(N, 10.0)) - 0.7 / N  # L1 clip: each of N equal values becomes 0.7 / N
    assert abs(np.mean(np.abs(noise)) / b - 1) < 0.01  # E|X| = b for Laplace(0, b)
    assert abs(noise.var() / (2 * b * b) - 1) < 0.02  # Var X = 2 b^2
    assert abs(noise.mean()) < 5 * math.sqrt(2) * b / math.sqrt(N)


@pytest.mark.parametrize("distribution, norm_of", [("gaussian", lambda v: np.linalg.norm(v)),
                                                   ("laplace", lambda v: np.abs(v).sum())])
def test_without_noise_the_clip_bounds_the_right_norm_and_leaves_small_deltas_alone(distribution, norm_of):
    s = settings(mechanism=PRIVACY_MECHANISMS[distribution], noise_multiplier=0.0)
    rng = np.random.default_rng(0)
    for scale in (1e-4, 0.3, 50.0):
        delta = rng.standard_normal(40) * scale
        out = noised(s, delta)
        assert norm_of(out) <= 0.7 * (1 + 1e-12)
        if norm_of(delta) <= 0.7:
            np.testing.assert_array_equal(out, delta)


def test_the_noise_is_seeded_by_seed_round_and_client_unless_drawn_from_the_os():
    s = settings()
    zeros = np.zeros(100)
    np.testing.assert_array_equal(noised(s, zeros), noised(s, zeros))
    assert not np.array_equal(noised(s, zeros, client=11), noised(s, zeros, client=12))
    assert not np.array_equal(noised(s, zeros, rnd=3), noised(s, zeros, rnd=4))
    fresh = settings(source="os")
    assert not np.array_equal(noised(fresh, zeros), noised(fresh, zeros))


def test_one_release_costs_what_the_mechanisms_formulas_say():
    """Sensitivity 2C: a Laplace release of scale zC is (2/z, 0)-DP; a Gaussian release of std zC is the Gaussian
    mechanism with multiplier z/2, whose exact delta at the accounted epsilon (Balle and Wang 2018) is within the
    job's delta (RDP's epsilon is an upper bound)."""
    assert epsilon_after("laplace", 0.5, 1, 1e-5, "rdp") == 4.0
    z = 2.7
    eps = epsilon_after("gaussian", z, 1, 1e-5, "rdp")
    sigma = z / 2  # over the sensitivity
    exact_delta = norm.cdf(1 / (2 * sigma) - eps * sigma) - math.exp(eps) * norm.cdf(-1 / (2 * sigma) - eps * sigma)
    assert 0 < exact_delta <= 1e-5
    tight = epsilon_after("gaussian", z, 1, 1e-5, "pld")
    assert tight < eps  # PLD is tighter than RDP for one Gaussian
    # the classical Gaussian mechanism (Dwork and Roth, Thm A.1; epsilon < 1) needs at least the noise the
    # calibration finds
    target = 0.8
    calibrated = noise_for("gaussian", target, 1e-5, "rdp")
    assert calibrated * 0.5 <= 2 * math.sqrt(2 * math.log(1.25 / 1e-5)) / target
    assert epsilon_after("gaussian", calibrated, 1, 1e-5, "rdp") == pytest.approx(target, rel=2e-3)
    assert noise_for("laplace", 4.0, 1e-5, "rdp") == 0.5


@pytest.mark.parametrize("distribution", ["gaussian", "laplace"])
def test_a_clients_epsilon_after_r_releases_is_dp_accountings_composition(distribution):
    z, delta = 3.0, 1e-6
    event = dp_accounting.GaussianDpEvent(z / 2) if distribution == "gaussian" else dp_accounting.LaplaceDpEvent(z / 2)
    for releases in (1, 7, 40):
        by_hand = rdp.RdpAccountant()
        by_hand.compose(event, releases)
        expected = by_hand.get_epsilon(delta)
        if distribution == "laplace":
            expected = min(expected, releases * 2 / z)  # basic composition of a pure-DP release is also a bound
        assert epsilon_after(distribution, z, releases, delta, "rdp") == pytest.approx(expected, rel=1e-12)
    assert release_event(PRIVACY_MECHANISMS[distribution], z) == event


def test_release_counts_give_the_spread_of_epsilon_over_the_clients_that_released():
    rng = np.random.default_rng(1)
    counts = Participation(500, 30)
    for _ in range(30):
        counts.released(np.flatnonzero(rng.random(500) < 0.2))
    s = settings()
    spread = counts.spread(s)
    took_part = counts.counts[counts.counts > 0]
    assert spread["released_clients"] == took_part.size
    assert spread["epsilon_max"] == s.epsilon_after(int(took_part.max()))
    assert spread["epsilon_min"] == s.epsilon_after(int(took_part.min()))
    assert spread["epsilon_median"] == s.epsilon_after(int(np.sort(took_part)[(took_part.size - 1) // 2]))
    assert counts.histogram.sum() == 500 and counts.histogram[0] == 500 - took_part.size
    assert Participation(10, 5).spread(s) == {"released_clients": 0}


LOCAL = ["privacy.where=local", "privacy.noise_multiplier=1"]


@pytest.mark.parametrize("overrides, message", [
    (["privacy.where=local"], "no noise is set"),
    (["privacy.where=local", "privacy.target_epsilon=0"], "no noise is set"),  # epsilon 0: no finite noise gives it
    (["privacy.where=local", "privacy.target_epsilon=-1"], "'privacy.target_epsilon' parameter"),
    ([*LOCAL, "privacy.delta=1"], "'privacy.delta' parameter"),
    ([*LOCAL, "privacy.delta=0"], "'privacy.delta' parameter"),
    ([*LOCAL, "privacy.target_epsilon=2"], "not both"),
    ([*LOCAL, "privacy.adaptive=true"], "clipped-or-not bit"),
    ([*LOCAL, "privacy.noise=distributed"], "already has each client add the whole noise"),
    ([*LOCAL, "server.strategy=scaffold"], "sends delta_control beside each update"),
    ([*LOCAL, "server.strategy=fednova"], "sends steps beside each update"),
    ([*LOCAL, "evaluate.per_client=true"], "never leave its rank"),
    ([*LOCAL, "stop.patience=2", "data.validation_fraction=0.2"], "never reaches the server"),
    ([*LOCAL, "privacy.where=elsewhere"], "'privacy.where' parameter"),
    (["privacy.mechanism=laplace", "privacy.noise_multiplier=1"], "a local mechanism"),
])
def test_local_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load(overrides=overrides)


def test_a_codec_after_local_noise_is_post_processing_and_accepted():
    """Central DP refuses a codec (it can raise a clipped delta's norm before the server's noise); local noise is
    added first, so whatever a codec does to the noised update cannot weaken the client's guarantee."""
    cfg = config.load(overrides=[*LOCAL, "compress.uplink=topk", "compress.error_feedback=true"])
    assert cfg.privacy.where == "local" and cfg.compress.uplink == "topk"
    with pytest.raises(ConfigError, match="break the sensitivity bound"):
        config.load(overrides=["privacy.noise_multiplier=1", "compress.uplink=topk"])


def test_the_privacy_command_answers_local_questions(capsys):
    from mpifl.__main__ import main

    assert main(["privacy", "--local", "gaussian", "--rounds", "20", "--noise", "3"]) == 0
    words = capsys.readouterr().out.split()
    assert float(words[1]) == pytest.approx(epsilon_after("gaussian", 3.0, 1, 1e-5, "rdp"), rel=1e-6)
    assert float(words[5]) == pytest.approx(epsilon_after("gaussian", 3.0, 20, 1e-5, "rdp"), rel=1e-6)
    assert main(["privacy", "--local", "laplace", "--rounds", "5", "--epsilon", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert float(first[2]) == 1.0  # z = 2 / epsilon
    with pytest.raises(SystemExit):
        main(["privacy", "--local", "laplace", "--rounds", "5", "--epsilon", "-1"])
