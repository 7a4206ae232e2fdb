"""SentenceEncoder: sentence embeddings and contextual token embeddings from a sentence-transformers model.

What it computes:

* ``embed(texts)``: the model's own sentence embeddings (its pooling + normalisation), L2-normalised, batched
  longest-first by ``SentenceTransformer.encode``.
* ``token_embeddings(texts)``: one contextual embedding per word piece of each whole text, with the piece's
  character span. Texts longer than the encoder's window (``max_seq_length``, 256 word pieces for MiniLM) are cut
  into overlapping windows; a piece seen by several windows gets the mean of its embeddings. All windows of all
  texts run length-sorted in batches capped by padded tokens, outputs are moved to CPU per batch. The same pass
  also gives each text's own embedding (``pooled``): the model's pooling (mean or CLS) of each window, averaged
  over the text's windows and L2-normalised — for a text that fits one window, what ``embed`` returns. Sub-span
  vectors pooled from these in-context embeddings are "late chunking" (Günther et al. 2024, arXiv:2409.04701).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ctxcompress.engines.batching import plan_batches
from ctxcompress.engines.chunk_cache import ChunkCache, text_key
from ctxcompress.engines.device import resolve_device
from ctxcompress.errors import ModelError

__all__ = ["SentenceEncoder", "TokenEmbeddings"]


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
        starts = np.array([s for s, _ in spans])
        ends = np.array([e for _, e in spans])
        lasts = np.maximum(self.offsets[:, 0], self.offsets[:, 1] - 1)
        owner = np.searchsorted(starts, lasts, side="right") - 1
        inside = (owner >= 0) & (lasts < ends[np.clip(owner, 0, None)])
        membership = np.zeros((len(spans), len(self.vectors)), dtype=np.float32)
        membership[owner[inside], np.flatnonzero(inside)] = 1.0
        out = membership @ self.vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


class SentenceEncoder:
    """Runs a sentence-transformers model. Load with :meth:`from_pretrained` or wrap a loaded model.

    Args:
        model: a ``SentenceTransformer`` whose first module is a ``Transformer`` (``auto_model`` + tokenizer).
        batch_size: texts per ``embed`` batch.
        max_pass_tokens: padded word pieces per forward pass of ``token_embeddings``.
        cache_bytes: bound of the :class:`~ctxcompress.engines.chunk_cache.ChunkCache` that keeps each text's
            ``token_embeddings`` for when the same text comes back (0: no cache).
    """

    def __init__(self, model: Any, *, batch_size: int = 64, max_pass_tokens: int = 8192, cache_bytes: int = 0) -> None:
        self.model = model.eval()
        self.tokenizer = model.tokenizer
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

    @classmethod
    def from_pretrained(cls, model_dir: str, *, device: str = "auto", **kwargs: Any) -> SentenceEncoder:
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(model_dir, device=str(resolve_device(device)), trust_remote_code=False)
        except Exception as exc:
            raise ModelError(f"could not load sentence encoder from {model_dir}: {exc}") from exc
        return cls(model, **kwargs)

    @property
    def dimension(self) -> int:
        return int(self._transformer.config.hidden_size)

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Word-piece ids of ``text`` (no special tokens) and each piece's character span."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def encode_batch(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """:meth:`encode` of every text, in one tokenizer call."""
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [
            (list(ids), [tuple(o) for o in offsets])
            for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
        ]

    def count(self, text: str) -> int:
        return len(self.encode(text)[0])

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised sentence embeddings, ``[len(texts), dim]`` float32 (inputs past the window truncated)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def token_embeddings(self, texts: list[str], *, overlap: int = 64) -> list[TokenEmbeddings]:
        """Contextual word-piece embeddings of each whole text (windows of ``max_length`` with ``overlap``); texts
        seen before come from the cache (read-only arrays), the others are computed together."""
        keys = [text_key(text, "token_embeddings", overlap, self.max_length) for text in texts]
        out: list[TokenEmbeddings | None] = [self.cache.get(key) for key in keys]
        missing = [i for i, found in enumerate(out) if found is None]
        for i, computed in zip(missing, self._token_embeddings([texts[i] for i in missing], overlap), strict=True):
            for array in (computed.vectors, computed.offsets, computed.pooled):
                if array is not None:
                    array.setflags(write=False)  # shared with later requests through the cache
            self.cache.put(keys[i], computed)
            out[i] = computed
        return [found for found in out if found is not None]

    @torch.inference_mode()
    def _token_embeddings(self, texts: list[str], overlap: int) -> list[TokenEmbeddings]:
        if not texts:
            return []
        specials = int(self._cls is not None) + int(self._sep is not None)
        width = self.max_length - specials
        stride = max(width - min(max(overlap, 0), width // 2), 1)
        encoded = self.encode_batch(texts)
        windows: list[tuple[int, int, list[int]]] = []  # (text index, first piece, ids)
        for t, (ids, _) in enumerate(encoded):
            start = 0
            while start < len(ids):
                windows.append((t, start, ids[start : start + width]))
                if start + width >= len(ids):
                    break
                start += stride
        sums = [np.zeros((len(ids), self.dimension), dtype=np.float32) for ids, _ in encoded]
        counts = [np.zeros(len(ids), dtype=np.float32) for ids, _ in encoded]
        pooled = np.zeros((len(texts), self.dimension), dtype=np.float32)
        lengths = [len(w[2]) + specials for w in windows]
        for batch in plan_batches(lengths, max_padded_tokens=self.max_pass_tokens):
            hidden = self._forward([windows[w][2] for w in batch])
            for row, w in enumerate(batch):
                t, start, ids = windows[w]
                first = int(self._cls is not None)
                sums[t][start : start + len(ids)] += hidden[row, first : first + len(ids)]
                counts[t][start : start + len(ids)] += 1.0
                whole = hidden[row, : len(ids) + specials]
                window_vector = whole[0] if self._pooling == "cls" else whole.mean(axis=0)
                pooled[t] += window_vector / max(float(np.linalg.norm(window_vector)), 1e-12)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return [
            TokenEmbeddings(
                s / np.maximum(c, 1.0)[:, None], np.array(offsets, dtype=np.int64).reshape(-1, 2), pooled[t]
            )
            for t, (s, c, (_, offsets)) in enumerate(zip(sums, counts, encoded, strict=True))
        ]

    @torch.inference_mode()
    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        """Last hidden states ``[B, L, dim]`` (CPU float32) of right-padded ``[CLS] ids [SEP]`` sequences."""
        rows = [
            ([self._cls] if self._cls is not None else []) + s + ([self._sep] if self._sep is not None else [])
            for s in sequences
        ]
        longest = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), longest), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        out = self._transformer(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device))
        return out.last_hidden_state.float().cpu().numpy()


def _nbytes(value: TokenEmbeddings) -> int:
    pooled = value.pooled.nbytes if value.pooled is not None else 0
    return int(value.vectors.nbytes + value.offsets.nbytes + pooled) + 200  # + the objects themselves


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
