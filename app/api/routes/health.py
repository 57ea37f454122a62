"""Liveness and readiness (both open even when API keys are set: probes carry no keys)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app import errors
from app.api.deps import ServiceDep
from app.api.schemas import ErrorBody, Health, Ready
from app.service.lifecycle import Phase

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Ready for traffic",
    description="200 only when the model is loaded, warmed at every padded batch size and the batcher "
    "runs; 503 before that, after a failed warm-up and while draining.",
    responses={503: {"model": ErrorBody, "description": "codes: not_ready, draining, warmup_failed"}},
)
async def readyz(service: ServiceDep) -> JSONResponse:
    lifecycle = service.lifecycle
    if lifecycle.shutting_down:
        error = errors.draining()
    elif lifecycle.phase is Phase.WARMUP_FAILED:
        error = errors.ApiError(503, "warmup_failed", f"Warm-up failed: {lifecycle.warmup_error}")
    elif not service.ready_for_traffic:
        error = errors.not_ready()
    else:
        return JSONResponse({"status": "ready", "model": service.model_ref})
    return JSONResponse(error.answer_body(), status_code=error.status, headers=error.headers)
