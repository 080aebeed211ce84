"""Thin adapters to the outside world, one module per system. Idempotent: Temporal may run them twice."""
