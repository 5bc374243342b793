"""The configuration reference, generated from the schema and the registries: docs/reference/config.md.

    python -m mpifl.config.reference > docs/reference/config.md

Every key's default and constraint come from its declaration (the schema,
or the built-in strategy, aggregator, codec, model kind or data source that
declares it); its meaning comes from MEANINGS below, and a test fails when
a declared key has none or the file differs from what this prints.
"""

from __future__ import annotations

import sys

from mpifl.config import PLUGINS, SCHEMA

MEANINGS: dict[str, str] = {
    "mode": '`"federated"` (rank 0 serves, the others host clients) or `"distributed"` (every rank a worker)',
    "seed": "root of every random stream: (seed, round, client) keys each draw",
    "rounds": "federated rounds, or distributed rounds (each is `train.epochs` passes)",
    "log_every": "record metrics every N rounds (round 0 and the last are always recorded)",
    "data.name": "a registered data source, or a user's DataSource as `module:Class`",
    "data.partition": '`"iid"`, or `"dirichlet"` label skew (Hsu et al. 2019)',
    "data.alpha": "Dirichlet concentration; smaller means more skewed clients",
    "data.client_test_fraction": "federated: the share of each client's rows held out as its own test rows (for "
                                  "personal accuracy), for sources without their own per-client split",
    "data.test_fraction": "share held out for testing",
    "data.validation_fraction": "the share of the training rows held out for validation, which every choice mpifl "
                                "makes is judged on (federated: each client's own, seeded per (seed, client); "
                                "distributed: by the rows' places); 0: none",
    "data.folds": "K-fold cross-validation: K folds of clients (federated: leave-clients-out) or of rows "
                  "(distributed: scikit-learn's KFold(K) on the training rows); 0: none",
    "data.fold": "the fold held out for validation, 0..K-1 (a sweep's `cv` sets it per run)",
    "data.n_samples": "synthetic: rows (x ~ N(0, I), labels from a random linear model plus noise)",
    "data.n_features": "synthetic: features",
    "data.n_classes": "synthetic: classes (and the label range checked in files)",
    "data.noise": "synthetic: label noise",
    "data.rows_per_rank": "synthetic: rows generated on each worker or client from (seed, part), for weak scaling",
    "data.fedprox_alpha": "FedProx's Synthetic(α, β): the spread of the clients' models",
    "data.fedprox_beta": "FedProx's Synthetic(α, β): the spread of the clients' inputs",
    "data.fedprox_iid": "the paper's Synthetic-IID: one shared model, mean-zero inputs",
    "data.path": "a partition directory (`python -m mpifl partition`), or one `.npy` file in distributed mode; "
                 "overrides `data.name`",
    "data.verify": "check each file's sha256 against the manifest before training",
    "data.label_column": "the label column of a single `.npy` file",
    "data.clients": "federated clients K of a built-in set; 0 means one per client rank (30 for fedprox_synthetic)",
    "data.test_rows": "synthetic with rows_per_rank: the server's (or each worker's) test rows; 0: from test_fraction",
    "data.cache_mib": "per client rank: MiB of built client rows kept, where the source builds a client alone; a "
                      "rank whose clients fit is built at set-up, a larger population when each client is used",
    "model.kind": "a registered model kind, or a user's ModelKind as `module:Class`",
    "model.hidden": "mlp: the widths of the hidden layers, any number of them",
    "model.activation": "mlp: relu (He initialisation) or tanh (Glorot)",
    "model.output": "mlp, cnn, gbdt, forest: the output link and loss, as the linear kinds (a forest: its task)",
    "model.max_leaves": "gbdt: the leaves a tree grows to, leaf by leaf (LightGBM's num_leaves)",
    "model.max_depth": "gbdt, forest: the deepest a leaf may be; 0: no limit",
    "model.bins": "gbdt, forest: value bins per feature (a missing value has its own), edges from the merged "
                  "sketches",
    "model.max_leaf_nodes": "forest: a tree's most leaves, grown best first (scikit-learn's max_leaf_nodes); 0: no "
                            "limit",
    "model.min_samples_leaf": "forest: the least rows of a leaf (scikit-learn's min_samples_leaf)",
    "model.max_features": "forest: the share of the features each split draws; 0: the square root of the "
                          "features for a classifier, all of them for a regressor (scikit-learn's defaults)",
    "model.bootstrap": "forest: each tree weighs the rows by Poisson(1) draws from (seed, tree, row); false: every "
                       "row once",
    "model.min_child_weight": "gbdt: the least Hessian sum of a child (XGBoost's min_child_weight)",
    "model.min_child_rows": "gbdt: the least rows of a child (LightGBM's min_data_in_leaf)",
    "model.gamma": "gbdt: the least gain a split must bring (XGBoost's gamma)",
    "model.subsample": "gbdt: the share of rows each tree sees, drawn per tree from each row's place",
    "model.colsample": "gbdt: the share of features each tree may split on, drawn per tree",
    "model.feature_low": "gbdt with [privacy]: every feature's public lower bound, which private trees bin from "
                         "(the rows never set it)",
    "model.feature_high": "gbdt with [privacy]: every feature's public upper bound (above model.feature_low)",
    "model.architecture": "cnn: fedavg (McMahan et al.'s MNIST CNN), femnist (LEAF's), niid (NIID-Bench's), or "
                          "custom (model.layers)",
    "model.layers": 'cnn, custom: the layers, "conv K C same|valid", "pool" (2x2 max) and "dense N"',
    "model.input_shape": "cnn: [channels, height, width]; empty: one channel of a square image. torch: each row's "
                         "shape as the module takes it (images (C, H, W), a sequence of token ids); empty: flat rows",
    "model.module": 'torch: "package.module:build", a function (n_features, n_outputs) -> nn.Module',
    "model.buffers": "torch: the module's buffers (BatchNorm's statistics): average (they travel, weighted like the "
                     "parameters), local (each client keeps its own: FedBN), or frozen (as built or loaded; the "
                     "layers that own them train in eval mode)",
    "model.input_dtype": "torch: float, or int64 (token ids for an embedding; the rows hold whole numbers)",
    "model.loss": 'torch: "package.module:fn", fn(outputs, targets) -> the batch\'s summed loss; empty: the output '
                  "link's",
    "model.head": "torch: the submodule that is the head (FedPer, FedRep and Ditto keep it per client); its "
                  "parameters come last in theta",
    "model.l2": "L2 penalty on the weights (biases are not penalised); gbdt: on the leaf values (lambda)",
    "model.dtype": "the dtype of data, parameters and messages",
    "model.init": "trained weights to start from: an mpifl run's model.npz or run directory (any kind), or a PyTorch "
                  "state_dict .pt / .safetensors file (torch); empty: the seeded start",
    "evaluate.fraction": "federated evaluation: the share of the clients with validation rows that evaluate the "
                         "global model on them each recorded round (seeded per (seed, round))",
    "evaluate.per_client": "write each recorded round's per-client figures to clients/round_NNNNNN.npz (metrics.jsonl "
                           "keeps their summaries)",
    "state.store": "per-client state (momentum, control variates, personal models): memory, disk (memory-mapped in "
                   "state.dir), or auto (disk beyond state.memory_mib)",
    "state.dir": "the rank-local directory of per-client state on disk; empty: the run directory's state/",
    "state.dtype": "storage of per-client state: the model's dtype, float32, float16 or bfloat16",
    "state.memory_mib": "per rank: MiB of per-client state kept in memory before auto spills to disk; 0: half the "
                        "node's available memory over its ranks",
    "stop.metric": "the recorded metric that judges the best round (model_best.npz) and early stopping: val_loss, "
                   "val_accuracy, val_personal_accuracy, loss or train_accuracy; never the test set's",
    "stop.patience": "early stopping: end the run after this many recorded rounds without improvement on "
                     "stop.metric; 0: never",
    "stop.min_delta": "the least change of stop.metric that counts as an improvement",
    "train.algorithm": "distributed mode: average gradients every step, or models after local epochs",
    "train.optimizer": "the local optimizer: sgd; adam or adamw (model.kind = \"torch\"; model.l2 is AdamW's "
                       "decoupled weight decay); or lbfgs: distributed full-batch L-BFGS (a round is one iteration)",
    "train.optimizer_state": "keep: momentum or Adam's moments carry over from round to round on the client's rank "
                             "(checkpointed); reset: they start afresh each round",
    "train.beta1": "adam, adamw: the first moment's decay",
    "train.beta2": "adam, adamw: the second moment's decay",
    "train.eps": "adam, adamw: the floor added to the denominator",
    "train.tol": "L-BFGS: stop when max |gradient| ≤ tol",
    "train.history": "L-BFGS: (s, y) pairs kept",
    "train.finetune_epochs": "federated evaluation (FedAvg+FT): k local epochs on a copy of the global model, on the "
                             "client's training rows, before it is tested on its own test rows (any strategy)",
    "train.epochs": "local epochs per round",
    "train.batch_size": "rows per mini-batch per rank; 0 means full batch",
    "train.lr": "SGD step size",
    "train.momentum": "heavy-ball momentum; its buffer stays on the client's rank",
    "train.threads": "Numba threads per rank; 0 means SLURM_CPUS_PER_TASK, else 1",
    "train.stragglers": "federated: share of each round's sampled clients that run a random 1..epochs local epochs",
    "server.strategy": "a registered strategy, or a user's Strategy as `module:Class`",
    "server.mode": "sync: rounds of sampled clients; async: FedBuff or FedAsync on the virtual clock of the clients' "
                   "speeds (docs/how-to/asynchronous.md)",
    "server.concurrency": "fedbuff, fedasync: clients training at once",
    "server.buffer": "fedbuff: K, the updates buffered before the server steps",
    "server.staleness": "fedbuff, fedasync: the staleness weight w(s): constant, polynomial (1 + s)^-a, or hinge",
    "server.staleness_a": "fedbuff, fedasync: a of the polynomial and hinge weights",
    "server.staleness_b": "fedbuff, fedasync: b, where the hinge weight starts to fall",
    "server.max_staleness": "fedbuff, fedasync: drop updates staler than this (0: keep all)",
    "server.mixing": "fedasync: alpha, the weight of an update of staleness 0",
    "server.q": "qfedavg: q of the q-FFL objective (0: the unweighted mean of the updates)",
    "server.personal_lambda": "ditto: lambda, the pull of each personal model toward the global one",
    "server.head_epochs": "fedrep: local epochs on the client's own head (body frozen) before its epochs on the body",
    "clients.speed": "simulated client speeds: uniform (every client at the medians), lognormal, or trace (a CSV)",
    "clients.seconds_per_example": "the median compute speed, seconds per example",
    "clients.speed_sigma": "lognormal: the spread of the compute speeds (sigma of the log)",
    "clients.link_mbps": "the median link speed, Mb/s (the model down, the update up)",
    "clients.link_sigma": "lognormal: the spread of the link speeds",
    "clients.online_mean": "availability: the mean length of a client's online periods, virtual seconds (0: always on)",
    "clients.offline_mean": "availability: the mean length of its offline periods",
    "clients.trace": "clients.speed = \"trace\": a CSV with a header client,seconds_per_example,link_mbps",
    "server.fraction": "share of clients sampled each round",
    "server.drop_stragglers": "drop the stragglers instead of keeping their partial work (FedProx's FedAvg baseline)",
    "server.aggregator": "how the clients' deltas are combined: a registered aggregator, or a user's as `module:Class`",
    "server.trim": "trimmed_mean: the share dropped at each end",
    "server.byzantine": "krum, multikrum, bulyan: f, the Byzantine clients tolerated",
    "server.select": "multikrum: the m updates averaged (0: n - f)",
    "server.robust_iterations": "geomed: Weiszfeld steps; centered_clip: clipping iterations",
    "server.radius": "centered_clip: τ; norm_bound: the norm bound M",
    "server.exchange": "gather: one row per client to rank 0 (Gatherv); reduce: client ranks add their clients' "
                       "updates and an exact fixed-point Reduce sums them (sum-only rounds; with secure aggregation, "
                       "the masked inputs' ring sum); auto: reduce when every participant takes sums and a round has "
                       "at least server.reduce_from clients",
    "server.reduce_from": "server.exchange = \"auto\": the clients a round from which the Reduce replaces the "
                          "Gatherv",
    "server.hierarchy": "two-level averaging (HierFAVG): none; groups (server.edge_ranks client ranks to an edge); "
                        "node (the client ranks of one node)",
    "server.edge_ranks": "server.hierarchy = \"groups\": client ranks per edge",
    "server.kappa1": "server.hierarchy: local rounds between two edge aggregations",
    "server.kappa2": "server.hierarchy: edge aggregations in one cloud round (one protocol round)",
    "server.sampling": "fixed: round(fraction K) clients a round; poisson: each client with probability fraction",
    "checkpoint.every": "checkpoint every N rounds; 0 checkpoints only when stopped by a signal",
    "attack.kind": "simulated Byzantine clients (federated mode): a registered attack, or a user's AttackKind as "
                   "`module:Class`",
    "attack.fraction": "share of the clients that are malicious, drawn from (seed, ATTACK)",
    "attack.scale": "per kind: the sign flip's, the noise's or the boost's scale; 0 takes the kind's default",
    "attack.seed": "which clients are malicious; -1 takes the job's seed",
    "attack.clients": "the malicious client ids; set, they replace attack.fraction's draw",
    "compress.uplink": "what a client or worker sends: none, a registered codec, or a user's Codec as `module:Class`",
    "compress.ratio": "topk, randk: the share of the values sent",
    "compress.bits": "qsgd: bits per value, sign included",
    "compress.bucket": "qsgd: values that share one norm",
    "compress.error_feedback": "keep what compression dropped and add it to the next update",
    "privacy.mechanism": "the clip-and-noise mechanism: gaussian (DP-FedAvg; local Gaussian noise), laplace (local only: "
                         "L1 clip and Laplace noise), or a user's Mechanism as `module:Class`",
    "privacy.clip": "C: each client's delta is clipped to this L2 norm (L1 under local Laplace noise)",
    "privacy.noise_multiplier": "z: noise std z·C on the sum; above 0 turns differential privacy on",
    "privacy.delta": "the δ of the (ε, δ) the accountant reports",
    "privacy.target_epsilon": "above 0: find the noise multiplier that reaches this ε after `rounds` (local DP: this ε per "
                              "release)",
    "privacy.adaptive": "adaptive clipping (Andrew et al. 2021)",
    "privacy.target_quantile": "adaptive: the share of deltas to leave unclipped",
    "privacy.clip_lr": "adaptive: the step of the geometric clip update",
    "privacy.noise": "central DP's noise: central (the server adds it) or distributed (each client adds its "
                     "share)",
    "privacy.accountant": "dp-accounting's RDP or PLD accountant",
    "privacy.where": "server: central DP-FedAvg (the server adds the noise); local: each client clips and noises its "
                     "own update before anything leaves its rank, and the server is not trusted",
    "privacy.noise_seed": "local DP's noise: job draws it from (seed, round, client), reproducible; os draws it from "
                          "the OS's entropy, which nobody holding the job's seed can regenerate",
    "secagg.enabled": "secure aggregation: the server learns only the sum of the cohort's updates",
    "secagg.plus": "SecAgg+: a random k-regular neighbour graph instead of every pair",
    "secagg.neighbours": "SecAgg+'s k (even); 0 takes the smallest even k ≥ 3 log2 n",
    "secagg.threshold": "t as a share of a client's neighbours",
    "secagg.dropout": "simulated: the share of clients that drop after sharing, before the masked input",
    "secagg.bits": "the ring Z_(2^bits) of the masked fixed-point values",
    "secagg.clip_range": "each encoded value is clamped to [-R, R]",
    "secagg.abort": "too few survivors (or a client caught the server lying): skip the round, or stop the job",
    "secagg.malicious": "the active-adversary protocol (Bonawitz et al. 2017, §4): long-term Ed25519 keys, signed "
                        "key adverts, and the consistency round on the survivor list",
    "secagg.server_lies": "simulated: a server that lies, against secagg.malicious: forge (its own key in one "
                          "advert), replay (an old or another client's advert), drop (reports a client dropped "
                          "after its masked input), split (different survivor lists to different clients)",
    # the built-in strategies' own keys, declared by each strategy
    "server.proximal_mu": "μ of the proximal term (μ/2)‖θ − θ_r‖²",
    "server.lr": "the server's learning rate",
    "server.momentum": "the server's momentum",
    "server.beta1": "the first moment's decay",
    "server.beta2": "the second moment's decay",
    "server.tau": "the adaptivity τ (and the second moment's start τ²)",
}


