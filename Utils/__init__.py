"""Shared utilities: checkpoints, metrics, evaluation, data tools, plotting."""
