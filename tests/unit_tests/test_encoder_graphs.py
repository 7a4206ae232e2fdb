"""The sentence encoder's static-shape passes (engines/encoder_graphs.py) on CPU, where they run eagerly at the
bucketed shapes a CUDA graph records: the vectors match the exact-shape path, large passes and a second concurrent
caller take the exact path, and the buffers are reused per shape."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ctxcompress.engines.encoder import SentenceEncoder
from ctxcompress.engines.encoder_graphs import StaticEncoderPasses

TEXTS = [
    "The Nile is the longest river in Africa. It flows north into the Mediterranean Sea.",
    "Mount Kilimanjaro is in Tanzania. Its summit is 5,895 metres above sea level. " * 4,
    '短い文。Emoji 🙂 and code {"a": [1, 2]} stay in the text.',
]


def _static_copy(encoder: SentenceEncoder) -> SentenceEncoder:
    twin = copy.copy(encoder)
    twin.static_passes = StaticEncoderPasses(
        twin._run_model, pad_id=twin._pad, device=twin.device, capture=True
    )  # capture is ignored on CPU: eager passes at the static shapes
    return twin


def test_static_shapes_give_the_exact_paths_vectors(tiny_encoder) -> None:  # noqa: ANN001
    static = _static_copy(tiny_encoder)
    spans = [[(0, 40), (41, len(TEXTS[0]))], [(0, 30)], [(0, 5)]]
    exact = tiny_encoder._span_embeddings(TEXTS, spans, 16)
    padded = static._span_embeddings(TEXTS, spans, 16)
    for a, b in zip(exact, padded, strict=True):
        np.testing.assert_allclose(a.pooled, b.pooled, atol=1e-5)
        np.testing.assert_allclose(a.spans, b.spans, atol=1e-5)
    assert static.static_passes is not None and static.static_passes._shapes  # the static path really ran
    for shape in static.static_passes._shapes.values():
        rows, width = shape.ids.shape
        assert rows in (1, 2, 4, 8) or rows % 8 == 0 and width % 32 == 0


def test_each_shape_keeps_one_set_of_buffers(tiny_encoder) -> None:  # noqa: ANN001
    static = _static_copy(tiny_encoder)
    first = static._hidden([[5, 6, 7]])
    buffers = {key: shape.ids.data_ptr() for key, shape in static.static_passes._shapes.items()}
    second = static._hidden([[8, 9, 10, 11]])  # same bucket (1 row, width 32): same buffers, fresh result
    assert {key: shape.ids.data_ptr() for key, shape in static.static_passes._shapes.items()} == buffers
    assert first.shape == (1, 5, 32) and second.shape == (1, 6, 32)  # with [CLS] and [SEP]
    # the first result is a copy, not a view of the static output the second pass overwrote
    torch.testing.assert_close(first, tiny_encoder._hidden([[5, 6, 7]]), atol=1e-5, rtol=0)


def test_large_passes_and_a_busy_buffer_take_the_exact_path(tiny_encoder) -> None:  # noqa: ANN001
    static = _static_copy(tiny_encoder)
    passes = static.static_passes
    assert passes is not None and not passes.fits(64, 300) and passes.fits(24, 256)
    passes._lock.acquire()  # another caller holds the static buffers
    try:
        assert passes([[1, 2, 3]]) is None
        busy = static._hidden([[1, 2, 3]])
    finally:
        passes._lock.release()
    assert not passes._shapes
    np.testing.assert_allclose(busy.numpy(), tiny_encoder._hidden([[1, 2, 3]]).numpy(), atol=1e-6)


def test_graphs_setting_is_checked(tiny_encoder) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="graphs"):
        SentenceEncoder(tiny_encoder.model, graphs="sometimes")
    assert SentenceEncoder(tiny_encoder.model, graphs="auto").static_passes is None  # CPU: exact shapes
    assert SentenceEncoder(tiny_encoder.model, graphs="on").static_passes is not None


def test_real_minilm_static_passes_match_through_the_pool() -> None:
    """The embedded all-MiniLM-L6-v2, loaded by the pool with ``encoder_graphs="on"`` (static shapes, eager on
    CPU) against the default pool: the same sentence vectors for a 20-document NQ-style prompt's windows."""
    from ctxcompress.engines.options import EngineOptions
    from ctxcompress.pool import ModelPool

    static = ModelPool(device="cpu", options=EngineOptions(encoder_graphs="on")).encoder("minilm-l6")
    exact = ModelPool(device="cpu").encoder("minilm-l6")
    assert static.static_passes is not None and exact.static_passes is None
    texts = [f"Document [{i}] {TEXTS[i % 3]} River {i} is {40 * i} km long." * (1 + i % 5) for i in range(20)]
    spans = [[(0, 20), (20, len(text))] for text in texts]
    for a, b in zip(exact._span_embeddings(texts, spans, 64), static._span_embeddings(texts, spans, 64), strict=True):
        np.testing.assert_allclose(a.spans, b.spans, atol=2e-5)
    assert static.static_passes._shapes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run on the device)")
def test_graphed_encoder_on_cuda_gives_the_exact_paths_vectors(tiny_encoder) -> None:  # noqa: ANN001
    """On CUDA, ``auto`` records each bucketed shape once and replays it: the span vectors equal the exact-shape
    path's, and a second request at the same bucket replays (no new recording) with its own result."""
    model = copy.deepcopy(tiny_encoder.model).to("cuda")
    graphed = SentenceEncoder(model, graphs="auto")
    exact = SentenceEncoder(model, graphs="off")
    graphed.max_length = exact.max_length = 64
    assert graphed.static_passes is not None and exact.static_passes is None
    spans = [[(0, 40), (41, len(TEXTS[0]))], [(0, 30)], [(0, 5)]]
    for _ in range(2):  # the first call records, the second replays
        for a, b in zip(
            exact._span_embeddings(TEXTS, spans, 16), graphed._span_embeddings(TEXTS, spans, 16), strict=True
        ):
            np.testing.assert_allclose(a.pooled, b.pooled, atol=1e-5)
            np.testing.assert_allclose(a.spans, b.spans, atol=1e-5)
    recorded = dict(graphed.static_passes._shapes)
    assert recorded and all(shape.graph is not None for shape in recorded.values())  # captured, not eager
    other = graphed._span_embeddings(TEXTS[::-1], spans[::-1], 16)  # same buckets, different content
    assert graphed.static_passes._shapes.keys() == recorded.keys()
    for a, b in zip(exact._span_embeddings(TEXTS[::-1], spans[::-1], 16), other, strict=True):
        np.testing.assert_allclose(a.spans, b.spans, atol=1e-5)
