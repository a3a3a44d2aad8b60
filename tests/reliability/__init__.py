"""Reliability tests: concurrency, crashes (kill -9), outbox delivery, faults, properties, hostile input.

Figures for docs/reliability.md come from `python -m pytest tests/reliability -q -s` on SQLite and
PostgreSQL; every test prints a `[reliability]` line with what it reached.
"""
