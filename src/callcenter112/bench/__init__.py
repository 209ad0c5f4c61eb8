"""Benchmarks run by `scripts/bench` (measurements, not tests; DESIGN §7)."""

__all__: list[str] = []
