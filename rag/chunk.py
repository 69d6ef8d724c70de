"""Documents -> Chunks: whole sentences packed to about `target_words`, with sentence overlap.

A chunk never cuts a sentence. The one exception is a single "sentence" longer than three chunks
(pages with no punctuation at all), which is split at word boundaries so it can still be embedded.
"""

from __future__ import annotations

import re

from rag.text import split_sentences
from rag.types import Chunk, Document


def _word_count(text: str) -> int:
    return len(text.split())


def _sentence_spans(text: str, max_words: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for start, end in split_sentences(text):
        if _word_count(text[start:end]) <= max_words:
            spans.append((start, end))
            continue
        # Pathological run-on text: fall back to pieces of max_words words, cut at whitespace.
        word_spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[start:end])]
        for k in range(0, len(word_spans), max_words):
            group = word_spans[k : k + max_words]
            spans.append((start + group[0][0], start + group[-1][1]))
    return spans


def chunk_document(doc: Document, target_words: int = 180, overlap_words: int = 40) -> list[Chunk]:
    """Split `doc.text` into chunks whose text is exactly `doc.text[char_start:char_end]`."""
    spans = _sentence_spans(doc.text, max_words=target_words * 3)
    counts = [_word_count(doc.text[s:e]) for s, e in spans]
    chunks: list[Chunk] = []
    i = 0
    while i < len(spans):
        j, words_in = i, 0
        while j < len(spans) and (words_in == 0 or words_in + counts[j] <= target_words * 1.3):
            words_in += counts[j]
            j += 1
            if words_in >= target_words:
                break
        # Absorb a short tail rather than leave a fragment chunk at the end of the document.
        if j < len(spans) and sum(counts[j:]) < target_words * 0.35 and words_in + sum(counts[j:]) <= target_words * 1.6:
            j = len(spans)
        start, end = spans[i][0], spans[j - 1][1]
        chunks.append(
            Chunk(
                chunk_id=f"{doc.doc_id}#{len(chunks):04d}",
                doc_id=doc.doc_id,
                position=len(chunks),
                text=doc.text[start:end],
                char_start=start,
                char_end=end,
                title=doc.title,
                source=doc.source,
                date=doc.date,
                language=doc.language,
                url=doc.url,
            )
        )
        if j >= len(spans):
            break
        # Step back over whole sentences worth at most `overlap_words`, but always make progress.
        back, k = 0, j
        while k - 1 > i and back + counts[k - 1] <= overlap_words:
            k -= 1
            back += counts[k]
        i = k
    return chunks
