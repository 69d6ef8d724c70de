"""The retrieval chain, composed from LangChain runnables:

    {question, history, filters} -> retrieve (hybrid) -> answer (extractive or LLM) -> Answer

`Pipeline` owns the loaded parts (embedder, index, retriever, answerers) and is what the CLI, UI and
evaluation call. Heavy parts load once, in `Pipeline.from_settings`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda

from rag.answer import ExtractiveAnswerer
from rag.config import Settings
from rag.embed import LoadedEmbedder, load_embedder
from rag.index import Index, IngestReport
from rag.lexicon import Lexicon, default_lexicon
from rag.rerank import load_reranker
from rag.retrieve import Filters, HybridRetriever, RetrievalResult
from rag.types import Answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """One past exchange of a conversation."""

    question: str
    answer: str


class Pipeline:
    """Loaded embedder + index + retriever + answerers, and the runnable chain over them."""

    def __init__(self, settings: Settings, loaded: LoadedEmbedder, index: Index, lexicon: Lexicon | None) -> None:
        self.settings = settings
        self.loaded = loaded
        self.embedder = loaded.embedder
        self.index = index
        self.lexicon = lexicon
        self.reranker = load_reranker(settings)
        self.retriever = HybridRetriever(index, self.embedder, settings, lexicon, reranker=self.reranker)
        self.extractive = ExtractiveAnswerer(index, self.embedder, lexicon, min_evidence=settings.min_evidence)
        self.chain: Runnable = RunnableLambda(self._retrieve_step) | RunnableLambda(self._answer_step)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sync_corpus: bool = False,
        progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
    ) -> Pipeline:
        """Load the embedder and open the index; with `sync_corpus`, (re)build it from RAG_CORPUS_DIR first."""
        loaded = load_embedder(settings)
        index = Index.open(settings, must_exist=not sync_corpus)
        if sync_corpus:
            report = index.sync([Path(settings.corpus_dir)], loaded.embedder, progress=progress)
            log.info("Index in sync: %s", summarize(report))
        try:
            lexicon: Lexicon | None = default_lexicon()
        except Exception as exc:  # the lexicon is an accuracy aid; retrieval still works without it
            log.warning("Domain lexicon unavailable (%s); English questions will retrieve worse.", exc)
            lexicon = None
        return cls(settings, loaded, index, lexicon)

    # ------------------------------------------------------------------ chain steps
    def _retrieve_step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        t = time.perf_counter()
        result = self.retriever.retrieve(inputs["question"], k=inputs.get("k"), filters=inputs.get("filters"))
        return {**inputs, "retrieval": result, "retrieve_ms": (time.perf_counter() - t) * 1000}

    def _answer_step(self, inputs: dict[str, Any]) -> Answer:
        result: RetrievalResult = inputs["retrieval"]
        t = time.perf_counter()
        answer = self.extractive.answer(result.plan, result.hits)
        answer_ms = (time.perf_counter() - t) * 1000
        timings = {"retrieve": round(inputs["retrieve_ms"], 1), "answer": round(answer_ms, 1)}
        timings["total"] = round(timings["retrieve"] + timings["answer"], 1)
        return replace(answer, timings_ms=timings)

    # ------------------------------------------------------------------ public API
    def retrieve(self, question: str, k: int | None = None, filters: Filters | None = None) -> RetrievalResult:
        """Hybrid retrieval only (no answer)."""
        return self.retriever.retrieve(question, k=k, filters=filters)

    def ask(
        self,
        question: str,
        history: list[Turn] | None = None,
        filters: Filters | None = None,
        k: int | None = None,
    ) -> Answer:
        """Answer one question with citations (or a refusal). Raises BadInput for unusable questions."""
        return self.chain.invoke({"question": question, "history": history or [], "filters": filters, "k": k})

    @property
    def notices(self) -> list[tuple[str, str]]:
        """(en, vi) notices the UI should show permanently, e.g. the fallback model warning."""
        out = []
        if self.loaded.is_fallback:
            out.append((self.loaded.warning_en, self.loaded.warning_vi))
        return out


def summarize(report: IngestReport) -> str:
    """One line for logs and the CLI."""
    return (
        f"{len(report.added)} added, {len(report.updated)} updated, {len(report.removed)} removed, "
        f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped; "
        f"{report.chunks_embedded} chunks embedded, {report.total_chunks} chunks in the index"
    )
