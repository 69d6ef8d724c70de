"""Plain frozen data passed between pipeline stages: Document -> Chunk -> Hit -> Answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Lang = Literal["vi", "en"]


@dataclass(frozen=True)
class Document:
    """A cleaned source document. `text` is NFC-normalised and free of site boilerplate."""

    doc_id: str
    title: str
    text: str
    source: str = ""
    date: str = ""  # ISO yyyy-mm-dd, or "" when the article gives none
    language: str = "vi"
    url: str = ""
    path: str = ""


@dataclass(frozen=True)
class Chunk:
    """A span of a Document; `text == document.text[char_start:char_end]`."""

    chunk_id: str
    doc_id: str
    position: int
    text: str
    char_start: int
    char_end: int
    title: str = ""
    source: str = ""
    date: str = ""
    language: str = "vi"
    url: str = ""

    def metadata(self) -> dict[str, Any]:
        """Flat metadata as stored beside the vector (Chroma accepts only scalars)."""
        return {
            "doc_id": self.doc_id,
            "position": self.position,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "title": self.title,
            "source": self.source,
            "date": self.date,
            "language": self.language,
            "url": self.url,
        }


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the per-retriever ranks that produced it."""

    chunk: Chunk
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Citation:
    """Source [n] of an answer: the chunk and the sentence(s) quoted from it."""

    n: int
    chunk: Chunk
    quote: str


@dataclass(frozen=True)
class Answer:
    """What the assistant says, with the evidence it rests on."""

    question: str
    language: Lang
    text: str
    refused: bool
    backend: Literal["extractive", "llm"]
    citations: tuple[Citation, ...] = ()
    hits: tuple[Hit, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    notice: str = ""  # e.g. "LLM unreachable, extractive answer shown"
