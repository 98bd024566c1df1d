"""Stream large response bodies (CSV, JSON objects and arrays) in constant memory.

A body that grows with the user's data (every device, every reading of a range)
goes out a chunk at a time, so its size costs time, never the process's memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from typing import Any, Final

import orjson
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

# A JSON chunk is sent once it holds this many bytes.
JSON_CHUNK_BYTES: Final = 64 * 1024

Chunk = str | bytes


def _next_chunk(chunks: Iterator[Chunk]) -> Chunk | None:
    return next(chunks, None)


async def _chunks_async(chunks: Generator[Chunk, None, None]) -> AsyncIterator[Chunk]:
    # Under ASGI a sync iterator would be read whole into memory before sending;
    # pull one chunk at a time on the request's database thread instead.
    pull = sync_to_async(_next_chunk, thread_sensitive=True)
    try:
        while (chunk := await pull(chunks)) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()


def streaming_response(
    request: Any, chunks: Generator[Chunk, None, None], *, content_type: str
) -> StreamingHttpResponse:
    """Send the chunks as they come, under WSGI and ASGI alike (`request` may be DRF's)."""
    django_request: HttpRequest = getattr(request, "_request", request)
    content: Iterator[Chunk] | AsyncIterator[Chunk] = (
        _chunks_async(chunks) if isinstance(django_request, ASGIRequest) else chunks
    )
    return StreamingHttpResponse(content, content_type=content_type)


def _batched(parts: Iterable[bytes]) -> Generator[bytes, None, None]:
    pending: list[bytes] = []
    size = 0
    for part in parts:
        pending.append(part)
        size += len(part)
        if size >= JSON_CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def json_array_chunks(items: Iterable[Any]) -> Generator[bytes, None, None]:
    """Yield a JSON array of the items, a few dozen KiB at a time."""

    def parts() -> Iterator[bytes]:
        yield b"["
        for index, item in enumerate(items):
            yield (b"," if index else b"") + orjson.dumps(item)
        yield b"]"

    return _batched(parts())


def json_object_chunks(members: Iterable[tuple[str, Any]]) -> Generator[bytes, None, None]:
    """Yield a JSON object of the (key, value) pairs, a few dozen KiB at a time."""

    def parts() -> Iterator[bytes]:
        yield b"{"
        for index, (key, value) in enumerate(members):
            yield (b"," if index else b"") + orjson.dumps(key) + b":" + orjson.dumps(value)
        yield b"}"

    return _batched(parts())
