"""Keep the garbage collector's full passes short in the hub's long-running processes."""

from __future__ import annotations

import gc


def heap_settle(*, urls: bool = True) -> None:
    """Freeze what start-up built, so that the collector's passes no longer walk it.

    A web process holds a few hundred thousand long-lived objects (modules,
    classes, the URLconf and every view and serializer it imports). Left in the
    collected generations, every full pass walks all of them: pauses of 50-70 ms
    in the middle of requests (the bench's history row). Frozen, they are never
    scanned again; objects made later are collected as before.
    """
    if urls:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - imports every view and serializer now
    gc.freeze()
