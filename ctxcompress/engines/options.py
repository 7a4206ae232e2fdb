"""EngineOptions: how the engines run (not what they compute), with every default in this one place.

The library (``Compressor``), the service (``CTXCOMPRESS_*``), the CLI and ``ctxcompress bench`` all build
engines from one of these. None of these options changes which tokens a method keeps beyond float rounding
(``ctxcompress_eval.graph_check`` checks it per setting).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["DecoderChoice", "EncoderDtypeChoice", "EngineOptions", "GraphsChoice", "KernelsChoice"]

DecoderChoice = Literal["auto", "fused", "transformers"]
KernelsChoice = Literal["auto", "triton", "torch"]
GraphsChoice = Literal["auto", "on", "off"]
EncoderDtypeChoice = Literal["auto", "float32", "float16"]

_ENCODER_ONLY = ("encoder_dtype", "encoder_graphs")

# Padded tokens per forward pass when not configured: what one H200/H100 or a 2-core CPU handles well.
CUDA_PASS_TOKENS = 131_072
CPU_PASS_TOKENS = 4_096


@dataclass(frozen=True)
class EngineOptions:
    """Engine settings.

    Attributes:
        max_pass_tokens: padded tokens per forward pass of any engine (scorer, attention probe, encoder,
            generator, classifier); the memory knob. None: 131,072 on CUDA, 4,096 on CPU.
        decoder: the causal LM's decoder: ``auto`` (fused Llama-family decoder where the architecture allows,
            else the model's transformers module), ``fused`` or ``transformers``.
        kernels: the fused decoder's element-wise kernels and the token-NLL reduction: ``auto`` (Triton on CUDA
            where installed, unless ``compile``), ``triton`` or ``torch``.
        graphs: small passes at bucketed static shapes replayed as CUDA graphs: ``auto`` (on CUDA with the fused
            decoder), ``on`` (also on CPU, eagerly: for tests) or ``off``.
        encoder_graphs: the same for the sentence encoder's small passes (``engines/encoder_graphs.py``):
            ``auto`` (on CUDA), ``on`` or ``off``.
        compile: run the decoder's element-wise work through ``torch.compile`` (opt-in; measure with bench).
        chunk_cache_mb: MiB per loaded sentence encoder and per loaded scorer for the question-independent work on
            recurring chunks (the encoder's chunk and sentence vectors, the scorer's token ids and offsets;
            ``engines/chunk_cache.py``); 0 turns the caches off.
        encoder_dtype: the sentence encoder's weights and activations: ``auto`` (float16 on CUDA, where fp32
            matmuls run without tensor cores; float32 on CPU, where float16 is slower), ``float32`` or ``float16``.
            Pooling always accumulates in float32.
    """

    max_pass_tokens: int | None = None
    decoder: DecoderChoice = "auto"
    kernels: KernelsChoice = "auto"
    graphs: GraphsChoice = "auto"
    encoder_graphs: GraphsChoice = "auto"
    compile: bool = False
    chunk_cache_mb: int = 256
    encoder_dtype: EncoderDtypeChoice = "auto"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("decoder", ("auto", "fused", "transformers")),
            ("kernels", ("auto", "triton", "torch")),
            ("graphs", ("auto", "on", "off")),
            ("encoder_graphs", ("auto", "on", "off")),
            ("encoder_dtype", ("auto", "float32", "float16")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}: use one of {', '.join(allowed)}")
        if self.max_pass_tokens is not None and self.max_pass_tokens < 1:
            raise ValueError("max_pass_tokens must be >= 1")
        if self.chunk_cache_mb < 0:
            raise ValueError("chunk_cache_mb must be >= 0")

    def scorer_arguments(self) -> dict[str, object]:
        """The keyword arguments of ``CausalLMScorer`` (every option but the encoders' own)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _ENCODER_ONLY}

    def encoder_dtype_name(self, device_type: str) -> str:
        """``encoder_dtype``, with ``auto`` resolved for a device of this type: ``float16`` or ``float32``."""
        if self.encoder_dtype != "auto":
            return self.encoder_dtype
        return "float16" if device_type == "cuda" else "float32"

    def pass_tokens(self, device_type: str) -> int:
        """``max_pass_tokens``, or the default for a device of this type (``cuda`` or ``cpu``)."""
        if self.max_pass_tokens is not None:
            return self.max_pass_tokens
        return CUDA_PASS_TOKENS if device_type == "cuda" else CPU_PASS_TOKENS
