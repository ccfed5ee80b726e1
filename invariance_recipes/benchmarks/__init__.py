"""The performance benchmarks behind ``recipes/benchmark.py``: ratios measured in one process."""
