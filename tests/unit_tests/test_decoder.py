from __future__ import annotations

import pytest
import torch
from transformers import Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from ctxcompress.engines.decoder import AttentionPlan, TransformersDecoder, build_decoder
from ctxcompress.engines.fused_llama import FusedLlamaDecoder
from ctxcompress.engines.kv_buffer import KVBuffer


def _llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=200,
        hidden_size=96,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def _qwen2() -> Qwen2ForCausalLM:
    torch.manual_seed(1)
    config = Qwen2Config(
        vocab_size=200,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # random biases, so a dropped bias would show
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


def _reference_hidden(model, tokens: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with torch.no_grad():
        out = model.model(input_ids=tokens, position_ids=positions, attention_mask=mask[:, None])
    return out.last_hidden_state


@pytest.mark.parametrize("make_model", [_llama, _qwen2], ids=["llama", "qwen2"])
def test_fused_decoder_matches_transformers_causal_and_masked(make_model):
    model = make_model()
    tokens = torch.randint(3, 200, (3, 12))
    positions = torch.arange(12)[None].expand(3, -1) + torch.tensor([[0], [5], [9]])
    causal = torch.tril(torch.ones(12, 12, dtype=torch.bool))[None].expand(3, -1, -1)
    holes = causal.clone()
    holes[0, 4:, 2] = False  # a pruned slot in one row only
    holes[2, 8:, 1:4] = False
    decoder = FusedLlamaDecoder(model)
    for allowed, causal_only in ((causal, True), (holes, False)):
        plan = AttentionPlan(allowed=allowed, causal_only=causal_only, positions=positions, kv_positions=positions)
        got = decoder(tokens, plan, KVBuffer(2, 12))
        torch.testing.assert_close(got, _reference_hidden(model, tokens, positions, allowed), atol=1e-4, rtol=1e-4)


def test_fused_decoder_appends_to_the_cache_like_a_longer_pass():
    model = _llama()
    decoder = FusedLlamaDecoder(model)
    tokens = torch.randint(3, 200, (2, 10))
    positions = torch.arange(10)[None].expand(2, -1)
    full = torch.tril(torch.ones(10, 10, dtype=torch.bool))[None]
    whole = decoder(tokens, AttentionPlan(full, True, positions, positions), KVBuffer(2, 10))
    cache = KVBuffer(2, 10)
    first = decoder(tokens[:, :6], AttentionPlan(full[:, :6, :6], True, positions[:, :6], positions[:, :6]), cache)
    cache.length = 6
    second = decoder(tokens[:, 6:], AttentionPlan(full[:, 6:], False, positions[:, 6:], positions), cache)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-5, rtol=1e-5)


def test_fusing_keeps_the_transformers_model_intact():
    model = _llama()
    tokens = torch.randint(3, 200, (2, 9))
    with torch.no_grad():
        before = model(tokens).logits
    FusedLlamaDecoder(model)
    with torch.no_grad():
        after = model(tokens).logits
    torch.testing.assert_close(before, after)
    attention = model.model.layers[0].self_attn
    shared = attention.q_proj.weight.untyped_storage().data_ptr()
    assert shared == attention.v_proj.weight.untyped_storage().data_ptr()  # views of one QKV matrix


def test_unsupported_architectures_fall_back_to_transformers():
    config = Gemma3TextConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    assert "gemma3_text" in FusedLlamaDecoder.unsupported_reason(config)
    scaled = LlamaConfig(rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert FusedLlamaDecoder.unsupported_reason(scaled) is not None
    from transformers import Gemma3ForCausalLM

    gemma = Gemma3ForCausalLM(config).eval()
    assert isinstance(build_decoder(gemma), TransformersDecoder)
    with pytest.raises(ValueError, match="does not support"):
        build_decoder(gemma, "fused")
    with pytest.raises(ValueError, match="unknown decoder"):
        build_decoder(_llama(), "fast")
    assert isinstance(build_decoder(_llama()), FusedLlamaDecoder)
