"""Text utilities shared by every stage: NFC normalisation, language detection, Vietnamese word
segmentation (pyvi), diacritic stripping, sentence splitting and BM25 tokenisation.

Shortcut taken: language detection is a small rule set (Vietnamese diacritics, Vietnamese syllable
shape, English function words) rather than a statistical model; it only needs vi / en / vi-without-tones.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Literal

QueryLang = Literal["vi", "en", "vi_nodiac"]

_VI_CHARS = set(
    "ăâđêôơưàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ"
)
# A Vietnamese syllable written without tone marks: optional onset, 1-3 vowels, optional coda.
_VI_SYLLABLE = re.compile(r"^(ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnpqrstvx])?[aeiouy]{1,3}(ch|ng|nh|[cmnpt])?$")
_EN_FUNCTION_WORDS = frozenset(
    ["the", "of", "and", "to", "in", "is", "are", "was", "were", "what", "who", "whom", "which", "when", "where", "why", "how", "does", "did", "do", "for", "with", "on", "at", "by", "from", "about", "has", "have", "had", "be", "been", "an", "a", "or", "not", "this", "that", "these", "those", "it", "its", "their", "there", "can", "could", "should", "would", "will", "between", "into", "than", "more", "most", "any", "many", "much"]
)
_WORD = re.compile(r"\w+(?:[&.\-']\w+)*", re.UNICODE)


def nfc(text: str) -> str:
    """Unicode NFC normalisation; every entry point passes text through this."""
    return unicodedata.normalize("NFC", text)


def strip_diacritics(text: str) -> str:
    """'Đổi mới sáng tạo' -> 'Doi moi sang tao' (tone and vowel marks dropped, đ -> d)."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def words(text: str) -> list[str]:
    """Word-like runs (keeps acronyms such as KH&CN, 5G/6G pieces, 57-NQ/TW pieces)."""
    return _WORD.findall(text)


# Quoted titles are names, whatever their language: 'Dự án "Science in Society" là gì?'.
_QUOTED = re.compile(r"\"[^\"]{1,120}\"|“[^”]{1,120}”|«[^»]{1,120}»|'[^']{1,120}'(?!\w)")
# Lower-case Vietnamese words that may sit inside a capitalised name ('Thành phố Hồ Chí Minh',
# 'Bộ Khoa học và Công nghệ', 'Trung tâm Đổi mới sáng tạo Quốc gia'); at most this many in a row, and
# never function words ('Dũng đã cảm ơn Đại sứ' is two names and a verb).
_NAME_GAP = 3


def _name_mask(tokens: list[str]) -> list[bool]:
    """Which tokens belong to a capitalised name run ('Đà Nẵng', 'Thành phố Hồ Chí Minh', 'Japan').

    A run is capitalised words, bridged by up to `_NAME_GAP` lower-case Vietnamese-looking words that
    are not English function words. The first word of the question counts as a name only if the next
    word is capitalised too ('Đà Nẵng có gì?'), not when it is just the capital of a sentence ('Có bao
    nhiêu…', 'What did…'). Acronyms (JICA, KH&CN) are names.
    """
    n = len(tokens)
    cap = [w[:1].isupper() for w in tokens]
    if n and cap[0] and not (n > 1 and cap[1]):
        cap[0] = tokens[0].isupper() and len(tokens[0]) > 1  # an acronym opening the question stays a name
    mask = list(cap)
    i = 0
    while i < n:
        if not cap[i]:
            i += 1
            continue
        j = i + 1
        while j < n and not cap[j] and j - i <= _NAME_GAP:
            j += 1
        if j < n and cap[j] and j > i + 1:
            gap = tokens[i + 1 : j]
            if all(w.islower() and _VI_SYLLABLE.match(strip_diacritics(w).lower()) and w.lower() not in _EN_FUNCTION_WORDS
                   and not is_stopword(w) for w in gap):
                for k in range(i + 1, j):
                    mask[k] = True
        i = j if j > i + 1 else i + 1
    return mask


