"""Benchmarks of flowengine against hand-written baselines (`python benchmarks/run.py`, docs/benchmarks.md).

Not part of the installed package and never imported by it; only the standard library, flowengine's own
dependencies, `transitions` and `psycopg` are used, so the benchmark runs wherever the test suite runs.
"""
