"""Load limits for the HTTP API: a bounded admission queue ("busy, try again") and per-key rate limits.

    admission = Admission(concurrency=2, max_queue=64)
    async with admission.slot():          # ServiceBusy (-> 429 + Retry-After) when the queue is full
        ...compute an answer...

    limiter = RateLimiter(per_minute=60)
    limiter.check(key)                    # RateLimited (-> 429 + Retry-After) when the key is over its budget

Both are asyncio-side objects: a request waiting for its turn holds no worker thread, so a full queue
costs memory for the waiting connections only, and the request beyond it is refused at once instead of
piling up (the answer would come too late to be useful anyway). Neither keeps a caller's key: the rate
limiter is keyed by whatever the API passes (a hash of the key, or the client address).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from rag.errors import RagError, ServiceBusy


class RateLimited(RagError):
    """A key sent more requests per minute than RAG_API_RATE_LIMIT allows."""

    vi = "Bạn đã gửi quá nhiều yêu cầu; vui lòng thử lại sau ít giây."
    en = "Too many requests for this key; please try again in a few seconds."

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests for this key; please try again in {retry_after} s.",
            f"Bạn đã gửi quá nhiều yêu cầu; vui lòng thử lại sau {retry_after} giây.",
        )
        self.retry_after = retry_after


class Busy(ServiceBusy):
    """ServiceBusy with the number of seconds after which a retry is likely to be admitted."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"The assistant is busy; please try again in {retry_after} s.",
            f"Hệ thống đang bận; vui lòng thử lại sau {retry_after} giây.",
        )
        self.retry_after = retry_after


class Admission:
    """At most `concurrency` requests computing and `max_queue` more waiting; the next one is refused.

    Retry-After is estimated from how long recent requests held a slot (an exponential average), so a
    client told to come back does so about when a slot is likely to be free — never less than a second.
    """

    def __init__(self, concurrency: int, max_queue: int) -> None:
        self.concurrency = max(1, concurrency)
        self.max_queue = max(0, max_queue)
        self._semaphore: asyncio.Semaphore | None = None  # made lazily, inside the server's event loop
        self._admitted = 0  # computing + waiting
        self._avg_s = 1.0
        self.refused = 0  # counted for tests and /health-style introspection

    @property
    def in_flight(self) -> int:
        """Requests admitted and not finished (computing or waiting for a slot)."""
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, drained `concurrency` at a time."""
        rounds = (self._admitted - self.concurrency) / self.concurrency + 1
        return max(1, math.ceil(rounds * self._avg_s))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one computing slot for the body of the `async with`; Busy at once when the queue is full."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        # Checked and incremented with no await in between: the event loop is single-threaded, so two
        # requests cannot both take the last place in the queue.
        if self._admitted >= self.concurrency + self.max_queue:
            self.refused += 1
            raise Busy(self.retry_after())
        self._admitted += 1
        try:
            async with self._semaphore:
                started = time.monotonic()
                try:
                    yield
                finally:
                    held = time.monotonic() - started
                    self._avg_s = 0.8 * self._avg_s + 0.2 * held
        finally:
            self._admitted -= 1


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute on average, bursts up to `per_minute`.

    `per_minute` 0 turns it off. Buckets idle long enough to be full again are dropped, so the table
    cannot grow without bound when many clients (or many spoofed keys) call.
    """

    def __init__(self, per_minute: int, *, clock=time.monotonic, max_keys: int = 10_000) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Spend one request of `key`'s budget, or raise RateLimited with the seconds until one is back."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_keys:
                    self._prune(now)
                bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
            else:
                bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.updated) * self._rate)
                bucket.updated = now
            if bucket.tokens < 1.0:
                raise RateLimited(max(1, math.ceil((1.0 - bucket.tokens) / self._rate)))
            bucket.tokens -= 1.0

    def _prune(self, now: float) -> None:
        full_after = 60.0  # an idle bucket refills completely within a minute
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:  # everyone is active: forget the longest-idle half
            for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].updated)[: self._max_keys // 2]:
                del self._buckets[key]
