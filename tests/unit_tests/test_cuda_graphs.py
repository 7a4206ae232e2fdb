"""StaticShapeRunner (engines/cuda_graphs.py) on CPU: the static-shape passes a CUDA graph records, run eagerly.

Equivalence with the plain path for every scorer entry point is in test_scorer.py (the ``fused-static``
decoder parameter); here: that static passes really run, the KV arena's lending, limits and hygiene.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ctxcompress.engines.cuda_graphs import StaticShapeRunner
from ctxcompress.engines.scorer import CausalLMScorer, IterativePrompt


class _Tok:
    bos_token_id = 1
    eos_token_id = 2
    pad_token_id = None


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(5)
    return [rng.integers(3, 300, size=n).tolist() for n in (9, 70, 31)]


def _prompts(sequences):
    return [IterativePrompt(s, [[1], [1, 5, 6, 7]], weights=(1.0, -1.0)) for s in sequences]


def test_static_passes_run_at_bucketed_shapes_and_match_the_plain_path(model, sequences):
    plain = CausalLMScorer(model, _Tok(), graphs="off")
    static = CausalLMScorer(model, _Tok(), graphs="on")
    assert plain.graphs is None and static.graphs is not None
    for a, b in zip(plain.token_nll(sequences), static.token_nll(sequences), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(
        plain.iterative_nll(_prompts(sequences), window=24),
        static.iterative_nll(_prompts(sequences), window=24),
        strict=True,
    ):
        np.testing.assert_allclose(a.nll, b.nll, atol=1e-5)
    shapes = set(static.graphs._shapes)
    # rows bucketed (3 sequences -> 4 rows, 6 streams -> 8), widths to multiples of 32 (71 tokens with BOS
    # -> 96, windows of 24 and prefixes -> 32), visible slots to multiples of 128
    assert {(rows, width, visible) for rows, width, visible, _ in shapes} == {(4, 96, 96), (8, 32, 128)}
    assert any(causal for *_, causal in shapes) and any(not causal for *_, causal in shapes)
    assert static.graphs.captured == 0  # no CUDA here: the same passes, run eagerly


def test_a_lent_arena_makes_other_callers_use_eager_buffers(model, sequences):
    scorer = CausalLMScorer(model, _Tok(), graphs="on")
    expected = scorer.token_nll(sequences)
    held = scorer.graphs.allocate(2, 100)
    assert held is not None and held.static
    assert scorer.graphs.allocate(2, 100) is None  # one user at a time
    for a, b in zip(expected, scorer.token_nll(sequences), strict=True):  # falls back to eager, same result
        np.testing.assert_allclose(a, b, atol=1e-5)
    held.release()
    held.release()  # idempotent
    again = scorer.graphs.allocate(2, 100)
    assert again is not None
    again.release()


def test_caches_beyond_the_arena_are_not_static(model):
    scorer = CausalLMScorer(model, _Tok(), graphs="on", graph_max_tokens=1024)
    cache = scorer.graphs.allocate(2, 240)  # 2 rows of 512 slots; 240 + 32 of slack used, rounded up to 128
    assert cache is not None and cache.capacity == 384 and cache.storage.shape[4] == 512
    cache.release()
    assert scorer.graphs.allocate(3, 240) is None  # 4 rows of 256 slots < 240 + 32


def test_stale_non_finite_arena_content_cannot_leak_into_a_later_request(model, sequences):
    scorer = CausalLMScorer(model, _Tok(), graphs="on")
    expected = scorer.iterative_nll(_prompts(sequences), window=16)
    with torch.inference_mode():
        scorer.graphs._arena.fill_(float("nan"))  # as if an earlier pass had produced NaN keys/values
    again = scorer.iterative_nll(_prompts(sequences), window=16)
    for a, b in zip(expected, again, strict=True):
        np.testing.assert_allclose(a.nll, b.nll, atol=1e-5)


def test_settings_are_checked(model):
    with pytest.raises(ValueError, match="graphs"):
        CausalLMScorer(model, _Tok(), graphs="sometimes")
    with pytest.raises(ValueError, match="fused decoder"):
        CausalLMScorer(model, _Tok(), decoder="transformers", graphs="on")
    assert CausalLMScorer(model, _Tok()).graphs is None  # auto: CUDA only
    with pytest.raises(ValueError, match="CUDA"):
        StaticShapeRunner(
            None, num_layers=2, kv_heads=2, head_dim=16, dtype=torch.float32, device=torch.device("cpu"), pad_id=0
        )


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run on the device)")


@needs_cuda
def test_cuda_graph_replays_equal_the_recorded_pass_and_the_plain_path(model, sequences):
    """On a GPU: the first use of a shape records its graph (its output comes from the warm-up run); later
    uses replay it and must give bit-identical results; both equal the plain path within float noise."""
    import copy

    plain = CausalLMScorer(copy.deepcopy(model).cuda(), _Tok(), graphs="off")
    graphed = CausalLMScorer(copy.deepcopy(model).cuda(), _Tok(), graphs="auto")
    assert graphed.graphs is not None and graphed.graphs.capture
    recorded = graphed.token_nll(sequences)
    captured = graphed.graphs.captured
    assert captured > 0
    replayed = graphed.token_nll(sequences)
    assert graphed.graphs.captured == captured
    for a, b, c in zip(recorded, replayed, plain.token_nll(sequences), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-4)
    first = graphed.iterative_nll(_prompts(sequences), window=24)
    again = graphed.iterative_nll(_prompts(sequences), window=24)
    for a, b, c in zip(first, again, plain.iterative_nll(_prompts(sequences), window=24), strict=True):
        np.testing.assert_array_equal(a.nll, b.nll)
        np.testing.assert_allclose(a.nll, c.nll, atol=1e-4)


@needs_cuda
def test_bf16_scorer_uses_the_fp16_head_and_matches_fp32(model, sequences):
    """On a GPU the bf16 scorer projects onto the vocabulary in fp16 (the bound allows it) and gets the fp32
    model's NLL up to bf16 noise."""
    import copy

    reference = CausalLMScorer(copy.deepcopy(model), _Tok(), graphs="off").token_nll(sequences)
    scorer = CausalLMScorer(copy.deepcopy(model).to("cuda", torch.bfloat16), _Tok())
    assert scorer.head.fp16_weight is not None
    for got, want in zip(scorer.token_nll(sequences), reference, strict=True):
        assert np.abs(got[1:] - want[1:]).max() < 0.1


