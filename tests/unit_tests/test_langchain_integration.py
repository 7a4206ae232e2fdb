"""langchain_ctxcompress mechanics on the tiny random scorer: mapping, metadata, order, async, composition."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_ctxcompress import (
    CtxCompressDocumentCompressor,
    CtxCompressDocumentTransformer,
    CtxCompressRetriever,
)
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


class ListRetriever(BaseRetriever):
    """A retriever over a fixed candidate list (the vector-store path is in the integration tests)."""

    documents: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return list(self.documents)


@pytest.fixture()
def recorder(tiny_compressor) -> RecordingCompressor:
    return RecordingCompressor(pool=tiny_compressor.pool)


@pytest.fixture(scope="module")
def row() -> dict:
    return nq_rows(1)[0]


def documents_of(row: dict, n: int = 5) -> list[Document]:
    return [
        Document(
            page_content=f"(Title: {c['title']}) {c['text']}",
            id=f"doc-{i}",
            metadata={"title": c["title"], "source": "nq", "position": i},
        )
        for i, c in enumerate(row["ctxs"][:n])
    ]


def check_mapping(inputs: list[Document], outputs: list[Document], result: CompressionResult) -> None:
    """Outputs are the result's kept documents, in order, each with its input's id/metadata plus the record."""
    assert [d.page_content for d in outputs] == [k.text for k in result.documents]
    rank_of = {index: rank for rank, index in enumerate(result.ranking or [])}
    for position, (doc, kept) in enumerate(zip(outputs, result.documents, strict=True)):
        source = inputs[kept.index]
        assert doc.id == source.id
        assert {k: v for k, v in doc.metadata.items() if k != "ctxcompress"} == source.metadata
        assert doc.metadata["ctxcompress"] == {
            "index": kept.index,
            "rank": rank_of.get(kept.index, position),
            "method": result.method,
            "tokens_before": COUNT(source.page_content),
            "tokens_after": COUNT(kept.text),
        }
    assert all("ctxcompress" not in d.metadata for d in inputs), "inputs are not modified"


@pytest.mark.parametrize(("method", "budget"), [("llmlingua", {"rate": 0.3}), ("longllmlingua", {"max_tokens": 300})])
def test_compressor_maps_the_core_result(recorder, row, method, budget):
    docs = documents_of(row)
    compressor = CtxCompressDocumentCompressor(
        compressor=recorder, method=method, instruction="Answer briefly.", options={"window": 64}, **budget
    )
    out = list(compressor.compress_documents(docs, row["question"]))
    (result,) = recorder.results
    check_mapping(docs, out, result)
    assert result.method == method and 0 < len(out) <= len(docs)
    prompt = assemble_prompt("Answer briefly.", [d.page_content for d in out], row["question"])
    assert prompt == result.prompt, "the request carried instruction, question and the documents in order"
    assert COUNT(prompt) == result.compressed_tokens
    assert abs(result.compressed_tokens / result.target_tokens - 1) <= 0.05
    if "max_tokens" in budget:
        assert result.target_tokens == budget["max_tokens"]


def test_dropped_documents_are_not_returned_and_order_follows_ranking(recorder, row):
    docs = documents_of(row, 8)
    out = CtxCompressDocumentCompressor(compressor=recorder, max_tokens=200).compress_documents(docs, row["question"])
    check_mapping(docs, list(out), recorder.results[0])
    assert len(out) < len(docs), "a tight budget drops whole documents"
    ranks = [d.metadata["ctxcompress"]["rank"] for d in out]
    assert ranks == sorted(ranks)


def test_bad_options_and_settings_raise_clear_errors(tiny_compressor, row):
    bad = CtxCompressDocumentCompressor(compressor=tiny_compressor, options={"no_such_option": 1})
    with pytest.raises(InvalidInput, match="no_such_option"):
        bad.compress_documents(documents_of(row, 2), row["question"])
    with pytest.raises(InvalidInput, match="unknown method 'nope'"):
        CtxCompressDocumentCompressor(compressor=tiny_compressor, method="nope").compress_documents(
            documents_of(row, 2), row["question"]
        )
    with pytest.raises(ValidationError, match="exactly one of compressor"):
        CtxCompressDocumentCompressor(rate=0.5)
    with pytest.raises(ValidationError, match="at most one of rate"):
        CtxCompressDocumentCompressor(base_url="http://127.0.0.1:1", rate=0.5, max_tokens=100)
    with pytest.raises(ValidationError):
        CtxCompressDocumentCompressor(base_url="http://127.0.0.1:1", rate=1.5)
    with pytest.raises(ValidationError, match="Extra inputs"):
        CtxCompressRetriever(base_url="http://127.0.0.1:1", base_retriever=ListRetriever(documents=[]), k=3)


def test_empty_and_blank_inputs_keep_nothing(tiny_compressor):
    compressor = CtxCompressDocumentCompressor(compressor=tiny_compressor)
    assert compressor.compress_documents([], "q") == []
    assert compressor.compress_documents([Document(page_content="  ")], "q") == []


def test_transformer_is_question_free_by_default(recorder, row):
    docs = documents_of(row)
    transformer = CtxCompressDocumentTransformer(compressor=recorder, max_tokens=250)
    check_mapping(docs, list(transformer.transform_documents(docs)), recorder.results[-1])
    assert recorder.results[-1].method == "llmlingua"
    with pytest.raises(InvalidInput, match="unknown argument"):
        transformer.transform_documents(docs, query="x")
    question_aware = CtxCompressDocumentTransformer(compressor=recorder, method="longllmlingua", rate=0.3)
    with pytest.raises(InvalidInput, match="needs a question"):
        question_aware.transform_documents(docs)
    out = question_aware.transform_documents(docs, question=row["question"])
    assert recorder.results[-1].prompt.endswith(row["question"])
    check_mapping(docs, list(out), recorder.results[-1])


def test_composes_in_contextual_compression_retriever_and_pipeline(recorder, row):
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline

    docs = documents_of(row)
    base = ListRetriever(documents=docs)
    compressor = CtxCompressDocumentCompressor(compressor=recorder, max_tokens=300)
    via_langchain = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    check_mapping(docs, via_langchain.invoke(row["question"]), recorder.results[-1])

    # A query-free transformer, then the query-aware compressor over the transformer's output.
    pipeline = DocumentCompressorPipeline(
        transformers=[CtxCompressDocumentTransformer(compressor=recorder, rate=0.8), compressor]
    )
    out = pipeline.compress_documents(docs, row["question"])
    first, second = recorder.results[-2:]
    assert (first.method, second.method) == ("llmlingua", "hybrid")  # hybrid: the default method
    assert [d.page_content for d in out] == [k.text for k in second.documents]
    for doc in out:  # the record is the last stage's; the metadata still belongs to the source document
        source = docs[int(doc.id.split("-")[1])]
        assert doc.metadata["title"] == source.metadata["title"]
        assert doc.metadata["ctxcompress"]["index"] == [k.index for k in first.documents].index(
            source.metadata["position"]
        )


@pytest.mark.asyncio
async def test_async_paths_map_results_and_do_not_block_the_loop(recorder, row):
    docs = documents_of(row)
    compressor = CtxCompressDocumentCompressor(compressor=recorder, max_tokens=300)
    retriever = CtxCompressRetriever(base_retriever=ListRetriever(documents=docs), compressor=recorder, max_tokens=300)
    transformer = CtxCompressDocumentTransformer(compressor=recorder, max_tokens=250)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.002)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        got = await compressor.acompress_documents(docs, row["question"])
        from_retriever = await retriever.ainvoke(row["question"])
        transformed = await transformer.atransform_documents(docs)
    finally:
        task.cancel()
    first, second, third = recorder.results
    check_mapping(docs, list(got), first)
    check_mapping(docs, from_retriever, second)
    check_mapping(docs, list(transformed), third)
    assert first.prompt == second.prompt and third.method == "llmlingua"
    assert ticks >= 5, "the event loop kept running while compressing"
