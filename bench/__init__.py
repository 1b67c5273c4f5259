"""Roost's benchmarks: `python -m bench` (what `make bench` runs) measures every figure of issue 7.

Every figure that has a baseline is printed as a ratio against that baseline measured in the same run,
because absolute times on a shared machine drift. Nothing here is imported by the test suite except
through `python -m bench --smoke`, which only checks that the benchmark still runs.
"""
