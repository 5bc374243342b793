"""LEAF's Shakespeare model for mpifl's torch adapter: next-character prediction with an embedding and an LSTM.

    python -m mpifl partition LEAF/data/shakespeare/data --format leaf --out parts/shakespeare
    PYTHONPATH=examples mpiexec -n 9 python -m mpifl run examples/shakespeare_lstm.toml

The LEAF reader turns each 80-character line into 80 character codes (its
index in LEAF's vocabulary, ``mpifl.data.leaf.LETTERS``) and the next
character into one of 80 classes.  The rows arrive as floats in the job's
dtype; the module turns them back into integer codes for its embedding.
``build`` is the model of the LEAF benchmark (Caldas et al. 2018): an 8-wide
embedding, two LSTM layers of 256 units, and a dense layer on the last step.
"""

from __future__ import annotations

from torch import nn


class NextCharacter(nn.Module):
    """Codes (batch, length) -> logits over the vocabulary for the character that follows."""

    def __init__(self, vocabulary: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocabulary)

    def forward(self, codes):
        steps, _ = self.lstm(self.embed(codes.long()))
        return self.head(steps[:, -1, :])


def build(n_features: int, n_outputs: int) -> nn.Module:
    """LEAF's Shakespeare LSTM (n_features is the line length, n_outputs the vocabulary)."""
    return NextCharacter(n_outputs, embed=8, hidden=256, layers=2)


def build_small(n_features: int, n_outputs: int) -> nn.Module:
    """The same shape at a size the tests and a laptop run in seconds."""
    return NextCharacter(n_outputs, embed=8, hidden=32, layers=1)
