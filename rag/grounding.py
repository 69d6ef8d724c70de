"""Grounded generation without the network: prompt templates, source blocks, citations, refusals.

- `render_prompt` fills `{name}` placeholders strictly (a missing or an unused value is an error, so
  an edited prompt file cannot silently drop the sources or the question); `{{`/`}}` are literal braces
  and substituted values are never re-read as template text.
- `format_sources` wraps each numbered passage in `<source id="n">…</source>`, neutralising anything
  inside a document that looks like a source tag, so a document cannot close its block and pose as
  instructions. The prompts declare the blocks to be data.
- `parse_citations` / `validate_citations` read `[1]`, `[1, 2]`, `[1][3]`, `[1-3]`, `［1］`, `【1】`
  and drop markers pointing at sources that were not given.
- `is_refusal` recognises "the documents do not contain this" answers in Vietnamese (with or without
  diacritics) and English.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.errors import RagError
from rag.guard import defang_control_tokens
from rag.text import is_stopword, split_sentences, strip_diacritics


class PromptError(RagError):
    """A prompt file is missing or its placeholders do not match the values given."""

    vi = "Tệp mẫu câu lệnh (prompt) bị thiếu hoặc không hợp lệ."
    en = "A prompt file is missing or invalid."


# --------------------------------------------------------------------------------------------- templates
_PLACEHOLDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILE_PART = re.compile(r"[A-Za-z0-9_\-]+")


def template_fields(template_text: str) -> list[str]:
    """The placeholder names of a template, in order of first use."""
    names: list[str] = []
    for _, name, spec, conversion in _parse(template_text):
        if name is None:
            continue
        if not _PLACEHOLDER.fullmatch(name) or spec or conversion:
            shown = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            raise PromptError(
                detail=f"placeholder {shown!r} is not a plain {{name}}; write {{{{ and }}}} for literal braces"
            )
        if name not in names:
            names.append(name)
    return names


def _parse(template_text: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(template_text))
    except ValueError as exc:
        raise PromptError(detail=f"{exc}; write {{{{ and }}}} for literal braces") from exc


def render_prompt(template_text: str, **values: object) -> str:
    """`template_text` with every `{name}` replaced by `str(values[name])`.

    Raises `PromptError` when a placeholder has no value, a value has no placeholder, or a brace is
    unbalanced. Values are inserted verbatim (braces inside them stay as they are).
    """
    fields = template_fields(template_text)
    missing = [name for name in fields if name not in values]
    unused = sorted(set(values) - set(fields))
    if missing or unused:
        parts = []
        if missing:
            parts.append("no value for " + ", ".join("{" + n + "}" for n in missing))
        if unused:
            parts.append("no placeholder for " + ", ".join(unused))
        raise PromptError(detail="; ".join(parts))
    out: list[str] = []
    for literal, name, _, _ in _parse(template_text):
        out.append(literal)
        if name is not None:
            out.append(str(values[name]))
    return "".join(out)


def load_prompt(prompts_dir: Path, name: str, lang: str) -> str:
    """The text of `prompts_dir/{name}.{lang}.md`, or of the language-neutral `{name}.md` when there
    is no per-language file (e.g. `translate_query.md`). Trailing whitespace is dropped."""
    if not _FILE_PART.fullmatch(name) or (lang and not _FILE_PART.fullmatch(lang)):
        raise PromptError(detail=f"bad prompt name {name!r} / language {lang!r}")
    candidates = [Path(prompts_dir) / f"{name}.{lang}.md"] if lang else []
    candidates.append(Path(prompts_dir) / f"{name}.md")
    for path in candidates:
        if path.is_file():
            return unicodedata.normalize("NFC", path.read_text(encoding="utf-8")).rstrip()
    raise PromptError(detail="not found: " + " or ".join(str(p) for p in candidates))


# --------------------------------------------------------------------------------------------- sources
# "<source", "</source>", "< / SOURCES", full-width and small-form angle brackets, with any spacing.
_TAG_LIKE = re.compile(r"[<＜﹤〈]\s*/?\s*sources?\b", re.IGNORECASE)


def _neutralise(text: str) -> str:
    """Make source-tag look-alikes inert: `</source>` becomes `&lt;/source>`."""
    return _TAG_LIKE.sub(lambda m: "&lt;" + m.group(0)[1:], text)


def format_sources(sources: list[tuple[int, str, str]]) -> str:
    """Numbered passages as delimited data blocks for the answer prompt.

    Each `(n, header, text)` becomes `<source id="n">\\n{header}\\n{text}\\n</source>`; the header is
    kept on one line, and tag-like text in header or body is neutralised so no document can end its
    own block (or open a fake one).
    """
    blocks = []
    for n, header, text in sources:
        header = " ".join(_neutralise(defang_control_tokens(header)).split())
        body = _neutralise(defang_control_tokens(text.strip()))  # `<|im_start|>system` in a document stays text
        blocks.append(f'<source id="{int(n)}">\n{header}\n{body}\n</source>')
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------------------------- citations
_OPEN, _CLOSE = r"\[［【〔", r"\]］】〕"
_NUM = r"[0-9０-９]{1,3}"
_ITEM = rf"{_NUM}(?:\s*[-–—~]\s*{_NUM})?"
_MARKER = re.compile(rf"[{_OPEN}]\s*({_ITEM}(?:\s*[,;，、；]\s*{_ITEM})*)\s*[{_CLOSE}]")
_MAX_RANGE = 50  # [1-999] is not a citation anyone means


def _numbers(group: str) -> list[int] | None:
    """The numbers of one marker's inside ("1, 3-4" -> [1, 3, 4]); None if it is not a citation."""
    out: list[int] = []
    for item in re.split(r"\s*[,;，、；]\s*", unicodedata.normalize("NFKC", group).strip()):
        lo, _, hi = re.sub(r"\s*[-–—~]\s*", "-", item).partition("-")
        a, b = int(lo), int(hi or lo)
        if a < 1 or b < a or b - a > _MAX_RANGE:
            return None
        out.extend(range(a, b + 1))
    return out


