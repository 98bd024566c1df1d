"""The API key scheme in /api/schema/: `Authorization: Bearer hub_…`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


# drf-spectacular leaves OpenApiAuthenticationExtension.__init_subclass__ unannotated.
class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Describe ApiKeyAuthentication as HTTP bearer authentication."""

    target_class = "apikeys.auth.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        """Return the security scheme: a bearer key made on /api-keys/ or POST /api/v1/api-keys/."""
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "hub_<prefix>_<secret>",
            "description": "An API key (POST /api/v1/api-keys/): a read key may only GET.",
        }
