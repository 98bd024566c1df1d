"""The `hub` command: Django's management commands with the hub's settings."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured


def main(argv: list[str] | None = None) -> None:
    """Run a management command; a bad setting ends with one line naming it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    from django.core.management import execute_from_command_line

    try:
        import django

        django.setup()
    except ImproperlyConfigured as error:
        sys.stderr.write(f"hub: configuration error: {error}\n")
        raise SystemExit(2) from None
    execute_from_command_line(["hub", *(sys.argv[1:] if argv is None else argv)])
