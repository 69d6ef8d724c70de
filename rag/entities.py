"""Named entities of the cooperation domain: Vietnamese provinces, Japanese localities, organisations,
people, programmes/policies and sectors.

Places, organisations and sectors come from the gazetteer (`rag.gazetteer`): case- and tone-insensitive,
whole-word, longest-match lookup; short acronyms that are also ordinary words ('AI' = "who") only match
in capitals. A province named by its pre-July-2025 name resolves to the merged province and keeps both
forms ('Vĩnh Phúc→Phú Thọ'). People are found by title patterns ("Thứ trưởng Nguyễn Hoàng Giang",
"Chủ tịch Diễn đàn STS Hiroshi Komiyama"), programmes and policies by head-word patterns
("Nghị quyết 57", "Chiến lược … đến năm 2030", "Đề án …").

Two modes: `extract_entities` reads document text (place names must be capitalised, as they are in
edited prose); `detect_question_entities` reads a question typed in any way (lower case, without tones,
in English).

Shortcut taken: patterns and dictionaries, not a statistical NER model; it is precise on edited news
prose and recalls what the gazetteer lists.
"""

from __future__ import annotations

import math
import re
import unicodedata
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np

from rag.text import is_stopword, nfc, strip_diacritics
from rag.types import Chunk

KINDS = ("places_vn", "places_jp", "organizations", "people", "programmes", "sectors")
KIND_LABELS = {
    "places_vn": ("Địa phương Việt Nam", "Vietnamese province"),
    "places_jp": ("Địa phương Nhật Bản", "Japanese locality"),
    "organizations": ("Cơ quan / tổ chức", "Organisation"),
    "people": ("Nhân vật", "Person"),
    "programmes": ("Chương trình / chính sách", "Programme / policy"),
    "sectors": ("Lĩnh vực", "Sector"),
}
OLD_NEW_SEP = "→"
_META_PREFIX = "ent_"


# ----------------------------------------------------------------------------------------- the value


@dataclass(frozen=True)
class Entities:
    """Canonical entity names found in a text, per kind, in order of first mention."""

    places_vn: tuple[str, ...] = ()
    places_jp: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    programmes: tuple[str, ...] = ()
    sectors: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not any(getattr(self, k) for k in KINDS)

    def items(self) -> list[tuple[str, str]]:
        """(kind, name) pairs, kinds in KINDS order."""
        return [(k, name) for k in KINDS for name in getattr(self, k)]

    def provinces(self) -> tuple[str, ...]:
        """The current (34-province) names: 'Vĩnh Phúc→Phú Thọ' counts as 'Phú Thọ'."""
        return tuple(dict.fromkeys(p.split(OLD_NEW_SEP)[-1] for p in self.places_vn))

    def match_keys(self) -> set[tuple[str, str]]:
        """(kind, folded name) pairs used for overlap; old province names fold to the new province."""
        out = {(k, _fold(n)) for k, n in self.items() if k != "places_vn"}
        out |= {("places_vn", _fold(p)) for p in self.provinces()}
        return out

    def merge(self, other: Entities) -> Entities:
        return Entities(**{k: tuple(dict.fromkeys((*getattr(self, k), *getattr(other, k)))) for k in KINDS})

    def as_metadata(self) -> dict[str, str | bool]:
        """Flat scalars for a vector store: 'ent_<kind>' = names joined by '|', 'has_<kind>' = bool."""
        out: dict[str, str | bool] = {}
        for k in KINDS:
            names = getattr(self, k)
            out[f"{_META_PREFIX}{k}"] = "|".join(n.replace("|", "/") for n in names)
            out[f"has_{k}"] = bool(names)
        out[f"{_META_PREFIX}provinces"] = "|".join(self.provinces())
        return out

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Entities:
        """The inverse of `as_metadata` (other keys are ignored; missing kinds are empty)."""
        values = {}
        for k in KINDS:
            raw = metadata.get(f"{_META_PREFIX}{k}") or ""
            values[k] = tuple(p for p in str(raw).split("|") if p)
        return cls(**values)

    def to_json(self) -> dict[str, list[str]]:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}


def _fold(text: str) -> str:
    """Comparison key: no tones, lower case, '&' and spaces around '-' normalised."""
    t = strip_diacritics(nfc(text)).casefold().replace("&", "")
    return " ".join(re.findall(r"\w+", t))


# ----------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Tok:
    text: str
    start: int
    end: int
    key: str  # folded: no tones, lower case, '&' removed
    marks: str  # sorted combining marks (tone/vowel marks), '' when typed without them
    word: bool  # False for punctuation

    @property
    def capitalised(self) -> bool:
        return self.text[:1].isupper() or self.text[:1].isdigit()

    @property
    def is_acronym(self) -> bool:
        letters = [c for c in self.text if c.isalpha()]
        return len(letters) >= 2 and all(c.isupper() for c in letters)


_TOKEN_RE = re.compile(r"\w+(?:&\w+)*|[^\w\s]", re.UNICODE)


