"""Job configuration: declared constraints, TOML loading, --set overrides.

Each key's constraint is declared once in ``SCHEMA``; every error names the
key, the constraint and the value received, in scikit-learn's style:
"The 'train.lr' parameter must be a float in the range (0, inf). Got -1 instead."
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import tomllib

from mpifl.constraints import Choice, Flag, Ids, Interval, Text, Widths
from mpifl.constraints import violation
from mpifl.config.sections import SECTIONS, Config
from mpifl.errors import ConfigError
from mpifl.registry import Plugin, Registry
from mpifl.strategies import STRATEGIES, strategy_keys
from mpifl.attacks import ATTACKS
from mpifl.privacy.mechanisms import PRIVACY_MECHANISMS
from mpifl.strategies.aggregators import AGGREGATORS
from mpifl import stages
from mpifl.compression import CODECS, OFF
from mpifl.data.catalog import DATA_SOURCES
from mpifl.models import MODELS, output_link, output_link_key


def declared_keys(registry: Registry, section: str) -> dict[str, tuple[Any, Any]]:
    """The section keys the registered classes of a family declare, for the schema: a key that several
    declare (server.radius) must be declared alike."""
    keys: dict[str, tuple[Any, Any]] = {}
    for name, cls in registry.items():
        for key, declared in cls.parameters.items():
            dotted = f"{section}.{key}"
            if keys.setdefault(dotted, declared) != declared:
                raise ValueError(f"{registry.family} {name!r} declares {dotted} unlike the others that declare it.")
    return keys


# The default values are the default job: federated softmax on digits, 7 clients.
SCHEMA: dict[str, tuple[Any, Interval | Choice | Text | Flag | Widths]] = {
    "mode": ("federated", Choice(("federated", "distributed"))),
    "seed": (0, Interval(int, 0, 2**63 - 1)),
    "rounds": (50, Interval(int, 1, None)),
    "log_every": (1, Interval(int, 1, None)),
    "data.name": ("digits", Plugin(DATA_SOURCES)),
    "data.partition": ("dirichlet", Choice(("iid", "dirichlet"))),
    "data.alpha": (0.5, Interval(float, 0, None, "neither")),
    "data.test_fraction": (0.2, Interval(float, 0, 1, "left")),
    # each federated client's own test rows, held out of its shard (sources without their own split)
    "data.client_test_fraction": (0.0, Interval(float, 0, 1, "left")),
    # validation rows for every choice mpifl makes (mpifl.data.validation): a seeded share, or K folds
    "data.validation_fraction": (0.0, Interval(float, 0, 1, "left")),
    "data.folds": (0, Interval(int, 0, None)),  # K-fold cross-validation: 0 = none, else K >= 2
    "data.fold": (0, Interval(int, 0, None)),  # which of data.folds is held out for validation
    "data.n_samples": (10_000, Interval(int, 2, None)),
    "data.n_features": (20, Interval(int, 1, None)),
    "data.n_classes": (2, Interval(int, 2, None)),
    "data.noise": (0.1, Interval(float, 0, None)),
    # the sources' own keys: fedprox_synthetic's data.fedprox_alpha, _beta and _iid, synthetic's rows_per_rank
    **declared_keys(DATA_SOURCES, "data"),
    # files: a directory from 'python -m mpifl partition', or one .npy (distributed mode); "" = data.name
    "data.path": ("", Text()),
    "data.verify": (True, Flag()),  # check every file's sha256 against the manifest before training
    "data.label_column": (-1, Interval(int, None, None)),  # the label column of a single .npy file
    # federated clients K of a built-in set; 0 = one per client rank (30 for fedprox_synthetic)
    "data.clients": (0, Interval(int, 0, None)),
    # per client rank: the clients' rows kept once built, for sources that build a client alone (mpifl.data.client_pool)
    "data.cache_mib": (512, Interval(int, 0, None)),
    "model.kind": ("softmax", Plugin(MODELS)),
    **declared_keys(MODELS, "model"),  # the kinds' own keys: the MLP's hidden widths, activation and output link
    "model.l2": (0.0, Interval(float, 0, None)),
    "model.dtype": ("float64", Choice(("float32", "float64"))),
    "model.init": ("", Text()),  # trained weights to start from (mpifl.model_init); empty: the seeded start
    "train.algorithm": ("local_sgd", Choice(("gradient_averaging", "local_sgd"))),
    # the local optimizer (adam, adamw: the model kinds that declare them); lbfgs: distributed full-batch L-BFGS
    "train.optimizer": ("sgd", Choice(("sgd", "adam", "adamw", "lbfgs"))),
    "train.optimizer_state": ("keep", Choice(("keep", "reset"))),  # momentum or Adam's moments across rounds
    "train.beta1": (0.9, Interval(float, 0, 1, "left")),  # Adam's first-moment decay
    "train.beta2": (0.999, Interval(float, 0, 1, "left")),  # Adam's second-moment decay
    "train.eps": (1e-8, Interval(float, 0, None, "neither")),  # Adam's denominator floor
    "train.tol": (1e-6, Interval(float, 0, None)),  # lbfgs: stop when max |gradient| <= tol
    "train.history": (10, Interval(int, 1, 1000)),  # lbfgs: (s, y) pairs kept
    "train.epochs": (1, Interval(int, 1, None)),
    # FedAvg+FT: each client fine-tunes a copy of the global model this many epochs before its own test rows
    "train.finetune_epochs": (0, Interval(int, 0, None)),
    "train.batch_size": (32, Interval(int, 0, None)),
    "train.lr": (0.5, Interval(float, 0, None, "neither")),
    "train.momentum": (0.0, Interval(float, 0, 1, "left")),
    "train.threads": (0, Interval(int, 0, 1024)),
    # share of each round's sampled clients that run 1..train.epochs local epochs (FedProx's stragglers)
    "train.stragglers": (0.0, Interval(float, 0, 1)),
    "server.strategy": ("fedavg", Plugin(STRATEGIES)),
    # sync: rounds of sampled clients; async: a virtual-clock event queue (fedbuff, fedasync)
    "server.mode": ("sync", Choice(("sync", "async"))),
    # simulated client speeds and availability (mpifl.client_speeds): virtual time for both server modes
    "clients.speed": ("uniform", Choice(("uniform", "lognormal", "trace"))),
    "clients.seconds_per_example": (1e-3, Interval(float, 0, None, "neither")),
    "clients.speed_sigma": (1.0, Interval(float, 0, None)),
    "clients.link_mbps": (20.0, Interval(float, 0, None, "neither")),
    "clients.link_sigma": (0.5, Interval(float, 0, None)),
    "clients.online_mean": (0.0, Interval(float, 0, None)),
    "clients.offline_mean": (0.0, Interval(float, 0, None)),
    "clients.trace": ("", Text()),
    "server.fraction": (1.0, Interval(float, 0, 1, "right")),
    "server.drop_stragglers": (False, Flag()),  # drop the stragglers' updates (the FedProx paper's FedAvg)
    # robust aggregation (mpifl.strategies.aggregators), for the strategies that average deltas; the
    # built-in aggregators' keys (server.trim, server.byzantine, ...) come from their declarations
    "server.aggregator": ("mean", Plugin(AGGREGATORS)),
    **declared_keys(AGGREGATORS, "server"),
    # how updates reach rank 0 (mpifl.stages.sums): rows by Gatherv, or an exact integer Reduce of their sums
    "server.exchange": ("auto", Choice(("auto", "gather", "reduce"))),
    "server.reduce_from": (64, Interval(int, 1, None)),
    # two-level averaging (mpifl.hierarchy): client ranks grouped into edges by node or in fixed groups
    "server.hierarchy": ("none", Choice(("none", "groups", "node"))),
    "server.edge_ranks": (2, Interval(int, 1, None)),
    "server.kappa1": (1, Interval(int, 1, None)),
    "server.kappa2": (1, Interval(int, 1, None)),
    # server.lr, server.momentum, server.proximal_mu, ...: declared by each strategy (mpifl.strategies)
    "checkpoint.every": (0, Interval(int, 0, None)),
    # federated evaluation on the clients' validation rows (mpifl.selection): the share sampled per recorded round
    "evaluate.fraction": (1.0, Interval(float, 0, 1, "right")),
    # each recorded round's per-client figures in clients/round_NNNNNN.npz; metrics.jsonl keeps their summaries
    "evaluate.per_client": (False, Flag()),
    # per-client state at population scale (mpifl.client_state): where each hosted client's rows live
    "state.store": ("auto", Choice(("auto", "memory", "disk"))),
    "state.dir": ("", Text()),  # disk: the rank-local directory; empty: the run directory's state/
    "state.dtype": ("model", Choice(("model", "float32", "float16", "bfloat16"))),  # storage of the rows
    "state.memory_mib": (0, Interval(int, 0, None)),  # per rank in memory before auto spills; 0: half the node's
    # the best round and early stopping, on a metric that is not the test set's (mpifl.selection)
    "stop.metric": ("val_loss", Text()),
    "stop.patience": (0, Interval(int, 0, None)),  # recorded rounds without improvement before the run ends; 0: never
    "stop.min_delta": (0.0, Interval(float, 0, None)),  # the least change that counts as an improvement
    # simulated Byzantine clients (mpifl.attacks), federated mode
    "attack.kind": ("none", Plugin(ATTACKS)),
    "attack.fraction": (0.2, Interval(float, 0, 1, "left")),  # share of the clients that are malicious
    "attack.scale": (0.0, Interval(float, 0, None)),  # per kind: -scale x, N(0, scale^2), scale x, -scale mean; 0: default
    "attack.seed": (-1, Interval(int, -1, 2**63 - 1)),  # which clients are malicious; -1: the job's seed
    "attack.clients": ([], Ids()),  # the malicious client ids; set, they replace attack.fraction's draw
    # uplink compression (mpifl.compression): what a client (federated) or worker (distributed) sends
    "compress.uplink": (OFF, Plugin(CODECS)),
    **declared_keys(CODECS, "compress"),  # the built-in codecs' keys: compress.ratio, compress.bits, ...
    "compress.error_feedback": (False, Flag()),  # keep what compression dropped and add it to the next update
    # client-level differential privacy (mpifl.privacy): DP-FedAvg, on when it adds noise
    "privacy.mechanism": ("gaussian", Plugin(PRIVACY_MECHANISMS)),  # the clip-and-noise mechanism and its accountant
    "privacy.clip": (1.0, Interval(float, 0, None, "neither")),  # C: each client's delta is clipped to this L2 norm
    "privacy.noise_multiplier": (0.0, Interval(float, 0, None)),  # z: noise std = z C on the sum; 0 = off
    "privacy.delta": (1e-5, Interval(float, 0, 1, "neither")),
    "privacy.target_epsilon": (0.0, Interval(float, 0, None)),  # > 0: find z for this epsilon after `rounds`
    "privacy.adaptive": (False, Flag()),  # adaptive clipping (Andrew et al. 2021)
    "privacy.target_quantile": (0.5, Interval(float, 0, 1)),  # adaptive: share of deltas to leave unclipped
    "privacy.clip_lr": (0.2, Interval(float, 0, None, "neither")),  # adaptive: step of the geometric clip update
    "privacy.noise": ("central", Choice(("central", "distributed"))),  # where the noise is added
    "privacy.accountant": ("rdp", Choice(("rdp", "pld"))),  # dp-accounting's RDP or PLD accountant
    "privacy.where": ("server", Choice(("server", "local"))),  # who adds the noise: the server, or each client
    "privacy.noise_seed": ("job", Choice(("job", "os"))),  # local noise from (seed, round, client), or OS entropy
    "server.sampling": ("fixed", Choice(("fixed", "poisson"))),  # fixed: round(fraction K) clients; poisson: each w.p. fraction
    # secure aggregation (mpifl.secagg): the server learns only the sum of the cohort's updates
    "secagg.enabled": (False, Flag()),
    "secagg.plus": (False, Flag()),  # SecAgg+: a random k-regular neighbour graph instead of every pair
    "secagg.neighbours": (0, Interval(int, 0, None)),  # SecAgg+'s k (even); 0: the smallest even >= 3 log2 n
    "secagg.threshold": (0.6, Interval(float, 0.5, 1, "right")),  # t as a share of a client's neighbours
    "secagg.dropout": (0.0, Interval(float, 0, 1, "left")),  # simulated: drop after sharing, before the masked input
    "secagg.bits": (64, Choice((32, 64))),  # the ring Z_(2^bits) of the masked fixed-point values
    "secagg.clip_range": (1e4, Interval(float, 0, None, "neither")),  # each encoded value is clamped to [-R, R]
    "secagg.abort": ("skip", Choice(("skip", "stop"))),  # too few survivors: skip the round, or stop the job
    "secagg.malicious": (False, Flag()),  # against an active server: signed adverts and the consistency round
    "secagg.server_lies": ("none", Choice(("none", "forge", "replay", "drop", "split"))),  # simulated lying server
}

# The keys that choose a plug-in, and the section its own declared parameters live in.
PLUGINS: dict[str, tuple[Registry, str]] = {
    "server.strategy": (STRATEGIES, "server"),
    "server.aggregator": (AGGREGATORS, "server"),
    "compress.uplink": (CODECS, "compress"),
    "model.kind": (MODELS, "model"),
    "data.name": (DATA_SOURCES, "data"),
    "attack.kind": (ATTACKS, "attack"),
    "privacy.mechanism": (PRIVACY_MECHANISMS, "privacy"),
}


output_kind = output_link  # the model's output link (the task), for the modules that ask the config
output_key = output_link_key


def defaults() -> dict[str, Any]:
    return {key: copy.deepcopy(default) for key, (default, _) in SCHEMA.items()}


def flatten(table: dict[str, Any], source: str) -> dict[str, Any]:
    """Nested TOML tables -> dotted keys; unknown sections and keys are errors."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise ConfigError(
                    f"Unknown section [{key}] in {source}. Valid sections: "
                    + ", ".join(f"[{s}]" for s in SECTIONS) + "."
                )
            for name, inner in value.items():
                flat[f"{key}.{name}"] = inner
        else:
            flat[key] = value
    return flat


