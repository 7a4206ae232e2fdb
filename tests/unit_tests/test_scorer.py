from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ctxcompress.engines.scorer import CausalLMScorer, IterativePrompt, KeepRule


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


@pytest.fixture(params=["fused", "fused-static", "transformers"])
def decoder(request) -> str:
    """Every scorer test runs on both decoders (engines/decoder.py), and on the fused decoder's static-shape
    path (engines/cuda_graphs.py: bucketed shapes over a lent KV arena; run eagerly on CPU)."""
    return request.param


def _scorer(model, decoder: str, **kwargs) -> CausalLMScorer:
    if decoder == "fused-static":
        return CausalLMScorer(model, _Tok(), decoder="fused", graphs="on", **kwargs)
    return CausalLMScorer(model, _Tok(), decoder=decoder, graphs="off", **kwargs)


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
    scorer = _scorer(model, decoder, max_pass_tokens=100, head_chunk_tokens=7)
    for seq, nll in zip(sequences, scorer.token_nll(sequences), strict=True):
        np.testing.assert_allclose(nll, reference_nll(model, [1], seq), atol=1e-4)


def test_short_prefix_inlined_in_rows_matches_one_shot(model, sequences, decoder):
    scorer = _scorer(model, decoder, max_pass_tokens=128)
    prefix = [1, 7, 8, 9, 10]
    for seq, nll in zip(sequences, scorer.token_nll(sequences, prefix=prefix), strict=True):
        np.testing.assert_allclose(nll, reference_nll(model, prefix, seq), atol=1e-4)


def test_long_prefix_is_cached_once_and_matches_one_shot(model, sequences, decoder):
    scorer = _scorer(model, decoder, max_pass_tokens=128)
    prefix = [1] + list(range(40, 70))  # longer than INLINE_PREFIX_TOKENS: run once, KV cache shared by rows
    for seq, nll in zip(sequences, scorer.token_nll(sequences, prefix=prefix), strict=True):
        np.testing.assert_allclose(nll, reference_nll(model, prefix, seq), atol=1e-4)


def test_score_last_only_scores_the_tail(model, sequences, decoder):
    scorer = _scorer(model, decoder)
    nll = scorer.token_nll(sequences, score_last=[3] * len(sequences))
    for seq, values in zip(sequences, nll, strict=True):
        assert np.isnan(values[:-3]).all()
        np.testing.assert_allclose(values[-3:], reference_nll(model, [1], seq)[-3:], atol=1e-4)


def test_iterative_keep_all_equals_one_shot_for_every_stream(model, sequences, decoder):
    scorer = _scorer(model, decoder, max_pass_tokens=4096)
    question = [1, 7, 8, 9]
    prompts = [IterativePrompt(s, [[1], question], weights=(1.0, -1.0)) for s in sequences]
    for seq, scores in zip(sequences, scorer.iterative_nll(prompts, window=7), strict=True):
        plain, with_question = reference_nll(model, [1], seq), reference_nll(model, question, seq)
        np.testing.assert_allclose(scores.nll[0], plain, atol=1e-4)
        np.testing.assert_allclose(scores.nll[1], with_question, atol=1e-4)
        np.testing.assert_allclose(scores.score, plain - with_question, atol=2e-4)


def _pinned_rule(pinned: np.ndarray) -> KeepRule:
    n = len(pinned)
    return KeepRule(group=np.zeros(n, np.int64), pinned=pinned, take=np.zeros(n, np.int64))