def _markers(answer_text: str) -> list[tuple[re.Match[str], list[int]]]:
    found = []
    for match in _MARKER.finditer(answer_text):
        numbers = _numbers(match.group(1))
        if numbers is not None:
            found.append((match, numbers))
    return found


def parse_citations(answer_text: str) -> list[int]:
    """Source numbers cited in `answer_text`, each once, in order of first appearance."""
    seen: list[int] = []
    for _, numbers in _markers(answer_text):
        seen.extend(n for n in numbers if n not in seen)
    return seen


def validate_citations(answer_text: str, valid: set[int]) -> tuple[str, list[int], list[int]]:
    """(text without citations of unknown sources, valid numbers cited in order of first
    appearance, removed numbers in order of first appearance).

    A marker citing only unknown sources is removed with the spaces before it; one citing some
    known sources is rewritten to list only those (`[1, 9]` -> `[1]`); markers with nothing
    unknown are left exactly as written.
    """
    cited: list[int] = []
    removed: list[int] = []
    out: list[str] = []
    pos = 0
    for match, numbers in _markers(answer_text):
        good = [n for n in dict.fromkeys(numbers) if n in valid]
        bad = [n for n in dict.fromkeys(numbers) if n not in valid]
        cited.extend(n for n in good if n not in cited)
        removed.extend(n for n in bad if n not in removed)
        start, end = match.span()
        if not bad:
            out.append(answer_text[pos:end])
        elif good:
            out.append(answer_text[pos:start] + "[" + ", ".join(map(str, good)) + "]")
        else:
            out.append(answer_text[pos:start].rstrip(" \t"))
        pos = end
    out.append(answer_text[pos:])
    cleaned = "".join(out)
    return cleaned, cited, removed


