"""The `hub` command: Django's management commands with the hub's settings."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured

# Commands that serve many threads for a long time: they keep the database pool.
LONG_RUNNING = frozenset({"serve", "bridge", "ingest"})


def main(argv: list[str] | None = None) -> None:
    """Run a management command; a bad setting or an unreachable service ends with one line."""
    args = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    from django.core.management import execute_from_command_line

    try:
        import django

        django.setup()
    except ImproperlyConfigured as error:
        sys.stderr.write(f"hub: configuration error: {error}\n")
        raise SystemExit(2) from None
    command = args[0] if args else "help"
    if command not in LONG_RUNNING:
        _pool_off()
    from django.db import DatabaseError, connections

    from hub.startup import StartupError, database_problem

    try:
        execute_from_command_line(["hub", *args])
    except StartupError as error:
        sys.stderr.write(f"hub {command}: {error}\n")
        raise SystemExit(1) from None
    except DatabaseError as error:
        problem = database_problem(error, connections["default"].settings_dict)
        if problem is None:
            raise
        sys.stderr.write(f"hub {command}: {problem}\n")
        raise SystemExit(1) from None


def _pool_off() -> None:
    """Connect directly: one connection serves a one-off command, and fails with its reason.

    Through a pool, an unreachable database shows only as a timeout after the
    pool's wait, and its reconnection attempts log lines of their own.
    """
    from django.conf import settings

    settings.DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
