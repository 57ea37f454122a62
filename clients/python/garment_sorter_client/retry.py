"""Which failures the client tries again, and how long it waits first.

Only two failures are retried, because only for them is a second try known to be harmless:

- **503 Service Unavailable.** Every 503 the service gives on POST /classify and /classify/batch
  (``not_ready``, ``draining``, ``queue_full``, ``shutting_down``, ``not_recorded``) is answered
  before the decision is put on record, or in place of recording it: nothing was recorded, so
  sending the photo again cannot record a second decision for the item. A load balancer's own 503
  (no replica ready) means no replica got the request. One caveat: a proxy that answers 503 after
  passing the request on (Envoy does when the upstream connection resets before the answer) may
  hide a decision that was recorded. The wait is the answer's ``Retry-After`` (seconds, or an HTTP
  date) plus a little jitter, never less; without the header, exponential back-off with full
  jitter.
- **A connection that was never made** (connect error or timeout, no pooled connection free in
  time): the request never left this process.

Everything else is final. Another 4xx says the request itself is wrong and would be refused again.
A 500, 502 or 504, a read timeout, or a connection that broke after the request was written may
come after the service recorded a decision (a proxy's 504 while the service answered 200 behind
it): a retry could record the item twice, so the caller decides.

The attempts are bounded in number (``max_attempts``) and in time (``max_total_s``): a retry whose
wait would end past the budget is not started, and the last answer or error is raised at once.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

RETRIED_STATUS = 503
# Raised by httpx before any byte of the request was written.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a call is tried again (see the module's docstring for which failures).

    The n-th retry (n = 0, 1, ...) waits a random time in [0, min(max_backoff_s, backoff_s * 2**n)]
    (full jitter), or the answer's Retry-After plus a random time in [0, backoff_s]."""

    max_attempts: int = 4  # the first try included; 1 turns retries off
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    max_total_s: float = 30.0  # no retry is started whose wait would end later than this after the first try

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        for name in ("backoff_s", "max_backoff_s", "max_total_s"):
            value = getattr(self, name)
            if not value >= 0:  # also refuses NaN
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")

    def delay_s(self, retry: int, retry_after_s: float | None, draw: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``retry`` (0 for the first retry); ``draw`` returns [0, 1)."""
        if retry_after_s is not None:
            return retry_after_s + draw() * self.backoff_s
        return draw() * min(self.max_backoff_s, self.backoff_s * 2.0**retry)


NO_RETRY = RetryPolicy(max_attempts=1)


def retry_after_s(value: str | None, now: dt.datetime | None = None) -> float | None:
    """The seconds a Retry-After header asks for (delay-seconds or an HTTP date); None when absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


class Attempts:
    """The attempts of one call: count them, and say whether and after how long to try again."""

    def __init__(
        self,
        policy: RetryPolicy,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.count = 0
        self._clock = clock
        self._draw = draw
        self._started = clock()

    def start(self) -> None:
        self.count += 1

    def after_answer(self, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again after this answer, or None: the answer is final."""
        if response.status_code != RETRIED_STATUS:
            return None
        return self._next(retry_after_s(response.headers.get("retry-after")))

    def after_failure(self, error: httpx.TransportError) -> float | None:
        """Seconds to wait before trying again after this transport error, or None: raise it."""
        if not isinstance(error, NOT_SENT):
            return None
        return self._next(None)

    def _next(self, retry_after: float | None) -> float | None:
        if self.count >= self.policy.max_attempts:
            return None
        delay = self.policy.delay_s(self.count - 1, retry_after, self._draw)
        if self._clock() - self._started + delay > self.policy.max_total_s:
            return None
        return delay