def _marks(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word.lower())
    marks = [c for c in decomposed if unicodedata.combining(c)]
    if "đ" in word.lower():
        marks.append("đ")
    return "".join(sorted(marks))


@lru_cache(maxsize=65536)
def _word_info(w: str) -> tuple[str, str, bool]:
    """(folded key, sorted marks, is a word) of one token; words repeat, so this is cached."""
    is_word = w[0].isalnum() or w[0] == "_"
    if not is_word:
        return w, "", False
    return strip_diacritics(w).casefold().replace("&", ""), _marks(w), True


def _tokens(text: str) -> list[_Tok]:
    out = []
    for m in _TOKEN_RE.finditer(text):
        w = m.group()
        key, marks, is_word = _word_info(w)
        out.append(_Tok(w, m.start(), m.end(), key, marks, is_word))
    return out


def _form_tokens(form: str) -> list[_Tok]:
    return [t for t in _tokens(nfc(form)) if t.word]


def _same_word(tok: _Tok, form_tok: _Tok) -> bool:
    """Equal ignoring case; tones must agree when both sides carry them ('Hà' != 'Hạ', 'Ha' == 'Hà')."""
    if tok.key != form_tok.key:
        return False
    return not (tok.marks and form_tok.marks) or tok.marks == form_tok.marks


# ----------------------------------------------------------------------------------------- gazetteer


@dataclass(frozen=True)
class GazetteerEntry:
    """One name form of a gazetteer entity."""

    kind: str  # one of KINDS (never 'people' or 'programmes')
    canonical: str  # what Entities stores
    form: str  # the surface form to look for
    case_sensitive: bool  # short acronyms that are also common words
    question_only: bool = False  # English/alias forms only looked for in questions


@dataclass(frozen=True)
class EntityInfo:
    """Display data of a canonical entity (for answers and the overview)."""

    kind: str
    canonical: str
    name_vi: str
    name_en: str
    extra: tuple[tuple[str, str], ...] = ()  # e.g. (('type', 'embassy'), ('country', 'VN'))

    def name(self, lang: str) -> str:
        return (self.name_en if lang == "en" else self.name_vi) or self.canonical

    def get(self, key: str, default: str = "") -> str:
        return dict(self.extra).get(key, default)


def _acronym_like(text: str) -> bool:
    """'NIC', 'KH&CN', 'MoST', 'UTokyo': two or more capitals in one word."""
    return sum(1 for c in text if c.isupper()) >= 2


def _is_ambiguous_acronym(form: str) -> bool:
    """'AI', 'IT', 'MOST'/'MoST', 'CAO': capitals that are also a common word when lower-cased."""
    toks = _form_tokens(form)
    if len(toks) != 1 or not _acronym_like(toks[0].text):
        return False
    low = toks[0].key
    return len(low) <= 2 or is_stopword(low) or bool(_VI_SYLLABLE.match(low)) or low in _EN_COMMON


_VI_SYLLABLE = re.compile(r"^(ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnpqrstvx])?[aeiouy]{1,3}(ch|ng|nh|[cmnpt])?$")
_EN_COMMON = frozenset(
    {"it", "us", "am", "is", "as", "an", "in", "on", "or", "so", "go", "do", "no", "can", "may", "art", "sun", "most"}
)
_JOINERS = frozenset({"", "-", "."})


def _gap(text: str, a: int, b: int) -> str:
    """Punctuation between two tokens, spaces removed, dashes unified ('' for plain spaces)."""
    return re.sub(r"\s+", "", text[a:b]).replace("–", "-").replace("—", "-")


@dataclass(frozen=True)
class _Form:
    toks: tuple[_Tok, ...]
    gaps: tuple[str, ...]  # punctuation between consecutive tokens of the form
    entry: GazetteerEntry


