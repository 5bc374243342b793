"""``model.kind = "torch"``: any PyTorch module, trained by mpifl as one flat parameter vector.

``model.module = "my_fl.nets:build"`` names a function ``build(n_features,
n_outputs)`` that returns an ``nn.Module`` taking a batch of rows
(batch, n_features) and returning its logits (batch, n_outputs).  Its
parameters, in ``module.parameters()`` order, travel as the flat theta in
the job's dtype, so every strategy, aggregator, codec, DP, SecAgg,
checkpoint and resume works unchanged.  Local training is mpifl's SGD step
(mpifl.models.function.FunctionKernels: the job's lr, momentum, batch size
and epochs, l2 on the weights, FedProx's proximal term and SCAFFOLD's
correction), with the gradient from torch's autograd on the summed loss of
the output link.

It is deterministic: the module's initial parameters come from
torch.manual_seed of the job's stream, torch runs deterministic algorithms
on ``train.threads`` threads (1 by default), and the batches are mpifl's, so
repeats are bitwise.  Where CUDA is present, the rank with node-local rank r
computes on device r mod the GPU count (``device_for``); theta, the deltas
and everything on the wire stay NumPy arrays on the host.  torch is imported
only by a job that uses this kind (``pip install "mpifl[torch]"``).
"""

from __future__ import annotations

import os

import numpy as np

from mpifl.constraints import Text
from mpifl.errors import ConfigError, DataError
from mpifl.models.base import OUTPUT, NetworkKind
from mpifl.models.function import FunctionKernels

# The launchers' node-local rank, in the order they are looked for: MPICH's Hydra, Open MPI, Slurm's srun.
LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def device_for(environ, gpus: int) -> str:
    """The torch device of this process: "cpu" without a GPU, else cuda:(node-local rank mod the GPU count)."""
    if gpus < 1:
        return "cpu"
    local = next((environ[name] for name in LOCAL_RANK_VARIABLES if environ.get(name, "").isdigit()), "0")
    return f"cuda:{int(local) % gpus}"


def _torch():
    try:
        import torch
    except ImportError:
        raise ConfigError('model.kind = "torch" needs PyTorch: pip install "mpifl[torch]".') from None
    return torch


class TorchModel(NetworkKind):
    name = "torch"
    parameters = {
        "module": ("", Text()),  # "package.module:build"; build(n_features, n_outputs) -> nn.Module
        **OUTPUT,
    }
    uses_blas = True
    one_variant = "a PyTorch module (autograd on the CPU, mpifl's SGD step)"

    @classmethod
    def spec_fields(cls, cfg) -> dict:
        if not cfg.model.module:
            raise ConfigError('model.kind = "torch" needs model.module = "package.module:build", a function that '
                              "returns an nn.Module for (n_features, n_outputs).")
        return {"output": cfg.model.output, "module": cfg.model.module, "init_seed": init_seed(cfg.seed)}

    @staticmethod
    def layout(spec):
        return TorchLayout(spec)

    @staticmethod
    def kernels() -> type:
        return TorchKernels

    @classmethod
    def describe(cls, spec) -> str:
        return f"torch {spec.module} ({spec.link} output)"

    @classmethod
    def from_tensors(cls, spec, tensors: dict, where: str) -> tuple[np.ndarray, dict]:
        """(theta: the trainable parameters by name, in ``parameters()`` order; the frozen ones by name), from a
        state_dict; the first name or shape that does not match is named.  Buffers are not read."""
        named = list(build_module(spec).named_parameters())
        for name, parameter in named:
            if name not in tensors:
                raise DataError(f"model.init {where}: has no tensor {name!r}, a parameter of {spec.module} (it has "
                                f"{', '.join(sorted(tensors)[:8]) or 'none'}{', ...' if len(tensors) > 8 else ''}).")
            if tuple(tensors[name].shape) != tuple(parameter.shape):
                raise DataError(f"model.init {where}: tensor {name!r} has shape {tuple(tensors[name].shape)}; "
                                f"{spec.module}'s parameter has shape {tuple(parameter.shape)}.")
        theta = np.concatenate([np.asarray(tensors[name], dtype=np.float64).reshape(-1)
                                for name, p in named if p.requires_grad])
        return theta, {name: np.asarray(tensors[name]) for name, p in named if not p.requires_grad}


def init_seed(seed: int) -> int:
    """The torch seed of a job's module, from the job's seed (the same on every rank)."""
    from mpifl.rng import Purpose, stream

    return int(stream(seed, Purpose.MODEL_INIT).integers(2**62))


def trainable(module) -> list:
    """The parameters that train (requires_grad): only they are theta, travel and take l2 and momentum."""
    return [p for p in module.parameters() if p.requires_grad]


def build_module(spec, seed: int | None = None):
    """The user's module for this spec, its parameters seeded from ``seed`` (None: as built), in the job's dtype."""
    from mpifl.registry import import_path

    torch = _torch()
    build = import_path(spec.module, "The 'model.module' parameter")
    if seed is not None:
        torch.manual_seed(seed)
    module = build(spec.n_features, spec.n_outputs)
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model.module {spec.module!r} returned {type(module).__name__}, not an nn.Module.")
    return module.to(dtype=torch.float64 if spec.dtype == np.float64 else torch.float32)


