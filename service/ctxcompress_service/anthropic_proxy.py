"""Anthropic Messages-compatible compressing proxy: ``POST /v1/messages`` → ``CTXCOMPRESS_ANTHROPIC_UPSTREAM_URL``.

Same context rules as the OpenAI proxy (``proxy.py``): the last user turn is split into documents + question and
compressed; the ``system`` prompt and earlier turns are forwarded as sent, so a provider's prompt cache over them
still hits. A user turn's content is compressed when it is a string or a single text block (the block keeps its
other keys, e.g. ``cache_control``); other content passes untouched. Streaming (SSE) passes through event by event.
The service's own errors on this route have the Anthropic shape (``{"type": "error", "error": {"type", "message"}}``)
so the Anthropic SDKs raise their usual exceptions.

Keys: the operator's ``CTXCOMPRESS_ANTHROPIC_UPSTREAM_API_KEY`` is sent upstream as ``x-api-key``; without it, and
without service keys, the caller's own ``x-api-key`` passes through (transparent proxy). ``anthropic-version`` and
``anthropic-beta`` headers are forwarded.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from ctxcompress_service.protocol import ChatMessage
from ctxcompress_service.proxy import CompressingProxy

__all__ = ["ANTHROPIC_ERROR_TYPES", "ANTHROPIC_PATH", "AnthropicProxy", "anthropic_error"]

ANTHROPIC_PATH = "/v1/messages"

# The service's statuses as the Anthropic API names its error types.
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "invalid_request_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}
_FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """An error body in the Anthropic API's shape."""
    return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}


class AnthropicProxy(CompressingProxy):
    """``POST /v1/messages`` to an Anthropic Messages-compatible upstream."""

    upstream_path = ANTHROPIC_PATH
    setting_name = "CTXCOMPRESS_ANTHROPIC_UPSTREAM_URL (e.g. https://api.anthropic.com)"

    @property
    def upstream_url(self) -> str | None:
        return self.settings.anthropic_upstream_url

    def upstream_headers(self, request: Request) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        headers |= {name: request.headers[name] for name in _FORWARDED_HEADERS if name in request.headers}
        if self.settings.anthropic_upstream_api_key is not None:
            headers["x-api-key"] = self.settings.anthropic_upstream_api_key.get_secret_value()
        elif not self.keys_enabled and "x-api-key" in request.headers:
            headers["x-api-key"] = request.headers["x-api-key"]  # transparent proxy: the caller's key
        return headers

    def message_text(self, content: Any) -> str | None:
        if isinstance(content, str):
            return content
        if isinstance(content, list) and len(content) == 1 and content[0].get("type") == "text":
            return str(content[0].get("text", ""))
        return None

    def with_text(self, message: ChatMessage, text: str) -> ChatMessage:
        content: Any = text if isinstance(message.content, str) else [{**message.content[0], "text": text}]  # type: ignore[index]
        return ChatMessage.model_validate({**message.model_dump(exclude_unset=True), "content": content})

    def error_event(self, message: str) -> bytes:
        data = json.dumps(anthropic_error(502, message))
        return f"\n\nevent: error\ndata: {data}\n\n".encode()
