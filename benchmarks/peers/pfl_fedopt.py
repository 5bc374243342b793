"""FedProx and SCAFFOLD of softmax regression in Apple's pfl-research (PyTorch on the CPU, simulated backend).

    python benchmarks/peers/pfl_fedopt.py fedprox|scaffold DATA.npz ROUNDS OUT.json

The same clients and settings as fedopt_common (all clients every round,
batch 10, lr 0.01, 20 local epochs, mu = 1), with a torch.nn.Linear model in
float64 and one torch thread; FedProx weighs users by their rows (as FedAvg
does), SCAFFOLD weighs them equally (as its paper and mpifl do).  pfl draws
its own mini-batch order, so accuracy is close to mpifl's, not identical.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from fedopt_common import SETTINGS, accuracy, load


def main(algorithm: str, path: str, rounds: int, out: str) -> None:
    t_start = time.perf_counter()
    import torch
    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints, WeightByUser
    from pfl.algorithm.fedprox import FedProx, FedProxParams
    from pfl.algorithm.scaffold import SCAFFOLD, SCAFFOLDParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.dataset import Dataset
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.data.sampling import get_user_sampler
    from pfl.data.user_state import InMemoryUserStateStorage
    from pfl.hyperparam.base import NNEvalHyperParams, NNTrainHyperParams
    from pfl.metrics import Metrics, Weighted
    from pfl.model.pytorch import PyTorchModel

    torch.set_num_threads(1)
    torch.manual_seed(SETTINGS["seed"])
    X, y, clients, Xt, yt = load(path)
    d, classes = X.shape[1], int(max(y.max(), yt.max()) + 1)

    class Softmax(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(d, classes, dtype=torch.float64)
            torch.nn.init.zeros_(self.linear.weight)
            torch.nn.init.zeros_(self.linear.bias)

        def forward(self, x):
            return self.linear(x)

        def loss(self, x, labels, eval=False):
            self.eval() if eval else self.train()
            return torch.nn.functional.cross_entropy(self(x), labels)

        @torch.no_grad()
        def metrics(self, x, labels, eval=False):
            correct = float((self(x).argmax(dim=1) == labels).sum())
            return {"accuracy": Weighted(correct, len(labels))}

    users = {str(k): (torch.from_numpy(X[rows]), torch.from_numpy(y[rows])) for k, rows in enumerate(clients)}
    ids = list(users)
    federated = FederatedDataset(lambda uid: Dataset(users[uid], user_id=uid),
                                 get_user_sampler("minimize_reuse", ids))
    module = Softmax()
    model = PyTorchModel(module, local_optimizer_create=torch.optim.SGD,
                         central_optimizer=torch.optim.SGD(module.parameters(), lr=1.0))
    common = dict(central_num_iterations=rounds, evaluation_frequency=rounds, train_cohort_size=len(ids),
                  val_cohort_size=0)
    if algorithm == "fedprox":
        runner, params = FedProx(), FedProxParams(mu=SETTINGS["mu"], **common)
    else:
        runner = SCAFFOLD()
        params = SCAFFOLDParams(population=len(ids), use_gradient_as_control_variate=False,
                                user_state_storage=InMemoryUserStateStorage(), **common)
    stamps = [time.perf_counter()]

    class Stamp(TrainingProcessCallback):
        def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):
            stamps.append(time.perf_counter())
            return False, Metrics()

    # FedProx averages as FedAvg does, by data points; SCAFFOLD's paper (and mpifl) weighs users equally
    weighting = WeightByDatapoints() if algorithm == "fedprox" else WeightByUser()
    backend = SimulatedBackend(training_data=federated, val_data=federated, postprocessors=[weighting])
    runner.run(algorithm_params=params, backend=backend,
               model=model,
               model_train_params=NNTrainHyperParams(local_learning_rate=SETTINGS["lr"],
                                                     local_num_epochs=SETTINGS["epochs"],
                                                     local_batch_size=SETTINGS["batch"]),
               model_eval_params=NNEvalHyperParams(local_batch_size=1000), callbacks=[Stamp()])
    W = np.vstack([module.linear.weight.detach().numpy().T, module.linear.bias.detach().numpy()])
    json.dump({"accuracy": accuracy(W, Xt, yt), "seconds_per_round": float(np.median(np.diff(stamps[1:]))),
               "rounds_timed": len(stamps) - 1, "train_seconds": stamps[-1] - t_start}, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
