"""ctxcompress_eval: the evaluation harness behind ``ctxcompress eval``.

Modules: ``datasets`` (NQ multi-doc, MiniLongBench, GSM8K loaders), ``baselines`` (none, truncate, random, BM25,
MiniLM), ``anchor`` (llmlingua 0.2.2 via its pinned venv), ``metrics``, ``runner`` (cached runs), ``reader``
(optional OpenAI-compatible reader), ``report`` (tables and plots), ``cli``.
"""

from __future__ import annotations
