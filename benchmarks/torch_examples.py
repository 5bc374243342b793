"""The PyTorch examples end to end, as their job files run them: accuracy, bytes per round and time.

    python benchmarks/torch_examples.py [--ranks 4] [--out benchmarks/results]

Runs, each with mpiexec as the examples' docstrings say, in a scratch
directory: the BatchNorm CNN under FedAvg and FedBN; transfer learning
(pretrain on digits 0-4, fine-tune the head on 5-9) against the same frozen
body left random; and federated LoRA of the small transformer against full
fine-tuning from the same pretrained model.  The table gives each job's
final accuracy (FedBN's: the clients' own test rows), its trained values,
its bytes per round (uplink, downlink), the median round and the wall time
with start-up.  Needs ``pip install "mpifl[lora]"`` for the LoRA rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from common import machine, markdown_table, write_results  # noqa: E402


ROUNDS: list[str] = []  # --rounds as a setting for every job


def run(work: Path, ranks: int, job: str, out: str, *sets: str) -> dict:
    """One job through mpiexec in ``work``; its last record, summary and wall seconds."""
    import subprocess

    sets = (*sets, *ROUNDS)
    args = [shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
            str(ROOT / "examples" / f"{job}.toml"), "--out", out, "--quiet"]
    for setting in sets:
        args += ["--set", setting]
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{job} failed:\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (work / out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((work / out / "summary.json").read_text())
    return {"last": records[-1], "summary": summary, "wall": wall, "first": records[0]}


def row(name: str, r: dict, values: int) -> str:
    last = r["last"]
    accuracy = last["accuracy"] if last["accuracy"] is not None else last["mean_client_accuracy"]
    judged = "" if last["accuracy"] is not None else " (clients' own rows)"
    return (f"| {name} | {accuracy:.3f}{judged} | {values:,} | {last['uplink_bytes']:,} B | "
            f"{last['downlink_bytes']:,} B | {r['summary']['seconds_per_round']:.3f} s | {r['wall']:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--rounds", type=int, help="every job's rounds (a smoke run); default: the job files'")
    parser.add_argument("--examples", default="batchnorm,transfer,lora", help="which examples, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    import numpy as np

    if args.rounds:
        ROUNDS.append(f"rounds={args.rounds}")
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "examples").symlink_to(ROOT / "examples")
        chosen = args.examples.split(",")
        for job in ("batchnorm_fedavg", "batchnorm_fedbn") if "batchnorm" in chosen else ():
            data[job] = run(work, args.ranks, job, job)
        from examples.lora_text import write as write_text
        from examples.transfer import write as write_digits

        if "transfer" in chosen:
            write_digits(work / "parts" / "transfer")
            data["transfer_pretrain"] = run(work, 2, "transfer_pretrain", "runs/transfer_pretrain")
            data["transfer_finetune"] = run(work, args.ranks, "transfer_finetune", "runs/transfer_finetune")
            data["transfer_random_body"] = run(work, args.ranks, "transfer_finetune", "runs/random", "model.init=")
        lora = _installed("peft") and _installed("transformers") and "lora" in chosen
        if lora:
            write_text(work / "parts" / "lora")
            data["lora_pretrain"] = run(work, 2, "lora_pretrain", "runs/lora_pretrain")
            data["lora_finetune"] = run(work, args.ranks, "lora_finetune", "runs/lora_finetune")
            data["lora_full"] = run(work, args.ranks, "lora_full", "runs/lora_full")
        sizes = {name: int(np.load(work / _out(name) / "model.npz")["theta"].size) for name in data}
    names = {"batchnorm_fedavg": "BatchNorm CNN, FedAvg (buffers averaged)",
             "batchnorm_fedbn": "BatchNorm CNN, FedBN (buffers local)",
             "transfer_pretrain": "transfer: pretrain on digits 0-4 (distributed, 2 ranks)",
             "transfer_finetune": "transfer: fine-tune the head on 5-9 from model.pt",
             "transfer_random_body": "transfer: the same head on a random frozen body",
             "lora_pretrain": "LoRA: pretrain the transformer (distributed, 2 ranks)",
             "lora_finetune": "LoRA: fine-tune the adapters and head",
             "lora_full": "LoRA's baseline: full fine-tuning"}
    rows = [row(names[name], r, sizes[name]) for name, r in data.items()]
    if not lora and "lora" in args.examples.split(","):
        rows.append("| LoRA | not run (pip install \"mpifl[lora]\") | | | | | |")
    elif lora:
        ratio = data["lora_full"]["last"]["uplink_bytes"] / data["lora_finetune"]["last"]["uplink_bytes"]
        gap = data["lora_full"]["last"]["accuracy"] - data["lora_finetune"]["last"]["accuracy"]
        rows.append(f"| LoRA against full fine-tuning | {0.0 - gap:+.3f} | "
                    f"{sizes['lora_full'] / sizes['lora_finetune']:.1f}x "
                    f"fewer | {ratio:.1f}x fewer | | | |")
    table = markdown_table(
        f"The PyTorch examples as their job files run them, federated jobs on {args.ranks} ranks; {machine()}",
        ["job", "final accuracy", "trained values", "uplink a round", "downlink a round", "per round",
         "wall (with start-up)"], rows)
    print(table)
    write_results(args.out, "torch_examples", table,
                  {"ranks": args.ranks, "machine": machine(),
                   "jobs": {name: {"accuracy": r["last"]["accuracy"], "mean_client_accuracy":
                                   r["last"]["mean_client_accuracy"], "uplink_bytes": r["last"]["uplink_bytes"],
                                   "downlink_bytes": r["last"]["downlink_bytes"], "values": sizes[name],
                                   "seconds_per_round": r["summary"]["seconds_per_round"], "wall": r["wall"]}
                            for name, r in data.items()}})


def _out(name: str) -> str:
    return name if name.startswith("batchnorm") else f"runs/{name.replace('transfer_random_body', 'random')}"


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
