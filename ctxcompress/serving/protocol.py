"""EngineClient: what a front (the REST service) asks of a serving engine, and the records it gets back.

The service's routes talk to this interface only (after vLLM's ``EngineClient``): compress, describe methods and
models, report readiness and statistics. :class:`~ctxcompress.serving.engine.AsyncCompressionEngine` implements
it in-process; another engine (remote, multi-process) could stand behind the same routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ctxcompress.errors import CtxCompressError
from ctxcompress.serving.stats import EngineStats
from ctxcompress.types import CompressionRequest, CompressionResult

__all__ = ["EngineClient", "MethodDescription", "ModelStatus"]


@dataclass(frozen=True)
class ModelStatus:
    """A configured model: its name (what requests use), kind, description, and whether it is loaded."""

    name: str
    kind: str
    description: str
    loaded: bool


@dataclass(frozen=True)
class MethodDescription:
    """A registered method: its name, one-line summary, whether it needs a question, its options' JSON schema."""

    name: str
    summary: str
    needs_question: bool
    options_schema: dict[str, Any]


class EngineClient(Protocol):
    """The serving engine as the service sees it."""

    @property
    def devices(self) -> list[str]: ...

    async def start(self) -> None: ...

    async def shutdown(self, *, drain: bool = True) -> None: ...

    async def load_models(self, names: Sequence[str]) -> None:
        """Load the named models on every device (start-up)."""
        ...

    async def warmup(self, requests: Sequence[dict[str, Any]], *, profile_method: str | None = None) -> None:
        """Run ``requests`` on every device before serving; with ``profile_method``, also the largest batch the
        serving limits allow on each GPU (its memory peak taken before serving)."""
        ...

    async def compress(self, request: CompressionRequest | dict[str, Any]) -> CompressionResult: ...

    async def compress_many(
        self, requests: Sequence[CompressionRequest | dict[str, Any]]
    ) -> list[CompressionResult | CtxCompressError]: ...

    def check_health(self) -> None:
        """Raise :class:`~ctxcompress.errors.EngineUnavailable` unless the engine accepts requests."""
        ...

    def methods(self) -> list[MethodDescription]: ...

    def models(self) -> list[ModelStatus]: ...

    def loaded(self) -> list[str]:
        """``kind:name`` of the loaded engines."""
        ...

    def stats(self) -> EngineStats: ...
