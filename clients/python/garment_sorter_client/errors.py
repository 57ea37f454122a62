"""What the client raises: an error answer (ApiError), no answer (TransportError), or an answer that is
not the documented one (InvalidAnswer). All are SorterError; each carries the request id to quote."""

from __future__ import annotations


class SorterError(Exception):
    """Base of every error the client raises."""

    def __init__(self, message: str, *, request_id: str | None, attempts: int) -> None:
        super().__init__(message)
        self.request_id = request_id  # the service's X-Request-ID for the last attempt
        self.attempts = attempts  # how many times the request was tried


class ApiError(SorterError):
    """A non-2xx answer: its status, the service's stable ``code`` (docs/api.md#errors) and ``detail``.

    An answer that does not carry the service's error body (a proxy's HTML page) gets the code
    ``unexpected_answer`` and the start of its text as the detail."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        request_id: str | None,
        retry_after_s: float | None = None,
        attempts: int = 1,
    ) -> None:
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{status} {code}: {detail}{suffix}", request_id=request_id, attempts=attempts)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.detail!r}, request_id={self.request_id!r})"


class TransportError(SorterError):
    """No answer: the connection could not be made (after the retries), or it failed or timed out after
    the request was sent (``sent``: the service may then have recorded a decision). The httpx
    exception is the ``__cause__``."""

    def __init__(self, message: str, *, request_id: str | None, sent: bool, attempts: int) -> None:
        super().__init__(message, request_id=request_id, attempts=attempts)
        self.sent = sent


class InvalidAnswer(SorterError):
    """A 2xx answer whose body is not the documented schema (a client older or newer than the service,
    or something else answering at that URL). The pydantic error is the ``__cause__``."""

    def __init__(self, message: str, *, status: int, request_id: str | None, attempts: int) -> None:
        super().__init__(message, request_id=request_id, attempts=attempts)
        self.status = status