def detect_language(text: str) -> QueryLang:
    """Guess the language of a short question: 'vi', 'vi_nodiac' (Vietnamese typed without tones) or 'en'.

    Names do not vote: an English question spelling a Vietnamese name with its diacritics ("the
    People's Committee of Đà Nẵng") is English, and a Vietnamese question quoting an English name or
    acronym ("Japan Innovation Network là gì?") is Vietnamese. The language is judged on the words
    outside capitalised names and quotes (on all words when nothing else is left).
    """
    text = nfc(text)
    all_tokens = [w for w in words(text) if not w.isdigit()]
    if not all_tokens:
        return "vi"
    has_marks = any(c in _VI_CHARS for c in text.lower())
    outside = [w for w in words(_QUOTED.sub(" ", text)) if not w.isdigit()]
    tokens = outside if len(outside) >= 2 else all_tokens
    mask = _name_mask(tokens)
    kept = [w.lower() for w, named in zip(tokens, mask, strict=True) if not named]
    if not kept:
        kept = [w.lower() for w in all_tokens]
    lang = _judge(kept)
    if lang == "en":
        return "en"
    return "vi" if has_marks else "vi_nodiac"


_EN_QUESTION_START = frozenset(
    {"what", "where", "who", "whom", "whose", "when", "which", "how", "why", "is", "are", "does", "did", "can"}
)


def _judge(tokens: list[str]) -> QueryLang:
    """The language of the non-name words of a question (lower-cased)."""
    n = len(tokens)
    marked = sum(1 for w in tokens if any(c in _VI_CHARS for c in w))
    en_hits = sum(1 for w in tokens if w in _EN_FUNCTION_WORDS)
    vi_shape = sum(1 for w in tokens if _VI_SYLLABLE.match(strip_diacritics(w)))
    # English content words: alphabetic, unmarked, not shaped like a Vietnamese syllable ('agreements', 'sign').
    en_other = sum(1 for w in tokens if w.isalpha() and len(w) > 1 and w not in _EN_FUNCTION_WORDS
                   and not any(c in _VI_CHARS for c in w) and not _VI_SYLLABLE.match(w))
    if marked:
        # Lower-case Vietnamese words outside names: Vietnamese unless English clearly dominates
        # ("what did the people's committee of đà nẵng sign", typed all in lower case), or an English
        # question frame carries a Vietnamese name whose inner words are not capitalised ("Where is the
        # Trung tâm Đổi mới sáng tạo Quốc gia adding new facilities?").
        en_evidence = en_hits + 0.5 * en_other
        english_frame = tokens[0] in _EN_QUESTION_START and en_hits >= 3 and en_other >= 2
        return "en" if english_frame or (en_hits >= 2 and en_evidence >= 2 * marked) else "vi"
    # Vietnamese function words that are not also English words ('o', 'la', 'gi', 'dau', 'nao').
    vi_markers = sum(1 for w in tokens if w in _STRIPPED_STOPWORDS and w not in _EN_FUNCTION_WORDS)
    if en_hits >= 1 and en_hits / n >= 0.12 and vi_shape / n < 0.9 and en_hits + 0.5 * en_other > vi_markers:
        return "en"
    if vi_shape / n >= 0.75 or (vi_markers and not en_hits and vi_shape / n >= 0.5):
        return "vi_nodiac"
    return "en"


def answer_language(lang: QueryLang) -> Literal["vi", "en"]:
    """The language the answer's frame text is written in."""
    return "en" if lang == "en" else "vi"


# ---------------------------------------------------------------- sentences

