"""An algorithm is a pair: a server half (Strategy) and a client half (ClientUpdate), registered under one name.

The pair declares everything the transport needs: the server.* parameters
it uses (with defaults and constraints), the extra fields that travel down
with theta and up with each client's delta, and the per-client state that
stays on the client's rank.  Neither half ever touches the communicator:
mpifl.federated moves the bytes, mpifl.protocol lays them out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from mpifl.constraints import Constraint
from mpifl.errors import MpiflError
from mpifl.protocol import Field
from mpifl.strategies.aggregators import Aggregator, Mean
from mpifl.strategies.sampling import round_plan

Hook = tuple[np.ndarray, float, np.ndarray | None]  # (anchor, mu, correction): see kernels.drivers.objective_hook


class RowsNotDelivered(MpiflError):
    """A strategy read each client's update from a round whose exchange delivered only the sum of the updates."""


class Undelivered(Mapping):
    """What stands for the per-client rows of a round whose exchange delivered only sums: any use raises
    RowsNotDelivered, naming the exchange and the way out, instead of computing on an empty array."""

    def __init__(self, what: str, exchange: str):
        self._message = (
            f"The strategy reads {what}, but this round's exchange ({exchange!r}) delivers only the sum of the "
            "clients' updates, so no client's own update reaches the server. Declare needs_rows = True on the "
            "strategy (mpifl then keeps each client's row for it, and refuses the exchanges that cannot), or set "
            "server.exchange = \"gather\" and leave secure aggregation off.")

    def _refuse(self, *args, **kwargs):
        raise RowsNotDelivered(self._message)

    __getitem__ = __iter__ = __len__ = __array__ = reshape = _refuse

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        self._refuse()


@dataclass(frozen=True)
class RoundResults:
    """What the clients that trained in one round sent, in client order.

    An exchange that delivers rows (the Gatherv) fills ``deltas``, ``weights``
    and ``fields``; one that delivers sums (the integer Reduce, secure
    aggregation) fills ``summed``, ``summed_weight``, ``summed_within`` and
    ``summed_fields``, and puts Undelivered in the others, so that a strategy
    that reads rows from sums fails with a message that says why.
    """

    clients: np.ndarray  # (m,) client ids
    deltas: np.ndarray  # (m, *shape) theta_k - theta, in the model's dtype
    weights: np.ndarray  # (m,) rows each client trained on, float64
    fields: Mapping[str, np.ndarray]  # each declared uplink field: (m, *shape) or (m,)
    round: int = 0  # the round they trained in
    # An exchange that sums holds no row of deltas, only these sums over the clients that took part:
    summed: np.ndarray | None = None  # sum of weight_k delta_k, flat float64
    summed_weight: float = 0.0  # sum of weight_k
    summed_within: float = 0.0  # with [privacy]: how many deltas were within the clip
    summed_fields: Mapping[str, np.ndarray] = field(default_factory=dict)  # each model-sized uplink field's sum

    @classmethod
    def of_sums(cls, clients: np.ndarray, rnd: int, exchange: str, summed: np.ndarray, weight: float,
                within: float, fields: Mapping[str, np.ndarray]) -> RoundResults:
        """The results of an exchange that delivers sums only: reading a client's row raises RowsNotDelivered."""
        return cls(clients=clients, deltas=Undelivered("each client's update (results.deltas)", exchange),
                   weights=Undelivered("each client's weight (results.weights)", exchange),
                   fields=Undelivered("each client's uplink fields (results.fields)", exchange), round=rnd,
                   summed=summed, summed_weight=weight, summed_within=within, summed_fields=fields)

    @property
    def count(self) -> int:
        return int(self.clients.size)


class Release(Protocol):
    """What replaces the aggregator's combined delta: differential privacy's noised mean of the clipped deltas."""

    def combine_results(self, results: RoundResults) -> tuple[np.ndarray, dict[str, Any]]: ...


@dataclass(frozen=True)
class Setup:
    """What a server half is built from; the same values on every rank."""

    params: Mapping[str, Any]  # the strategy's own server.* values, defaults filled in
    n_clients: int
    seed: int
    fraction: float  # share of clients sampled each round
    epochs: int  # train.epochs
    stragglers: float  # share of each round's sampled clients that run fewer epochs
    drop_stragglers: bool
    local_lr: float  # train.lr
    local_momentum: float  # train.momentum
    shape: tuple[int, ...]  # theta's shape
    dtype: np.dtype  # theta's dtype
    aggregator: Aggregator = field(default_factory=Mean)  # server.aggregator and its parameters
    sampling: str = "fixed"  # server.sampling: "fixed" or "poisson"
    profiles: Any = None  # the clients' speeds and availability (mpifl.client_speeds.ClientProfiles)
    rounds: int = 0  # the job's rounds (an asynchronous strategy's server versions)
    release: Release | None = None  # a stage's replacement of the combined delta (differential privacy), or None
    held_out: np.ndarray | None = None  # clients that never train (a validation fold, mpifl.data.validation), or None


