"""Request preparation shared by every method: validation, prompt assembly, token budget.

The prompt an LLM receives is ``instruction``, the documents and ``question`` joined by blank lines. The budget
covers that whole prompt in the target tokenizer; instruction and question are never compressed, so what the
context may use is the budget minus their tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ctxcompress.errors import InvalidInput
from ctxcompress.text.alignment import dropped_spans, kept_spans
from ctxcompress.text.tokens import TargetTokenizer, get_target_tokenizer
from ctxcompress.types import CompressionRequest, CompressionResult, DocumentSpans, KeptDocument

__all__ = ["PreparedRequest", "assemble_prompt", "parse_options", "prepare", "prompt_segments", "SEPARATOR"]

SEPARATOR = "\n\n"


def assemble_prompt(instruction: str | None, documents: list[str], question: str | None) -> str:
    """Instruction, documents and question joined by blank lines (empty parts left out).

    Documents are stripped, as results keep them: a method that counts ``prompt_for(texts)`` while fitting the
    budget counts exactly the prompt the result will hold (a leading space can change the tokenization).
    """
    return "".join(prompt_segments(instruction, documents, question))


def prompt_segments(instruction: str | None, documents: list[str], question: str | None) -> list[str]:
    """:func:`assemble_prompt`'s prompt cut before every part that starts with a non-space character: each piece
    is a part with the blank line after it (a part that starts with whitespace stays with the piece before).

    Where the target tokenizer's counts add up across a line break (``TargetTokenizer.adds_after_line_breaks``),
    the prompt's count is the sum of its pieces' counts: a budget search recounts only the documents it changed.
    """
    parts = [instruction] if instruction and instruction.strip() else []
    parts += [d.strip() for d in documents if d.strip()]
    if question and question.strip():
        parts.append(question)
    pieces: list[str] = []
    for i, part in enumerate(parts):
        piece = part + (SEPARATOR if i < len(parts) - 1 else "")
        if pieces and part[0].isspace():
            pieces[-1] += piece
        else:
            pieces.append(piece)
    return pieces


def parse_options(model: type[BaseModel], options: dict[str, Any], method: str) -> BaseModel:
    """Validate ``options`` against a method's options model; unknown names list the valid ones."""
    valid = sorted(model.model_fields)
    for key in options:
        if key not in model.model_fields:
            raise InvalidInput(
                f"unknown option {key!r} for method {method!r}; valid options: {', '.join(valid)}",
                field=f"options.{key}",
            )
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid option {where!r}: {first['msg']}", field=f"options.{where}") from exc