def parse_override(text: str) -> tuple[str, Any]:
    """'section.key=value' -> (key, value); the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value. Got {text!r} instead.")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def check(values: dict[str, Any], origins: dict[str, str], source: str) -> None:
    """Check every key against its declared constraint and the cross-key rules."""
    declared = plugin_keys(values, origins, source)
    _check_known(values, origins, source, declared)
    for key in SCHEMA:
        _check_value(values, key, SCHEMA[key][1], origins.get(key, source))
    for key, (default, constraint) in declared.items():
        values.setdefault(key, default)
        _check_value(values, key, constraint, origins.get(key, source))
    typed = Config(values, source)  # the cross checks below read the typed sections
    _check_strategy(values, origins, source)
    if values["train.optimizer"] == "lbfgs" and values["mode"] != "distributed":
        raise ConfigError(
            f"The 'train.optimizer' parameter in {origins.get('train.optimizer', source)} is 'lbfgs', which runs "
            "in distributed mode (every rank takes the same L-BFGS steps on Allreduced gradients). "
            "Set mode = \"distributed\"."
        )
    _check_optimizer(values, origins, source)
    stages.check(typed, lambda key: origins.get(key, source))
    _check_stages_taken(typed, origins, source)
    _check_head(typed, origins, source)
    if values["mode"] == "federated":
        stages.check_round(typed, lambda key: origins.get(key, source))
        from mpifl import hierarchy

        hierarchy.check(typed, STRATEGIES[values["server.strategy"]], bool(stages.enabled(typed)))
    elif values["server.hierarchy"] != "none":
        raise ConfigError(f"The 'server.hierarchy' parameter in {origins.get('server.hierarchy', source)} applies "
                          "to federated mode only.")
    _check_data(values, typed, origins, source)
    _check_selection(values, origins, source)


def _check_selection(values: dict[str, Any], origins: dict[str, str], source: str) -> None:
    """stop.metric is a recorded metric that is not the test set's; early stopping on validation needs its rows."""
    from mpifl.selection import check_metric

    where = origins.get("stop.metric", source)
    check_metric(values["stop.metric"], f"stop.metric ({where})")
    held = values["data.validation_fraction"] or values["data.folds"] or values["data.path"]
    if values["stop.patience"] and values["stop.metric"].startswith("val_") and not held:
        raise ConfigError(f"The 'stop.patience' parameter in {origins.get('stop.patience', source)} stops on "
                          f"{values['stop.metric']}, but the job holds no validation rows. Set "
                          "data.validation_fraction (or data.folds), or stop on another metric.")
    if values["data.folds"] and values["data.validation_fraction"]:
        raise ConfigError(f"data.folds ({origins.get('data.folds', source)}) and data.validation_fraction "
                          f"({origins.get('data.validation_fraction', source)}) both hold rows out; set one of them.")


