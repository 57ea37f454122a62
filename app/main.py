"""The FastAPI application: routers, error handlers, middleware and the service's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.api.handlers import install_error_handlers
from app.api.middleware import ServiceMiddleware
from app.api.openapi import SorterAPI
from app.api.routes import admin, classify, docs, health, info, metrics, reviews
from app.config import Settings, load_settings
from app.inference.model import Model
from app.service.service import Service
from app.station import routes as station
from app.tracing import SpanRecorder, Tracing

DESCRIPTION = """Photograph an incoming clothing item, POST it here, put it where the answer says.

Each answer names the garment (the ten Fashion-MNIST classes), its season, its storage bin and
zone, and whether it needs manual review. Concurrent requests are batched onto one model call.
Errors are always `{"detail": "...", "code": "...", "request_id": "..."}` with a stable `code`."""


def create_app(settings: Settings | None = None, model: Model | None = None) -> FastAPI:
    """Build the app; the model loads (or `model` is used) when the lifespan starts."""
    settings = settings or load_settings()
    tracing = Tracing.from_environment()  # None unless an OTLP endpoint is set (app.tracing)
    service = Service(settings, model=model, spans=SpanRecorder(tracing.tracer if tracing else None))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()
            if tracing is not None:
                await tracing.shutdown()

    app = SorterAPI(
        title="garment-sorter",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs is served offline by app.api.routes.docs
        redoc_url=None,
    )
    app.state.service = service
    for router in (classify.router, health.router, info.router, metrics.router, reviews.router, admin.router):
        app.include_router(router)
    app.include_router(station.router)
    app.mount("/review/static", StaticFiles(directory=station.STATIC_DIR), name="station-static")
    docs.install(app)
    app.configure_security_docs(settings)
    install_error_handlers(app, service)
    body_limits = {"/classify": settings.max_body_bytes, "/classify/batch": settings.max_batch_body_bytes}
    app.add_middleware(ServiceMiddleware, service=service, body_limits=body_limits)
    app.state.tracing = tracing
    if tracing is not None:
        tracing.instrument(app)
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` works, yet importing this module builds nothing.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
