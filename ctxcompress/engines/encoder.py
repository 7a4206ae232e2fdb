"""SentenceEncoder: sentence embeddings and contextual token embeddings from a sentence-transformers model.

What it computes:

* ``embed(texts)``: the model's own sentence embeddings (its pooling + normalisation), L2-normalised, batched
  longest-first by ``SentenceTransformer.encode``.
* ``token_embeddings(texts)``: one contextual embedding per word piece of each whole text, with the piece's
  character span. Texts longer than the encoder's window (``max_seq_length``, 256 word pieces for MiniLM) are cut
  into overlapping windows; a piece seen by several windows gets the mean of its embeddings. All windows of all
  texts run length-sorted in batches capped by padded tokens and are accumulated on the model's device. The same pass
  also gives each text's own embedding (``pooled``): the model's pooling (mean or CLS) of each window, averaged
  over the text's windows and L2-normalised — for a text that fits one window, what ``embed`` returns. Sub-span
  vectors pooled from these in-context embeddings are "late chunking" (Günther et al. 2024, arXiv:2409.04701).
* ``span_embeddings(texts, spans)``: that pooling done on the device, so only each text's own vector and its spans'
  vectors reach the host (the token vectors of a batch of 64 NQ prompts are ~0.3 GB; their device-to-host copy
  took a fifth of the GPU time of `hybrid` on an H200). These are what the chunk cache keeps.
  ``queue_span_embeddings(texts, spans)`` starts the same with the pass queued before every text's spans are known,
  so the host can split sentences while the device runs it; ``collect(spans)`` pools.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ctxcompress.engines.attention_plan import attention_backends
from ctxcompress.engines.batching import PADDING_TOLERANCE, plan_batches
from ctxcompress.engines.chunk_cache import ChunkCache, text_key
from ctxcompress.engines.device import resolve_device
from ctxcompress.engines.encoder_graphs import StaticEncoderPasses, padded_inputs
from ctxcompress.engines.tokenization import OffsetTokenizer
from ctxcompress.engines.transfers import to_device, to_host
from ctxcompress.errors import ModelError

__all__ = ["QueuedSpanEmbeddings", "SentenceEncoder", "SpanEmbeddings", "TokenEmbeddings"]

# One windowed pass over some texts (``SentenceEncoder._encode_windows``): each text's word pieces (ids, character
# spans), every piece's vector on the device, each text's own vector on the device, and where each text's pieces
# start among the vectors.
EncodedWindows = tuple[list[tuple[list[int], list[tuple[int, int]]]], torch.Tensor, torch.Tensor, np.ndarray]


@dataclass
class TokenEmbeddings:
    """Contextual embeddings of one text: ``vectors[i]`` belongs to the characters ``offsets[i]``."""

    vectors: np.ndarray  # [n_pieces, dim] float32
    offsets: np.ndarray  # [n_pieces, 2] int64 character spans
    pooled: np.ndarray | None = None  # [dim] the text's own L2-normalised embedding, from the same pass

    def span_vectors(self, spans: list[tuple[int, int]]) -> np.ndarray:
        """L2-normalised mean of the pieces of each character span ``[start, end)`` (a piece belongs to the span
        holding its last character); a span without pieces gets a zero vector."""
        if not spans or not len(self.vectors):
            return np.zeros((len(spans), self.vectors.shape[1]), dtype=np.float32)
        owner = _piece_owners([self.offsets], [spans])
        membership = np.zeros((len(spans), len(self.vectors)), dtype=np.float32)
        membership[owner[owner >= 0], np.flatnonzero(owner >= 0)] = 1.0
        out = membership @ self.vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


@dataclass
class SpanEmbeddings:
    """A text's own L2-normalised embedding and its spans' vectors (``spans[i]`` for the i-th span asked for)."""

    pooled: np.ndarray  # [dim] float32
    spans: np.ndarray  # [n_spans, dim] float32, L2-normalised (zero for a span without pieces)


class QueuedSpanEmbeddings:
    """:meth:`SentenceEncoder.queue_span_embeddings` in flight: cached entries, and one queued pass over the rest."""

    def __init__(
        self,
        encoder: SentenceEncoder,
        texts: list[str],
        cached: list[_CachedSpans | None],
        missing: list[int],
        windows: EncodedWindows | None,
        overlap: int,
    ) -> None:
        self._encoder, self._texts, self._cached = encoder, texts, cached
        self._missing, self._windows, self._overlap = missing, windows, overlap

    def collect(self, spans: Sequence[list[tuple[int, int]]]) -> list[SpanEmbeddings]:
        """Every text's :class:`SpanEmbeddings` for ``spans`` (now all known; the same as given to the queue where
        one was given then): the pass's texts pooled (waiting for the device) and cached; a cached entry whose
        spans differ from these (a text queued without spans, then split differently) is computed now."""
        encoder = self._encoder
        out: list[SpanEmbeddings | None] = [
            entry.value if entry is not None and entry.spans == _span_tuple(text_spans) else None
            for entry, text_spans in zip(self._cached, spans, strict=True)
        ]
        if self._windows is not None:
            computed = encoder._pool_spans(self._windows, [spans[i] for i in self._missing])
            for i, value in zip(self._missing, computed, strict=True):
                out[i] = encoder._remember(self._texts[i], spans[i], self._overlap, value)
        late = [i for i, value in enumerate(out) if value is None]
        if late:
            computed = encoder._span_embeddings([self._texts[i] for i in late], [spans[i] for i in late], self._overlap)
            for i, value in zip(late, computed, strict=True):
                out[i] = encoder._remember(self._texts[i], spans[i], self._overlap, value)
        return [value for value in out if value is not None]


class SentenceEncoder:
    """Runs a sentence-transformers model. Load with :meth:`from_pretrained` or wrap a loaded model.

    Args:
        model: a ``SentenceTransformer`` whose first module is a ``Transformer`` (``auto_model`` + tokenizer).
        batch_size: texts per ``embed`` batch.
        max_pass_tokens: padded word pieces per forward pass of ``token_embeddings``.
        cache_bytes: bound of the :class:`~ctxcompress.engines.chunk_cache.ChunkCache` that keeps each text's
            ``span_embeddings`` for when the same text comes back (0: no cache).
        graphs: small windowed passes at bucketed static shapes (``encoder_graphs.py``): ``auto`` (replayed as
            CUDA graphs on CUDA, exact shapes on CPU), ``on`` (static shapes everywhere, captured on CUDA only: for
            tests) or ``off``.
    """

    def __init__(
        self,
        model: Any,
        *,
        batch_size: int = 64,
        max_pass_tokens: int = 8192,
        cache_bytes: int = 0,
        graphs: str = "off",
    ) -> None:
        if graphs not in ("auto", "on", "off"):
            raise ValueError(f"unknown graphs setting {graphs!r}: use auto, on or off")
        self.model = model.eval()
        self.tokenizer = model.tokenizer
        self._offset_tokenizer = OffsetTokenizer(self.tokenizer)
        self.batch_size = batch_size
        self.max_pass_tokens = max_pass_tokens
        self.device = torch.device(str(model.device))
        self._transformer = model[0].auto_model
        limit = int(getattr(model, "max_seq_length", None) or 512)
        positions = int(getattr(self._transformer.config, "max_position_embeddings", limit) or limit)
        self.max_length = min(limit, positions)
        self._cls = self.tokenizer.cls_token_id if self.tokenizer.cls_token_id is not None else None
        self._sep = self.tokenizer.sep_token_id if self.tokenizer.sep_token_id is not None else None
        self._pad = int(self.tokenizer.pad_token_id or 0)
        self._pooling = _pooling_mode(model)
        self.cache = ChunkCache(cache_bytes, _nbytes)
        static = graphs == "on" or (graphs == "auto" and self.device.type == "cuda")
        self.static_passes = (
            StaticEncoderPasses(self._run_model, pad_id=self._pad, device=self.device, capture=True) if static else None
        )

    @classmethod
    def from_pretrained(
        cls, model_dir: str, *, device: str = "auto", dtype: str = "float32", **kwargs: Any
    ) -> SentenceEncoder:
        """Load a sentence-transformers folder onto ``device`` with weights in ``dtype`` (``float32``/``float16``)."""
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(model_dir, device=str(resolve_device(device)), trust_remote_code=False)
        except Exception as exc:
            raise ModelError(f"could not load sentence encoder from {model_dir}: {exc}") from exc
        return cls(model.to(getattr(torch, dtype)), **kwargs)

    @property
    def dimension(self) -> int:
        return int(self._transformer.config.hidden_size)

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Word-piece ids of ``text`` (no special tokens, not truncated) and each piece's character span."""
        return self._offset_tokenizer([text])[0]

    def encode_batch(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """:meth:`encode` of every text, in one tokenizer call."""
        return self._offset_tokenizer(texts)

    def count(self, text: str) -> int:
        return len(self.encode(text)[0])

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised sentence embeddings, ``[len(texts), dim]`` float32 (inputs past the window truncated)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with attention_backends():
            vectors = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def token_embeddings(self, texts: list[str], *, overlap: int = 64) -> list[TokenEmbeddings]:
        """Contextual word-piece embeddings of each whole text (windows of ``max_length`` with ``overlap``), with
        each text's own embedding; every piece's vector comes to the host (for the pooled span vectors alone,
        :meth:`span_embeddings` moves far less)."""
        encoded, vectors, pooled, starts = self._encode_windows(texts, overlap)
        host = vectors.cpu().numpy()
        pooled_host = pooled.cpu().numpy()
        return [
            TokenEmbeddings(host[starts[t] : starts[t + 1]], np.array(offsets, dtype=np.int64).reshape(-1, 2), p)
            for t, ((_, offsets), p) in enumerate(zip(encoded, pooled_host, strict=True))
        ]

    def span_embeddings(
        self,
        texts: list[str],
        spans: list[list[tuple[int, int]]],
        *,
        overlap: int = 64,
    ) -> list[SpanEmbeddings]:
        """Each text's own embedding and the vectors of its character spans (``spans[t]``: sorted, disjoint), pooled
        from the in-context token embeddings as :meth:`TokenEmbeddings.span_vectors` does, on the model's device:
        only the pooled vectors come to the host. Texts seen before with the same spans come from the cache."""
        return self.queue_span_embeddings(texts, spans, overlap=overlap).collect(spans)

    def queue_span_embeddings(
        self,
        texts: list[str],
        spans: Sequence[list[tuple[int, int]] | None],
        *,
        overlap: int = 64,
    ) -> QueuedSpanEmbeddings:
        """:meth:`span_embeddings` started before every text's spans are known (``None``: not yet): the cache is
        asked now, one pass over the texts it lacks is queued on the device, and the host goes on while it runs;
        :meth:`QueuedSpanEmbeddings.collect` pools the pass's token vectors once all spans are known. A text queued
        without spans is looked up under the spans it was last pooled for, and served so when its spans turn out to
        be those (else computed at collect)."""
        cached: list[_CachedSpans | None] = []
        for text, text_spans in zip(texts, spans, strict=True):
            # Without spans: the spans this text was last pooled for (an index entry), taken on trust and checked
            # at collect.
            wanted = self.cache.get(self._spans_key(text, overlap)) if text_spans is None else _span_tuple(text_spans)
            value = self.cache.get(self._value_key(text, wanted, overlap)) if wanted is not None else None
            cached.append(_CachedSpans(wanted, value) if value is not None else None)
        missing = [i for i, entry in enumerate(cached) if entry is None]
        windows = self._encode_windows([texts[i] for i in missing], overlap) if missing else None
        return QueuedSpanEmbeddings(self, texts, cached, missing, windows, overlap)

    def _remember(self, text: str, spans: list[tuple[int, int]], overlap: int, value: SpanEmbeddings) -> SpanEmbeddings:
        """Cache ``value`` as ``text``'s span embeddings for ``spans``, and ``spans`` as the ones it was last pooled
        for (what a lookup without spans tries)."""
        value.pooled.setflags(write=False)  # shared with later requests through the cache
        value.spans.setflags(write=False)
        pooled_for = _span_tuple(spans)
        self.cache.put(self._value_key(text, pooled_for, overlap), value)
        self.cache.put(self._spans_key(text, overlap), pooled_for)
        return value

    def _value_key(self, text: str, spans: tuple[tuple[int, int], ...], overlap: int) -> tuple:
        return text_key(text, "span_embeddings", overlap, self.max_length, spans)

    def _spans_key(self, text: str, overlap: int) -> tuple:
        """The index entry: the spans ``text`` was last pooled for."""
        return text_key(text, "span_embeddings_spans", overlap, self.max_length)

    @torch.inference_mode()
    def _span_embeddings(
        self,
        texts: list[str],
        spans: list[list[tuple[int, int]]],
        overlap: int,
    ) -> list[SpanEmbeddings]:
        """:meth:`span_embeddings` without the cache."""
        if not texts:
            return []
        return self._pool_spans(self._encode_windows(texts, overlap), spans)

    @torch.inference_mode()
    def _pool_spans(self, windows: EncodedWindows, spans: list[list[tuple[int, int]]]) -> list[SpanEmbeddings]:
        """Each text's span vectors from the token vectors of :meth:`_encode_windows`, pooled on the device."""
        encoded, vectors, pooled, starts = windows
        span_starts = np.cumsum([0] + [len(s) for s in spans])
        owners = _piece_owners([offsets for _, offsets in encoded], spans)  # each piece's span (global index)
        inside = owners >= 0
        sums = torch.zeros((int(span_starts[-1]), self.dimension), device=self.device, dtype=torch.float32)
        pieces = to_device(np.flatnonzero(inside), self.device)
        sums.index_add_(0, to_device(owners[inside], self.device), vectors[pieces])
        normalised = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
        span_vectors = to_host(normalised).numpy()
        pooled_host = to_host(pooled).numpy()
        return [
            SpanEmbeddings(pooled_host[t], span_vectors[span_starts[t] : span_starts[t + 1]])
            for t in range(len(encoded))
        ]

    @torch.inference_mode()
    def _encode_windows(self, texts: list[str], overlap: int) -> EncodedWindows:
        """One windowed pass over ``texts``, accumulated on the model's device: the word pieces of each text,
        every piece's vector (``[total pieces, dim]``, text ``t``'s rows ``starts[t]:starts[t + 1]``; the mean
        over the windows that saw it) and each text's L2-normalised own embedding (``[len(texts), dim]``)."""
        specials = int(self._cls is not None) + int(self._sep is not None)
        first = int(self._cls is not None)
        width = self.max_length - specials
        stride = max(width - min(max(overlap, 0), width // 2), 1)
        encoded = self.encode_batch(texts)
        starts = np.cumsum([0] + [len(ids) for ids, _ in encoded])
        windows: list[tuple[int, int, list[int]]] = []  # (text index, first piece, ids)
        for t, (ids, _) in enumerate(encoded):
            start = 0
            while start < len(ids):
                windows.append((t, start, ids[start : start + width]))
                if start + width >= len(ids):
                    break
                start += stride
        sums = torch.zeros((int(starts[-1]), self.dimension), device=self.device, dtype=torch.float32)
        counts = torch.zeros(int(starts[-1]), device=self.device, dtype=torch.float32)
        pooled = torch.zeros((len(texts), self.dimension), device=self.device, dtype=torch.float32)
        lengths = [len(w[2]) + specials for w in windows]
        plan = plan_batches(lengths, max_padded_tokens=self.max_pass_tokens, padding_tolerance=PADDING_TOLERANCE)
        for batch in plan:
            hidden = self._hidden([windows[w][2] for w in batch])  # [B, L, dim] on the device
            longest = hidden.shape[1]
            sizes = np.array([len(windows[w][2]) for w in batch])
            rows = np.repeat(np.arange(len(batch)), sizes)
            within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            source = rows * longest + first + within
            target = np.repeat([starts[windows[w][0]] + windows[w][1] for w in batch], sizes) + within
            target_index = to_device(target, self.device)
            sums.index_add_(0, target_index, hidden.reshape(-1, self.dimension)[to_device(source, self.device)])
            counts.index_add_(0, target_index, torch.ones(len(target), device=self.device))
            if self._pooling == "cls":
                window_vectors = hidden[:, 0]
            else:
                mask = (
                    torch.arange(longest, device=self.device)[None, :]
                    < to_device(sizes + specials, self.device)[:, None]
                )
                window_vectors = (hidden * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
            window_vectors = window_vectors / window_vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
            window_texts = to_device(np.array([windows[w][0] for w in batch], dtype=np.int64), self.device)
            pooled.index_add_(0, window_texts, window_vectors)
        pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return encoded, sums / counts.clamp_min(1.0)[:, None], pooled, starts

    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        """Last hidden states ``[B, L, dim]`` (CPU float32) of right-padded ``[CLS] ids [SEP]`` sequences."""
        return self._hidden(sequences).cpu().numpy()

    @torch.inference_mode()
    def _hidden(self, sequences: list[list[int]]) -> torch.Tensor:
        """Last hidden states ``[B, L, dim]`` (float32, on the model's device) of right-padded
        ``[CLS] ids [SEP]`` sequences."""
        rows = [
            ([self._cls] if self._cls is not None else []) + s + ([self._sep] if self._sep is not None else [])
            for s in sequences
        ]
        longest = max(len(r) for r in rows)
        if self.static_passes is not None and self.static_passes.fits(len(rows), longest):
            hidden = self.static_passes(rows)
            if hidden is not None:
                return hidden
        input_ids, mask = padded_inputs(rows, (len(rows), longest), self._pad)
        return self._run_model(to_device(input_ids, self.device), to_device(mask, self.device)).float()

    def _run_model(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The transformer's last hidden states ``[B, L, dim]`` (the model's dtype) for ids on its device."""
        with attention_backends():  # not cuDNN's: it plans every new shape (float16 on CUDA would pick it)
            return self._transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


_TEXT_SHIFT = 1 << 40  # keys text * shift + character: every text's characters sort before the next text's


def _piece_owners(offsets: Sequence[Sequence[Sequence[int]]], spans: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
    """For every piece of every text in order (``offsets[t]``: text ``t``'s pieces as character spans), the index
    of the span holding its last character among all texts' spans in order (``spans[t]``: text ``t``'s, sorted by
    start), -1 for none. One search over text-major keys for all texts."""
    if len(offsets) != len(spans):
        raise ValueError(f"{len(offsets)} texts' pieces but {len(spans)} texts' spans")
    piece_counts = np.array([len(o) for o in offsets], dtype=np.int64)
    span_counts = np.array([len(s) for s in spans], dtype=np.int64)
    n_pieces, n_spans = int(piece_counts.sum()), int(span_counts.sum())
    if not n_pieces or not n_spans:
        return np.full(n_pieces, -1, dtype=np.int64)
    flat = itertools.chain.from_iterable
    pieces = np.fromiter(flat(flat(offsets)), dtype=np.int64, count=2 * n_pieces).reshape(-1, 2)
    bounds = np.fromiter(flat(flat(spans)), dtype=np.int64, count=2 * n_spans).reshape(-1, 2)
    piece_text = np.repeat(np.arange(len(offsets), dtype=np.int64), piece_counts)
    span_text = np.repeat(np.arange(len(spans), dtype=np.int64), span_counts)
    lasts = np.maximum(pieces[:, 0], pieces[:, 1] - 1)
    owner = np.searchsorted(span_text * _TEXT_SHIFT + bounds[:, 0], piece_text * _TEXT_SHIFT + lasts, side="right") - 1
    known = np.clip(owner, 0, None)
    inside = (owner >= 0) & (span_text[known] == piece_text) & (lasts < bounds[known, 1])
    return np.where(inside, owner, -1)


@dataclass(frozen=True)
class _CachedSpans:
    """A cache hit of :meth:`SentenceEncoder.queue_span_embeddings`: span embeddings and the spans pooled for."""

    spans: tuple[tuple[int, int], ...]
    value: SpanEmbeddings


def _span_tuple(spans: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    return tuple((int(start), int(end)) for start, end in spans)


def _nbytes(entry: SpanEmbeddings | tuple[tuple[int, int], ...]) -> int:
    """Bytes of a cache entry: span embeddings, or a spans index entry (+ the objects themselves)."""
    if isinstance(entry, tuple):
        return 64 * len(entry) + 120
    return int(entry.pooled.nbytes + entry.spans.nbytes) + 200


def _pooling_mode(model: Any) -> str:
    """``cls`` when the model's pooling module takes the CLS vector, else ``mean`` (sentence-transformers 5 and 6
    spell the setting differently)."""
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if isinstance(mode, str):
            return "cls" if mode == "cls" else "mean"
        if getattr(module, "pooling_mode_cls_token", False):
            return "cls"
    return "mean"
