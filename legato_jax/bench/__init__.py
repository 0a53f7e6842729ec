"""Benchmarks behind `legato bench ...` and scripts/bench_*.py; each prints a table."""
