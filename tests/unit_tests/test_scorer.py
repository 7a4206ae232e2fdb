from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ctxcompress.engines.scorer import CausalLMScorer, IterativePrompt


class _Tok:
    bos_token_id = 1
    eos_token_id = 2
    pad_token_id = None


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(params=["fused", "transformers"])
def decoder(request) -> str:
    """Every scorer test runs on both decoders (engines/decoder.py)."""
    return request.param


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(0)
    return [rng.integers(3, 300, size=n).tolist() for n in (5, 40, 17, 33, 64)]


def reference_nll(model, context: list[int], targets: list[int], positions: list[int] | None = None) -> np.ndarray:
    """NLL of ``targets`` after ``context`` from one plain forward pass (full logits)."""
    ids = torch.tensor([context + targets])
    kwargs = {"position_ids": torch.tensor([positions])} if positions is not None else {}
    with torch.no_grad():
        logp = torch.log_softmax(model(ids, **kwargs).logits[0].float(), -1)
    full = context + targets
    return np.array([-logp[len(context) + i - 1, full[len(context) + i]].item() for i in range(len(targets))])


def test_token_nll_matches_one_shot_forward(model, sequences, decoder):
    scorer = CausalLMScorer(model, _Tok(), decoder=decoder, max_batch_tokens=100, head_chunk_tokens=7)
    for seq, nll in zip(sequences, scorer.token_nll(sequences), strict=True):
        np.testing.assert_allclose(nll, reference_nll(model, [1], seq), atol=1e-4)


def test_short_prefix_inlined_in_rows_matches_one_shot(model, sequences, decoder):
    scorer = CausalLMScorer(model, _Tok(), decoder=decoder, max_batch_tokens=128)
    prefix = [1, 7, 8, 9, 10]
    for seq, nll in zip(sequences, scorer.token_nll(sequences, prefix=prefix), strict=True):
        np.testing.assert_allclose(nll, reference_nll(model, prefix, seq), atol=1e-4)


def test_long_prefix_is_cached_once_and_matches_one_shot(model, sequences, decoder):
    scorer = CausalLMScorer(model, _Tok(), decoder=decoder, max_batch_tokens=128)
    prefix = [1] + list(range(40, 70))  # longer than INLINE_PREFIX_TOKENS: run once, KV cache shared by rows
    for seq, nll in zip(sequences, scorer.token_nll(sequences, prefix=prefix), strict=True):
        np.testing.assert_allclose(nll, reference_nll(model, prefix, seq), atol=1e-4)


def test_score_last_only_scores_the_tail(model, sequences, decoder):
    scorer = CausalLMScorer(model, _Tok(), decoder=decoder)
    nll = scorer.token_nll(sequences, score_last=[3] * len(sequences))
    for seq, values in zip(sequences, nll, strict=True):
        assert np.isnan(values[:-3]).all()
        np.testing.assert_allclose(values[-3:], reference_nll(model, [1], seq)[-3:], atol=1e-4)


def test_iterative_keep_all_equals_one_shot_for_every_stream(model, sequences, decoder):
    scorer = CausalLMScorer(model, _Tok(), decoder=decoder, max_batch_tokens=4096)
    question = [1, 7, 8, 9]
    seen: dict[int, dict[int, np.ndarray]] = {}

    def keep_all(prompt: int, start: int, nll: np.ndarray) -> np.ndarray:
        seen.setdefault(prompt, {})[start] = nll.copy()
        return np.ones(nll.shape[1], dtype=bool)

    scorer.iterative_nll([IterativePrompt(s, [[1], question]) for s in sequences], window=7, select=keep_all)
    for i, seq in enumerate(sequences):
        got = np.concatenate([seen[i][k] for k in sorted(seen[i])], axis=1)
        np.testing.assert_allclose(got[0], reference_nll(model, [1], seq), atol=1e-4)
        np.testing.assert_allclose(got[1], reference_nll(model, question, seq), atol=1e-4)


def test_iterative_windows_are_conditioned_on_the_kept_prefix(model, sequences, decoder):
    """A window dropped whole disappears from the cache: the next window's NLL equals a fresh forward over
    the kept tokens at their original positions. (Tokens kept from a partly pruned window keep the keys
    computed with their whole window in view, as in the reference implementation.)"""
    scorer = CausalLMScorer(model, _Tok(), decoder=decoder, max_batch_tokens=4096)
    seen: dict[tuple[int, int], np.ndarray] = {}

    def drop_odd_windows(prompt: int, start: int, nll: np.ndarray) -> np.ndarray:
        seen[(prompt, start)] = nll[0].copy()
        return np.full(nll.shape[1], (start // 10) % 2 == 0)

    scorer.iterative_nll([IterativePrompt(s, [[1]]) for s in sequences], window=10, select=drop_odd_windows)
    seq = sequences[4]  # 64 tokens: windows at 0, 10, ..., 60
    for start in (20, 40, 60):
        kept_index = [j for j in range(start) if (j // 10) % 2 == 0]
        window = seq[start : start + 10]
        positions = [0] + [1 + j for j in kept_index] + [1 + start + j for j in range(len(window))]
        expected = reference_nll(model, [1] + [seq[j] for j in kept_index], window, positions)
        np.testing.assert_allclose(seen[(4, start)], expected, atol=1e-4)


def test_simulated_oom_splits_batches_and_gives_identical_results(model, sequences, decoder):
    roomy = CausalLMScorer(model, _Tok(), decoder=decoder, max_batch_tokens=4096)
    capped = CausalLMScorer(model, _Tok(), decoder=decoder, max_batch_tokens=4096, oom_token_cap=70)
    for a, b in zip(roomy.token_nll(sequences), capped.token_nll(sequences), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)

    def collect(store):
        def select(prompt, start, nll):
            store[(prompt, start)] = nll.copy()
            return np.arange(nll.shape[1]) % 3 != 0

        return select

    first: dict = {}
    second: dict = {}
    roomy.iterative_nll([IterativePrompt(s, [[1]]) for s in sequences], window=8, select=collect(first))
    capped_iter = CausalLMScorer(model, _Tok(), decoder=decoder, max_batch_tokens=4096, oom_token_cap=150)
    capped_iter.iterative_nll([IterativePrompt(s, [[1]]) for s in sequences], window=8, select=collect(second))
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(first[key], second[key], atol=1e-4)


def test_single_sequence_over_cap_is_a_clear_error(model, decoder):
    from ctxcompress.errors import ModelError

    scorer = CausalLMScorer(model, _Tok(), decoder=decoder, oom_token_cap=10)
    with pytest.raises(ModelError, match="out of memory"):
        scorer.token_nll([list(range(3, 40))])
