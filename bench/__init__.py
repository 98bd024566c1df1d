"""Benchmarks of the hub; `make bench` runs `python -m bench.ingest`. Not shipped with the hub.

Imports point one way: `run`/`options` → `rows` → `load`, `support`; `report`
→ `load`, `support` (never `rows`); `load` → `support`; `support` → nothing
above it. tests/test_import_cycles.py keeps it so.
"""
