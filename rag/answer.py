"""Answers with numbered citations. The extractive answerer is the offline default and a first-class
backend: it quotes the sentences of the retrieved chunks that best cover the question and refuses when
no single passage supports an answer, rather than quoting something merely on-topic.

An answer needs one passage (a chunk and its document title) that
1. holds every *anchor* of the question — named places, organisations, people, programmes, acronyms,
   years and numbers — checked as present / absent, and the direction of a relation the question names
   ("Đại sứ Nhật Bản tại Việt Nam" is not answered by "Đại sứ Việt Nam tại Nhật Bản");
2. has a sentence holding the kind of thing asked for (a number, a date, a name, a place) and enough of
   the question's other content words: evidence = weighted share of key terms found, with *fixed* weights
   (anchor 1.5, content word 1, words every document of this domain repeats 0.35, English words the
   lexicon cannot check 0.5). No live-index IDF: a boundary that moved whenever documents were added
   would pass more unrelated quotes the bigger the index got (calibrated on the distractor run).
Further sentences join the quote only from the same document, or when they pass 1–2 on their own.
Key terms come from the lexicon (a multi-word term counts once, any of its Vietnamese or English forms
counts as found) plus the remaining content words; matching ignores case and diacritics.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.embed import Embedder
from rag.entities import find_mentions, mentions_of
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
)
from rag.text import strip_diacritics as _strip_diacritics
from rag.types import Answer, Chunk, Citation, Hit, Lang

# Speed only, same output: the same words and phrases are folded again and again per question.
strip_diacritics = lru_cache(maxsize=8192)(_strip_diacritics)

REFUSAL = {
    "vi": "Không tìm thấy thông tin này trong tài liệu.",
    "en": "I couldn't find this in the documents.",
}
FRAME = {
    "vi": "Theo các tài liệu:",
    "en": "According to the documents (quoted in Vietnamese):",
}
SHORT_ANSWER = {"vi": "Trả lời", "en": "Answer"}
AS_OF = {"vi": "tính đến {date}", "en": "as of {date}"}
SOURCE_DATE = {"vi": "(Nguồn tính đến {date}.)", "en": "(As of {date}, the source's date.)"}
# An undated source (an encyclopaedia page) is said to be one: its 'hiện nay' may be twenty years old.
NO_DATE = {"vi": "(Nguồn không ghi ngày.)", "en": "(The source gives no date.)"}
DATES_DIFFER = {
    "vi": "Các nguồn có ngày khác nhau ({dates}); nguồn mới nhất được nêu trước.",
    "en": "The sources are dated differently ({dates}); the newest is listed first.",
}
KEY_TERMS = {"en": "Key terms: "}
SOURCES_DISAGREE = {
    "vi": "Các nguồn nêu khác nhau",
    "en": "The sources disagree",
}
DISAGREE_NOTE = {
    "vi": "Các nguồn không thống nhất; mỗi thông tin được nêu kèm nguồn và ngày, nguồn mới hơn trước.",
    "en": "The sources do not agree; each answer is shown with its source and date, the newer first.",
}
PART_MISSING = {
    "vi": "Tài liệu không nói về phần: “{part}”.",
    "en": "The documents do not cover this part: “{part}”.",
}
# Fixed term weights (see the module docstring): a term's class, not its corpus statistics.
W_ANCHOR = 1.5
W_TERM = 1.0
W_COMMON = 0.35
UNKNOWN_ENGLISH_WEIGHT = 0.5
# A content word this rare in the fixed reference (in under 1% of its articles: 'học phí', 'trí thức', 'visa')
# names what is asked as much as a name does: a passage without it is about something else.
RARE_WEIGHT = 1.0
EXTRA_TOPIC = 0.75  # share of the main quote's topic coverage a quote from another passage must reach
TOPIC_BONUS = 0.3  # sentence score for covering the non-anchor terms (anchors are often in the passage anyway)
MAIN_TRIES = 5  # best-scoring sentences tried as the main quote before refusing
TOPIC_SHARE = 0.4  # share of the non-anchor terms the quoted sentences must hold (calibrated with distractors)
# Terms nearly every document of this domain contains: they neither anchor nor discriminate.
_COMMON = frozenset({
    ("viet", "nam"), ("vietnam",), ("nhat", "ban"), ("japan",), ("vietnamese",), ("japanese",), ("nhat",),
    ("hai", "nuoc"), ("hop", "tac"), ("cooperation",), ("quan", "he"), ("relations",), ("nguoi", "viet"),
    ("nguoi", "nhat"), ("nguoi", "viet", "nam"),
})
_ANCHOR_KINDS = frozenset({"place", "org", "acronym", "policy"})
_SYLLABLE = re.compile(r"[\w&]+", re.UNICODE)  # hyphens and slashes split: EMB-AI -> emb, ai


def _syllables(text: str) -> list[str]:
    return list(_folded_syllables(text))


# Speed only, same output: the same passages and sentences are folded again and again while the
# candidates of one question are scored, and a few thousand distinct syllables make up all of them.
@lru_cache(maxsize=4096)
def _folded_syllables(text: str) -> tuple[str, ...]:
    text = re.sub(r"['’]s\b", "", text)  # English possessive: "Japan's" -> "Japan"
    return tuple(_fold_syllable(t) for t in _SYLLABLE.findall(text))


@lru_cache(maxsize=1 << 16)
def _fold_syllable(token: str) -> str:
    return strip_diacritics(token.replace("&", "")).lower()


def _contains(haystack: list[str], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    if n == 0:
        return False
    first, limit, i = needle[0], len(haystack) - n + 1, -1
    try:
        while True:  # list.index scans in C for the first syllable; only its positions are compared
            i = haystack.index(first, i + 1, limit)
            if n == 1 or tuple(haystack[i : i + n]) == needle:
                return True
    except ValueError:
        return False


@dataclass(frozen=True)
class KeyTerm:
    """A term the evidence must contain, in any of its forms (syllable tuples without tones).

    `anchor`: a name, organisation, programme, acronym, year or number — the passage must hold it.
    """

    surface: str
    forms: tuple[tuple[str, ...], ...]
    weight: float
    anchor: bool = False
    scope: str = ""  # 'year' / 'place' for anchors that scope a figure (same figure, other year or country)
    required: bool = False  # a rare word (see RARE_WEIGHT): the passage must hold it, like an anchor
    toned: str = ""  # matched as written: 'tải' (download) would otherwise match 'tại' (at) everywhere


@lru_cache(maxsize=1)
def _lexicon_kinds() -> dict[tuple[str, ...], frozenset[str]]:
    """Folded lexicon form -> kinds of its rows, and whether a row spells it as a proper name."""
    from rag.gazetteer import load_lexicon

    kinds: dict[tuple[str, ...], set[str]] = {}
    for row in load_lexicon():
        proper = any(w[:1].isupper() for w in (row.vi, row.en))
        for form in (row.vi, row.en):
            key = tuple(_syllables(form))
            if key:
                kinds.setdefault(key, set()).update({row.kind, *(["proper"] if proper else [])})
    return {k: frozenset(v) for k, v in kinds.items()}


@lru_cache(maxsize=1)
def _english_lexicon_words() -> frozenset[str]:
    """Every word of the lexicon's English side: a capitalised English word among them is a word, not a name."""
    from rag.gazetteer import load_lexicon

    return frozenset(w for row in load_lexicon() for w in _syllables(row.en))