@dataclass(frozen=True)
class LocalRun:
    """What a client's half learns about the local training it shaped."""

    steps: int  # SGD steps taken this round
    lr: float
    momentum: float
    start_loss: float | None = None  # mean training loss at the global model, for halves that ask (wants_loss)


class ClientUpdate:
    """The client's half: the local objective, and the uplink fields beyond delta.

    The default is plain local SGD (FedAvg's client): no extra objective term
    and nothing sent but delta and the statistics.
    """

    state: ClassVar[tuple[str, ...]] = ()  # model-shaped arrays per client, kept (and checkpointed) on its rank
    wants_loss: ClassVar[bool] = False  # the client's mean training loss at theta, before training (q-FedAvg)
    # Keeps its own head (the model's output layer) and sends only the body: only the body's part of delta travels
    # (FedRep, FedPer).  Set on such a half before the first round: the head's slice of the flat theta.
    keeps_head: ClassVar[bool] = False
    head: slice | None = None

    def __init__(self, params: Mapping[str, Any], shape: tuple[int, ...], dtype: np.dtype):
        self.params = params
        self.shape = shape
        self.dtype = np.dtype(dtype)

    @classmethod
    def trains_plainly(cls) -> bool:
        """Plain local SGD from theta and nothing else (FedAvg's client): no state, objective term, phases, report
        or personal model.  A rank trains a round's clients of such a half as one cohort (mpifl.cohort)."""
        hooks = ("start", "phases", "keep", "objective", "report", "personal", "personal_model")
        return (not cls.state and not cls.wants_loss and not cls.keeps_head
                and all(getattr(cls, name) is getattr(ClientUpdate, name) for name in hooks))

    def start(self, theta: np.ndarray, state: Mapping[str, np.ndarray], model: np.ndarray) -> None:
        """Fill ``model`` with what local training starts from: theta (FedRep, FedPer: with the client's head)."""
        model[...] = theta

    def phases(self, epochs: int) -> tuple[tuple[int, slice | None], ...]:
        """Local training as (epochs, the slice of the flat model that trains, None: all) in turn."""
        return ((epochs, None),)

    def keep(self, model: np.ndarray, state: Mapping[str, np.ndarray]) -> None:
        """Keep what the client owns of its trained model in its state (FedRep, FedPer: the head)."""
        return None

    def objective(self, theta: np.ndarray, downlink: Mapping[str, np.ndarray],
                  state: Mapping[str, np.ndarray]) -> Hook | None:
        """The (anchor, mu, correction) hook of this client's local objective, or None for the plain loss."""
        return None

    def report(self, delta: np.ndarray, downlink: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray],
               run: LocalRun, out: Mapping[str, np.ndarray]) -> None:
        """Fill the declared uplink fields in ``out`` and update this client's state, after training."""
        return None

    def personal(self, theta: np.ndarray, state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, Hook] | None:
        """A model of this client's own, trained in place beside the global update with this objective hook, and
        never sent (Ditto); None for strategies without one."""
        return None

    def personal_model(self, theta: np.ndarray, state: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The model the client's own test rows judge when theta is the global model, if it keeps one of its own;
        None: theta."""
        return None


class Strategy(ABC):
    """The server's half: samples clients, turns their results into a new model, keeps server state."""

    name: ClassVar[str] = ""  # the registered name; a user's class named by its module:Class path needs none
    parameters: ClassVar[dict[str, tuple[Any, Constraint]]] = {}  # server.<key>: (default, constraint)
    downlink: ClassVar[tuple[Field, ...]] = ()  # model-sized fields sent with theta
    uplink: ClassVar[tuple[Field, ...]] = ()  # fields sent with each client's delta
    client: ClassVar[type[ClientUpdate]] = ClientUpdate
    averages_deltas: ClassVar[bool] = False  # combines deltas through combine(), so any server.aggregator fits
    # Reads each client's own row (results.deltas, results.weights or results.fields) beyond combine(): then the
    # round keeps rows for it, and an exchange that delivers sums only (the Reduce, secure aggregation) is refused.
    # A strategy that neither averages deltas nor needs only sums reads rows whatever it says here.
    needs_rows: ClassVar[bool] = False
    # Secure aggregation gives the server sums only: of weight_k delta_k, of each model-sized uplink field, and of
    # the weights.  Strategies that average deltas take that; others say here whether their step needs only sums,
    # and whether their mean weighs clients by their rows (else every client weighs 1).
    needs_only_sums: ClassVar[bool] = False
    weighs_by_rows: ClassVar[bool] = True
    asynchronous: ClassVar[bool] = False  # runs under server.mode = "async" (mpifl.strategies.asynchronous)
    steps_without_clients: ClassVar[bool] = False  # its server steps even in a round in which no client trained

    def __init__(self, setup: Setup):
        if not 0.0 < setup.fraction <= 1.0:
            raise ValueError("The client fraction must be in (0, 1].")
        self.setup = setup
        self.params = setup.params
        self.aggregator = setup.aggregator
        self.aggregator.prepare(int(np.prod(setup.shape)))

    def combine(self, results: RoundResults) -> tuple[np.ndarray, dict[str, Any]]:
        """The round's combined delta (theta's shape, float64) by server.aggregator, and what the aggregator
        said about the clients: the ids it selected, or the weight each kept, for metrics.jsonl.  With
        [privacy], the release's noised mean of the clipped deltas, and what it said (the clip)."""
        if self.setup.release is not None:
            delta, said = self.setup.release.combine_results(results)
            return delta.reshape(self.setup.shape), said
        if results.summed is not None:  # secure aggregation: the weighted mean from the sums alone
            weight = results.summed_weight if results.summed_weight > 0 else 1.0
            return (results.summed / weight).reshape(self.setup.shape), {}
        combined = self.aggregator(results.deltas.reshape(results.count, -1).astype(np.float64), results.weights)
        said: dict[str, Any] = {}
        if combined.selected is not None:
            said["selected"] = results.clients[combined.selected].tolist()
        if combined.kept is not None:
            said["kept"] = [round(float(k), 6) for k in combined.kept]
        return combined.delta.reshape(self.setup.shape), said

    @classmethod
    def reads_rows(cls) -> bool:
        """Whether this strategy needs each client's own row at the server (see needs_rows)."""
        return cls.needs_rows or not (cls.averages_deltas or cls.needs_only_sums)

    @classmethod
    def check(cls, params: Mapping[str, Any], n_clients: int) -> str | None:
        """A message if these parameters cannot work together (beyond each one's constraint), else None."""
        return None

    def plan(self, rnd: int) -> np.ndarray:
        """Local epochs of every client in round ``rnd`` (0: does not train); see sampling.round_plan."""
        s = self.setup
        if s.held_out is not None:  # a validation fold: the round samples among the other clients only
            plan = np.zeros(s.n_clients, dtype=np.int64)
            training = np.flatnonzero(~s.held_out)
            plan[training] = self._plan(rnd, training.size)
            return plan
        return self._plan(rnd, s.n_clients)

    def _plan(self, rnd: int, n_clients: int) -> np.ndarray:
        s = self.setup
        if s.fraction == 1.0 and s.stragglers == 0.0:  # every client, every round: no draw to make
            return np.full(n_clients, s.epochs, dtype=np.int64)
        return round_plan(s.seed, rnd, n_clients, s.fraction, s.epochs, s.stragglers, s.drop_stragglers,
                          s.sampling == "poisson")

    def downlink_values(self) -> dict[str, np.ndarray]:
        """Current values of the declared downlink fields (theta is sent by the loop)."""
        return {}

    @abstractmethod
    def aggregate(self, rnd: int, theta: np.ndarray, results: RoundResults) -> tuple[np.ndarray, dict[str, float]]:
        """(new theta in theta's dtype, metrics for metrics.jsonl) from one round's results."""

    def state(self) -> dict[str, np.ndarray]:
        """Server state to checkpoint: the aggregator's (centered clipping's last aggregate), if it keeps any;
        subclasses add their own to this."""
        return {f"aggregator_{name}": value for name, value in self.aggregator.state().items()}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what state() returned."""
        for name, value in self.state().items():
            if name in state:
                value[...] = state[name]


def weighted_mean(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum of weights[k] * rows[k] over sum of weights, accumulated in float64; rows keep their trailing shape."""
    flat = rows.reshape(rows.shape[0], -1).astype(np.float64, copy=False)
    return ((weights.astype(np.float64) @ flat) / float(weights.sum())).reshape(rows.shape[1:])


def apply_step(theta: np.ndarray, step: np.ndarray) -> np.ndarray:
    """theta + step, computed in float64 and returned in theta's dtype (a new array)."""
    new = theta.astype(np.float64)
    new += step
    return new.astype(theta.dtype, copy=False)


def norm(x: np.ndarray) -> float:
    flat = x.reshape(-1).astype(np.float64, copy=False)
    return float(np.sqrt(flat @ flat))