# --------------------------------------------------------------------------------------------- refusals
_DOCS_EN = r"(?:the |these |those |provided |given |available |supplied |retrieved |numbered )*(?:documents?|sources?|passages?|context|texts?|materials?)\b"
_DOCS_VI = r"(?:cac |nhung )?(?:tai lieu|nguon|van ban|doan trich|ngu canh)(?: (?:duoc )?(?:cung cap|dua ra|tren|nay|da cho))?"
_REFUSAL_PATTERNS = [
    # Vietnamese, compared without diacritics ("Không tìm thấy thông tin này trong tài liệu.")
    r"khong (?:the )?tim thay (?:bat ky |mot )?(?:thong tin|cau tra loi|noi dung|du lieu)",
    rf"khong tim thay .{{0,80}}? trong {_DOCS_VI}",
    rf"{_DOCS_VI} (?:hoan toan )?(?:khong|chua) (?:de cap|noi|neu|chua|co thong tin|cung cap|nhac)",
    rf"khong (?:co|du) (?:bat ky )?(?:thong tin|du lieu|noi dung)(?: .{{0,80}}?)? (?:trong|tu|o) {_DOCS_VI}",
    r"khong (?:co|du) thong tin (?:de|nao|ve)",
    rf"khong the tra loi .{{0,80}}?(?:dua (?:tren|vao)|tu|voi) {_DOCS_VI}",
    # English (apostrophes folded to ', so "couldn't", "couldnt" and "could not" all match)
    rf"(?:could ?n'?o?t|can ?n?'?o?t|did ?n'?o?t|do ?n'?o?t|(?:was|am|were) unable to|unable to) (?:find|locate|see)"
    rf" .{{0,80}}?\b(?:in|within|from) {_DOCS_EN}",
    rf"\b{_DOCS_EN} (?:do|does|did) ?n'?o?t (?:mention|contain|say|state|include|provide|cover|address|discuss|specify|give)",
    rf"\b{_DOCS_EN} (?:contains?|provides?|includes?|has|have|gives?) no (?:information|mention|details?|data)",
    rf"\b(?:not|never) (?:mentioned|found|covered|stated|addressed|specified|available|provided) (?:in|by) {_DOCS_EN}",
    rf"\b(?:there is|there's|i have|i found) no (?:relevant )?(?:information|mention|details?|data)(?: .{{0,80}}?)?"
    rf" (?:in|within|from) {_DOCS_EN}",
    rf"(?:can ?n?'?o?t|unable to) answer .{{0,80}}?\b(?:based on|from|with|using) {_DOCS_EN}",
]
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in _REFUSAL_PATTERNS))
_SHORT_REFUSAL_WORDS = 14  # a refusal with a stray citation is still a refusal if it says little else


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'").replace("`", "'")
    return " ".join(strip_diacritics(text).lower().split())


def is_refusal(answer_text: str) -> bool:
    """Whether the answer says the documents do not contain the answer (vi or en, diacritics optional).

    An answer that states a gap but goes on to answer with citations ("The documents do not mention
    the date, but the agreement covers X [1].") is not a refusal; a short refusal is one even if a
    model stuck a citation on it.
    """
    folded = _fold(answer_text)
    if not _REFUSAL.search(folded):
        return False
    if not parse_citations(answer_text):
        return True
    without_markers = _MARKER.sub(" ", answer_text)
    return len(re.findall(r"\w+", without_markers)) <= _SHORT_REFUSAL_WORDS


# --------------------------------------------------------------------------------------------- claims
# Every sentence of an LLM answer is checked against the passages it cites (deterministically: its
# numbers, dates and names must occur there, and enough of its content words; plus embedding
# similarity as a second opinion on the wording). Unsupported sentences are removed by the caller.

