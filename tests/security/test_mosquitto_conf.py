"""The managed Mosquitto's configuration keeps every setting of the hub's base configuration."""

from __future__ import annotations

import re

from tests.security.mqtt import DYNSEC_CONF
from tests.support import HUB_MOSQUITTO_CONF


def settings_of(text: str) -> dict[str, str]:
    pairs = (re.match(r"^(\w+)\s+(.*)$", line) for line in text.splitlines())
    return {match.group(1): match.group(2).strip() for match in pairs if match}


def test_dynamic_security_conf_is_mosquitto_conf_with_the_plugin_and_no_anonymous_clients():
    base = settings_of(HUB_MOSQUITTO_CONF.read_text())
    managed = settings_of(DYNSEC_CONF.read_text())
    assert base.pop("allow_anonymous") == "true"
    assert managed.pop("allow_anonymous") == "false"
    assert managed.pop("plugin").endswith("mosquitto_dynamic_security.so")
    assert managed.pop("plugin_opt_config_file") == "/mosquitto/data/dynamic-security.json"
    assert managed.pop("per_listener_settings") == "false"
    assert managed.pop("check_retain_source") == "true"
    assert managed == base
