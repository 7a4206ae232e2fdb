"""Optional reader: send each compressed prompt to an OpenAI-compatible chat endpoint and score the reply.

Accuracy rule (NQ, as in "Lost in the Middle" and LongLLMLingua): a reply is correct when any gold answer occurs
in it after case/whitespace normalisation. LongBench uses its short answers the same way; GSM8K is not scored.
Replies are cached under ``<out>/cache/reader/<model>/`` so re-runs do not call the endpoint again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from ctxcompress_eval.datasets import Example
from ctxcompress_eval.metrics import contains_answer, short_answers
from ctxcompress_eval.outputs import Output

__all__ = ["Reader", "chat_url"]


def chat_url(base: str) -> str:
    """``.../chat/completions`` for a base URL such as ``http://host:8000/v1``."""
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


class Reader:
    """A deterministic (temperature 0) chat-completion client.

    Args:
        url: the endpoint's base URL (``http://host:port/v1``) or its ``/chat/completions`` URL.
        model: the model name the endpoint serves.
        api_key: sent as a bearer token when given.
        max_tokens: reply length cap.
        timeout_s: per-request timeout.
    """

    def __init__(
        self, url: str, model: str, *, api_key: str | None = None, max_tokens: int = 64, timeout_s: float = 120.0
    ) -> None:
        self.url = chat_url(url)
        self.model = model
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    def complete(self, prompt: str) -> str:
        """The reply text (raises httpx.HTTPError or ValueError on a failed or malformed response)."""
        response = self._client.post(
            self.url,
            json={
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0.0,
                "max_tokens": self.max_tokens,
            },
        )
        response.raise_for_status()
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed chat completion: {response.text[:200]}") from exc

    def _cache_path(self, out: Path, dataset: str, method: str, rate: float) -> Path:
        model = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model)
        return out / "cache" / "reader" / model / dataset / method / f"rate-{rate:g}.jsonl"

    def judge(
        self, dataset: str, method: str, rate: float, outputs: list[Output], examples: dict[str, Example], out: Path
    ) -> None:
        """Set ``extra["reader_response"]`` and ``extra["reader_correct"]`` on every successful output."""
        path = self._cache_path(out, dataset, method, rate)
        cached: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    cached[row["id"]] = row
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            for output in outputs:
                if output.error:
                    continue
                row = cached.get(output.id)
                if row is None or row.get("error"):
                    try:
                        row = {"id": output.id, "response": self.complete(output.prompt), "error": None}
                    except (httpx.HTTPError, ValueError) as exc:
                        row = {"id": output.id, "response": None, "error": f"{type(exc).__name__}: {exc}"}
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                example = examples[output.id]
                answers = short_answers(example.answers) if dataset == "longbench" else example.answers
                output.extra["reader_response"] = row["response"]
                output.extra["reader_error"] = row["error"]
                output.extra["reader_correct"] = (
                    contains_answer(row["response"], answers) if row["response"] is not None and answers else None
                )
