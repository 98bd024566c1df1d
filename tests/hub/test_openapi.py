"""The OpenAPI document: valid, complete (typed, described, with examples) and served offline."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

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
        "/api/v1/commands/{command_id}/",
        "/api/v1/latest/",
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
        if path != "/api/v1/auth/token/":
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
    assert "/api/schema/" in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assets = [s for s in sources if s.endswith((".js", ".css", ".png"))]
    assert assets and all(s.startswith("/static/drf_spectacular_sidecar/") for s in assets), sources
    assert not re.search(r"https?://(?!127\.0\.0\.1|localhost)", html)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        b"".join(response.streaming_content if response.streaming else [response.content])
