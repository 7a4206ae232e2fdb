"""Which part of a chat is context: the rule every chat front shares (the OpenAI and Anthropic proxies of the
service, the LiteLLM guardrail).

The context is the last user message. Its final part (split on ``separator``, a blank line by default) is the
question, the other parts are the documents; system messages and earlier turns are never touched (so provider
prompt caching still hits). A chat passes *untouched*, with a reason, when compressing would not help or could
break it:

- ``disabled``: the caller turned compression off;
- ``no-context``: no user message, or no documents before the question;
- ``not-text``: the last user message holds images, tool calls or other non-text content;
- ``code``: it holds source code, which blank-line splitting would tear apart;
- ``small``: fewer than ``min_tokens`` target-tokenizer tokens (greetings, short chats).

(A fourth reason, ``budget``, is known only after a compression attempt: the budget cannot even hold the
question.) Torch-free: thin fronts import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ctxcompress.text.protect import contains_code
from ctxcompress.text.tokens import get_target_tokenizer
from ctxcompress.types import Budget

__all__ = ["ChatCompression", "ChatPlan", "SKIP_REASONS", "openai_message_text", "plan_chat"]

SKIP_REASONS = ("disabled", "no-context", "not-text", "code", "small", "budget")
"""Every reason a chat passes untouched (``x-ctxcompress-skipped``)."""


class ChatCompression(BaseModel):
    """A chat request's optional ``ctxcompress`` field; removed before the chat is forwarded.

    ``documents`` replaces the split (the whole last user message is then the question); ``question`` overrides
    the question used for ranking; ``method``/``budget``/``options`` override the front's defaults.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, strict=True)
    method: str | None = None
    budget: Budget | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    documents: list[str] | None = None
    question: str | None = None


@dataclass(frozen=True)
class ChatPlan:
    """Compress message ``index`` as ``documents`` + ``question``, or pass the chat untouched for ``skipped``."""

    index: int | None = None
    documents: list[str] = field(default_factory=list)
    question: str = ""
    skipped: str | None = None


def openai_message_text(content: str | list[dict[str, Any]] | None) -> str | None:
    """An OpenAI chat message's text: a string, or text-only content parts joined; None for anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(p.get("type") == "text" for p in content):
        return "\n".join(str(p.get("text", "")) for p in content)
    return None


def plan_chat(
    messages: Sequence[tuple[str, str | None]],
    overrides: ChatCompression | None = None,
    *,
    separator: str = "\n\n",
    min_tokens: int = 512,
) -> ChatPlan:
    """The plan for a chat given as ``(role, text)`` pairs (text None: not compressible content), with the
    caller's ``overrides`` (the request's ``ctxcompress`` field)."""
    overrides = overrides or ChatCompression()
    documents, question = overrides.documents, overrides.question
    if not overrides.enabled:
        return ChatPlan(skipped="disabled")
    users = [i for i, (role, _) in enumerate(messages) if role == "user"]
    if not users:
        return ChatPlan(skipped="no-context")
    index = users[-1]
    text = messages[index][1]
    if text is None:
        return ChatPlan(skipped="not-text")
    if documents is not None:
        question = question or text
    else:
        if contains_code(text):
            return ChatPlan(skipped="code")
        parts = [p.strip() for p in text.split(separator) if p.strip()]
        if question is not None:
            documents = parts
        elif len(parts) < 2:
            return ChatPlan(skipped="no-context")
        else:
            documents, question = parts[:-1], parts[-1]
    if get_target_tokenizer().count("\n\n".join([*documents, question])) < min_tokens:
        return ChatPlan(skipped="small")
    return ChatPlan(index=index, documents=list(documents), question=question)
