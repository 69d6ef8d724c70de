"""Answers with numbered citations. The extractive answerer is the offline default and a first-class
backend: it quotes the sentences of the retrieved chunks that best cover the question and refuses when
the evidence is too weak, rather than quoting something merely on-topic.

Evidence strength = IDF-weighted share of the question's key terms found in the chosen sentences.
Key terms come from the lexicon (a multi-word term counts once, and any of its Vietnamese or English
forms counts as found) plus the remaining content words; matching ignores case and diacritics.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.embed import Embedder
from rag.grounding import format_sources, is_refusal, load_prompt, render_prompt, validate_citations
from rag.guard import scrub_answer
from rag.index import Index
from rag.lexicon import Lexicon
from rag.llm import ChatModel
from rag.retrieve import QueryPlan
from rag.text import (
    answer_language,
    detect_language,
    is_stopword,
    segment_any,
    split_sentences,
    strip_diacritics,
)
from rag.types import Answer, Citation, Hit, Lang

REFUSAL = {
    "vi": "Không tìm thấy thông tin này trong tài liệu.",
    "en": "I couldn't find this in the documents.",
}
FRAME = {
    "vi": "Theo các tài liệu:",
    "en": "According to the documents (quoted in Vietnamese):",
}
UNKNOWN_ENGLISH_WEIGHT = 0.5
_SYLLABLE = re.compile(r"[\w&]+", re.UNICODE)  # hyphens and slashes split: EMB-AI -> emb, ai


def _syllables(text: str) -> list[str]:
    text = re.sub(r"['’]s\b", "", text)  # English possessive: "Japan's" -> "Japan"
    return [strip_diacritics(t.replace("&", "")).lower() for t in _SYLLABLE.findall(text)]


def _contains(haystack: list[str], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    if n == 0:
        return False
    first = needle[0]
    return any(haystack[i] == first and tuple(haystack[i : i + n]) == needle for i in range(len(haystack) - n + 1))


@dataclass(frozen=True)
class KeyTerm:
    """A term the evidence must contain, in any of its forms (syllable tuples without tones)."""

    surface: str
    forms: tuple[tuple[str, ...], ...]
    weight: float


def key_terms(question: str, lexicon: Lexicon | None, index: Index) -> list[KeyTerm]:
    """The question's content terms with IDF weights; unknown words weigh as much as the rarest term."""
    max_idf = float(np.log(1 + (len(index.chunks) + 0.5) / 0.5)) if index.chunks else 1.0
    if lexicon is not None and len(lexicon):
        exp = lexicon.expand(question)
        groups = [(m, lexicon.expand(m)) for m in exp.matched]
        runs = list(exp.leftover_runs)
    else:
        groups, runs = [], [question]
    english = detect_language(question) == "en"
    acronyms = {w.lower() for w in _SYLLABLE.findall(question) if w.isupper() and len(w) > 1}
    # Vietnamese runs are segmented so that a compound ('dân số') must occur as a whole.
    leftovers = [
        w.replace("_", " ") for run in runs for w in (run.split() if english else segment_any(run, index.compounds))
    ]
    terms: list[KeyTerm] = []
    for surface, sub in groups:
        forms = {tuple(_syllables(f)) for f in (*sub.vietnamese, *sub.english, surface)}
        forms = {f for f in forms if f and not _is_function_phrase(f)}
        if not forms:
            continue
        terms.append(KeyTerm(surface, tuple(sorted(forms)), _weight(forms, index, max_idf)))
    for word in leftovers:
        form = tuple(_syllables(re.sub(r"(?<=\d)(st|nd|rd|th)\b", "", word)))  # '20th' -> '20'
        if not form or (_is_function_phrase(form) and word.lower() not in acronyms):
            continue
        if english and not (word[:1].isupper() or any(ch.isdigit() for ch in word)):
            # An English word the lexicon does not know cannot be checked against Vietnamese text;
            # it counts a little, so that unknown topic words still lower the evidence score.
            terms.append(KeyTerm(word, (form,), UNKNOWN_ENGLISH_WEIGHT))
            continue
        terms.append(KeyTerm(word, (form,), _weight({form}, index, max_idf)))
    return terms


