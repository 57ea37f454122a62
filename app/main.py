"""The FastAPI application: routers, error handlers, middleware and the service's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.config import Settings, load_settings
from app.handlers import install_error_handlers
from app.middleware import ServiceMiddleware
from app.model import Model
from app.routes import classify, docs, health, info, metrics
from app.service import Service

DESCRIPTION = """Photograph an incoming clothing item, POST it here, put it where the answer says.

Each answer names the garment (the ten Fashion-MNIST classes), its season, its storage bin and
zone, and whether it needs manual review. Concurrent requests are batched onto one model call.
Errors are always `{"detail": "...", "code": "..."}` with a stable `code`."""


def create_app(settings: Settings | None = None, model: Model | None = None) -> FastAPI:
    """Build the app; the model loads (or `model` is used) when the lifespan starts."""
    settings = settings or load_settings()
    service = Service(settings, model=model)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="garment-sorter",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # /docs is served offline by app.routes.docs
    )
    app.state.service = service
    for router in (classify.router, health.router, info.router, metrics.router):
        app.include_router(router)
    docs.install(app)
    _document_open_routes(app, settings)
    install_error_handlers(app, service)
    body_limits = {"/classify": settings.max_body_bytes, "/classify/batch": settings.max_batch_body_bytes}
    app.add_middleware(ServiceMiddleware, service=service, body_limits=body_limits)
    return app


def _document_open_routes(app: FastAPI, settings: Settings) -> None:
    """/docs and /openapi.json show the key requirement only where this configuration enforces it:
    without SORTER_API_KEYS no operation needs a key (and none answers 401); with keys, /metrics
    needs one only with SORTER_METRICS_REQUIRE_KEY."""
    if settings.api_keys and settings.metrics_require_key:
        return
    open_paths = None if not settings.api_keys else {"/metrics"}  # None: every path
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for path, operations in schema.get("paths", {}).items():
                if open_paths is None or path in open_paths:
                    for operation in operations.values():
                        operation.pop("security", None)
                        operation.get("responses", {}).pop("401", None)
            if open_paths is None:
                schema.get("components", {}).pop("securitySchemes", None)
        return app.openapi_schema

    app.openapi = openapi


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` works, yet importing this module builds nothing.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
