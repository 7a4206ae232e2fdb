from __future__ import annotations

import pytest
import torch
from transformers import Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from ctxcompress.engines import triton_kernels
from ctxcompress.engines.attention_plan import AttentionPlan
from ctxcompress.engines.decoder import TransformersDecoder, build_decoder
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


def test_kernels_setting_resolves_to_torch_without_cuda_triton_and_rejects_bad_values():
    model = _llama()
    assert FusedLlamaDecoder(model, kernels="auto").kernels == "torch"  # CPU tensors: no Triton
    assert FusedLlamaDecoder(model, kernels="torch").kernels == "torch"
    with pytest.raises(ValueError, match="kernels='triton' cannot run"):
        FusedLlamaDecoder(model, kernels="triton")
    with pytest.raises(ValueError, match="unknown kernels"):
        FusedLlamaDecoder(model, kernels="cuda")


needs_triton = pytest.mark.skipif(not triton_kernels.available(), reason="Triton kernels need CUDA and Triton")


@needs_triton
@pytest.mark.parametrize("tokens", [1, 37, 1000])
def test_triton_rotary_matches_the_torch_expression(tokens):
    torch.manual_seed(3)
    heads, kv_heads, head_dim = 9, 3, 64
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * head_dim, device="cuda", dtype=torch.bfloat16)
    positions = torch.randint(0, 4000, (tokens,), device="cuda")
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, head_dim, 2, device="cuda", dtype=torch.float32) / head_dim)
    got = triton_kernels.rotary_qk(qkv, positions, inv_freq, heads + kv_heads, head_dim)
    x = qkv[:, : (heads + kv_heads) * head_dim].unflatten(-1, (heads + kv_heads, head_dim)).float()
    angle = positions[:, None].float() * inv_freq
    cos, sin = torch.cat((angle, angle), -1).cos()[:, None], torch.cat((angle, angle), -1).sin()[:, None]
    rotated_half = torch.cat((-x[..., head_dim // 2 :], x[..., : head_dim // 2]), dim=-1)
    torch.testing.assert_close(got.float(), x * cos + rotated_half * sin, atol=2e-2, rtol=1e-2)


@needs_triton
@pytest.mark.parametrize("rows", [1, 13, 4099])
def test_triton_silu_gate_matches_the_torch_expression(rows):
    torch.manual_seed(4)
    gate_up = torch.randn(rows, 2 * 1536, device="cuda", dtype=torch.bfloat16) * 3
    gate, up = gate_up.float().chunk(2, dim=-1)
    torch.testing.assert_close(
        triton_kernels.silu_gate(gate_up).float(), torch.nn.functional.silu(gate) * up, atol=3e-2, rtol=1e-2
    )


@needs_triton
def test_fused_decoder_with_triton_kernels_matches_its_torch_kernels():
    model = _llama().to("cuda", torch.bfloat16)
    tokens = torch.randint(3, 200, (3, 40), device="cuda")
    positions = torch.arange(40, device="cuda")[None].expand(3, -1) + torch.tensor([[0], [5], [90]], device="cuda")
    allowed = torch.tril(torch.ones(40, 40, dtype=torch.bool, device="cuda"))[None].expand(3, -1, -1)
    plan = AttentionPlan(allowed=allowed, causal_only=True, positions=positions, kv_positions=positions)
    with_torch = FusedLlamaDecoder(model, kernels="torch")(tokens, plan, KVBuffer(2, 40))
    triton_decoder = FusedLlamaDecoder(model)
    assert triton_decoder.kernels == "triton"
    with_triton = triton_decoder(tokens, plan, KVBuffer(2, 40))
    torch.testing.assert_close(with_triton.float(), with_torch.float(), atol=5e-2, rtol=5e-2)


@needs_triton
@pytest.mark.parametrize("rows, vocab", [(1, 49152), (300, 49152), (7, 1000)])
def test_triton_token_nll_matches_fp32_log_softmax(rows, vocab):
    torch.manual_seed(5)
    logits = (torch.randn(rows, vocab, device="cuda") * 4).half()
    logits[0, :10] = 60000.0  # near the fp16 limit: the running maximum must keep exp() in range
    targets = torch.randint(0, vocab, (rows,), device="cuda")
    expected = -torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(triton_kernels.token_nll(logits, targets), expected, atol=1e-4, rtol=1e-5)
