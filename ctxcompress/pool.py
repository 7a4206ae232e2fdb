"""ModelPool: loads each configured model once per process and hands engines to methods.

Methods ask for engines by *configured name*; the pool resolves names through the registry, so a request can
never make the process load an arbitrary path. Loading is thread-safe and lazy.
"""

from __future__ import annotations

import threading
from typing import Any

from ctxcompress.engines.device import resolve_device
from ctxcompress.engines.scorer import CausalLMScorer
from ctxcompress.models import ModelKind, ModelRegistry, default_registry

__all__ = ["ModelPool"]


class ModelPool:
    """Lazily loaded engines keyed by (engine kind, model name) on one device.

    Args:
        registry: resolves names to local folders.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        max_batch_tokens: padded-token cap per forward pass for the causal-LM scorer.
    """

    def __init__(
        self, registry: ModelRegistry | None = None, *, device: str = "auto", max_batch_tokens: int | None = None
    ) -> None:
        self.registry = registry or default_registry()
        self.device = resolve_device(device)
        self.max_batch_tokens = max_batch_tokens or (65536 if self.device.type == "cuda" else 4096)
        self._engines: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def loaded(self) -> list[str]:
        return [f"{kind}:{name}" for kind, name in self._engines]

    def get(self, engine: str, name: str, kind: ModelKind, factory: Any, *, field: str | None = None) -> Any:
        """The engine ``engine`` for model ``name``, built by ``factory(local_dir, device)`` on first use."""
        key = (engine, name)
        with self._lock:
            if key not in self._engines:
                local = self.registry.resolve(name, kind, field=field)
                self._engines[key] = factory(local, self.device)
            return self._engines[key]

    def scorer(self, name: str, *, field: str | None = None) -> CausalLMScorer:
        return self.get(
            "scorer",
            name,
            "causal-lm",
            lambda local, device: CausalLMScorer.from_pretrained(
                local, device=str(device), max_batch_tokens=self.max_batch_tokens
            ),
            field=field,
        )

    def register(self, engine: str, name: str, instance: Any) -> None:
        """Install a ready engine (tests use tiny random models this way)."""
        with self._lock:
            self._engines[(engine, name)] = instance
