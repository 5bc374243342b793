"""Splits and partitions are disjoint, complete, seeded and skewed as asked."""

from __future__ import annotations

import numpy as np
import pytest

from mpifl import config
from mpifl.data.builtin import load_digits, make_synthetic
from mpifl.data.partition import contiguous, dirichlet, iid, partition, split_train_test
from mpifl.data.catalog import client_shard, server_test_set, worker_shards
from mpifl.errors import DataError
from mpifl.rng import Purpose, stream


def assert_exact_cover(parts, n):
    joined = np.concatenate(parts)
    assert joined.size == n and np.array_equal(np.sort(joined), np.arange(n))


def test_split_sizes_and_disjointness():
    train, test = split_train_test(1797, 0.2, stream(0, Purpose.SPLIT))
    assert test.size == 359 and train.size == 1438
    assert_exact_cover([train, test], 1797)


def test_iid_is_balanced_and_complete():
    parts = iid(1000, 7, np.random.default_rng(0))
    assert_exact_cover(parts, 1000)
    assert max(p.size for p in parts) - min(p.size for p in parts) <= 1


def test_contiguous_ranges():
    parts = contiguous(10, 3)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


def test_dirichlet_is_complete_nonempty_and_seeded():
    labels = np.repeat(np.arange(10), 100).astype(float)
    a = dirichlet(labels, 7, 0.5, stream(0, Purpose.PARTITION))
    b = dirichlet(labels, 7, 0.5, stream(0, Purpose.PARTITION))
    c = dirichlet(labels, 7, 0.5, stream(1, Purpose.PARTITION))
    assert_exact_cover(a, 1000)
    assert all(p.size > 0 for p in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_small_alpha_skews_labels_more_than_large_alpha():
    labels = np.repeat(np.arange(10), 200).astype(float)

    def skew(alpha):
        parts = dirichlet(labels, 8, alpha, stream(0, Purpose.PARTITION))
        # mean over clients of the share of its most common label
        return np.mean([np.bincount(labels[p].astype(int), minlength=10).max() / p.size for p in parts])

    assert skew(0.1) > skew(100.0) + 0.3
    assert skew(100.0) < 0.2


def test_too_many_clients_is_a_clear_error():
    with pytest.raises(DataError, match="Cannot partition 5 training rows over 6 clients"):
        partition("iid", np.zeros(5), 6, 0.5, np.random.default_rng(0))


def test_digits_data_is_the_classic_set():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.min() == 0.0 and X.max() == 1.0
    assert np.array_equal(np.bincount(y.astype(int)), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])


def test_synthetic_is_seeded_and_labelled_by_a_linear_model():
    X1, y1 = make_synthetic(500, 4, 3, 0.0, False, seed=5)
    X2, y2 = make_synthetic(500, 4, 3, 0.0, False, seed=5)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert set(np.unique(y1)) == {0.0, 1.0, 2.0}


def test_clients_and_server_hold_disjoint_rows_that_cover_the_data():
    cfg = config.load()
    X, _ = load_digits()
    held = [client_shard(cfg, k, 7).X for k in range(7)] + [server_test_set(cfg).X]
    assert sum(h.shape[0] for h in held) == 1797
    rows = np.concatenate(held)
    assert np.unique(rows, axis=0).shape[0] == np.unique(X, axis=0).shape[0]


def test_worker_shards_follow_the_model_dtype():
    cfg = config.load(overrides=["mode=distributed", "model.dtype=float32"])
    train, test = worker_shards(cfg, 1, 3)
    assert train.X.dtype == np.float32 and train.X.flags.c_contiguous and test.n in (119, 120)


def test_balanced_blocks_are_contiguous_nonempty_and_even_by_rows():
    from mpifl.data.shards import balanced_blocks

    rows = [82, 58, 692, 118, 54, 45, 138, 48, 109, 127, 80, 870, 139, 271, 45, 50, 283, 1617, 88, 153]
    for hosts in (1, 2, 3, 7, 20):
        blocks = balanced_blocks(rows, hosts)
        assert [b.start for b in blocks[1:]] == [b.stop for b in blocks[:-1]] and blocks[-1].stop == len(rows)
        assert blocks[0].start == 0 and all(len(b) >= 1 for b in blocks)
    two = balanced_blocks(rows, 2)
    loads = [sum(rows[k] for k in b) for b in two]
    assert max(loads) <= sum(rows) / 2 + max(rows) / 2  # within half a client of even
    assert balanced_blocks([10] * 8, 4) == [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
