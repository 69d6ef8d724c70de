"""Hybrid retrieval: query analysis -> dense (Chroma) + BM25 (accented and tone-free fields) -> weighted RRF.

Query analysis detects vi / en / Vietnamese-without-tones, and, with the domain lexicon, turns an
English question into Vietnamese search terms (and a Vietnamese one into its synonyms and acronyms),
since the offline embedder is English-centric and BM25 cannot match across languages.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rag.config import BUNDLED_MODEL, Settings
from rag.embed import Embedder
from rag.entities import chunk_entities_of, detect_question_entities, entity_ranking
from rag.errors import BadInput
from rag.fusion import drop_near_duplicates, ranks_of, shingles, weighted_rrf
from rag.index import Index, MetadataColumns
from rag.lexicon import Lexicon
from rag.rerank import Reranker, rerank
from rag.text import QueryLang, detect_language, nfc, query_tokens, strip_tokens, vi_number, words
from rag.types import Hit

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
_ISO_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$")

# Per-language run weights. Tone-free BM25 is the main lexical signal for unaccented questions and a
# minor one otherwise; the translated runs only exist for English questions.
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "vi": {"dense": 1.0, "bm25": 1.0, "bm25_plain": 0.3, "entities": 0.5},
    "vi_nodiac": {"dense": 0.7, "bm25": 0.3, "bm25_plain": 1.0, "entities": 0.5},
    "en": {"dense": 0.5, "dense_translated": 0.7, "bm25": 0.2, "bm25_translated": 1.0, "bm25_plain": 0.3,
           "entities": 0.5},
}


# With the bundled English-centric embedder (the offline fallback), dense similarity between Vietnamese
# texts is noisy, so it only nudges the lexical runs. Tuned on eval/datasets/gold.jsonl
# (`rag eval -c hybrid -c dense-lighter=eval/configs/dense-lighter.json`): hit@1 63% -> 71%, hit@5 96% -> 97%.
FALLBACK_EMBEDDER_WEIGHTS: dict[str, dict[str, float]] = {
    "vi": {"dense": 0.2, "bm25": 1.0, "bm25_plain": 0.3, "entities": 0.5},
    # Without tones, the names of provinces, sectors and organisations (matched tone-free) are among the
    # few reliable signals: the entity run counts more.
    "vi_nodiac": {"dense": 0.2, "bm25": 0.3, "bm25_plain": 1.0, "entities": 0.8},
    "en": {"dense": 0.2, "dense_translated": 0.2, "bm25": 0.2, "bm25_translated": 1.0, "bm25_plain": 0.3,
           "entities": 0.5},
}


def weights_for(embedder_name: str) -> dict[str, dict[str, float]]:
    """The fusion weights for an embedder: light dense weights for the English-centric fallback model."""
    english_centric = embedder_name == BUNDLED_MODEL or "minilm" in embedder_name.lower()
    return FALLBACK_EMBEDDER_WEIGHTS if english_centric else DEFAULT_WEIGHTS


@dataclass(frozen=True)
class Filters:
    """Metadata restrictions; empty fields mean no restriction. Dates are ISO strings, inclusive."""

    date_from: str = ""
    date_to: str = ""
    sources: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for value in (self.date_from, self.date_to):
            if value and not _ISO_DATE.match(value):
                raise BadInput(
                    f"Dates must look like 2025-03-14 (or 2025-03, 2025): {value!r}.",
                    f"Ngày phải có dạng 2025-03-14 (hoặc 2025-03, 2025): {value!r}.",
                )

    def is_empty(self) -> bool:
        return not (self.date_from or self.date_to or self.sources or self.doc_ids or self.languages)

    def row_mask(self, columns: MetadataColumns) -> np.ndarray | None:
        """Boolean mask over index rows (vectorised; None when there is no filter)."""
        if self.is_empty():
            return None
        mask = np.ones(len(columns), dtype=bool)
        if self.doc_ids:
            mask &= columns.is_in("doc_id", self.doc_ids)
        if self.sources:
            mask &= columns.is_in("source", self.sources)
        if self.languages:
            mask &= columns.is_in("language", self.languages)
        if self.date_from or self.date_to:
            mask &= columns.date_between(self.date_from, self.date_to)
        return mask


@dataclass(frozen=True)
class QueryPlan:
    """Everything derived from the question before searching (shown in --json and the UI)."""

    question: str
    language: QueryLang
    bm25_tokens: tuple[str, ...]
    translated_tokens: tuple[str, ...] = ()
    translation: str = ""  # Vietnamese rendering of an English question ('' otherwise)
    expansions: tuple[str, ...] = ()
    extra_queries: tuple[str, ...] = ()


@dataclass
class RetrievalResult:
    plan: QueryPlan
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)


def validate_question(question: str) -> str:
    """NFC, trimmed question, or BadInput with a sentence for the user."""
    q = nfc(question or "").strip()
    if not q:
        raise BadInput("Please type a question.", "Vui lòng nhập câu hỏi.")
    if len(q) > MAX_QUESTION_CHARS:
        raise BadInput(
            f"The question is too long ({len(q):,} characters); please keep it under {MAX_QUESTION_CHARS:,}.",
            f"Câu hỏi quá dài ({vi_number(len(q))} ký tự); vui lòng viết ngắn hơn {vi_number(MAX_QUESTION_CHARS)} ký tự.",
        )
    if not words(q):
        raise BadInput(
            "The question has no words to search for.", "Câu hỏi không có từ nào để tìm kiếm."
        )
    return q


def plan_query(question: str, lexicon: Lexicon | None, extra_queries: tuple[str, ...] = ()) -> QueryPlan:
    """Detect the language and build BM25 tokens, lexicon translations and synonym expansions."""
    lang = detect_language(question)
    tokens = query_tokens(question)
    translated: list[str] = []
    translation = ""
    expansions: tuple[str, ...] = ()
    if lexicon is not None and len(lexicon):
        exp = lexicon.expand(question)
        expansions = exp.matched
        if lang == "en":
            # Vietnamese terms for matched phrases, plus names/acronyms/numbers carried over as-is.
            carried = [w for w in exp.leftover if w[:1].isupper() or any(c.isdigit() for c in w)]
            translation = " ".join([*exp.vietnamese, *carried])
            translated = query_tokens(translation)
        else:
            # Synonyms and acronyms (KH&CN <-> khoa học và công nghệ) widen BM25 for Vietnamese too.
            translated = query_tokens(" ".join(exp.vietnamese))
    for extra in extra_queries:  # e.g. an LLM translation of the question
        translated.extend(query_tokens(extra))
    return QueryPlan(
        question=question,
        language=lang,
        bm25_tokens=tuple(tokens),
        translated_tokens=tuple(dict.fromkeys(translated)),
        translation=translation,
        expansions=expansions,
        extra_queries=extra_queries,
    )


class HybridRetriever:
    """Dense + BM25 retrieval over one Index, fused with per-language weighted RRF."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        settings: Settings,
        lexicon: Lexicon | None = None,
        weights: dict[str, dict[str, float]] | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        index.check_model(embedder)
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.lexicon = lexicon
        self.weights = weights or weights_for(embedder.name)
        self.reranker = reranker

    def retrieve(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        extra_queries: tuple[str, ...] = (),
    ) -> RetrievalResult:
        """Top-k hits for `question`; raises BadInput for unusable questions."""
        t0 = time.perf_counter()
        q = validate_question(question)
        k = k or self.settings.top_k
        plan = plan_query(q, self.lexicon, extra_queries)
        filters = filters or Filters()
        mask = filters.row_mask(self.index.columns)
        rows = None if mask is None else np.flatnonzero(mask)
        n = self.settings.candidates
        runs: dict[str, list[str]] = {}
        weights = self.weights.get(plan.language, self.weights["vi"])
        timings: dict[str, float] = {}

        t = time.perf_counter()
        dense_texts = [q]
        if plan.translation or plan.extra_queries:
            dense_texts.append(" ".join([plan.translation, *plan.extra_queries]).strip())
        vectors = self.embedder.embed_queries(dense_texts)
        timings["embed"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        use_translated = len(dense_texts) > 1 and weights.get("dense_translated", weights.get("dense", 0)) > 0
        found = self.index.dense_search_many(vectors if use_translated else vectors[:1], n, rows)
        runs["dense"] = [cid for cid, _ in found[0]]
        if use_translated:
            runs["dense_translated"] = [cid for cid, _ in found[1]]
        timings["dense"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        weight_mask = None if mask is None else mask.astype(np.float32)
        runs["bm25"] = [cid for cid, _ in self.index.accented.search(list(plan.bm25_tokens), n, weight_mask)]
        plain_query = strip_tokens([*plan.bm25_tokens, *plan.translated_tokens])
        runs["bm25_plain"] = [cid for cid, _ in self.index.plain.search(plain_query, n, weight_mask)]
        if plan.translated_tokens:
            combined = [*plan.bm25_tokens, *plan.translated_tokens]
            runs["bm25_translated"] = [cid for cid, _ in self.index.accented.search(combined, n, weight_mask)]
        timings["bm25"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        if weights.get("entities", 0) > 0:
            # Places, organisations and sectors named in the question (either language, old or new
            # province names) form one more ranking: chunks mentioning more of them rank higher.
            q_entities = detect_question_entities(q)
            if not q_entities.is_empty():
                runs["entities"] = entity_ranking(
                    q_entities, self.index.chunks, chunk_entities_of(self.index),
                    limit=n, ids=self.index.accented.ids, mask=mask,
                )
        timings["entities"] = (time.perf_counter() - t) * 1000

        effective = dict(weights)
        if "dense_translated" in runs and "dense_translated" not in effective:
            effective["dense_translated"] = effective.get("dense", 1.0)
        if "bm25_translated" in runs and "bm25_translated" not in effective:
            effective["bm25_translated"] = effective.get("bm25", 1.0)
        depth = max(k, 20) if self.reranker is not None else k
        chunks = self.index.chunks
        fused = drop_near_duplicates(
            weighted_rrf(runs, k=self.settings.rrf_k, weights=effective), depth,
            lambda cid: _shingles_of(chunks[cid].text) if cid in chunks else frozenset(),
            lambda cid: chunks[cid].doc_id if cid in chunks else cid,
        )
        hits = [
            Hit(chunk=self.index.chunks[cid], score=score, ranks=ranks_of(runs, cid))
            for cid, score in fused
            if cid in self.index.chunks
        ]
        if self.reranker is not None:
            t = time.perf_counter()
            hits = rerank(self.reranker, q, hits, k)
            timings["rerank"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        return RetrievalResult(plan=plan, hits=hits, timings_ms=timings)


@lru_cache(maxsize=20_000)
def _shingles_of(text: str) -> frozenset[int]:
    return shingles(text)


def parse_weights(text: str) -> dict[str, dict[str, float]]:
    """Weights from a JSON string such as '{"en": {"bm25_translated": 1.2}}', merged over the defaults."""
    merged = json.loads(json.dumps(DEFAULT_WEIGHTS))
    for lang, runs in json.loads(text).items():
        merged.setdefault(lang, {}).update({k: float(v) for k, v in runs.items()})
    return merged
