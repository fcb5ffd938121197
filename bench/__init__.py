"""Benchmarks: not tests. Each prints figures and writes a JSON result to bench/results/."""
