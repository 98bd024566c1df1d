"""The MQTT claim's messages: read a request on provision/{uid}/request, build its answer.

Request: `{"name": …}` or `{}`; behind a Mosquitto the hub manages, also
`"key"` and `"secret"` (the broker does not tell the hub which account
published). Answer on provision/{uid}/response: `{"status": "ok", "uid",
"token"}` or `{"status": "error", "error": code}`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Final

from devices.broker import BrokerUnavailable
from provisioning.services import ClaimRefused, device_claim

logger = logging.getLogger(__name__)

REQUEST_SUFFIX: Final = "/request"
RESPONSE_SUFFIX: Final = "/response"
# A request is a small JSON object; anything larger is refused unread.
MAX_REQUEST_BYTES: Final = 4096
# Codes of answers that are not claim refusals (provisioning.services.REFUSALS has those).
BAD_REQUEST: Final = "bad_request"
CREDENTIALS_REQUIRED: Final = "credentials_required"
UNAVAILABLE: Final = "unavailable"


def request_topic(uid: str) -> str:
    """Return the topic a device publishes its claim to."""
    return f"provision/{uid}{REQUEST_SUFFIX}"


def response_topic(uid: str) -> str:
    """Return the topic of a claim's answer."""
    return f"provision/{uid}{RESPONSE_SUFFIX}"


def requested_uid(topic: str) -> str | None:
    """Return the uid of a provision/{uid}/request topic, or None for any other topic."""
    levels = topic.split("/")
    if len(levels) == 3 and levels[0] == "provision" and levels[1] and levels[2] == "request":
        return levels[1]
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    """A claim's answer, and the key whose accounts may read it (managed Mosquitto)."""

    payload: bytes
    ok: bool
    opened_for: str | None = None


def error_answer(code: str) -> bytes:
    """Return an error answer's payload."""
    return json.dumps({"status": "error", "error": code}).encode()


def provision_request_answer(
    *,
    uid: str,
    payload: bytes,
    key: str | None = None,
    secret: str | None = None,
    answer_open: bool = False,
) -> Answer:
    """Claim `uid` as a request asks and return the answer to publish.

    `key` and `secret` are the connection's (the embedded broker knows them);
    without them they come from the payload. With `answer_open`, the key's
    accounts at the managed broker may receive the answer (see provisioning.broker).
    """
    fields: object = None
    if len(payload) <= MAX_REQUEST_BYTES:
        try:
            fields = json.loads(payload or b"{}")
        except ValueError:
            fields = None
    if not isinstance(fields, dict):
        return Answer(error_answer(BAD_REQUEST), ok=False)
    key = key if key is not None else fields.get("key")
    secret = secret if secret is not None else fields.get("secret")
    if not isinstance(key, str) or not isinstance(secret, str):
        return Answer(error_answer(CREDENTIALS_REQUIRED), ok=False)
    name = fields.get("name", "")
    if name is None:
        name = ""
    try:
        claimed = device_claim(key=key, secret=secret, uid=uid, name=name, answer_open=answer_open)
    except ClaimRefused as refusal:
        logger.info("provision: refused %s over MQTT: %s", uid, refusal.code)
        opened = key if answer_open and refusal.code not in ("key_invalid", "key_revoked") else None
        return Answer(error_answer(refusal.code), ok=False, opened_for=opened)
    except BrokerUnavailable:
        return Answer(error_answer(UNAVAILABLE), ok=False)
    logger.info("provision: registered device %s with key %s over MQTT", uid, claimed.key)
    body = {"status": "ok", "uid": claimed.device.uid, "token": claimed.token}
    return Answer(
        json.dumps(body).encode(), ok=True, opened_for=claimed.key if answer_open else None
    )
