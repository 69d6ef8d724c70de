"""Optional cross-encoder reranking (sentence-transformers CrossEncoder), off unless configured.

`load_reranker(settings)` returns None when RAG_RERANKER_MODEL is empty or the model cannot be loaded
(offline machines): reranking is an accuracy aid, never a reason for the assistant to stop working.
"""

from __future__ import annotations

import logging
from typing import Protocol

from rag.config import Settings
from rag.types import Hit

log = logging.getLogger(__name__)


class Reranker(Protocol):
    """Scores (question, passage) pairs; higher is more relevant."""

    name: str

    def score(self, question: str, passages: list[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder loaded from the local cache or a folder."""

    def __init__(self, name: str) -> None:
        from sentence_transformers import CrossEncoder

        self.name = name
        self._model = CrossEncoder(name, device="cpu", local_files_only=True)

    def score(self, question: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        return [float(s) for s in self._model.predict([(question, p) for p in passages], show_progress_bar=False)]


def load_reranker(settings: Settings) -> Reranker | None:
    """The configured reranker, or None (with a warning when one was configured but failed to load)."""
    if not settings.reranker_model:
        return None
    try:
        return CrossEncoderReranker(settings.reranker_model)
    except Exception as exc:
        log.warning("Reranker %r could not be loaded (%s); continuing without reranking.", settings.reranker_model, exc)
        return None


def rerank(reranker: Reranker, question: str, hits: list[Hit], k: int) -> list[Hit]:
    """Reorder fused hits by cross-encoder score (fused rank breaks ties); keep the top k."""
    scores = reranker.score(question, [h.chunk.text for h in hits])
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    return [Hit(chunk=hits[i].chunk, score=scores[i], ranks={**hits[i].ranks, "rerank": pos + 1})
            for pos, i in enumerate(order[:k])]
