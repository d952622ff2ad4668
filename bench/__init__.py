"""Benchmarks of the whole product on real processes; see bench/run.py."""
