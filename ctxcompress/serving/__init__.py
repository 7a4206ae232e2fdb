"""Serving layer: the long-lived async batching engine used by the REST service and other long-running fronts."""

from __future__ import annotations

from ctxcompress.serving.engine import AsyncCompressionEngine, expand_devices
from ctxcompress.serving.options import ServingOptions
from ctxcompress.serving.protocol import EngineClient, MethodDescription, ModelStatus
from ctxcompress.serving.stats import EngineStats

__all__ = [
    "AsyncCompressionEngine",
    "EngineClient",
    "EngineStats",
    "MethodDescription",
    "ModelStatus",
    "ServingOptions",
    "expand_devices",
]
