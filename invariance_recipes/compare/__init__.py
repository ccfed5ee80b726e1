"""Comparing variants: the experiments registry, sharded comparison runs, results tables,
statistics and provenance. May import ``run`` and ``measure``."""