@lru_cache(maxsize=1)
def _reference_df() -> tuple[int, dict[tuple[str, ...], int]]:
    """(N, document frequency) of common folded syllables and syllable pairs in a fixed reference corpus
    (rag/data/reference_df.tsv.gz: 7.9k Vietnamese Wikipedia articles; only entries in >= 1% of them)."""
    import gzip

    path = Path(__file__).parent / "data" / "reference_df.tsv.gz"
    n, table = 1, {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            key, _, value = line.rstrip("\n").partition("\t")
            if key == "N":
                n = int(value)
            else:
                table[tuple(key.split())] = int(value)
    return n, table


def reference_weight(form: tuple[str, ...]) -> float:
    """0.25..1 from the form's document frequency in the fixed reference corpus: 'muốn' (21% of articles)
    weighs 0.34, 'visa' (under 1%) 1. Fixed, so adding documents to the index never moves it."""
    n, table = _reference_df()
    if not form:
        return 0.0
    if len(form) == 1:
        df = table.get(form)
    else:  # a phrase is at most as frequent as its rarest adjacent pair
        pairs = [table.get(pair) for pair in itertools.pairwise(form)]
        df = None if any(p is None for p in pairs) else min(p for p in pairs if p is not None)
    if df is None:
        return 1.0
    return max(0.25, min(1.0, math.log(n / df) / math.log(100)))


def _term_weight(forms: set[tuple[str, ...]] | tuple[tuple[str, ...], ...], english_only: bool = False) -> float:
    """The weight of a term from its most specific Vietnamese form (English forms are not in the reference)."""
    vi = [f for f in forms if not english_only]
    return max((reference_weight(f) for f in vi), default=UNKNOWN_ENGLISH_WEIGHT)


def _is_anchor_group(forms: set[tuple[str, ...]], surface: str, cased: bool) -> bool:
    """Whether a lexicon term of the question names something specific (a place, organisation, programme).

    In a question written with capitals (`cased`), only a capitalised, acronym or numbered mention counts
    ('the provincial government' is generic, 'the Government of Japan' is not); in an all-lower-case
    question, the lexicon's own spelling decides.
    """
    if any(f in _COMMON for f in forms) or all(_is_common_phrase(f) for f in forms):
        return False
    if surface.strip().lower() == "ai" and not surface.isupper():
        return False  # Vietnamese 'ai' = who, not the acronym AI
    table = _lexicon_kinds()
    kinds: set[str] = set()
    for f in forms:
        kinds |= table.get(f, frozenset())
    if not kinds & _ANCHOR_KINDS:
        return False
    marked = any(ch.isdigit() for ch in surface) or any(w[:1].isupper() for w in surface.split())
    if cased:
        return marked and ("proper" in kinds or any(ch.isdigit() for ch in surface)
                           or any(len(w) > 1 and w.isupper() for w in surface.split()))
    return "proper" in kinds


def _core(form: tuple[str, ...]) -> tuple[str, ...]:
    """The form without the domain's ubiquitous names: ('tri', 'thuc', 'viet', 'nam') -> ('tri', 'thuc')."""
    out: list[str] = []
    i = 0
    while i < len(form):
        for n in (3, 2, 1):
            if tuple(form[i : i + n]) in _COMMON:
                i += n
                break
        else:
            out.append(form[i])
            i += 1
    return tuple(out)


def _is_common_phrase(form: tuple[str, ...]) -> bool:
    """'viet nam nhat ban' (Vietnam–Japan): made only of the domain's ubiquitous names."""
    return not _core(form)


_ABBREVIATION_Q = re.compile(r"\bviet\s+tat\b|\bstand\s+for\b|\bshort\s+for\b|\babbreviation\b")
_ABBREVIATION_FRAME = frozenset({"ten", "viet", "tat", "cua", "tu", "to", "chuc", "co", "quan", "cum", "stand", "for",
                                 "short", "abbreviation", "an", "of"})


def key_terms(question: str, lexicon: Lexicon | None, index: Index) -> list[KeyTerm]:
    """The question's content terms with fixed weights; anchors (names, numbers, years) flagged."""
    if lexicon is not None and len(lexicon):
        exp = lexicon.expand(question)
        groups = [(m, lexicon.expand(m)) for m in exp.matched]
        runs = list(exp.leftover_runs)
    else:
        groups, runs = [], [question]
    english = detect_language(question) == "en"
    cased = question != question.lower()
    # Vietnamese 'ai' ("who") stands alone in lower case; 'AI' and 'EMB-AI' are names.
    who_word = bool(re.search(r"(?<![\w-])ai(?![\w-])", question))
    acronyms = {w.lower() for w in _SYLLABLE.findall(question) if w.isupper() and len(w) > 1}
    first_word = (_SYLLABLE.findall(question) or [""])[0]
    en_words = _english_lexicon_words()
    # Vietnamese runs are segmented so that a compound ('dân số') must occur as a whole.
    leftovers = [
        w.replace("_", " ") for run in runs for w in (_english_words(run) if english else segment_any(run, index.compounds))
    ]
    terms: list[KeyTerm] = []
    for surface, sub in groups:
        forms = {tuple(_syllables(f)) for f in (*sub.vietnamese, *sub.english, surface)}
        forms = {f for f in forms if f}
        # A lexicon term is dropped only when every form of it is a function phrase: 'cơ sở' folds to
        # 'co so' (two function words without tones) yet is the term 'facilities'.
        if (not forms or all(_is_function_phrase(f) for f in forms) or all(_is_frame(f) for f in forms)
                or (surface.strip() == "ai" and who_word)):
            continue
        # 'của Nhật Bản' (Japan's) is also plain 'Nhật Bản'.
        forms |= {bare for f in forms for bare in [tuple(x for x in f if not is_stopword(x))]
                  if bare != f and bare in _COMMON}
        is_place = any("place" in _lexicon_kinds().get(f, ()) for f in forms)
        if any(f in _COMMON for f in forms) or all(_is_common_phrase(f) for f in forms):
            # Vietnam / Japan: in almost every passage, so they weigh little, but a figure about another
            # country must not answer a question about them.
            terms.append(KeyTerm(surface, tuple(sorted(forms)), W_COMMON, is_place, "place" if is_place else ""))
            continue
        month = next((f[1].lstrip("0") for f in forms if len(f) == 2 and f[0] == "thang" and f[1].isdigit()
                      and 1 <= int(f[1]) <= 12), "")
        if month:  # 'October' / 'tháng 10': also written '01-03/10/2023' — matched on the text (see coverage)
            terms.append(KeyTerm(surface, tuple(sorted(forms)), W_TERM, False, "month:" + month))
            continue
        anchor = _is_anchor_group(forms, surface, cased)
        vi_forms = {tuple(_syllables(f)) for f in (*sub.vietnamese, *([] if english else [surface]))} & forms
        weight = W_ANCHOR if anchor else (_term_weight(vi_forms) if vi_forms else W_TERM)
        terms.append(KeyTerm(surface, tuple(sorted(forms)), weight, anchor, "place" if anchor and is_place else "",
                             # A lexicon term is a real concept: rare as a whole, it is required (looked for
                             # without the domain's names: 'trí thức Việt Nam' -> 'trí thức').
                             required=bool(vi_forms) and not anchor and weight >= RARE_WEIGHT))
    for word in leftovers:
        form = tuple(_syllables(re.sub(r"(?<=\d)(st|nd|rd|th)\b", "", word)))  # '20th' -> '20'
        # With tones a word is judged as written ('tải' = download is content, 'tại' = at is not);
        # without them only the folded form is there to judge.
        function = _is_function_word(word) if word != strip_diacritics(word) else _is_function_phrase(form)
        if not form or (function and word.lower() not in acronyms) or _is_frame(form):
            continue
        if form == ("ai",) and not word.isupper() and who_word:
            continue  # Vietnamese 'ai' = who
        has_digit = any(ch.isdigit() for ch in word)
        capital = word[:1].isupper() and word != first_word
        acronym = word.lower() in acronyms or (len(word) > 1 and word.isupper())
        if english and not (capital or has_digit or acronym):
            # An English word the lexicon does not know cannot be checked against Vietnamese text;
            # it counts a little, so that unknown topic words still lower the evidence score.
            terms.append(KeyTerm(word, (form,), UNKNOWN_ENGLISH_WEIGHT))
            continue
        if (english and capital and not acronym and word == strip_diacritics(word)
                and all(s in en_words or s.rstrip("s") in en_words for s in form)):
            terms.append(KeyTerm(word, (form,), UNKNOWN_ENGLISH_WEIGHT))  # 'Party', 'Deputy': words, not names
            continue
        anchor = has_digit or acronym or capital
        weight = W_ANCHOR if anchor else (UNKNOWN_ENGLISH_WEIGHT if english else reference_weight(form))
        scope = "year" if len(form) == 1 and _YEAR.fullmatch(form[0]) else ""
        # A one-syllable word typed with tones is matched as written too: 'dân' (people) is not the 'đàn' of
        # 'Diễn đàn' (forum), 'tải' (download) is not 'tại' (at).
        toned = word.lower() if word != strip_diacritics(word) and (_is_function_phrase(form) or len(form) == 1) else ""
        terms.append(KeyTerm(word, (form,), weight, anchor, scope,
                             required=not english and not anchor and _is_rare_word({form}), toned=toned))
    if _ABBREVIATION_Q.search(strip_diacritics(question).lower()):
        # 'X là tên viết tắt của tổ chức nào?' / 'What does X stand for?' asks for X's expansion: the frame's
        # words ('viết tắt', and 'viet' typed without tones matches 'Việt' everywhere) are no topic.
        terms = [t for t in terms if not set(strip_diacritics(t.surface).lower().split()) <= _ABBREVIATION_FRAME]
    return _merge_expansions(question, terms)


def _merge_expansions(question: str, terms: list[KeyTerm]) -> list[KeyTerm]:
    """'Trung tâm Đổi mới sáng tạo Quốc gia (NIC)' names one thing: its words and its acronym become one
    anchor held by either form, so '… cơ sở hạ tầng của NIC tại Hà Nội' holds the whole name."""
    for paren in re.finditer(r"\(\s*([A-Z][A-Za-z0-9&-]*[A-Z0-9])\s*\)", question):
        acronym = next((t for t in terms if t.anchor and t.surface == paren.group(1)), None)
        if acronym is None:
            continue
        # The terms written right before the parenthesis, back to the first gap that is not a space.
        spans = sorted((pos, pos + len(t.surface), t) for t in terms if t is not acronym
                       for pos in [question.rfind(t.surface, 0, paren.start())] if pos >= 0)
        name: list[KeyTerm] = []
        end = paren.start()
        for start, stop, term in reversed(spans):
            if question[stop:end].strip():
                break
            name.insert(0, term)
            end = start
        if not name:
            continue
        full = tuple(_syllables(question[end : paren.start()]))
        merged = replace(acronym, forms=tuple(sorted({*acronym.forms, full})))
        terms = [merged if t is acronym else t for t in terms if not any(t is n for n in name)]
    return terms


def _english_words(run: str) -> list[str]:
    """The words of an English run, a Vietnamese name written with tones kept whole ('Nguyễn Chí Dũng'):
    one person, one anchor."""
    out: list[str] = []
    for word in run.split():
        toned = word != strip_diacritics(word) or (bool(out) and out[-1] != strip_diacritics(out[-1]))
        if out and toned and word[:1].isupper() and out[-1][:1].isupper():
            out[-1] += " " + word
        else:
            out.append(word)
    return out


# Words that frame a question rather than name its topic ('nói về nội dung gì', 'muốn … thì tìm đến đâu').
_FRAME = frozenset({
    ("noi",), ("noi", "dung"), ("muon",), ("tim",), ("nho",), ("as",), ("its",), ("their",), ("there",),
    ("this",), ("that",), ("these",), ("those",), ("thi",), ("the", "nao"), ("nhu", "the", "nao"), ("nhu",),
    ("dieu",), ("viec",), ("hien", "nay"), ("currently",), ("according",), ("theo",),
    # 'Nhân dịp đó …' (on that occasion) points back at the conversation; 'nhân dịp gì' is answered by what
    # the occasion was ('dự Hội nghị cấp cao …'), not by the words 'nhân dịp'.
    ("nhan", "dip"), ("dip",),
})


def _is_rare_word(forms: set[tuple[str, ...]]) -> bool:
    """Whether a term is a rare word (see RARE_WEIGHT): judged on a word-sized core without the domain's
    names, since a long phrase is rare in the reference merely for being long ('buổi làm việc')."""
    cores = [c for c in (_core(f) for f in forms) if c]
    return bool(cores) and all(len(c) <= 2 for c in cores) and max(reference_weight(c) for c in cores) >= RARE_WEIGHT


def _is_frame(form: tuple[str, ...]) -> bool:
    return form in _FRAME


def _is_function_word(word: str) -> bool:
    """A word or compound written with tones that is only function words ('ở đâu', 'về'; not 'tải')."""
    parts = word.lower().split()
    return is_stopword("_".join(parts)) or (all(is_stopword(p) for p in parts if not p.isdigit()) and not any(
        p.isdigit() for p in parts))


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
        core = _core(f)
        if core and core != f and _contains(hay, core) and all(s in hay_set for s in f):
            return 1.0  # 'doanh nghiệp … của Việt Nam' for 'doanh nghiệp Việt Nam' (Vietnamese companies)
        if len(f) >= 3 and all(s in hay_set for s in f if not is_stopword(s)):
            best = 0.5  # long phrases get paraphrased ('đầu tư của các doanh nghiệp Nhật Bản')
    return best


def coverage(terms: list[KeyTerm], text: str, context: str = "") -> float:
    """Weighted fraction of key terms that occur in `text` (case- and tone-insensitive).

    Anchors may instead occur in `context` (the passage and its title): 'the forum drew 1,500 delegates'
    answers a question about the STS forum when its passage is about the STS forum.
    """
    total = sum(t.weight for t in terms)
    if total <= 0:
        return 0.0
    hay = _syllables(text)
    hay_set = set(hay)
    ctx = _syllables(context) if context else []
    ctx_set = set(ctx)
    got = 0.0
    for t in terms:
        if t.scope.startswith("month:"):
            got += t.weight * _has_month(text, t.scope[6:])
            continue
        if t.toned:
            got += t.weight * bool(re.search(rf"(?<!\w){re.escape(t.toned)}(?!\w)", text.lower()))
            continue
        f = _found(t, hay, hay_set)
        if f < 1.0 and t.anchor and ctx:
            f = max(f, _found(t, ctx, ctx_set))
        got += t.weight * f
    return got / total


_YEAR = re.compile(r"(?:19|20)\d{2}")


def _has_month(text: str, month: str) -> bool:
    """Whether `text` names the month: 'tháng 10', '10/2023', '01-03/10/2023', '17/10'."""
    m = f"0?{month}"
    folded = strip_diacritics(text).lower()
    return bool(re.search(rf"\bthang\s+{m}\b|(?<![\d/])\d{{1,2}}\s*/\s*{m}(?!\s*/?\d)|(?<![\d/.]){m}\s*/\s*(?:19|20)\d{{2}}\b"
                          rf"|\d{{1,2}}\s*/\s*{m}\s*/\s*(?:19|20)?\d{{2}}\b", folded))


def competing_scope(term: KeyTerm, sentence: str, question: str) -> bool:
    """Whether `sentence` names another value of the term's scope: another year for a year the question
    asks about, another place for a place — then its figure is about that one, not the one asked."""
    if term.scope == "year":
        asked = set(_YEAR.findall(question))
        return any(y not in asked for y in _YEAR.findall(sentence))
    if term.scope == "place":
        asked_forms = {f for _s, _e, forms in _places_at(_syllables(question)) for f in forms}
        # Japan in a sentence does not compete with Kyoto (nor Vietnam with Hà Nội): only another
        # specific place does, when a specific place is asked.
        specific = term.weight > W_COMMON
        return any(not (forms & asked_forms) and not (specific and any(f in _COMMON for f in forms))
                   for _s, _e, forms in _places_at(_syllables(sentence)))
    return False


@lru_cache(maxsize=4096)  # the same passages and sentences are checked for every anchor and candidate
def _capitalised_words(text: str) -> frozenset[str]:
    """The words `text` writes with a capital, folded ('Pháp' -> 'phap'): where a one-word name counts."""
    return frozenset(strip_diacritics(w).lower() for w in _SYLLABLE.findall(text) if w[:1].isupper())


def _missing_phrases(terms: list[KeyTerm], text: str) -> list[KeyTerm]:
    """The terms none of whose forms occurs in `text` as a phrase; a one-word name of an anchor only where
    the text writes it with a capital ('Pháp' = France, not 'pháp luật'; 'Đạt', not 'đạt được')."""
    hay = _syllables(text)
    capitalised = _capitalised_words(text)
    return [t for t in terms if not any(
        _contains(hay, f) if len(f) > 1 or not t.anchor else f[0] in capitalised for f in t.forms)]


@lru_cache(maxsize=1)
def _country_parts() -> dict[tuple[str, ...], frozenset[tuple[str, ...]]]:
    """Japan's and Vietnam's folded names -> the folded names of their prefectures, cities and provinces."""
    from rag.gazetteer import load_jp_places, load_provinces

    jp = {tuple(_syllables(n)) for p in load_jp_places() for n in (p.name_en, p.name_vi, *p.aliases) if n.isascii()}
    vn = {tuple(_syllables(n)) for p in load_provinces() for n in (p.old_name, p.new_name, p.old_ascii, p.new_ascii)}
    out: dict[tuple[str, ...], frozenset[tuple[str, ...]]] = {}
    for names, parts in ((("nhat", "ban"), ("japan",), ("japanese",), ("nguoi", "nhat")), frozenset(jp)), (
            (("viet", "nam"), ("vietnam",), ("vietnamese",), ("nguoi", "viet")), frozenset(vn)):
        for n in names:
            out[n] = parts
    return out


def _within(place: frozenset[tuple[str, ...]], term: KeyTerm) -> bool:
    """Whether `place` lies in the country the term names (Kyoto in Japan, Phú Thọ in Vietnam)."""
    parts = _country_parts()
    return any(place & parts.get(f, frozenset()) for f in term.forms)


def _title_place(title: str) -> frozenset[tuple[str, ...]]:
    """The forms of the first specific place a document title names ('Sakai, Osaka' -> Sakai), or empty
    when it names none or only the domain's ubiquitous Vietnam / Japan."""
    for _s, _e, forms in _places_at(_syllables(title)):
        if not any(f in _COMMON for f in forms):
            return forms
    return frozenset()


# A region asked about is satisfied by a country or city in it: the minister's 2022 trip "to Europe" is
# written as a visit to France, Paris and Geneva. English lexicon names; their Vietnamese forms come from
# the lexicon. Not Vietnam: every passage here names it, so it would satisfy "Asia" everywhere.
_REGION_MEMBERS = {
    "Europe": ("France", "Paris", "Switzerland", "Geneva", "United Kingdom", "London", "Germany", "Netherlands",
               "Finland", "Sweden", "Denmark", "Russia"),
    "Asia": ("Japan", "South Korea", "China", "Taiwan", "India", "Singapore", "Thailand", "Laos",
             "Cambodia", "Indonesia", "Malaysia", "Philippines", "Israel"),
    "Southeast Asia": ("Singapore", "Thailand", "Laos", "Cambodia", "Indonesia", "Malaysia",
                       "Philippines"),
    "East Asia": ("Japan", "South Korea", "China", "Taiwan"),
}


@lru_cache(maxsize=1)
def _region_parts() -> dict[tuple[str, ...], frozenset[tuple[str, ...]]]:
    """Folded region name (either language) -> the folded names of the countries and cities in it."""
    from rag.gazetteer import load_lexicon

    forms: dict[str, set[tuple[str, ...]]] = {}
    for row in load_lexicon():
        if row.kind == "place":
            forms.setdefault(row.en, set()).update({tuple(_syllables(row.vi)), tuple(_syllables(row.en))})
    japan = _country_parts()[("japan",)]
    out: dict[tuple[str, ...], frozenset[tuple[str, ...]]] = {}
    for region, members in _REGION_MEMBERS.items():
        parts = {f for m in members for f in forms.get(m, ()) if f}
        if "Japan" in members:
            parts |= japan  # Kyoto is in Asia too
        for name in forms.get(region, ()):
            out[name] = frozenset(parts)
    return out


def _in_asked_region(term: KeyTerm, hay: list[str], capitalised: frozenset[str]) -> bool:
    """Whether a passage is about the region the term names: it names a country or city in it ('Pháp',
    'Geneva' for 'châu Âu') and no place outside it (Vietnam aside: every passage here names it). The
    minister's 2022 trip to France answers "the trip to Europe", not "the trip to Asia"."""
    regions = _region_parts()
    parts = frozenset(p for f in term.forms for p in regions.get(f, ()))
    if not parts:
        return False
    vietnam = _country_parts()[("viet", "nam")] | _place_forms().get(("viet", "nam"), frozenset())
    inside = outside = False
    for start, end, forms in _places_at(hay):
        if end - start == 1 and hay[start] not in capitalised:
            continue  # 'giải pháp' names no France
        if forms & parts:
            inside = True
        elif not forms & vietnam and not any(f in regions for f in forms):
            outside = True
    return inside and not outside


# 'ở Nhật', 'sang Nhật': Japan by its everyday short name (with its capital and tone: not 'nhất', 'nhật ký').
_NHAT = re.compile(r"(?<!\w)Nhật(?!\w)(?!\s+(?:Bản|ký|báo))")


def missing_anchors(terms: list[KeyTerm], passage: str) -> list[KeyTerm]:
    """The anchors a passage does not hold (binary: present as a phrase, or absent)."""
    hay = _syllables(passage)
    hay_set = set(hay)
    # A one-word name counts only where the passage writes it with a capital: 'Pháp' is France, the
    # 'pháp' of 'giải pháp' (solution) is not.
    capitalised = _capitalised_words(passage)
    # A multi-word name may be split in the passage ('Chính phủ … Việt Nam'): its head word must be there
    # as written and all its distinctive syllables somewhere ('cộng', 'hòa', 'pháp luật' is not France).
    # (Not a name made with Vietnam / Japan: 'của Nhật Bản' scattered is 'của', 'nhất' and 'bản' anywhere.)
    return [t for t in terms if t.anchor and not any(
        (f[0] in capitalised if len(f) == 1 and f[0].isalpha() else _contains(hay, f)) or (len(f) >= 3 and not all(is_stopword(s) for s in _core(f)) and _contains(hay, f[:2])
                              and all(s in hay_set for s in f if not is_stopword(s)))
        for f in t.forms) and not _in_asked_region(t, hay, capitalised)
        and not (("nhat", "ban") in t.forms and _NHAT.search(passage))]


# ------------------------------------------------------------------------------- relations

_REL_VI = re.compile(r"\b(tai|o|sang|cho|voi)\b")
_REL_EN = re.compile(r"\b(to|in|at)\b")


@lru_cache(maxsize=1)
def _place_forms() -> dict[tuple[str, ...], frozenset[tuple[str, ...]]]:
    """Folded place name -> every folded form of that place (Japan = Nhật Bản = Nhat Ban)."""
    from rag.gazetteer import load_lexicon

    by_en: dict[str, set[tuple[str, ...]]] = {}
    for row in load_lexicon():
        # Proper names only: 'khu vực' / 'region' is a place word, not a place competing with Kyoto.
        if row.kind == "place" and (row.vi[:1].isupper() or row.en[:1].isupper()):
            by_en.setdefault(row.en.lower(), set()).update({tuple(_syllables(row.vi)), tuple(_syllables(row.en))})
    from rag.gazetteer import load_jp_places

    for place in load_jp_places():  # every Japanese prefecture and major city (Sakai, not only Osaka)
        # Sino-Vietnamese aliases ('Trường Dã' for Nagano) fold onto everyday words ('trưởng đã'): names
        # written without Vietnamese tones only.
        names = [n for n in (place.name_en, place.name_vi, *place.aliases) if n.isascii()]
        by_en.setdefault(place.name_en.lower(), set()).update(tuple(_syllables(n)) for n in names if _syllables(n))
    out: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for forms in by_en.values():
        for f in forms:
            out.setdefault(f, set()).update(forms)
    return {k: frozenset(v) for k, v in out.items() if k}


def _places_at(tokens: list[str]) -> list[tuple[int, int, frozenset[tuple[str, ...]]]]:
    """(start, end, forms) of place names in a folded token list, longest match first."""
    table = _place_forms()
    out = []
    i = 0
    while i < len(tokens):
        for n in (4, 3, 2, 1):
            key = tuple(tokens[i : i + n])
            if len(key) == n and key in table:
                out.append((i, i + n, table[key]))
                i += n
                break
        else:
            i += 1
    return out


def relations(question: str) -> list[tuple[frozenset[tuple[str, ...]], frozenset[tuple[str, ...]]]]:
    """Directed place pairs the question asks about: 'Đại sứ Nhật Bản tại Việt Nam' -> (Japan, Vietnam).

    Only 'A <connector> B' with at most one word between A and the connector ('ambassador of Japan to
    Vietnam' is rare in questions; 'Nhật Bản tại Việt Nam', "Japan's ambassador to Vietnam" are not).
    """
    toks = _syllables(question)
    places = _places_at(toks)
    out = []
    for (_s1, e1, a), (s2, _e2, b) in itertools.pairwise(places):
        if a & b:
            continue
        between = toks[e1:s2]
        if 1 <= len(between) <= 3 and (_REL_VI.fullmatch(between[-1]) or _REL_EN.fullmatch(between[-1])):
            out.append((a, b))
    return out


def relation_holds(rel: tuple[frozenset[tuple[str, ...]], frozenset[tuple[str, ...]]], text: str) -> bool:
    """Whether `text` states the pair in the direction asked: 'Việt Nam tại Nhật Bản' for (Vietnam, Japan).
    'Đại sứ Việt Nam tại Pháp' is not answered by 'Đại sứ Việt Nam tại Nhật Bản', nor by the reverse."""
    toks = _syllables(text)
    places = _places_at(toks)
    a, b = rel
    for (_s1, e1, x), (s2, _e2, y) in itertools.pairwise(places):
        between = toks[e1:s2]
        if (1 <= len(between) <= 5 and (_REL_VI.fullmatch(between[-1]) or _REL_EN.fullmatch(between[-1]))
                and x & a and y & b):
            return True
    return False


# ------------------------------------------------------------------------------- answer types

# Expected answer type, from the question's wording (checked on text without tones).
_ANSWER_TYPES = (
    ("date", re.compile(r"\b(khi nao|bao gio|ngay nao|ngay bao nhieu|nam nao|thang nao|thang may|luc nao|when|"
                        r"what date|which date|which years?|what years?|which month|hom nao)\b")),
    ("number", re.compile(r"\b(bao nhieu|may|so luong|how many|how much|how large|what number|dan so|population|"
                          r"hoc phi|tuition|doanh thu|revenue|"
                          # 'What is the population of …': the noun after 'what is the' names a figure.
                          r"what(?: is| was|'s| are| were)? the (?:population|number|total|amount|size|cost|price|"
                          r"tuition|revenue|budget|value))\b")),
    ("place", re.compile(r"\b(o dau|tai dau|noi nao|thanh pho nao|tinh nao|dia phuong nao|where|which city|"
                         r"which prefecture|which province|which country)\b")),
    ("person", re.compile(r"\b(who|whom|whose|ten la gi|ten gi|ten cua)\b")),
    # 'Chương trình khoa học nào …?', 'Which programme …?': the answer names one (a programme, a body, an
    # app); a sentence naming none ('cần xây dựng các chương trình hợp tác') does not answer it.
    ("name", re.compile(r"\b(?:(?:chuong trinh|to chuc|co quan|ung dung|quy|mang luoi|hiep hoi|du an|hiep dinh)"
                        r"(?:\s+\w+){0,4}?\s+nao|which (?:programmes?|programs?|organi[sz]ations?|agenc(?:y|ies)|"
                        r"apps?|applications?|funds?|networks?|associations?|projects?|agreements?))\b")),
)
_TITLE = re.compile(
    r"\b(Phó Thủ tướng|Phó Chủ tịch|Thủ tướng|Bộ trưởng|Thứ trưởng|Đại sứ|Tổng Lãnh sự|Chủ tịch|Tổng Bí thư|Tổng giám đốc|Giám đốc|"
    r"Viện trưởng|Hiệu trưởng|Trưởng đoàn|nhà khoa học|nhà nghiên cứu|chuyên gia|giáo sư|ông|bà|GS|PGS|TS|Minister|"
    r"Ambassador|Mr|Ms|Dr)\b"
)
# Words that may join a title to the name it leads: 'Đại sứ Việt Nam tại Nhật Bản', 'Chủ tịch của Diễn đàn'.
_TITLE_LINKS = frozenset({"tai", "cua", "va", "ben", "canh", "-", "–", "at", "of", "to", "the", "and", "in"})


def _leads(before: str, title_end: int) -> bool:
    """Whether the title ending at `title_end` of `before` leads what follows `before`: only capitalised
    words and links come between ('Đại sứ Việt Nam tại Nhật Bản Phạm Quang Hiệu'), not 'Bộ trưởng có đại
    diện lãnh đạo các đơn vị … Bộ Khoa học'."""
    gap = before[title_end:].split()
    if all(w[:1].isupper() or strip_diacritics(w).lower().strip(",") in _TITLE_LINKS for w in gap):
        return True
    # ... or a body's name, which starts with a capital and may hold lower-case words ('Tổng giám đốc Tổ
    # chức Sở hữu trí tuệ thế giới (WIPO) Daren Tang', 'Giám đốc Quỹ Phát triển KH&CN Quốc gia …').
    return len(gap) <= 9 and gap[0][:1].isupper()

# The same titles without tones, matched case-insensitively: 'dai su … la ai' names a title too.
_TITLE_FOLDED = re.compile(strip_diacritics(_TITLE.pattern).replace(r"|ong|ba|", "|"), re.IGNORECASE)
# English titles and the folded Vietnamese title they stand for (most specific first).
_EN_TITLES = (("deputy prime minister", "thu tuong"), ("prime minister", "thu tuong"),
              ("(?:vice|deputy) minister", "thu truong"), ("minister", "bo truong"), ("ambassador", "dai su"),
              ("consul general", "tong lanh su"), ("head of (?:the )?delegation", "truong doan"),
              ("scientists?", "nha khoa hoc"), ("director", "giam doc"))
_DATE = re.compile(r"\b\d{1,2}\s*[/-]\s*\d{1,2}(?:\s*/\s*\d{2,4})?\b|\b(?:năm|tháng|ngày)\s+\d{1,4}\b|\b(?:19|20)\d{2}\b")
_NUMBER = re.compile(r"\d[\d.,]*")
_PLACE_CUE = re.compile(r"\b(tại|ở|in|at|thành phố|tỉnh)\s+$")


_LIGHT_VERBS = frozenset({("giup",), ("co",), ("la",), ("lam",), ("duoc",), ("can",), ("phai",), ("tiep", "tuc"),
                          ("co", "the"), ("bat", "dau"), ("tro", "thanh")})
_TENSE = re.compile(r"(?<!\w)(sẽ|đã|đang|được|vừa|sắp)\s+", re.IGNORECASE)
_TENSE_FOLDED = re.compile(r"(?<!\w)(se|da|dang|duoc|vua|sap)\s+")


def main_verb(question: str, terms: list[KeyTerm]) -> KeyTerm | None:
    """The verb a Vietnamese question asks about: the key term right after its tense word ('sẽ tham gia trở
    lại', 'được ra mắt', 'đã gặp'), or None. The quote must hold it: a sentence about building cooperation
    programmes does not say which programme Vietnam will rejoin."""
    if detect_language(question) == "en":
        return _english_verb(question, terms)
    folded = strip_diacritics(question).lower()
    plain = folded == question.lower()  # typed without tones: the tense words fold onto other words only rarely
    m = (_TENSE_FOLDED if plain else _TENSE).search(question.lower())
    if not m:
        return None
    rest = " ".join(_syllables(question[m.end():]))
    for t in terms:
        if not t.anchor and any(rest.startswith(" ".join(f)) for f in t.forms if f):
            # A light verb ('giúp hai nước thống nhất', 'có …') says little; the quote may word it otherwise.
            return None if any(f in _LIGHT_VERBS for f in t.forms) else t
    return None


_EN_AUX = re.compile(r"\b(did|will|would|does|do|has|have|had)\b", re.IGNORECASE)
_EN_LIGHT = frozenset({"do", "does", "did", "make", "made", "help", "helped", "have", "has", "had", "get", "got",
                       "take", "took", "become", "became", "be", "say", "said", "plan", "want", "hope",
                       # a role, which a title states ('which ministry did Nguyễn Chí Dũng head?' -> 'Bộ trưởng Bộ …')
                       "head", "lead", "led", "chair", "chaired", "run", "ran", "hold", "held", "serve", "served"})


def _english_verb(question: str, terms: list[KeyTerm]) -> KeyTerm | None:
    """The verb of 'What did Vietnam and France agree on …?': the first key term after the auxiliary that
    is no name, when the lexicon gives it Vietnamese forms (an untranslated verb cannot be looked for)."""
    m = _EN_AUX.search(question)
    if not m:
        return None
    lowered = question.lower()
    placed = sorted((lowered.find(t.surface.lower(), m.end()), i) for i, t in enumerate(terms))
    for at, i in placed:
        t = terms[i]
        if at < 0 or t.anchor or not t.surface.islower():
            continue  # a name, or a title in the subject ('did Minister Dung ask')
        # Only after a subject of names ('did Vietnam and France agree'); 'did the forum take place' has
        # its verb after a common noun, which this cannot tell from the verb.
        if not all(w[:1].isupper() or w in ("and", "&") for w in question[m.end() : at].split()):
            return None
        english = set(re.findall(r"[a-z]+", lowered)) | _english_lexicon_words()
        if t.surface.lower() in _EN_LIGHT or not any(len(f) > 1 or f[0] not in english for f in t.forms):
            return None
        return t
    return None


def answer_type(question: str) -> str:
    """'date', 'number', 'place', 'person' or '' for the kind of answer a question asks for."""
    folded = strip_diacritics(question).lower()
    # The first question word decides: 'What position did he hold when he met …' asks for a position.
    found = [(m.start(), kind) for kind, pattern in _ANSWER_TYPES for m in [pattern.search(folded)] if m]
    if len(found) > 1:  # a name only when nothing else is asked: 'tổ chức ở thành phố nào' asks for a place
        found = [f for f in found if f[1] != "name"]
    # Vietnamese 'ai' ("who") in lower case; 'AI' (artificial intelligence) is written in capitals.
    who = re.search(r"(?<![\w-])[Aa]i(?![\w-])", strip_diacritics(question))
    if who:
        found.append((who.start(), "person"))
    if detect_language(question) == "en":
        first = re.search(r"\b(what|which|who|whom|whose|when|where|how|why)\b", folded)
        if first and first.group(1) in ("what", "which", "why") and not any(p <= first.start() for p, _k in found):
            # 'What position …', 'Which ministry …': the type comes from the noun, not a later 'when'.
            return ""
    return min(found)[1] if found else ""


@lru_cache(maxsize=1)
def _known_non_person_names() -> frozenset[str]:
    """Places and organisations from the lexicon: capitalised, but never a person's name."""
    from rag.gazetteer import load_lexicon

    names = set()
    for row in load_lexicon():
        if row.kind in ("place", "org", "acronym", "policy", "sector"):
            names.update({row.vi.lower(), row.en.lower()})
    return frozenset(names)


def _drop_place_prefix(start: int, run: str, known: frozenset[str]) -> tuple[int, str]:
    """'Nhật Bản Phạm Quang Hiệu' -> 'Phạm Quang Hiệu': a known place or organisation opening a run of
    capitalised words is not part of the person's name."""
    words = run.split()
    for n in range(min(4, len(words) - 2), 0, -1):
        head = " ".join(words[:n])
        if head.lower() in known:
            rest = " ".join(words[n:])
            return start + run.index(rest, len(head)), rest
    return start, run


@lru_cache(maxsize=1)
def _folded_non_person_names() -> frozenset[str]:
    return frozenset(strip_diacritics(n) for n in _known_non_person_names())


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


def _typed_spans(kind: str, sentence: str, question: str, fallback: bool = True) -> list[tuple[int, int]]:
    """Spans of `sentence` holding something of the expected type that the question itself does not."""
    q = question.lower()
    if kind == "number":
        # Not numbers that are part of a code or a name ('Nghị quyết 57-NQ/TW', 'Phiên họp 63').
        asked_numbers = {n.group().strip(".,") for n in _NUMBER.finditer(q)}
        nums = [m for m in _NUMBER.finditer(sentence) if m.group().strip(".,") not in asked_numbers
                and not re.match(r"-[A-Za-zĐđ]", sentence[m.end() : m.end() + 2])
                # Not a piece of a date written with slashes or dashes ('01-03/10/2023' holds no count of 10).
                and not re.match(r"\s*[/-]\s*\d", sentence[m.end() : m.end() + 3])
                and not re.search(r"\d\s*[/-]\s*$", sentence[max(0, m.start() - 3) : m.start()])
                and not re.search(r"(Nghị quyết|Quyết định|số|Phiên họp|Resolution|No\.|thứ)\s*$", sentence[: m.start()])
                # Nor a point in time ('thập niên 1900', 'thế kỷ 20', 'năm 2016'): not a count of anything.
                and not re.search(r"(thập niên|thập kỷ|thế kỷ|năm|decade|century)\s*$", sentence[: m.start()],
                                  re.IGNORECASE)]
        nums = [m for m in nums if _figure_of_asked_place(sentence, m.start(), question)]
        return [(m.start(), m.end()) for m in nums if not _DATE.fullmatch(m.group().strip(".,"))] or [
            (m.start(), m.end()) for m in nums]
    if kind == "date":
        return [(m.start(), m.end()) for m in _DATE.finditer(sentence) if m.group() not in question]
    runs = [(start, run) for start, run in _capitalised_runs(sentence) if run.lower() not in q]
    if kind == "person":  # a name within a few words after a title: 'Đại sứ … Phạm Quang Hiệu'
        known = _known_non_person_names()
        runs = [_drop_place_prefix(start, run, known) for start, run in runs]
        # Not the capitalised head of an organisation's name ('Bộ Khoa' of 'Bộ Khoa học và Công nghệ').
        orgs = [m for m in mentions_of(sentence) if m.kind == "organizations"]
        runs = [(start, run) for start, run in runs
                if not any(m.start <= start and start + len(run) < m.end for m in orgs)]
        # When the question names a title ('Tổng Lãnh sự … tên gì?'), the name must follow that title.
        # (An English title — 'ambassador' — cannot be matched against the Vietnamese one, so it does not narrow.)
        # A title followed by a name in the question is the subject's ('Thứ trưởng Giang đã gặp những ai?'),
        # not the one asked for; and that person is not the answer.
        folded_q = strip_diacritics(question)
        q_people = [(a, run) for a, run in _capitalised_runs(folded_q) if run.lower() not in _folded_non_person_names()]
        if detect_language(question) == "en":
            # An English title asked about, by its Vietnamese form ('ambassador' -> 'đại sứ').
            asked = {vi for en, vi in _EN_TITLES if re.search(rf"\b{en}\b", folded_q, re.IGNORECASE)
                     and not re.search(rf"\b(?i:{en})\s+[A-Z]", folded_q)}  # 'Minister Dat': the subject
        else:
            asked = {m.group().lower() for m in _TITLE_FOLDED.finditer(folded_q)
                     if not any(a == m.end() + 1 for a, _run in q_people)}
        named = {w for a, run in q_people if a > 0 for w in _syllables(run)}
        subjects: set[str] = set()
        if question == question.lower() and detect_language(question) != "en":
            # Typed in lower case, 'thu truong nguyen hoang giang gap ai' / 'bo truong dat' names its subject
            # after the title, unless the words there start a body or a place ('giam doc quy phat trien …',
            # 'dai su viet nam tai …') or are common words. The person is then the subject, not the answer:
            # the title is not asked for, and a name ending with that word is not a candidate.
            bodies = {m.start for m in find_mentions(folded_q, question=True)
                      if m.kind in ("organizations", "places_vn", "places_jp", "programmes")}
            for m in _TITLE_FOLDED.finditer(folded_q):
                tail = folded_q[m.end() :]
                at = m.end() + len(tail) - len(tail.lstrip())  # where the words after the title start
                after = tail.split()
                rest = " ".join(after)
                if (not after or at in bodies or is_stopword(after[0]) or _WH.match(after[0])
                        or any(rest.startswith(n) for n in _folded_non_person_names())):
                    continue
                asked.discard(m.group().lower())
                subjects.add(after[0])
        # Nor the person the question names, however it is typed.
        runs = [(start, run) for start, run in runs if not set(_syllables(run)) & named
                and not (subjects and _syllables(run)[-1] in subjects)]
        out = []
        for start, run in runs:
            if len(run.split()) < 2 or run.lower() in known:
                continue
            before = strip_diacritics(sentence[max(0, start - 80) : start])
            titles = {m.group().lower() for m in _TITLE_FOLDED.finditer(before) if _leads(before, m.end())}
            # '… Nguyễn Hoàng Giang làm Trưởng đoàn': the title asked for may follow the name.
            after = strip_diacritics(sentence[start + len(run) : start + len(run) + 30])
            titles |= {m.group(1).lower() for m in re.finditer(r"^\W*(?:lam|la|giu chuc|, )\s*(" + _TITLE_FOLDED.pattern
                                                                 + ")", after, re.IGNORECASE)}
            if titles and (not asked or titles & asked):
                out.append((start, start + len(run)))
        if not out and not asked and fallback:
            # 'Who did the minister meet?' may be answered by an organisation: a name the question lacks.
            # Whole organisation names from the gazetteer first: the capitals of 'Bộ Khoa học và Công nghệ'
            # stop at 'Bộ Khoa'.
            qfold = set(_syllables(question))
            out = [(m.start, m.end) for m in orgs if not set(_syllables(m.surface)) <= qfold] or [
                (start, start + len(run)) for start, run in runs
                if len(run.split()) >= 2 and not set(_syllables(run)) <= qfold and run.lower() not in known]
        return out
    if kind == "place":
        return [(start, start + len(run)) for start, run in runs
                if _PLACE_CUE.search(sentence[max(0, start - 20) : start])]
    if kind == "name":
        return _names(sentence, question)
    return []


_ACRONYM = re.compile(r"\b[A-Z][A-Za-z0-9]*[A-Z][A-Za-z0-9]*(?:-[A-Z0-9]+)*\b")


def _names(sentence: str, question: str) -> list[tuple[int, int]]:
    """Spans naming a programme, body or product the question does not name: a gazetteer organisation or
    programme, a name of two capitalised words that is no title and no place ('Hubert Curien'), or an
    acronym ('EMB-AI', 'VJOIN'). Vietnam and Japan, everywhere here, name nothing asked for."""
    asked = set(_syllables(question))
    places = _place_forms()
    out = [(m.start, m.end) for m in mentions_of(sentence)
           if m.kind in ("organizations", "programmes") and not set(_syllables(m.surface)) <= asked]
    for start, run in _capitalised_runs(sentence):
        folded = tuple(_syllables(run))
        if (len(folded) >= 2 and not set(folded) <= asked and folded not in places and folded not in _COMMON
                and not _TITLE.match(sentence, start)):
            out.append((start, start + len(run)))
    for m in _ACRONYM.finditer(sentence):
        word = m.group()
        if len(word) >= 3 and "&" not in word and tuple(_syllables(word)) not in places and not set(_syllables(word)) <= asked:
            out.append((m.start(), m.end()))
    return sorted(out)


def _figure_of_asked_place(sentence: str, start: int, question: str) -> bool:
    """Whether a figure at `start` can be about the place the question asks about: the last place named
    before it in the sentence (its subject, as in 'Vùng Kansai … Kyoto, dân số: 22.755.030') is that place,
    or the domain's ubiquitous Vietnam / Japan, or there is none. Questions naming no specific place pass."""
    asked = [forms for _s, _e, forms in _places_at(_syllables(question)) if not any(f in _COMMON for f in forms)]
    if not asked:
        return True
    before = _places_at(_syllables(sentence[:start]))
    if not before:
        return True
    last = before[-1][2]
    return any(f in _COMMON for f in last) or any(last & forms for forms in asked)


def _units(terms: list[KeyTerm]) -> frozenset[str]:
    """Syllables of the question's topic terms that may name what a figure counts ('bo truong', 'dai bieu')."""
    return frozenset(syl for t in terms if not t.anchor and t.weight > W_COMMON for f in t.forms
                     for syl in f if not is_stopword(syl) and not syl.isdigit())


def _figure_with_unit(sentence: str, question: str, units: frozenset[str]) -> bool:
    """Whether a figure of the sentence is followed by a word the question asks about ('23 Bộ trưởng')."""
    return any(set(_syllables(sentence[b : b + 16])) & units for _a, b in _typed_spans("number", sentence, question))


_PER_YEAR = re.compile(r"\b(hang nam|moi nam|each year|every year|per year|a year|annually|yearly)\b")
_AT_PRESENT = re.compile(r"\b(hien nay|hien tai|hien co|tong so|currently|at present|now|today|in total)\b")


def _other_period(sentence: str, question: str) -> bool:
    """Whether a count answers another period than the one asked: 'how many study in Japan now?' is not
    answered by 'Japan takes in over 100 students each year', nor 'how many a year?' by a total."""
    q, s = strip_diacritics(question).lower(), strip_diacritics(sentence).lower()
    if _AT_PRESENT.search(q) and not _PER_YEAR.search(q):
        return bool(_PER_YEAR.search(s)) and not _AT_PRESENT.search(s)
    if _PER_YEAR.search(q) and not _AT_PRESENT.search(q):
        return bool(_AT_PRESENT.search(s)) and not _PER_YEAR.search(s)
    return False


def has_answer_type(kind: str, sentence: str, question: str) -> bool:
    """Whether a sentence contains something of the expected type that the question itself does not
    (for 'who is <name>?', the named person's title)."""
    subject = identity_subject(question) if kind == "person" else ""
    if subject:
        return bool(role_of(sentence, subject))
    if kind == "number" and _other_period(sentence, question):
        return False
    return not kind or bool(_typed_spans(kind, sentence, question))


_UNIT = re.compile(
    r"\s*(%|phần trăm|triệu|tỷ|nghìn|ngàn|USD|đô la|yên|đồng|người|đại biểu|doanh nghiệp|kỹ sư|nhà khoa học|"
    r"năm|tháng|ngày|quốc gia|nước|bộ trưởng|sinh viên|lưu học sinh|du học sinh|học sinh|tu nghiệp sinh|lao động|"
    r"thành viên|dự án|công ty|trường|học bổng)\b", re.IGNORECASE)
_QUALIFIER = re.compile(r"(khoảng|hơn|gần|trên|dưới|tới|đến|more than|about|over|nearly)\s+$", re.IGNORECASE)


_PEOPLE_LIST = re.compile(r"\b(nhung ai|who were|who are|which people|who (?:was|were) in|who joined|who took part|who accompanied)\b")
_IDENTITY = re.compile(r"^\s*(?:who\s+(?:is|was)\s+(.+?)|(.+?)\s+la\s+ai)\s*\??\s*$", re.IGNORECASE)


def asks_for_everyone(question: str) -> bool:
    """Whether a who-question asks for every person ('Những ai …?', 'Who was in the delegation?'): one name
    up front would read as the whole answer, so the quote answers alone."""
    return bool(_PEOPLE_LIST.search(strip_diacritics(question).lower()))


@lru_cache(maxsize=1024)  # asked once per candidate sentence of the same question
def identity_subject(question: str) -> str:
    """The person a 'Hiroshi Komiyama là ai?' / 'Who is Hiroshi Komiyama?' question names (tones removed),
    or '' — such a question asks for that person's role, never for another person's name."""
    m = _IDENTITY.match(strip_diacritics(question))
    if not m:
        return ""
    subject = (m.group(1) or m.group(2)).strip()
    words = subject.split()
    # Two to four words, no title and no common word: 'Đại sứ Việt Nam tại Nhật Bản là ai?' asks for a name,
    # 'hiroshi komiyama la ai' (typed in lower case) for a role.
    if (not 2 <= len(words) <= 4 or _TITLE_FOLDED.search(subject) or not all(w.isalpha() for w in words)
            or any(is_stopword(w.lower()) for w in words)
            or (subject != subject.lower() and not all(w[:1].isupper() for w in words))):
        return ""
    return subject


def role_of(sentence: str, subject: str) -> str:
    """The title written right before `subject` in `sentence` ('Chủ tịch Diễn đàn STS' before 'Hiroshi
    Komiyama'), or ''."""
    folded = strip_diacritics(sentence)
    at = folded.lower().find(subject.lower())
    if at <= 0 or len(folded) != len(sentence):
        return ""
    before = sentence[max(0, at - 80) : at]
    titles = list(_TITLE.finditer(before))
    return before[titles[-1].start() :].strip(" ,;:") if titles else ""


def _topic_forms(terms: list[KeyTerm]) -> tuple[tuple[str, ...], ...]:
    """The forms of the question's topic words ('students' -> 'học sinh', 'sinh viên'): what a count counts."""
    return tuple(f for t in terms if not t.anchor for f in t.forms)


def short_answer(kind: str, sentence: str, question: str, extra: tuple[str, ...] = (),
                 units: tuple[tuple[str, ...], ...] = ()) -> str:
    """The span of `sentence` answering a number / date / person / place question ('' when none)."""
    if not kind or kind == "name":  # a name is checked for, but the quote shows it in its own words
        return ""
    subject = identity_subject(question) if kind == "person" else ""
    if subject:
        return role_of(sentence, subject)

    spans = _typed_spans(kind, sentence, question)
    if not spans:
        return ""
    start, end = spans[0]
    if kind == "number" and len(spans) > 1:
        # The figure whose following words the question uses ('5.000 kỹ sư' for 'how many engineers').
        # ... and first the figure the asked thing itself follows ('3.000 lưu học sinh' for 'how many students',
        # not '17.000 người Việt sinh sống' beside it, which shares more words with the question).
        asked = set(_syllables(question)) | set(extra)

        def counts_asked(sp: tuple[int, int]) -> bool:
            after = _syllables(sentence[sp[1] : sp[1] + 30])[:4]
            return any(_contains(after[:1 + len(f)], f) for f in units if f)

        start, end = max(spans, key=lambda sp: (counts_asked(sp),
                                                len(asked & set(_syllables(sentence[sp[1] : sp[1] + 16])))))
    if kind == "number":
        unit = _UNIT.match(sentence, end)
        if unit:
            end = unit.end()
        qual = _QUALIFIER.search(sentence[max(0, start - 12) : start])
        if qual:
            start = start - (len(sentence[max(0, start - 12) : start]) - qual.start())
    if kind == "date":  # '1/6' after 'ngày' reads better with it
        m = re.search(r"(ngày|tháng)\s+$", sentence[max(0, start - 7) : start])
        if m:
            start -= len(sentence[max(0, start - 7) : start]) - m.start()
    if kind == "person":
        before = sentence[max(0, start - 60) : start]
        titles = list(_TITLE.finditer(before))
        # The title leads the name only when nothing but its own words come between ('Đại sứ Việt Nam tại
        # Nhật Bản Phạm Quang Hiệu'), not 'Bộ trưởng có đại diện lãnh đạo các đơn vị … Bộ Khoa học'.
        if titles and _leads(before, titles[-1].end()):
            start = start - (len(before) - titles[-1].start())
    return sentence[start:end].strip(" ,;:")


# ------------------------------------------------------------------------------- question shapes

_DEFINE = re.compile(
    # 'VJOIN là tên viết tắt của tổ chức nào?', 'What does VJOIN stand for?': its expansion defines it
    r"^\s*(.+?)\s+(?:la\s+)?(?:ten\s+)?viet\s+tat\s+(?:cua|tu)\s+(?:(?:to chuc|co quan|mang luoi|chuong trinh|cum tu|tu)"
    r"\s+)?(?:nao|gi)\s*\??$"
    r"|^\s*what\s+(?:does|did)\s+(.+?)\s+stand\s+for\s*\??$"
    r"|^\s*what\s+is\s+(.+?)\s+(?:short\s+for|an?\s+abbreviation\s+(?:of|for))\s*\??$"
    r"|^\s*(?:what|who)\s+(?:is|are|was)\s+(?:the\s+|an?\s+)?(.+?)\s*\??$|^\s*(.+?)\s+la\s+(?:gi|cai gi|"
    r"to chuc gi|ung dung gi|chuong trinh gi|mang luoi gi)(?:\s+vay)?\s*\??$", re.IGNORECASE)
_SPEECH_Q = re.compile(r"\b(say|said|says|tell|told|stress|noi|phat bieu|cho biet|nhan manh|khang dinh|de nghi|"
                       r"khuyen|ask|asked|urge|urged|propose|proposed)\b")
_SPEECH_S = re.compile(r"\b(noi|phat bieu|cho biet|nhan manh|khang dinh|de nghi|khuyen|mong muon|bay to|chia se|"
                       r"de xuat|yeu cau|said|stressed|noted)\b")
_CAPTION = re.compile(r"(Ảnh|Photo)\s*:|\(Ảnh|^\s*(Ảnh|Photo)\b", re.IGNORECASE)


def defined_term(question: str) -> str:
    """X of 'What is X?' / 'X là gì?' (folded), or ''."""
    m = _DEFINE.match(strip_diacritics(question).lower())
    return next((g for g in m.groups() if g), "").strip() if m else ""


_WH = re.compile(r"\b(nao|gi|ai|dau|bao nhieu|may|when|where|who|whom|what|which|how|why)\b")


def question_parts(question: str) -> list[str]:
    """A two-part question ('X là gì và do ai phát triển?', 'What is X and who launched it?') split at
    its 'và' / 'and' when both sides ask something; otherwise the question alone."""
    for m in re.finditer(r"\s+(?:và|va|and)\s+", question):
        left, right = question[: m.start()].strip(" ,?"), question[m.end() :].strip(" ,?")
        if (len(left.split()) >= 2 and len(right.split()) >= 3 and _WH.search(strip_diacritics(left).lower())
                and _WH.search(strip_diacritics(right).lower())):
            return [left, right]
    return [question]


def _is_definition(sentence: str, term: str) -> bool:
    """Whether `sentence` defines `term`: 'X là …' / 'X is …', or the expansion of an acronym written
    '<full name> (X)' ('Mạng lưới đổi mới sáng tạo Việt Nam tại Nhật Bản (VJOIN)')."""
    toks = " ".join(_syllables(sentence))
    t = " ".join(_syllables(term))
    if not t:
        return False
    if re.search(rf"\b{re.escape(t)}\b(?:\s+\w+){{0,6}}?\s+(la|is|are|was|viet tat|stands)\b", toks):
        return True
    # An acronym's expansion: three or more words, the first capitalised, right before '(X)'.
    return bool(re.fullmatch(r"[A-Za-z0-9&-]{2,}", term.strip()) and re.search(
        rf"(?:^|[\s,;:])[A-ZĐÀ-Ỹ][\w&-]*(?:\s+[\w&-]+){{2,}}\s*\(\s*{re.escape(term.strip())}\s*\)",
        strip_diacritics(sentence), re.IGNORECASE))


def _name_in_role(kind: str, sentence: str, question: str, topic: list[KeyTerm]) -> str:
    """The first name in `sentence` that fills the role the question asks about: a few words after a
    topic word ('Đại sứ … tại Nhật Bản Phạm Quang Hiệu', '… hiện nay là ông Đỗ Quang Vinh'), not a name in
    another role ('Thứ trưởng X gửi lời cám ơn Đại sứ …'). '' when no name does."""
    compounds = _lexicon_kinds()
    forms = [f for t in topic for f in t.forms]
    for start, end in _typed_spans(kind, sentence, question):
        after = _syllables(sentence[end : end + 60])
        if after[:1] in (["lam"], ["la"]) and any(tuple(after[1 : 1 + len(f)]) == f for f in forms):
            return sentence[start:end]  # '… do Thứ trưởng X làm Trưởng đoàn': the role after the name
        before = _syllables(sentence[:start])
        for i in range(len(before) - 1, max(-1, len(before) - 14), -1):
            # Longest match: 'đại sứ quán' (embassy) is not 'đại sứ' (ambassador).
            hit = next((f for f in forms if tuple(before[i : i + len(f)]) == f and not any(
                tuple(before[i : i + len(f) + k]) in compounds for k in (1, 2))), None)
            if hit is None:
                continue
            between = before[i + len(hit) :]
            if not any(tuple(between[j : j + 2]) in _OTHER_ROLES for j in range(len(between))):
                words = sentence[start:end].split()
                known = _known_non_person_names()
                # A place glued to the name by capitals ('… tại Nhật Bản Phạm Quang Hiệu') is not part of it.
                while kind == "person" and len(words) > 2:
                    k = next((k for k in (3, 2, 1) if " ".join(words[:k]).lower() in known), 0)
                    if not k:
                        break
                    words = words[k:]
                return " ".join(words)
            break
    return ""


def _claim_key(text: str) -> str:
    """A short answer compared across sources: no case, tones, spaces or digit separators."""
    return re.sub(r"[^0-9a-z]", "", strip_diacritics(text).lower())


# Titles that, between the asked role word and a name, mean the name fills another role.
_OTHER_ROLES = frozenset({("thu", "truong"), ("bo", "truong"), ("chu", "tich"), ("giam", "doc"), ("thu", "tuong"),
                          ("pho", "thu"), ("tong", "giam")})


def format_date(iso: str) -> str:
    """'2023-12-17' -> '17/12/2023' ('' for an empty or malformed date)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", iso or "")
    return f"{m.group(3)}/{m.group(2)}/{m.group(1)}" if m else ""


def english_number(text: str) -> str:
    """Vietnamese digit grouping to English: '1.500' -> '1,500', '2,5' -> '2.5'."""
    text = re.sub(r"(?<=\d),(?=\d{1,2}\b)", "·", text)
    text = re.sub(r"(?<=\d)\.(?=\d{3}\b)", ",", text)
    return text.replace("·", ".")


def gloss(text: str, lexicon: Lexicon | None, limit: int = 8) -> list[tuple[str, str]]:
    """(Vietnamese phrase, English rendering) for the lexicon terms in `text`, first occurrence order."""
    if lexicon is None or not len(lexicon):
        return []
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for phrase in lexicon.expand(text).matched:
        sub = lexicon.expand(phrase)
        if not sub.english:
            continue
        en = sub.english[0]
        key = strip_diacritics(phrase).lower()
        if key in seen or key == strip_diacritics(en).lower() or _is_function_phrase(tuple(_syllables(phrase))):
            continue
        seen.add(key)
        out.append((phrase, en))
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True)
class _Candidate:
    hit_rank: int
    hit: Hit
    sentence: str
    coverage: float
    similarity: float
    score: float
    eligible: bool = True  # the passage holds every anchor and the relation asked about
    claim: str = ""  # the short answer this sentence gives, when another source gives a different one
    said: str = ""  # who said it, when the sentence opens a quotation closed later ('", Phó Thủ tướng lưu ý.')


_OPEN_QUOTES = ('"', "“")


def speakers(sentences: list[str]) -> list[str]:
    """For each sentence that opens a quotation it does not close, the attribution after the closing quote
    in one of the next three sentences ('…", Phó Thủ tướng lưu ý.' -> ', Phó Thủ tướng lưu ý.'); else ''.

    A speech quoted over several sentences names its speaker once, after it ends: its first sentence is
    the statement ('"Nên tập trung … công nghệ mới như bán dẫn, AI …'), but only the last one says whose."""
    out = [""] * len(sentences)
    for i, sentence in enumerate(sentences):
        text = sentence.lstrip()
        closed = text.count('"') >= 2 if text.startswith('"') else "”" in text
        if not text.startswith(_OPEN_QUOTES) or closed:
            continue
        for later in sentences[i + 1 : i + 4]:
            close = max(later.rfind('"'), later.rfind("”"))
            if close >= 0:
                out[i] = later[close + 1 :].strip()
                break
    return out


def _subsequence_rows(full: list[str], part: list[str]) -> list[int] | None:
    """Positions in `full` of the items of `part`, in order, or None when `part` is not a subsequence."""
    rows: list[int] = []
    for i, item in enumerate(full):
        if len(rows) < len(part) and item == part[len(rows)]:
            rows.append(i)
    return rows if len(rows) == len(part) else None


def _passage(chunk: Chunk) -> str:
    """A chunk's text with its document's title and date: context every sentence of it shares."""
    return f"{chunk.title}\n{chunk.date}\n{chunk.text}"


def _drop_redundant(terms: list[KeyTerm], chosen: list[_Candidate]) -> list[_Candidate]:
    """`chosen` without a quote whose question words another quote of the same document all holds too.

    The sentence that introduces a meeting ('Tại buổi làm việc với Đại sứ quán …, Thứ trưởng Nguyễn Hoàng
    Giang gửi lời cám ơn …') names the people, which the passage supplies anyway; the request itself
    ('Thứ trưởng mong muốn Đại sứ quán … hỗ trợ kết nối …') holds every word the introduction matches and
    more, so the introduction only adds a citation that does not answer."""
    def held(c: _Candidate) -> frozenset[int]:
        passage = _passage(c.hit.chunk)
        return frozenset(i for i, t in enumerate(terms) if coverage([t], f"{c.sentence} {c.said}", passage) > 0)

    sets = [held(c) for c in chosen]
    keep = []
    for i, c in enumerate(chosen):
        redundant = any(
            j != i and chosen[j].hit.chunk.doc_id == c.hit.chunk.doc_id and sets[i] <= sets[j]
            and (sets[i] < sets[j] or j < i)  # of two equal quotes the first stays
            for j in range(len(chosen)))
        if not redundant:
            keep.append(c)
    return keep


class ExtractiveAnswerer:
    """Quotes the best-supported sentences with [n] citations, or refuses when no passage supports them."""

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
        # The store holds every sentence of 4+ words; headings and questions are left out here, so take
        # the rows of the sentences kept instead of embedding them again at question time.
        text = hit.chunk.text
        quotable = [text[s:e] for s, e in split_sentences(text) if len(text[s:e].split()) >= 4]
        if len(quotable) > len(sentences):
            every = self.index.sentence_vectors(hit.chunk.chunk_id, quotable)
            rows = _subsequence_rows(quotable, sentences)
            if every is not None and rows is not None:
                return every[rows]
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
        return self._candidates(plan.question, plan, hits)

    def supporting_passages(self, question: str, plan: QueryPlan, hits: list[Hit]) -> set[int] | None:
        """1-based numbers of the hits whose passage holds every anchor of `question` and the relation it
        asks about — the passages an answer may rest on, for any backend. None when the question has no
        key terms to check (a bare follow-up), so the caller cannot judge it this way."""
        terms, cands = self._candidates(question, plan, hits)
        if not terms:
            return None
        return {c.hit_rank + 1 for c in cands if c.eligible}

    def _candidates(self, question: str, plan: QueryPlan, hits: list[Hit]) -> tuple[list[KeyTerm], list[_Candidate]]:
        terms = key_terms(question, self.lexicon, self.index)
        rels = relations(question)
        queries = [question] + ([plan.translation] if plan.translation and question == plan.question else [])
        qvecs = self.embedder.embed_queries(queries)
        scoped = [t for t in terms if t.anchor and t.scope]
        anchors = [t for t in terms if t.anchor]
        topic = [t for t in terms if not t.anchor]
        # A rare word is looked for without the domain's ubiquitous names it was segmented with
        # ('doanh nghiệp Việt Nam' -> 'doanh nghiệp … Việt Nam' is written 'doanh nghiệp … của Việt Nam').
        required = [KeyTerm(t.surface, tuple(c for c in (_core(f) for f in t.forms) if c), t.weight)
                    for t in terms if t.required]
        defined = defined_term(question)
        speech = bool(_SPEECH_Q.search(strip_diacritics(question).lower()))
        out: list[_Candidate] = []
        # A document's retrieved passages are context for each other: chunk 3 of the STS article need not
        # repeat 'Kyoto' from chunk 0 to be about that forum.
        doc_text: dict[str, str] = {}
        for hit in hits:
            doc_text[hit.chunk.doc_id] = doc_text.get(hit.chunk.doc_id, "") + "\n" + hit.chunk.text
        for rank, hit in enumerate(hits):
            text = hit.chunk.text
            sentences = [text[s:e] for s, e in split_sentences(text)]
            # Headings ('=== Đại sứ Việt Nam tại Nhật Bản ===') label a section; they state nothing. A question
            # is never evidence, though a passage may repeat it (FAQ pages, planted passages).
            sentences = [s for s in sentences if len(s.split()) >= 4 and "==" not in s
                         and not s.rstrip().endswith(("?", "？"))]
            if not sentences:
                continue
            # The document's title and date are context every sentence of it shares ('2023' from its date).
            passage = _passage(hit.chunk)
            document = f"{hit.chunk.title}\n{hit.chunk.date}\n{doc_text[hit.chunk.doc_id]}"
            # The main quote's own passage must hold the anchors and rare words; a further quote from the
            # same document may lean on the document's other retrieved passages.
            # Rare words are looked for as written, in the whole document (a long text holds the syllables
            # of 'trí thức' somewhere by chance; a chunk need not repeat 'buổi làm việc' from the one before).
            # Anchors likewise: in the passage, or written out in another retrieved passage of its document
            # (chunk 3 of the STS article need not repeat 'Kyoto').
            rel_ok = all(relation_holds(r, text) for r in rels) and not _missing_phrases(required, document)
            eligible = rel_ok and not _missing_phrases(missing_anchors(terms, passage), document)
            title_place = _title_place(hit.chunk.title)
            sims = (self._vectors(hit, sentences) @ qvecs.T).max(axis=1)
            for sentence, sim, said in zip(sentences, sims, speakers(sentences), strict=True):
                stated = f"{sentence} {said}" if said else sentence  # the statement with its speaker
                cov = coverage(terms, stated, passage)
                # Long sentences cover many terms by accident; a mild length penalty prefers focused ones.
                length_penalty = 0.1 * max(0.0, (len(sentence.split()) - 40) / 60)
                score = 0.65 * cov + 0.35 * float(sim) + 0.05 / (1 + rank) - length_penalty
                if topic:  # what is asked about, beyond who and where: 'what did P ask for' -> the request
                    score += TOPIC_BONUS * coverage(topic, stated)
                if anchors:  # the sentence naming the asked thing itself beats one leaning on its passage
                    score += 0.2 * (len(anchors) - len(missing_anchors(anchors, stated))) / len(anchors)
                if defined and _is_definition(sentence, defined):
                    score += 0.25  # 'What is X?' -> X's defining sentence, not a caption that mentions X
                if _CAPTION.search(sentence):
                    score -= 0.2
                if speech and _SPEECH_S.search(" ".join(_syllables(stated))):
                    score += 0.1  # 'what did P say about T?' -> P's statement
                ok = all(relation_holds(r, sentence) for r in rels)
                if ok and scoped:
                    # A year or place the sentence lacks may come from its document, unless the sentence
                    # itself is about another one (the 2016 figure, the other country's trade), or the
                    # document is about another place ('Sakai, Osaka': its figures are Sakai's).
                    absent = missing_anchors(scoped, sentence)
                    ok = not any(competing_scope(t, sentence, question)
                                 or (t.scope == "place" and bool(title_place) and not set(t.forms) & title_place
                                     and not _within(title_place, t))
                                 for t in absent)
                out.append(_Candidate(rank, hit, sentence, cov, float(sim), score, ok and eligible, said=said))
        out.sort(key=lambda c: -c.score)
        return terms, out

    def _select(self, question: str, plan: QueryPlan, hits: list[Hit]) -> tuple[list[_Candidate], str]:
        """The quoted sentences (main one first) and the short answer span, or ([], '') to refuse.

        The best-scoring sentences are tried in turn as the main quote (a sentence that fails the checks
        does not hide a later one that passes); the first that is supported wins."""
        terms, cands = self._candidates(question, plan, hits)
        if not terms:
            return [], ""
        kind = answer_type(question)
        cands = [c for c in cands if c.eligible]
        if kind:
            # Sentences holding the kind of thing asked for (a number, a date, a name, a place) go first.
            if kind == "number":
                # ... and among those, a figure whose unit the question names ('23 Bộ trưởng' for 'how many
                # ministers', not '1.500 đại biểu' in the sentence before it).
                units = _units(terms)
                cands.sort(key=lambda c: (not has_answer_type(kind, c.sentence, question),
                                          not _figure_with_unit(c.sentence, question, units), -c.score))
            elif kind == "person":
                # ... and a name after a title ('Chủ tịch … Hiroshi Komiyama') before any other capitalised run.
                cands.sort(key=lambda c: (not has_answer_type(kind, c.sentence, question),
                                          not _typed_spans(kind, c.sentence, question, fallback=False), -c.score))
            else:
                # ... the sentence naming the asked thing itself first ('… cơ sở hạ tầng của NIC tại Hà Nội').
                anchors = [t for t in terms if t.anchor and t.weight > W_COMMON]
                cands.sort(key=lambda c: (not has_answer_type(kind, c.sentence, question),
                                          bool(missing_anchors(anchors, c.sentence)), -c.score))
        mains = [c for c in cands if c.coverage >= self.min_evidence * 0.6]
        verb = main_verb(question, terms)
        if verb:  # the sentence saying what was asked ('đi đến thống nhất: …' for 'agree on') leads
            mains.sort(key=lambda c: coverage([verb], f"{c.sentence} {c.said}") == 0)
        mains = mains[:MAIN_TRIES]
        for main in mains:
            chosen = self._support(question, kind, terms, main, cands)
            if verb and not any(coverage([verb], f"{c.sentence} {c.said}") > 0 for c in chosen):
                continue  # no quote says it happened: 'which programme will Vietnam rejoin?' needs 'rejoin'
            if chosen and not kind:
                chosen = _drop_redundant(terms, chosen)
            if chosen:
                span = ""
                if kind:
                    holder = next(c for c in chosen if has_answer_type(kind, c.sentence, question))
                    # The key terms' Vietnamese forms say which figure: 'engineers' -> 'kỹ sư'.
                    extra = tuple(syl for t in terms for f in t.forms for syl in f)
                    span = short_answer(kind, holder.sentence, question, extra, units=_topic_forms(terms))
                    if holder is not chosen[0]:
                        chosen.remove(holder)
                        chosen.insert(0, holder)
                    if span:
                        # With a short answer, a quote from another passage must repeat it: one that only
                        # shares the topic ('Phiên khai mạc Diễn đàn' beside 'Kyoto') dilutes the citations.
                        key, own = _claim_key(span), {holder.hit.chunk.chunk_id, main.hit.chunk.chunk_id}
                        chosen = [c for c in chosen if c.hit.chunk.chunk_id in own or key in _claim_key(c.sentence)]
                    # (A person's roles are not rival answers: 'Đại sứ …' and 'Đại sứ đặc mệnh toàn quyền …'.)
                    rivals = (self._rivals(kind, question, terms, cands, holder, span, extra)
                              if span and not identity_subject(question) else [])
                    if rivals:
                        # Every side is shown, never one picked silently: rivals replace the extra quotes.
                        # ('Những ai …?' asks for all of them: the other names are more of the answer, not a
                        # disagreement, so they are quoted without a claim.)
                        everyone = asks_for_everyone(question)
                        rivals = rivals[: max(1, self.max_sentences - 1)]
                        room = max(0, self.max_sentences - 1 - len(rivals))
                        others = [c for c in chosen[1:] if all(c.sentence != r.sentence for r in rivals)][:room]
                        if everyone:
                            rivals = [replace(r, claim="") for r in rivals]
                        chosen = [holder if everyone else replace(holder, claim=span), *others, *rivals]
                return chosen, span
        return [], ""

    def _support(self, question: str, kind: str, terms: list[KeyTerm], main: _Candidate,
                 cands: list[_Candidate]) -> list[_Candidate]:
        """`main` and the sentences that add to it, or [] when together they do not answer the question.

        A further sentence from the main sentence's own passage must add a topic word (not merely repeat
        the anchors its passage already holds: 'Chiều 31/5, Phó Thủ tướng … gặp …' adds nothing to an
        answer about what he proposed); one from another passage must answer on its own (enough
        evidence, on topic, of the kind asked for), so every cited passage holds the evidence itself."""
        topic = [t for t in terms if not t.anchor]
        units = _units(terms) if kind == "number" else frozenset()
        chosen = [main]
        passage = _passage(main.hit.chunk)
        covered = f"{main.sentence} {main.said}".strip()
        for cand in cands:
            if len(chosen) >= self.max_sentences:
                break
            if any(c.sentence == cand.sentence for c in chosen) or cand.coverage < self.min_evidence * 0.6:
                continue
            if cand.hit.chunk.chunk_id == main.hit.chunk.chunk_id:
                if topic and coverage(topic, covered + " " + cand.sentence) <= coverage(topic, covered):
                    continue
            elif (cand.coverage < self.min_evidence or not has_answer_type(kind, cand.sentence, question)
                  # ... as much as the main one does, not just by naming the subject ('Phó Thủ tướng')
                  or (topic and coverage(topic, cand.sentence) < max(TOPIC_SHARE, EXTRA_TOPIC * coverage(topic, main.sentence)))
                  or (units and _figure_with_unit(main.sentence, question, units)
                      and not _figure_with_unit(cand.sentence, question, units))):
                continue  # (a second figure must count what the first one does)
            gain = coverage(terms, covered + " " + cand.sentence, passage) - coverage(terms, covered, passage)
            if gain <= 0.0:
                continue
            chosen.append(cand)
            if cand.hit.chunk.chunk_id == main.hit.chunk.chunk_id:
                covered += " " + cand.sentence
        total = coverage(terms, covered, passage)
        # The sentence giving the short answer must itself be about the question, not only sit beside one
        # that is ('3.000 sinh viên' next to a sentence on population does not give a population).
        typed = not kind or any(has_answer_type(kind, c.sentence, question)
                                and (not topic or coverage(topic, c.sentence) >= TOPIC_SHARE / 2
                                     or coverage(terms, c.sentence) >= self.min_evidence) for c in chosen)
        # Anchors are necessary, not sufficient: the question's other words must be there too
        # ('the population of Osaka' is not answered by a sentence that merely names Osaka).
        # (A definition needs no topic words: 'VJOIN là tên viết tắt của tổ chức nào?' is answered by
        # '… Mạng lưới đổi mới sáng tạo Việt Nam tại Nhật Bản (VJOIN)'.)
        defined = defined_term(question)
        on_topic = (not topic or coverage(topic, covered) >= TOPIC_SHARE
                    or bool(defined and _is_definition(main.sentence, defined)))
        if not typed or not on_topic or total < self.min_evidence:
            return []
        return chosen

    def _rivals(self, kind: str, question: str, terms: list[KeyTerm], cands: list[_Candidate], holder: _Candidate,
                span: str, extra: tuple[str, ...]) -> list[_Candidate]:
        """Other documents' sentences, as much on point as `holder`, that give a different answer each (a
        conflicting figure, name or date, or the same figure at another time), with that answer as `claim`."""
        out: list[_Candidate] = []
        keys = {_claim_key(span)}
        docs = {holder.hit.chunk.doc_id}
        anchors = [t for t in terms if t.anchor]
        lacking = {t.surface for t in missing_anchors(anchors, holder.sentence)}
        topic = [t for t in terms if not t.anchor]
        for c in cands:
            if c.hit.chunk.doc_id in docs:
                continue
            if c.coverage < max(self.min_evidence, holder.coverage - 0.1) or not has_answer_type(kind, c.sentence, question):
                continue
            if {t.surface for t in missing_anchors(anchors, c.sentence)} - lacking:
                continue  # less specific than the answer it would contradict
            if kind in ("person", "place") and topic and not identity_subject(question):
                other = _name_in_role(kind, c.sentence, question, topic)
            else:
                other = short_answer(kind, c.sentence, question, extra, units=_topic_forms(terms))
            other_key = _claim_key(other)
            if other_key and all(k and other_key not in k and k not in other_key for k in keys):
                out.append(replace(c, claim=other))
                keys.add(other_key)
                docs.add(c.hit.chunk.doc_id)
        return out

    def answer(self, plan: QueryPlan, hits: list[Hit]) -> Answer:
        """An Answer quoting up to `max_sentences` sentences, or the refusal sentence."""
        lang = answer_language(plan.language)
        refusal = Answer(question=plan.question, language=lang, text=REFUSAL[lang], refused=True,
                         backend="extractive", hits=tuple(hits))
        parts = question_parts(plan.question)
        missing_parts: list[str] = []
        if len(parts) == 2:
            # The second part keeps the first part's subject: in 'EMB-AI là gì và do công ty nào phát triển?'
            # the company asked for is EMB-AI's, so its anchors must hold for the second part too.
            subject = " ".join(t.surface for t in key_terms(parts[0], self.lexicon, self.index) if t.anchor and not t.scope)
            picked = [self._select(parts[0], plan, hits), self._select(f"{parts[1]} {subject}".strip(), plan, hits)]
            missing_parts = [p for p, (c, _s) in zip(parts, picked, strict=True) if not c]
            if len(missing_parts) == 2:
                return refusal
            chosen, span = [], ""
            for c, s in picked:
                for cand in c:
                    if len(chosen) < self.max_sentences + 1 and all(x.sentence != cand.sentence for x in chosen):
                        chosen.append(cand)
                span = span or s
        else:
            chosen, span = self._select(plan.question, plan, hits)
        if not chosen:
            return refusal
        if asks_for_everyone(plan.question):
            span = ""
        return self._render(plan.question, lang, chosen, span, missing_parts, hits)

    def _render(self, question: str, lang: Lang, chosen: list[_Candidate], span: str, missing_parts: list[str],
                hits: list[Hit]) -> Answer:
        # The newest source leads when sources differ in date (the short answer's sentence stays first
        # among equals: sorting is stable).
        dates = {c.hit.chunk.date for c in chosen if format_date(c.hit.chunk.date)}
        if len(dates) > 1:
            chosen = sorted(chosen, key=lambda c: c.hit.chunk.date or "", reverse=True)
        # One citation per quoted sentence, so every `quote` is an exact substring of its chunk.
        citations = [Citation(n=i, chunk=c.hit.chunk, quote=c.sentence) for i, c in enumerate(chosen, 1)]
        newest = format_date(max(dates)) if dates else ""
        as_of = f" ({AS_OF[lang].format(date=newest)})" if newest else ""
        lines = [FRAME[lang]]
        claims = [(i, c) for i, c in enumerate(chosen, 1) if c.claim]
        if len(claims) > 1:  # conflicting sources: each answer with its citation and date, newest first
            shown = [
                f"{english_number(c.claim) if lang == 'en' else c.claim} [{i}]"
                + (f" ({format_date(c.hit.chunk.date)})" if format_date(c.hit.chunk.date) else "")
                for i, c in claims
            ]
            lines.append(f"{SOURCES_DISAGREE[lang]}: " + "; ".join(shown))
        elif span:
            n = next(i for i, c in enumerate(chosen, 1) if span in c.sentence)
            shown = span
            if lang == "en":
                shown = english_number(span)
                glossed = gloss(span, self.lexicon, limit=3)
                if glossed:
                    shown += " (" + "; ".join(f"{vi} = {en}" for vi, en in glossed) + ")"
            lines.append(f"{SHORT_ANSWER[lang]}: {shown} [{n}]{as_of}")
        for i, c in enumerate(chosen, 1):
            dated = f" ({format_date(c.hit.chunk.date)})" if len(dates) > 1 and format_date(c.hit.chunk.date) else ""
            lines.append(f"- {c.sentence} [{i}]{dated}")
        if lang == "en":
            glossed = gloss(" ".join(c.sentence for c in chosen), self.lexicon)
            if glossed:
                lines.append(KEY_TERMS["en"] + "; ".join(f"{vi} = {en}" for vi, en in glossed) + ".")
        if newest and not span:
            lines.append(SOURCE_DATE[lang].format(date=newest))
        if not dates:
            lines.append(NO_DATE[lang])
        if len(dates) > 1 and len(claims) < 2:
            lines.append(DATES_DIFFER[lang].format(dates=", ".join(format_date(d) for d in sorted(dates, reverse=True))))
        if len(claims) > 1:
            lines.append(DISAGREE_NOTE[lang])
        for part in missing_parts:
            lines.append(PART_MISSING[lang].format(part=part))
        return Answer(
            question=question,
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