@dataclass
class PreparedRequest:
    """A validated request with its token accounting in the target tokenizer."""

    request: CompressionRequest
    options: Any
    target: TargetTokenizer
    documents: list[str]  # the request's documents; empty/whitespace ones are never kept
    origin_prompt: str
    origin_tokens: int
    target_tokens: int
    fixed_tokens: int  # instruction + question + separators
    _counted: dict[str, int] = field(default_factory=dict, repr=False, compare=False)  # prompt -> target tokens

    @functools.cached_property
    def nonempty_indices(self) -> list[int]:
        """Computed once: methods ask per document (10,000 documents made this quadratic)."""
        return [i for i, d in enumerate(self.documents) if d.strip()]

    def context_budget(self) -> int:
        return self.target_tokens - self.fixed_tokens

    def prompt_for(self, texts: list[str]) -> str:
        return assemble_prompt(self.request.instruction, texts, self.request.question)

    def count_prompt(self, texts: list[str]) -> int:
        """Target tokens of the prompt holding ``texts`` as its documents: the sum of its pieces' counts where the
        tokenizer allows it (a candidate that changes one document recounts that document alone), else the
        whole prompt's."""
        segments = prompt_segments(self.request.instruction, texts, self.request.question)
        if not self.target.adds_after_line_breaks:
            return self.count_text("".join(segments))
        return sum(self.count_text(segment) for segment in segments)

    def count_text(self, text: str) -> int:
        """Target tokens of ``text``; a text counted before for this request is not counted again (budget fitting
        and the result count the same candidate prompts and documents: a whole-prompt count is ~0.3 ms)."""
        if (known := self._counted.get(text)) is None:
            known = self._counted[text] = self.target.count(text)
        return known

    def fits_uncompressed(self) -> bool:
        return self.origin_tokens <= self.target_tokens

    def result(
        self,
        kept: list[KeptDocument],
        *,
        ranking: list[int] | None = None,
        timings_ms: dict[str, float] | None = None,
    ) -> CompressionResult:
        """Build the result; kept documents whose text is blank are left out."""
        kept = [KeptDocument(index=k.index, text=k.text.strip()) for k in kept if k.text.strip()]
        prompt = self.prompt_for([k.text for k in kept])
        compressed = self.count_prompt([k.text for k in kept])
        return CompressionResult(
            method=self.request.method,
            documents=kept,
            dropped_documents=sorted(set(range(len(self.documents))) - {d.index for d in kept}),
            prompt=prompt,
            origin_tokens=self.origin_tokens,
            compressed_tokens=compressed,
            ratio=round(self.origin_tokens / max(compressed, 1), 4),
            target_tokens=self.target_tokens,
            ranking=ranking,
            spans=self.spans(kept) if self.request.include_spans else None,
            timings_ms=timings_ms or {},
        )

    def spans(self, kept: list[KeptDocument]) -> list[DocumentSpans]:
        """Per request document: the character spans kept and dropped (None for text not taken from it)."""
        out = []
        for index, document in enumerate(self.documents):
            pieces = [k.text for k in kept if k.index == index]
            located = kept_spans(document, " ".join(pieces)) if pieces else []
            dropped = None if located is None else dropped_spans(len(document), located)
            tokens = self.target.count(document), self.target.count(" ".join(pieces)) if pieces else 0
            out.append(
                DocumentSpans(
                    index=index, kept=located, dropped=dropped, origin_tokens=tokens[0], kept_tokens=tokens[1]
                )
            )
        return out

    def unchanged(self) -> CompressionResult:
        """The input as it is (budget at or above the input size): ratio 1.0."""
        kept = [KeptDocument(index=i, text=self.documents[i]) for i in self.nonempty_indices]
        return self.result(kept, timings_ms={"total": 0.0})


def prepare(
    request: CompressionRequest,
    options_model: type[BaseModel],
    *,
    count_piece: Callable[[TargetTokenizer, str], int] | None = None,
) -> PreparedRequest:
    """Validate ``request`` and compute its origin/target/fixed token counts. ``count_piece(target, piece)``:
    how the prompt's pieces are counted (the Compressor's answers recurring chunks from a cache)."""
    if not request.documents:
        raise InvalidInput("documents is empty; give at least one document", field="documents")
    if not any(d.strip() for d in request.documents):
        raise InvalidInput("every document is empty or whitespace; nothing to compress", field="documents")
    options = parse_options(options_model, request.options, request.method)
    target = get_target_tokenizer(getattr(options, "target_tokenizer", "cl100k_base"))
    segments = prompt_segments(request.instruction, request.documents, request.question)
    origin_prompt = "".join(segments)
    count = functools.partial(count_piece, target) if count_piece is not None else target.count
    counted = {segment: count(segment) for segment in segments} if target.adds_after_line_breaks else {}
    origin_tokens = sum(counted[s] for s in segments) if counted else target.count(origin_prompt)
    fixed_prompt = assemble_prompt(request.instruction, [], request.question)
    fixed_tokens = target.count(fixed_prompt) + (target.count(SEPARATOR) if fixed_prompt else 0)
    target_tokens = request.budget.target_tokens(origin_tokens)
    prepared = PreparedRequest(
        request=request,
        options=options,
        target=target,
        documents=list(request.documents),
        origin_prompt=origin_prompt,
        origin_tokens=origin_tokens,
        target_tokens=target_tokens,
        fixed_tokens=fixed_tokens,
        _counted=counted,  # the documents' pieces, which the budget search's first prompts reuse
    )
    if not prepared.fits_uncompressed() and prepared.context_budget() <= 0:
        fixed = " and ".join(
            name
            for name, text in (("the instruction", request.instruction), ("the question", request.question))
            if text
        )
        raise InvalidInput(
            f"budget of {target_tokens} tokens cannot hold {fixed or 'the prompt'} "
            f"({fixed_tokens} tokens, never compressed); raise the budget",
            field="budget",
        )
    return prepared