def test_iterative_windows_are_conditioned_on_the_kept_prefix(model, sequences, decoder):
    """A window dropped whole disappears from the cache: the next window's NLL equals a fresh forward over
    the kept tokens at their original positions. (Tokens kept from a partly pruned window keep the keys
    computed with their whole window in view, as in the reference implementation.)"""
    scorer = _scorer(model, decoder, max_pass_tokens=4096)
    prompts = [IterativePrompt(s, [[1]], rule=_pinned_rule((np.arange(len(s)) // 10) % 2 == 0)) for s in sequences]
    results = scorer.iterative_nll(prompts, window=10)
    seq = sequences[4]  # 64 tokens: windows at 0, 10, ..., 60
    for start in (20, 40, 60):
        kept_index = [j for j in range(start) if (j // 10) % 2 == 0]
        window = seq[start : start + 10]
        positions = [0] + [1 + j for j in kept_index] + [1 + start + j for j in range(len(window))]
        expected = reference_nll(model, [1] + [seq[j] for j in kept_index], window, positions)
        np.testing.assert_allclose(results[4].nll[0, start : start + 10], expected, atol=1e-4)


def test_keep_rule_takes_the_best_free_tokens_of_each_group(model, decoder):
    """Quotas per (window, group), pinned tokens on top: the run conditions on exactly the tokens a plain host
    loop over its scores picks (a second run that pins those tokens gives the same NLL everywhere)."""
    scorer = _scorer(model, decoder, max_pass_tokens=4096)
    rng = np.random.default_rng(3)
    seq = rng.integers(3, 300, size=45).tolist()
    group = np.repeat([0, 1, 2, 3], [12, 9, 14, 10])
    pinned = rng.random(45) < 0.2
    take = np.array([3, 0, 5, 2])[group]
    window = 11
    [scores] = scorer.iterative_nll([IterativePrompt(seq, [[1]], rule=KeepRule(group, pinned, take))], window=window)
    kept = np.zeros(45, dtype=bool)
    for start in range(0, 45, window):
        span = np.arange(start, min(start + window, 45))
        kept[span[pinned[span]]] = True
        for g in np.unique(group[span]):
            free = span[(group[span] == g) & ~pinned[span]]
            kept[free[np.argsort(-scores.score[free], kind="stable")[: take[free[0]] if len(free) else 0]]] = True
    assert kept.sum() == KeepRule(group, pinned, take).kept_per_window(window).sum() < 45
    [replay] = scorer.iterative_nll([IterativePrompt(seq, [[1]], rule=_pinned_rule(kept))], window=window)
    np.testing.assert_allclose(replay.nll, scores.nll, atol=1e-5)


def test_window_keep_ranks_ties_and_unscorable_tokens_like_a_stable_sort():
    from ctxcompress.engines.keep_rules import window_keep

    score = torch.tensor([[1.0, 3.0, 3.0, float("inf"), 2.0, 5.0, 0.0, 3.0]])
    group = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    pinned = torch.tensor([[False, False, False, False, False, True, False, False]])
    take = torch.tensor([[2, 2, 2, 2, 1, 1, 1, 1]])
    valid = torch.tensor([[True] * 7 + [False]])
    keep = window_keep(score, group, pinned, take, valid)
    # group 0: inf first, then the earlier of the tied 3.0s; group 1: pinned 5.0 plus the best free (2.0)
    assert keep.tolist() == [[False, True, False, True, True, True, False, False]]


def test_simulated_oom_splits_batches_and_gives_identical_results(model, sequences, decoder):
    roomy = _scorer(model, decoder, max_pass_tokens=4096)
    capped = _scorer(model, decoder, max_pass_tokens=4096, oom_token_cap=70)
    for a, b in zip(roomy.token_nll(sequences), capped.token_nll(sequences), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)

    def prompts():
        return [IterativePrompt(s, [[1]], rule=_pinned_rule((np.arange(len(s)) % 8) % 3 != 0)) for s in sequences]

    first = roomy.iterative_nll(prompts(), window=8)
    capped_iter = _scorer(model, decoder, max_pass_tokens=4096, oom_token_cap=150)
    second = capped_iter.iterative_nll(prompts(), window=8)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(a.nll, b.nll, atol=1e-4)


def test_single_sequence_over_cap_is_a_clear_error(model, decoder):
    from ctxcompress.errors import ModelError

    scorer = _scorer(model, decoder, oom_token_cap=10)
    with pytest.raises(ModelError, match="out of memory"):
        scorer.token_nll([list(range(3, 40))])


def test_fp16_logit_bound_holds_for_extreme_hidden_states():
    """The bound that allows the fp16 vocabulary head (CUDA) is never below a real logit, even for inputs whose
    RMS-normalised direction lines up with a head row."""
    from ctxcompress.engines.vocab_head import fp16_logit_bound

    torch.manual_seed(0)
    norm, head = torch.rand(64) * 3, torch.randn(300, 64)
    x = torch.cat([torch.randn(1000, 64) * 50, head[:5] / norm, torch.eye(64) * 1e4])  # incl. near-worst cases
    hidden = torch.nn.functional.rms_norm(x, (64,), norm, 1e-6)
    logits = hidden @ head.T
    bound = fp16_logit_bound(norm, head)
    assert hidden.abs().max() <= bound and logits.abs().max() <= bound
    assert logits.abs().max() > bound / 20  # and not uselessly loose for aligned inputs


def test_encode_batch_through_the_rust_backend_equals_the_transformers_call(tiny_scorer):
    texts = [
        "Who wrote Hamlet? Shakespeare, in 1600.",
        "东京是日本的首都。🙂 emoji and CJK",
        '{"key": [1, 2.5, null]}\n    def f(x): return x**2',
        "",
        " leading space  and   runs",
    ]
    tokenizer = tiny_scorer.tokenizer
    assert tokenizer.backend_tokenizer.truncation is None  # the direct path is the one under test
    reference = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    expected = [
        (list(ids), [tuple(o) for o in offsets])
        for ids, offsets in zip(reference["input_ids"], reference["offset_mapping"], strict=True)
    ]
    assert tiny_scorer.encode_batch(texts) == expected
    assert tiny_scorer.encode(texts[1]) == expected[1]
