"""Runs: one folder per run with its record and checkpoints."""
