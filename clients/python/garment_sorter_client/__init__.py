"""The Python client of the garment-sorter service (docs/client.md).

    from garment_sorter_client import Client

    with Client("http://sorter:8000", api_key="...") as sorter:
        answer = sorter.classify("photo.jpg", item_id="SKU-123-0001")
        print(answer.label, answer.bin, answer.needs_review, answer.decision_id)

Answers are the service's own pydantic models (``contract.api``, from garment-sorter-contract).
"""

from __future__ import annotations

from contract.api import (
    BatchItem,
    BatchItemError,
    BatchResponse,
    ClassifyResponse,
    ClassScore,
    ErrorBody,
    GarmentBox,
    ModelRef,
    Timings,
)
from contract.reasons import Reason
from garment_sorter_client.async_client import AsyncClient
from garment_sorter_client.calls import Photo, __version__
from garment_sorter_client.client import Client
from garment_sorter_client.errors import ApiError, InvalidAnswer, SorterError, TransportError
from garment_sorter_client.retry import NO_RETRY, RetryPolicy

__all__ = [
    "NO_RETRY",
    "ApiError",
    "AsyncClient",
    "BatchItem",
    "BatchItemError",
    "BatchResponse",
    "ClassScore",
    "ClassifyResponse",
    "Client",
    "ErrorBody",
    "GarmentBox",
    "InvalidAnswer",
    "ModelRef",
    "Photo",
    "Reason",
    "RetryPolicy",
    "SorterError",
    "Timings",
    "TransportError",
    "__version__",
]