class Gazetteer:
    """All gazetteer name forms, indexed by their first folded word for longest-match lookup."""

    def __init__(self, entries: Iterable[GazetteerEntry], infos: Iterable[EntityInfo] = ()) -> None:
        self.by_first: dict[str, list[_Form]] = defaultdict(list)
        seen = set()
        for e in entries:
            form = nfc(e.form)
            toks = tuple(_form_tokens(form))
            if not toks:
                continue
            sig = (e.kind, e.canonical, tuple(t.text.casefold() for t in toks))
            if sig in seen:
                continue
            seen.add(sig)
            gaps = tuple(_gap(form, toks[k].end, toks[k + 1].start) for k in range(len(toks) - 1))
            self.by_first[toks[0].key].append(_Form(toks, gaps, e))
        for lst in self.by_first.values():
            lst.sort(key=lambda f: -len(f.toks))
        self.info: dict[tuple[str, str], EntityInfo] = {(i.kind, i.canonical): i for i in infos}

    def display(self, kind: str, canonical: str, lang: str) -> str:
        """The entity's name in `lang` ('Phú Thọ' / 'Phu Tho', 'Tổng Lãnh sự quán…' / 'Consulate…')."""
        info = self.info.get((kind, canonical.split(OLD_NEW_SEP)[-1]))
        return info.name(lang) if info else canonical

    def find(self, text: str, toks: list[_Tok], question: bool) -> list[tuple[int, int, GazetteerEntry]]:
        """Longest, leftmost matches per kind as (first token, end token) indices into `toks`.

        Matches of different kinds may overlap (the place inside an organisation's name counts too).
        """
        words = [i for i, t in enumerate(toks) if t.word]
        out: list[tuple[int, int, GazetteerEntry]] = []
        taken: dict[str, int] = defaultdict(int)  # kind -> first word position still free
        for w, i in enumerate(words):
            for form in self.by_first.get(toks[i].key, ()):
                kind = form.entry.kind
                if w < taken[kind] or (form.entry.question_only and not question):
                    continue
                n = len(form.toks)
                if w + n > len(words):
                    continue
                idx = words[w : w + n]
                if not self._matches(text, toks, idx, form, question):
                    continue
                out.append((idx[0], idx[-1] + 1, form.entry))
                taken[kind] = w + n
        return out

    @staticmethod
    def _matches(text: str, toks: list[_Tok], idx: list[int], form: _Form, question: bool) -> bool:
        span = [toks[i] for i in idx]
        if not all(_same_word(t, f) for t, f in zip(span, form.toks, strict=True)):
            return False
        for k in range(len(idx) - 1):  # 'Ô-sa-ka', 'TP.HCM', but no comma inside a name unless the form has it
            g = _gap(text, toks[idx[k]].end, toks[idx[k + 1]].start)
            if g != form.gaps[k] and not (g in _JOINERS and form.gaps[k] in _JOINERS):
                return False
        entry = form.entry
        if entry.case_sensitive and any(t.text != f.text for t, f in zip(span, form.toks, strict=True)):
            return False
        single = len(form.toks) == 1
        if single and _acronym_like(form.toks[0].text) and not question and not _acronym_like(span[0].text):
            return False  # documents write acronyms in capitals: 'nic' is not NIC
        # Edited prose capitalises every syllable of a place name: 'Kinh đô' (a capital) is not Kyoto,
        # 'cao bằng' (as high as) is not Cao Bằng. A lower-case form ('cao bang') means all capitals.
        if entry.kind in ("places_vn", "places_jp") and not question:
            cased = any(f.text[:1].isupper() for f in form.toks)
            for t, f in zip(span, form.toks, strict=True):
                if (f.text[:1].isupper() or not cased) and not (t.text[:1].isupper() or t.text[:1].isdigit()):
                    return False
        # A one-word organisation name is a proper noun: 'diet' is not the Diet.
        return not (
            entry.kind == "organizations"
            and single
            and not _acronym_like(form.toks[0].text)
            and not span[0].text[:1].isupper()
        )


def _rows(loader: Any) -> list[Any]:
    try:
        return list(loader())
    except Exception:  # pragma: no cover - a broken data file must not break answering
        import logging

        logging.getLogger(__name__).exception("Gazetteer file could not be loaded")
        return []


@lru_cache(maxsize=1)
def default_gazetteer() -> Gazetteer:
    """The gazetteer built from rag/data/*.tsv (loaded once)."""
    from rag import gazetteer as gz

    entries: list[GazetteerEntry] = []
    infos: list[EntityInfo] = []
    for kind, loader in (
        ("places_vn", gz.load_provinces),
        ("places_jp", gz.load_jp_places),
        ("organizations", gz.load_organizations),
        ("sectors", gz.load_sectors),
    ):
        for row in _rows(loader):
            e, i = _entries_of(kind, row)
            entries.extend(e)
            infos.extend(i)
    return Gazetteer(entries, infos)


def _entries_of(kind: str, row: Any) -> tuple[list[GazetteerEntry], list[EntityInfo]]:
    """Gazetteer entries and display info for one loader row (rows of rag.gazetteer's loaders)."""
    if kind == "places_vn":  # Province(old_name, new_name, old_ascii, new_ascii, aliases)
        canonical = row.new_name if row.old_name == row.new_name else f"{row.old_name}{OLD_NEW_SEP}{row.new_name}"
        forms = (row.old_name, row.old_ascii, *row.aliases)
        if row.old_name == row.new_name:
            forms = (*forms, row.new_name, row.new_ascii)
        info = EntityInfo(kind, row.new_name, row.new_name, strip_diacritics(row.new_name))
    elif kind == "places_jp":  # JpPlace(name_en, name_vi, kind, aliases)
        canonical = row.name_en
        forms = (row.name_en, row.name_vi, *row.aliases)
        info = EntityInfo(kind, canonical, row.name_vi, row.name_en, (("type", row.kind),))
    elif kind == "organizations":  # Organization(id, acronym, name_vi, name_en, kind, country, aliases)
        canonical = row.id
        forms = tuple(f for f in (row.acronym, row.name_vi, row.name_en, *row.aliases) if f)
        info = EntityInfo(
            kind, canonical, row.name_vi, row.name_en,
            (("type", row.kind), ("country", row.country), ("acronym", row.acronym)),
        )
    else:  # Sector(id, name_en, name_vi, aliases)
        canonical = row.id
        forms = (row.name_vi, row.name_en, *row.aliases)
        info = EntityInfo(kind, canonical, row.name_vi, row.name_en)
    entries = [
        GazetteerEntry(kind, canonical, f, _is_ambiguous_acronym(f))
        for f in dict.fromkeys(nfc(f) for f in forms if f)
    ]
    return entries, [info]


