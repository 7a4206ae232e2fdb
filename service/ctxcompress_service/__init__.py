"""ctxcompress REST service: ``/v1/compress``, ``/v1/compress/batch``, an OpenAI-compatible compressing proxy
(``/v1/chat/completions``), ``/v1/methods``, ``/v1/models``, ``/healthz``, ``/readyz``, ``/metrics``.

HTTP only: compression runs in :class:`ctxcompress.serving.AsyncCompressionEngine`. Run it with
``ctxcompress serve``; configure it with ``CTXCOMPRESS_*`` environment variables. Names are imported lazily so
``ctxcompress serve`` can set its offline environment before torch/transformers load.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Settings", "build_app", "build_engine"]

_WHERE = {
    "Settings": "ctxcompress_service.settings",
    "build_app": "ctxcompress_service.app",
    "build_engine": "ctxcompress_service.app",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ctxcompress_service' has no attribute {name!r}")
