"""CausalLMScorer: per-token negative log-likelihood (NLL) from a small causal LM, in batches.

What it computes:

* ``token_nll(sequences, prefix)``: ``-log p(x_t | prefix, x_<t)`` for every token of every sequence. A shared
  prefix (e.g. the question, for LongLLMLingua's question-conditioned scores) is run once and its KV cache is
  reused by the whole batch.
* ``iterative_nll(prompts, window)``: LLMLingua's iterative scoring. All prompts advance window by window in
  lock-step; each step is one batched forward pass over the next window of every stream, attending to that
  stream's KV cache of the tokens *kept so far*. Which window tokens are kept is decided on the device by each
  prompt's :class:`KeepRule` (per group, the highest-scoring tokens up to a quota), and only their keys/values
  are appended to the cache, so later windows are conditioned on the compressed prefix. Kept keys retain their
  original rotary positions. The host never waits for the device inside the loop: kept counts follow from the
  rules alone, and scores are copied back once per group of prompts.

How: sequences are bucketed by length into passes capped by padded tokens (``engines/batching.py``). Each
forward pass is described by an ``AttentionPlan`` (which cache slots each query sees: plain causal for fresh
right-padded rows, causal after a shared prefix, or per-stream masks where pruning freed cache slots) and run by
a decoder (``engines/decoder.py``: the fused Llama-family decoder, or the checkpoint's transformers module).
Short prefixes (BOS) are prepended to the rows instead of cached, so those passes stay plainly causal. The
vocabulary head (``engines/vocab_head.py``) reduces hidden states to the target tokens' NLL; keep rules live in
``engines/keep_rules.py``. On CUDA OOM a batch is split in halves and retried (``device.halve_on_oom``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ctxcompress.engines.attention_plan import AttentionPlan
from ctxcompress.engines.batching import plan_batches
from ctxcompress.engines.chunk_cache import ChunkCache, text_key
from ctxcompress.engines.cuda_graphs import StaticShapeRunner
from ctxcompress.engines.decoder import build_decoder
from ctxcompress.engines.device import halve_on_oom, resolve_device, scoring_dtype
from ctxcompress.engines.keep_rules import IterativePrompt, IterativeScores, KeepRule, stack_padded, window_keep
from ctxcompress.engines.kv_buffer import KVBuffer
from ctxcompress.engines.options import EngineOptions
from ctxcompress.engines.tokenization import OffsetTokenizer
from ctxcompress.engines.transfers import to_device, to_host
from ctxcompress.engines.vocab_head import VocabHead
from ctxcompress.errors import ModelError

__all__ = ["CausalLMScorer", "IterativePrompt", "IterativeScores", "KeepRule"]

# Prefixes up to this many tokens are prepended to every row rather than cached once (keeps passes causal).
INLINE_PREFIX_TOKENS = 16


@dataclass
class _StreamState:
    """Batched KV cache of a group of streams, a validity mask over its slots, rotary positions."""

    cache: KVBuffer
    valid: torch.Tensor  # [B, L] bool
    kv_pos: torch.Tensor  # [B, L] rotary position of each cache slot
    next_pos: torch.Tensor  # [B] rotary position of the next token
    last_hidden: torch.Tensor  # [B, H] hidden state that predicts the next token
    uniform: bool = False  # every row's cache is the same fully valid prefix (attention is causal after it)


class CausalLMScorer:
    """Scores tokens with a causal LM. Load with :meth:`from_pretrained` or wrap a model with the constructor.

    Args:
        model: a ``*ForCausalLM`` transformers model (its base model and output embeddings are used).
        tokenizer: its (fast) tokenizer.
        max_pass_tokens, decoder, compile, kernels, graphs: see :class:`EngineOptions` (defaults there);
            iterative scoring groups prompts up to 4x ``max_pass_tokens`` stream tokens, since each step runs
            only one window per stream.
        head_chunk_tokens: hidden states projected onto the vocabulary per chunk.
        oom_token_cap: test hook; a forward pass larger than this raises a simulated OOM.
        graph_max_tokens: the largest pass (cache slots) run at static shapes.
        chunk_cache_mb: bound of the cache of :meth:`encode_batch` results per text (0: off; the pool passes
            :class:`EngineOptions`' value).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        *,
        max_pass_tokens: int | None = EngineOptions.max_pass_tokens,
        head_chunk_tokens: int | None = None,
        oom_token_cap: int | None = None,
        decoder: str = EngineOptions.decoder,
        compile: bool = EngineOptions.compile,
        kernels: str = EngineOptions.kernels,
        graphs: str = EngineOptions.graphs,
        graph_max_tokens: int = 16384,
        chunk_cache_mb: int = 0,
    ) -> None:
        self.model = model.eval()
        # Token ids and offsets per text (question-independent: recurring chunks skip the tokenizer).
        self.token_cache = ChunkCache(chunk_cache_mb * 2**20, _encoding_nbytes)
        self.tokenizer = tokenizer
        self._offset_tokenizer = OffsetTokenizer(tokenizer)
        self.config = model.config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.max_pass_tokens = EngineOptions(max_pass_tokens=max_pass_tokens).pass_tokens(self.device.type)
        # Rows projected onto the vocabulary at once: bounds the fp32 logits buffer (8192 x 49152 x 4 B = 1.6 GB).
        self.head_chunk_tokens = head_chunk_tokens or (8192 if self.device.type == "cuda" else 1024)
        self.oom_token_cap = oom_token_cap
        self.decoder = build_decoder(model, decoder, compile=compile, kernels=kernels)
        self.head = VocabHead(
            model.get_output_embeddings(),
            chunk_rows=self.head_chunk_tokens,
            final_norm=self.decoder.final_norm,
            softcap=getattr(self.config, "final_logit_softcapping", None),
            fused_nll=self.decoder.kernels == "triton",
        )
        self.max_positions = int(getattr(self.config, "max_position_embeddings", 8192) or 8192)
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is None:
            bos = getattr(tokenizer, "eos_token_id", None)
        self.bos_ids: list[int] = [] if bos is None else [int(bos)]
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else (bos if bos is not None else 0))
        self.graphs: StaticShapeRunner | None = None
        self.set_graphs(graphs, max_tokens=graph_max_tokens)
        self.tokens_processed = 0  # forward-pass tokens (real, not padding), for throughput accounting
        self._counter_lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str,
        *,
        device: str = "auto",
        options: EngineOptions | None = None,
        dtype: torch.dtype | None = None,
    ) -> CausalLMScorer:
        """Load a local causal-LM folder (safetensors, no remote code) onto ``device``, its weights in ``dtype``
        (default :func:`scoring_dtype` of the device)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_device = resolve_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                model_dir,
                dtype=dtype or scoring_dtype(torch_device),
                attn_implementation="sdpa",
                trust_remote_code=False,
                use_safetensors=True,
            ).to(torch_device)
        except Exception as exc:
            raise ModelError(f"could not load causal LM from {model_dir}: {exc}") from exc
        return cls(model, tokenizer, **(options or EngineOptions()).scorer_arguments())

    def set_graphs(self, graphs: str, *, max_tokens: int = 16384) -> None:
        """Turn static-shape passes (CUDA graphs) ``auto``/``on``/``off``; see the constructor's ``graphs``."""
        if graphs not in ("auto", "on", "off"):
            raise ValueError(f"unknown graphs setting {graphs!r}: use auto, on or off")
        static = self.decoder.static_shapes
        if graphs == "off" or (graphs == "auto" and not (static and self.device.type == "cuda")):
            self.graphs = None
        elif not static:
            raise ValueError(f"static-shape passes (graphs='on') need the fused decoder, not {self.decoder.name}")
        else:
            self.graphs = StaticShapeRunner(
                self.decoder,
                num_layers=int(self.config.num_hidden_layers),
                kv_heads=self.decoder.num_kv_heads,
                head_dim=self.decoder.head_dim,
                dtype=self.dtype,
                device=self.device,
                pad_id=self.pad_id,
                max_tokens=max_tokens,
                capture=self.device.type == "cuda",
            )
        self._run_decoder = self.graphs if self.graphs is not None else self.decoder

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ tokenization
    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` (no special tokens) and each token's character span. Not cached: single texts
        are questions and templates; documents go through :meth:`encode_batch`."""
        return self._tokenize([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """:meth:`encode` for many texts (documents) in one tokenizer call (the fast tokenizer parallelises it),
        from :attr:`token_cache` for texts seen before."""
        if not texts:
            return []
        if not self.token_cache.enabled:
            return self._tokenize(texts)
        keys = [text_key(text) for text in texts]
        out: list[tuple[list[int], list[tuple[int, int]]] | None] = []
        for key in keys:
            hit = self.token_cache.get(key)
            out.append(None if hit is None else (hit[0].tolist(), list(map(tuple, hit[1].tolist()))))
        missing = [i for i, encoding in enumerate(out) if encoding is None]
        for i, encoding in zip(missing, self._tokenize([texts[i] for i in missing]), strict=True):
            out[i] = encoding
            ids, offsets = encoding
            self.token_cache.put(keys[i], (np.array(ids, dtype=np.int32), np.array(offsets, dtype=np.int32)))
        return out  # type: ignore[return-value]

    def _tokenize(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        return self._offset_tokenizer(texts)

    # ------------------------------------------------------------------ plain scoring
    @torch.inference_mode()
    def token_nll(
        self,
        sequences: Sequence[Sequence[int]],
        *,
        prefix: Sequence[int] | None = None,
        score_last: Sequence[int] | None = None,
    ) -> list[np.ndarray]:
        """NLL of each token given its predecessors and ``prefix`` (default: BOS). Returns float32 arrays.

        With no prefix and no BOS token, the first token of each sequence has no prediction and gets NaN.
        ``score_last[i]`` limits scoring to the last n tokens of sequence i (the others get NaN and skip the
        vocabulary projection). Sequences longer than the model's context are scored in independent pieces.
        """
        prefix_ids = list(prefix) if prefix is not None else list(self.bos_ids)
        if len(prefix_ids) >= self.max_positions // 2:
            raise ModelError(f"prefix of {len(prefix_ids)} tokens exceeds half the model context")
        piece_len = self.max_positions - len(prefix_ids)
        inline = prefix_ids if len(prefix_ids) <= INLINE_PREFIX_TOKENS else []
        pieces: list[tuple[int, int, list[int]]] = []  # (sequence index, start, ids)
        first_scored: list[int] = []  # index inside the piece (after an inline prefix) of its first scored token
        for i, seq in enumerate(sequences):
            scored_from = len(seq) - score_last[i] if score_last is not None else 0
            for start in range(0, len(seq), piece_len):
                pieces.append((i, start, inline + list(seq[start : start + piece_len])))
                first_scored.append(len(inline) + max(scored_from - start, 0))
        results = [np.full(len(seq), np.nan, dtype=np.float32) for seq in sequences]
        if not pieces:
            return results
        prefix_state = self._prefix_state(prefix_ids) if prefix_ids and not inline else None
        budget = max(1, self.max_pass_tokens)
        scored: list[tuple[list[int], torch.Tensor]] = []

        def score(batch: list[int]) -> list[tuple[list[int], torch.Tensor]]:
            seqs, firsts = [pieces[b][2] for b in batch], [first_scored[b] for b in batch]
            return [(batch, self._score_batch(seqs, firsts, prefix_state))]

        for batch in plan_batches([len(p[2]) for p in pieces], max_padded_tokens=budget):
            scored += halve_on_oom(batch, score, device=self.device, what="sequence")
        for batch, nll_dev in scored:  # copied back only after every batch is queued (no waits in between)
            nll = to_host(nll_dev).numpy()
            for row, idx in enumerate(batch):
                seq_index, start, ids = pieces[idx]
                results[seq_index][start : start + len(ids) - len(inline)] = nll[row, len(inline) : len(ids)]
        return results

    def _prefix_state(self, prefix_ids: list[int]) -> _StreamState:
        state = self._start_streams([prefix_ids], extra_capacity=0, static=False)
        state.uniform = True  # one fully kept prefix, shared by every row it is expanded to
        return state

    def _score_batch(self, seqs: list[list[int]], firsts: list[int], prefix_state: _StreamState | None) -> torch.Tensor:
        """``[len(seqs), width]`` NLL on the device (NaN where not scored)."""
        batch = len(seqs)
        lengths_host = np.array([len(s) for s in seqs], dtype=np.int64)
        width = int(lengths_host.max())
        ids = self._padded(seqs, width)
        token_valid = torch.arange(width, device=self.device)[None, :] < self._to_device(lengths_host)[:, None]
        state = self._expand_state(prefix_state, batch, width) if prefix_state is not None else None
        try:
            hidden = self._forward(ids, token_valid, state, int(lengths_host.sum()))
        finally:
            if state is not None:
                state.cache.release()
        # The hidden state at t predicts token t+1; the prefix's last hidden state predicts token 0 (without a
        # cached prefix, token 0 has no prediction).
        if state is not None:
            predictors = torch.cat([state.last_hidden[:, None, :], hidden[:, :-1]], dim=1)
            starts = np.array(firsts, dtype=np.int64)
        else:
            predictors = torch.cat([hidden[:, :1], hidden[:, :-1]], dim=1)
            starts = np.maximum(np.array(firsts, dtype=np.int64), 1)
        return self._nll_rows(predictors, ids, lengths_host, starts)

    # ------------------------------------------------------------------ iterative scoring
    @torch.inference_mode()
    def iterative_nll(self, prompts: Sequence[IterativePrompt], *, window: int) -> list[IterativeScores]:
        """Score ``prompts`` window by window, each window conditioned on the tokens its rule kept before it.

        Returns, per prompt, every stream's NLL and the ranking score the rule used.
        """
        if window <= 0:
            raise ValueError("window must be positive")
        bos = [list(self.bos_ids)]
        prompts = [p if p.prefixes else IterativePrompt(p.tokens, bos, p.weights, p.rule) for p in prompts]
        for p in prompts:
            if any(not prefix for prefix in p.prefixes):
                raise ModelError("iterative scoring needs a non-empty prefix (the model has no BOS token)")
            if not 0 < len(p.weights) <= len(p.prefixes):
                raise ValueError(f"{len(p.weights)} score weights for {len(p.prefixes)} streams")
            if p.rule is not None and not len(p.rule.group) == len(p.rule.pinned) == len(p.rule.take) == len(p.tokens):
                raise ValueError("keep rule arrays must have one entry per token")
        results: list[IterativeScores | None] = [None] * len(prompts)
        costs = [len(p.prefixes) * (len(p.tokens) + max(len(x) for x in p.prefixes)) for p in prompts]

        def iterate(group: list[int]) -> list[IterativeScores]:
            return self._iterate_group([prompts[i] for i in group], window)

        for group in plan_batches(costs, max_padded_tokens=4 * max(self.max_pass_tokens, 1)):
            scores = halve_on_oom(group, iterate, device=self.device, what="prompt")
            for index, prompt_scores in zip(group, scores, strict=True):
                results[index] = prompt_scores
        return results  # type: ignore[return-value]

    def _iterate_group(self, prompts: list[IterativePrompt], window: int) -> list[IterativeScores]:
        owners = [(p_i, s_i) for p_i, p in enumerate(prompts) for s_i in range(len(p.prefixes))]
        n_prompts, longest = len(prompts), max(len(p.tokens) for p in prompts)
        rules = [p.rule or KeepRule.keep_all(len(p.tokens)) for p in prompts]
        kept_host = np.zeros((n_prompts, -(-longest // window)), dtype=np.int64)
        for p_i, rule in enumerate(rules):
            counts = rule.kept_per_window(window)
            kept_host[p_i, : len(counts)] = counts
        group, pinned, take = (
            self._to_device(stack_padded([getattr(r, name) for r in rules], longest, fill))
            for name, fill in (("group", -1), ("pinned", False), ("take", 0))
        )
        weights = np.zeros((n_prompts, max(len(p.prefixes) for p in prompts)), dtype=np.float32)
        stream_rows = np.zeros(weights.shape, dtype=np.int64)
        for row, (p_i, s_i) in enumerate(owners):
            stream_rows[p_i, s_i] = row
            weights[p_i, s_i] = prompts[p_i].weights[s_i] if s_i < len(prompts[p_i].weights) else 0.0
        weights_dev, stream_rows_dev = self._to_device(weights), self._to_device(stream_rows)
        prompt_of_row = self._to_device(np.array([p_i for p_i, _ in owners], dtype=np.int64))

        state = self._start_streams([prompts[p].prefixes[s] for p, s in owners], extra_capacity=longest)
        try:
            nll_all = torch.full((len(owners), longest), float("nan"), device=self.device)
            score_all = torch.full((n_prompts, longest), float("nan"), device=self.device)
            for step, start in enumerate(range(0, longest, window)):
                chunks = [prompts[p].tokens[start : start + window] for p, _ in owners]
                width = max(len(c) for c in chunks)
                lengths_host = np.array([len(c) for c in chunks], dtype=np.int64)
                tokens = self._padded(chunks, width)
                lengths = self._to_device(lengths_host)
                token_valid = torch.arange(width, device=self.device)[None, :] < lengths[:, None]
                hidden = self._forward(tokens, token_valid, state, int(lengths_host.sum()))
                predictors = torch.cat([state.last_hidden[:, None, :], hidden[:, :-1]], dim=1)
                nll = self._nll_rows(predictors, tokens, lengths_host)
                nll_all[:, start : start + width] = nll
                # Ranking score per prompt: weighted sum of its streams' NLL; tokens without one rank first.
                streams = nll[stream_rows_dev]  # [P, S, W]
                score = (streams * weights_dev[:, :, None]).nan_to_num(nan=0.0).sum(dim=1)
                prompt_valid = token_valid[stream_rows_dev[:, 0]]
                score = torch.where(streams[:, 0].isnan(), float("inf"), score)
                score_all[:, start : start + width] = torch.where(prompt_valid, score, float("nan"))
                span = slice(start, start + width)
                keep = window_keep(score, group[:, span], pinned[:, span], take[:, span], prompt_valid)
                state = self._commit(state, hidden, keep[prompt_of_row], lengths, slots=int(kept_host[:, step].max()))
        finally:
            state.cache.release()  # a static cache goes back to its runner
        nll_host, score_host = to_host(nll_all).numpy(), to_host(score_all).numpy()
        results = []
        row = 0
        for p_i, prompt in enumerate(prompts):
            n, streams = len(prompt.tokens), len(prompt.prefixes)
            results.append(IterativeScores(nll=nll_host[row : row + streams, :n], score=score_host[p_i, :n]))
            row += streams
        return results

    def _start_streams(self, prefixes: list[list[int]], *, extra_capacity: int, static: bool = True) -> _StreamState:
        """Run the prefixes and return a state whose cache holds all of them (room for ``extra_capacity``).

        With ``static`` the cache may be a static one lent by the graph runner: the caller releases it.
        """
        batch = len(prefixes)
        width = max(len(p) for p in prefixes)
        tokens = self._padded(prefixes, width)
        lengths = self._to_device(np.array([len(p) for p in prefixes], dtype=np.int64))
        valid = torch.arange(width, device=self.device)[None, :] < lengths[:, None]
        cache = self._new_cache(batch, width + extra_capacity, static=static)
        empty = _StreamState(
            cache=cache,
            valid=torch.zeros((batch, 0), dtype=torch.bool, device=self.device),
            kv_pos=torch.zeros((batch, 0), dtype=torch.long, device=self.device),
            next_pos=torch.zeros(batch, dtype=torch.long, device=self.device),
            last_hidden=torch.zeros((batch, self.config.hidden_size), dtype=self.dtype, device=self.device),
        )
        try:
            hidden = self._forward(tokens, valid, empty, sum(len(p) for p in prefixes))
            return self._commit(empty, hidden, valid, lengths, slots=width)
        except BaseException:
            cache.release()
            raise

    def _commit(
        self, state: _StreamState, hidden: torch.Tensor, keep: torch.Tensor, lengths: torch.Tensor, *, slots: int
    ) -> _StreamState:
        """Keep the kept window tokens' keys/values in each stream's cache (gather, no recomputation).

        ``slots`` is the largest kept count of any row, given by the caller so the host need not wait for it.
        """
        batch, width = keep.shape
        if slots == 0:  # nothing kept anywhere: the cache is unchanged, positions move on
            return _StreamState(state.cache, state.valid, state.kv_pos, state.next_pos + lengths, state.last_hidden)
        kept_counts = keep.sum(dim=1)
        # Stable order of kept positions first: sort by (not kept, position).
        order = torch.argsort((~keep).to(torch.int8) * width + torch.arange(width, device=keep.device), dim=1)
        index = order[:, :slots]  # [B, slots] window positions of kept tokens (padded with dropped ones)
        slot_valid = torch.arange(slots, device=keep.device)[None, :] < kept_counts[:, None]
        state.cache.commit(index)
        window_pos = state.next_pos[:, None] + index
        last_kept = torch.where(kept_counts > 0, (index * slot_valid).max(dim=1).values, 0)
        new_last = hidden[torch.arange(batch, device=keep.device), last_kept]
        last_hidden = torch.where((kept_counts > 0)[:, None], new_last, state.last_hidden)
        return _StreamState(
            cache=state.cache,
            valid=torch.cat([state.valid, slot_valid], dim=1),
            kv_pos=torch.cat([state.kv_pos, window_pos], dim=1),
            next_pos=state.next_pos + lengths,
            last_hidden=last_hidden,
        )

    # ------------------------------------------------------------------ model calls
    def _padded(self, rows: Sequence[Sequence[int]], width: int) -> torch.Tensor:
        """Right-padded [len(rows), width] token tensor on the device."""
        host = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(rows):
            host[row, : len(ids)] = ids
        return self._to_device(host)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """Host array → device tensor without waiting for the device (``engines/transfers.py``)."""
        return to_device(array, self.device)

    def _forward(
        self, tokens: torch.Tensor, token_valid: torch.Tensor, state: _StreamState | None, real_tokens: int
    ) -> torch.Tensor:
        """One forward pass of ``tokens`` [B, W] after ``state``'s cache (appended to it); hidden states."""
        batch, width = tokens.shape
        self._check_cap(batch * (width + (state.valid.shape[1] if state is not None else 0)))
        next_pos = state.next_pos if state is not None else torch.zeros(batch, dtype=torch.long, device=self.device)
        positions = next_pos[:, None] + torch.arange(width, device=self.device)[None, :]
        if state is not None:
            cache: KVBuffer = state.cache
            kv_pos = torch.cat([state.kv_pos, positions], dim=1)
        else:
            cache = self._new_cache(batch, width)
            kv_pos = positions
        old_len = kv_pos.shape[1] - width
        # Causal over physical cache slots (lower-right aligned when a cache precedes the pass).
        slot = torch.arange(old_len + width, device=self.device)
        causal = slot[None, :] <= (old_len + torch.arange(width, device=self.device))[:, None]
        if state is None or state.uniform:
            # Right padding: real queries never reach a padded key, so one causal pattern serves every row.
            allowed = causal[None]
        else:  # per stream: slots freed by pruning are masked; padded queries still see themselves
            kv_valid = torch.cat([state.valid, token_valid], dim=1)
            allowed = (causal[None] & kv_valid[:, None, :]) | _diagonal(batch, width, old_len, self.device)
        plan = AttentionPlan(allowed=allowed, causal_only=state is None, positions=positions, kv_positions=kv_pos)
        try:
            hidden = self._run_decoder(tokens, plan, cache)
        finally:
            if state is None:
                cache.release()
        with self._counter_lock:  # engines may call one scorer from several threads
            self.tokens_processed += real_tokens
        return hidden

    def _new_cache(self, batch: int, capacity: int, *, static: bool = True) -> KVBuffer:
        """A KV cache for ``batch`` streams: a static one from the graph runner when it can lend one."""
        if static and self.graphs is not None:
            cache = self.graphs.allocate(batch, capacity)
            if cache is not None:
                return cache
        return KVBuffer(self.config.num_hidden_layers, capacity)

    def _expand_state(self, state: _StreamState, batch: int, extra_capacity: int) -> _StreamState:
        """``state`` (one stream's cached prefix) copied for ``batch`` streams, with room for more slots."""
        cache = self._new_cache(batch, state.cache.length + extra_capacity)
        cache.fill_from(state.cache, batch)
        return _StreamState(
            cache=cache,
            valid=state.valid.expand(batch, -1),
            kv_pos=state.kv_pos.expand(batch, -1),
            next_pos=state.next_pos.expand(batch),
            last_hidden=state.last_hidden.expand(batch, -1),
            uniform=state.uniform,
        )

    def _nll_rows(
        self, predictors: torch.Tensor, targets: torch.Tensor, ends: np.ndarray, starts: np.ndarray | None = None
    ) -> torch.Tensor:
        """``[B, W]`` NLL of ``targets[b, t]`` for ``starts[b] <= t < ends[b]`` (NaN elsewhere).

        The scored positions are computed on the host, so no device mask has to be read back.
        """
        batch, width = targets.shape
        starts = np.zeros(batch, dtype=np.int64) if starts is None else starts
        counts = np.maximum(ends - starts, 0)
        total = int(counts.sum())
        out = torch.full((batch * width,), float("nan"), dtype=torch.float32, device=self.device)
        if total:
            row_base = np.arange(batch, dtype=np.int64) * width + starts - (np.cumsum(counts) - counts)
            index = self._to_device(np.repeat(row_base, counts) + np.arange(total, dtype=np.int64))
            values = self.head.nll(predictors.reshape(batch * width, -1)[index], targets.reshape(-1)[index])
            out.index_copy_(0, index, values)
        return out.view(batch, width)

    def _check_cap(self, tokens: int) -> None:
        if self.oom_token_cap is not None and tokens > self.oom_token_cap:
            raise torch.OutOfMemoryError(f"simulated out of memory: {tokens} tokens > cap {self.oom_token_cap}")


def _diagonal(batch: int, width: int, old_len: int, device: torch.device) -> torch.Tensor:
    eye = torch.zeros((width, old_len + width), dtype=torch.bool, device=device)
    eye[:, old_len:] = torch.eye(width, dtype=torch.bool, device=device)
    return eye[None].expand(batch, -1, -1)


def _encoding_nbytes(value: tuple[np.ndarray, np.ndarray]) -> int:
    return int(value[0].nbytes + value[1].nbytes) + 200  # + the objects themselves
