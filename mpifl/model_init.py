"""``model.init``: start a job from trained weights instead of the seeded start, for every model kind.

Pretrained models and transfer learning start from weights trained
elsewhere.  ``model.init`` names them:

- an mpifl run's ``model.npz``, or the run directory that holds it (any
  model kind: the parameters must have this job's shape);
- a PyTorch ``state_dict`` (``.pt``, ``.pth``) or a safetensors file, for a
  kind that reads named tensors (``model.kind = "torch"``: the module's
  parameters by name, ``ModelKind.from_tensors``; its frozen parameters,
  which are not in theta, are set on every rank's module).

The root rank reads and checks the file and broadcasts the parameters
(one ``Bcast``, at set-up), so every rank starts from the same bytes and a
bad file fails every rank together with the first mismatch named.  The run
records the file and its sha256 in ``summary.json`` (``model_init``), and
round 0 evaluates the loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpifl.data.store import sha256
from mpifl.errors import ConfigError, DataError

NAMED_TENSORS = (".pt", ".pth", ".safetensors")


@dataclass(frozen=True)
class Start:
    """Trained weights to start from: the flat parameters in the job's shape and dtype, and where they came from."""

    theta: np.ndarray
    path: str
    sha256: str
    fixed: dict = field(default_factory=dict)  # named tensors that stay out of theta (a module's frozen parameters)

    def record(self) -> dict:
        return {"path": self.path, "sha256": self.sha256}


def load(value: str, spec) -> Start:
    """The parameters that ``model.init`` names, checked against the job's model ``spec``."""
    path = Path(value)
    if path.is_dir():
        path = path / "model.npz"
    if not path.is_file():
        raise DataError(f"The 'model.init' parameter names {path}, which does not exist (an mpifl run's model.npz or "
                        f"run directory, a PyTorch state_dict .pt, or a .safetensors file).")
    fixed: dict = {}
    if path.suffix.lower() == ".npz":
        theta = _from_npz(path, spec)
    elif path.suffix.lower() in NAMED_TENSORS:
        theta, fixed = spec.kind.from_tensors(spec, _tensors(path), str(path))
    else:
        raise DataError(f"model.init {path}: not a model file mpifl reads (.npz, {', '.join(NAMED_TENSORS)}).")
    theta = np.ascontiguousarray(theta, dtype=spec.dtype).reshape(spec.shape)
    if not np.isfinite(theta).all():
        raise DataError(f"model.init {path}: the parameters hold NaN or infinite values.")
    return Start(theta, str(path), sha256(path), fixed)


def _from_npz(path: Path, spec) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as saved:
            if "theta" not in saved.files:
                raise DataError(f"model.init {path}: holds {', '.join(saved.files) or 'nothing'}, not an mpifl "
                                "model's 'theta'.")
            theta = saved["theta"]
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"model.init {path}: cannot be read as .npz (truncated or corrupt?): {exc}") from None
    if tuple(theta.shape) != tuple(spec.shape):
        raise DataError(f"model.init {path}: holds parameters of shape {tuple(theta.shape)}; this job's "
                        f"{spec.kind.describe(spec)} model has shape {tuple(spec.shape)} (the data's features and "
                        "classes, and the model's layers, must be those the file was trained with).")
    return theta


def _tensors(path: Path) -> dict[str, np.ndarray]:
    """Named tensors from a PyTorch state_dict or a safetensors file, as NumPy arrays."""
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ConfigError(f"model.init {path} is a safetensors file, which needs the safetensors package: "
                              "pip install safetensors.") from None
        return dict(load_file(str(path)))
    try:
        import torch
    except ImportError:
        raise ConfigError(f"model.init {path} is a PyTorch state_dict, which needs PyTorch: "
                          'pip install "mpifl[torch]".') from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        raise DataError(f"model.init {path}: cannot be read as a PyTorch state_dict: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps its state_dict
    if not isinstance(state, dict) or not all(hasattr(t, "detach") for t in state.values()):
        raise DataError(f"model.init {path}: holds a {type(state).__name__}, not a state_dict of named tensors.")
    return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}
