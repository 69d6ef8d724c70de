"""The wire contract: pydantic models for what leaves the service — `rag ask --json`, the HTTP API and
eval all serialise through these, so one field list is true everywhere.

The answer shape is the documented `rag ask --json` contract (README, "CLI"); it is relied on, so fields
are only ever added, never renamed or removed. Converters from the internal frozen dataclasses
(`rag.types`) live here too, so no interface formats an Answer by hand.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from rag.text import detect_language
from rag.types import Answer, Citation, Hit


class CitationOut(BaseModel):
    """Source [n]: the chunk it points to and the sentence(s) quoted from it (`quote` ⊂ `text`)."""

    n: int
    chunk_id: str
    doc_id: str
    title: str
    source: str
    date: str
    url: str
    quote: str
    text: str


class HitOut(BaseModel):
    """A retrieved chunk: fused score and the rank each retriever gave it."""

    chunk_id: str
    doc_id: str
    score: float
    ranks: dict[str, int]
    title: str
    source: str
    date: str
    text: str


class AnswerOut(BaseModel):
    """One answer as in `rag ask --json`."""

    id: Any = None
    question: str
    language: Literal["vi", "en"]
    query_language: str
    answer: str
    refused: bool
    backend: Literal["extractive", "llm"]
    notice: str = ""
    citations: list[CitationOut] = Field(default_factory=list)
    retrieved: list[HitOut] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)


class RetrievalOut(BaseModel):
    """Retrieval only, as in `rag retrieve --json`."""

    id: Any = None
    question: str
    language: Literal["vi", "en"]
    query_language: str
    retrieved: list[HitOut]
    timings_ms: dict[str, float] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    """A question that could not be answered: the one sentence a user sees."""

    id: Any = None
    question: str
    error: str


class SkippedOut(BaseModel):
    path: str
    reason: str


class IngestReportOut(BaseModel):
    """What an ingest, upload, re-ingest or delete did to the index."""

    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    skipped: list[SkippedOut] = Field(default_factory=list)
    chunks_embedded: int = 0
    total_chunks: int = 0
    summary: str = ""


class DocumentInfo(BaseModel):
    """One indexed document, as listed in the admin tab and `GET /v1/documents`."""

    doc_id: str
    title: str
    source: str = ""
    date: str = ""
    language: str = ""
    url: str = ""
    path: str = ""
    chunks: int = 0
    added_at: str = ""  # ISO timestamp of the ingest that (last) indexed it; "" for indexes built before it was kept


class Status(BaseModel):
    """`GET /health` and the UI's status line."""

    status: Literal["ok", "warming_up", "error"]
    version: str
    documents: int
    chunks: int
    embedding_model: str
    embedding_fallback: bool
    backend: Literal["extractive", "llm"]
    llm_model: str = ""
    chroma: Literal["embedded", "server"]
    message: str = ""


# ---------------------------------------------------------------------------------------- converters


def hit_out(hit: Hit) -> HitOut:
    """A retrieved chunk in the contract's shape."""
    c = hit.chunk
    return HitOut(
        chunk_id=c.chunk_id, doc_id=c.doc_id, score=round(hit.score, 6), ranks=dict(hit.ranks), title=c.title,
        source=c.source, date=c.date, text=c.text,
    )


def citation_out(c: Citation) -> CitationOut:
    """A citation in the contract's shape."""
    ch = c.chunk
    return CitationOut(
        n=c.n, chunk_id=ch.chunk_id, doc_id=ch.doc_id, title=ch.title, source=ch.source, date=ch.date, url=ch.url,
        quote=c.quote, text=ch.text,
    )


def answer_out(answer: Answer, qid: Any = None) -> AnswerOut:
    """An Answer in the `rag ask --json` shape."""
    return AnswerOut(
        id=qid,
        question=answer.question,
        language=answer.language,
        query_language=detect_language(answer.question),
        answer=answer.text,
        refused=answer.refused,
        backend=answer.backend,
        notice=answer.notice,
        citations=[citation_out(c) for c in answer.citations],
        retrieved=[hit_out(h) for h in answer.hits],
        timings_ms=dict(answer.timings_ms),
    )


def answer_json(answer: Answer, qid: Any = None) -> dict[str, Any]:
    """An Answer as the plain dict `rag ask --json` prints (field order as documented)."""
    return answer_out(answer, qid).model_dump()
