"""ctxcompress REST service: ``/v1/compress``, ``/v1/compress/batch``, an OpenAI-compatible compressing proxy
(``/v1/chat/completions``), ``/v1/methods``, ``/v1/models``, ``/healthz``, ``/readyz``, ``/metrics``.

HTTP only: compression runs in :class:`ctxcompress.serving.AsyncCompressionEngine`. Run it with
``ctxcompress serve``; configure it with ``CTXCOMPRESS_*`` environment variables.
"""

from __future__ import annotations

from ctxcompress_service.app import build_app, build_engine
from ctxcompress_service.settings import Settings

__all__ = ["Settings", "build_app", "build_engine"]
