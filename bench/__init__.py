"""kb benchmarks: run with ``python -m bench`` (see docs/PERFORMANCE.md)."""