def _check_data(values: dict[str, Any], typed: Config, origins: dict[str, str], source: str) -> None:
    """A source's own keys set for another source are refused; the chosen source checks the output link."""
    chosen = None if values["data.path"] else DATA_SOURCES[values["data.name"]]
    for name, cls in DATA_SOURCES.items():
        for key in cls.parameters if cls is not chosen else ():
            dotted = f"data.{key}"
            if dotted in origins and values[dotted] != SCHEMA[dotted][0]:  # a written config.toml holds every key
                raise ConfigError(f"The '{dotted}' parameter in {origins[dotted]} applies to data.name = {name!r} "
                                  "(without data.path) only.")
    if chosen is not None:
        chosen.check(typed, output_link(typed), output_link_key(typed), lambda key: origins.get(key, source))


def plugin_keys(values: dict[str, Any], origins: dict[str, str], source: str) -> dict[str, tuple[Any, Any]]:
    """Resolve each plug-in choice (a name or a module:Class path) and return the keys the chosen classes
    declare beyond the schema: the strategy's own server.* keys, a user's aggregator's or codec's."""
    declared: dict[str, tuple[Any, Any]] = {}
    owners: dict[str, str] = {}
    for choice, (registry, section) in PLUGINS.items():
        value = values.get(choice, SCHEMA[choice][0])
        _check_value(values, choice, SCHEMA[choice][1], origins.get(choice, source))
        cls = registry.resolve(value, origins.get(choice, source))
        for key, entry in getattr(cls, "parameters", {}).items():
            dotted = f"{section}.{key}"
            if dotted in SCHEMA and SCHEMA[dotted] == entry:
                continue  # a built-in's shared key (server.radius), declared alike
            clash = "mpifl's schema" if dotted in SCHEMA else owners.get(dotted)
            if clash:
                raise ConfigError(f"{choice} {value!r} declares the parameter '{dotted}', which {clash} declares "
                                  "too (differently, or for another purpose). Give it another name.")
            declared[dotted], owners[dotted] = entry, f"{choice} {value!r}"
    return declared


