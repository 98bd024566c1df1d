"""Schemathesis against the app in-process (WSGI) with a token: no 5xx, responses as documented."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from telemetry.services import readings_store_batch
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import RECEIVED_AT, T0

EXAMPLES = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """The hub's WSGI app, keeping the test's database connection open between requests.

    Django closes the connection after each request; its test client stops that so
    the test's transaction survives, and so must a client that calls the app directly.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def token() -> str:
    """A user whose devices are the documents' examples, with readings of every type."""
    alice = make_user("alice")
    for uid in ("boiler-1", "boiler-2"):
        make_device(alice, uid)
    make_device(make_user("bob"), "bobs")
    readings_store_batch(
        readings=[("boiler-1", "temperature", T0 + i * 7_000, 20 + i / 10) for i in range(50)]
        + [("boiler-1", "door_open", T0 + i * 11_000, i % 2 == 0) for i in range(20)]
        + [("boiler-1", "firmware", T0, "1.4.2"), ("boiler-2", "count", T0, 7)],
        received_at=RECEIVED_AT,
        units={"boiler-1": {"temperature": "Cel"}},
    )
    return Token.objects.create(user=alice).key


def cases(operation: schemathesis.APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    """Valid and invalid requests, and valid ones against a device that has readings."""
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if "{uid}" in operation.path:
        uid = "boiler-1"
        strategies.append(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"uid": uid})
        )
        if any(parameter.name == "metric" for parameter in operation.iter_parameters()):
            strategies.append(
                operation.as_strategy(
                    GenerationMode.POSITIVE,
                    path_parameters={"uid": uid},
                    query={"metric": "temperature"},
                )
            )
    return st.one_of(strategies)


@pytest.mark.django_db
def test_every_operation_answers_as_documented_and_never_5xx(wsgi_app, token):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    headers = {"Authorization": f"Token {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 41
    # Reads first and deletions last, so the devices with readings are there to be read.
    order = {"GET": 0, "POST": 1, "PATCH": 1, "DELETE": 2}
    operations.sort(key=lambda operation: order[operation.method.upper()])

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases(operation))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
