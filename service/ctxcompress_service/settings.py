"""Service settings from the environment (prefix ``CTXCOMPRESS_``) or a ``.env`` file.

List settings take a comma-separated string (``CTXCOMPRESS_API_KEYS=k1,k2``) or a JSON list.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ctxcompress.engines.options import (
    DecoderChoice,
    EncoderDtypeChoice,
    EngineOptions,
    GraphsChoice,
    KernelsChoice,
)
from ctxcompress.serving.options import ServingOptions
from ctxcompress.types import Budget

if TYPE_CHECKING:
    import torch

__all__ = ["Settings", "auto_workers"]

# A worker's models + activations: ~3 GiB at its start-up profile batch (hybrid, one H200; before the profile batch,
# growable segments and the graph limit, up to ~10.5 GiB under a 2x overload). The margin covers other methods.
GIB_PER_GPU_WORKER = 14
# Host cores per worker (each is GIL-bound): on the H200 host's 16 cores 10 workers served 10-23% more than 6
# (eval/results/bench_h200/open_batches).
CORES_PER_GPU_WORKER = 1.6
MAX_AUTO_WORKERS = 16


def host_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _gpus(devices: list[str]) -> list[torch.device]:
    """``devices`` (``CTXCOMPRESS_DEVICE``, ``auto`` resolved here) when every one is a CUDA GPU, else empty."""
    import torch

    from ctxcompress.engines.device import resolve_device
    from ctxcompress.serving.engine import expand_devices

    if not torch.cuda.is_available():
        return []
    resolved = [resolve_device(d) for d in expand_devices(devices)]
    return resolved if all(d.type == "cuda" for d in resolved) else []


def auto_workers(devices: list[str]) -> int:
    """Server processes for ``devices`` (``CTXCOMPRESS_DEVICE``): 1 without a GPU; else one per
    ``GIB_PER_GPU_WORKER`` of the smallest GPU's memory among those used and one per ``CORES_PER_GPU_WORKER``
    host cores, whichever is fewer, between 1 and ``MAX_AUTO_WORKERS``."""
    import torch

    resolved = _gpus(devices)
    if not resolved:
        return 1
    memory = min(torch.cuda.get_device_properties(d.index).total_memory for d in resolved) / 2**30
    by_cores = int(host_cores() / CORES_PER_GPU_WORKER)
    return max(1, min(MAX_AUTO_WORKERS, int(memory // GIB_PER_GPU_WORKER), by_cores))


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything the operator configures; nothing here is reachable from a request."""

    model_config = SettingsConfigDict(env_prefix="CTXCOMPRESS_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    device: CommaList = Field(default_factory=lambda: ["auto"])
    """Devices, one worker each: ``auto`` (every GPU, else CPU), ``cpu``, ``cuda:0,cuda:1``."""
    workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    """Server processes on the one port, each with its own engine and models. On a GPU, several processes share
    it: one's host work (tokenizing, budget search) overlaps another's GPU work, which one process cannot do.
    ``auto``: one on CPU; on GPUs one per 14 GiB of the smallest used GPU's memory and per 1.6 host cores,
    whichever is fewer (an H200 with 16 host cores: 10). ``/metrics`` sums all processes."""
    torch_threads: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = "auto"
    """torch's CPU threads in each server process. ``auto``: 1 when every device is a GPU (a GPU worker's CPU-side
    tensor work is small, and a pool per core in each of 10 processes contends for 16 cores: on one H200 one thread
    per worker served 17% more at 128 clients and a lone request 13% faster, eval/results/bench_h200/torch_threads);
    on CPU the host cores shared out among the workers."""
    reuse_port: bool = sys.platform.startswith("linux")
    """With several workers, each accepts on its own ``SO_REUSEPORT`` socket and the kernel spreads new connections
    evenly over them (``supervisor.py``); off (and off Linux), they share one socket and a burst of connections
    lands on whichever worker's event loop is idle (uvicorn's supervisor). One H200, 10 workers: +23% req/s and a
    shorter tail at 128 clients (eval/results/bench_h200/reuse_port_memory); a 5-minute soak at 2x answered every
    request (eval/results/soak_h200)."""
    balance_connections: bool = False
    """With several workers, a worker holding far more requests than its peers' mean answers ``Connection: close``
    so that callers reconnect to idle workers (``balance.py``). Opt-in: on one H200 it evened the batch sizes but
    did not improve the tail (eval/results/bench_h200/open_batches)."""
    preload_models: CommaList = Field(default_factory=lambda: ["smollm2-135m", "minilm-l6"])
    """Models loaded on every device at startup, any kind (default: the default method's two)."""
    warmup: bool = True
    """Run one small compression per device with the default method at startup."""
    profile_batch: bool = True
    """With ``warmup``, each GPU also runs one batch of the default method at the serving limits
    (``MAX_BATCH_REQUESTS`` requests filling ``MAX_BATCH_TOKENS``) before the service is ready, so its memory peak
    is taken at start (a GPU too small fails then) and GPU memory stays within it under load
    (``ctxcompress/serving/profile_batch.py``)."""
    default_method: str = "hybrid"
    """Method used when a request leaves ``method`` out."""
    default_budget: Budget = Field(default_factory=lambda: Budget(rate=0.5))
    """Budget used when a request leaves ``budget`` out (JSON: ``{"rate": 0.5}``)."""
    max_request_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    header_read_timeout_s: float = Field(default=10.0, gt=0)
    """A connection whose request headers are not complete this long after its first bytes gets 408 and is closed."""
    keep_alive_s: float = Field(default=75.0, gt=0)
    """An idle keep-alive connection is closed after this long. Longer than the idle timeouts of client pools and
    gateways (httpx 5 s, ALB and ingress-nginx 60 s): with uvicorn's 5 s default a client reusing a connection
    just as the server closes it gets a reset, not a response (eval/results/soak_h200: 8 of 23,037 requests
    under overload). nginx's default is 75 s too."""
    body_read_timeout_s: float = Field(default=10.0, gt=0)
    """A request body that sends nothing for this long (e.g. shorter than its Content-Length) gets 408."""
    max_documents: int = Field(default=ServingOptions.max_documents, gt=0)
    max_tokens_per_request: int = Field(default=ServingOptions.max_input_tokens, gt=0)
    max_batch_items: int = Field(default=64, gt=0)
    """Requests in one ``/v1/compress/batch`` call."""
    max_concurrent_requests: int = Field(default=ServingOptions.max_concurrent_requests, gt=0)
    """Queue bound: admitted requests (queued + running) before 429."""
    max_batch_requests: int = Field(default=ServingOptions.max_batch_requests, gt=0)
    max_batch_tokens: int = Field(default=ServingOptions.max_batch_tokens, gt=0)
    """Origin tokens (target tokenizer) of the requests batched together (the serving batch)."""
    max_wait_ms: float = Field(default=ServingOptions.max_wait_ms, ge=0)
    batches_per_device: int = Field(default=ServingOptions.batches_per_device, ge=1, le=8)
    """Batches assigned to a device at once (2 = one running + one open behind it; 1 = one at a time)."""
    request_timeout_s: float = Field(default=ServingOptions.request_timeout_s, gt=0)
    max_pass_tokens: int | None = Field(default=EngineOptions.max_pass_tokens, gt=0)
    """Padded tokens per forward pass of the models (the memory knob); unset: 131,072 on CUDA, 4,096 on CPU."""
    decoder: DecoderChoice = EngineOptions.decoder
    kernels: KernelsChoice = EngineOptions.kernels
    graphs: GraphsChoice = EngineOptions.graphs
    encoder_graphs: GraphsChoice = EngineOptions.encoder_graphs
    """The sentence encoder's small passes as CUDA graphs (``auto``: on CUDA), ``on`` or ``off``."""
    compile: bool = EngineOptions.compile
    chunk_cache_mb: int = Field(default=EngineOptions.chunk_cache_mb, ge=0)
    """MiB per loaded sentence encoder and per loaded scorer for recurring chunks' question-independent work; 0: off."""
    encoder_dtype: EncoderDtypeChoice = EngineOptions.encoder_dtype
    """Sentence encoder precision: ``auto`` (float16 on CUDA, float32 on CPU), ``float32`` or ``float16``."""
    api_keys: CommaList = Field(default_factory=list)
    """Accepted keys (``Authorization: Bearer`` or ``x-api-key``), no quotas; none here or in a keys file = open."""
    api_keys_file: Path | None = None
    """JSON list of named keys with quotas, re-read when it changes (see ``ctxcompress_service/keys.py``)."""
    cors_origins: CommaList = Field(default_factory=list)
    upstream_url: str | None = None
    """OpenAI-compatible base URL for the proxy, e.g. ``http://localhost:8080/v1``."""
    upstream_api_key: SecretStr | None = None
    anthropic_upstream_url: str | None = None
    """Anthropic Messages-compatible base URL for ``/v1/messages``, e.g. ``https://api.anthropic.com``."""
    anthropic_upstream_api_key: SecretStr | None = None
    upstream_timeout_s: float = Field(default=300.0, gt=0)
    proxy_separator: str = "\n\n"
    """Splits the last user message into documents (the final part is the question)."""
    proxy_min_tokens: int = Field(default=512, ge=0)
    """Last user messages shorter than this (target tokens) are forwarded untouched (``x-ctxcompress-skipped``)."""
    log_prompts: bool = False
    log_level: str = "info"
    graceful_shutdown_s: float = Field(default=30.0, gt=0)

    @field_validator("device", "preload_models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("upstream_url", "anthropic_upstream_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    def worker_count(self) -> int:
        """``workers``, with ``auto`` resolved on this machine (see the field)."""
        if self.workers != "auto":
            return self.workers
        return auto_workers(self.device)

    def torch_thread_count(self) -> int:
        """``torch_threads``, with ``auto`` resolved on this machine (see the field)."""
        if self.torch_threads != "auto":
            return self.torch_threads
        if _gpus(self.device):
            return 1
        return max(1, host_cores() // self.worker_count())

    def serving_options(self) -> ServingOptions:
        return ServingOptions(
            max_concurrent_requests=self.max_concurrent_requests,
            max_batch_requests=self.max_batch_requests,
            max_batch_tokens=self.max_batch_tokens,
            max_wait_ms=self.max_wait_ms,
            request_timeout_s=self.request_timeout_s,
            max_documents=self.max_documents,
            max_input_tokens=self.max_tokens_per_request,
            batches_per_device=self.batches_per_device,
        )

    def engine_options(self) -> EngineOptions:
        return EngineOptions(
            max_pass_tokens=self.max_pass_tokens,
            decoder=self.decoder,
            kernels=self.kernels,
            graphs=self.graphs,
            encoder_graphs=self.encoder_graphs,
            compile=self.compile,
            chunk_cache_mb=self.chunk_cache_mb,
            encoder_dtype=self.encoder_dtype,
        )
