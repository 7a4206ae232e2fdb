"""The method interface and the registry that maps method names to classes.

A method turns a batch of prepared requests into results. Methods call engines (scorer, encoder, generator,
classifier) from the :class:`~ctxcompress.pool.ModelPool`; they never call a model directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from ctxcompress.errors import InvalidInput
from ctxcompress.pool import ModelPool
from ctxcompress.prompting import PreparedRequest
from ctxcompress.types import CompressionResult

__all__ = [
    "BaseOptions",
    "CompressionMethod",
    "register_method",
    "method_class",
    "method_names",
    "run_grouped",
]


class BaseOptions(BaseModel):
    """Options every method accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # the schema says boolean: 0.0 is not false

    target_tokenizer: str = "cl100k_base"
    """tiktoken encoding that defines the budget (what the downstream LLM counts)."""


class CompressionMethod(ABC):
    """A compression algorithm. Subclasses set ``name``, ``options_model`` and implement ``compress_batch``."""

    name: ClassVar[str]
    options_model: ClassVar[type[BaseOptions]] = BaseOptions
    needs_question: ClassVar[bool] = False
    required_options: ClassVar[tuple[str, ...]] = ()
    """Options a request must set (published in the service's schema; ``validate`` enforces them)."""
    summary: ClassVar[str] = ""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool

    def validate(self, prepared: PreparedRequest) -> None:
        """Method-specific checks beyond the options model (raise InvalidInput)."""
        if self.needs_question and not (prepared.request.question or "").strip():
            raise InvalidInput(f"method {self.name!r} needs a question", field="question")

    @abstractmethod
    def compress_batch(self, requests: list[PreparedRequest]) -> list[CompressionResult]:
        """Compress every request (all need compression: none fits its budget already)."""


def run_grouped(
    requests: list[PreparedRequest],
    model_of: Callable[[PreparedRequest], str],
    run: Callable[[str, list[PreparedRequest]], list[CompressionResult]],
) -> list[CompressionResult]:
    """Run ``run(model_name, group)`` once per distinct (model, options); results come back in request order.

    Every request is its own: a batched pass reads options (window, overlap, prompt statement, truncation…)
    once for its whole group, so requests are grouped by *all* their options, not only by model. Requests
    with the same options (the common case: defaults) still share one engine batch. ``run`` may therefore
    read group-wide options from ``group[0].options``.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, prepared in enumerate(requests):
        groups[(model_of(prepared), prepared.options.model_dump_json())].append(i)
    results: dict[int, CompressionResult] = {}
    for (name, _), members in groups.items():
        results.update(zip(members, run(name, [requests[i] for i in members]), strict=True))
    return [results[i] for i in range(len(requests))]


_REGISTRY: dict[str, type[CompressionMethod]] = {}


def register_method(cls: type[CompressionMethod]) -> type[CompressionMethod]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def method_names() -> list[str]:
    return sorted(_REGISTRY)


def method_class(name: str) -> type[CompressionMethod]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInput(
            f"unknown method {name!r}; valid methods: {', '.join(method_names())}", field="method"
        ) from None
