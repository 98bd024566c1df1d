"""Fixtures for the device endpoint and command tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractUser
from rest_framework.test import APIClient

from tests.factories import make_user
from tests.telemetry.conftest_api import api_client


@pytest.fixture
def alice() -> AbstractUser:
    return make_user("alice")


@pytest.fixture
def bob() -> AbstractUser:
    return make_user("bob")


@pytest.fixture
def api(alice: AbstractUser) -> APIClient:
    return api_client(alice)
