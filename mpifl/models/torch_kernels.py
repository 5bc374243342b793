"""The torch kind's kernels: autograd for the gradient, and the local step on flat tensors.

The module's trained parameters are views of one flat tensor it owns, and
their ``.grad`` views of another, so autograd writes the gradient in one
place and the step (SGD with momentum, Adam or AdamW, l2 on the weights,
FedProx's pull and SCAFFOLD's correction) runs as a few in-place torch
operations over the flat vector.  theta is copied in once per call (an
epoch of local steps) and out at its end: the flat tensors are aligned the
same way in every process, so BLAS sums in the same order and the model is
the same bytes on any rank count, wherever theta itself lives.  On a GPU,
the flat tensors, the optimizer state and the shard's rows stay on the
device for the whole epoch.

Buffers follow ``model.buffers``: read from theta's head ("average") or the
client's own copy ("local", mpifl.local.LocalTrainer carries it) before each
call, and written back after training; "frozen" runs the layers that own
buffers in eval mode while the rest trains.  Evaluation always runs the
module in eval mode, in chunks, without autograd.
"""

from __future__ import annotations

import math
import os

import numpy as np

from mpifl.errors import ConfigError
from mpifl.kernels.base import trained_range
from mpifl.kernels.variants import Selection
from mpifl.models.function import FunctionKernels
from mpifl.models.torch_parts import build_module, device_for, layout_of, torch_module

EVAL_CHUNK = 1024  # rows per forward in evaluation: bounds the memory of a large test set


