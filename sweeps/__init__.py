"""Sweeps: experiment files -> resumable Optuna studies, one W&B run per trial."""
