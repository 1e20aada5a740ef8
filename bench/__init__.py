"""Benchmarks and the demo: run with `python -m bench.<name>`; they print, never assert."""
