"""The REST API's JSON parser: orjson, so hostile bodies are a 400, never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser on orjson.

    The standard library's parser raises RecursionError on a body nested a few
    thousand levels deep, which DRF does not catch (a 500), and accepts lone
    surrogates and 1e999, which PostgreSQL then refuses. orjson stops at 1024
    levels and refuses both, as a JSONDecodeError: a 400 here.
    """

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Parse the request body; malformed JSON is a ParseError (400)."""
        body = stream.read()
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
                body = body.decode(encoding).encode("utf-8", "surrogatepass")
            return orjson.loads(body)
        except (orjson.JSONDecodeError, UnicodeError, LookupError) as error:
            raise ParseError(f"JSON parse error - {error}") from None