# ----------------------------------------------------------------------------------------- people

_TITLES_VI = (
    "Phó Thủ tướng",
    "Thủ tướng",
    "Phó Chủ tịch nước",
    "Chủ tịch nước",
    "Phó Chủ tịch",
    "Chủ tịch",
    "Tổng Bí thư",
    "Thứ trưởng",
    "Bộ trưởng",
    "Đại sứ",
    "Tổng Lãnh sự",
    "Tổng giám đốc",
    "Phó Tổng giám đốc",
    "Giám đốc",
    "Phó Giám đốc",
    "Viện trưởng",
    "Hiệu trưởng",
    "Thống đốc",
    "Thị trưởng",
    "Cục trưởng",
    "Vụ trưởng",
)
_TITLES_EN = (
    "Deputy Prime Minister",
    "Prime Minister",
    "Deputy Minister",
    "Vice Minister",
    "Minister",
    "Ambassador",
    "Consul General",
    "Vice President",
    "President",
    "Chairman",
    "Chairwoman",
    "Director-General",
    "Director General",
    "Director",
    "Governor",
    "Mayor",
    "General Secretary",
)
# 'Đại sứ quán' is the embassy, 'Tổng Lãnh sự quán' the consulate: institutions, not titles.
_NOT_TITLE_NEXT = frozenset({"quan"})
_VI_SURNAMES = frozenset(
    ["nguyen", "tran", "le", "pham", "hoang", "huynh", "phan", "vu", "vo", "dang", "bui", "do", "ho", "ngo", "duong", "ly", "dinh", "dao", "truong", "lam", "mai", "to", "cao", "ha", "luong", "trinh", "chu", "ta", "quach", "thai", "doan", "tang", "kieu", "phung", "lai", "vuong", "ton", "luu", "la", "ong", "khuc", "thach", "nong", "dieu", "kim", "tieu", "bach", "mac", "quan", "trieu", "au", "giap", "hua", "lo"]
)
# Lower-case words that end the qualifier between a title and a name (a verb phrase has begun).
_QUALIFIER_STOP = frozenset(
    ["đã", "đang", "sẽ", "cũng", "được", "là", "có", "gửi", "chia", "mong", "nhấn", "đề", "tin", "cho", "báo", "thực", "tặng", "chụp", "dẫn", "làm", "tham", "hoan", "trình", "khẳng", "đồng", "phát", "nêu", "cảm", "dành", "vừa", "chủ", "trì"]
)
_NAME_MAX_QUALIFIER = 14


@lru_cache(maxsize=1)
def _title_forms() -> dict[str, list[tuple[_Tok, ...]]]:
    """Title forms by their first folded word, longest first."""
    out: dict[str, list[tuple[_Tok, ...]]] = defaultdict(list)
    for t in (*_TITLES_VI, *_TITLES_EN):
        toks = tuple(_form_tokens(t))
        out[toks[0].key].append(toks)
    for forms in out.values():
        forms.sort(key=lambda f: -len(f))
    return dict(out)


def _foreign_token(t: _Tok) -> bool:
    return (
        t.word
        and t.text[:1].isupper()
        and t.text.isalpha()
        and t.text.isascii()
        and not t.is_acronym
        and len(t.text) >= 2
    )


def _vi_name_at(toks: list[_Tok], j: int) -> int:
    """End index of a Vietnamese personal name starting at j (surname + 1-3 capitalised words), or 0."""
    t = toks[j]
    if not (t.word and t.text[:1].isupper() and not t.is_acronym and t.key in _VI_SURNAMES):
        return 0
    k = j + 1
    while k < len(toks) and k - j < 4:
        u = toks[k]
        if not (u.word and u.text[:1].isupper() and not u.is_acronym and u.text.isalpha()):
            break
        if not _VI_SYLLABLE.match(u.key):
            break
        k += 1
    return k if k - j >= 2 else 0


def _foreign_name_at(toks: list[_Tok], j: int, adjacent: bool) -> int:
    """End index of a foreign name (2-3 capitalised Latin words, not all Vietnamese-shaped), or 0.

    Directly after the title a single such word is a name too ('Thủ tướng Ishiba')."""
    k = j
    while k < len(toks) and k - j < 3 and _foreign_token(toks[k]):
        k += 1
    n = k - j
    if n == 0:
        return 0
    if not any(not _VI_SYLLABLE.match(toks[x].key) for x in range(j, k)):
        return 0
    if n >= 2 or (adjacent and n == 1 and len(toks[j].text) >= 4):
        return k
    return 0


