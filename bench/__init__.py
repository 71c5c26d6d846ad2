"""Benchmarks for Amend: start-up time, generation throughput, routing overhead.

Run from the repository root, e.g. `python -m bench.startup --help`; see BENCHMARKS.md.
"""
