"""ctxcompress for the LiteLLM proxy: :class:`CtxCompressGuardrail`, a ``pre_call`` guardrail (see its module)."""

from __future__ import annotations

from litellm_ctxcompress.guardrail import CtxCompressGuardrail

__all__ = ["CtxCompressGuardrail"]
