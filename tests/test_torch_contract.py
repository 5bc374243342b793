"""The torch kind's contract, each path against a plain PyTorch loop on one process.

Buffers (average, local, frozen), eval-mode evaluation, frozen parameters,
SGD with momentum and l2, Adam and AdamW, a user's loss, a named head and
the shaped input: mpifl's LocalTrainer on the adapter must take the same
steps as the loop a PyTorch user would write with torch.optim.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpifl.errors import ConfigError
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.model import ModelSpec
from mpifl.models import MODELS
from mpifl.rng import Purpose, stream

torch = pytest.importorskip("torch")

import torch_nets  # noqa: E402

from mpifl.data.shards import Shard  # noqa: E402
from mpifl.kernels import ModelKernels  # noqa: E402
from mpifl.models.torch_parts import build_module, init_seed  # noqa: E402

N_FEATURES, N_CLASSES = 12, 3


def spec_of(module: str, buffers: str = "average", **options) -> ModelSpec:
    opts = {"buffers": buffers, "input_dtype": "float", "loss": "", "head": "", **options}
    shape = tuple(opts.pop("input_shape", ()))
    return ModelSpec(MODELS["torch"], N_FEATURES, N_CLASSES, np.dtype(np.float64), output="softmax", module=module,
                     init_seed=init_seed(0), input_shape=shape, options=tuple(sorted(opts.items())))


def rows(n: int, seed: int) -> Shard:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES)) + seed  # clients whose features differ: their statistics differ
    return Shard(X, rng.integers(0, N_CLASSES, n).astype(np.float64))


def settings(**kw) -> LocalSettings:
    base = dict(epochs=2, batch_size=8, lr=0.05, momentum=0.0, l2=0.0)
    return LocalSettings(**{**base, **kw})


def reference(spec: ModelSpec, shard: Shard, s: LocalSettings, owner: int, make_optimizer, rnd: int = 1,
              loss=None, train_mode=lambda module: module.train()):
    """The plain loop: the same module and start, mpifl's batch orders, torch.optim's step."""
    module = build_module(spec, spec.init_seed)
    optimizer = make_optimizer(module)
    X, y = torch.from_numpy(shard.X), torch.from_numpy(shard.y).long()
    loss = loss or (lambda out, t: torch.nn.functional.cross_entropy(out, t, reduction="sum"))
    orders = stream(0, Purpose.SHUFFLE, rnd, owner)
    for _ in range(s.epochs):
        order = torch.from_numpy(orders.permutation(shard.n))
        for start in range(0, shard.n, s.batch_size):
            batch = order[start:start + s.batch_size]
            if len(batch) < 2 and any(isinstance(m, torch.nn.BatchNorm1d) for m in module.modules()):
                continue
            train_mode(module)
            optimizer.zero_grad()
            (loss(module(X[batch]), y[batch]) / len(batch)).backward()
            optimizer.step()
    return module


def groups(module, l2: float) -> list[dict]:
    """mpifl's l2 applies to weights, never to biases: the PyTorch user's two parameter groups."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() > 1], "weight_decay": l2},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]


def mpifl_trained(spec, shard, s, owner=0, theta=None):
    kernels = ModelKernels(spec)
    trainer = LocalTrainer(shard, kernels, s, 0, owner)
    theta = spec.initial(0).copy() if theta is None else theta
    trainer.train(theta, 1)
    return theta, trainer, kernels


def flat(spec, module) -> np.ndarray:
    from mpifl.models.torch_parts import layout_of

    return layout_of(spec).parts.flat(module)


@pytest.mark.parametrize("optimizer, make", [
    ("sgd", lambda m: torch.optim.SGD(groups(m, 1e-3), lr=0.05, momentum=0.9)),
    ("adam", lambda m: torch.optim.Adam(groups(m, 1e-3), lr=0.01, foreach=False)),
    ("adamw", lambda m: torch.optim.AdamW(groups(m, 1e-3), lr=0.01, foreach=False)),
])
def test_sgd_adam_and_adamw_take_torch_optims_steps(optimizer, make):
    spec = spec_of("torch_nets:batch_norm_net")
    shard = rows(45, 1)  # 45 % 8 = 5: a short last batch
    s = settings(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01,
                 momentum=0.9 if optimizer == "sgd" else 0.0, l2=1e-3)
    theta, _, _ = mpifl_trained(spec, shard, s)
    expected = flat(spec, reference(spec, shard, s, 0, make))
    np.testing.assert_allclose(theta, expected, rtol=1e-8, atol=1e-10)  # to rounding: 1/B differs
    assert not np.array_equal(theta, spec.initial(0))


