"""The summing exchange's fixed point, and the combinations it refuses (mpifl.stages.sums)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from mpifl.errors import ConfigError
from mpifl.stages import sums


def test_fixed_point_sums_are_exact_in_any_order_and_within_rounding_of_the_float_sum():
    rng = np.random.default_rng(0)
    vectors = [rng.standard_normal(1000) * np.logspace(-6, 2, 1000) for _ in range(37)]
    blocks = -(-1000 // sums.BLOCK)
    peak = np.max([sums.block_peaks(v, blocks) for v in vectors], axis=0)
    exponents = sums.scale_exponents(peak, len(vectors))
    fixed = [sums.to_fixed(v, exponents) for v in vectors]
    forward = np.sum(fixed, axis=0)
    backward = np.zeros(1000, dtype=np.int64)
    for q in reversed(fixed):
        backward += q
    assert forward.tobytes() == backward.tobytes()
    exact = np.sum([v.astype(np.longdouble) for v in vectors], axis=0)
    block_scale = np.repeat(peak, sums.BLOCK)[:1000]
    error = np.abs(sums.from_fixed(forward, exponents) - exact.astype(np.float64))
    assert (error <= 1e-15 * block_scale).all()
    assert np.abs(np.max(np.abs(forward))) < 2 ** sums.BITS


def test_a_block_of_zeros_stays_zero():
    exponents = sums.scale_exponents(np.zeros(2), 5)
    assert (sums.from_fixed(sums.to_fixed(np.zeros(300), exponents), exponents) == 0).all()


@pytest.mark.parametrize("overrides, message", [
    ({"server__aggregator": "krum"}, "needs the individual updates, but server.exchange \"reduce\" adds the updates"),
    ({"server__strategy": "fednova"}, "server.strategy 'fednova' reads each client's own update"),
    ({"compress__uplink": "topk"}, "server.exchange \"reduce\""),
])
def test_the_reduce_refuses_what_needs_rows_naming_both_keys(overrides, message):
    with pytest.raises(ConfigError) as info:
        mpifl.run(None, MPI.COMM_SELF, mode="federated", rounds=1, server__exchange="reduce", **overrides)
    assert message in str(info.value)
    assert "server.exchange" in str(info.value)
