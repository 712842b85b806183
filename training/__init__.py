"""Data, losses, metrics, training, evaluation, batch inference and the `l2gnet` CLI (no Qt)."""