def _check_known(values: dict[str, Any], origins: dict[str, str], source: str,
                 declared: dict[str, tuple[Any, Any]]) -> None:
    """Refuse a key that neither the schema nor a chosen plug-in declares; name whose it is, if anyone's."""
    others = {f"server.{key}": users for key, users in strategy_keys().items()}
    for key in values:
        if key in SCHEMA or key in declared:
            continue
        where = origins.get(key, source)
        if key in others:
            raise ConfigError(f"The '{key}' parameter in {where} is not used by server.strategy "
                              f"{values['server.strategy']!r}; it belongs to "
                              + ", ".join(repr(u) for u in others[key]) + ".")
        section = key.split(".", 1)[0] if "." in key else None
        known = [*SCHEMA, *declared, *others]
        siblings = sorted({k for k in known if (k.split(".", 1)[0] if "." in k else None) == section})
        raise ConfigError(f"Unknown key '{key}' in {where}. Valid keys"
                          + (f" in [{section}]" if section else " at the top level") + ": "
                          + ", ".join(siblings) + ".")


def _check_value(values: dict[str, Any], key: str, constraint, origin: str) -> None:
    message = violation(key, origin, constraint, values[key])
    if message:
        raise ConfigError(message)
    if isinstance(constraint, Interval) and constraint.kind is float:
        values[key] = float(values[key])



