"""Federated LoRA: a small transformer pretrained centrally, then fine-tuned with LoRA adapters across clients.

    python examples/lora_text.py parts/lora                          # the task's two partitions
    mpirun -n 2 python -m mpifl run examples/lora_pretrain.toml --out runs/lora_pretrain
    mpirun -n 4 python -m mpifl run examples/lora_finetune.toml --out runs/lora_finetune
    mpirun -n 4 python -m mpifl run examples/lora_full.toml --out runs/lora_full   # full fine-tuning, to compare

The model is a two-layer BERT built from a ``transformers`` config (no
download) with a classification head.  The task is synthetic text: each
sequence of 16 token ids starts with a [CLS] token and hides, among random
background tokens, two keywords of its class and one of another; the label
is the class that has two.  ``lora_pretrain.toml`` trains ``full`` briefly
on one half of the rows, and writes its state_dict (model.pt).
``lora_finetune.toml`` builds ``lora``, the same network wrapped by
``peft.get_peft_model`` (rank-4 adapters on the attention's query and value,
and the classifier head trainable), starts it from that file (model.init
finds the base weights under peft's names; the adapters keep their seeded
start) and trains across non-IID clients: only the 2,308 adapter and head
values travel, against 76,676 for ``lora_full.toml``'s full fine-tuning.
Needs ``pip install "mpifl[lora]"``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from torch import nn

VOCAB, LENGTH, CLASSES, KEYWORDS = 64, 16, 4, 5
CLS, FIRST_KEYWORD = 1, 2
BACKGROUND = (FIRST_KEYWORD + CLASSES * KEYWORDS, VOCAB)  # token ids of no class


class TextClassifier(nn.Module):
    """Token ids in, logits out: the Hugging Face model's forward, as mpifl calls a module."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids).logits


def _bert(n_outputs: int) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=LENGTH, type_vocab_size=1,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=n_outputs)
    return BertForSequenceClassification(config)


def full(n_features: int, n_outputs: int) -> nn.Module:
    """The whole network trains (pretraining, and full fine-tuning)."""
    return TextClassifier(_bert(n_outputs))


def lora(n_features: int, n_outputs: int) -> nn.Module:
    """peft's LoRA on query and value (r = 4, alpha = 8); the classifier head trains too, the rest is frozen."""
    import warnings

    from peft import LoraConfig, get_peft_model

    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")  # peft's calls, not ours
    model = get_peft_model(_bert(n_outputs), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                        lora_dropout=0.0))
    for name, parameter in model.named_parameters():
        if ".classifier." in name:
            parameter.requires_grad_(True)
    return TextClassifier(model)


def sentences(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n sequences of token ids (as float rows) and their classes."""
    X = rng.integers(*BACKGROUND, size=(n, LENGTH))
    X[:, 0] = CLS
    y = rng.integers(0, CLASSES, n)
    other = (y + rng.integers(1, CLASSES, n)) % CLASSES
    for i in range(n):
        at = rng.choice(np.arange(1, LENGTH), 3, replace=False)
        X[i, at] = FIRST_KEYWORD + np.array([y[i], y[i], other[i]]) * KEYWORDS + rng.integers(0, KEYWORDS, 3)
    return X.astype(np.float32), y.astype(np.float64)


def write(out: Path, clients: int = 12, seed: int = 0) -> None:
    """parts/pretrain: 800 rows over 8 parts (up to 8 workers); parts/finetune: 3,000 rows over Dirichlet(0.3) clients."""
    from mpifl.data.partition import dirichlet
    from mpifl.data.partition_cli import write_partition
    from mpifl.rng import Purpose, stream

    rng = np.random.default_rng(seed)
    for name, n, k in (("pretrain", 800, 8), ("finetune", 3000, clients)):
        X, y = sentences(n + 600, rng)
        parts = dirichlet(y[:n].astype(int), k, 0.3, stream(seed, Purpose.PARTITION))
        write_partition(out / name, X, y, parts, np.arange(n, n + 600), np.dtype("float32"),
                        [float(c) for c in range(CLASSES)],
                        {"source": "synthetic keyword text", "method": "dirichlet", "alpha": 0.3})


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "parts/lora"))
