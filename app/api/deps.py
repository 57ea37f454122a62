"""FastAPI dependencies, as ``Annotated`` aliases so tests can swap them (``dependency_overrides``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app import errors, logs
from app.access import ApiKey, Role
from app.service.service import Service

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Required when the service runs with SORTER_API_KEYS"
)


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread
# pool, a hop that costs more than everything they do.
async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def check_api_key(service: Service, supplied: str | None, role: Role | None = None) -> ApiKey | None:
    """The caller's key (None with API keys off): 401 unless it is one of them, 403 unless its
    role may use a route meant for ``role`` (None: any key may)."""
    keyring = service.keyring
    if not keyring.enabled:
        return None
    key = keyring.find(supplied)
    if key is None:
        raise errors.unauthorized()
    logs.note(caller=key.name)
    if role is not None and not key.may(role):
        raise errors.forbidden(key.role, role)
    return key


async def require_api_key(service: ServiceDep, key: Annotated[str | None, Security(api_key_header)]) -> None:
    check_api_key(service, key)


async def require_api_key_for_metrics(
    service: ServiceDep, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    if service.settings.metrics_require_key:
        check_api_key(service, key)


ApiKeyDep = Depends(require_api_key)
