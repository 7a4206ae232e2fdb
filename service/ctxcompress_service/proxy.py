"""OpenAI-compatible compressing proxy: compress the context inside a chat request, forward it upstream.

Which text is context, and when a chat passes untouched, is :mod:`ctxcompress.chat`'s rule (shared with the
LiteLLM guardrail): the last user message split into documents + question; the response says why it was left
alone in ``x-ctxcompress-skipped`` (``small``, ``code``, ``budget``, ``no-context``, ``not-text``, ``disabled``).
The request's optional ``ctxcompress`` field overrides method, budget, options, documents and question and is
removed before forwarding.

Upstream responses keep the body the OpenAI SDKs parse, carry ``x-ctxcompress-upstream-status`` (so an upstream
401/429/500 is told apart from the service's own), and lose hop-by-hop and cookie headers. Errors never show the
upstream URL (it may hold credentials or tokens); the log has it redacted.

Streaming (SSE) responses are passed through as they arrive; if the
upstream fails mid-stream (after the 200 status went out), the stream ends with one SSE error event,
``data: {"error": {"type": "UpstreamError", ...}}``, and a proper end of body instead of a torn connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ctxcompress.chat import ChatCompression, openai_message_text, plan_chat
from ctxcompress.errors import InvalidInput, UpstreamError, UpstreamNotConfigured
from ctxcompress.serving.protocol import EngineClient
from ctxcompress_service.auth import caller_key_name
from ctxcompress_service.disconnect import cancel_on_disconnect
from ctxcompress_service.metrics import Metrics
from ctxcompress_service.protocol import ChatMessage, CompressionRequest, ProxiedRequest
from ctxcompress_service.settings import Settings

__all__ = ["ChatProxy", "CompressingProxy", "Plan", "redact_url", "upstream_error_event"]

logger = logging.getLogger("ctxcompress.service")

# Upstream response headers never relayed: hop-by-hop ones (RFC 9110 §7.6.1), those our own server sets (they would
# go out twice), cookies (the caller talks to this service, not to the upstream's origin) and authentication
# challenges (an upstream 401's challenge is not ours to pose).
_DROPPED_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "date",
    "server",
    "set-cookie",
    "set-cookie2",
    "www-authenticate",
}
UPSTREAM_STATUS_HEADER = "x-ctxcompress-upstream-status"
SKIPPED_HEADER = "x-ctxcompress-skipped"


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment (``http://***@host/v1?***``): safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = ("***@" if parts.username or parts.password else "") + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


@dataclass
class Plan:
    """What the proxy does with a chat request: compress message ``index`` with ``request``, or pass untouched
    for ``skipped`` (a reason)."""

    index: int | None = None
    request: CompressionRequest | None = None
    skipped: str | None = None


class CompressingProxy:
    """A compressing proxy: plan the last user message's compression, run it through the engine, forward the
    request upstream (httpx), relay the answer. Subclasses say where upstream is, how to authenticate there, how a
    message's text is read and replaced, and how a streamed error looks in their wire format."""

    upstream_path = ""
    setting_name = ""  # the setting that holds the upstream base URL, for the "not configured" error

    def __init__(
        self,
        settings: Settings,
        engine: EngineClient,
        metrics: Metrics,
        client: httpx.AsyncClient,
        keys_enabled: bool = False,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.client = client
        self.keys_enabled = keys_enabled  # service keys configured: a caller's own key is never forwarded

    # ---- wire-format hooks
    @property
    def upstream_url(self) -> str | None:
        raise NotImplementedError

    def upstream_headers(self, request: Request) -> dict[str, str]:
        raise NotImplementedError

    def message_text(self, content: Any) -> str | None:
        """The compressible text of a message's content, or None (left untouched)."""
        return openai_message_text(content)

    def with_text(self, message: ChatMessage, text: str) -> ChatMessage:
        return ChatMessage.model_validate({**message.model_dump(), "content": text})

    def error_event(self, message: str) -> bytes:
        return upstream_error_event(message)

    # ---- shared behaviour
    def plan(self, messages: list[ChatMessage], opts: ChatCompression | None) -> Plan:
        """Which message to compress and how, or why it passes untouched (:func:`ctxcompress.chat.plan_chat`)."""
        opts = opts or ChatCompression()
        chat = plan_chat(
            [(m.role, self.message_text(m.content)) for m in messages],
            opts,
            separator=self.settings.proxy_separator,
            min_tokens=self.settings.proxy_min_tokens,
        )
        if chat.index is None:
            return Plan(skipped=chat.skipped)
        request = CompressionRequest(
            method=opts.method or self.settings.default_method,
            documents=chat.documents,
            question=chat.question,
            budget=opts.budget or self.settings.default_budget,
            options=opts.options,
        )
        return Plan(index=chat.index, request=request)

    async def handle(self, body: ProxiedRequest, request: Request) -> Response:
        if not self.upstream_url:
            raise UpstreamNotConfigured(
                f"the proxy has no upstream: set {self.setting_name} to the upstream API's base URL"
            )
        messages = list(body.messages)
        headers = {"x-ctxcompress-origin-tokens": "0", "x-ctxcompress-compressed-tokens": "0"}
        plan = self.plan(messages, body.ctxcompress)
        result = None
        if plan.request is not None:
            try:
                result = await cancel_on_disconnect(request, self.engine.compress(plan.request))
            except InvalidInput as exc:
                if exc.field != "budget":  # a bad method or option is the caller's to fix
                    raise
                plan.skipped = "budget"  # the budget cannot hold the question: forward the chat as sent
        if plan.skipped is not None:
            headers[SKIPPED_HEADER] = plan.skipped
        if result is not None and plan.index is not None:
            self.metrics.observe_result(result, caller_key_name(request))
            messages[plan.index] = self.with_text(messages[plan.index], result.prompt)
            headers = {
                "x-ctxcompress-origin-tokens": str(result.origin_tokens),
                "x-ctxcompress-compressed-tokens": str(result.compressed_tokens),
            }
            request.state.log_fields = {
                "method_name": result.method,
                "origin_tokens": result.origin_tokens,
                "compressed_tokens": result.compressed_tokens,
                **({"prompt": result.prompt} if self.settings.log_prompts else {}),
            }
        return await self._forward(body.upstream_body(messages), body.stream, request, headers)

    async def _forward(
        self, payload: dict[str, Any], stream: bool, request: Request, extra: dict[str, str]
    ) -> Response:
        url = f"{self.upstream_url}{self.upstream_path}"
        upstream_request = self.client.build_request("POST", url, json=payload, headers=self.upstream_headers(request))
        try:
            upstream = await self.client.send(upstream_request, stream=stream)
        except httpx.HTTPError as exc:
            logger.warning(
                "upstream request failed",
                extra={"upstream": redact_url(self.upstream_url or ""), "error": type(exc).__name__},
            )
            raise UpstreamError(f"the upstream LLM API did not answer ({type(exc).__name__})") from None
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROPPED_HEADERS} | extra
        headers[UPSTREAM_STATUS_HEADER] = str(upstream.status_code)
        if not stream:
            return Response(upstream.content, status_code=upstream.status_code, headers=headers)
        return StreamingResponse(self._relay(upstream), status_code=upstream.status_code, headers=headers)

    async def _relay(self, upstream: httpx.Response) -> AsyncIterator[bytes]:
        """Pass the upstream's (SSE) body through chunk by chunk; always close the upstream response.

        An upstream that fails mid-stream ends the relayed stream with an SSE error event (the status line has
        been sent, so the error travels in the body, as the providers' streaming errors do).
        """
        try:
            async for chunk in upstream.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            logger.warning("upstream failed mid-stream", extra={"error": type(exc).__name__})
            yield self.error_event(f"upstream failed mid-stream ({type(exc).__name__})")
        finally:
            await upstream.aclose()


class ChatProxy(CompressingProxy):
    """``POST /v1/chat/completions`` to an OpenAI-compatible upstream (``CTXCOMPRESS_UPSTREAM_URL``)."""

    upstream_path = "/chat/completions"
    setting_name = "CTXCOMPRESS_UPSTREAM_URL (e.g. http://localhost:8080/v1)"

    @property
    def upstream_url(self) -> str | None:
        return self.settings.upstream_url

    def upstream_headers(self, request: Request) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.settings.upstream_api_key is not None:
            headers["authorization"] = f"Bearer {self.settings.upstream_api_key.get_secret_value()}"
        elif not self.keys_enabled and "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]  # transparent proxy: the caller's key
        return headers


def upstream_error_event(message: str) -> bytes:
    """One SSE event carrying the service's error shape (blank lines around it end any partial event)."""
    error = {"error": {"type": "UpstreamError", "message": message, "field": None}}
    return f"\n\ndata: {json.dumps(error)}\n\n".encode()
