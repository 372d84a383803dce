"""Deterministic fakes and tiny models for tests, notebooks and benchmarks (no network)."""