def _find_people(
    toks: list[_Tok], blocked: set[int], question: bool
) -> list[tuple[int, int, int, str]]:
    """(title start, name start, name end, name) for every 'title [qualifier] Name' in the tokens."""
    out = []
    i = 0
    n = len(toks)
    while i < n:
        matched = None
        for form in _title_forms().get(toks[i].key, ()) if toks[i].word else ():
            m = len(form)
            if i + m > n:
                continue
            span = toks[i : i + m]
            if all(t.word for t in span) and all(_same_word(t, f) for t, f in zip(span, form, strict=True)):
                if not question and not span[0].text[:1].isupper():
                    continue
                if i + m < n and toks[i + m].key in _NOT_TITLE_NEXT:
                    continue
                matched = m
                break
        if matched is None:
            i += 1
            continue
        j = i + matched
        limit = min(n, j + _NAME_MAX_QUALIFIER)
        found = None
        while j < limit:
            t = toks[j]
            if not t.word and t.text not in "()-–":
                break
            if t.word and not t.text[:1].isupper() and _word_in(t, _QUALIFIER_STOP):
                break
            if j not in blocked:
                end = _vi_name_at(toks, j) or _foreign_name_at(toks, j, adjacent=(j == i + matched))
                if end and not any(x in blocked for x in range(j, end)):
                    found = (i, j, end)
                    break
            j += 1
        if found:
            a, b, c = found
            name = " ".join(t.text for t in toks[b:c])
            out.append((a, b, c, name))
            i = c
        else:
            i += matched
    return out


# ----------------------------------------------------------------------------------------- programmes

_PROGRAMME_HEADS = (
    "Nghị quyết",
    "Nghị định",
    "Chiến lược",
    "Đề án",
    "Chương trình",
    "Dự án",
    "Diễn đàn",
    "Triển lãm",
    "Hiệp định",
    "Bản ghi nhớ",
)
_HEAD_RE = re.compile(r"(?<!\w)(" + "|".join(re.escape(h) for h in _PROGRAMME_HEADS) + r")(?!\w)")
_HEAD_RE_QUESTION = re.compile(
    r"(?<!\w)(" + "|".join(re.escape(_fold(h)) for h in _PROGRAMME_HEADS) + r")(?!\w)", re.IGNORECASE
)
_NUMBERED = re.compile(r"\s+(?:số\s+|so\s+)?(\d+(?:/\d{4})?(?:/[A-ZĐ]+(?:-[A-Z]+)?)?)(?:-NQ/TW|-NQ/[A-Z]+)?", re.IGNORECASE)
_RESOLUTION_EN = re.compile(r"\bResolution\s+(?:No\.?\s*)?(\d+)", re.IGNORECASE)
# Named apps/platforms: 'ra mắt ứng dụng EMB-AI', 'ra mắt EMB-AI', 'the EMB-AI app'.
_PLATFORM = re.compile(
    r"(?:ứng dụng|nền tảng|ra mắt|launch(?:ed)?|platform|app)\s+(?:ứng dụng\s+)?"
    r"([A-Z][A-Z0-9]+(?:-[A-Z0-9]+)+)(?![\w-])"
)
_STRATEGY_YEAR = re.compile(r"Chiến lược[^.;:!?\n“”\"]{1,140}?đến năm \d{4}")
_STOP_TAIL = frozenset(
    ["đã", "đang", "sẽ", "được", "là", "nhằm", "để", "thông", "vừa", "với", "tại", "về", "của", "do", "theo", "cùng", "nhưng", "mà", "khi", "thì", "như", "hoặc", "gồm", "bao", "này", "đó", "đồng", "lần", "có"]
)
_TRAILING_FUNCTION = frozenset(["và", "của", "cho", "giữa", "hai", "các", "những", "về", "với", "tại", "ở", "trong", "một", "số"])
_MAX_TAIL_WORDS = 14
_ACRONYM_NAMED = ("Diễn đàn", "Triển lãm", "Chương trình", "Dự án")


def _word_in(tok: _Tok, accented: frozenset[str]) -> bool:
    """Is the word in the set? Exact (lower case) when typed with tones, tone-free otherwise."""
    if tok.marks:
        return tok.text.lower() in accented
    return tok.key in _folded_set(accented)


@lru_cache(maxsize=16)
def _folded_set(accented: frozenset[str]) -> frozenset[str]:
    return frozenset(strip_diacritics(w) for w in accented)


