"""Update compression: each codec against a NumPy reference, error feedback's identity, and the settings'
checks.  Whole compressed runs on real ranks: tests/test_mpi_compression.py."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest


from mpifl import config
from mpifl.compression import Codec, ErrorFeedback, make_codec
from mpifl.errors import ConfigError

RNG = np.random.default_rng(0)
N = 1001
CODECS = [("none", {}), ("topk", {"ratio": 0.1}), ("randk", {"ratio": 0.1}), ("qsgd", {"bits": 4, "bucket": 64}),
          ("qsgd", {"bits": 2, "bucket": 1001}), ("int8", {})]


def roundtrip(codec: Codec, x: np.ndarray, key=(0, 1, 2)):
    message = np.zeros(codec.nbytes, dtype=np.uint8)
    sent = codec.encode(x, key, message)
    return sent, message


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method, kw", CODECS)
def test_encode_returns_exactly_what_decode_gives_back_from_a_message_of_the_declared_size(method, kw, dtype):
    codec = make_codec(method, N, np.dtype(dtype), **kw)
    x = RNG.standard_normal(N)
    sent, message = roundtrip(codec, x)
    np.testing.assert_array_equal(codec.decode(message, (0, 1, 2)), sent)
    item = np.dtype(dtype).itemsize
    expected = {"none": N * item, "topk": 101 * (4 + item), "randk": 101 * item,
                "qsgd": math.ceil(N / kw.get("bucket", 1)) * 8 + math.ceil(N * kw.get("bits", 0) / 8),
                "int8": 8 + N}[method]
    assert codec.nbytes == message.size == expected


@pytest.mark.parametrize("method, kw", CODECS)
def test_accumulate_adds_the_decoded_vector_into_a_sum(method, kw):
    codec = make_codec(method, N, np.dtype(np.float64), **kw)
    sent, message = roundtrip(codec, RNG.standard_normal(N))
    total = RNG.standard_normal(N)
    expected = total + sent
    codec.accumulate(message, (0, 1, 2), total)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-15)


def test_topk_keeps_the_k_largest_magnitudes_and_zeroes_the_rest():
    codec = make_codec("topk", N, np.dtype(np.float64), ratio=0.05)
    x = RNG.standard_normal(N)
    sent, _ = roundtrip(codec, x)
    reference = np.zeros(N)
    largest = np.argsort(-np.abs(x))[: codec.k]
    reference[largest] = x[largest]
    np.testing.assert_array_equal(sent, reference)
    assert codec.k == 51


def test_randk_sends_k_values_at_indices_a_receiver_recreates_from_the_key():
    codec = make_codec("randk", N, np.dtype(np.float64), ratio=0.1)
    x = RNG.standard_normal(N)
    sent, message = roundtrip(codec, x, key=(3, 4, 5))
    idx = np.flatnonzero(sent)
    np.testing.assert_array_equal(idx, codec.random_indices((3, 4, 5)))
    np.testing.assert_array_equal(message.view(np.float64), x[idx])
    assert not np.array_equal(idx, codec.random_indices((3, 4, 6)))  # another sender, other indices


def test_qsgd_is_unbiased_and_each_value_sits_on_one_of_its_buckets_levels():
    codec = make_codec("qsgd", 200, np.dtype(np.float64), bits=3, bucket=50)
    x = RNG.standard_normal(200)
    draws = np.array([roundtrip(codec, x, key=(0, r, 0))[0] for r in range(4000)])
    norms = np.repeat(np.linalg.norm(x.reshape(4, 50), axis=1), 50)
    levels = draws / norms * codec.levels
    np.testing.assert_allclose(levels, np.rint(levels), atol=1e-9)
    assert np.abs(levels).max() <= codec.levels
    # each coordinate's mean over 4000 draws is within 5 standard errors of x (the bound of a Bernoulli level)
    assert np.all(np.abs(draws.mean(axis=0) - x) <= 5 * 0.5 * norms / codec.levels / math.sqrt(4000))


@pytest.mark.parametrize("bits, bucket, n", [(2, 7, 50), (3, 64, 1001), (4, 128, 1000), (5, 1, 33), (8, 512, 777)])
def test_the_qsgd_kernels_match_numpy_bit_for_bit(bits, bucket, n):
    from mpifl.kernels import codecs

    x = RNG.standard_normal(n)
    x[::9] = 0.0
    uniforms = RNG.random(n)
    levels = 2 ** (bits - 1) - 1
    norms, packed = np.empty(-(-n // bucket)), np.zeros(-(-n * bits // 8), dtype=np.uint8)
    codecs.qsgd_encode(x, uniforms, bucket, levels, bits, norms, packed)
    ref_norms, ref_packed = naive.qsgd_encode(x, uniforms, bucket, levels, bits)
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-14)
    np.testing.assert_array_equal(packed, ref_packed)
    out = np.empty(n)
    codecs.qsgd_decode(packed, norms, bucket, levels, bits, out)
    np.testing.assert_allclose(out, naive.qsgd_decode(packed, norms, bucket, levels, bits, n), rtol=1e-15)


def test_int8_rounds_each_value_to_the_nearest_step_of_max_abs_over_127():
    x = RNG.standard_normal(N)
    sent, message = roundtrip(make_codec("int8", N, np.dtype(np.float32)), x)
    scale = np.abs(x).max() / 127
    assert message[:8].view(np.float64)[0] == scale
    np.testing.assert_array_equal(sent, np.rint(x / scale) * scale)
    assert np.abs(sent - x).max() <= scale / 2 + 1e-15


def test_topk_at_ratio_1_is_the_identity():
    x = RNG.standard_normal(N)
    sent, _ = roundtrip(make_codec("topk", N, np.dtype(np.float64), ratio=1.0), x)
    np.testing.assert_array_equal(sent, x)


@pytest.mark.parametrize("method, kw", CODECS[1:])
def test_error_feedback_residual_plus_what_was_sent_equals_the_true_update(method, kw):
    codec = make_codec(method, N, np.dtype(np.float64), **kw)
    feedback = ErrorFeedback(codec, 2, enabled=True)
    residual_before = np.zeros(N)
    for rnd in range(4):
        update = RNG.standard_normal(N)
        message = np.zeros(codec.nbytes, dtype=np.uint8)
        sent = feedback.send(1, update, (0, rnd, 1), message)
        np.testing.assert_allclose(feedback.residual[1] + sent, update + residual_before, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(codec.decode(message, (0, rnd, 1)), sent)
        residual_before = feedback.residual[1].copy()
    assert not feedback.residual[0].any()  # the other sender's memory is untouched


def test_damped_qsgd_keeps_the_error_feedback_residual_bounded_where_plain_qsgd_lets_it_grow():
    """At 2 bits qsgd is not contractive: undamped, the residual grows round after round; damped by
    1 / (1 + omega) it stays of the order of the updates."""
    x = RNG.standard_normal((60, N))
    sizes = {}
    for damped in (False, True):
        codec = make_codec("qsgd", N, np.dtype(np.float64), bits=2, bucket=128, damped=damped)
        feedback = ErrorFeedback(codec, 1, enabled=True)
        for rnd, update in enumerate(x):
            feedback.send(0, update, (0, rnd, 0), np.zeros(codec.nbytes, dtype=np.uint8))
        sizes[damped] = np.linalg.norm(feedback.residual[0]) / np.linalg.norm(x[0])
    assert codec.damping == pytest.approx(1 / (1 + min(128 / 1, 128 ** 0.5 / 1)))
    assert sizes[True] < 20 < sizes[False]


def test_without_error_feedback_nothing_is_remembered():
    codec = make_codec("topk", N, np.dtype(np.float64), ratio=0.1)
    feedback = ErrorFeedback(codec, 1, enabled=False)
    x = RNG.standard_normal(N)
    sent = feedback.send(0, x, (0, 1, 0), np.zeros(codec.nbytes, dtype=np.uint8))
    np.testing.assert_array_equal(sent, roundtrip(codec, x)[0])
    assert not feedback.residual.any()


@pytest.mark.parametrize("overrides, message", [
    (["compress.error_feedback=true"], "no compression error to feed back"),
    (["mode=distributed", "train.optimizer=lbfgs", "compress.uplink=topk"], "needs exact gradients"),
    (["compress.bits=9"], "'compress.bits' parameter"),
    (["compress.ratio=0"], "'compress.ratio' parameter"),
    (["attack.clients=[1, 1]"], "distinct"),
])
def test_bad_compression_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load(overrides=overrides)
