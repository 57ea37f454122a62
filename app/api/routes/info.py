"""GET /v1/model and GET /v1/policy: what is served and how items are sorted."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import ApiKeyDep, ServiceDep
from app.api.schemas import ErrorBody, IsoDate, ModelInfo, PolicyInfo

router = APIRouter(prefix="/v1", tags=["info"], dependencies=[ApiKeyDep])
_NOT_LOADED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid X-API-Key (code: unauthorized)"},
    503: {"model": ErrorBody, "description": "The model is not loaded yet (code: not_ready)"},
}


@router.get("/model", response_model=ModelInfo, summary="The served model", responses=_NOT_LOADED)
async def model_info(service: ServiceDep) -> dict[str, Any]:
    model, policy = service.loaded_model, service.loaded_policy
    return {
        **model.describe(),
        "review_threshold": policy.review_threshold,
        "review_threshold_source": policy.review_threshold_source,
        "max_batch_size": service.settings.max_batch_size,
        "loaded": [] if service.rollout is None else service.rollout.describe(),
    }


_BAD_DATE: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "as_of is not an ISO date (code: validation_error)"}
}


@router.get(
    "/policy", response_model=PolicyInfo, summary="The active sorting policy", responses={**_NOT_LOADED, **_BAD_DATE}
)
async def policy_info(
    service: ServiceDep,
    as_of: Annotated[IsoDate | None, Query(description="Date for current_season; default today")] = None,
) -> dict[str, Any]:
    return service.loaded_policy.describe(as_of or dt.date.today())
