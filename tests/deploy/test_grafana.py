"""Grafana on the series API: the requests the provisioned dashboard and docs/grafana.md make,
answered in the documented shape to a read-only key; the provisioning and compose agree."""

from __future__ import annotations

import json
import re
from datetime import datetime
from urllib.parse import urlencode

import pytest
import yaml

from tests.apikeys.conftest import bearer, make_key
from tests.factories import make_device, make_user
from tests.support import ROOT
from tests.telemetry.conftest_api import store

pytestmark = pytest.mark.django_db

DOC = ROOT / "docs" / "grafana.md"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "hub-device.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "hub.yaml"
COMPOSE = ROOT / "compose.yaml"
PLUGIN = "yesoreyeram-infinity-datasource"
# The doc's example: 6 hours ending here, on a 500-point panel.
DOC_END = 1_764_139_200_000
SIX_HOURS = 6 * 3_600_000


def targets() -> list[dict]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    found = [target for panel in panels for target in panel["targets"]]
    assert found
    return found


def datasource() -> dict:
    (source,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    return source


def grafana_url(target: dict, variables: dict[str, str]) -> str:
    """Return the path and query Infinity requests, Grafana's variables replaced."""

    def replace(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda match: variables[match.group(1)], text)

    params = [(p["key"], replace(p["value"])) for p in target["url_options"]["params"]]
    return replace(target["url"]) + "?" + urlencode(params)


@pytest.fixture
def fleet():
    owner = make_user()
    make_device(owner, "sim-0001")
    make_device(owner, "other-1")
    # A reading every 10 s over the doc's six hours: temperature and humidity.
    start = DOC_END - SIX_HOURS
    store(
        [
            ("sim-0001", "temperature", ts, 20 + (ts // 10_000) % 7)
            for ts in range(start, DOC_END, 10_000)
        ]
        + [("sim-0001", "humidity", ts, 40.5) for ts in range(start, DOC_END, 60_000)]
    )
    return owner


def check_shape(body: dict, target: dict, start: int, end: int) -> None:
    rows = body[target["root_selector"]]
    assert rows, body
    for row in rows:
        for column in target["columns"]:
            value = row[column["selector"]]
            if column["type"] == "timestamp":
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
                assert moment.tzinfo is not None and value.endswith("Z")
                assert start - 31 * 86_400_000 <= moment.timestamp() * 1000 < end
            else:
                assert column["type"] == "number"
                assert value is None or isinstance(value, int | float), (column, value)


@pytest.mark.parametrize(
    "interval_ms",
    # What Grafana's ${__interval_ms} can be: tiny, odd, a week, a year.
    ["1", "200", "43200", "20000", "604800000", "31536000000"],
)
def test_each_dashboard_request_is_answered_in_the_documented_shape(fleet, interval_ms):
    _, key = make_key(fleet, scope="read")
    client = bearer(key)
    start = DOC_END - SIX_HOURS
    variables = {
        "device": "sim-0001",
        "__from": str(start),
        "__to": str(DOC_END),
        "__interval_ms": interval_ms,
    }
    for target in targets():
        assert target["datasource"]["uid"] == datasource()["uid"]
        assert (target["type"], target["source"], target["parser"]) == ("json", "url", "backend")
        response = client.get(grafana_url(target, variables))
        assert response.status_code == 200, (target["refId"], response.content[:300])
        body = response.json()
        check_shape(body, target, start, DOC_END)
        assert int(interval_ms) <= _width_ms(body["interval"]) or body["interval"] == "1mo"


def test_the_docs_example_request_is_what_grafana_sends_and_gets_one_minute_buckets(fleet):
    text = DOC.read_text()
    (request,) = re.findall(r"^GET (/api/v1/\S+)$", text, re.MULTILINE)
    target = targets()[0]
    variables = {
        "device": "sim-0001",
        "__from": str(DOC_END - SIX_HOURS),
        "__to": str(DOC_END),
        "__interval_ms": str(SIX_HOURS // 500),
    }
    assert request == grafana_url(target, variables)
    _, key = make_key(fleet, scope="read")
    response = bearer(key).get(request)
    assert response.status_code == 200
    body = response.json()
    assert body["interval"] == "1m" and len(body["points"]) == 360
    assert set(body) == {"metric", "interval", "unit", "points"}
    assert set(body["points"][0]) == {"ts", "count", "avg", "min", "max", "first", "last"}


def test_the_doc_shows_the_dashboards_query_and_the_data_sources_settings():
    text = DOC.read_text()
    for target in targets():
        assert f"`{target['url']}`" in text
        for param in target["url_options"]["params"]:
            if param["key"] == "metric":
                continue
            assert f"`{param['key']}={param['value']}`" in text, param
        assert f"`{target['root_selector']}`" in text
    source = datasource()
    assert f"`{source['url']}`" in text and f"`{source['type']}`" in text
    version = re.search(rf"{PLUGIN} (\d+\.\d+\.\d+)", COMPOSE.read_text()).group(1)
    assert f"Infinity {version}" in text


def test_the_data_source_sends_the_read_key_from_the_environment_only_to_the_hub():
    source = datasource()
    assert source["type"] == PLUGIN
    assert source["jsonData"]["auth_method"] == "bearerToken"
    assert source["secureJsonData"]["bearerToken"] == "$GRAFANA_API_KEY"
    assert source["jsonData"]["allowedHosts"] == [source["url"]]


def test_compose_starts_grafana_pinned_with_the_provisioning_mounted():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    grafana = services["grafana"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"])
    assert re.fullmatch(rf"{PLUGIN} \d+\.\d+\.\d+", grafana["environment"]["GF_INSTALL_PLUGINS"])
    assert grafana["environment"]["GRAFANA_API_KEY"] == "${GRAFANA_API_KEY:-}"
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "hub.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana["volumes"]
    # The data source's host name is the proxy service, allowed by the hub by default.
    assert datasource()["url"] == "http://proxy" and "proxy" in services
    assert "proxy" in services["web-1"]["environment"]["ALLOWED_HOSTS"]


def test_a_key_limited_to_devices_gets_404_for_other_devices_series(fleet):
    from devices.models import Device

    _, key = make_key(fleet, scope="read", devices=[Device.objects.get(uid="sim-0001")])
    variables = {
        "device": "other-1",
        "__from": str(DOC_END - SIX_HOURS),
        "__to": str(DOC_END),
        "__interval_ms": "20000",
    }
    assert bearer(key).get(grafana_url(targets()[0], variables)).status_code == 404


def _width_ms(interval: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(s|m|h|d|w|mo)", interval).groups()
    return int(number) * {
        "s": 1000,
        "m": 60_000,
        "h": 3_600_000,
        "d": 86_400_000,
        "w": 604_800_000,
    }.get(unit, 31 * 86_400_000)