_ABBREVIATIONS = ("TP", "Tp", "TS", "ThS", "PGS", "GS", "BS", "Mr", "Mrs", "Dr", "St", "No", "vs", "etc", "Ông", "Bà")
_SENT_END = re.compile(r"(?<=[.!?…])[\"”’)\]]*\s+(?=[\"“‘(\[]?[A-ZÀ-ỸĐ0-9])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) over `text`; line breaks always end a sentence.

    Spans exclude surrounding whitespace, so `text[s:e]` is the sentence itself.
    """
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        base = line.start()
        segment = line.group()
        start = 0
        for m in _SENT_END.finditer(segment):
            before = segment[start : m.start()].rstrip()
            last_word = before.rsplit(" ", 1)[-1].rstrip(".") if before else ""
            if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isupper()):
                continue
            _append_span(spans, segment, base, start, m.start())
            start = m.end()
        _append_span(spans, segment, base, start, len(segment))
    return spans


def _append_span(spans: list[tuple[int, int]], segment: str, base: int, start: int, end: int) -> None:
    piece = segment[start:end]
    stripped_left = len(piece) - len(piece.lstrip())
    stripped_right = len(piece) - len(piece.rstrip())
    s, e = base + start + stripped_left, base + end - stripped_right
    if e > s:
        spans.append((s, e))


# ---------------------------------------------------------------- tokens

_VI_STOPWORDS = frozenset(
    ["và", "của", "các", "là", "có", "được", "cho", "với", "trong", "những", "một", "này", "đã", "đang", "sẽ", "để", "về", "tại", "từ", "theo", "khi", "thì", "mà", "như", "cũng", "nhiều", "hơn", "rất", "ra", "vào", "lên", "đến", "nên", "bị", "do", "vì", "nếu", "hay", "hoặc", "nhưng", "các_bên", "đó", "này_nay", "việc", "ở", "ạ"]
)
_VI_QUESTION_WORDS = frozenset(
    ["ai", "gì", "nào", "đâu", "sao", "bao_nhiêu", "bao", "nhiêu", "mấy", "khi_nào", "bao_giờ", "thế_nào", "như_thế_nào", "tại_sao", "vì_sao", "hỏi", "cho_biết", "là_gì", "là_ai", "không", "ạ", "nhỉ", "vậy", "thì_sao", "còn",
     # question-frame words: they shape the question, the evidence rarely repeats them
     "tên", "viết_tắt", "điều_gì", "việc_gì", "những_gì", "ra_sao", "thế_nào", "nêu", "kể", "liệt_kê",
     "biết", "hãy", "xin", "muốn_biết"]
)
_EN_STOPWORDS = _EN_FUNCTION_WORDS | frozenset(
    ["i", "you", "we", "they", "he", "she", "me", "my", "our", "your", "us", "them", "please", "tell", "know", "did", "does", "do", "was", "were", "should", "shall", "may", "might", "must", "get", "got", "all", "some", "such", "also", "only", "just", "very", "so", "then", "than", "other", "any", "each", "every", "being", "own", "same", "s", "name", "names", "called", "call", "stand", "stands", "abbreviation", "mean", "means", "meant", "list", "tell", "describe", "explain", "happen", "happened", "come", "came", "up", "see", "saw", "say", "said", "give", "gave", "make", "made", "take", "took", "according"]
)


def is_stopword(token: str) -> bool:
    """True for function words of either language (checked with and without diacritics)."""
    t = token.lower()
    return t in _VI_STOPWORDS or t in _VI_QUESTION_WORDS or t in _EN_STOPWORDS or t in _STRIPPED_STOPWORDS


_STRIPPED_STOPWORDS = frozenset(strip_diacritics(w) for w in _VI_STOPWORDS | _VI_QUESTION_WORDS)


@lru_cache(maxsize=1)
def _pyvi():
    from pyvi import ViTokenizer  # heavy-ish import (~2 s); only when segmentation is needed

    return ViTokenizer


_AMPERSAND_ACRONYM = re.compile(r"(?<=\w)&(?=\w)")


def _fold_acronyms(text: str) -> str:
    """'KH&CN' and 'KHCN' are the same term to users: drop '&' between letters before tokenising."""
    return _AMPERSAND_ACRONYM.sub("", text)


def segment(text: str) -> list[str]:
    """Vietnamese word segmentation: 'khoa học công nghệ' -> ['khoa_học', 'công_nghệ'] (lower-cased)."""
    out: list[str] = []
    for piece in _pyvi().tokenize(_fold_acronyms(nfc(text))).split():
        w = piece.lower()
        if any(ch.isalnum() for ch in w):
            out.append(w)
    return out


def index_tokens(text: str) -> list[str]:
    """BM25 tokens for a passage: segmented words plus the syllables of multi-syllable words.

    Keeping syllables lets a query match part of a compound ('bán dẫn' inside 'công_nghiệp_bán_dẫn').
    """
    out: list[str] = []
    for w in segment(text):
        out.append(w)
        if "_" in w:
            out.extend(p for p in w.split("_") if p)
    # pyvi splits hyphenated names ('EMB-AI'); keep the whole name as a token too.
    out.extend(w.lower() for w in words(_fold_acronyms(nfc(text))) if "-" in w)
    return out


def query_tokens(text: str, max_ngram: int = 3) -> list[str]:
    """BM25 tokens for a query: syllables plus adjacent n-grams joined by '_' (matches segmented compounds).

    Generating n-grams instead of segmenting keeps unaccented queries, where pyvi is unreliable,
    on the same footing as accented ones: an n-gram that is not a word simply has no postings.
    """
    raw = words(_fold_acronyms(nfc(text)))
    # Upper-case acronyms are never stopwords: 'AI' is artificial intelligence, 'ai' is "who".
    pieces = [p for w in raw for p in (re.split(r"[-']", w) if "-" in w or "'" in w else [w]) if p]
    keep = [(p.isupper() and len(p) > 1) or not is_stopword(p) for p in pieces]
    syllables = [p.lower() for p in pieces]
    out = [s for s, k in zip(syllables, keep, strict=True) if k] + [w.lower() for w in raw if "-" in w]
    for n in range(2, max_ngram + 1):
        for i in range(len(syllables) - n + 1):
            if not (keep[i] and keep[i + n - 1]):
                continue
            out.append("_".join(syllables[i : i + n]))
    return out


def strip_tokens(tokens: Iterable[str]) -> list[str]:
    """The diacritic-free twin of a token list, for the tone-insensitive BM25 field."""
    return [strip_diacritics(t) for t in tokens]


@lru_cache(maxsize=1)
def _compound_dictionary() -> frozenset[tuple[str, ...]]:
    """Multi-syllable Vietnamese words without tones, from pyvi's word list (31k entries)."""
    import pyvi

    path = Path(pyvi.__file__).parent / "models" / "words.txt"
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        syllables = tuple(strip_diacritics(line).lower().split())
        if 2 <= len(syllables) <= 4:
            out.add(syllables)
    return frozenset(out)


def segment_unaccented(text: str, preferred: frozenset[tuple[str, ...]] = frozenset()) -> list[str]:
    """Segment Vietnamese typed without tones by dictionary lookup: 'dan so' -> ['dan_so'].

    pyvi's statistical segmenter needs tones; this picks, by dynamic programming, the split whose
    compounds are best attested: a compound seen in the indexed corpus (`preferred`) scores 2, one
    from pyvi's word list 1, a lone syllable 0; ties go to fewer words.
    """
    syllables = [strip_diacritics(w).lower() for w in words(nfc(text))]
    vocab = _compound_dictionary()
    n = len(syllables)
    best: list[tuple[float, int, int]] = [(0.0, 0, 0)] * (n + 1)  # (score, -words, step) ending at i
    for i in range(1, n + 1):
        options = []
        for size in range(1, min(4, i) + 1):
            piece = tuple(syllables[i - size : i])
            gain = 0.0 if size == 1 else 2.0 if piece in preferred else 1.0 if piece in vocab else None
            if gain is None:
                continue
            prev = best[i - size]
            options.append((prev[0] + gain, prev[1] - 1, size))
        best[i] = max(options)
    out: list[str] = []
    i = n
    while i > 0:
        size = best[i][2]
        out.append("_".join(syllables[i - size : i]))
        i -= size
    return out[::-1]


def segment_any(text: str, preferred: frozenset[tuple[str, ...]] = frozenset()) -> list[str]:
    """Word segmentation for either accented (pyvi) or unaccented (dictionary) Vietnamese."""
    return segment(text) if strip_diacritics(text) != text else segment_unaccented(text, preferred)
