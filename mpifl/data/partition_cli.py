"""``python -m mpifl partition``: cut a data set into per-client files and a manifest.

    python -m mpifl partition SOURCE --clients K --method iid|dirichlet|shards|quantity|natural
                              [--alpha A] [--shards-per-client S] [--seed N] [--test-fraction F | --test-source T]
                              [--label-column C] [--id-column C] [--dtype float32|float64]
                              [--scale minmax|standard|maxabs | --scaler-from DIR] --out DIR [--plot]

Runs without MPI.  SOURCE is a CSV, LIBSVM/svmlight, .npy or .npz file, an
MNIST-format IDX images file (train-images-idx3-ubyte, gzipped or not, with
its labels file beside it), a LEAF directory (train/ and test/ JSON files:
each user becomes one client with its own test rows, and the server's test
set is the union of them), or a built-in data source's name: 'digits',
'synthetic' or 'fedprox_synthetic' (the FedProx paper's Synthetic(alpha,
beta): --clients defaults to 30, each client is one natural client, and the
test set is the union of the clients' 10% test rows).  --test-source takes
the server's test set from its own file (MNIST's t10k files) instead of
holding out --test-fraction of SOURCE.

--scale fits a feature scaler on the training rows only (never the test
rows) and applies it to every file written; the manifest keeps it, and
--scaler-from DIR applies another partition's scaler, so that a later file
is scaled exactly as the first was.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from mpifl.data import hf, leaf, scaling, sources, store
from mpifl.data import partition as methods
from mpifl.data.catalog import DATA_SOURCES
from mpifl.data.sparse import CSR
from mpifl.errors import DataError, MpiflError
from mpifl.data.shards import held_out_rows
from mpifl.rng import Purpose, stream

METHODS = ("iid", "dirichlet", "shards", "quantity", "natural")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mpifl partition", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="data file (CSV, LIBSVM, .npy, .npz, IDX), a Hugging Face dataset, a LEAF "
                                  "directory, or a built-in data "
                                  "source: 'digits', 'synthetic' or 'fedprox_synthetic'")
    p.add_argument("--clients", type=int, help="number of clients K (natural: one per id; may be left out)")
    p.add_argument("--method", choices=METHODS, default="iid")
    p.add_argument("--alpha", type=float, default=0.5, help="dirichlet: label concentration (smaller = more skew)")
    p.add_argument("--shards-per-client", type=int, default=2, help="shards: label-sorted shards per client")
    p.add_argument("--quantity", choices=("lognormal", "powerlaw"), default="lognormal",
                   help="quantity: distribution of client sizes")
    p.add_argument("--spread", type=float, default=1.0, help="quantity: log-normal sigma, or the Pareto shape")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out rows for the server's test set")
    p.add_argument("--validation-fraction", type=float, default=0.0,
                   help="each client's share held out as its own validation rows (client_XXXXX/validation)")
    p.add_argument("--label-column", help="CSV/.npy: label column, by name or index (default: the last)")
    p.add_argument("--id-column", help="CSV: the column whose values define natural clients")
    p.add_argument("--task", choices=("classification", "regression"), default="classification")
    p.add_argument("--test-source", help="a file of the same format whose rows are the test set (e.g. MNIST's "
                                         "t10k-images-idx3-ubyte); replaces --test-fraction")
    p.add_argument("--format", choices=("auto", "csv", "libsvm", "npy", "npz", "idx", "leaf", "hf"), default="auto",
                   help="hf: a Hugging Face dataset (save_to_disk directory, .parquet or .arrow)")
    p.add_argument("--features", help="hf: the feature columns, comma-separated (default: all but label and id)")
    p.add_argument("--split", default="train", help="hf: the DatasetDict split of SOURCE")
    p.add_argument("--test-split", default="test", help="hf: the DatasetDict split of --test-source")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="stored dtype; match the job's model.dtype so ranks can map the files without a copy")
    p.add_argument("--n-samples", type=int, default=10_000, help="synthetic: rows")
    p.add_argument("--n-features", type=int, default=20, help="synthetic: features")
    p.add_argument("--n-classes", type=int, default=2, help="synthetic: classes")
    p.add_argument("--fedprox-alpha", type=float, default=0.0, help="fedprox_synthetic: model heterogeneity")
    p.add_argument("--fedprox-beta", type=float, default=0.0, help="fedprox_synthetic: input heterogeneity")
    p.add_argument("--fedprox-iid", action="store_true", help="fedprox_synthetic: the paper's IID variant")
    p.add_argument("--scale", choices=scaling.METHODS, help="scale the features by a scaler fitted on the training rows "
                                                            "(maxabs keeps sparse rows sparse)")
    p.add_argument("--scaler-from", type=Path, help="apply the scaler of this earlier partition's manifest instead")
    p.add_argument("--out", type=Path, required=True, help="partition directory to create")
    p.add_argument("--force", action="store_true", help="replace an existing partition directory")
    p.add_argument("--plot", action="store_true", help="also draw the per-client label distribution to a PNG")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = run(args)
    except MpiflError as exc:
        print(f"mpifl partition: error: {exc}", file=sys.stderr)
        return exc.exit_code
    rows = [c["rows"] for c in manifest["clients"]]
    print(f"wrote {len(rows)} clients ({min(rows)} to {max(rows)} rows, {sum(rows)} in all) and "
          f"{manifest['test']['rows']} test rows to {args.out}")
    if args.plot:
        path = plot_labels(manifest, args.out / "label_distribution.png")
        print(f"label distribution: {path}")
    return 0


def run(args: argparse.Namespace) -> dict:
    _check_before_writing(args)
    if args.format == "leaf" or (args.format == "auto" and leaf.is_leaf(args.source) and not hf.is_hf(Path(args.source))):
        return _leaf(args)
    if not 0 <= args.test_fraction < 1:
        raise DataError(f"--test-fraction must be in [0, 1). Got {args.test_fraction}.")
    if not 0 <= args.validation_fraction < 1:
        raise DataError(f"--validation-fraction must be in [0, 1). Got {args.validation_fraction}.")
    table = _table(args)
    method = "natural" if table.test is not None else args.method  # a source's own clients stay as they are
    if method != "natural" and (args.clients is None or args.clients < 1):
        raise DataError(f"--clients must be a positive int for --method {method}.")
    if table.test is not None:  # the source's own test rows
        train, test = np.setdiff1d(np.arange(table.n), table.test), table.test
    elif args.test_source:
        table, train, test = _with_test_file(table, args)
    else:
        train, test = methods.split_train_test(table.n, args.test_fraction, stream(args.seed, Purpose.SPLIT))
    if table.classes is not None:
        y, label_values = table.y, list(range(table.classes))
    else:
        y, label_values = _labels(table.y, args.task, args.source)
    clients = args.clients if table.test is None else None
    parts = _partition(args, method, clients, y[train], None if table.groups is None else table.groups[train])
    X, scaler = _scaled(args, table.X, train)
    if args.out.exists() and args.force:
        shutil.rmtree(args.out)
    own, held = _validation_split([train[rows] for rows in parts], args.validation_fraction, args.seed)
    return write_partition(
        args.out, X, y, own, test, np.dtype(args.dtype), label_values,
        {"source": str(args.source), "method": method, "params": table.params or _params(args, method),
         "seed": args.seed, "test_fraction": _test_fraction(args, table), "task": args.task,
         **({"test_source": str(args.test_source)} if args.test_source else {}),
         **({"scaler": scaler} if scaler else {})},
        table.groups if method == "natural" else None, client_validations=held,
    )


def _validation_split(clients: list[np.ndarray], fraction: float, seed: int):
    """(each client's training rows, its validation rows or None): a seeded share per (seed, client), as a run's
    data.validation_fraction draws it; a client keeps at least one training row."""
    if fraction <= 0:
        return clients, None
    own, held = [], []
    for k, rows in enumerate(clients):
        kept, out = held_out_rows(rows.size, fraction, seed, Purpose.VALIDATION, k) or (np.arange(rows.size), [])
        own.append(rows[kept])
        held.append(rows[np.asarray(out, dtype=np.int64)])
    return own, held


def _check_before_writing(args: argparse.Namespace) -> None:
    """Everything that can be refused without reading the data, so that nothing is written before it fails."""
    if (args.out / store.MANIFEST).exists() and not args.force:
        raise DataError(f"{args.out} already holds a partition; pass --force to replace it.")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise DataError('--plot needs matplotlib: pip install "mpifl[plot]" (nothing was written).') from None
    if args.scale and args.scaler_from:
        raise DataError("--scale fits a scaler and --scaler-from reuses one; give one of them.")


def _table(args: argparse.Namespace) -> sources.Table:
    """SOURCE's rows: a built-in data source's own table, or a file's."""
    if args.source in DATA_SOURCES:
        table = DATA_SOURCES[args.source].partition_table(args)
        if table is None:
            raise DataError(f"The data source {args.source!r} makes its rows on each rank; it has no table to cut.")
        return table
    return sources.read(args.source, args.label_column, args.id_column, args.format, args.features, args.split)


def _scaled(args: argparse.Namespace, X, train: np.ndarray):
    """(X scaled as asked, the scaler's manifest entry or None): fitted on the training rows, or read from
    --scaler-from's manifest."""
    if args.scaler_from:
        scaler = scaling.Scaler.from_manifest(store.read_manifest(args.scaler_from), args.scaler_from)
    elif args.scale:
        scaler = scaling.Scaler.fit(args.scale, _take(X, train))
    else:
        return X, None
    return scaler.apply(X, str(args.source)), scaler.entry()


def _test_fraction(args: argparse.Namespace, table: sources.Table) -> float:
    if table.test is not None:
        return round(table.test.size / table.n, 6)
    return 0.0 if args.test_source else args.test_fraction


def _with_test_file(table: sources.Table, args: argparse.Namespace):
    """SOURCE's rows then --test-source's, as one table; (table, train rows, test rows)."""
    test = sources.read(args.test_source, args.label_column, None, args.format, args.features, args.test_split)
    if isinstance(table.X, CSR) or isinstance(test.X, CSR):
        raise DataError("--test-source takes dense data (IDX, CSV, .npy, .npz); for LIBSVM use --test-fraction.")
    if test.X.shape[1] != table.X.shape[1]:
        raise DataError(f"--test-source {args.test_source} has {test.X.shape[1]} features; {args.source} has "
                        f"{table.X.shape[1]}.")
    both = sources.Table(np.vstack([table.X, test.X]), np.concatenate([table.y, test.y]))
    return both, np.arange(table.n), np.arange(table.n, both.n)


def _leaf(args: argparse.Namespace) -> dict:
    """A LEAF directory: user u's train rows are client u's, its test rows the client's own test set, and the
    server's test set is every user's test rows, in client order."""
    data = leaf.read(args.source)
    if args.clients is not None and args.clients != len(data.users):
        raise DataError(f"{args.source} holds {len(data.users)} users, one client each; --clients {args.clients} "
                        "differs (leave it out).")
    if (args.out / store.MANIFEST).exists() and not args.force:
        raise DataError(f"{args.out} already holds a partition; pass --force to replace it.")
    parts = [data.train[u] for u in data.users] + [data.test[u] for u in data.users]
    X = np.concatenate([x for x, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    if data.classes is not None:  # text: the codes are the classes, all of LEAF's vocabulary
        y, label_values = labels, data.classes
    else:
        y, label_values = _labels(labels, args.task, str(args.source))
    starts = np.cumsum([0, *(labels.size for _, labels in parts)])
    blocks = [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:])]
    k = len(data.users)
    if args.out.exists() and args.force:
        shutil.rmtree(args.out)
    return write_partition(args.out, X, y, blocks[:k], np.concatenate(blocks[k:]), np.dtype(args.dtype), label_values,
                           {"source": str(args.source), "method": "natural",
                            "params": {"format": "leaf", "text": data.text},
                            "seed": args.seed, "test_fraction": None, "task": args.task},
                           client_tests=blocks[k:], names=data.users)


def write_partition(out: Path, X, y: np.ndarray, clients: list[np.ndarray], test: np.ndarray, dtype: np.dtype,
                    label_values: list[float], meta: dict, groups: np.ndarray | None = None,
                    client_tests: list[np.ndarray] | None = None, names: list[str] | None = None,
                    client_validations: list[np.ndarray] | None = None) -> dict:
    """Write client and test files and the manifest from rows already assigned; returns the manifest.

    ``y`` holds labels 0..C-1 (or real targets when meta["task"] is
    "regression"); ``clients[k]``, ``test`` and ``client_tests[k]`` (each
    client's own test rows, when the source has them) index rows of X and y.
    """
    out.mkdir(parents=True)
    task = meta.get("task", "classification")
    n_classes = len(label_values) if task == "classification" else 1
    entries = []
    for k, chosen in enumerate(clients):
        files = store.write_part(out, store.client_dir(k), _take(X, chosen), y[chosen], dtype)
        entry = {"id": k, "dir": store.client_dir(k), "rows": int(chosen.size), "files": files}
        if task == "classification":
            entry["label_counts"] = np.bincount(y[chosen].astype(np.int64), minlength=n_classes).tolist()
        if groups is not None and chosen.size:
            entry["group"] = float(groups[chosen[0]])
        if names is not None:
            entry["user"] = names[k]
        if client_tests is not None and client_tests[k].size:
            own = client_tests[k]
            name = f"{store.client_dir(k)}/test"
            files = store.write_part(out, name, _take(X, own), y[own], dtype)
            entry["test"] = {"dir": name, "rows": int(own.size), "files": files}
        if client_validations is not None and client_validations[k].size:
            held = client_validations[k]
            name = f"{store.client_dir(k)}/validation"
            files = store.write_part(out, name, _take(X, held), y[held], dtype)
            entry["validation"] = {"dir": name, "rows": int(held.size), "files": files}
        entries.append(entry)
    test_files = store.write_part(out, "test", _take(X, test), y[test], dtype)
    manifest = {
        "format": store.FORMAT, "version": store.VERSION, "source": meta.get("source", ""), "task": task,
        "n_features": int(X.shape[1]), "n_classes": n_classes, "label_values": label_values,
        "dtype": str(dtype), "sparse": isinstance(X, CSR), "method": meta.get("method", "given"),
        "params": meta.get("params", {}), "seed": meta.get("seed"), "test_fraction": meta.get("test_fraction"),
        "clients": entries, "test": {"dir": "test", "rows": int(test.size), "files": test_files},
        **({"test_source": meta["test_source"]} if "test_source" in meta else {}),
        **({"scaler": meta["scaler"]} if "scaler" in meta else {}),  # fitted on the training rows (--scale)
    }
    store.write_manifest(out, manifest)
    return manifest


def _labels(y: np.ndarray, task: str, source: str) -> tuple[np.ndarray, list[float]]:
    """Classification labels mapped to 0..C-1 (the original values kept in the manifest)."""
    if not np.isfinite(y).all():
        raise DataError(f"{source}: the label column contains NaN or inf values.")
    if task == "regression":
        return y.astype(np.float64), []
    if (y != np.floor(y)).any():
        raise DataError(f"{source}: the labels are not whole numbers; pass --task regression for real targets.")
    values, codes = np.unique(y, return_inverse=True)
    if values.size < 2:
        raise DataError(f"{source}: every row has label {values[0]:g}; classification needs 2 or more classes.")
    return codes.astype(np.float64), values.tolist()


def _partition(args, method: str, clients: int | None, labels: np.ndarray,
               groups: np.ndarray | None) -> list[np.ndarray]:
    rng = stream(args.seed, Purpose.PARTITION)
    if method == "natural":
        if groups is None:
            raise DataError("--method natural needs an id column: --id-column for CSV, qid: fields for LIBSVM, "
                            "or a 'groups' array in .npz.")
        parts = methods.natural(groups)
        if clients is not None and clients != len(parts):
            raise DataError(f"--method natural makes one client per id: {len(parts)} ids, but --clients {clients}.")
        return parts
    if args.method == "shards":
        return methods.shards(labels, args.clients, args.shards_per_client, rng)
    if args.method == "quantity":
        return methods.quantity(labels.size, args.clients, rng, args.quantity, args.spread)
    if args.method == "dirichlet" and args.task == "regression":
        raise DataError("--method dirichlet skews labels; a regression task has none. Use iid or quantity.")
    return methods.partition(args.method, labels, args.clients, args.alpha, rng)


def _params(args, method: str) -> dict:
    return {"iid": {}, "natural": {"id_column": args.id_column},
            "dirichlet": {"alpha": args.alpha}, "shards": {"shards_per_client": args.shards_per_client},
            "quantity": {"distribution": args.quantity, "spread": args.spread}}[method]


def _take(X, rows: np.ndarray):
    return X.take(rows) if isinstance(X, CSR) else X[rows]


def plot_labels(manifest: dict, path: Path) -> Path:
    """A stacked bar per client: how many rows of each class it holds."""
    try:
        import matplotlib
    except ImportError:
        raise DataError('Plotting needs matplotlib: pip install "mpifl[plot]".') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = manifest["clients"]
    counts = np.array([c.get("label_counts", [c["rows"]]) for c in clients])
    fig, ax = plt.subplots(figsize=(min(2 + 0.12 * len(clients), 30), 4.5))
    bottom = np.zeros(len(clients))
    names = manifest["label_values"] or ["rows"]
    for j in range(counts.shape[1]):
        ax.bar(np.arange(len(clients)), counts[:, j], bottom=bottom, width=0.9, label=f"{names[j]:g}"
               if isinstance(names[j], float) else str(names[j]))
        bottom += counts[:, j]
    ax.set(xlabel="client", ylabel="rows", title=f"{manifest['method']} {manifest['params']}: "
           f"{len(clients)} clients, {manifest['source']}")
    if counts.shape[1] <= 20:
        ax.legend(title="label", fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
