"""A model kind: what a job's ``model.kind`` names, declared once for config, data, kernels and the chooser.

A kind says which output link (the task's loss) it trains, which
``model.<key>`` parameters it uses, how its flat parameter vector is laid
out (mpifl.model's LinearParameters or MlpParameters, or its own), which
kernels run it, and two facts the set-up needs: whether its kernels call
BLAS, and whether they come in one variant (nothing for the chooser to
time).  Nothing outside a kind's own module names it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mpifl.constraints import Choice, Constraint


class ModelKind:
    name: ClassVar[str] = ""
    parameters: ClassVar[dict[str, tuple[Any, Constraint]]] = {}  # its model.<key> parameters
    uses_blas: ClassVar[bool] = False  # its kernels call BLAS through np.dot (mpifl.numba_setup)
    one_variant: ClassVar[str] = ""  # why its kernels come in one variant; empty: the chooser picks among several
    optimizers: ClassVar[tuple[str, ...]] = ("sgd",)  # the local optimizers (train.optimizer) its kernels run

    @classmethod
    def link(cls, cfg) -> str:
        """The output link, which is also the task: linear (squared loss), logistic or softmax."""
        return cls.name

    @classmethod
    def link_key(cls, cfg) -> str:
        """The config key that chose the link, for messages."""
        return "model.kind"

    @classmethod
    def spec_fields(cls, cfg) -> dict[str, Any]:
        """ModelSpec fields beyond kind, sizes and dtype (an MLP's output, hidden widths, activation)."""
        return {}

    @staticmethod
    def layout(spec):
        """The parameter vector's layout: shape, initial cfg, the l2 mask (mpifl.model)."""
        from mpifl.model import LinearParameters

        return LinearParameters(spec.n_features, spec.n_outputs)

    stages_taken: tuple[str, ...] | None = None  # a kind with its own job: the stages it applies (None: the round's)

    @classmethod
    def job_runner(cls):
        """For a kind that the round loop does not train (gradient-boosted trees), the function that runs its whole
        job: f(comm, cfg, mode, data source, run directory or None, verbose, resume, overwrite, write) ->
        JobResult on every rank (mpifl.job_result); None: the round loop trains it."""
        return None

    @staticmethod
    def kernels() -> type:
        """The ModelKernels subclass that runs this kind (imported when a job compiles it)."""
        from mpifl.kernels.linear_model import LinearKernels

        return LinearKernels

    @classmethod
    def describe(cls, spec) -> str:
        """How the run's banner names the model."""
        return spec.name

    @classmethod
    def has_body(cls, cfg) -> bool:
        """Whether the model has layers below its output layer: a body that FedRep and FedPer share while each
        client keeps its own head (the output layer).  A linear model is all head."""
        return False

    @classmethod
    def head_size(cls, spec) -> int:
        """How many values at the end of theta are the output layer (the head); the rest is the body."""
        return 0

    @classmethod
    def from_tensors(cls, spec, tensors: dict, where: str):
        """(flat theta, the named tensors that stay out of theta) from named tensors (a PyTorch state_dict, a
        safetensors file) for ``model.init``; a kind that has no names for its parameters reads only model.npz."""
        from mpifl.errors import ConfigError

        raise ConfigError(f"model.init {where} holds named tensors, which model.kind {spec.name!r} cannot place; "
                          "give it an mpifl run's model.npz (or use model.kind = \"torch\" for a PyTorch module).")


OUTPUT = {"output": ("softmax", Choice(("linear", "logistic", "softmax")))}  # a network's output link (the task)


class NetworkKind(ModelKind):
    """A kind whose output link is ``model.output`` (the MLP, the CNN, a torch module, the boosted trees), where a
    linear model's link is its own name."""

    @classmethod
    def link(cls, cfg) -> str:
        return cfg.model.output

    @classmethod
    def link_key(cls, cfg) -> str:
        return "model.output"