class TorchKernels(FunctionKernels):
    """ModelKernels for a PyTorch module (see the module docstring)."""

    central_evaluation = True

    def __init__(self, spec, threads: int = 1, selection: Selection | None = None):
        torch = self.torch = torch_module()
        self.spec, self.threads = spec, threads
        self.selection = selection if selection is not None else Selection(how="default", note=spec.kind.one_variant)
        torch.set_num_threads(max(1, threads))
        torch.use_deterministic_algorithms(True)
        self.device = torch.device(device_for(os.environ, torch.cuda.device_count() if torch.cuda.is_available()
                                              else 0))
        self.host = self.device.type == "cpu"
        self.parts = parts = layout_of(spec).parts
        self.module = build_module(spec, spec.init_seed).to(self.device)
        self.params = parts.params(self.module)
        self.buffers = parts.buffers(self.module)
        self.at = parts.n_travelling  # where the parameters start in theta
        self.policy = parts.policy
        self.batch_norms = [m for m in self.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        self.stateful = [m for m in self.module.modules() if any(True for _ in m.buffers(recurse=False))]
        self.central_evaluation = not (self.policy == "local" and parts.n_buffers)
        self.mask = spec.penalised()
        self.weights = torch.from_numpy(self.mask[self.at:].astype(self.dtype_np)).to(self.device)
        self.loss = _loss_function(spec, torch)
        self.shape_in = tuple(spec.input_shape) or (spec.n_features,)
        self.tokens = spec.option("input_dtype") == "int64"
        self.carried: np.ndarray | None = None  # a client's own buffers ("local"), set by carry()
        self._data: dict[tuple, tuple] = {}
        self._scratch = spec.zeros()
        # one flat tensor each for the parameters and their gradient, the parameters' data and .grad views of them
        self.flat = torch.zeros(parts.n_params, dtype=self.params[0].dtype, device=self.device)
        self.flat_grad = torch.zeros_like(self.flat)
        self._bind_views(self.flat, "data")
        self._bind_views(self.flat_grad, "grad")

    @property
    def dtype_np(self) -> np.dtype:
        return np.dtype(self.spec.dtype)

    # -- what a trainer hands over ------------------------------------------------------------------------------
    def optimizer_state(self, optimizer: str = "sgd") -> np.ndarray:
        """The state one trainer keeps: momentum (theta's shape), or Adam's two moments and its step count."""
        if optimizer == "sgd":
            return self.spec.zeros()
        return np.zeros(2 * self.parts.n_params + 1, dtype=self.spec.dtype)

    def carried_state(self) -> np.ndarray | None:
        """A fresh copy of the buffers a client keeps as its own ("local"), as built or loaded; None otherwise."""
        if self.policy != "local" or not self.parts.n_buffers:
            return None
        return np.concatenate([b.detach().cpu().double().numpy().reshape(-1) for b in self.buffers])

    def carry(self, state: np.ndarray | None) -> None:
        """Use this client's own buffers in the calls that follow (read before each, written after training)."""
        self.carried = state

    def seed_round(self, seed: int, rnd: int, owner: int) -> None:
        """Seed torch's generator (dropout) from (seed, round, client): a module's randomness repeats bitwise."""
        from mpifl.rng import Purpose, stream

        self.torch.manual_seed(int(stream(seed, Purpose.MODEL_NOISE, rnd, owner).integers(2**62)))

    def fix(self, tensors: dict) -> None:
        """Set what stays out of theta (frozen parameters, buffers that do not travel) from model.init's tensors."""
        torch = self.torch
        with torch.no_grad():
            for name, tensor in [*self.module.named_parameters(), *self.module.named_buffers()]:
                if name in tensors:
                    tensor.copy_(torch.from_numpy(np.asarray(tensors[name])).to(tensor.dtype))

    def export(self, theta: np.ndarray, directory) -> None:
        """model.pt: the module's state_dict with theta's parameters and buffers (and the frozen parameters), for
        ``module.load_state_dict(torch.load("model.pt"))`` or another run's model.init."""
        self.carried = None  # under "local" the clients' own statistics stay theirs: the module's are as built
        self._enter(np.ascontiguousarray(theta), None, None)
        state = {name: tensor.detach().cpu() for name, tensor in self.module.state_dict().items()}
        self.torch.save(state, directory / "model.pt")

    # -- the calls ----------------------------------------------------------------------------------------------
    def sgd_epoch(self, X, y, theta, velocity, grad, order, batch_size, lr, momentum, l2, hook=None, trainable=None,
                  optimizer=None):
        """One epoch of local steps on the rows in ``order``; ``optimizer`` is (name, beta1, beta2, eps), None:
        SGD.  Only the ``trainable`` slice of theta's parameters moves."""
        torch = self.torch
        lo, hi = trained_range(trainable, theta.size)
        lo, hi = max(lo - self.at, 0), max(hi - self.at, 0)
        P, G, S = self._enter(theta, grad, velocity)
        Xt, yt = self._rows(X, y)
        update = self._update(optimizer, P, G, S, slice(lo, hi), lr, momentum, l2, hook)
        self._train_mode()
        rows = torch.from_numpy(np.ascontiguousarray(order, dtype=np.int64)).to(self.device)
        few = bool(self.batch_norms) and self.policy != "frozen"
        for s in range(0, rows.shape[0], batch_size):
            batch = rows[s:s + batch_size]
            count = batch.shape[0]
            if few and count < 2:  # BatchNorm has no batch statistics on one row: the batch is dropped
                continue
            loss = self.loss(self.module(self._shaped(Xt.index_select(0, batch))), yt.index_select(0, batch))
            loss = loss * (1.0 / count)  # the mean over the batch, as a PyTorch loop's loss / len(batch)
            if update is None:  # plain SGD: autograd's fresh gradients straight into the step, one pass
                grads = torch.autograd.grad(loss, self.params, allow_unused=True)
                with torch.no_grad():
                    for parameter, gradient in zip(self.params, grads):
                        if gradient is not None:
                            parameter.add_(gradient, alpha=-lr)
                continue
            G.zero_()
            loss.backward()
            self._check_accumulated()
            update()
        self._leave(theta, velocity, S, trained=True)

    def _update(self, optimizer, P, G, S, part: slice, lr, momentum, l2, hook):
        """The step after each batch's backward, on the flat gradient G: l2 on the weights, FedProx's pull,
        SCAFFOLD's correction, then SGD (with momentum), Adam or AdamW.  None for plain SGD on all of theta."""
        torch = self.torch
        name = optimizer[0] if optimizer else "sgd"
        anchor, mu, correction = hook if hook is not None else (None, 0.0, None)
        A = self._tensor(anchor)[self.at:][part] if mu else None
        C = self._tensor(correction)[self.at:][part] if correction is not None and correction.size else None
        if name == "sgd" and not momentum and not l2 and A is None and C is None and \
                (part.start, part.stop) == (0, self.parts.n_params):
            return None
        p, g, w, n = P[part], G[part], self.weights[part], self.parts.n_params
        u = S[self.at:][part] if name == "sgd" else None
        m, v = (S[:n][part], S[n:2 * n][part]) if name != "sgd" else (None, None)
        decay = 1.0 - lr * l2 * w if name == "adamw" and l2 else None

        def update() -> None:
            if l2 and name != "adamw":
                g.addcmul_(p, w, value=l2)
            if A is not None:
                g.add_(torch.sub(p, A), alpha=mu)
            if C is not None:
                g.add_(C)
            if name == "sgd":
                if momentum:
                    u.mul_(momentum).add_(g)
                p.add_(u if momentum else g, alpha=-lr)
                return
            _, beta1, beta2, eps = optimizer
            S[2 * n] += 1
            t = float(S[2 * n])
            if decay is not None:
                p.mul_(decay)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(eps)
            p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))

        return update

    def full_gradient_sum(self, X, y, theta, grad, want_loss=False) -> float:
        return self.batch_gradient_sum(X, y, theta, np.empty(0, dtype=np.int64), 0, X.shape[0], grad, want_loss)

    def batch_gradient_sum(self, X, y, theta, order, start, stop, grad, want_loss=False) -> float:
        """The summed gradient of rows start:stop of ``order`` (all rows in order when it is empty), into grad."""
        if self.parts.n_buffers and self.policy != "frozen":
            raise ConfigError(f"model.module {self.spec.module!r} has buffers (batch statistics), which a gradient "
                              "Allreduce cannot keep the same on every rank: use train.algorithm = \"local_sgd\" "
                              "(the buffers are averaged with the parameters) or model.buffers = \"frozen\".")
        torch = self.torch
        P, G, _ = self._enter(theta, grad, None)
        Xt, yt = self._rows(X, y)
        rows = (torch.from_numpy(np.ascontiguousarray(order[start:stop])) if order.size
                else torch.arange(start, stop)).to(self.device)
        self._train_mode()
        G.zero_()
        loss = self.loss(self.module(self._shaped(Xt.index_select(0, rows))), yt.index_select(0, rows))
        loss.backward()
        self._check_accumulated()
        grad.reshape(-1)[: self.at] = 0
        grad.reshape(-1)[self.at:] = G.cpu().numpy()
        return float(loss.detach()) if want_loss else 0.0

    def evaluate_sums(self, X, y, theta) -> tuple[float, int]:
        """(summed loss, correct) of theta on X, the module in eval mode and without autograd."""
        torch = self.torch
        self._enter(theta, None, None)
        Xt, yt = self._rows(X, y)
        self.module.eval()
        total, correct = 0.0, 0
        with torch.no_grad():
            for s in range(0, Xt.shape[0], EVAL_CHUNK):
                out = self.module(self._shaped(Xt[s:s + EVAL_CHUNK].clone()))  # aligned, wherever X lives
                target = yt[s:s + EVAL_CHUNK]
                total += float(self.loss(out, target))
                correct += _correct(out, target, self.spec.link)
        self.module.train()
        return total, correct

    # -- moving theta, state, buffers and rows ------------------------------------------------------------------
    def _enter(self, theta, grad, state):
        """Copy theta's parameters into the module's own flat tensor (aligned: BLAS then sums in the same order
        wherever theta lives, so a model is the same bytes on any rank count) and load the buffers.  Returns the
        flat parameters, their gradient, and the optimizer state (a view of ``state`` on the CPU)."""
        torch = self.torch
        flat = theta.reshape(-1)
        with torch.no_grad():
            self.flat.copy_(torch.from_numpy(flat[self.at:]))
        S = None
        if state is not None:
            S = torch.from_numpy(state.reshape(-1))
            S = S if self.host else S.to(self.device)
        self._load_buffers(flat)
        return self.flat, self.flat_grad, S

    def _leave(self, theta, state, S, trained: bool) -> None:
        flat = theta.reshape(-1)
        flat[self.at:] = self.flat.cpu().numpy()
        if state is not None and not self.host:
            state.reshape(-1)[...] = S.cpu().numpy()
        if trained:
            self._store_buffers(flat)

    def _load_buffers(self, flat) -> None:
        source = flat if self.parts.travelling_buffers else self.carried if self.policy == "local" else None
        if source is None:
            return
        at = 0
        with self.torch.no_grad():
            for b in self.buffers:
                b.copy_(self.torch.from_numpy(np.asarray(source[at:at + b.numel()])).view(b.shape))
                at += b.numel()

    def _store_buffers(self, flat) -> None:
        target = flat if self.parts.travelling_buffers else self.carried if self.policy == "local" else None
        if target is None:
            return
        at = 0
        for b in self.buffers:
            target[at:at + b.numel()] = b.detach().cpu().numpy().reshape(-1)
            at += b.numel()

    def _train_mode(self) -> None:
        self.module.train()
        if self.policy == "frozen":  # the layers that own buffers normalise with them and leave them be
            for owner in self.stateful:
                owner.eval()

    def _rows(self, X, y):
        """X and y as tensors on the device (the input dtype; the link's target dtype), cached per shard."""
        key = (X.__array_interface__["data"][0], X.shape, X.dtype.str, y.__array_interface__["data"][0])
        cached = self._data.get(key)
        if cached is None:
            torch = self.torch
            Xt = torch.from_numpy(np.ascontiguousarray(X))
            Xt = Xt.round().long() if self.tokens else Xt
            yt = torch.from_numpy(np.ascontiguousarray(y))
            yt = yt.long() if self.spec.link == "softmax" else yt
            cached = self._data[key] = (Xt.to(self.device), yt.to(self.device), X, y)  # X, y: kept alive
        return cached[0], cached[1]

    def _shaped(self, xb):
        return xb.reshape(xb.shape[0], *self.shape_in)

    def _tensor(self, array):
        t = self.torch.from_numpy(np.ascontiguousarray(array).reshape(-1))
        return t if self.host else t.to(self.device)

    def _bind_views(self, flat, attribute: str) -> None:
        """Point each trained parameter's data (or grad) at its slice of one flat tensor."""
        at = 0
        for p in self.params:
            setattr(p, attribute, flat[at:at + p.numel()].view_as(p))
            at += p.numel()

    def _check_accumulated(self) -> None:
        """autograd adds into an existing .grad in place; where it replaced one instead, add the new tensor into
        the flat gradient and bind the view again."""
        at = 0
        for p in self.params:
            view = self.flat_grad[at:at + p.numel()]
            if p.grad is None or p.grad.data_ptr() != view.data_ptr():
                if p.grad is not None:
                    view += p.grad.reshape(-1)
                p.grad = view.view_as(p)
            at += p.numel()


def _loss_function(spec, torch):
    """The batch's summed loss: the user's model.loss, or the output link's."""
    F = torch.nn.functional
    named = spec.option("loss")
    if named:
        from mpifl.registry import import_path

        return import_path(named, "The 'model.loss' parameter")
    if spec.link == "softmax":
        return lambda out, target: F.cross_entropy(out, target, reduction="sum")
    if spec.link == "logistic":
        return lambda out, target: F.binary_cross_entropy_with_logits(out.reshape(-1), target, reduction="sum")
    return lambda out, target: 0.5 * ((out.reshape(-1) - target) ** 2).sum()


def _correct(out, target, link: str) -> int:
    if link == "softmax":
        return int((out.argmax(dim=1) == target).sum())
    if link == "logistic":
        return int(((out.reshape(-1) > 0) == (target > 0.5)).sum())
    return 0