@needs_cuda
def test_a_failed_recording_leaves_the_shape_eager_and_the_result_right(model, sequences, monkeypatch):
    """Recording can fail (out of memory inside the graph pool): the request still gets the warm-up run's
    result, and that shape runs eagerly from then on instead of retrying the recording."""
    import contextlib
    import copy

    plain = CausalLMScorer(copy.deepcopy(model).cuda(), _Tok(), graphs="off").token_nll(sequences)

    @contextlib.contextmanager
    def failing_graph(*args, **kwargs):
        raise torch.OutOfMemoryError("simulated: no memory for the graph pool")
        yield

    monkeypatch.setattr(torch.cuda, "graph", failing_graph)
    scorer = CausalLMScorer(copy.deepcopy(model).cuda(), _Tok(), graphs="auto")
    for _ in range(2):
        for got, want in zip(scorer.token_nll(sequences), plain, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)
    assert scorer.graphs.captured == 0
    assert scorer.graphs._shapes and not any(s.capturable for s in scorer.graphs._shapes.values())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs (run on a 2-GPU device)")
def test_graphs_recorded_on_a_second_gpu_replay_real_work(model, sequences):
    """One process, a scorer per GPU (as ``serve --device cuda:0,cuda:1`` runs them): graphs recorded on cuda:1
    after cuda:0 must replay the pass on new tokens. torch's default capture stream is made once per process on
    the first capturing device; through it, a cuda:1 recording was empty and every replay returned stale output."""
    import copy

    rng = np.random.default_rng(7)
    other = [rng.integers(3, 300, size=len(s)).tolist() for s in sequences]  # same shapes, new tokens
    for index in (0, 1):
        device = torch.device("cuda", index)
        plain = CausalLMScorer(copy.deepcopy(model).to(device), _Tok(), graphs="off")
        graphed = CausalLMScorer(copy.deepcopy(model).to(device), _Tok(), graphs="auto")
        graphed.token_nll(sequences)  # records
        assert graphed.graphs.captured > 0, f"no graph kept on {device}"
        for got, want in zip(graphed.token_nll(other), plain.token_nll(other), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_run_static_pass_records_once_replays_then_and_stays_eager_after_a_failed_recording(monkeypatch) -> None:
    """The branch every static-shape pass goes through (scorer, attention probe, encoder), with the recording
    stubbed so it runs on CPU."""
    from dataclasses import dataclass

    from ctxcompress.engines import cuda_graphs

    @dataclass
    class Shape:
        output: torch.Tensor | None = None
        graph: object | None = None
        capturable: bool = True

    class Graph:
        replays = 0

        def replay(self) -> None:
            self.replays += 1

    outcome: list[object | None] = [Graph()]  # what the next recording gives: a graph, or None (it failed)
    monkeypatch.setattr(cuda_graphs, "capture_graph", lambda run, device, pool: (run(), outcome[0]))
    runs = []

    def run() -> torch.Tensor:
        runs.append(1)
        return torch.ones(2)

    cpu = torch.device("cpu")
    eager = Shape()
    assert not cuda_graphs.run_static_pass(eager, run, record=False, device=cpu, pool=None)
    assert eager.output is not None and eager.graph is None and len(runs) == 1
    recorded = Shape()
    assert cuda_graphs.run_static_pass(recorded, run, record=True, device=cpu, pool=None)  # recorded now
    assert not cuda_graphs.run_static_pass(recorded, run, record=True, device=cpu, pool=None)  # replayed
    assert recorded.graph.replays == 1 and len(runs) == 2
    outcome[0] = None
    failed = Shape()
    assert not cuda_graphs.run_static_pass(failed, run, record=True, device=cpu, pool=None)
    assert not failed.capturable and failed.output is not None
    assert not cuda_graphs.run_static_pass(failed, run, record=True, device=cpu, pool=None)  # eager, no retry
    assert len(runs) == 4
