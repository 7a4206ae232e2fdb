"""Tiny randomly initialised models shared by the tests, the reliability harness and scripts/load_test.py.

They exercise mechanics (batching, service, fault handling) fast; their scores mean nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["tiny_llama"]


def tiny_llama(tokenizer: Any, *, max_positions: int = 2048, seed: int = 0) -> Any:
    """A 2-layer, width-64 Llama (grouped-query attention) over ``tokenizer``'s vocabulary, seeded, in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()