def test_averaged_buffers_travel_in_theta_ahead_of_the_parameters_and_evaluation_runs_in_eval_mode():
    spec = spec_of("torch_nets:batch_norm_net")
    shard = rows(40, 2)
    s = settings()
    theta, trainer, kernels = mpifl_trained(spec, shard, s)
    module = reference(spec, shard, s, 0, lambda m: torch.optim.SGD(groups(m, 0.0), lr=0.05))
    bn = module[1]
    assert theta[:32].tolist() == pytest.approx(bn.running_mean.tolist(), abs=1e-12)
    assert theta[64] == bn.num_batches_tracked.item() == 2 * 5
    module.eval()
    with torch.no_grad():
        out = module(torch.from_numpy(shard.X))
        loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(shard.y).long(), reduction="sum")
    got_loss, got_correct = trainer.evaluate(theta)
    assert got_loss == pytest.approx(float(loss), rel=1e-11)
    assert got_correct == int((out.argmax(1) == torch.from_numpy(shard.y).long()).sum())
    one = Shard(shard.X[:1].copy(), shard.y[:1].copy())  # one row: a forward in training mode would fail
    assert np.isfinite(LocalTrainer(one, kernels, s, 0, 0).evaluate(theta)[0])


def test_fedbn_keeps_each_clients_statistics_its_own_and_out_of_theta():
    spec = spec_of("torch_nets:batch_norm_net", buffers="local")
    kernels = ModelKernels(spec)
    s = settings()
    shards = [rows(40, 0), rows(40, 5)]
    trainers = [LocalTrainer(shard, kernels, s, 0, k) for k, shard in enumerate(shards)]
    start = spec.initial(0)
    assert start.size == sum(p.numel() for p in build_module(spec).parameters())  # no buffer travels
    for trainer in trainers:
        trainer.train(start.copy(), 1)
    for k, (trainer, shard) in enumerate(zip(trainers, shards)):
        bn = reference(spec, shard, s, k, lambda m: torch.optim.SGD(groups(m, 0.0), lr=0.05))[1]
        own = np.concatenate([bn.running_mean.numpy(), bn.running_var.numpy(), [bn.num_batches_tracked.item()]])
        np.testing.assert_allclose(trainer.carried, own, rtol=1e-12)
    assert np.abs(trainers[0].carried[:32] - trainers[1].carried[:32]).max() > 1.0  # their own, not shared
    assert not kernels.central_evaluation  # the server has no statistics to judge the model with


def test_frozen_buffers_and_frozen_parameters_stay_bitwise_unchanged():
    spec = spec_of("torch_nets:batch_norm_net", buffers="frozen")
    theta, _, kernels = mpifl_trained(spec, rows(40, 3), settings())
    built = build_module(spec, spec.init_seed)
    for name, buffer in built.named_buffers():
        assert torch.equal(dict(kernels.module.named_buffers())[name], buffer), name
    frozen = spec_of("torch_nets:frozen_body")
    theta, _, kernels = mpifl_trained(frozen, rows(40, 3), settings(l2=0.1, momentum=0.9))
    assert theta.size == 32 * N_CLASSES + N_CLASSES
    assert torch.equal(kernels.module[0].weight, build_module(frozen, frozen.init_seed)[0].weight)


def test_a_users_loss_and_a_named_head_and_a_shaped_input():
    spec = spec_of("torch_nets:headed", head="head", loss="torch_nets:smoothed_cross_entropy")
    names = [name for name, _ in build_module(spec).named_parameters()]
    assert names[:2] == ["head.weight", "head.bias"]  # the head is declared first ...
    from mpifl.models.torch_parts import layout_of

    assert layout_of(spec).parts.param_names[-2:] == ("head.weight", "head.bias")  # ... and travels last
    assert spec.head_size == 16 * N_CLASSES + N_CLASSES
    shard, s = rows(30, 4), settings()
    theta, _, _ = mpifl_trained(spec, shard, s)
    module = reference(spec, shard, s, 0, lambda m: torch.optim.SGD(groups(m, 0.0), lr=0.05),
                       loss=torch_nets.smoothed_cross_entropy)
    np.testing.assert_allclose(theta, flat(spec, module), rtol=1e-12, atol=1e-14)
    with pytest.raises(ConfigError, match="model.head 'neck' is not a submodule"):
        spec_of("torch_nets:headed", head="neck").shape


def test_dropout_repeats_bitwise_per_round_and_client():
    spec = spec_of("torch_nets:dropout_net")
    first = mpifl_trained(spec, rows(30, 1), settings())[0]
    again = mpifl_trained(spec, rows(30, 1), settings())[0]
    other = mpifl_trained(spec, rows(30, 1), settings(), owner=1)[0]
    assert first.tobytes() == again.tobytes()
    assert not np.array_equal(first, other)


def test_optimizer_state_reset_starts_each_round_afresh():
    spec = spec_of("torch_nets:batch_norm_net")
    kernels = ModelKernels(spec)
    kept = LocalTrainer(rows(24, 1), kernels, settings(optimizer="adam", lr=0.01), 0, 0)
    reset = LocalTrainer(rows(24, 1), kernels, settings(optimizer="adam", lr=0.01, reset_state=True), 0, 0)
    for trainer in (kept, reset):
        theta = spec.initial(0)
        trainer.train(theta, 1)
        trainer.train(theta, 2)
    n = kept.velocity.size // 2
    assert kept.velocity[-1] == 2 * 2 * 3  # two rounds of two epochs of three batches
    assert reset.velocity[-1] == 2 * 3
    assert n > 0
