"""Client-level differential privacy for federated rounds: clipping and noise (mechanism) and its accounting."""
