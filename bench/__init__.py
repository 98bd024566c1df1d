"""Benchmarks of the hub; `make bench` runs bench.ingest. Not shipped with the hub."""
