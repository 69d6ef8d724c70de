import itertools
from pathlib import Path

from rag.chunk import chunk_document
from rag.clean import clean_document
from rag.load import load_file
from rag.text import split_sentences
from rag.types import Document

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def _docs():
    return [clean_document(load_file(p)) for p in sorted(CORPUS.glob("*.md"))]


def test_chunks_are_exact_spans_made_of_whole_sentences():
    for doc in _docs():
        starts = {s for s, _ in split_sentences(doc.text)}
        ends = {e for _, e in split_sentences(doc.text)}
        chunks = chunk_document(doc, target_words=120, overlap_words=30)
        assert chunks, doc.doc_id
        for i, c in enumerate(chunks):
            assert doc.text[c.char_start : c.char_end] == c.text
            assert c.char_start in starts and c.char_end in ends  # never cuts a sentence
            assert c.position == i and c.chunk_id == f"{doc.doc_id}#{i:04d}"
            assert c.doc_id == doc.doc_id and c.title == doc.title and c.date == doc.date


def test_chunks_cover_document_and_overlap():
    doc = max(_docs(), key=lambda d: len(d.text))
    chunks = chunk_document(doc, target_words=120, overlap_words=30)
    assert len(chunks) >= 3
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(doc.text.rstrip())
    overlaps = 0
    for a, b in itertools.pairwise(chunks):
        assert doc.text[a.char_end : b.char_start].strip() == ""  # no text falls between chunks
        assert b.char_start > a.char_start  # always progressing
        overlaps += b.char_start < a.char_end
    assert overlaps >= 1  # short closing sentences are carried over into the next chunk
    assert all(len(c.text.split()) <= 120 * 1.6 or c.text.count(".") <= 1 for c in chunks)


def test_run_on_text_without_punctuation_is_still_split():
    doc = Document(doc_id="runon", title="t", text=" ".join(["chữ"] * 2000))
    chunks = chunk_document(doc, target_words=100, overlap_words=0)
    assert len(chunks) >= 6
    assert all(len(c.text.split()) <= 300 for c in chunks)
    assert "".join(c.text.replace(" ", "") for c in chunks) == doc.text.replace(" ", "")
