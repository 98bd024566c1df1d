"""`hub device add UID --owner USERNAME [--name NAME]`: register a device, print its token once."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, transaction

from devices.broker import BrokerUnavailable
from devices.models import Device
from devices.selectors import uid_is_valid
from devices.serializers import DUPLICATE_UID_MESSAGE, UID_MESSAGE
from devices.services import device_register


class Command(BaseCommand):
    """Manage devices from the command line."""

    help = "Manage devices. `add` registers one and prints {uid, token} as one line of JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = actions.add_parser("add", help="register a device and print its token once")
        add.add_argument("uid", help="the device uid (its MQTT username)")
        add.add_argument("--owner", required=True, help="username of the owning user")
        add.add_argument("--name", default="", help="a human-readable name")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "add":
            self.add(uid=options["uid"], owner=options["owner"], name=options["name"])

    def add(self, *, uid: str, owner: str, name: str) -> None:
        """Register the device and print one line of JSON with its token."""
        if not uid_is_valid(uid):
            raise CommandError(f"invalid uid {uid!r}: {UID_MESSAGE}")
        user_model = get_user_model()
        if "\x00" in owner:
            raise CommandError(f"unknown owner {owner!r}: no user with that username")
        try:
            user = user_model._default_manager.get_by_natural_key(owner)
        except user_model.DoesNotExist:
            raise CommandError(f"unknown owner {owner!r}: no user with that username") from None
        if Device.objects.filter(uid=uid).exists():
            raise CommandError(f"uid {uid!r}: {DUPLICATE_UID_MESSAGE}")
        try:
            with transaction.atomic():
                device, token = device_register(owner=user, uid=uid, name=name)
        except ValidationError as error:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
            )
            raise CommandError(f"cannot register {uid!r}: {problems}") from None
        except IntegrityError:
            raise CommandError(f"uid {uid!r}: {DUPLICATE_UID_MESSAGE}") from None
        except BrokerUnavailable as error:
            raise CommandError(f"cannot register {uid!r}: {error.detail}") from None
        self.stdout.write(json.dumps({"uid": device.uid, "token": token}))
