"""FastAPI dependencies, as ``Annotated`` aliases so tests can swap them (``dependency_overrides``)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app import errors
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


def check_api_key(service: Service, key: str | None) -> None:
    """401 unless API keys are off or key is one of them."""
    keys = service.settings.api_keys
    if not keys:
        return
    supplied = (key or "").encode()
    # Compare against every key, in constant time, so timing reveals neither key nor position.
    valid = False
    for candidate in keys:
        valid |= hmac.compare_digest(supplied, candidate.encode())
    if not valid:
        raise errors.unauthorized()


async def require_api_key(service: ServiceDep, key: Annotated[str | None, Security(api_key_header)]) -> None:
    check_api_key(service, key)


async def require_api_key_for_metrics(
    service: ServiceDep, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    if service.settings.metrics_require_key:
        check_api_key(service, key)


ApiKeyDep = Depends(require_api_key)
