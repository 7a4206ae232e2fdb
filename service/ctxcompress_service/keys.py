"""API keys with names and quotas, from the settings and an optional keys file that can be rotated live.

A key may carry a request rate, a token rate and a share of the admission queue. Over its quota a key gets 429
with ``Retry-After``; other keys are unaffected. Rates are token buckets refilled continuously (capacity = one
minute's quota). The token rate is charged after a request with the origin tokens it compressed (the count is
known only then), so a key may overdraw once and then waits until its bucket refills. The queue share bounds the
key's requests in flight to ``share × CTXCOMPRESS_MAX_CONCURRENT_REQUESTS``.

Keys file (``CTXCOMPRESS_API_KEYS_FILE``), JSON, re-read when it changes (checked at most once a second)::

    [{"name": "team-a", "key": "sk-...", "requests_per_minute": 600, "tokens_per_minute": 2000000,
      "queue_share": 0.5}]

Plain ``CTXCOMPRESS_API_KEYS`` entries are keys without quotas, named ``key-1``, ``key-2``, ...
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter

__all__ = ["ANONYMOUS", "ApiKey", "KeyRing", "Quota"]

ANONYMOUS = "anonymous"
"""The key name of every request when the service has no API keys (metrics, ``/v1/stats``)."""

logger = logging.getLogger("ctxcompress.service")


class ApiKey(BaseModel):
    """One key: its name (metrics, logs), the secret, and its optional quotas."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")
    key: SecretStr
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    queue_share: float | None = Field(default=None, gt=0, le=1)
    sees_all_stats: bool = False
    """``GET /v1/stats`` shows every key's savings to this key (an operator's); other keys see their own."""


@dataclass
class _Bucket:
    """A token bucket: ``capacity`` units, refilled at ``capacity`` per minute; may go negative (overdraw)."""

    capacity: float
    level: float
    stamp: float = field(default_factory=time.monotonic)

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.capacity / 60.0)
        self.stamp = now

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` units are available (0 when they are)."""
        self.refill()
        return 0.0 if self.level >= amount else (amount - self.level) * 60.0 / self.capacity


@dataclass
class Quota:
    """The live state of one key's quotas."""

    key: ApiKey
    requests: _Bucket | None = None
    tokens: _Bucket | None = None
    in_flight: int = 0


class KeyRing:
    """The accepted keys and their quota state; thread-safe (the event loop and test threads use it)."""

    def __init__(self, plain_keys: list[str], keys_file: Path | None, max_concurrent_requests: int) -> None:
        self._plain = [ApiKey(name=f"key-{i}", key=SecretStr(k)) for i, k in enumerate(plain_keys, 1)]
        self._file = keys_file
        self._file_mtime: float | None = None
        self._checked = 0.0
        self._max_concurrent = max_concurrent_requests
        self._quotas: dict[str, Quota] = {}
        self._lock = threading.Lock()
        self._load(force=True)

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else the service is open)."""
        self._load()
        return bool(self._quotas)

    def _load(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (self._file is None or now - self._checked < 1.0):
            return
        self._checked = now
        keys = list(self._plain)
        if self._file is not None:
            try:
                mtime = os.stat(self._file).st_mtime
                if not force and mtime == self._file_mtime:
                    return
                loaded = TypeAdapter(list[ApiKey]).validate_python(json.loads(self._file.read_text("utf-8")))
                keys += loaded
                self._file_mtime = mtime
            except (OSError, ValueError) as exc:  # a bad rewrite keeps the keys that were working
                logger.error("API keys file not loaded; keeping the previous keys", extra={"error": str(exc)[:200]})
                if not force:
                    return
        with self._lock:
            previous = self._quotas
            self._quotas = {}
            for key in keys:
                old = previous.get(key.name)
                quota = Quota(key, in_flight=old.in_flight if old and old.key == key else 0)
                if key.requests_per_minute:
                    quota.requests = _Bucket(key.requests_per_minute, key.requests_per_minute)
                if key.tokens_per_minute:
                    quota.tokens = _Bucket(key.tokens_per_minute, key.tokens_per_minute)
                if old and old.key == key:  # unchanged key: its buckets carry on
                    quota.requests, quota.tokens = old.requests, old.tokens
                self._quotas[key.name] = quota

    def find(self, presented: str) -> Quota | None:
        """The key's quota state, or None. Every key is compared (constant time in the matching one's position)."""
        self._load()
        found = None
        with self._lock:
            for quota in self._quotas.values():
                if hmac.compare_digest(presented.encode(), quota.key.key.get_secret_value().encode()):
                    found = quota
        return found

    def admit(self, quota: Quota) -> float:
        """Take one request from ``quota``: 0.0 when admitted (the caller must :meth:`release`), else the seconds
        to wait (over a rate, or the key's share of the queue is full)."""
        with self._lock:
            waits = [0.0]
            if quota.requests is not None:
                waits.append(quota.requests.wait_s(1.0))
            if quota.tokens is not None:
                waits.append(quota.tokens.wait_s(1e-6))  # a positive balance (an overdraft waits for refill)
            share = quota.key.queue_share
            if share is not None and quota.in_flight >= max(1, math.floor(share * self._max_concurrent)):
                waits.append(1.0)
            wait = max(waits)
            if wait > 0:
                return wait
            if quota.requests is not None:
                quota.requests.level -= 1.0
            quota.in_flight += 1
            return 0.0

    def release(self, quota: Quota, origin_tokens: int) -> None:
        """End a request of ``quota``; charge its tokens to the token rate."""
        with self._lock:
            quota.in_flight = max(0, quota.in_flight - 1)
            if quota.tokens is not None and origin_tokens:
                quota.tokens.refill()
                quota.tokens.level -= origin_tokens
