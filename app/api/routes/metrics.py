"""GET /metrics: Prometheus text format (keyed only with SORTER_METRICS_REQUIRE_KEY=true)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from app.api.deps import ServiceDep, require_api_key_for_metrics
from app.api.schemas import ErrorBody

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(require_api_key_for_metrics)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"},
        401: {"model": ErrorBody, "description": "With SORTER_METRICS_REQUIRE_KEY: missing or invalid X-API-Key"},
    },
)
async def metrics(service: ServiceDep) -> Response:
    body, content_type = service.metrics.render()
    return Response(body, media_type=content_type)
