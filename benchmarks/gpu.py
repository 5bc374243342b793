"""The torch adapter on whatever GPU is present: the BatchNorm CNN and the LoRA transformer examples.

    python benchmarks/gpu.py [--ranks 3] [--rounds 10] [--out benchmarks/results]

Runs ``examples/batchnorm_fedavg.toml`` and the LoRA fine-tuning of
``examples/lora_text.py`` (after its short central pretraining) with mpiexec,
each client rank on GPU (node-local rank mod the GPU count), and prints the
device, the median round, the wall time with start-up, and the GPU's
utilisation sampled every 0.2 s by ``nvidia-smi`` during the rounds.
Without a GPU it runs the same jobs on the CPU and says so, so that one call
on a lent machine measures everything.  The LoRA rows need
``pip install "mpifl[lora]"``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from common import machine, markdown_table, write_results  # noqa: E402


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()} (CUDA {torch.version.cuda})"
    return "no GPU: the CPU"


class Utilisation(threading.Thread):
    """nvidia-smi's utilisation.gpu (percent, the busiest GPU) every 0.2 s until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        smi = shutil.which("nvidia-smi")
        while smi and not self.done.wait(0.2):
            out = subprocess.run([smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True)
            values = [float(v) for v in out.stdout.split() if v.strip().replace(".", "", 1).isdigit()]
            if values:
                self.samples.append(max(values))


def run(work: Path, ranks: int, job: str, out: str, *sets: str) -> dict:
    args = [shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
            str(ROOT / "examples" / f"{job}.toml"), "--out", out, "--quiet"]
    for setting in sets:
        args += ["--set", setting]
    sampler = Utilisation()
    sampler.start()
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - started
    sampler.done.set()
    if proc.returncode != 0:
        sys.exit(f"{job} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((work / out / "summary.json").read_text())
    busy = statistics.mean(sampler.samples) if sampler.samples else None
    return {"seconds_per_round": summary["seconds_per_round"], "wall": wall, "utilisation": busy,
            "accuracy": summary.get("final_accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--no-lora", action="store_true", help="only the CNN (a smoke run)")
    args = parser.parse_args()
    gpu = device()
    print(f"device: {gpu}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "examples").symlink_to(ROOT / "examples")
        results["BatchNorm CNN, FedAvg (digits)"] = run(work, args.ranks, "batchnorm_fedavg", "cnn",
                                                        f"rounds={args.rounds}")
        import importlib.util

        if importlib.util.find_spec("peft") and importlib.util.find_spec("transformers") and not args.no_lora:
            from examples.lora_text import write

            write(work / "parts" / "lora")
            run(work, 2, "lora_pretrain", "runs/lora_pretrain")
            results["transformer, LoRA fine-tuning"] = run(work, args.ranks, "lora_finetune", "lora",
                                                          f"rounds={args.rounds}")
    rows = [f"| {name} | {r['seconds_per_round']:.3f} s | {r['wall']:.1f} s | "
            f"{'n/a' if r['utilisation'] is None else format(r['utilisation'], '.0f') + ' %'} | "
            f"{r['accuracy'] if r['accuracy'] is None else format(r['accuracy'], '.3f')} |"
            for name, r in results.items()]
    table = markdown_table(f"The torch adapter on {gpu}, {args.ranks} ranks, {args.rounds} rounds; {machine()}",
                           ["job", "per round", "wall (with start-up)", "GPU utilisation", "accuracy"], rows)
    print(table)
    out = args.out if torch_has_gpu() else args.out / "no_gpu"  # a CPU run is printed, never published as GPU figures
    write_results(out, "gpu", table, {"device": gpu, "ranks": args.ranks, "results": results})


def torch_has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
