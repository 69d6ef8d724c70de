"""Chat feedback: durable SQLite store and export as draft gold questions."""

from __future__ import annotations

import json
import sqlite3

import pytest

from rag.feedback import FILENAME, FeedbackStore, count, export_drafts, record
from rag.types import Chunk, Citation
from tests.conftest import make_settings

GOLD_FIELDS = {"id", "lang", "variant", "category", "answerable", "question", "answer", "evidence", "doc_ids",
               "follows"}


def _citation(n: int, doc: str, quote: str) -> Citation:
    chunk = Chunk(chunk_id=f"{doc}#0", doc_id=doc, position=0, text=f"… {quote} …", char_start=0,
                  char_end=10, title="T", source="S", date="2024-01-01")
    return Citation(n=n, chunk=chunk, quote=quote)


def test_records_survive_reopening(tmp_path):
    settings = make_settings(tmp_path / "home")
    assert count(settings) == 0
    assert not (tmp_path / "home" / FILENAME).exists()  # nothing is created until the first rating
    rid = record(settings, "EMB-AI là gì?", "Theo các tài liệu:\n- EMB-AI là … [1]", +1, "đúng",
                 [_citation(1, "doc-a", "EMB-AI là mô hình")], "extractive", "vi")
    assert rid == 1
    record(settings, "Who met whom?", "I couldn't find this in the documents.", False, backend="extractive",
           language="en")
    # A brand-new store object on the same file (as after a restart) sees both ratings.
    reopened = FeedbackStore.from_settings(make_settings(tmp_path / "home"))
    assert reopened.count() == 2 and reopened.count(1) == 1 and reopened.count(-1) == 1
    first, second = reopened.records()
    assert (first.rating, first.comment, first.backend, first.language) == (1, "đúng", "extractive", "vi")
    assert first.citations[0]["doc_id"] == "doc-a" and first.citations[0]["quote"] == "EMB-AI là mô hình"
    assert second.rating == -1 and second.citations == []
    assert first.created_at[:4].isdigit() and "T" in first.created_at
    with sqlite3.connect(tmp_path / "home" / FILENAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [r[1] for r in conn.execute("PRAGMA table_info(feedback)")]
    assert cols == ["id", "created_at", "question", "answer", "rating", "comment", "citations", "backend", "language"]


def test_bad_rating_is_rejected(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite3")
    with pytest.raises(ValueError):
        store.record("q", "a", 0)
    assert store.count() == 0


def test_export_matches_gold_schema(tmp_path):
    settings = make_settings(tmp_path / "home")
    store = FeedbackStore.from_settings(settings)
    store.record("EMB-AI được ra mắt khi nào?", "Theo các tài liệu:\n- … [1]", 1, "",
                 [_citation(1, "doc-a", "ra mắt năm 2024"), _citation(2, "doc-b", "tại Tokyo")], "extractive", "vi")
    store.record("doanh nghiep o Osaka lien he ai?", "Theo các tài liệu: …", -1, "sai nguồn",
                 [_citation(1, "doc-c", "x")], "extractive", "vi")
    store.record("What is the GDP of Mars?", "I couldn't find this in the documents.", 1, "", [], "extractive", "en")
    out = tmp_path / "drafts" / "fb.jsonl"
    assert export_drafts(settings, out) == 3
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3
    for r in rows:
        assert set(r) >= GOLD_FIELDS
        assert isinstance(r["evidence"], list) and isinstance(r["doc_ids"], list)
        assert r["variant"] in ("diacritics", "no_diacritics", "en") and r["lang"] in ("vi", "en")
    up, down, refusal = rows
    assert up["answer"].startswith("Theo các tài liệu") and up["answerable"] is True
    assert up["evidence"] == ["ra mắt năm 2024", "tại Tokyo"] and up["doc_ids"] == ["doc-a", "doc-b"]
    assert up["needs_review"] is False and (up["lang"], up["variant"]) == ("vi", "diacritics")
    assert down["answer"] == "" and down["evidence"] == [] and down["needs_review"] is True
    assert down["variant"] == "no_diacritics" and down["comment"] == "sai nguồn"
    assert refusal["answerable"] is False and refusal["lang"] == "en" and refusal["evidence"] == []
    assert refusal["answer"] == "I couldn't find this in the documents."  # gold stores the refusal sentence
    assert len({r["id"] for r in rows}) == 3


def test_like_handler_records_the_rated_answer(pipeline, tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio")
    from rag.ui_feedback import feedback_handler

    settings = make_settings(tmp_path / "home")
    handler = feedback_handler(pipeline, settings)
    question = "EMB-AI là gì?"
    answer = pipeline.ask(question)
    shown = answer.text + "\n\n**Nguồn**\n[1] …"  # the chat shows the answer plus its rendered sources
    history = [{"role": "user", "content": [{"type": "text", "text": question}]},
               {"role": "assistant", "content": [{"type": "text", "text": shown}]},
               {"role": "user", "content": "Thủ đô của Pháp là gì?"},
               {"role": "assistant", "content": "Không tìm thấy thông tin này trong tài liệu."}]
    handler(history, gr.LikeData(None, {"index": 1, "value": history[1]["content"], "liked": True}))
    handler(history, gr.LikeData(None, {"index": 3, "value": history[3]["content"], "liked": "Wrong source"}))
    handler(history, gr.LikeData(None, {"index": 7, "value": "?", "liked": False}))  # out of range: ignored
    up, down = FeedbackStore.from_settings(settings).records()
    assert (up.question, up.rating, up.answer, up.backend) == (question, 1, answer.text, "extractive")
    assert [c["quote"] for c in up.citations] == [c.quote for c in answer.citations]
    assert (down.question, down.rating, down.comment) == ("Thủ đô của Pháp là gì?", -1, "Wrong source")

    # With a lookup of the answers the chat produced, nothing is asked again.
    monkeypatch.setattr(type(pipeline), "ask", lambda *a, **k: pytest.fail("asked again"))
    looked_up = feedback_handler(pipeline, settings, lookup={shown: answer}.get)
    looked_up(history, gr.LikeData(None, {"index": 1, "value": shown, "liked": False}))
    last = FeedbackStore.from_settings(settings).records()[-1]
    assert last.rating == -1 and len(last.citations) == len(answer.citations) > 0
