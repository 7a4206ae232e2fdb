"""llama_index.postprocessor.ctxcompress mechanics on the tiny random scorer: mapping, metadata, order, async."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.ctxcompress import CtxCompressNodePostprocessor
from pydantic import ValidationError

from ctxcompress import CompressionResult, Compressor, InvalidInput
from ctxcompress.prompting import assemble_prompt
from ctxcompress.text.tokens import get_target_tokenizer
from tests.conftest import nq_rows

COUNT = get_target_tokenizer().count


class RecordingCompressor(Compressor):
    """The real Compressor, keeping each result so a test can compare the integration's output with it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.results: list[CompressionResult] = []

    def compress(self, request) -> CompressionResult:
        result = super().compress(request)
        self.results.append(result)
        return result


@pytest.fixture()
def recorder(tiny_compressor) -> RecordingCompressor:
    return RecordingCompressor(pool=tiny_compressor.pool)


@pytest.fixture(scope="module")
def row() -> dict:
    return nq_rows(1)[0]


def nodes_of(row: dict, n: int = 5) -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(
                text=f"(Title: {c['title']}) {c['text']}",
                id_=f"node-{i}",
                metadata={"title": c["title"], "position": i},
            ),
            score=1.0 - i / 10,
        )
        for i, c in enumerate(row["ctxs"][:n])
    ]


def check_mapping(inputs: list[NodeWithScore], outputs: list[NodeWithScore], result: CompressionResult) -> None:
    """Outputs are the result's kept documents, in order, each a copy of its input node (id, metadata, score)
    with the compressed text and the ``ctxcompress`` record (hidden from the LLM and embedding views)."""
    assert [n.node.get_content(MetadataMode.NONE) for n in outputs] == [k.text for k in result.documents]
    rank_of = {index: rank for rank, index in enumerate(result.ranking or [])}
    for position, (out, kept) in enumerate(zip(outputs, result.documents, strict=True)):
        source = inputs[kept.index]
        assert out.node.node_id == source.node.node_id
        assert out.score == source.score
        assert {k: v for k, v in out.node.metadata.items() if k != "ctxcompress"} == source.node.metadata
        assert out.node.metadata["ctxcompress"] == {
            "index": kept.index,
            "rank": rank_of.get(kept.index, position),
            "method": result.method,
            "tokens_before": COUNT(source.node.get_content(MetadataMode.NONE)),
            "tokens_after": COUNT(kept.text),
        }
        assert "ctxcompress" not in out.node.get_content(MetadataMode.LLM)
        assert "title: " in out.node.get_content(MetadataMode.LLM), "the node's own metadata is still shown"
    assert all("ctxcompress" not in n.node.metadata for n in inputs), "inputs are not modified"


@pytest.mark.parametrize(("method", "budget"), [("llmlingua", {"rate": 0.3}), ("longllmlingua", {"max_tokens": 300})])
def test_postprocessor_maps_the_core_result(recorder, row, method, budget):
    nodes = nodes_of(row)
    post = CtxCompressNodePostprocessor(
        compressor=recorder, method=method, instruction="Answer briefly.", options={"window": 64}, **budget
    )
    out = post.postprocess_nodes(nodes, query_str=row["question"])
    (result,) = recorder.results
    check_mapping(nodes, out, result)
    assert result.method == method and 0 < len(out) <= len(nodes)
    texts = [n.node.get_content(MetadataMode.NONE) for n in out]
    assert assemble_prompt("Answer briefly.", texts, row["question"]) == result.prompt
    assert abs(result.compressed_tokens / result.target_tokens - 1) <= 0.05


def test_dropped_nodes_are_not_returned_and_order_follows_ranking(recorder, row):
    nodes = nodes_of(row, 8)
    post = CtxCompressNodePostprocessor(compressor=recorder, max_tokens=200)
    out = post.postprocess_nodes(nodes, query_bundle=QueryBundle(row["question"]))
    check_mapping(nodes, out, recorder.results[0])
    assert len(out) < len(nodes), "a tight budget drops whole nodes"
    ranks = [n.node.metadata["ctxcompress"]["rank"] for n in out]
    assert ranks == sorted(ranks)
    assert recorder.results[0].prompt.endswith(row["question"])


def test_without_a_query(recorder, row):
    nodes = nodes_of(row, 4)
    with pytest.raises(InvalidInput, match="needs a question"):
        CtxCompressNodePostprocessor(compressor=recorder).postprocess_nodes(nodes)
    out = CtxCompressNodePostprocessor(compressor=recorder, method="llmlingua", rate=0.5).postprocess_nodes(nodes)
    check_mapping(nodes, out, recorder.results[-1])


def test_bad_settings_and_empty_input(tiny_compressor, row):
    with pytest.raises(ValidationError, match="exactly one of compressor"):
        CtxCompressNodePostprocessor(rate=0.5)
    with pytest.raises(ValidationError, match="at most one of rate"):
        CtxCompressNodePostprocessor(compressor=tiny_compressor, rate=0.5, max_tokens=100)
    with pytest.raises(ValidationError, match="Extra inputs"):
        CtxCompressNodePostprocessor(compressor=tiny_compressor, top_n=3)
    post = CtxCompressNodePostprocessor(compressor=tiny_compressor, options={"nope": 1})
    with pytest.raises(InvalidInput, match="unknown option 'nope'"):
        post.postprocess_nodes(nodes_of(row, 2), query_str="q")
    assert post.postprocess_nodes([], query_str="q") == []


@pytest.mark.asyncio
async def test_async_maps_results_and_does_not_block_the_loop(recorder, row):
    nodes = nodes_of(row)
    post = CtxCompressNodePostprocessor(compressor=recorder, max_tokens=300)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.002)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        out = await post.apostprocess_nodes(nodes, query_str=row["question"])
    finally:
        task.cancel()
    check_mapping(nodes, out, recorder.results[0])
    assert ticks >= 5, "the event loop kept running while compressing"
