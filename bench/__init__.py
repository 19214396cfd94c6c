"""Benchmarks of chaos-registry-webhook (`make bench`): see bench/RESULTS.md."""
