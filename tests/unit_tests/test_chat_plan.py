"""The chat rule shared by the proxies and the LiteLLM guardrail (``ctxcompress.chat``)."""

from __future__ import annotations

from ctxcompress.chat import ChatCompression, openai_message_text, plan_chat

DOC = "The Nile is a major north-flowing river in northeastern Africa and flows into the Mediterranean Sea. " * 3
CONTEXT = f"{DOC}\n\n{DOC}\n\nWhich river flows into the Mediterranean?"


def test_the_last_user_message_splits_into_documents_and_question() -> None:
    messages = [("system", "Be brief."), ("user", "old question"), ("assistant", "old answer"), ("user", CONTEXT)]
    plan = plan_chat(messages, min_tokens=0)
    assert plan.index == 3 and plan.skipped is None
    assert plan.documents == [DOC.strip(), DOC.strip()]
    assert plan.question == "Which river flows into the Mediterranean?"


def test_every_skip_reason() -> None:
    assert plan_chat([("user", CONTEXT)], ChatCompression(enabled=False)).skipped == "disabled"
    assert plan_chat([("system", CONTEXT)], min_tokens=0).skipped == "no-context"
    assert plan_chat([("user", "just a question?")], min_tokens=0).skipped == "no-context"
    assert plan_chat([("user", None)], min_tokens=0).skipped == "not-text"
    code = "Fix this:\n\n```python\ndef f(x):\n    return x\n```\n\nWhat is wrong?"
    assert plan_chat([("user", code)], min_tokens=0).skipped == "code"
    assert plan_chat([("user", CONTEXT)], min_tokens=10_000).skipped == "small"
    assert plan_chat([("user", CONTEXT)], min_tokens=10).skipped is None


def test_caller_given_documents_and_question_override_the_split() -> None:
    plan = plan_chat([("user", "What flows north?")], ChatCompression(documents=[DOC]), min_tokens=0)
    assert plan.documents == [DOC] and plan.question == "What flows north?"
    plan = plan_chat([("user", f"{DOC}\n\n{DOC}")], ChatCompression(question="Which river?"), min_tokens=0)
    assert len(plan.documents) == 2 and plan.question == "Which river?"


def test_openai_content_parts() -> None:
    assert openai_message_text("hi") == "hi"
    assert openai_message_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\nb"
    assert openai_message_text([{"type": "image_url", "image_url": {"url": "x"}}]) is None
    assert openai_message_text(None) is None
