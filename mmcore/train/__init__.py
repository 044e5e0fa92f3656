"""Trainers for the bundled tier: one module per family, run as `python -m mmcore.train <family>`."""
