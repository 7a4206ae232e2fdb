"""ModelPool: loads each configured model once per process and hands engines to methods.

Methods ask for engines by *configured name*; the pool resolves names through the registry, so a request can
never make the process load an arbitrary path. Loading is thread-safe and lazy.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import torch

from ctxcompress.engines.device import resolve_device, scoring_dtype
from ctxcompress.engines.options import EngineOptions
from ctxcompress.engines.scorer import CausalLMScorer
from ctxcompress.errors import UnknownModel
from ctxcompress.models import ModelKind, ModelRegistry, default_registry

if TYPE_CHECKING:
    from ctxcompress.engines.attention import QuestionAttention
    from ctxcompress.engines.classifier import TokenClassifier
    from ctxcompress.engines.encoder import SentenceEncoder
    from ctxcompress.engines.generator import Generator

__all__ = ["ModelPool"]

# One model load at a time in the process: transformers' from_pretrained swaps module-level functions while it
# loads (weight tying, initialisation), so two concurrent loads (pools of several devices) can leave a model's
# tied head on the meta device. Seen with three CPU devices loading SmolLM2 at once (transformers 5.24).
_LOADING = threading.Lock()


class ModelPool:
    """Lazily loaded engines keyed by (engine kind, model name) on one device.

    Args:
        registry: resolves names to local folders.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        options: how the engines run (pass size, decoder, kernels, graphs); defaults in :class:`EngineOptions`.
    """

    def __init__(
        self, registry: ModelRegistry | None = None, *, device: str = "auto", options: EngineOptions | None = None
    ) -> None:
        self.registry = registry or default_registry()
        self.device = resolve_device(device)
        # read once (CTXCOMPRESS_CPU_DTYPE on CPU), so the scorers' weights and the batching policy agree
        self.scoring_dtype = scoring_dtype(self.device)
        self.options = options or EngineOptions()
        self.max_pass_tokens = self.options.pass_tokens(self.device.type)
        self._engines: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def requests_share_passes(self) -> bool:
        """Whether requests batched together may share the engines' passes. On CPU in reduced precision they do
        not: oneDNN's bf16 kernels pick their blocking by the pass's shape, so a request's numbers, and with them
        its token choices, would depend on its batch-mates (LongLLMLingua: 41-92% identical words against the
        same request alone); each request runs in passes of its own there. In fp32 on CPU the shared passes give
        each request its results alone; on CUDA sharing is the throughput path (bf16: see README's batching note)."""
        return self.device.type == "cuda" or self.scoring_dtype == torch.float32

    def loaded_engines(self) -> list[tuple[str, str]]:
        """``(engine kind, model name)`` of every engine loaded so far."""
        with self._lock:
            return list(self._engines)

    def get(self, engine: str, name: str, kind: ModelKind, factory: Any, *, field: str | None = None) -> Any:
        """The engine ``engine`` for model ``name``, built by ``factory(local_dir, device)`` on first use."""
        key = (engine, name)
        with self._lock:
            if key not in self._engines:
                local = self.registry.resolve(name, kind, field=field)
                with _LOADING:
                    self._engines[key] = factory(local, self.device)
            return self._engines[key]

    def scorer(self, name: str, *, field: str | None = None) -> CausalLMScorer:
        return self.get(
            "scorer",
            name,
            "causal-lm",
            lambda local, device: CausalLMScorer.from_pretrained(
                local, device=str(device), options=self.options, dtype=self.scoring_dtype
            ),
            field=field,
        )

    def attention(self, name: str, *, field: str | None = None) -> QuestionAttention:
        """Observation-window attention over the scorer ``name``'s model (shares its weights)."""
        from ctxcompress.engines.attention import QuestionAttention

        scorer = self.scorer(name, field=field)
        with self._lock:
            if ("attention", name) not in self._engines:
                probe = QuestionAttention(
                    scorer.model,
                    pad_id=scorer.pad_id,
                    max_pass_tokens=self.max_pass_tokens,
                    graphs=self.options.graphs,
                    decoder=scorer.decoder,
                    head=scorer.head,
                )
                self._engines[("attention", name)] = probe
            return self._engines[("attention", name)]

    def model_tokens(self) -> int:
        """Tokens (real, not padding) run through the loaded language models so far: the scorers' passes and the
        attention probes' prefills (throughput accounting; the probes share the scorers' weights)."""
        with self._lock:
            engines = list(self._engines.values())
        return sum(engine.tokens_processed for engine in engines if hasattr(engine, "tokens_processed"))

    def encoder(self, name: str, *, field: str | None = None) -> SentenceEncoder:
        from ctxcompress.engines.encoder import SentenceEncoder

        return self.get(
            "encoder",
            name,
            "sentence-encoder",
            lambda local, device: SentenceEncoder.from_pretrained(
                local,
                device=str(device),
                max_pass_tokens=self.max_pass_tokens,
                cache_bytes=self.options.chunk_cache_mb * 2**20,
                dtype=self.options.encoder_dtype_name(self.device.type),
                graphs=self.options.encoder_graphs,
            ),
            field=field,
        )

    def generator(self, name: str, *, field: str | None = None) -> Generator:
        """A seq2seq or instruct causal-LM generator (the registry kind decides which)."""
        from ctxcompress.engines.generator import Generator

        kind: ModelKind = "seq2seq"
        if ("generator", name) not in self._engines:
            kinds = ("seq2seq", "causal-lm")
            if name not in self.registry.names() or self.registry.spec(name).kind not in kinds:
                known = [n for k in kinds for n in self.registry.names(k)]  # type: ignore[arg-type]
                raise UnknownModel(name, known=known, field=field)
            kind = self.registry.spec(name).kind
        return self.get(
            "generator",
            name,
            kind,
            lambda local, device: Generator.from_pretrained(
                local, device=str(device), max_pass_tokens=self.max_pass_tokens
            ),
            field=field,
        )

    def classifier(self, name: str, *, field: str | None = None) -> TokenClassifier:
        from ctxcompress.engines.classifier import TokenClassifier

        return self.get(
            "classifier",
            name,
            "token-classifier",
            lambda local, device: TokenClassifier.from_pretrained(
                local, device=str(device), max_pass_tokens=self.max_pass_tokens
            ),
            field=field,
        )

    def register(self, engine: str, name: str, instance: Any) -> None:
        """Install a ready engine (tests use tiny random models this way)."""
        with self._lock:
            self._engines[(engine, name)] = instance