def _check_strategy(values: dict[str, Any], origins: dict[str, str], source: str) -> None:
    """The strategy against the aggregator, and keys that apply to one mode only."""
    name = values["server.strategy"]
    if AGGREGATORS[values["server.aggregator"]].needs_rows and not STRATEGIES[name].averages_deltas:
        accepting = ", ".join(repr(n) for n, cls in STRATEGIES.items() if cls.averages_deltas)
        raise ConfigError(
            f"The 'server.aggregator' parameter in {origins.get('server.aggregator', source)} is "
            f"{values['server.aggregator']!r}, but server.strategy {name!r} does not average deltas (its server "
            f"step needs every client's exact update). Robust aggregators work with {accepting}."
        )
    asynchronous = STRATEGIES[name].asynchronous
    if asynchronous != (values["server.mode"] == "async"):
        fitting = ", ".join(repr(n) for n, cls in STRATEGIES.items() if cls.asynchronous == (not asynchronous))
        raise ConfigError(
            f"The 'server.mode' parameter in {origins.get('server.mode', source)} is {values['server.mode']!r}, but "
            f"server.strategy {name!r} is {'asynchronous' if asynchronous else 'synchronous'}. Set server.mode = "
            f"{'async' if asynchronous else 'sync'!r}, or use {fitting}.")
    if values["mode"] == "distributed":
        for key in ("train.stragglers", "server.drop_stragglers"):
            if key in origins and values[key]:
                raise ConfigError(f"The '{key}' parameter in {origins[key]} applies to federated mode only.")


