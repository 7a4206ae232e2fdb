"""CtxCompressNodePostprocessor end to end, in-process: VectorStoreIndex (MiniLM) over NQ passages, SmolLM2.

Three NQ questions, their 20 passages each in one index; each question retrieves its top 8 nodes and the
postprocessor compresses them (one document per node).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.postprocessor.ctxcompress import CtxCompressNodePostprocessor
from pydantic import PrivateAttr

from ctxcompress.prompting import assemble_prompt
from ctxcompress.text.tokens import get_target_tokenizer
from tests.conftest import nq_rows

pytestmark = pytest.mark.real_model
COUNT = get_target_tokenizer().count
TOP_K = 8
MAX_TOKENS = 550
RATE = 0.5


class MiniLMEmbedding(BaseEmbedding):
    """LlamaIndex embedding over the embedded all-MiniLM-L6-v2 (sentence-transformers, CPU)."""

    _model: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        from sentence_transformers import SentenceTransformer

        from ctxcompress.models import default_registry

        super().__init__(model_name="minilm-l6", **kwargs)
        self._model = SentenceTransformer(default_registry().resolve("minilm-l6"), device="cpu")

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(list(texts), batch_size=32, normalize_embeddings=True).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)


@pytest.fixture(scope="module")
def nq3_rows() -> list[dict]:
    return nq_rows(3)


def build_index(rows: list[dict]) -> VectorStoreIndex:
    """All passages of ``rows`` (20 each) as nodes with their own metadata (title embedded with the text)."""
    nodes = [
        TextNode(
            text=c["text"],
            id_=f"q{q}-p{p}",
            metadata={"title": c["title"], "question": q, "passage": p, "hasanswer": bool(c.get("hasanswer"))},
            excluded_embed_metadata_keys=["question", "passage", "hasanswer"],
            excluded_llm_metadata_keys=["question", "passage", "hasanswer"],
        )
        for q, row in enumerate(rows)
        for p, c in enumerate(row["ctxs"])
    ]
    return VectorStoreIndex(nodes, embed_model=MiniLMEmbedding())


@pytest.fixture(scope="module")
def li_index(nq3_rows) -> VectorStoreIndex:
    return build_index(nq3_rows)


def text_of(node: NodeWithScore) -> str:
    return node.node.get_content(MetadataMode.NONE)


def check_output(
    index: VectorStoreIndex, retrieved: list[NodeWithScore], out: list[NodeWithScore], question: str, target: int
) -> None:
    """Budget met (±5%); each output is a kept retrieved node with its metadata, id, score and record."""
    assert out, "something is kept"
    prompt = assemble_prompt(None, [text_of(n) for n in out], question)
    assert abs(COUNT(prompt) / target - 1) <= 0.05, (COUNT(prompt), target)
    assert len({n.node.node_id for n in out}) == len(out)
    for node in out:
        record = node.node.metadata["ctxcompress"]
        source = retrieved[record["index"]]
        assert node.node.node_id == source.node.node_id
        assert node.score == source.score
        stored = index.docstore.get_node(node.node.node_id)
        assert {k: v for k, v in node.node.metadata.items() if k != "ctxcompress"} == stored.metadata
        assert node.node.excluded_llm_metadata_keys[:3] == ["question", "passage", "hasanswer"]
        assert record["tokens_before"] == COUNT(text_of(source))
        assert record["tokens_after"] == COUNT(text_of(node)) <= record["tokens_before"]
    ranks = [n.node.metadata["ctxcompress"]["rank"] for n in out]
    assert ranks == sorted(ranks), "output follows the question-aware ranking"


def answer_kept(row: dict, out: list[NodeWithScore]) -> bool:
    text = " ".join(" ".join(text_of(n).split()) for n in out).lower()
    return any(" ".join(a.split()).lower() in text for a in row["answers"])


def rate_target(retrieved: list[NodeWithScore], question: str) -> int:
    return max(1, round(RATE * COUNT(assemble_prompt(None, [text_of(n) for n in retrieved], question))))


def test_postprocessor_after_index_retriever_in_process(real_compressor, li_index, nq3_rows):
    retriever = li_index.as_retriever(similarity_top_k=TOP_K)
    post = CtxCompressNodePostprocessor(compressor=real_compressor, max_tokens=MAX_TOKENS)
    kept = 0
    for row in nq3_rows:
        retrieved = retriever.retrieve(row["question"])
        out = post.postprocess_nodes(retrieved, query_str=row["question"])
        check_output(li_index, retrieved, out, row["question"], MAX_TOKENS)
        assert len(out) < len(retrieved), "whole nodes are dropped at this budget"
        kept += answer_kept(row, out)
    assert kept >= 2, kept


@pytest.mark.asyncio
async def test_postprocessor_async_in_process(real_compressor, li_index, nq3_rows):
    row = nq3_rows[2]
    retrieved = await li_index.as_retriever(similarity_top_k=TOP_K).aretrieve(row["question"])
    post = CtxCompressNodePostprocessor(compressor=real_compressor, rate=RATE)
    # Earlier tests compressed these chunks: without clearing, the encoder's chunk cache answers in milliseconds.
    real_compressor.pool.encoder("minilm-l6").cache.clear()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        out = await post.apostprocess_nodes(retrieved, query_str=row["question"])
    finally:
        task.cancel()
    check_output(li_index, retrieved, out, row["question"], rate_target(retrieved, row["question"]))
    assert answer_kept(row, out)
    assert ticks >= 10, "the event loop ran while SmolLM2 compressed"
