"""The server's per-round record of a federated run, and the metrics that wait a round for it.

The clients' evaluation of theta_r arrives with round r + 1, so the record
of round r is written then, with what the server's aggregation of round r
reported (kept here as "pending", and checkpointed with the server state).
"""

from __future__ import annotations

import numpy as np

from mpifl.local import LocalTrainer
from mpifl.progress import RoundRecord
from mpifl.protocol import ClientStats

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


def summarize(values: np.ndarray, weights: np.ndarray, fair: bool) -> dict[str, float]:
    """One per-client figure over the clients that reported it, in a few numbers whatever their count: count,
    mean, row-weighted mean, min, p10, p50, p90, max, and Jain's index (``fair``: accuracies, where it applies)."""
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    out = {"count": int(values.size), "mean": float(values.mean()),
           "weighted_mean": float(values @ weights / weights.sum()) if weights.sum() > 0 else float(values.mean()),
           "min": float(values.min()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
           "max": float(values.max())}
    if fair:
        squares = float(values @ values)
        out["jain"] = float(values.sum() ** 2 / (values.size * squares)) if squares > 0 else 1.0
    return out


def record(
    rnd: int, theta: np.ndarray, stats: ClientStats, tester: LocalTrainer, l2: float,
    seconds: float, compute: float, aggregated: dict[str, float], sealed: tuple | None = None,
) -> tuple[RoundRecord, dict[str, np.ndarray]]:
    """The round's record, and its per-client figures (for clients/round_NNNNNN.npz when evaluate.per_client):
    the clients sampled to evaluate, summarised, never listed, so a record's size does not grow with them.
    ``sealed``: (the figures' sum or None, how many scored) when no client's row reached the server."""
    if sealed is not None:
        return sealed_record(rnd, theta, *sealed, tester, l2, seconds, compute, aggregated)
    scored = stats["rows"] > 0  # the clients sampled to report the global model's figures on their training rows
    rows = stats["rows"].sum()
    # a model whose clients keep state of their own (FedBN's statistics) is judged on their rows, not here
    n_test = tester.shard.n if tester.kernels.central_evaluation else 0
    test_loss, test_correct = tester.evaluate(theta) if n_test else (0.0, 0)
    own_test = stats["test_rows"] > 0
    detail = client_detail(stats)
    summaries = {}
    if scored.any():
        weights = stats["rows"][scored]
        summaries["loss"] = summarize(detail["loss"][scored], weights, False)
        summaries["accuracy"] = summarize(detail["accuracy"][scored], weights, True)
    if own_test.any():
        weights = stats["test_rows"][own_test]
        summaries["test_accuracy"] = summarize(detail["test_accuracy"][own_test], weights, True)
        summaries["personal_accuracy"] = summarize(detail["personal_accuracy"][own_test], weights, True)
    server = {k: v for k, v in aggregated.items() if k != "participants" and STAGE not in k} if rnd > 0 else None
    record = RoundRecord(
        round=rnd,
        loss=float(stats["loss"].sum() / rows) + tester.kernels.penalty(theta, l2) if rows else float("nan"),
        train_accuracy=float(stats["correct"].sum() / rows) if rows else float("nan"),
        test_loss=test_loss / n_test if n_test else float("nan"),
        accuracy=test_correct / n_test if n_test else float("nan"),
        seconds=seconds,
        compute_seconds=compute,
        comm_seconds=max(0.0, seconds - compute),
        clients=summaries or None,
        evaluated_clients=int(scored.sum()),
        mean_client_accuracy=summaries["test_accuracy"]["mean"] if own_test.any() else None,
        personal=spread(detail["personal_accuracy"][own_test]) if own_test.any() else None,
        participants=int(aggregated["participants"]) if rnd > 0 and "participants" in aggregated else None,
        server=server or None,
        stages=stage_fields(aggregated) if rnd > 0 else None,
        **validation_fields(stats),
    )
    return record, detail


def sealed_record(
    rnd: int, theta: np.ndarray, figures: dict[str, float] | None, scored: int, tester: LocalTrainer, l2: float,
    seconds: float, compute: float, aggregated: dict[str, float],
) -> tuple[RoundRecord, dict[str, np.ndarray]]:
    """The round's record when no client's statistics left its rank: the clients' figures as one sum over the
    active survivors (secure aggregation), or none (local DP alone); never a client's own, so no spread of them
    and no per-client detail.  The server's own test rows are judged as always."""
    sums = figures or {}
    rows, val_rows, test_rows = sums.get("rows", 0.0), sums.get("val_rows", 0.0), sums.get("test_rows", 0.0)
    n_test = tester.shard.n if tester.kernels.central_evaluation else 0
    test_loss, test_correct = tester.evaluate(theta) if n_test else (0.0, 0)
    validation = {"val_loss": sums["val_loss"] / val_rows, "val_accuracy": sums["val_correct"] / val_rows,
                  "val_personal_accuracy": sums["val_personal_correct"] / val_rows} if val_rows else {}
    record = RoundRecord(
        round=rnd,
        loss=sums["loss"] / rows + tester.kernels.penalty(theta, l2) if rows else float("nan"),
        train_accuracy=sums["correct"] / rows if rows else float("nan"),
        test_loss=test_loss / n_test if n_test else float("nan"),
        accuracy=test_correct / n_test if n_test else float("nan"),
        seconds=seconds,
        compute_seconds=compute,
        comm_seconds=max(0.0, seconds - compute),
        clients=sealed_summaries(sums) or None,
        evaluated_clients=scored if figures is not None else 0,
        participants=int(aggregated["participants"]) if rnd > 0 and "participants" in aggregated else None,
        server={k: v for k, v in aggregated.items() if k != "participants" and STAGE not in k} or None
        if rnd > 0 else None,
        stages=stage_fields(aggregated) if rnd > 0 else None,
        **validation,
    )
    return record, {}


def sealed_summaries(sums: dict[str, float]) -> dict[str, dict[str, float]]:
    """What a sum of the clients' figures tells of them: each figure's row-weighted mean, nothing per client."""
    out = {}
    for name, total, rows in (("loss", "loss", "rows"), ("accuracy", "correct", "rows"),
                              ("test_accuracy", "test_correct", "test_rows"),
                              ("personal_accuracy", "personal_correct", "test_rows")):
        if sums.get(rows):
            out[name] = {"weighted_mean": sums[total] / sums[rows]}
    return out


def client_detail(stats: ClientStats) -> dict[str, np.ndarray]:
    """Each active client's figures of the round (NaN where it reported none), by client id."""
    def ratio(sums: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.divide(sums, rows, out=np.full(rows.shape, np.nan), where=rows > 0)

    return {"client": stats.ids, "rows": stats["rows"], "loss": ratio(stats["loss"], stats["rows"]),
            "accuracy": ratio(stats["correct"], stats["rows"]), "test_rows": stats["test_rows"],
            "test_accuracy": ratio(stats["test_correct"], stats["test_rows"]),
            "personal_accuracy": ratio(stats["personal_correct"], stats["test_rows"]),
            "val_rows": stats["val_rows"], "val_loss": ratio(stats["val_loss"], stats["val_rows"]),
            "val_accuracy": ratio(stats["val_correct"], stats["val_rows"]),
            "weight": stats["weight"]}


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


def stage_fields(aggregated: dict) -> dict[str, dict] | None:
    """The pending metrics a stage reported, ``stage/field``, as {stage: {field: value}}; None if none."""
    out: dict[str, dict] = {}
    for key, value in aggregated.items():
        if STAGE in key:
            name, field = key.split(STAGE, 1)
            out.setdefault(name, {})[field] = value
    return out or None


def merge_stages(pending: dict | None, recorded: dict) -> dict | None:
    """The stages' fields of a record: what they reported after aggregating, and what they give for the record."""
    out = {name: dict(fields) for name, fields in (pending or {}).items()}
    for name, fields in recorded.items():
        out.setdefault(name, {}).update(fields)
    return out or None
