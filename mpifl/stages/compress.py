"""The compression stage: a client's delta travels as its codec's message, with error feedback on its own rank.

The client adds its residual, encodes into the payload row's message field
and keeps what the message missed; the server decodes each row before the
simulated attacks, the aggregator and the strategy see it.  The codecs are
mpifl.compression's registry; distributed mode uses the same codecs through
mpifl.compressed_sum.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from mpifl.compression import OFF, ErrorFeedback, codec_from_config
from mpifl.errors import ConfigError
from mpifl.protocol import MESSAGE
from mpifl.stages.base import Declared, Outgoing, Stage, StageBuild

RESIDUAL = "compress.residual"  # client-rank state: each hosted client's error-feedback residual


class CompressStage(Stage):
    name = "compress"
    section = "compress"
    summary_key = "compression"
    rank_stat_names = ("encode",)
    takes_delta = True

    @staticmethod
    def enabled(cfg) -> bool:
        return cfg.compress.uplink != OFF

    @classmethod
    def check(cls, cfg, origin) -> None:
        method = cfg.compress.uplink
        if method != OFF and cfg.train.optimizer == "lbfgs":
            raise ConfigError(f"The 'compress.uplink' parameter in {origin('compress.uplink')} is {method!r}, but "
                              "L-BFGS's line search needs exact gradients. Use train.optimizer = \"sgd\" or "
                              "compress.uplink = \"none\".")
        if cfg.compress.error_feedback and method == OFF:
            raise ConfigError(f"The 'compress.error_feedback' parameter in {origin('compress.error_feedback')} is "
                              "true, but compress.uplink is 'none': there is no compression error to feed back.")

    @classmethod
    def declares(cls, cfg) -> Declared:
        method = cfg.compress.uplink
        return Declared(f"compress.uplink {method!r}", "compress.uplink", needs={
            "rows": "decodes each client's own message (and masked updates are uniform ring elements, which a "
                    "codec cannot shrink)",
        }, breaks={
            "bounded_norms": "compresses after clipping, which can raise a delta's norm above the clip and break "
                             "the sensitivity bound",
        })

    def __init__(self, build: StageBuild):
        spec = build.spec
        self.cfg = build.cfg
        self.codec = codec_from_config(build.cfg, spec.size, spec.dtype)
        self.message_bytes = self.codec.nbytes
        self.seed = build.cfg.seed
        self.feedback = ErrorFeedback(self.codec, build.hosted, build.cfg.compress.error_feedback)
        self.shape, self.dtype = spec.shape, spec.dtype
        self.encode_seconds = 0.0  # a client rank's, since the round began
        self.slowest_encode = self.decode_seconds = 0.0  # the server's, for the round being aggregated
        self.last = (0.0, 0.0)  # the server's: (slowest client rank's encoding, its decoding) of the last round

    def send(self, update: Outgoing) -> None:
        started = time.perf_counter()
        message = update.row[MESSAGE].view(np.uint8)[: self.codec.nbytes]
        self.feedback.send(update.slot, update.delta, (self.seed, update.round, update.client), message)
        self.encode_seconds += time.perf_counter() - started

    def client_state(self) -> dict[str, np.ndarray]:
        return {RESIDUAL: self.feedback.residual} if self.feedback.enabled else {}

    def rank_stats(self) -> dict[str, float]:
        """This rank's seconds spent encoding in the round, and a fresh count for the next."""
        seconds, self.encode_seconds = self.encode_seconds, 0.0
        return {"encode": seconds}

    def receive(self, results, key):
        """Decode each trained client's message into its delta row (in the model's dtype)."""
        started = time.perf_counter()
        messages = results.fields[MESSAGE].view(np.uint8)[:, : self.codec.nbytes]
        deltas = np.stack([self.codec.decode(m, (*key, int(k))) for m, k in zip(messages, results.clients)])
        fields = {name: value for name, value in results.fields.items() if name != MESSAGE}
        decoded = replace(results, deltas=deltas.astype(self.dtype).reshape(results.count, *self.shape),
                          fields=fields)
        self.decode_seconds = time.perf_counter() - started
        return decoded

    def after_exchange(self, rank_stats: dict[str, np.ndarray]) -> None:
        self.slowest_encode = float(rank_stats["encode"].max())

    def after_aggregation(self) -> None:
        self.last = (self.slowest_encode, self.decode_seconds)  # reported with the next record

    def record_fields(self) -> dict[str, Any]:
        return {"encode_seconds": self.last[0], "decode_seconds": self.last[1]}

    def summary(self, records: list) -> dict[str, Any]:
        return {self.summary_key: summary(self.cfg, records[-1])}


def summary(cfg, last) -> dict | None:
    """[compress] as run, with the uplink compression ratio achieved: the bytes sent uncompressed over those sent;
    None without compression.  Both modes report it."""
    from mpifl.compression import CODECS

    if cfg.compress.uplink == OFF:
        return None
    method = cfg.compress.uplink
    sent, whole = last.uplink_bytes_total, last.uplink_bytes_uncompressed_total
    setting = cfg.compress.pick(CODECS[method].parameters)
    return {
        "uplink": method, **setting, "error_feedback": cfg.compress.error_feedback,
        "uplink_bytes_uncompressed": whole, "achieved_ratio": whole / sent if sent and whole is not None else None,
    }