def _weight(forms: set[tuple[str, ...]], index: Index, max_idf: float) -> float:
    """IDF of the rarest form of a term that occurs in the corpus; `max_idf` when none occurs.

    A term absent from the corpus (every form, or the phrase as a whole: 'dân số' is absent even
    though 'dân' and 'số' occur) is maximally informative: if the question needs it, no passage answers.
    """
    present: list[float] = []
    for form in forms:
        idfs = [index.plain.idf(s) for s in form]
        if all(i is not None for i in idfs) and (len(form) == 1 or _phrase_in_corpus(form, index)):
            present.append(sum(idfs) / len(idfs))  # type: ignore[arg-type]
    return max(present) if present else (max_idf if forms else 0.0)


def _phrase_in_corpus(form: tuple[str, ...], index: Index) -> bool:
    """Whether the syllables occur contiguously somewhere ('dân số' is absent even if 'dân' and 'số' are not)."""
    cached = index.phrase_cache.get(form)
    if cached is None:
        cached = False
        for chunk_id, _score in index.plain.search([*form, "_".join(form)], k=30):
            chunk = index.chunks.get(chunk_id)
            if chunk is not None and _contains(_syllables(chunk.text), form):
                cached = True
                break
        index.phrase_cache[form] = cached
    return cached


def _is_function_phrase(form: tuple[str, ...]) -> bool:
    """A form made only of function words ('o dau' = 'ở đâu'), judged as one word, then syllable by syllable."""
    if len(form) == 1:
        return is_stopword(form[0])
    return is_stopword("_".join(form)) or (all(is_stopword(s) for s in form if not s.isdigit()) and not any(
        s.isdigit() for s in form
    ))


def _found(term: KeyTerm, hay: list[str], hay_set: set[str]) -> float:
    """1 if a form occurs as a phrase; 0.5 if a long form (3+ syllables) occurs only scattered; else 0."""
    best = 0.0
    for f in term.forms:
        if _contains(hay, f):
            return 1.0
        if len(f) >= 3 and all(s in hay_set for s in f if not is_stopword(s)):
            best = 0.5  # long phrases get paraphrased ('đầu tư của các doanh nghiệp Nhật Bản')
    return best


def coverage(terms: list[KeyTerm], text: str) -> float:
    """IDF-weighted fraction of key terms that occur in `text` (case- and tone-insensitive)."""
    total = sum(t.weight for t in terms)
    if total <= 0:
        return 0.0
    hay = _syllables(text)
    hay_set = set(hay)
    return sum(t.weight * _found(t, hay, hay_set) for t in terms) / total


# Expected answer type, from the question's wording (checked on text without tones).
_ANSWER_TYPES = (
    ("date", re.compile(r"\b(khi nao|bao gio|ngay nao|ngay bao nhieu|nam nao|thang nao|luc nao|when|what date|"
                        r"which date|which year|what year|which month)\b")),
    ("number", re.compile(r"\b(bao nhieu|may|so luong|how many|how much|what number)\b")),
    ("place", re.compile(r"\b(o dau|tai dau|noi nao|thanh pho nao|tinh nao|dia phuong nao|where|which city|"
                         r"which prefecture|which province|which country)\b")),
    ("person", re.compile(r"\b(who|whom|whose|ten la gi|ten gi|ten cua)\b")),
)
_TITLE = re.compile(
    r"\b(Thủ tướng|Bộ trưởng|Thứ trưởng|Đại sứ|Tổng Lãnh sự|Chủ tịch|Tổng Bí thư|Tổng giám đốc|Giám đốc|"
    r"Viện trưởng|Hiệu trưởng|Trưởng đoàn|ông|bà|GS|PGS|TS|Minister|Ambassador|Mr|Ms|Dr)\b"
)
_DATE = re.compile(r"\b\d{1,2}\s*[/-]\s*\d{1,2}(?:\s*/\s*\d{2,4})?\b|\b(?:năm|tháng|ngày)\s+\d{1,4}\b|\b(?:19|20)\d{2}\b")
_NUMBER = re.compile(r"\d[\d.,]*")
_PLACE_CUE = re.compile(r"\b(tại|ở|in|at|thành phố|tỉnh)\s+$")


