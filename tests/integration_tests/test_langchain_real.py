"""langchain_ctxcompress end to end, in-process: InMemoryVectorStore (MiniLM) over NQ passages, SmolLM2 compressor.

Three NQ questions, their 20 passages each in one store; each question retrieves its top 8 and compresses them 2x.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_ctxcompress import CtxCompressDocumentCompressor, CtxCompressRetriever

from ctxcompress.prompting import assemble_prompt
from ctxcompress.text.tokens import get_target_tokenizer
from tests.conftest import nq_rows

pytestmark = pytest.mark.real_model
COUNT = get_target_tokenizer().count
TOP_K = 8
RATE = 0.5
MAX_TOKENS = 550


class MiniLMEmbeddings(Embeddings):
    """langchain-core Embeddings over the embedded all-MiniLM-L6-v2 (sentence-transformers, CPU)."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from ctxcompress.models import default_registry

        self.model = SentenceTransformer(default_registry().resolve("minilm-l6"), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(list(texts), batch_size=32, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@pytest.fixture(scope="module")
def nq3() -> list[dict]:
    return nq_rows(3)


def build_store(rows: list[dict]) -> InMemoryVectorStore:
    """All passages of ``rows`` (20 each) in one store, each with its own metadata."""
    store = InMemoryVectorStore(MiniLMEmbeddings())
    docs = [
        Document(
            page_content=f"(Title: {c['title']}) {c['text']}",
            id=f"q{q}-p{p}",
            metadata={"title": c["title"], "question": q, "passage": p, "hasanswer": bool(c.get("hasanswer"))},
        )
        for q, row in enumerate(rows)
        for p, c in enumerate(row["ctxs"])
    ]
    store.add_documents(docs)
    return store


@pytest.fixture(scope="module")
def lc_store(nq3) -> InMemoryVectorStore:
    return build_store(nq3)


def check_output(
    store: InMemoryVectorStore, retrieved: list[Document], out: list[Document], question: str, target: int
) -> None:
    """Budget met (±5%), one output per kept input with its stored metadata, ids and record intact."""
    assert out, "something is kept"
    prompt = assemble_prompt(None, [d.page_content for d in out], question)
    assert abs(COUNT(prompt) / target - 1) <= 0.05, (COUNT(prompt), target)
    assert len({d.id for d in out}) == len(out)
    for doc in out:
        record = doc.metadata["ctxcompress"]
        source = retrieved[record["index"]]
        assert doc.id == source.id
        stored = store.get_by_ids([doc.id])[0]
        assert {k: v for k, v in doc.metadata.items() if k != "ctxcompress"} == stored.metadata
        assert record["tokens_before"] == COUNT(source.page_content)
        assert record["tokens_after"] == COUNT(doc.page_content) <= record["tokens_before"]
        assert record["method"] == "hybrid"  # the default method
    ranks = [d.metadata["ctxcompress"]["rank"] for d in out]
    assert ranks == sorted(ranks), "output follows the question-aware ranking"


def answer_kept(row: dict, out: list[Document]) -> bool:
    text = " ".join(" ".join(d.page_content.split()) for d in out).lower()
    return any(" ".join(a.split()).lower() in text for a in row["answers"])


def rate_target(retrieved: list[Document], question: str) -> int:
    return max(1, round(RATE * COUNT(assemble_prompt(None, [d.page_content for d in retrieved], question))))


def test_contextual_compression_retriever_in_process(real_compressor, lc_store, nq3):
    from langchain_classic.retrievers import ContextualCompressionRetriever

    base = lc_store.as_retriever(search_kwargs={"k": TOP_K})
    retriever = ContextualCompressionRetriever(
        base_compressor=CtxCompressDocumentCompressor(compressor=real_compressor, rate=RATE), base_retriever=base
    )
    kept = 0
    for row in nq3:
        retrieved = base.invoke(row["question"])
        out = retriever.invoke(row["question"])
        check_output(lc_store, retrieved, out, row["question"], rate_target(retrieved, row["question"]))
        assert len(out) < len(retrieved), "whole documents are dropped at this budget"
        kept += answer_kept(row, out)
    assert kept >= 2, kept


@pytest.mark.asyncio
async def test_ctxcompress_retriever_async_in_process(real_compressor, lc_store, nq3):
    row = nq3[1]
    base = lc_store.as_retriever(search_kwargs={"k": TOP_K})
    retriever = CtxCompressRetriever(base_retriever=base, compressor=real_compressor, max_tokens=MAX_TOKENS)
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
        out = await retriever.ainvoke(row["question"])
    finally:
        task.cancel()
    check_output(lc_store, await base.ainvoke(row["question"]), out, row["question"], MAX_TOKENS)
    assert answer_kept(row, out)
    assert ticks >= 10, "the event loop ran while SmolLM2 compressed"
