"""The OpenAPI document: valid, complete (typed, described, with examples) and served offline."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.factories import make_user

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document() -> dict:
    out = io.StringIO()
    # Fails (SchemaGenerationError) on any warning and validates against the OpenAPI 3 spec.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def operations(document: dict):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_schema_validates_and_has_every_api_endpoint(document):
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/api/v1/auth/token/",
        "/api/v1/devices/",
        "/api/v1/devices/{uid}/",
        "/api/v1/devices/{uid}/rotate-token/",
        "/api/v1/devices/{uid}/latest/",
        "/api/v1/devices/{uid}/readings/",
        "/api/v1/devices/{uid}/series/",
        "/api/v1/devices/{uid}/commands/",
        "/api/v1/devices/{uid}/presence/",
        "/api/v1/devices/{uid}/attributes/",
        "/api/v1/devices/{uid}/telemetry/",
        "/api/v1/commands/{command_id}/",
        "/api/v1/latest/",
        "/api/v1/alarm-rules/",
        "/api/v1/alarm-rules/{rule_id}/",
        "/api/v1/alarms/",
        "/api/v1/alarms/{alarm_id}/",
        "/api/v1/alarms/{alarm_id}/ack/",
        "/api/v1/alarms/{alarm_id}/clear/",
        "/api/v1/webhooks/",
        "/api/v1/provisioning-keys/",
        "/api/v1/provisioning-keys/{key_id}/",
        "/api/v1/provision/",
        "/api/v1/webhooks/{webhook_id}/",
        "/api/v1/api-keys/",
        "/api/v1/api-keys/{key_id}/",
    }
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


def test_every_operation_parameter_and_response_is_typed_and_described(document):
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (where, parameter["name"])
            assert parameter["schema"].get("type") or parameter["schema"].get("enum"), where
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), where
        assert "429" in responses and "400" in responses, where
        if "{" in path:
            assert "404" in responses, where
        if path not in ("/api/v1/auth/token/", "/api/v1/provision/"):
            assert "401" in responses, where
        for code, response in responses.items():
            assert response.get("description"), (where, code)
            for media in response.get("content", {}).values():
                assert media.get("schema"), (where, code)


def test_every_success_and_request_body_has_an_example(document):
    missing = []
    for path, method, operation in operations(document):
        for code, response in operation["responses"].items():
            if code.startswith("2") and code != "204":
                for media_type, media in response.get("content", {}).items():
                    if not (media.get("examples") or media.get("example")):
                        missing.append(f"{method.upper()} {path} {code} {media_type}")
        body = operation.get("requestBody")
        if body:
            media = body["content"]["application/json"]
            if not (media.get("examples") or media.get("example")):
                missing.append(f"{method.upper()} {path} request")
    assert missing == []


def test_http_ingest_is_described_with_its_three_body_forms_and_basic_auth(document):
    # A plain async view, added by telemetry.openapi's preprocessing hook.
    operation = document["paths"]["/api/v1/devices/{uid}/telemetry/"]["post"]
    assert set(document["paths"]["/api/v1/devices/{uid}/telemetry/"]) == {"post"}
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "application/senml+json", "text/csv"}
    assert all(media.get("examples") for media in content.values())
    assert content["text/csv"]["schema"] == {"type": "string"}
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]
    properties = schemas[answer["$ref"].rsplit("/", 1)[-1]]["properties"]
    assert set(properties) == {"stored", "duplicates", "rejected"}
    assert {"400", "401", "415", "429", "503"} <= set(operation["responses"])
    assert operation["security"] == [{"basicAuth": []}]
    assert document["components"]["securitySchemes"]["basicAuth"] == {
        "type": "http",
        "scheme": "basic",
    }


def test_every_operation_with_a_body_documents_415(document):
    with_body = [(path, method) for path, method, op in operations(document) if "requestBody" in op]
    assert len(with_body) >= 12
    missing = [
        (path, method)
        for path, method, operation in operations(document)
        if "requestBody" in operation and "415" not in operation["responses"]
    ]
    assert missing == []


@pytest.mark.parametrize("path", ["/api/v1/provisioning-keys/", "/api/v1/devices/"])
def test_a_body_without_a_content_type_is_a_415(path):
    # What schemathesis sent: a body and an empty Content-Type (DRF finds no parser).
    client = APIClient()
    client.force_authenticate(make_user("alice"))
    response = client.generic("POST", path, b"--x\r\n\xc3\x96--x--\r\n", content_type="")
    assert response.status_code == 415
    assert response.json() == {"detail": 'Unsupported media type "" in request.'}


def test_schema_is_served_without_login_and_names_token_authentication():
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Telemetry hub API"
    assert "tokenAuth" in document["components"]["securitySchemes"]
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")


def test_docs_page_loads_its_scripts_from_this_server_not_the_internet():
    client = APIClient()
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    # Its start-up script is a file of its own (?script), as the Content-Security-Policy wants.
    assert '<script src="/api/docs/?script="></script>' in html
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in script.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assets = [s for s in sources if s.endswith((".js", ".css", ".png"))]
    assert assets and all(s.startswith("/static/") for s in assets), sources
    assert any(s.startswith("/static/drf_spectacular_sidecar/") for s in assets), sources
    assert not re.search(r"https?://(?!127\.0\.0\.1|localhost)", html + script.content.decode())
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        b"".join(response.streaming_content if response.streaming else [response.content])
