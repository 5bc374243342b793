"""Which of a PyTorch module's tensors are theta, which stay on each rank, and in what order.

A module holds trained parameters (``requires_grad``), frozen parameters,
and buffers (BatchNorm's running statistics and counter, or any registered
buffer).  theta is [the travelling buffers | the trained parameters], with
the head's parameters last, so that FedPer and FedRep find the head at
theta's end.  Frozen parameters never enter theta.  Buffers enter it under
``model.buffers = "average"``; under ``"local"`` each client keeps its own,
and under ``"frozen"`` they stay as built or loaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mpifl.errors import ConfigError

BUFFER_POLICIES = ("average", "local", "frozen")

# The launchers' node-local rank, in the order they are looked for: MPICH's Hydra, Open MPI, Slurm's srun.
LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def device_for(environ, gpus: int) -> str:
    """The torch device of this process: "cpu" without a GPU, else cuda:(node-local rank mod the GPU count)."""
    if gpus < 1:
        return "cpu"
    local = next((environ[name] for name in LOCAL_RANK_VARIABLES if environ.get(name, "").isdigit()), "0")
    return f"cuda:{int(local) % gpus}"


def torch_module():
    """torch itself, or a ConfigError that says how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError('model.kind = "torch" needs PyTorch: pip install "mpifl[torch]".') from None
    return torch


def init_seed(seed: int) -> int:
    """The torch seed of a job's module, from the job's seed (the same on every rank)."""
    from mpifl.rng import Purpose, stream

    return int(stream(seed, Purpose.MODEL_INIT).integers(2**62))


def build_module(spec, seed: int | None = None):
    """The user's module for this spec, its parameters seeded from ``seed`` (None: as built), in the job's dtype."""
    from mpifl.registry import import_path

    torch = torch_module()
    build = import_path(spec.module, "The 'model.module' parameter")
    if seed is not None:
        torch.manual_seed(seed)
    module = build(spec.n_features, spec.n_outputs)
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model.module {spec.module!r} returned {type(module).__name__}, not an nn.Module.")
    return module.to(dtype=torch.float64 if spec.dtype == np.float64 else torch.float32)


@dataclass(frozen=True)
class Parts:
    """The names and sizes of theta's pieces for one module and buffer policy."""

    param_names: tuple[str, ...]  # trained parameters in theta's order (the head's last)
    param_sizes: tuple[int, ...]
    penalised_params: tuple[bool, ...]  # l2 applies: weights (2-D and up), never a bias
    head_names: tuple[str, ...]
    buffer_names: tuple[str, ...]  # every persistent buffer (what state_dict holds), in named_buffers() order
    buffer_sizes: tuple[int, ...]
    travelling_buffers: tuple[str, ...]  # the buffers in theta (policy "average"), ahead of the parameters
    policy: str
    n_frozen: int  # values of frozen parameters (they stay on each rank)

    @classmethod
    def of(cls, module, policy: str, head: str, where: str) -> Parts:
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ConfigError(f"model.module {where!r} has no parameter with requires_grad: nothing to train.")
        head_names: tuple[str, ...] = ()
        if head:
            try:
                owner = module.get_submodule(head)
            except AttributeError:
                children = ", ".join(name for name, _ in module.named_modules() if name) or "none"
                raise ConfigError(f"model.head {head!r} is not a submodule of {where} (it has: {children}).") from None
            ids = {id(p) for p in owner.parameters() if p.requires_grad}
            head_names = tuple(name for name, p in named if id(p) in ids)
            if not head_names or len(head_names) == len(named):
                raise ConfigError(f"model.head {head!r} of {where} must hold some of the trained parameters, not "
                                  f"{'none' if not head_names else 'all'} of them: the rest is the shared body.")
            named = [item for item in named if item[0] not in head_names] + [
                item for item in named if item[0] in head_names]
        saved = set(module.state_dict())  # a non-persistent buffer (BERT's position_ids) is a constant, not state
        buffers = [(name, b) for name, b in module.named_buffers() if name in saved]
        return cls(param_names=tuple(name for name, _ in named), param_sizes=tuple(p.numel() for _, p in named),
                   penalised_params=tuple(p.dim() > 1 for _, p in named), head_names=head_names,
                   buffer_names=tuple(name for name, _ in buffers), buffer_sizes=tuple(b.numel() for _, b in buffers),
                   travelling_buffers=tuple(name for name, _ in buffers) if policy == "average" else (),
                   policy=policy,
                   n_frozen=sum(p.numel() for p in module.parameters() if not p.requires_grad))

    @property
    def n_params(self) -> int:
        return sum(self.param_sizes)

    @property
    def n_buffers(self) -> int:
        """Values of every buffer (what a client keeps under "local")."""
        return sum(self.buffer_sizes)

    @property
    def n_travelling(self) -> int:
        """Values of the buffers in theta: all of them under "average", else none."""
        return self.n_buffers if self.travelling_buffers else 0

    @property
    def n_head(self) -> int:
        return sum(size for name, size in zip(self.param_names, self.param_sizes) if name in self.head_names)

    @property
    def size(self) -> int:
        return self.n_travelling + self.n_params

    def params(self, module) -> list:
        """The module's trained parameters in theta's order."""
        named = dict(module.named_parameters())
        return [named[name] for name in self.param_names]

    def buffers(self, module) -> list:
        """The module's buffers in named_buffers() order."""
        named = dict(module.named_buffers())
        return [named[name] for name in self.buffer_names]

    def flat(self, module) -> np.ndarray:
        """theta of this module as it stands (float64)."""
        pieces = [b for b in self.buffers(module)] if self.travelling_buffers else []
        pieces += self.params(module)
        return np.concatenate([t.detach().cpu().double().numpy().reshape(-1) for t in pieces])

    def penalised(self) -> np.ndarray:
        return np.concatenate([np.zeros(self.n_travelling, dtype=bool)] +
                              [np.full(size, flag) for size, flag in zip(self.param_sizes, self.penalised_params)])


@functools.lru_cache(maxsize=16)
def layout_of(spec) -> TorchLayout:
    """The layout of a spec's module, built once per process (the spec is frozen, so it is a cache key)."""
    return TorchLayout(spec)


class TorchLayout:
    """theta's layout: [travelling buffers | trained parameters, the head's last]; its seeded start, and l2 on the
    weights (never a bias, never a buffer)."""

    def __init__(self, spec):
        self.spec = spec
        module = build_module(spec, spec.init_seed)
        self.parts = Parts.of(module, spec.option("buffers"), spec.option("head"), spec.module)
        self.shape = (self.parts.size,)
        self._start = self.parts.flat(module)

    def initial(self, seed: int, dtype: np.dtype) -> np.ndarray:
        if init_seed(seed) == self.spec.init_seed:
            return self._start.astype(dtype)
        return self.parts.flat(build_module(self.spec, init_seed(seed))).astype(dtype)

    def penalised(self) -> np.ndarray:
        return self.parts.penalised()