def _value(value) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _row(key: str, default, constraint, note: str = "") -> str:
    meaning = MEANINGS[key] + (f" ({note})" if note else "")
    return f"| `{key}` | {_value(default)} | {constraint.describe()} | {meaning} |"


def markdown() -> str:
    """The whole reference page."""
    lines = [
        "# Configuration keys",
        "",
        "Generated from the schema and the built-in plug-ins' declarations by "
        "`python -m mpifl.config.reference`; a test fails when this page and the code differ.",
        "",
        "A job file's tables are the sections (`[train]`, `[server]`, ...); `--set section.key=value` and "
        "`mpifl.run(job, section__key=value)` override one key.  A user's plug-in (`module:Class`) adds the keys "
        "it declares to its section.",
        "",
        "| key | default | constraint | meaning |",
        "|---|---|---|---|",
    ]
    lines += [_row(key, default, constraint) for key, (default, constraint) in SCHEMA.items()]
    strategies = PLUGINS["server.strategy"][0]
    for name, cls in strategies.items():
        lines += [_row(f"server.{key}", default, constraint, f"{name}")
                  for key, (default, constraint) in cls.parameters.items()]
    lines += ["", "Choices of the plug-in keys:", ""]
    for key, (registry, _) in PLUGINS.items():
        lines.append(f"- `{key}`: " + ", ".join(f"`{name}`" for name in registry) + ", or `module:Class`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