def answer_type(question: str) -> str:
    """'date', 'number', 'place', 'person' or '' for the kind of answer a question asks for."""
    folded = strip_diacritics(question).lower()
    for kind, pattern in _ANSWER_TYPES:
        if pattern.search(folded):
            return kind
    # Vietnamese 'ai' ("who") in lower case; 'AI' (artificial intelligence) is written in capitals.
    return "person" if re.search(r"(?<![\w-])[Aa]i(?![\w-])", strip_diacritics(question)) else ""


@lru_cache(maxsize=1)
def _known_non_person_names() -> frozenset[str]:
    """Places and organisations from the lexicon: capitalised, but never a person's name."""
    from rag.gazetteer import load_lexicon

    names = set()
    for row in load_lexicon():
        if row.kind in ("place", "org", "acronym", "policy", "sector"):
            names.update({row.vi.lower(), row.en.lower()})
    return frozenset(names)


def _capitalised_runs(sentence: str) -> list[tuple[int, str]]:
    """(start, text) of runs of capitalised words ('Phạm Quang Hiệu', 'Daren Tang'); acronyms break runs."""
    runs: list[tuple[int, str]] = []
    current: list[re.Match[str]] = []
    for m in re.finditer(r"[^\W\d_][\w-]*|\S", sentence):
        word = m.group()
        if word[0].isupper() and not (len(word) > 1 and word.isupper()):
            current.append(m)
            continue
        if current:
            runs.append((current[0].start(), sentence[current[0].start() : current[-1].end()]))
        current = []
    if current:
        runs.append((current[0].start(), sentence[current[0].start() : current[-1].end()]))
    return runs


def has_answer_type(kind: str, sentence: str, question: str) -> bool:
    """Whether a sentence contains something of the expected type that the question itself does not."""
    if not kind:
        return True
    q = question.lower()
    if kind == "number":
        return any(m.group().strip(".,") not in q for m in _NUMBER.finditer(sentence))
    if kind == "date":
        return any(m.group() not in question for m in _DATE.finditer(sentence))
    runs = [(start, run) for start, run in _capitalised_runs(sentence) if run.lower() not in q]
    if kind == "person":  # a name within a few words after a title: 'Đại sứ … Phạm Quang Hiệu'
        known = _known_non_person_names()
        # When the question names a title ('Tổng Lãnh sự … tên gì?'), the name must follow that title.
        asked = {m.group().lower() for m in _TITLE.finditer(question)}
        for start, run in runs:
            if len(run.split()) < 2 or run.lower() in known:
                continue
            before = sentence[max(0, start - 80) : start]
            titles = {m.group().lower() for m in _TITLE.finditer(before)}
            if titles and (not asked or titles & asked):
                return True
        return False
    return any(_PLACE_CUE.search(sentence[max(0, start - 20) : start]) for start, run in runs)


@dataclass(frozen=True)
class _Candidate:
    hit_rank: int
    hit: Hit
    sentence: str
    coverage: float
    similarity: float
    score: float


