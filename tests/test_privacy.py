"""Client-level DP: clipping, the noise's scale, the accountant against dp-accounting (whole private runs:
tests/test_mpi_privacy.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpifl import config
from mpifl.errors import ConfigError
from mpifl.privacy.accounting import Sampling, epsilon, fresh_accountant, noise_for, round_event
from mpifl.privacy.mechanism import ClientPrivacy, PrivacySettings, ServerPrivacy, clip_to
from mpifl.strategies.sampling import sample_clients

RNG = np.random.default_rng(0)


def settings(**kw) -> PrivacySettings:
    base = dict(clip=1.0, noise_multiplier=1.0, delta=1e-5, adaptive=False, target_quantile=0.5, clip_lr=0.2,
                noise="central", accountant="rdp", sampling=Sampling("fixed", 100, 0.2), seed=3,
                dtype=np.dtype(np.float64))
    return PrivacySettings(**{**base, **kw})


def test_clipping_bounds_every_contribution_and_leaves_small_ones_alone():
    for scale in (0.01, 0.5, 3.0, 1e6):
        delta = RNG.standard_normal((4, 5)) * scale
        before = delta.copy()
        within = clip_to(delta, 1.0)
        assert np.linalg.norm(delta) <= 1.0 + 1e-12
        assert within == (np.linalg.norm(before) <= 1.0)
        if within:
            np.testing.assert_array_equal(delta, before)
        else:
            np.testing.assert_allclose(delta, before / np.linalg.norm(before))


def test_the_server_clips_again_and_adds_noise_of_std_z_times_clip_over_the_fixed_denominator():
    s = settings(noise_multiplier=1.3, clip=0.7)
    server = ServerPrivacy(s)
    n = 200_000
    huge = np.full((3, n), 10.0)  # three clients that did not clip: each counts as norm 0.7 at most
    mean, said = server.combine(5, huge, np.zeros(3))
    signal = 3 * 0.7 / math.sqrt(n)
    noise = mean * s.sampling.expected_cohort - signal
    assert said["clip"] == 0.7
    assert abs(noise.std() / (1.3 * 0.7) - 1) < 0.01  # 200,000 draws: the sample std is within 0.3% (2 sigma)
    assert abs(noise.mean()) < 5 * 1.3 * 0.7 / math.sqrt(n)
    again, _ = ServerPrivacy(s).combine(5, huge, np.zeros(3))
    np.testing.assert_array_equal(mean, again)  # seeded by (seed, round)


def test_distributed_shares_sum_to_the_central_noise():
    s = settings(noise="distributed", noise_multiplier=2.0, clip=1.0, sampling=Sampling("fixed", 40, 0.25))
    client = ClientPrivacy(s)
    n, m = 50_000, s.sampling.cohort
    total = np.zeros(n)
    for k in range(m):
        share = np.zeros(n)
        client.apply(share, 1.0, rnd=1, client=k)
        total += share
    assert abs(total.std() / (2.0 * 1.0) - 1) < 0.015
    mean, _ = ServerPrivacy(s).combine(1, np.zeros((m, n)), np.ones(m))
    assert not mean.any()  # distributed: the server adds nothing


def test_adaptive_clipping_follows_the_geometric_update_and_splits_the_noise():
    s = settings(adaptive=True, noise_multiplier=0.5, sampling=Sampling("fixed", 100, 0.4))  # sigma_b = 2
    assert s.delta_noise_multiplier == pytest.approx((0.5 ** -2 - 4.0 ** -2) ** -0.5)
    server = ServerPrivacy(s)
    within = np.array([1.0] * 30 + [0.0] * 10)
    _, said = server.combine(2, np.zeros((40, 3)), within)
    count_noise = 2.0 * float(np.random.Generator(np.random.PCG64(np.random.SeedSequence([3, 12, 2, 1])))
                              .standard_normal())
    expected_fraction = (30 + count_noise) / 40
    assert said["within_clip_noised"] == pytest.approx(expected_fraction)
    assert server.clip[0] == pytest.approx(math.exp(-0.2 * (expected_fraction - 0.5)))
    assert "needs privacy.noise_multiplier < 2 sigma_b" in settings(adaptive=True, noise_multiplier=5.0).check()


@pytest.mark.parametrize("kind, sampling", [("rdp", Sampling("fixed", 100, 0.1)), ("rdp", Sampling("poisson", 100, 0.1)),
                                            ("pld", Sampling("poisson", 100, 0.1))])
def test_epsilon_is_dp_accountings_own(kind, sampling):
    direct = fresh_accountant(kind, sampling)
    direct.compose(round_event(1.1, sampling), 30)
    assert epsilon(30, 1.1, sampling, 1e-5, kind) == pytest.approx(direct.get_epsilon(1e-5), rel=1e-9)


def test_target_epsilon_finds_a_noise_within_1_percent_of_the_target():
    for sampling in (Sampling("poisson", 100, 0.05), Sampling("fixed", 50, 0.2)):
        z = noise_for(3.0, 40, sampling, 1e-5)
        assert 0.99 * 3.0 <= epsilon(40, z, sampling, 1e-5) <= 3.0 * 1.0001


def test_poisson_sampling_draws_each_client_independently():
    masks = np.array([sample_clients(0, r, 50, 0.2, poisson=True) for r in range(400)])
    assert len({int(m.sum()) for m in masks}) > 5  # the cohort's size varies
    assert abs(masks.mean() - 0.2) < 0.01
    np.testing.assert_array_equal(masks[7], sample_clients(0, 7, 50, 0.2, poisson=True))


@pytest.mark.parametrize("overrides, message", [
    (["privacy.noise_multiplier=1", "mode=distributed"], "client-level DP for federated rounds"),
    (["privacy.noise_multiplier=1", "server.strategy=scaffold"], "does not average deltas"),
    (["privacy.noise_multiplier=1", "server.aggregator=median"], "is not a sum"),
    (["privacy.noise_multiplier=1", "compress.uplink=topk"], "break the sensitivity bound"),
    (["privacy.noise_multiplier=1", "privacy.accountant=pld"], "only for Poisson sampling"),
    (["privacy.noise_multiplier=1", "privacy.noise=distributed", "server.sampling=poisson"], "less noise"),
    (["privacy.noise_multiplier=1", "privacy.target_epsilon=2"], "not both"),
    (["privacy.delta=0"], "'privacy.delta' parameter"),
    (["server.sampling=random"], "'server.sampling' parameter"),
])
def test_privacy_settings_are_validated_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load(overrides=overrides)


def test_the_privacy_command_prints_epsilon_and_its_reverse(capsys):
    from mpifl.__main__ import main

    assert main(["privacy", "--rounds", "50", "--rate", "0.1", "--noise", "1.2", "--sampling", "poisson"]) == 0
    eps = float(capsys.readouterr().out.split()[1])
    assert eps == pytest.approx(epsilon(50, 1.2, Sampling("poisson", 1, 0.1), 1e-5), rel=1e-6)
    assert main(["privacy", "--rounds", "50", "--rate", "0.1", "--epsilon", str(eps), "--sampling", "poisson"]) == 0
    assert abs(float(capsys.readouterr().out.split()[2]) - 1.2) < 0.01


def test_the_privacy_command_accounts_for_a_jobs_default_sampling(capsys):
    """A job samples a fixed cohort unless told otherwise, and so does the command: the paired examples of the
    privacy page account for the plan the job runs."""
    from mpifl.__main__ import main

    with pytest.raises(SystemExit):
        main(["privacy", "--rounds", "50", "--rate", "0.2", "--noise", "1.0"])  # fixed needs the clients
    assert "needs --clients N" in capsys.readouterr().err
    assert main(["privacy", "--rounds", "50", "--rate", "0.2", "--clients", "100", "--noise", "1.0"]) == 0
    eps = float(capsys.readouterr().out.split()[1])
    assert eps == pytest.approx(epsilon(50, 1.0, Sampling("fixed", 100, 0.2), 1e-5), rel=1e-6)
    assert config.load(None)["server.sampling"] == "fixed"