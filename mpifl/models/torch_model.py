"""``model.kind = "torch"``: a PyTorch module as its user wrote it, trained by mpifl as one flat vector.

``model.module = "my_fl.nets:build"`` names a function ``build(n_features,
n_outputs)`` that returns an ``nn.Module``.  What travels is theta, one flat
vector in the job's dtype, so every strategy, aggregator, codec, DP, SecAgg,
checkpoint and resume works unchanged:

- the parameters with ``requires_grad`` (a frozen backbone, or everything
  ``peft.get_peft_model`` froze, stays on each rank and never travels);
- under ``model.buffers = "average"``, the module's buffers (BatchNorm's
  running statistics), ahead of the parameters, averaged like them.
  ``"local"`` keeps each client's own (FedBN), ``"frozen"`` keeps them as
  built or loaded and runs the layers that own them in eval mode.

``model.head`` names the submodule that is the head (its parameters come
last, for FedPer, FedRep and Ditto); ``model.input_shape`` and
``model.input_dtype`` shape each batch as the module expects (images,
token ids); ``model.loss`` replaces the output link's loss.  The module
computes in mpifl.models.torch_kernels.  torch is imported only by a job
that uses this kind (``pip install "mpifl[torch]"``).
"""

from __future__ import annotations

import numpy as np

from mpifl.constraints import Choice, Text, Widths
from mpifl.errors import ConfigError, DataError
from mpifl.models.base import OUTPUT, NetworkKind
from mpifl.models.torch_parts import BUFFER_POLICIES, build_module, init_seed, layout_of

OPTIMIZERS = ("sgd", "adam", "adamw")


class TorchModel(NetworkKind):
    name = "torch"
    parameters = {
        "module": ("", Text()),  # "package.module:build"; build(n_features, n_outputs) -> nn.Module
        **OUTPUT,
        "buffers": ("average", Choice(BUFFER_POLICIES)),  # the module's buffers: travel, stay per client, or fixed
        "input_shape": ([], Widths()),  # each row's shape as the module takes it; empty: flat rows
        "input_dtype": ("float", Choice(("float", "int64"))),  # int64: token ids for an embedding
        "loss": ("", Text()),  # "package.module:fn"; fn(outputs, targets) -> the batch's summed loss
        "head": ("", Text()),  # the submodule that is the head (FedPer, FedRep, Ditto); empty: none
    }
    uses_blas = True
    optimizers = OPTIMIZERS
    one_variant = "a PyTorch module (autograd, a fused step on flat tensors)"

    @classmethod
    def spec_fields(cls, cfg) -> dict:
        m = cfg.model
        if not m.module:
            raise ConfigError('model.kind = "torch" needs model.module = "package.module:build", a function that '
                              "returns an nn.Module for (n_features, n_outputs).")
        options = (("buffers", m.buffers), ("input_dtype", m.input_dtype), ("loss", m.loss), ("head", m.head))
        return {"output": m.output, "module": m.module, "init_seed": init_seed(cfg.seed),
                "input_shape": tuple(m.input_shape), "options": options}

    @staticmethod
    def layout(spec):
        return layout_of(spec)

    @staticmethod
    def kernels() -> type:
        from mpifl.models.torch_kernels import TorchKernels

        return TorchKernels

    @classmethod
    def describe(cls, spec) -> str:
        parts = layout_of(spec).parts
        return (f"torch {spec.module} ({spec.link} output; {parts.n_params:,} trained values, "
                f"{parts.n_frozen:,} frozen, buffers {spec.option('buffers')})")

    @classmethod
    def has_body(cls, cfg) -> bool:
        return bool(cfg.model.head)

    @classmethod
    def head_size(cls, spec) -> int:
        return layout_of(spec).parts.n_head

    @classmethod
    def from_tensors(cls, spec, tensors: dict, where: str) -> tuple[np.ndarray, dict]:
        """(theta in its layout, the named tensors that stay out of it: frozen parameters, and buffers that do
        not travel), from a state_dict; the first name or shape that does not match is named.

        A module wrapped by peft finds its base model's tensors under their own names (peft's
        ``base_model.model.`` prefix and ``.base_layer`` dropped), so a base model's state_dict starts its LoRA
        fine-tuning; the adapters peft added (``lora_`` names) then keep their seeded start."""
        module = build_module(spec, spec.init_seed)
        saved = set(module.state_dict())
        expected = {**dict(module.named_parameters()),
                    **{name: b for name, b in module.named_buffers() if name in saved}}
        found: dict[str, np.ndarray] = {}
        for name, tensor in expected.items():
            stored = next((tensors[key] for key in (name, base_name(name)) if key in tensors), None)
            if stored is None and ".lora_" in name:
                stored = tensor.detach().cpu().numpy()  # a new adapter: its seeded start
            if stored is None:
                raise DataError(f"model.init {where}: has no tensor {name!r}, which {spec.module} has (the file has "
                                f"{', '.join(sorted(tensors)[:8]) or 'none'}{', ...' if len(tensors) > 8 else ''}).")
            if tuple(stored.shape) != tuple(tensor.shape):
                raise DataError(f"model.init {where}: tensor {name!r} has shape {tuple(stored.shape)}; "
                                f"{spec.module}'s has shape {tuple(tensor.shape)}.")
            found[name] = np.asarray(stored)
        parts = layout_of(spec).parts
        travelling = [*parts.travelling_buffers, *parts.param_names]
        theta = np.concatenate([found[name].astype(np.float64).reshape(-1) for name in travelling])
        kept = set(expected) - set(travelling)
        return theta, {name: found[name] for name in sorted(kept)}


def base_name(name: str) -> str:
    """A peft-wrapped module's tensor name as its base model writes it."""
    return name.replace("base_model.model.", "").replace(".base_layer", "")
