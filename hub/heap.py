"""Keep the garbage collector's passes few and short in the hub's long-running processes."""

from __future__ import annotations

import gc

from core.conf import hub_settings


def heap_settle(*, urls: bool = True) -> None:
    """Freeze what start-up built, and collect the young generation less often.

    A web process holds a few hundred thousand long-lived objects (modules,
    classes, the URLconf and every view and serializer it imports). Left in the
    collected generations, every full pass walks all of them: pauses of 50-70 ms
    in the middle of requests (the bench's history row). Frozen, they are never
    scanned again; only objects made later are collected.

    The young generation: with Python's threshold (700 new containers) the ingest
    worker ran ~15 young passes per 3 200-reading batch, each walking the batch's
    live rows and keys, 2.2 ms of its 19 ms of CPU (2.8 of 24 with 1 000 alarm
    rules); at HUB_GC_YOUNG_THRESHOLD (50 000) none runs within a batch. Nearly all
    of the hub's garbage is freed by reference counting the moment it is dropped;
    the collector is only for cycles, which at most that many objects wait for.
    """
    if urls:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - imports every view and serializer now
    gc.freeze()
    gc.set_threshold(hub_settings.GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