def _check_optimizer(values: dict[str, Any], origins: dict[str, str], source: str) -> None:
    """An adaptive local optimizer needs a model kind that runs it, and local steps (not a gradient Allreduce)."""
    name, kind = values["train.optimizer"], values["model.kind"]
    if name in ("sgd", "lbfgs"):
        return
    where = origins.get("train.optimizer", source)
    if name not in MODELS[kind].optimizers:
        runs = ", ".join(repr(n) for n, cls in MODELS.items() if name in cls.optimizers)
        raise ConfigError(f"The 'train.optimizer' parameter in {where} is {name!r}, which model.kind {kind!r} does not "
                          f"run (its kernels take SGD steps). Use train.optimizer = \"sgd\", or model.kind {runs}.")
    if values["mode"] == "distributed" and values["train.algorithm"] == "gradient_averaging":
        raise ConfigError(f"The 'train.optimizer' parameter in {where} is {name!r}, a local optimizer; "
                          "train.algorithm = \"gradient_averaging\" takes SGD steps on Allreduced gradients. Use "
                          "train.algorithm = \"local_sgd\".")
    if values["train.momentum"]:
        raise ConfigError(f"The 'train.momentum' parameter in {origins.get('train.momentum', source)} is "
                          f"{values['train.momentum']}, but train.optimizer = {name!r} keeps its own moments "
                          "(train.beta1, train.beta2). Leave train.momentum at 0.")


def _check_stages_taken(typed: Config, origins: dict[str, str], source: str) -> None:
    """A kind that runs its own job (trees) applies only the stages it declares; the others' keys are refused,
    never ignored."""
    kind = typed.model.kind
    taken = MODELS[kind].stages_taken
    if taken is None:
        return
    for cls in stages.enabled(typed):
        if cls.name not in taken:
            key = cls.declares(typed).key
            raise ConfigError(f"The '{key}' parameter in {origins.get(key, source)} turns on {cls.name}, which "
                              f"model.kind {kind!r} does not apply (it takes {', '.join(taken)}). Unset {key}.")


def _check_head(typed: Config, origins: dict[str, str], source: str) -> None:
    """A strategy whose clients keep their own head (FedRep, FedPer) needs a model with layers below its head."""
    name, kind = typed.server.strategy, typed.model.kind
    if STRATEGIES[name].client.keeps_head and not MODELS[kind].has_body(typed):
        raise ConfigError(
            f"The 'server.strategy' parameter in {origins.get('server.strategy', source)} is {name!r}, which shares "
            f"a model's body and keeps each client's output layer (its head) on the client, but model.kind {kind!r} "
            f"(in {origins.get('model.kind', source)}) declares no layers below its output layer. Use model.kind = "
            "\"mlp\" with hidden layers or \"cnn\", or name a torch module's head with model.head.")


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a job file (or the defaults), apply --set overrides and validate."""
    if path is None:
        return build(None, "<defaults>", overrides)
    return build(read_toml(path, "job file"), str(path), overrides)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's tables; a missing or broken file is a ConfigError that names it ("Cannot read job file X")."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"Cannot read {what} {path}: {exc.strerror}.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what[0].upper()}{what[1:]} {path} is not valid TOML: {exc}.") from None


def build(table: dict[str, Any] | None, source: str, overrides: list[str] = (),
          settings: dict[str, Any] | None = None) -> Config:
    """The defaults, then a job table, then --set texts, then typed settings ({"train.lr": 0.1}); validated."""
    values = defaults()
    origins: dict[str, str] = {}
    if table is not None:
        values.update(flatten(table, source))
        origins.update(dict.fromkeys(flatten(table, source), source))
    for text in overrides:
        key, value = parse_override(text)
        values.update(flatten(_nest(key, value), "--set"))
        origins[key] = f"--set {text}"
    for key, value in (settings or {}).items():
        values.update(flatten(_nest(key, value), "override"))
        origins[key] = f"override {key}={value!r}"
    check(values, origins, source)
    return Config(values=values, source=source)


def _nest(key: str, value: Any) -> dict[str, Any]:
    if "." in key:
        section, name = key.split(".", 1)
        return {section: {name: value}}
    return {key: value}
