"""`hub provisioning-key create --owner USERNAME …`: create a key, print its secret once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.broker import BrokerUnavailable
from provisioning.services import key_create


def expires_argument(text: str) -> datetime:
    """Parse --expires: an RFC 3339 / ISO 8601 time (UTC without an offset)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--expires {text!r}: give a time like 2027-01-01T00:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    """Manage provisioning keys from the command line."""

    help = (
        "Manage provisioning keys. `create` prints {id, key, secret, …} as one line of JSON; "
        "the secret is shown this once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = actions.add_parser("create", help="create a key and print its secret once")
        create.add_argument("--owner", required=True, help="username of the devices' owner")
        create.add_argument("--name", default="", help="a human-readable name")
        create.add_argument("--max-devices", type=int, default=None, metavar="N")
        create.add_argument("--expires", default=None, metavar="TIME", help="RFC 3339 time")
        create.add_argument("--uid-prefix", default="", metavar="P", help="claimed uids start P")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "create":
            self.create(options)

    def create(self, options: dict[str, Any]) -> None:
        """Create the key and print one line of JSON with its secret."""
        owner = options["owner"]
        user_model = get_user_model()
        try:
            if "\x00" in owner:
                raise user_model.DoesNotExist
            user = user_model._default_manager.get_by_natural_key(owner)
        except user_model.DoesNotExist:
            raise CommandError(f"unknown owner {owner!r}: no user with that username") from None
        expires = expires_argument(options["expires"]) if options["expires"] else None
        try:
            created = key_create(
                owner=user,
                name=options["name"],
                max_devices=options["max_devices"],
                expires=expires,
                uid_prefix=options["uid_prefix"],
            )
        except ValidationError as error:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
            )
            raise CommandError(f"cannot create the key: {problems}") from None
        except BrokerUnavailable as error:
            raise CommandError(f"cannot create the key: {error.detail}") from None
        key = created.key
        self.stdout.write(
            json.dumps(
                {
                    "id": key.pk,
                    "key": key.key,
                    "secret": created.secret,
                    "name": key.name,
                    "max_devices": key.max_devices,
                    "expires": key.expires.isoformat() if key.expires else None,
                    "uid_prefix": key.uid_prefix,
                }
            )
        )