_MONTHS_EN = {m: str(i) for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"], 1)}
_NUMBER = re.compile(r"\d+(?:[.,]\d{3})+(?![.,]?\d)|\d+(?:[.,]\d+)?")
_CAP_WORD = re.compile(r"[^\W\d_][\w&'’-]*|\d+[^\W\d_][\w&-]*", re.UNICODE)
_LIST_PREFIX = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
_SYLL = re.compile(r"[\w&]+", re.UNICODE)
MIN_TERM_SUPPORT = 0.7  # share of a sentence's content words its cited passages must contain
MIN_SIMILARITY = 0.6  # cosine with the closest cited sentence that rescues a sentence just below MIN_TERM_SUPPORT
MIN_TERM_WITH_SIMILARITY = 0.6  # ...if at least this share of its content words is found (the bundled
# embedder rates any two on-topic Vietnamese sentences as similar, so it cannot carry a weak sentence alone)


@dataclass(frozen=True)
class ClaimCheck:
    """The verdict on one answer sentence."""

    start: int  # span of the sentence (with its markers) in the answer text
    end: int
    text: str
    cited: tuple[int, ...]  # sources it is checked against: its own markers, else its paragraph's
    supported: bool
    missing: tuple[str, ...] = ()  # numbers, dates and names that no cited passage contains
    term_support: float = 1.0  # share of content words found in the cited passages
    similarity: float | None = None  # best cosine with a sentence of the cited passages
    checked: bool = True  # False for sentences with nothing to check ('Theo các tài liệu:')


def _fold_syllables(text: str) -> list[str]:
    text = re.sub(r"['’]s\b", "", text)
    return [strip_diacritics(t.replace("&", "")).lower() for t in _SYLL.findall(text)]


def _contains_seq(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def _numbers_of(text: str) -> set[str]:
    """Digit strings of every number ('5.000' and '5,000' -> '5000'; '13/7' -> '13', '7')."""
    return {re.sub(r"\D", "", m.group()).lstrip("0") or "0" for m in _NUMBER.finditer(text)}


def claim_sentences(answer_text: str) -> list[tuple[int, int, tuple[int, ...]]]:
    """(start, end, cited numbers) for each sentence of an answer, in order.

    A marker that opens a sentence ("… kỹ sư. [1] Ngoài ra") belongs to the sentence before it. A
    sentence without markers is checked against the sources of the next cited sentence in its
    paragraph (models often cite once at the end of a run of sentences), else the previous one's.
    """
    spans: list[list[int]] = []
    for s, e in split_sentences(answer_text):
        lead = re.match(rf"(?:\s*{_MARKER.pattern}[.,;:]?)+", answer_text[s:e])
        if lead and spans and lead.end() > 0:
            spans[-1][1] = s + lead.end()
            s = s + lead.end()
            s += len(answer_text[s:e]) - len(answer_text[s:e].lstrip())
        if e > s:
            spans.append([s, e])
    own = [tuple(parse_citations(answer_text[s:e])) for s, e in spans]
    out: list[tuple[int, int, tuple[int, ...]]] = []
    for i, (s, e) in enumerate(spans):
        cited = own[i]
        if not cited:
            para_end = answer_text.find("\n\n", e)
            para_start = answer_text.rfind("\n\n", 0, s)
            after = [own[j] for j in range(i + 1, len(spans)) if own[j] and (para_end < 0 or spans[j][0] < para_end)]
            before = [own[j] for j in range(i - 1, -1, -1) if own[j] and spans[j][1] > para_start]
            cited = after[0] if after else before[0] if before else ()
        out.append((s, e, cited))
    return out


def _name_runs(sentence: str) -> list[str]:
    """Capitalised runs and acronyms ('Phạm Quang Hiệu', 'Tổng Lãnh sự quán', 'WIPO', 'EMB-AI').

    The first word of a sentence (or list item) is a name only when the next word is capitalised
    too; lower-case Vietnamese words between two capitalised ones stay in the run ('Bộ Khoa học và
    Công nghệ')."""
    body = _LIST_PREFIX.sub("", sentence)
    toks = [(m.group(), m.start()) for m in _CAP_WORD.finditer(body)]
    cap = [w[:1].isupper() or (any(c.isdigit() for c in w) and any(c.isupper() for c in w)) for w, _ in toks]
    if toks and cap[0] and not (len(toks) > 1 and cap[1]) and not (len(toks[0][0]) > 1 and toks[0][0].isupper()):
        cap[0] = False
    runs: list[str] = []
    i = 0
    while i < len(toks):
        if not cap[i] or toks[i][0].lower() in _MONTHS_EN:
            i += 1
            continue
        j = i + 1
        while j < len(toks):
            if cap[j] and toks[j][0].lower() not in _MONTHS_EN:
                j += 1
                continue
            k = j
            while k < len(toks) and k - j < 2 and not cap[k] and toks[k][0].islower() and not is_stopword(toks[k][0]) and any(
                c in "ăâđêôơưàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ" for c in toks[k][0]
            ):
                k += 1
            if k > j and k < len(toks) and cap[k]:
                j = k
                continue
            break
        start, end = toks[i][1], toks[j - 1][1] + len(toks[j - 1][0])
        runs.append(body[start:end])
        i = j
    return runs


@dataclass
class _Passage:
    text: str
    syllables: list[str]
    syllable_set: set[str]
    numbers: set[str]
    entities: set[tuple[str, str]]


def _passage(text: str) -> _Passage:
    from rag.entities import find_mentions  # gazetteer loads on first use

    syl = _fold_syllables(text)
    ents = {(m.kind, m.canonical) for m in find_mentions(text)}
    return _Passage(text, syl, set(syl), _numbers_of(text), ents)


@lru_cache(maxsize=256)
def _sentence_mentions(sentence: str) -> tuple[Any, ...]:
    from rag.entities import find_mentions

    return tuple(find_mentions(sentence, question=True))


def _name_supported(run: str, sentence: str, passage: _Passage, lexicon: Any) -> bool:
    """Whether a name occurs in the passage: verbatim (tone- and case-insensitive), as the same
    gazetteer entity ('Consulate General of Viet Nam in Osaka' = 'Tổng Lãnh sự quán Việt Nam tại
    Osaka'), or word by word through the EN<->VI lexicon ('Vice Minister' = 'Thứ trưởng')."""
    if _contains_seq(passage.syllables, _fold_syllables(run)):
        return True
    offset = sentence.find(run)
    covered: list[tuple[int, int]] = []
    for m in _sentence_mentions(sentence):
        if offset >= 0 and m.start < offset + len(run) and m.end > offset and (m.kind, m.canonical) in passage.entities:
            covered.append((max(m.start, offset) - offset, min(m.end, offset + len(run)) - offset))
    rest = "".join(" " if any(a <= i < b for a, b in covered) else ch for i, ch in enumerate(run))
    if not rest.strip():
        return True
    if lexicon is not None:
        exp = lexicon.expand(rest)
        for phrase in exp.matched:
            sub = lexicon.expand(phrase)
            forms = (*sub.vietnamese, *sub.english, phrase)
            if not any(_contains_seq(passage.syllables, _fold_syllables(f)) for f in forms):
                return False
        leftover = exp.leftover
    else:
        leftover = tuple(_SYLL.findall(rest))
    return all(is_stopword(w) or strip_diacritics(w).lower() in passage.syllable_set for w in leftover
               for w in [w.replace("&", "")] if w)


def _term_support(sentence: str, passage: _Passage, lexicon: Any, english: bool) -> float:
    """Share of the sentence's content words (lexicon phrases for English) found in the passage."""
    plain = _MARKER.sub(" ", sentence)  # numbers are checked as anchors; digit-only tokens are skipped below
    total = found = 0.0
    if english and lexicon is not None:
        exp = lexicon.expand(plain)
        for phrase in exp.matched:
            if all(is_stopword(w) for w in phrase.split()):
                continue
            sub = lexicon.expand(phrase)
            forms = (*sub.vietnamese, *sub.english, phrase)
            total += 1
            found += any(_contains_seq(passage.syllables, _fold_syllables(f)) for f in forms)
        words_left = [w for w in exp.leftover if not is_stopword(w) and not w.isdigit()]
        for w in words_left:
            known = strip_diacritics(w).lower() in passage.syllable_set
            weight = 1.0 if (w[:1].isupper() or known) else 0.5  # unknown English words weigh less
            total += weight
            found += weight if known else 0.0
    else:
        # Syllables, and pairs of adjacent content syllables (compounds: 'kỹ sư', 'cầu nối'), so that a
        # sentence recombining the passage's syllables into other words does not pass as supported.
        syl = _fold_syllables(plain)
        keep = [not (is_stopword(x) or x.isdigit()) for x in syl]
        uni = [x for x, k in zip(syl, keep, strict=True) if k]
        pairs = [syl[i : i + 2] for i in range(len(syl) - 1) if keep[i] and keep[i + 1]]
        if not uni:
            return 1.0
        share = sum(x in passage.syllable_set for x in uni) / len(uni)
        if not pairs:
            return share
        return 0.5 * share + 0.5 * sum(_contains_seq(passage.syllables, pr) for pr in pairs) / len(pairs)
    return found / total if total else 1.0


def check_claims(
    answer_text: str,
    passages: Mapping[int, str],
    *,
    lexicon: Any = None,
    english: bool = False,
    similarity: Callable[[list[str], list[str]], Any] | None = None,
    min_terms: float = MIN_TERM_SUPPORT,
    min_similarity: float = MIN_SIMILARITY,
) -> list[ClaimCheck]:
    """Check each sentence of `answer_text` against the passages (`n -> text`) it cites.

    A sentence passes when every number, date and name in it occurs in one of its cited passages,
    and at least `min_terms` of its content words do (or `MIN_TERM_WITH_SIMILARITY` of them, when the
    sentence is also close in meaning, cosine >= `min_similarity`, to a sentence of those passages).
    `similarity(claims, sentences)` returns the cosine matrix; None skips the embedding opinion.
    A sentence citing no source (and inheriting none) does not pass unless it has nothing to check.
    """
    cache: dict[int, _Passage] = {}

    def passage(n: int) -> _Passage | None:
        if n not in passages:
            return None
        if n not in cache:
            cache[n] = _passage(passages[n])
        return cache[n]

    out: list[ClaimCheck] = []
    pending: list[tuple[int, list[str], str]] = []  # (index in out, cited sentences, claim) for similarity
    for s, e, cited in claim_sentences(answer_text):
        raw = answer_text[s:e]
        sentence = _MARKER.sub(" ", raw).strip()
        words = [w for w in _SYLL.findall(sentence) if not is_stopword(w) and not w.isdigit()]
        numbers = _numbers_of(sentence)
        numbers |= {_MONTHS_EN[w.lower()] for w in re.findall(r"[A-Za-z]+", sentence) if w.lower() in _MONTHS_EN
                    and w[:1].isupper()}
        runs = _name_runs(sentence)
        # Nothing to check, or a short lead-in line ('Theo các tài liệu:', 'According to the documents:').
        if (not words and not numbers) or (sentence.endswith(":") and not numbers and not runs and len(words) <= 6):
            out.append(ClaimCheck(s, e, raw, cited, True, checked=False))
            continue
        ps = [p for p in (passage(n) for n in cited) if p is not None]
        if not ps:
            out.append(ClaimCheck(s, e, raw, cited, False, missing=tuple(sorted(numbers)) + tuple(runs),
                                  term_support=0.0))
            continue
        missing = [x for x in sorted(numbers) if not any(x in p.numbers for p in ps)]
        missing += [r for r in runs if not any(_name_supported(r, sentence, p, lexicon) for p in ps)]
        support = max(_term_support(sentence, p, lexicon, english) for p in ps)
        verdict = ClaimCheck(s, e, raw, cited, not missing and support >= min_terms, tuple(missing), round(support, 3))
        out.append(verdict)
        if not missing and support < min_terms and support >= MIN_TERM_WITH_SIMILARITY and similarity is not None:
            sents = [p.text[a:b] for p in ps for a, b in split_sentences(p.text)]
            pending.append((len(out) - 1, sents, sentence))
    if pending and similarity is not None:
        for i, sents, claim in pending:
            if not sents:
                continue
            sim = float(max(similarity([claim], sents)[0]))
            c = out[i]
            out[i] = ClaimCheck(c.start, c.end, c.text, c.cited, sim >= min_similarity, c.missing, c.term_support,
                                round(sim, 3))
    return out


def remove_unsupported(answer_text: str, checks: list[ClaimCheck]) -> str:
    """The answer without its unsupported sentences (list items that become empty go too)."""
    out: list[str] = []
    pos = 0
    for c in checks:
        if c.supported:
            continue
        out.append(answer_text[pos : c.start])
        pos = c.end
    out.append(answer_text[pos:])
    text = "".join(out)
    lines = [ln.rstrip() for ln in text.splitlines()]
    lines = [ln for ln in lines if not re.fullmatch(r"\s*(?:[-*•]|\d{1,2}[.)])?\s*", ln) or ln == ""]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