class ExtractiveAnswerer:
    """Quotes the best-supported sentences with [n] citations, or refuses when support is weak."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        lexicon: Lexicon | None = None,
        min_evidence: float = 0.5,
        max_sentences: int = 3,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.lexicon = lexicon
        self.min_evidence = min_evidence
        self.max_sentences = max_sentences
        self._sentence_vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def _vectors(self, hit: Hit, sentences: list[str]) -> np.ndarray:
        stored = self.index.sentence_vectors(hit.chunk.chunk_id, sentences)
        if stored is not None:  # embedded once at ingest (rag/index.py), not per question
            return stored
        key = hit.chunk.chunk_id
        cached = self._sentence_vectors.get(key)
        if cached is None or len(cached) != len(sentences):
            cached = self.embedder.embed_documents(sentences)
            self._sentence_vectors[key] = cached
            if len(self._sentence_vectors) > 4096:
                self._sentence_vectors.popitem(last=False)
        return cached

    def candidates(self, plan: QueryPlan, hits: list[Hit]) -> tuple[list[KeyTerm], list[_Candidate]]:
        """Every sentence of the hits, scored by key-term coverage and embedding similarity."""
        terms = key_terms(plan.question, self.lexicon, self.index)
        queries = [plan.question] + ([plan.translation] if plan.translation else [])
        qvecs = self.embedder.embed_queries(queries)
        out: list[_Candidate] = []
        for rank, hit in enumerate(hits):
            text = hit.chunk.text
            sentences = [text[s:e] for s, e in split_sentences(text)]
            sentences = [s for s in sentences if len(s.split()) >= 4]
            if not sentences:
                continue
            sims = (self._vectors(hit, sentences) @ qvecs.T).max(axis=1)
            for sentence, sim in zip(sentences, sims, strict=True):
                cov = coverage(terms, sentence)
                # Long sentences cover many terms by accident; a mild length penalty prefers focused ones.
                length_penalty = 0.1 * max(0.0, (len(sentence.split()) - 40) / 60)
                score = 0.65 * cov + 0.35 * float(sim) + 0.05 / (1 + rank) - length_penalty
                out.append(_Candidate(rank, hit, sentence, cov, float(sim), score))
        out.sort(key=lambda c: -c.score)
        return terms, out

    def answer(self, plan: QueryPlan, hits: list[Hit]) -> Answer:
        """An Answer quoting up to `max_sentences` sentences, or the refusal sentence."""
        lang = answer_language(plan.language)
        terms, cands = self.candidates(plan, hits)
        kind = answer_type(plan.question)
        if kind:
            # Sentences holding the kind of thing asked for (a number, a date, a name, a place) go first.
            cands.sort(key=lambda c: (not has_answer_type(kind, c.sentence, plan.question), -c.score))
        chosen: list[_Candidate] = []
        covered_text = ""
        best_cov = 0.0
        for cand in cands:
            if len(chosen) >= self.max_sentences:
                break
            if any(c.sentence == cand.sentence for c in chosen):
                continue
            gain = coverage(terms, covered_text + " " + cand.sentence) - coverage(terms, covered_text)
            # Keep the best sentence; add others only if they bring new key terms and are themselves on topic.
            if chosen and (gain <= 0.0 or cand.coverage < self.min_evidence * 0.6):
                continue
            chosen.append(cand)
            covered_text += " " + cand.sentence
            best_cov = max(best_cov, cand.coverage)
        total_cov = coverage(terms, covered_text) if chosen else 0.0
        typed = not kind or any(has_answer_type(kind, c.sentence, plan.question) for c in chosen)
        if not chosen or not terms or not typed or total_cov < self.min_evidence or best_cov < self.min_evidence * 0.6:
            return Answer(question=plan.question, language=lang, text=REFUSAL[lang], refused=True,
                          backend="extractive", hits=tuple(hits))
        # One citation per quoted sentence, so every `quote` is an exact substring of its chunk.
        citations = [Citation(n=i, chunk=c.hit.chunk, quote=c.sentence) for i, c in enumerate(chosen, 1)]
        lines = [FRAME[lang]] + [f"- {c.sentence} [{i}]" for i, c in enumerate(chosen, 1)]
        return Answer(
            question=plan.question,
            language=lang,
            text="\n".join(lines),
            refused=False,
            backend="extractive",
            citations=tuple(citations),
            hits=tuple(hits),
        )


# ---------------------------------------------------------------------------------------- LLM answers

NO_CITATION_NOTICE = {
    "vi": "Câu trả lời của mô hình ngôn ngữ không dẫn nguồn hợp lệ, nên hiển thị trích dẫn nguyên văn thay thế.",
    "en": "The language model's answer cited no valid source, so the quoted evidence is shown instead.",
}

SCRUBBED_NOTICE = {
    "vi": "Đã ẩn một chuỗi trong câu trả lời không có trong nguồn được trích dẫn (có thể là dữ liệu nhạy cảm).",
    "en": "A string in the answer that no cited source contains was hidden (it may be sensitive).",
}


class LLMAnswerer:
    """Grounded generation: numbered, delimited sources -> streamed answer -> validated citations."""

    def __init__(self, llm: ChatModel, prompts_dir: Path, lexicon: Lexicon | None = None, max_tokens: int = 700) -> None:
        self.llm = llm
        self.prompts_dir = prompts_dir
        self.lexicon = lexicon
        self.max_tokens = max_tokens

    def messages(self, question: str, lang: str, hits: list[Hit]) -> list[dict]:
        """System + user messages; sources are numbered 1..len(hits) in retrieval order."""
        sources = format_sources(
            [(i, _source_header(h), h.chunk.text) for i, h in enumerate(hits, 1)]
        )
        system = load_prompt(self.prompts_dir, "answer_system", lang)
        user = render_prompt(load_prompt(self.prompts_dir, "answer_user", lang), sources=sources, question=question)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def stream(self, question: str, lang: str, hits: list[Hit]) -> Iterator[str]:
        """The model's content deltas; raises LLMError subclasses on any failure."""
        return self.llm.stream(self.messages(question, lang, hits), max_tokens=self.max_tokens, temperature=0.1)

    def finalize(self, question: str, lang: Lang, hits: list[Hit], text: str) -> Answer | None:
        """The validated Answer, or None when it has no valid citation (the caller falls back)."""
        cleaned, cited, _removed = validate_citations(text.strip(), set(range(1, len(hits) + 1)))
        # Output guard (rag.guard): no secret, canary or system-prompt text that the cited sources do not hold.
        scrubbed = scrub_answer(
            cleaned,
            [f"{h.chunk.title}\n{h.chunk.url}\n{h.chunk.text}" for h in (hits[n - 1] for n in cited)],
            secrets=[getattr(self.llm, "_api_key", "") or ""],
            system_prompt=load_prompt(self.prompts_dir, "answer_system", lang),
        )
        if scrubbed.reject:
            return None
        cleaned = scrubbed.text
        notice = SCRUBBED_NOTICE[lang] if scrubbed.removed else ""
        if is_refusal(cleaned):
            return Answer(question=question, language=lang, text=cleaned, refused=True, backend="llm",
                          hits=tuple(hits), notice=notice)
        if not cited:
            return None
        citations = tuple(
            Citation(n=n, chunk=hits[n - 1].chunk, quote=self._quote(cleaned, n, hits[n - 1])) for n in cited
        )
        return Answer(question=question, language=lang, text=cleaned, refused=False, backend="llm",
                      citations=citations, hits=tuple(hits), notice=notice)

    def _quote(self, answer_text: str, n: int, hit: Hit) -> str:
        """The chunk sentence that best matches the answer sentences citing [n] (via lexicon terms for English)."""
        claims = " ".join(s for s in re.split(r"(?<=[.!?])\s+", answer_text) if f"{n}" in s and "[" in s)
        if self.lexicon is not None:
            claims += " " + " ".join(self.lexicon.expand(claims).vietnamese)
        wanted = set(_syllables(claims)) - {s for s in _syllables(claims) if is_stopword(s)}
        sentences = [hit.chunk.text[s:e] for s, e in split_sentences(hit.chunk.text)]
        if not sentences:
            return hit.chunk.text[:300]
        return max(sentences, key=lambda s: len(wanted & set(_syllables(s))))


def _source_header(hit: Hit) -> str:
    c = hit.chunk
    return " — ".join(x for x in (c.title, ", ".join(y for y in (c.source, c.date) if y)) if x)
