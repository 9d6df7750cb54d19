"""Reproductions of the papers' tabular results (see experiments/README.md for the commands)."""
