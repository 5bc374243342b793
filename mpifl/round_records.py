"""The server's per-round record of a federated run, and the metrics that wait a round for it.

The clients' evaluation of theta_r arrives with round r + 1, so the record
of round r is written then, with what the server's aggregation of round r
reported (kept here as "pending", and checkpointed with the server state).
"""

from __future__ import annotations

import numpy as np

from mpifl.local import LocalTrainer
from mpifl.progress import RoundRecord

_PENDING = "round."  # server-state keys of the last aggregation's metrics, reported with the next record
_PENDING_LIST = "round_list."  # the same for list-valued metrics (an aggregator's selected ids or kept weights)
STAGE = "/"  # a pending metric that a stage reported is "stage/field" (mpifl.stages.Chain.round_metrics)


def pending_state(pending: dict) -> dict[str, np.ndarray]:
    """The round's metrics awaiting their record, as checkpoint arrays: numbers, and lists (an aggregator's
    selected client ids, or the weights it kept) under their own prefix."""
    out = {}
    for name, value in pending.items():
        if isinstance(value, list):
            out[_PENDING_LIST + name] = np.asarray(value, dtype=np.float64)
        else:
            out[_PENDING + name] = np.array([value])
    return out


def load_pending(server_state: dict[str, np.ndarray]) -> dict:
    pending: dict = {k[len(_PENDING):]: float(v[0]) for k, v in server_state.items() if k.startswith(_PENDING)}
    for k, v in server_state.items():
        if k.startswith(_PENDING_LIST):
            name = k[len(_PENDING_LIST):]
            pending[name] = [int(x) for x in v] if name == "selected" else [float(x) for x in v]
    return pending


def spread(accuracy: np.ndarray) -> dict[str, float]:
    """The clients' accuracies as researchers compare them: mean, 10th percentile, worst, and Jain's fairness
    index (sum a)^2 / (n sum a^2), 1 when every client does equally well."""
    squares = float(accuracy @ accuracy)
    return {"mean": float(accuracy.mean()), "p10": float(np.percentile(accuracy, 10)), "worst": float(accuracy.min()),
            "jain": float(accuracy.sum() ** 2 / (accuracy.size * squares)) if squares > 0 else 1.0}


def record(
    rnd: int, theta: np.ndarray, stats: dict[str, np.ndarray], tester: LocalTrainer, l2: float,
    seconds: float, compute: float, aggregated: dict[str, float],
) -> RoundRecord:
    rows = stats["rows"].sum()
    # a model whose clients keep state of their own (FedBN's statistics) is judged on their rows, not here
    n_test = tester.shard.n if tester.kernels.central_evaluation else 0
    test_loss, test_correct = tester.evaluate(theta) if n_test else (0.0, 0)
    own_test = stats["test_rows"] > 0
    client_test = None
    if own_test.any():
        client_test = np.divide(stats["test_correct"], stats["test_rows"], out=np.full(own_test.shape, np.nan),
                                where=own_test)
    server = {k: v for k, v in aggregated.items() if k != "participants" and STAGE not in k} if rnd > 0 else None
    trained = stats["rows"] > 0  # a held-out fold's clients report no training rows
    return RoundRecord(
        round=rnd,
        loss=float(stats["loss"].sum() / rows) + tester.kernels.penalty(theta, l2),
        train_accuracy=float(stats["correct"].sum() / rows),
        test_loss=test_loss / n_test if n_test else float("nan"),
        accuracy=test_correct / n_test if n_test else float("nan"),
        seconds=seconds,
        compute_seconds=compute,
        comm_seconds=max(0.0, seconds - compute),
        client_loss=_per_row(stats["loss"], stats["rows"], trained),
        client_accuracy=_per_row(stats["correct"], stats["rows"], trained),
        client_test_accuracy=None if client_test is None else
        [float(a) if has else None for a, has in zip(client_test, own_test)],
        mean_client_accuracy=None if client_test is None else float(client_test[own_test].mean()),
        personal=None if client_test is None else spread(stats["personal_correct"][own_test] / stats["test_rows"][own_test]),
        client_personal_accuracy=None if client_test is None else
        [float(c / n) if has else None for c, n, has in zip(stats["personal_correct"], stats["test_rows"], own_test)],
        participants=int(aggregated["participants"]) if rnd > 0 and "participants" in aggregated else None,
        server=server or None,
        stages=stage_fields(aggregated) if rnd > 0 else None,
        **validation_fields(stats),
    )


def validation_fields(stats: dict[str, np.ndarray]) -> dict:
    """Federated evaluation: sample-weighted loss and accuracy over the validation rows of the clients sampled to
    evaluate, their personal models' accuracy, and the spread of the clients' accuracies (empty: none evaluated)."""
    rows = stats["val_rows"]
    judged = rows > 0
    total = rows.sum()
    if not total:
        return {}
    return {"val_loss": float(stats["val_loss"].sum() / total),
            "val_accuracy": float(stats["val_correct"].sum() / total),
            "val_personal_accuracy": float(stats["val_personal_correct"].sum() / total),
            "val_clients": int(judged.sum()),
            "val_spread": spread(stats["val_correct"][judged] / rows[judged])}


def _per_row(sums: np.ndarray, rows: np.ndarray, has: np.ndarray) -> list[float | None]:
    return [float(s / n) if h else None for s, n, h in zip(sums, rows, has)]


def stage_fields(aggregated: dict) -> dict[str, dict] | None:
    """The pending metrics a stage reported, ``stage/field``, as {stage: {field: value}}; None if none."""
    out: dict[str, dict] = {}
    for key, value in aggregated.items():
        if STAGE in key:
            name, field = key.split(STAGE, 1)
            out.setdefault(name, {})[field] = value
    return out or None