def _find_programmes(text: str, question: bool, orgs: list[tuple[int, int]] = ()) -> list[tuple[int, int, str]]:
    """(start, end, canonical) of programme/policy/event names.

    `orgs` are character spans of organisation names: a head that starts one ('Diễn đàn STS' is the STS
    forum) is the organisation, and a name inside the tail is taken whole ('… giữa Cục Ứng dụng và Phát
    triển công nghệ (SATI)').
    """
    out: list[tuple[int, int, str]] = []
    covered: list[tuple[int, int]] = []
    for m in _STRATEGY_YEAR.finditer(text):
        phrase = m.group()
        if "Chiến lược" in phrase[2:]:  # another strategy begins inside: take the innermost
            continue
        out.append((m.start(), m.end(), _clean_spaces(phrase)))
        covered.append((m.start(), m.end()))
    for m in _RESOLUTION_EN.finditer(text):
        out.append((m.start(), m.end(), f"Nghị quyết {m.group(1)}"))
    for m in _PLATFORM.finditer(text):
        out.append((m.start(1), m.end(1), m.group(1)))
    # Questions may be typed in lower case or without tones; documents capitalise the head.
    heads = list(_HEAD_RE_QUESTION.finditer(_fold_keep_offsets(text))) if question else list(_HEAD_RE.finditer(text))
    org_starts = {a for a, _ in orgs}
    for m in heads:
        start = m.start()
        if any(a <= start < b for a, b in covered) or start in org_starts:
            continue
        head = _canonical_head(m.group(1))
        rest = text[m.end() :]
        if head in ("Nghị quyết", "Nghị định"):
            num = _NUMBERED.match(rest)
            if num:
                out.append((start, m.end() + num.end(), f"{head} {num.group(1)}"))
            continue
        shifted = [(a - m.end(), b - m.end()) for a, b in orgs if a >= m.end()]
        tail, length = _programme_tail(rest, shifted)
        if tail:
            out.append((start, m.end() + length, _canonical_programme(head, tail)))
    out.sort()
    return out


def _fold_keep_offsets(text: str) -> str:
    """Tone-free text of the same length (each character folded alone), for offset-preserving regexes."""
    out = []
    for c in text:
        f = strip_diacritics(c)
        out.append(f if len(f) == 1 else c)
    return "".join(out)


def _canonical_head(h: str) -> str:
    for head in _PROGRAMME_HEADS:
        if _fold(head) == _fold(h):
            return head
    return h


def _programme_tail(rest: str, orgs: list[tuple[int, int]]) -> tuple[list[_Tok], int]:
    """The name words after a head: up to punctuation, a verb/function word, or another head."""
    toks = _tokens(rest)
    tail: list[_Tok] = []
    depth = 0
    skip_until = -1
    for idx, t in enumerate(toks):
        if t.start < skip_until:
            tail.append(t)
            continue
        org = next((b for a, b in orgs if a == t.start), None)
        if org is not None:  # an organisation's name is taken whole
            tail.append(t)
            skip_until = org
            continue
        if not t.word:
            if t.text == "(":
                depth += 1
                tail.append(t)
                continue
            if t.text == ")" and depth:
                depth -= 1
                tail.append(t)
                prev = [x for x in tail if x.text != ")"]
                if prev and prev[-1].is_acronym:  # '(STS)', '(VIIE2023)' close the name
                    break
                continue
            if t.text in "-–" and tail:
                tail.append(t)
                continue
            break
        nxt = toks[idx + 1] if idx + 1 < len(toks) else None
        if not t.text[:1].isupper() and _word_in(t, _STOP_TAIL):
            break
        if t.key == "va" and (nxt is None or not nxt.text[:1].isupper() or _starts_head(rest[nxt.start :])):
            break  # 'và' joins two capitalised names ('Khoa học và Công nghệ'), nothing else
        if tail and _starts_head(rest[t.start :]):
            break
        tail.append(t)
        if sum(1 for x in tail if x.word) >= _MAX_TAIL_WORDS:
            break
    if depth and tail:  # an unclosed parenthesis: cut before it
        cut = max(i for i, t in enumerate(tail) if t.text == "(")
        tail = tail[:cut]
    while tail and (
        (not tail[-1].word and tail[-1].text != ")")
        or (tail[-1].word and not tail[-1].text[:1].isupper() and _word_in(tail[-1], _TRAILING_FUNCTION))
    ):
        tail.pop()
    words = [t for t in tail if t.word]
    if not words:
        return [], 0
    informative = any(t.text[:1].isupper() or t.text[:1].isdigit() for t in words) or len(words) >= 2
    if not informative:
        return [], 0
    return tail, tail[-1].end


def _starts_head(s: str) -> bool:
    return bool(_HEAD_RE.match(s)) or s.startswith(("Luật ", "Thỏa thuận ", "Thoả thuận "))


def _canonical_programme(head: str, tail: list[_Tok]) -> str:
    words = [t for t in tail if t.word]
    acronym_paren = len(tail) >= 3 and tail[-1].text == ")" and tail[-3].text == "(" and tail[-2].is_acronym
    if acronym_paren and head in _ACRONYM_NAMED:
        # 'Triển lãm quốc tế Đổi mới sáng tạo Việt Nam 2023 (VIIE2023)' -> 'Triển lãm VIIE2023'
        return f"{head} {tail[-2].text}"
    if acronym_paren:
        tail = tail[:-3]
    parts: list[str] = []
    prev_end = None
    for t in tail:
        if prev_end is not None and t.start > prev_end:
            parts.append(" ")
        parts.append(t.text)
        prev_end = t.end
    phrase = "".join(parts)
    if head in ("Diễn đàn", "Triển lãm") and len(words) >= 2 and re.fullmatch(r"(19|20)\d\d", words[-1].text):
        phrase = phrase[: phrase.rfind(words[-1].text)].rstrip(" -–")
    return _clean_spaces(f"{head} {phrase}")


