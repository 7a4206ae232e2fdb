"""A LiteLLM proxy guardrail that compresses a chat's context on a ctxcompress service before LiteLLM forwards it.

Enable it in the LiteLLM proxy's ``config.yaml`` (a ``pre_call`` guardrail)::

    guardrails:
      - guardrail_name: ctxcompress
        litellm_params:
          guardrail: litellm_ctxcompress.CtxCompressGuardrail
          mode: pre_call
          default_on: true
          api_base: http://127.0.0.1:8000      # the ctxcompress service
          api_key: os.environ/CTXCOMPRESS_API_KEY  # when the service has keys
          method: hybrid
          rate: 0.25                           # or max_tokens: 2000

What is compressed follows :mod:`ctxcompress.chat` (the service proxies' rule): the last user message, split into
documents + question; system messages and earlier turns stay byte for byte. A request may carry a ``ctxcompress``
field (method, budget, options, documents, question, enabled) that overrides the defaults; it is removed before
LiteLLM forwards the request. The outcome (tokens before/after, or why the chat passed untouched) is written to
the request's ``metadata["ctxcompress"]``, which LiteLLM's logging callbacks see.

A failing ctxcompress service does not fail the LLM call by default (``fail_open``): the chat is forwarded as
sent and the failure is logged. Compression runs on the service (no torch in LiteLLM's process); this module holds
no compression logic.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail
from pydantic import ValidationError

from ctxcompress.chat import ChatCompression, openai_message_text, plan_chat
from ctxcompress.client import AsyncCtxCompressClient
from ctxcompress.errors import CtxCompressError, InvalidInput
from ctxcompress.types import Budget, CompressionRequest

__all__ = ["CtxCompressGuardrail"]

logger = logging.getLogger("ctxcompress.litellm")

_CHAT_CALLS = {"completion", "acompletion"}


class CtxCompressGuardrail(CustomGuardrail):
    """LiteLLM ``pre_call`` hook: compress the last user message's documents on a ctxcompress service.

    Args (from the guardrail's ``litellm_params``):
        api_base: the ctxcompress service's URL (required).
        api_key: its API key, when the service has keys.
        method: compression method (default ``hybrid``).
        rate / max_tokens: the budget (default ``rate=0.5``); at most one.
        options: method options.
        min_tokens: chats shorter than this many target-tokenizer tokens pass untouched (default 512).
        separator: what splits the last user message into documents and question (default a blank line).
        timeout: seconds to wait for the service.
        fail_open: forward the chat uncompressed when the service fails (default true); false raises.
    """

    def __init__(
        self,
        api_base: str | None = None,
        api_key: str | None = None,
        method: str = "hybrid",
        rate: float | None = None,
        max_tokens: int | None = None,
        options: dict[str, Any] | None = None,
        min_tokens: int = 512,
        separator: str = "\n\n",
        timeout: float = 60.0,
        fail_open: bool = True,
        **kwargs: Any,
    ) -> None:
        if not api_base:
            raise ValueError("CtxCompressGuardrail needs api_base: the URL of a ctxcompress service")
        if rate is not None and max_tokens is not None:
            raise ValueError("give at most one of rate or max_tokens")
        self.api_base = api_base.rstrip("/")
        self.api_key = api_key
        self.method = method
        self.budget = Budget(max_tokens=max_tokens) if max_tokens is not None else Budget(rate=rate or 0.5)
        self.options = dict(options or {})
        self.min_tokens = min_tokens
        self.separator = separator
        self.timeout = timeout
        self.fail_open = fail_open
        super().__init__(**kwargs)

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> dict | None:
        """Return ``data`` with the last user message compressed (or untouched, with the reason recorded)."""
        try:
            overrides = ChatCompression.model_validate(data.pop("ctxcompress", None) or {})
        except ValidationError as exc:
            raise HTTPException(400, f"invalid ctxcompress field: {exc.errors()[0]['msg']}") from None
        if call_type not in _CHAT_CALLS or not isinstance(data.get("messages"), list):
            return data
        messages: list[dict[str, Any]] = data["messages"]
        plan = plan_chat(
            [(str(m.get("role", "")), openai_message_text(m.get("content"))) for m in messages],
            overrides,
            separator=self.separator,
            min_tokens=self.min_tokens,
        )
        record: dict[str, Any] = {"skipped": plan.skipped}
        if plan.index is not None:
            request = CompressionRequest(
                method=overrides.method or self.method,
                documents=plan.documents,
                question=plan.question,
                budget=overrides.budget or self.budget,
                options=overrides.options or self.options,
            )
            try:
                async with AsyncCtxCompressClient(self.api_base, api_key=self.api_key, timeout=self.timeout) as client:
                    result = await client.compress(request)
            except InvalidInput as exc:
                if exc.field != "budget":  # a bad method or option is the operator's or caller's to fix
                    raise HTTPException(400, f"ctxcompress: {exc.message}") from None
                record["skipped"] = "budget"  # the budget cannot hold the question: forward the chat as sent
            except (CtxCompressError, httpx.HTTPError) as exc:
                if not self.fail_open:
                    raise
                logger.warning("ctxcompress failed; forwarding the chat uncompressed: %s", exc)
                record = {"skipped": "error", "error": type(exc).__name__}
            else:
                messages[plan.index] = {**messages[plan.index], "content": result.prompt}
                record = {
                    "method": result.method,
                    "origin_tokens": result.origin_tokens,
                    "compressed_tokens": result.compressed_tokens,
                }
        metadata = data.get("metadata")
        if isinstance(metadata, dict):
            metadata["ctxcompress"] = record
        return data
