"""The processes the bench runs against the hub, and its handles on them.

The publisher (`publisher`, driven through `feed`), the ceiling's subscriber,
the naive consumer, WebSocket clients (`wsclients`, `fanclients`), the
commander, and the history row's seeding (`historyseed`) and probe
(`historyprobe`). They import only `bench.support`.
"""