class TorchLayout:
    """The module's trainable parameters as one flat vector: size, seeded start, and l2 on the weights (not 1-D
    biases).  Frozen parameters (requires_grad = False) are not in it: each rank keeps them as built (from the
    job's seed, the same everywhere) or as model.init loaded them."""

    def __init__(self, spec):
        self.spec = spec
        params = trainable(build_module(spec, spec.init_seed))
        if not params:
            raise ConfigError(f"model.module {spec.module!r} has no parameter with requires_grad: nothing to train.")
        self.shape = (sum(p.numel() for p in params),)
        self._mask = np.concatenate([np.full(p.numel(), p.dim() > 1) for p in params])

    def initial(self, seed: int, dtype: np.dtype) -> np.ndarray:
        params = trainable(build_module(self.spec, init_seed(seed)))
        return np.concatenate([p.detach().cpu().numpy().reshape(-1) for p in params]).astype(dtype)

    def penalised(self) -> np.ndarray:
        return self._mask.copy()


class TorchFunction:
    """loss_and_gradient for FunctionKernels, by autograd.

    On the CPU nothing is copied: the module's parameters are views of theta's
    own memory (rebound only when a call passes another array) and their
    ``.grad`` views of ``grad``'s, so autograd adds the batch's gradient
    straight into mpifl's buffer, as the function's contract asks.  On a GPU,
    theta is copied into one flat device tensor and the gradient back.
    """

    def __init__(self, spec, threads: int):
        torch = self.torch = _torch()
        torch.set_num_threads(max(1, threads))
        torch.use_deterministic_algorithms(True)
        self.device = torch.device(device_for(os.environ, torch.cuda.device_count() if torch.cuda.is_available() else 0))
        self.module = build_module(spec, spec.init_seed).to(self.device)  # frozen parameters as every rank builds
        self.link = spec.link
        self.params = trainable(self.module)
        self.on_host = self.device.type == "cpu"
        self.flat = None if self.on_host else torch.zeros(sum(p.numel() for p in self.params),
                                                          dtype=self.params[0].dtype, device=self.device)
        self._bound = {"theta": None, "grad": None}
        if self.flat is not None:
            self._bind_views(self.flat, "data")

    def _bind_views(self, flat, attribute: str) -> None:
        """Point each parameter's data (or grad) at its slice of one flat tensor."""
        at = 0
        for p in self.params:
            setattr(p, attribute, flat[at:at + p.numel()].view_as(p))
            at += p.numel()

    def _bind(self, array: np.ndarray, attribute: str) -> None:
        """Make the parameters' data or grad views of a NumPy array, unless they already are."""
        key = "theta" if attribute == "data" else "grad"
        where = (array.__array_interface__["data"][0], array.size, array.dtype.str)
        if self._bound[key] != where:
            self._bind_views(self.torch.from_numpy(array.reshape(-1)), attribute)
            self._bound[key] = where

    def __call__(self, theta, X, y, grad):
        torch, F = self.torch, self.torch.nn.functional
        host = self.on_host and theta.flags.c_contiguous and grad.flags.c_contiguous
        if host:
            self._bind(theta, "data")
            self._bind(grad, "grad")
        else:
            with torch.no_grad():
                self.flat.copy_(torch.from_numpy(np.ascontiguousarray(theta.reshape(-1))))
            for p in self.params:
                p.grad = None
        out = self.module(torch.from_numpy(np.ascontiguousarray(X)).to(self.device))
        target = torch.from_numpy(np.ascontiguousarray(y)).to(self.device)
        if self.link == "softmax":
            loss = F.cross_entropy(out, target.long(), reduction="sum")
            correct = int((out.argmax(dim=1) == target.long()).sum())
        elif self.link == "logistic":
            z = out.reshape(-1)
            loss = F.binary_cross_entropy_with_logits(z, target, reduction="sum")
            correct = int(((z > 0) == (target > 0.5)).sum())
        else:
            loss, correct = 0.5 * ((out.reshape(-1) - target) ** 2).sum(), 0
        loss.backward()
        if host:
            self._check_accumulated(grad)
        else:
            grad += torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                               for p in self.params]).cpu().numpy().reshape(grad.shape)
        return float(loss.detach()), correct

    def _check_accumulated(self, grad) -> None:
        """autograd adds into an existing .grad in place; where it replaced one instead (a parameter the loss does
        not reach keeps its view), add the new tensor into grad and bind the view again."""
        at = 0
        base = self.torch.from_numpy(grad.reshape(-1))
        for p in self.params:
            view = base[at:at + p.numel()]
            if p.grad is None or p.grad.data_ptr() != view.data_ptr():
                if p.grad is not None:
                    view += p.grad.reshape(-1)
                p.grad = view.view_as(p)
            at += p.numel()


    def fix(self, tensors: dict) -> None:
        """Set the frozen parameters from named tensors (model.init's state_dict), the same on every rank."""
        torch = self.torch
        with torch.no_grad():
            for name, parameter in self.module.named_parameters():
                if not parameter.requires_grad and name in tensors:
                    parameter.copy_(torch.from_numpy(np.asarray(tensors[name])).to(parameter.dtype))


class TorchKernels(FunctionKernels):
    """FunctionKernels around the module's autograd."""

    def __init__(self, spec, threads: int = 1, selection=None):
        super().__init__(spec, threads, selection)
        self.function = TorchFunction(spec, threads)

    def fix(self, tensors: dict) -> None:
        self.function.fix(tensors)



