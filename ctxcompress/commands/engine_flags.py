"""The engine flags every command that runs models shares: ``--max-pass-tokens``, ``--decoder``, ``--kernels``,
``--graphs``, ``--compile``, ``--chunk-cache-mb``, ``--encoder-dtype`` (meaning, default:
``ctxcompress.engines.options.EngineOptions``)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_engine_flags", "engine_overrides"]

ENGINE_FLAGS = ("max_pass_tokens", "decoder", "kernels", "graphs", "compile", "chunk_cache_mb", "encoder_dtype")


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """Add the flags; each defaults to None (= the EngineOptions default, or the environment for ``serve``)."""
    group = parser.add_argument_group("engine (how the models run; outputs stay the same)")
    group.add_argument("--max-pass-tokens", type=int, default=None, help="padded tokens per forward pass (memory)")
    group.add_argument("--decoder", default=None, choices=["auto", "fused", "transformers"], help="causal-LM decoder")
    group.add_argument("--kernels", default=None, choices=["auto", "triton", "torch"], help="element-wise kernels")
    group.add_argument("--graphs", default=None, choices=["auto", "on", "off"], help="CUDA graphs for small passes")
    group.add_argument("--compile", action="store_true", default=None, help="torch.compile the element-wise work")
    group.add_argument(
        "--chunk-cache-mb",
        type=int,
        default=None,
        help="MiB per encoder and per scorer for recurring chunks' work (0: off)",
    )
    group.add_argument(
        "--encoder-dtype", default=None, choices=["auto", "float32", "float16"], help="sentence encoder precision"
    )


def engine_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The engine flags given on the command line, by EngineOptions field name."""
    return {name: getattr(args, name) for name in ENGINE_FLAGS if getattr(args, name, None) is not None}
