"""The roll-out, by request (admin keys only): load a version, promote it, shadow or canary it,
roll back, unload. Each change takes effect between two batches; /v1/admin/models shows the state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Security
from pydantic import BaseModel, ConfigDict, Field

from app import errors
from app.access import Role
from app.api.deps import ServiceDep, api_key_header, check_api_key
from app.api.schemas import ErrorBody, LoadedVersion
from app.errors import ApiError
from app.rollout.rollout import RolloutError
from app.service.service import Service
from contract.versions import versions


async def admin(service: ServiceDep, supplied: Annotated[str | None, Security(api_key_header)]) -> None:
    check_api_key(service, supplied, Role.ADMIN)


router = APIRouter(prefix="/v1/admin", tags=["roll-out"], dependencies=[Depends(admin)])
Version = Annotated[int, Path(ge=0, le=10**9, description="A version directory under SORTER_MODEL_DIR")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid X-API-Key (code: unauthorized)"},
    403: {"model": ErrorBody, "description": "Not an admin key (code: forbidden)"},
    409: {
        "model": ErrorBody,
        "description": "Not possible now (codes: version_is_live, version_not_loaded, nothing_to_roll_back, "
        "too_many_versions)",
    },
    422: {
        "model": ErrorBody,
        "description": "The version was refused (it did not load, warm or match the contract; the live version "
        "keeps serving), or a bad parameter (codes: model_refused, validation_error)",
    },
    503: {"model": ErrorBody, "description": "Not ready yet (code: not_ready)"},
}
_STATUS = {"model_refused": 422, "validation_error": 422}


class RolloutState(BaseModel):
    loaded: list[LoadedVersion]
    on_disk: list[int] = Field(description="Version directories under SORTER_MODEL_DIR")


class CanaryRequest(BaseModel):
    version: int = Field(ge=0)
    fraction: float = Field(ge=0, le=1, description="Share of requests it answers (by a hash of item_id)")
    model_config = ConfigDict(extra="forbid")


class ShadowRequest(BaseModel):
    version: int = Field(ge=0)
    model_config = ConfigDict(extra="forbid")


def _state(service: Service) -> dict[str, Any]:
    rollout = service.rollout
    if rollout is None:
        raise errors.not_ready()
    return {"loaded": rollout.describe(), "on_disk": versions(service.settings.resolved_model_dir())}


async def _change(service: Service, change: Any) -> dict[str, Any]:
    if service.rollout is None or not service.ready_for_traffic:
        raise errors.not_ready()
    try:
        await change(service.rollout)
    except RolloutError as exc:
        raise ApiError(_STATUS.get(exc.code, 409), exc.code, str(exc)) from None
    return _state(service)


@router.get("/models", response_model=RolloutState, summary="Loaded versions and their roles", responses=_ERRORS)
async def models(service: ServiceDep) -> dict[str, Any]:
    return _state(service)


@router.post(
    "/models/{version}/load", response_model=RolloutState, summary="Load and warm, no role yet", responses=_ERRORS
)
async def load(service: ServiceDep, version: Version) -> dict[str, Any]:
    return await _change(service, lambda rollout: rollout.load(version))


@router.post(
    "/models/{version}/promote",
    response_model=RolloutState,
    summary="Make it live (loaded first if needed); the live one becomes previous",
    responses=_ERRORS,
)
async def promote(service: ServiceDep, version: Version) -> dict[str, Any]:
    return await _change(service, lambda rollout: rollout.promote(version))


@router.post(
    "/models/{version}/unload",
    response_model=RolloutState,
    summary="Unload a version that is not live",
    responses=_ERRORS,
)
async def unload(service: ServiceDep, version: Version) -> dict[str, Any]:
    return await _change(service, lambda rollout: rollout.unload(version))


@router.post(
    "/rollback", response_model=RolloutState, summary="The previous version live again, at once", responses=_ERRORS
)
async def rollback(service: ServiceDep) -> dict[str, Any]:
    return await _change(service, lambda rollout: rollout.rollback())


@router.put("/shadow", response_model=RolloutState, summary="Run a candidate in shadow", responses=_ERRORS)
async def set_shadow(service: ServiceDep, body: ShadowRequest) -> dict[str, Any]:
    return await _change(service, lambda rollout: rollout.set_shadow(body.version))


@router.delete("/shadow", response_model=RolloutState, summary="Stop the shadow", responses=_ERRORS)
async def clear_shadow(service: ServiceDep) -> dict[str, Any]:
    return await _change(service, lambda rollout: rollout.set_shadow(None))


@router.put(
    "/canary", response_model=RolloutState, summary="Let a candidate answer a share of requests", responses=_ERRORS
)
async def set_canary(service: ServiceDep, body: CanaryRequest) -> dict[str, Any]:
    return await _change(service, lambda rollout: rollout.set_canary(body.version, body.fraction))


@router.delete("/canary", response_model=RolloutState, summary="Stop the canary", responses=_ERRORS)
async def clear_canary(service: ServiceDep) -> dict[str, Any]:
    return await _change(service, lambda rollout: rollout.set_canary(None))