def _clean_spaces(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


# ----------------------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Mention:
    """One entity occurrence: character span in the text and its canonical name."""

    kind: str
    canonical: str
    start: int
    end: int
    surface: str


def find_mentions(text: str, question: bool = False, gazetteer: Gazetteer | None = None) -> list[Mention]:
    """Every entity mention in `text`, in text order (kinds may overlap: a place inside an org name)."""
    text = nfc(text or "")
    gz = gazetteer or default_gazetteer()
    toks = _tokens(text)
    out: list[Mention] = []
    blocked: set[int] = set()
    for i, j, entry in gz.find(text, toks, question):
        a, b = toks[i].start, toks[j - 1].end
        out.append(Mention(entry.kind, entry.canonical, a, b, text[a:b]))
        if entry.kind in ("places_vn", "places_jp", "organizations"):
            blocked.update(range(i, j))
    for a, _b, c, name in _find_people(toks, blocked, question):
        out.append(Mention("people", name, toks[a].start, toks[c - 1].end, text[toks[a].start : toks[c - 1].end]))
    org_spans = [(m.start, m.end) for m in out if m.kind == "organizations"]
    for a, b, canonical in _find_programmes(text, question, org_spans):
        out.append(Mention("programmes", canonical, a, b, text[a:b]))
    out.sort(key=lambda m: (m.start, -m.end))
    return out


@lru_cache(maxsize=8192)
def mentions_of(text: str) -> tuple[Mention, ...]:
    """`find_mentions(text)` with the default gazetteer, remembered: the answerer and the connection finder
    look at the same retrieved sentences again and again while they score one question."""
    return tuple(find_mentions(text))


def _entities_of(mentions: Iterable[Mention]) -> Entities:
    values: dict[str, list[str]] = {k: [] for k in KINDS}
    for m in mentions:
        values[m.kind].append(m.canonical)
    return Entities(**{k: tuple(dict.fromkeys(v)) for k, v in values.items()})


def extract_entities(text: str) -> Entities:
    """Entities of a document passage (place names must be capitalised, acronyms in capitals)."""
    return _entities_of(find_mentions(text, question=False))


def detect_question_entities(question: str) -> Entities:
    """Entities of a question in Vietnamese (with or without tones) or English, in any letter case."""
    return _entities_of(find_mentions(question, question=True))


# ----------------------------------------------------------------------------------------- ranking

KIND_WEIGHTS = {
    "organizations": 1.0,
    "programmes": 1.0,
    "people": 0.9,
    "places_vn": 0.9,
    "places_jp": 0.8,
    "sectors": 0.7,
}


class EntityIndex:
    """Inverted index (kind, folded name) -> row positions over a chunk -> Entities map.

    Rows follow `ids` (the index's row order when given, else the mapping's order), so a query scores
    with a few numpy adds over its postings and a caller's row mask (filters) applies directly.
    """

    def __init__(self, chunk_entities: Mapping[str, Entities], ids: Sequence[str] | None = None) -> None:
        self.source = chunk_entities
        self.size = len(chunk_entities)
        self.ids_source = ids
        self.ids = list(ids) if ids is not None else list(chunk_entities)
        position = {cid: i for i, cid in enumerate(self.ids)}
        postings: dict[tuple[str, str], list[int]] = defaultdict(list)
        for cid, ents in chunk_entities.items():
            row = position.get(cid)
            if row is None:
                continue
            for key in ents.match_keys():
                postings[key].append(row)
        self.postings = {key: np.asarray(rows, dtype=np.int64) for key, rows in postings.items()}

    def rank(self, question_entities: Entities, limit: int | None = None, mask: np.ndarray | None = None) -> list[str]:
        """Ids sharing entities with the question, best first (ties: row order); at most `limit`,
        only rows where `mask` is true."""
        n = max(self.size, 1)
        scores = np.zeros(len(self.ids), dtype=np.float64)
        for key in question_entities.match_keys():
            rows = self.postings.get(key)
            if rows is None or len(rows) == 0:
                continue
            scores[rows] += KIND_WEIGHTS[key[0]] * math.log(1 + n / len(rows))
        if mask is not None:
            scores[~mask] = 0.0
        candidates = np.flatnonzero(scores > 0)
        if limit is not None and len(candidates) > limit:
            # Keep every row tied with the limit-th score, so the stable order below decides ties.
            threshold = np.partition(scores[candidates], len(candidates) - limit)[len(candidates) - limit]
            candidates = candidates[scores[candidates] >= threshold]
        order = candidates[np.lexsort((candidates, -scores[candidates]))]
        if limit is not None:
            order = order[:limit]
        return [self.ids[int(r)] for r in order]


_INDEX_CACHE: list[EntityIndex] = []


def _entity_index(chunk_entities: Mapping[str, Entities], ids: Sequence[str] | None) -> EntityIndex:
    """The EntityIndex of this very mapping and row order (rebuilt when either changes)."""
    if _INDEX_CACHE:
        cached = _INDEX_CACHE[0]
        if cached.source is chunk_entities and cached.size == len(chunk_entities) and cached.ids_source is ids:
            return cached
    idx = EntityIndex(chunk_entities, ids)
    _INDEX_CACHE[:] = [idx]
    return idx


def entity_ranking(
    question_entities: Entities,
    chunks: Mapping[str, Chunk],
    chunk_entities: Mapping[str, Entities],
    *,
    limit: int | None = None,
    ids: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
) -> list[str]:
    """Chunk ids (among `chunks`) that share entities with the question, best first: a run for fusion.

    Score = sum over shared entities of kind weight x idf (rarer entities count more); ties keep the
    row order. Chunks sharing nothing are left out, so the run only ever adds evidence. Old and new
    province names match alike. `ids` gives the row order `mask` (a filter) refers to; `limit` bounds
    the run. Uses an inverted index cached for the `chunk_entities` object, so a query costs the
    postings of its entities, not a pass over the corpus.
    """
    if question_entities.is_empty():
        return []
    index = _entity_index(chunk_entities, ids)
    ranked = index.rank(question_entities, limit, mask)
    kept = [cid for cid in ranked if cid in chunks]
    if limit is None or len(kept) == len(ranked):
        return kept
    # `chunks` is a subset of the indexed chunks (connect.py's pool): rank everything, then cut.
    return [cid for cid in index.rank(question_entities, None, mask) if cid in chunks][:limit]


def extract_all(chunks: Mapping[str, Chunk]) -> dict[str, Entities]:
    """Entities of every chunk (title excluded: it would credit every chunk with the headline's names)."""
    return {cid: extract_entities(c.text) for cid, c in chunks.items()}


_ENTITY_CACHE: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Entities]]] = weakref.WeakKeyDictionary()


