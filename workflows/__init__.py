"""Deterministic orchestration: one module per workflow. Nothing here does I/O or reads the clock."""
