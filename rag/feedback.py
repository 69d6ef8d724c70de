"""Thumbs up / down (plus an optional comment) on chat answers, kept in SQLite under RAG_HOME.

`feedback.sqlite3` is created on first use, in WAL mode with synchronous=FULL, so a rating survives a
crash the moment `record` returns. Every call opens its own short connection, which makes the store safe
to use from Gradio's worker threads and from several processes at once.

`export_drafts(path)` turns the ratings into draft gold questions in the evaluation dataset's JSONL
format (eval/datasets/gold.jsonl): a 👍 answer becomes the reference answer with its cited quotes as
evidence; a 👎 gets an empty answer and `needs_review: true` for a person to fill in.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.text import detect_language, nfc

FILENAME = "feedback.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT    NOT NULL,
    question    TEXT    NOT NULL,
    answer      TEXT    NOT NULL,
    rating      INTEGER NOT NULL CHECK (rating IN (1, -1)),
    comment     TEXT    NOT NULL DEFAULT '',
    citations   TEXT    NOT NULL DEFAULT '[]',
    backend     TEXT    NOT NULL DEFAULT '',
    language    TEXT    NOT NULL DEFAULT ''
)
"""
_CITATION_KEYS = ("n", "chunk_id", "doc_id", "title", "source", "date", "url", "quote")


@dataclass(frozen=True)
class FeedbackRecord:
    """One stored rating."""

    id: int
    created_at: str
    question: str
    answer: str
    rating: int
    comment: str
    citations: list[dict[str, Any]]
    backend: str
    language: str


def _rating(value: int | bool | str) -> int:
    """+1 / -1 from 1, -1, True, False, 'up', 'down', '+1', '-1', '👍', '👎'."""
    if isinstance(value, bool):
        return 1 if value else -1
    if isinstance(value, int) and value in (1, -1):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "+1", "up", "like", "liked", "👍"):
            return 1
        if v in ("-1", "down", "dislike", "disliked", "👎"):
            return -1
    raise ValueError(f"rating must be +1 or -1 (got {value!r})")


def _citation_dict(c: Any) -> dict[str, Any]:
    """A citation as a flat dict, from a rag.types.Citation or an `answer_json` citation object."""
    if isinstance(c, dict):
        return {k: c.get(k, "") for k in _CITATION_KEYS}
    chunk = c.chunk
    return {
        "n": c.n, "chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id, "title": chunk.title,
        "source": chunk.source, "date": chunk.date, "url": chunk.url, "quote": c.quote,
    }


def _variant(question: str) -> tuple[str, str]:
    """(lang, variant) of a question as in the gold dataset."""
    detected = detect_language(question)
    if detected == "en":
        return "en", "en"
    return "vi", "no_diacritics" if detected == "vi_nodiac" else "diacritics"


class FeedbackStore:
    """The feedback table in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackStore:
        return cls(Path(settings.home) / FILENAME)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
            yield conn
            conn.commit()
        finally:
            conn.close()

    def record(
        self,
        question: str,
        answer: str,
        rating: int | bool | str,
        comment: str = "",
        citations: Iterable[Any] = (),
        backend: str = "",
        language: str = "",
    ) -> int:
        """Store one rating; returns its id. `citations` are Citation objects or `answer_json` dicts."""
        value = _rating(rating)
        cites = [_citation_dict(c) for c in citations]
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO feedback (created_at, question, answer, rating, comment, citations, backend, language)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (created, nfc(question or ""), nfc(answer or ""), value, nfc(comment or "").strip(),
                 json.dumps(cites, ensure_ascii=False), backend or "", language or ""),
            )
            return int(cur.lastrowid or 0)

    def record_answer(self, answer: Any, rating: int | bool | str, comment: str = "") -> int:
        """Store a rating of a rag.types.Answer."""
        return self.record(answer.question, answer.text, rating, comment, answer.citations, answer.backend,
                           answer.language)

    def count(self, rating: int | None = None) -> int:
        """Number of stored ratings (of one kind when `rating` is +1 or -1). 0 if nothing was stored yet."""
        if not self.path.exists():
            return 0
        with self._connect() as conn:
            if rating is None:
                row = conn.execute("SELECT COUNT(*) FROM feedback").fetchone()
            else:
                row = conn.execute("SELECT COUNT(*) FROM feedback WHERE rating = ?", (_rating(rating),)).fetchone()
        return int(row[0])

    def records(self) -> list[FeedbackRecord]:
        """Every rating, oldest first."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, created_at, question, answer, rating, comment, citations, backend, language"
                " FROM feedback ORDER BY id"
            ).fetchall()
        return [FeedbackRecord(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "[]"), r[7], r[8]) for r in rows]

    def export_drafts(self, path: Path) -> int:
        """Write every rating as a draft gold question (JSONL, atomically); returns the number written."""
        lines = [json.dumps(draft_gold(r), ensure_ascii=False) for r in self.records()]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return len(lines)


def draft_gold(r: FeedbackRecord) -> dict[str, Any]:
    """A rating as a gold-dataset row (plus needs_review, rating, comment, created_at)."""
    lang, variant = _variant(r.question)
    good = r.rating > 0
    refused = not r.citations  # an answer without sources is the refusal sentence
    quotes = [c.get("quote", "") for c in r.citations if c.get("quote")]
    doc_ids = list(dict.fromkeys(c.get("doc_id", "") for c in r.citations if c.get("doc_id")))
    return {
        "id": f"fb-{r.id:06d}",
        "lang": lang,
        "variant": variant,
        "category": "feedback",
        # 👍 on a refusal means "not in the documents"; a 👎 is assumed answerable until reviewed.
        "answerable": not (good and refused),
        "question": r.question,
        "answer": r.answer if good else "",  # for a 👍 refusal: the refusal sentence, as in gold.jsonl
        "evidence": quotes if good else [],
        "doc_ids": doc_ids if good else [],
        "follows": None,
        "needs_review": not good,
        "rating": r.rating,
        "comment": r.comment,
        "created_at": r.created_at,
    }


def record(settings: Settings, question: str, answer: str, rating: int | bool | str, comment: str = "",
           citations: Iterable[Any] = (), backend: str = "", language: str = "") -> int:
    """Store one rating under `settings.home`; see FeedbackStore.record."""
    return FeedbackStore.from_settings(settings).record(question, answer, rating, comment, citations, backend,
                                                        language)


def count(settings: Settings) -> int:
    """Number of ratings stored under `settings.home`."""
    return FeedbackStore.from_settings(settings).count()


def export_drafts(settings: Settings, path: Path) -> int:
    """Export the ratings under `settings.home` as draft gold JSONL; returns the number of lines."""
    return FeedbackStore.from_settings(settings).export_drafts(path)
