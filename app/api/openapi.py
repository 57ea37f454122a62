"""The OpenAPI document as this configuration enforces it.

/docs and /openapi.json show the key requirement only where it applies: without SORTER_API_KEYS
no operation needs a key (and none answers 401); with keys, /metrics needs one only with
SORTER_METRICS_REQUIRE_KEY.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.config import Settings


class SorterAPI(FastAPI):
    """FastAPI whose generated OpenAPI document drops the key requirement from open operations."""

    open_paths: frozenset[str] | None = frozenset()  # None: every path is open; empty: none is

    def configure_security_docs(self, settings: Settings) -> None:
        if not settings.api_keys:
            self.open_paths = None
        elif not settings.metrics_require_key:
            self.open_paths = frozenset({"/metrics"})
        else:
            self.open_paths = frozenset()

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            for path, operations in schema.get("paths", {}).items():
                if self.open_paths is None or path in self.open_paths:
                    for operation in operations.values():
                        operation.pop("security", None)
                        operation.get("responses", {}).pop("401", None)
                        operation.get("responses", {}).pop("403", None)
            if self.open_paths is None:
                schema.get("components", {}).pop("securitySchemes", None)
            self.openapi_schema = schema
        return self.openapi_schema
