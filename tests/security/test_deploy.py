"""`hub check --deploy` is clean in production; HTTPS settings come from the environment."""

from __future__ import annotations

import secrets

from tests.hub.test_settings import run_hub

PRODUCTION = {
    "DATABASE_URL": "postgres://hub@db.example:5432/hub",
    "REDIS_URL": "redis://:secret@redis.example:6379/0",
    "MQTT_URL": "mqtt://hub-bridge:secret@broker.example:1883",
    "MQTT_ADMIN_URL": "mqtt://hub-admin:secret@broker.example:1883",
    "ALLOWED_HOSTS": "hub.example",
    "CSRF_TRUSTED_ORIGINS": "https://hub.example",
    "HUB_HTTPS": "true",
    "HUB_PROXY_SSL_HEADER": "X-Forwarded-Proto",
}


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    done = run_hub(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        HUB_VAR_DIR=str(tmp_path),
        SECRET_KEY=secrets.token_urlsafe(50),
        **PRODUCTION,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_without_https_check_deploy_names_what_is_missing(tmp_path):
    env = {key: value for key, value in PRODUCTION.items() if key != "HUB_HTTPS"}
    done = run_hub(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        HUB_VAR_DIR=str(tmp_path),
        SECRET_KEY=secrets.token_urlsafe(50),
        **env,
    )
    assert done.returncode != 0
    for check in ("W004", "W008", "W012", "W016"):
        assert f"security.{check}" in done.stderr


def test_https_settings_follow_the_environment(tmp_path):
    script = (
        "from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER, "
        "s.SECURE_SSL_REDIRECT, s.SECURE_REDIRECT_EXEMPT, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)"
    )
    done = run_hub(
        "shell",
        "-c",
        script,
        HUB_VAR_DIR=str(tmp_path),
        SECRET_KEY=secrets.token_urlsafe(50),
        HUB_HSTS_SECONDS="3600",
        **PRODUCTION,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "('HTTP_X_FORWARDED_PROTO', 'https') True ['^healthz$', '^metrics$'] True True 3600 True"
    )


def test_a_managed_broker_needs_the_bridges_account(tmp_path):
    done = run_hub(
        "check",
        HUB_VAR_DIR=str(tmp_path),
        SECRET_KEY=secrets.token_urlsafe(50),
        MQTT_URL="mqtt://broker.example:1883",
        MQTT_ADMIN_URL="mqtt://hub-admin:secret@broker.example:1883",
    )
    assert done.returncode == 2
    assert done.stderr.startswith("hub: configuration error: MQTT_URL:")