def chunk_entities_of(index: Any) -> dict[str, Entities]:
    """Entities of every chunk of an Index (anything with a `.chunks` dict).

    Uses `index.entities` when ingest stored them for every chunk; otherwise extracts them once per
    chunk store and caches the result on the index (recomputed when a sync replaces `index.chunks`).
    """
    stored = getattr(index, "entities", None)
    # Ingest stores entities for exactly the chunk store's ids, so equal sizes mean full coverage
    # (an all() over 100k ids cost ~8 ms per query).
    if isinstance(stored, Mapping) and stored and len(stored) == len(index.chunks) and next(iter(index.chunks)) in stored:
        return stored if isinstance(stored, dict) else dict(stored)
    cached = _ENTITY_CACHE.get(index)
    if cached is not None and cached[0] is index.chunks:
        return cached[1]
    ents = extract_all(index.chunks)
    _ENTITY_CACHE[index] = (index.chunks, ents)
    return ents


def corpus_overview(chunk_entities: Mapping[str, Entities], chunks: Mapping[str, Chunk], top_cooccurring: int = 3) -> list[dict]:
    """One row per entity: kind, number of chunks and documents, first/last date, co-occurring entities.

    Row keys: entity, kind, chunks, documents, doc_ids, first_date, last_date, co_occurring (a list of
    {entity, kind, chunks} for the entities sharing the most chunks with it). Rows are sorted by chunk
    count, then documents, kind and name. Old province names count under the merged province.
    """
    chunk_sets: dict[tuple[str, str], set[str]] = defaultdict(set)
    per_chunk: dict[str, set[tuple[str, str]]] = {}
    for cid, ents in chunk_entities.items():
        if cid not in chunks:
            continue
        items = {(k, n) for k, n in ents.items() if k != "places_vn"} | {("places_vn", p) for p in ents.provinces()}
        per_chunk[cid] = items
        for item in items:
            chunk_sets[item].add(cid)
    rows = []
    for (kind, name), cids in chunk_sets.items():
        docs = sorted({chunks[c].doc_id for c in cids})
        dates = sorted(chunks[c].date for c in cids if chunks[c].date)
        co: Counter[tuple[str, str]] = Counter()
        for c in cids:
            co.update(x for x in per_chunk[c] if x != (kind, name))
        top = sorted(co.items(), key=lambda kv: (-kv[1], kv[0][1]))[:top_cooccurring]
        rows.append(
            {
                "entity": name,
                "kind": kind,
                "chunks": len(cids),
                "documents": len(docs),
                "doc_ids": docs,
                "first_date": dates[0] if dates else "",
                "last_date": dates[-1] if dates else "",
                "co_occurring": [{"entity": n, "kind": k, "chunks": c} for (k, n), c in top],
            }
        )
    rows.sort(key=lambda r: (-r["chunks"], -r["documents"], r["kind"], r["entity"]))
    return rows
