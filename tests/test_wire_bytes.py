"""The bytes each federated round moves, counted at the collectives: they match the messages' sizes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np

from mpifl import config
from mpifl.data.shards import balanced_blocks
from mpifl.data.catalog import model_spec, resolve
from mpifl.federated import make_wire
from mpifl.scaling import traffic
from mpifl.stages import Chain
from mpifl.strategies import STRATEGIES


def test_each_round_counts_its_downlink_and_uplink_bytes_and_the_summary_totals_them(tmp_path):
    """The counted bytes equal the Wire's buffers, and the traffic model of scaling studies reads the same."""
    ranks, clients, rounds = 3, 4, 4
    overrides = [f"data.clients={clients}", f"rounds={rounds}", "log_every=2", "server.strategy=scaffold"]
    proc = subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                           *sum((["--set", o] for o in overrides), []), "--out", "run", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cfg = config.load(overrides=overrides)
    spec = model_spec(cfg)
    blocks = balanced_blocks(resolve(cfg).client_rows(clients), ranks - 1)
    wire = make_wire(STRATEGIES["scaffold"], Chain([]), spec, blocks, fraction=cfg.server.fraction)
    downlink = wire.downlink_buffer().nbytes * (ranks - 1)
    everyone = np.full(clients, 1, dtype=np.int64)  # fraction 1: every client trains every round
    payload = sum(wire.payload_counts(everyone)) * spec.dtype.itemsize  # SCAFFOLD: delta and control delta rows
    stats = sum(wire.stats_counts(np.arange(clients))) * 8  # every client trains, so every one sends its row
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for row in rows[1:]:
        assert (row["downlink_bytes"], row["uplink_bytes"]) == (downlink, payload + stats)
        assert (row["downlink_bytes_total"], row["uplink_bytes_total"]) == (row["round"] * downlink,
                                                                             row["round"] * (payload + stats))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["downlink_bytes"], summary["uplink_bytes"]) == (rounds * downlink, rounds * (payload + stats))
    assert [len(b) for b in blocks] == [2, 2]  # equal client ranks: the model's most loaded rank is every rank
    modelled = traffic.per_round(cfg, ranks, rows_per_worker=0)
    assert [c.name for c in modelled] == ["Bcast", "Gather", "Gather"]
    assert modelled[0].nbytes * (ranks - 1) == row["downlink_bytes"]
    assert (modelled[1].nbytes + modelled[2].nbytes) * (ranks - 1) == row["uplink_bytes"]
