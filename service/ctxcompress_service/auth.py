"""Optional API-key auth: ``Authorization: Bearer <key>``, compared in constant time."""

from __future__ import annotations

from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ctxcompress.errors import Forbidden, Unauthorized
from ctxcompress_service.keys import ANONYMOUS, ApiKey

__all__ = ["caller_key", "caller_key_name", "require_api_key"]

_bearer = HTTPBearer(auto_error=False, description="Required when the service has CTXCOMPRESS_API_KEYS set.")


async def require_api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> None:
    """Dependency (it also declares the security scheme in the OpenAPI spec): 401 without a key, 403 with a wrong
    one; a no-op when no keys are configured. ``ApiKeyMiddleware`` has already checked the key before the body was
    read; this repeats the check for routes mounted without the middleware."""
    keyring = request.app.state.keyring
    if not keyring.enabled:
        return
    key = credentials.credentials if credentials is not None else request.headers.get("x-api-key", "")
    if not key:
        raise Unauthorized("API key required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
    quota = keyring.find(key)
    if quota is None:
        raise Forbidden("API key is not valid")
    request.state.api_key = quota.key


def caller_key(request: Request) -> ApiKey | None:
    """The API key of an authenticated caller (recorded by whichever check admitted it: ``ApiKeyMiddleware`` or
    :func:`require_api_key`), or None when the service has no keys."""
    return getattr(request.state, "api_key", None)


def caller_key_name(request: Request) -> str:
    """The caller's key name for metrics and ``/v1/stats`` (``anonymous`` when the service has no keys)."""
    key = caller_key(request)
    return key.name if key is not None else ANONYMOUS
