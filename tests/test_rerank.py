"""Reranking: off when no cross-encoder can load (no model hub here), and correct reordering when one can.

No real cross-encoder is installable offline, so the reordering test uses a protocol-faithful stand-in
that scores by counting the question's words in the passage.
"""

import logging

from rag.rerank import load_reranker, rerank
from rag.retrieve import HybridRetriever
from tests.conftest import make_settings


class OverlapReranker:
    name = "overlap"

    def score(self, question, passages):
        words = set(question.lower().split())
        return [float(sum(w in p.lower() for w in words)) for p in passages]


def test_unloadable_reranker_is_off_with_a_warning(tmp_path, caplog):
    settings = make_settings(tmp_path, reranker_model="no-such-org/no-such-cross-encoder")
    with caplog.at_level(logging.WARNING):
        assert load_reranker(settings) is None
    assert "continuing without reranking" in caplog.text
    assert load_reranker(make_settings(tmp_path)) is None  # not configured: silently off


def test_rerank_reorders_and_records_rank(pipeline):
    hits = pipeline.retrieve("hợp tác khoa học công nghệ với Nhật Bản", k=10).hits
    assert any("osaka" in h.chunk.text.lower() for h in hits[1:])  # precondition: something to promote
    assert "osaka" not in hits[0].chunk.text.lower() or len(hits) > 1
    reordered = rerank(OverlapReranker(), "osaka", hits, k=3)
    assert len(reordered) == 3
    assert "osaka" in reordered[0].chunk.text.lower()
    assert [h.ranks["rerank"] for h in reordered] == [1, 2, 3]


def test_retriever_applies_reranker_after_fusion(pipeline):
    retriever = HybridRetriever(pipeline.index, pipeline.embedder, pipeline.settings, pipeline.lexicon,
                                reranker=OverlapReranker())
    result = retriever.retrieve("Tổng Lãnh sự quán Osaka", k=3)
    assert "rerank" in result.timings_ms
    assert all("rerank" in h.ranks for h in result.hits)
