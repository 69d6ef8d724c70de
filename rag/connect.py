"""Connection finder: "our province's companies want to work with Japan in sector X — where do we start?"

The answer is built only from sentences of retrieved chunks: each listed organisation, programme,
Japanese locality or sector is shown with the sentence that mentions it and that sentence's source
number; next steps are sentences in which the documents themselves recommend something. Nothing is
listed that no retrieved sentence mentions. When the asked province appears in no chunk of the index
(old and new province names resolve alike), a note says so and the national contact points follow.

Retrieval = weighted RRF of three runs: hybrid retrieval of the question (plus the province and sector
terms), the entity-overlap run (`rag.entities.entity_ranking`), and a small prior run of chunks in
which contact-point organisations are tied to Japan-related cooperation.

Shortcut taken: sentence-level extraction and fixed cue lists, no generation; with an LLM configured
the caller may reword the result, but this extractive version is the reference.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.answer import REFUSAL, coverage, key_terms
from rag.entities import (
    KINDS,
    OLD_NEW_SEP,
    Entities,
    Gazetteer,
    Mention,
    _fold,
    chunk_entities_of,
    default_gazetteer,
    detect_question_entities,
    entity_ranking,
    find_mentions,
    mentions_of,
)
from rag.errors import BadInput
from rag.fusion import ranks_of, weighted_rrf
from rag.retrieve import Filters
from rag.text import answer_language, detect_language, nfc, split_sentences, strip_diacritics
from rag.types import Chunk, Citation, Hit

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------- query detection

_STRONG = [
    r"\blien he\b",
    r"\bdau moi\b",
    r"\btim (kiem )?(doi tac|nha dau tu|khach hang)\b",
    r"\b(gap|gap go|ket noi voi|gioi thieu) (cac )?doi tac\b",
    r"\bbat dau (tu|o) dau\b",
    r"\b(nen )?bat dau (nhu the nao|the nao|ra sao|bang cach nao)\b",
    r"\b(ai|co quan nao|to chuc nao|don vi nao|noi nao|ben nao) (co the |se |nen )?"
    r"(giup|ho tro|ket noi|gioi thieu|tu van|lam cau noi)\b",
    r"\bcua ngo\b",
    r"\bket noi doanh nghiep\b",
    r"\bxuc tien (hop tac|dau tu|thuong mai)\b",
    r"\bwho (can|could|should|will|would) (i|we|help|assist|support|connect|introduce|talk)\b",
    r"\bwho (do|should) (i|we) (contact|call|ask|approach|talk to)\b",
    r"\bwho to (contact|call|ask|approach|talk to)\b",
    r"\bcontact (point|person|people|details|for|with)\b",
    r"\b(points?|persons?) of contact\b",
    r"\b(get|getting) in touch\b",
    r"\breach out\b",
    r"\bwhere (do|should|can|could|would) (i|we|our \w+|they) (start|begin)\b",
    r"\bwhere to (start|begin)\b",
    r"\bhow (do|can|should|could) (i|we|our \w+) (start|begin|find|meet|reach|approach|connect)\b",
    r"\b(find|meet|look for|looking for|search for|searching for|identify) (a |an |new |potential |business |"
    r"japanese |suitable |the right )*(partners?|investors?|collaborators?|buyers?)\b",
    r"\bmatchmaking\b",
    r"\bintroduc\w* (us|me|our)\b",
]
_WEAK = [
    r"\bket noi\b", r"\bhop tac\b", r"\bdoi tac\b", r"\bho tro\b", r"\bgiup\b",
    r"\bpartner", r"\bconnect", r"\bcooperat", r"\bcollaborat", r"\bhelp\b", r"\bsupport\b", r"\bwork with\b",
]
_ACTOR = [
    r"\bdoanh nghiep\b", r"\bcong ty\b", r"\btinh\b", r"\bdia phuong\b", r"\bchung toi\b", r"\bchung minh\b",
    r"\btoi\b", r"\bmuon\b", r"\bcan\b", r"\blam (sao|the nao)\b", r"\bbang cach nao\b", r"\bstartup\b",
    r"\bour\b", r"\bmy\b", r"\bwe\b", r"\bi\b", r"\bcompan(y|ies)\b", r"\bbusiness(es)?\b", r"\bfirms?\b",
    r"\bsmes?\b", r"\bprovinces?\b", r"\bwant\b", r"\bwould like\b", r"\bhow (can|do|should|could)\b",
]
_STRONG_RE = re.compile("|".join(_STRONG))
_WEAK_RE = re.compile("|".join(_WEAK))
_ACTOR_RE = re.compile("|".join(_ACTOR))


def _fold_question(text: str) -> str:
    """Lower case, no tones; acronyms become 'acr' so that 'EMB-AI hỗ trợ' is not 'ai (who) hỗ trợ'."""
    words = re.findall(r"\w+", strip_diacritics(nfc(text)).replace("'s", ""))
    if sum(1 for w in words if w.isupper()) < len(words):  # unless the whole question is in capitals
        words = ["acr" if len(w) > 1 and w.isupper() else w for w in words]
    return " ".join(w.lower() for w in words)


def is_connection_query(question: str) -> bool:
    """Is this a "whom do we contact / where do we start with Japan" question (vi, en, without tones)?

    A strong cue ("liên hệ", "đầu mối", "tìm đối tác", "bắt đầu từ đâu", "who can help", "where do I
    start", "find partners") decides alone; a weak one ("kết nối", "hợp tác", "partner") needs an
    actor or intent ("doanh nghiệp", "tỉnh", "muốn", "our company", "how can we").
    """
    q = _fold_question(question or "")
    if not q:
        return False
    if _STRONG_RE.search(q):
        return True
    return bool(_WEAK_RE.search(q) and _ACTOR_RE.search(q))


# A question typed into the chat goes to the connection finder only when it is a local business (or
# province) looking for a way in to Japan: an actor, a Japan context and a "where do we start / whom do we
# contact / find partners" intent. Fact questions that merely mention cooperation stay with the Q&A path.
_CHAT_ACTOR = re.compile(
    r"\b(doanh nghiep|cong ty|startup|khoi nghiep|hop tac xa|co so san xuat|tinh|dia phuong|chung toi|chung minh|"
    r"toi|minh|our|we|my|i|us|compan(y|ies)|business(es)?|firms?|smes?|startups?|provinces?|provincial|cooperatives?)\b"
)
_CHAT_JAPAN = re.compile(r"\b(nhat|nhat ban|japan|japanese)\b")
_CHAT_INTENT = re.compile(
    r"\bbat dau (tu|o) dau\b|\b(nen )?bat dau (nhu the nao|the nao|ra sao|bang cach nao|tu dau)\b|"
    r"\blien he\b|\bdau moi\b|\btim (kiem )?(doi tac|nha dau tu|khach hang|ban hang)\b|\bhoi ai\b|"
    r"\btim den (dau|ai)\b|\bnho (ai|co quan nao|to chuc nao|don vi nao)\b|"
    r"\b(co quan|to chuc|don vi|kenh|dau moi|mang luoi|hiep hoi|van phong) nao\b|"
    r"\b(ai|co quan nao|to chuc nao|don vi nao|noi nao|ben nao) (co the |se |nen )?(giup|ho tro|ket noi|gioi thieu|tu van)\b|"
    r"\bwhere (do|should|can|could|would) (i|we|our \w+|they|it) (start|begin)\b|\bwhere to (start|begin)\b|"
    r"\bwho (can|could|should|will|would|do|to) (i |we )?(help|assist|support|connect|introduce|contact|call|ask|approach|talk)\b|"
    r"\bcontact (point|person|people|details)\b|\b(points?|persons?) of contact\b|\b(get|getting) in touch\b|"
    r"\breach out\b|\b(find|meet|look for|looking for|search for|identify) (a |an |new |potential |business |"
    r"japanese |suitable |the right )*(partners?|investors?|collaborators?|buyers?)\b|"
    r"\bwhich (offices?|organi[sz]ations?|agenc(y|ies)|networks?|associations?|bod(y|ies)|contacts?)\b.*\b(help|support|connect|approach|contact)"
)


def is_chat_connection_query(question: str) -> bool:
    """Should a question typed into the chat get the connection finder's answer?

    Stricter than `is_connection_query` (the Connections tab's test): it needs a local actor ("công ty
    chúng tôi", "doanh nghiệp ở tỉnh…", "our company", "a provincial SME"), a Japan context (Nhật,
    Japan, or a Japanese place) and an intent to find a way in ("bắt đầu từ đâu", "liên hệ ai", "tìm
    đối tác", "where do we start", "who can help", "find partners"). Works with or without tones.

    >>> is_chat_connection_query("Công ty chúng tôi ở tỉnh Nghệ An muốn tìm đối tác Nhật — bắt đầu từ đâu?")
    True
    >>> is_chat_connection_query("Việt Nam đề nghị WIPO hỗ trợ gì cho doanh nghiệp nhỏ?")
    False
    """
    q = _fold_question(question or "")
    if not q or not is_connection_query(question):
        return False
    if not (_CHAT_ACTOR.search(q) and _CHAT_INTENT.search(q)):
        return False
    return bool(_CHAT_JAPAN.search(q) or detect_question_entities(question).places_jp)


_STOP_AFTER = (r"muon|va|thi|o|tai|can|dang|voi|de|co|nen|lam|tu|cua|hien|chung|cty|cong|tim|ket|hop|"
               r"want|wants|wanting|and|looking|seeking|to|with|in|at|is|are|we|our|that|who|how|where|would|need")
_SECTOR_VI = re.compile(rf"\b(?:nganh(?: nghe)?|linh vuc|mang)\s+((?:(?!(?:{_STOP_AFTER})\b)[a-z0-9&]+\s*){{1,4}})")
_SECTOR_EN = re.compile(
    r"\b(?:in|from|for)\s+(?:the\s+)?((?:[a-z0-9&-]+\s+){0,2}?[a-z0-9&-]+)\s+(?:sector|industry|field|business)\b|"
    r"\b((?:[a-z0-9&-]+\s+)?[a-z0-9&-]+)\s+(?:sector|industry)\b|"
    r"\b(?:our|my|a|an)\s+(?:(?:small|medium|large|vietnamese|local|provincial|new|young|family|private|"
    r"sized|mid-sized|small-sized)\s+)*([a-z0-9&-]+)\s+(?:company|firm|business|enterprise|startup|exporter|"
    r"producer|manufacturer|cooperative)\b|"
    r"\b(?:sector|industry)\s*[:,]?\s+((?:(?!(?:" + _STOP_AFTER + r")\b)[a-z0-9&-]+\s*){1,3})"
)
_GENERIC_SECTOR_WORDS = frozenset(
    ["sme", "smes", "tech", "technology", "small", "medium", "large", "vietnamese", "japanese", "local", "provincial",
     "new", "young", "family", "sized", "our", "the", "a", "an", "this", "that", "same", "private", "public", "business", "local", "its", "their", "your",
     "my", "which", "what", "any", "nao", "gi", "do", "nay", "cua", "minh", "toi", "chung"]
)
_PROVINCE_VI = re.compile(r"\b(?:tinh|thanh pho|tp)\.?\s+((?:(?!(?:" + _STOP_AFTER + r"|nganh|linh vuc)\b)[a-z0-9]+\s*){1,4})")
_PROVINCE_EN = re.compile(r"\b(?:in|from)\s+((?:[A-Z][\w'-]*\s+){0,3}[A-Z][\w'-]*)\s+(?:province|city)\b|"
                          r"\bprovince of\s+((?:[A-Z][\w'-]*\s*){1,4})")


def _surface(original: str, folded: str, span: tuple[int, int]) -> str:
    """The text of `original` under a span of its tone-stripped twin (same length when NFC)."""
    a, b = span
    return original[a:b].strip(" ,.;:") if len(original) == len(folded) else folded[a:b].strip(" ,.;:")


def sector_phrase(question: str) -> str:
    """The sector as the user wrote it ('thủy sản' in "…, ngành thủy sản, muốn…", 'seafood' in "our
    seafood company… in the seafood sector"), or '' when the question names none.

    >>> sector_phrase("Công ty chúng tôi ở tỉnh Nghệ An, ngành thủy sản, muốn tìm đối tác Nhật")
    'thủy sản'
    """
    original = nfc(question or "")
    folded = strip_diacritics(original).lower()
    for pattern in (_SECTOR_VI, _SECTOR_EN):
        for m in pattern.finditer(folded):
            group = next(i for i in range(1, (m.lastindex or 1) + 1) if m.group(i))
            words = m.group(group).split()
            while words and words[0] in _GENERIC_SECTOR_WORDS:
                words.pop(0)
            if not words or all(w in _GENERIC_SECTOR_WORDS for w in words):
                continue
            start = m.start(group) + m.group(group).find(words[0])
            end = start + len(" ".join(words))
            return _surface(original, folded, (start, end))
    return ""


def province_phrase(question: str) -> str:
    """The province or city as the user wrote it ('tỉnh Nghệ An' -> 'Nghệ An', 'in Bac Ninh province'
    -> 'Bac Ninh'), or ''."""
    original = nfc(question or "")
    folded = strip_diacritics(original).lower()
    m = _PROVINCE_VI.search(folded)
    if m:
        return _surface(original, folded, m.span(1))
    m = _PROVINCE_EN.search(strip_diacritics(original))
    if m:
        group = 1 if m.group(1) else 2
        return _surface(original, folded, m.span(group))
    return ""


# ------------------------------------------------------------------------------------- the answer


@dataclass(frozen=True)
class ConnectionItem:
    """One line of the answer: what is listed, and the sentence (with its source number) that says so."""

    text: str  # display text: an entity name in the answer language, or the quoted sentence (next steps)
    citations: tuple[int, ...]
    quote: str  # exact substring of the cited chunk's text
    kind: str = ""  # entity kind, or 'next_step'
    entity: str = ""  # canonical entity name/id ('' for next steps)
    cut_start: bool = False  # the quote starts inside a longer sentence
    cut_end: bool = False  # the quote stops before its sentence ends


@dataclass(frozen=True)
class ConnectionAnswer:
    question: str
    language: str
    who: tuple[ConnectionItem, ...] = ()
    what: tuple[ConnectionItem, ...] = ()
    where: tuple[ConnectionItem, ...] = ()
    sectors: tuple[ConnectionItem, ...] = ()
    next_steps: tuple[ConnectionItem, ...] = ()
    province: str = ""  # the asked province, post-merger name ('' if none)
    province_asked: str = ""  # as typed / detected ('Vĩnh Phúc')
    province_note: str = ""
    sector: str = ""  # sector id ('' if none)
    sector_asked: str = ""  # the sector as typed when it is not a known sector ('thủy sản', 'seafood')
    sector_note: str = ""  # what the documents say (nothing) about the asked sector
    local: tuple[ConnectionItem, ...] = ()  # items whose quote names the asked province
    sources: tuple[Citation, ...] = ()
    hits: tuple[Hit, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    backend: str = "extractive"

    @property
    def sections(self) -> dict[str, tuple[ConnectionItem, ...]]:
        return {"local": self.local, "who": self.who, "what": self.what, "where": self.where,
                "sectors": self.sectors, "next_steps": self.next_steps}

    @property
    def empty(self) -> bool:
        return not any(self.sections.values())


HEADERS = {
    "vi": {
        "local": "Tại {province}",
        "who": "Cơ quan / đầu mối",
        "what": "Chương trình / sự kiện",
        "where": "Địa phương Nhật Bản",
        "sectors": "Lĩnh vực",
        "next_steps": "Bước tiếp theo theo tài liệu",
        "sources": "Nguồn",
    },
    "en": {
        "local": "In {province}",
        "who": "Organisations / contact points",
        "what": "Programmes / events",
        "where": "Japanese localities",
        "sectors": "Sectors",
        "next_steps": "Next steps suggested by the documents",
        "sources": "Sources",
    },
}
QUOTE_NOTE = {"vi": "", "en": "Passages are quoted in Vietnamese, as written in the documents."}
PROVINCE_NOTE = {
    "vi": "Tài liệu không đề cập riêng đến {unit} {name}; dưới đây là các đầu mối áp dụng toàn quốc.",
    "en": "The documents do not mention {name} {unit} specifically; below are contact points that apply nationwide.",
}
SECTOR_ABSENT_NOTE = {
    "vi": "Tài liệu không nói gì về {sector}; dưới đây là các đầu mối chung cho mọi lĩnh vực.",
    "en": "The documents say nothing about {sector}; below are contact points that apply to all sectors.",
}
SECTOR_UNTRACKED_NOTE = {
    "vi": "“{sector}” không thuộc danh mục lĩnh vực của công cụ; các mục dưới đây được tìm theo từ ngữ của câu hỏi.",
    "en": "“{sector}” is not one of the sectors the finder tracks; the items below are matched on the question's words.",
}
MERGED_NOTE = {
    "vi": "{old} nay thuộc {unit} {new} (sáp nhập từ 1/7/2025). ",
    "en": "{old} is now part of {new} {unit} (merged on 1 July 2025). ",
}
_CITIES = frozenset({"Hà Nội", "Huế", "Hải Phòng", "Đà Nẵng", "TP Hồ Chí Minh", "Cần Thơ"})

# Organisation kinds that are contact points for businesses, and kinds never listed as such.
_CONTACT_KINDS = {
    "embassy": 1.2, "consulate": 1.2, "representative_office": 1.2, "network": 1.0, "association": 0.9,
    "innovation_center": 1.0, "chamber": 1.0, "agency": 0.6, "fund": 0.6, "high_tech_park": 0.6,
    "ministry": 0.4, "university": 0.4, "research_institute": 0.4, "council": 0.2, "bank": 0.3,
    "international_org": 0.2,
}
_EVENT_ORG_KINDS = frozenset({"forum"})
_NOT_CONTACTS = frozenset({"government", "legislature", "party"})
_DIPLOMAT_TITLES = re.compile(r"^(Đại sứ|Tổng Lãnh sự|Ambassador|Consul General)\b")

_JAPAN = re.compile(r"\b(Nhật Bản|Nhật|Japan|Japanese)\b")
_VIETNAM = re.compile(r"\b(Việt Nam|Viet Nam|Vietnam|Vietnamese|VN)\b")
_CONNECT_CUES = re.compile(
    r"\b(kết nối|hỗ trợ|thúc đẩy|hợp tác|đối tác|cầu nối|doanh nghiệp|làm việc với|gắn kết|xúc tiến|"
    r"connect|support|cooperat\w*|partner\w*|business\w*|compan\w*)\b",
    re.IGNORECASE,
)
_ADVICE_CUES = re.compile(
    r"\b(đề nghị|mong muốn|cần|nên|đẩy mạnh|tăng cường|khuyến khích|tạo điều kiện|phát huy|thiết lập|"
    r"kết nối|hỗ trợ|thúc đẩy|should|recommend\w*|encourag\w*|call\w* on|urg\w*)\b",
    re.IGNORECASE,
)
_BUSINESS = re.compile(r"\b(doanh nghiệp|startup|khởi nghiệp|địa phương|business\w*|compan\w*|firms?)\b", re.IGNORECASE)
_MAX_QUOTE_WORDS = 45
# Short lists: at a thousand documents the seventh contact point is more often noise than help.
_LIMITS = {"local": 6, "who": 5, "what": 4, "where": 3, "sectors": 4, "next_steps": 4}
# Sector aliases too generic to show a sector tag on their own: 'cơ sở dữ liệu' (a database) is not big
# data, 'nhân lực chất lượng cao' (high-quality staff) is not standards, metrology and quality.
_WEAK_SECTOR_SURFACES = {
    "big_data": {"data", "du lieu"},
    "standards_metrology_quality": {"quality", "chat luong", "standards", "tieu chuan"},
    "manufacturing": {"san xuat", "manufacturing"},
    "climate_environment": {"environment", "moi truong"},
    "biotech": {"sinh hoc"},
    "healthcare": {"health", "medicine", "medical"},
    "space": {"space", "vu tru"},
    "education_training": {"training", "education"},
}
RUN_WEIGHTS = {"hybrid": 1.0, "entities": 0.6, "contacts": 0.35}


@dataclass(frozen=True)
class _Sentence:
    rank: int  # hit rank
    hit: Hit
    start: int
    end: int
    text: str
    mentions: tuple[Mention, ...]  # offsets relative to the chunk text


def _sentences(hits: list[Hit]) -> list[_Sentence]:
    out = []
    for rank, hit in enumerate(hits):
        text = hit.chunk.text
        mentions = mentions_of(text)
        for s, e in split_sentences(text):
            inside = tuple(m for m in mentions if s <= m.start < e)
            out.append(_Sentence(rank, hit, s, e, text[s:e], inside))
    return out


# ------------------------------------------------------------------------------------- building


def _resolve_province(name: str | None) -> tuple[str, str]:
    """(post-merger name, name as asked) or ('', '')."""
    if not name or not name.strip():
        return "", ""
    from rag.gazetteer import province_lookup

    match = province_lookup(name)
    if match is None:
        return "", name.strip()
    return match.new_name, (match.old_name or match.new_name)


def _resolve_sector(name: str | None) -> str:
    """Sector id from an id, a Vietnamese or English name or alias; '' when unknown."""
    if not name or not name.strip():
        return ""
    from rag.gazetteer import load_sectors, name_key

    key = name_key(name)
    for s in load_sectors():
        if key in {name_key(s.id.replace("_", " ")), name_key(s.id), name_key(s.name_en), name_key(s.name_vi),
                   *(name_key(a) for a in s.aliases)}:
            return s.id
    found = find_mentions(name, question=True)
    return next((m.canonical for m in found if m.kind == "sectors"), "")


def _sector_terms(sector_id: str, lang: str) -> str:
    from rag.gazetteer import load_sectors

    for s in load_sectors():
        if s.id == sector_id:
            return s.name_en if lang == "en" else s.name_vi
    return ""


def _default_question(province: str, sector_id: str, lang: str) -> str:
    sector = _sector_terms(sector_id, lang) if sector_id else ""
    if lang == "en":
        where = f" in {strip_diacritics(province)}" if province else ""
        what = f" in {sector.lower()}" if sector else ""
        return f"Who can help companies{where} find partners in Japan{what}, and where do we start?"
    where = f" ở {province}" if province else ""
    what = f" về {sector.lower()}" if sector else ""
    return f"Doanh nghiệp{where} muốn hợp tác{what} với Nhật Bản thì liên hệ ai, bắt đầu từ đâu?"


def _contacts_run(chunk_entities: Mapping[str, Entities], chunks: Mapping[str, Chunk], gz: Gazetteer) -> list[str]:
    """Chunks tying contact-point organisations to Japan, best first (a weak prior run)."""
    scored = []
    for pos, (cid, ents) in enumerate(chunk_entities.items()):
        chunk = chunks.get(cid)
        if chunk is None or not ents.organizations:
            continue
        weight = sum(_CONTACT_KINDS.get(_org_kind(gz, o), 0.0) for o in ents.organizations)
        if weight <= 0:
            continue
        japan = 1.0 if (_JAPAN.search(chunk.text) or ents.places_jp) else 0.3
        cues = min(len(_CONNECT_CUES.findall(chunk.text)), 5) / 5
        scored.append((-(weight * japan * (0.5 + cues)), pos, cid))
    scored.sort()
    return [cid for _, _, cid in scored]


def _org_kind(gz: Gazetteer, org_id: str) -> str:
    info = gz.info.get(("organizations", org_id))
    return info.get("type") if info else ""


def _org_country(gz: Gazetteer, org_id: str) -> str:
    info = gz.info.get(("organizations", org_id))
    return info.get("country") if info else ""


def _window(sentence: _Sentence, mention: Mention | None) -> tuple[str, bool, bool]:
    """(quote, cut at start, cut at end): the sentence, or, when it is long, the clause (between ';')
    holding the mention, or a window of about _MAX_QUOTE_WORDS words around it. Always an exact
    substring of the chunk text."""
    text = sentence.text
    if len(text.split()) <= _MAX_QUOTE_WORDS:
        return text, False, False
    centre = (mention.start - sentence.start) if mention is not None else 0
    lo, hi = 0, len(text)
    for m in re.finditer(r";", text):  # the clause around the mention
        if m.end() <= centre:
            lo = m.end()
        elif m.start() >= centre + (mention.end - mention.start if mention else 0):
            hi = m.start()
            break
    spans = [(m.start() + lo, m.end() + lo) for m in re.finditer(r"\S+", text[lo:hi])]
    if len(spans) > _MAX_QUOTE_WORDS:
        m_end = centre + (mention.end - mention.start if mention else 0)
        idx = next((i for i, (_a, e) in enumerate(spans) if e > centre), 0)
        last = next((i for i, (a, _e) in enumerate(spans) if a >= m_end), len(spans)) - 1
        # Keep the clause's start when the mention is early enough; else centre the window on it.
        first = 0 if last < _MAX_QUOTE_WORDS - 10 else idx - _MAX_QUOTE_WORDS // 3
        first = max(0, min(first, len(spans) - _MAX_QUOTE_WORDS, idx))
        stop = max(first + _MAX_QUOTE_WORDS, last + 1)  # the whole mention is always quoted
        spans = spans[first:stop]
    start, end = spans[0][0], spans[-1][1]
    quote = text[start:end].rstrip(" ,;:")
    end = start + len(quote)
    return quote, start > 0, end < len(text.rstrip())


@dataclass
class _Candidate:
    section: str
    kind: str
    entity: str
    text: str
    sentence: _Sentence
    mention: Mention | None
    score: float


def build_connection_answer(
    pipeline: Any,
    question: str | None = None,
    province: str | None = None,
    sector: str | None = None,
    lang: str | None = None,
    k: int = 10,
    filters: Filters | None = None,
) -> ConnectionAnswer:
    """The connection answer for a question and/or a province and sector (all optional, not all empty).

    `pipeline` is a rag.chain.Pipeline (its retriever, index and lexicon are used). Raises BadInput
    when there is nothing to search for.
    """
    t0 = time.perf_counter()
    question = nfc(question or "").strip()
    if not (question or (province or "").strip() or (sector or "").strip()):
        raise BadInput("Give a question, a province or a sector.", "Hãy nhập câu hỏi, tỉnh/thành hoặc lĩnh vực.")
    lang = lang or (answer_language(detect_language(question)) if question else "vi")
    lang = "en" if lang == "en" else "vi"
    gz = default_gazetteer()
    index = pipeline.index

    q_ents = detect_question_entities(question) if question else Entities()
    province_new, province_asked = _resolve_province(province)
    if not province_new and not province_asked and q_ents.places_vn:
        first = q_ents.places_vn[0]
        province_new = first.split(OLD_NEW_SEP)[-1]
        province_asked = first.split(OLD_NEW_SEP)[0]
    if not province_new and not province_asked and question:
        # A province the gazetteer does not know ('tỉnh P') is named back in the note, not ignored.
        province_new, province_asked = _resolve_province(province_phrase(question))
    sector_asked = (sector or "").strip()
    sector_id = _resolve_sector(sector_asked)
    if not sector_asked and question:
        sector_asked = sector_phrase(question)
        sector_id = _resolve_sector(sector_asked) if sector_asked else (q_ents.sectors[0] if q_ents.sectors else "")
    if sector_id:
        sector_asked = ""
    if not question:
        question = _default_question(province_new or province_asked, sector_id, lang)
    wanted = q_ents.merge(Entities(
        places_vn=(province_new,) if province_new else (),
        sectors=(sector_id,) if sector_id else (),
    ))

    # ---- retrieval: question (+ province and sector terms), entity overlap, contact prior
    extra = []
    if province_new and province_new not in q_ents.provinces():
        extra.append(province_new if lang == "vi" else strip_diacritics(province_new))
    if sector_id and sector_id not in q_ents.sectors:
        extra.append(_sector_terms(sector_id, lang))
    query = " ".join([question, *extra]).strip()
    t = time.perf_counter()
    result = pipeline.retrieve(query, k=max(2 * k, 20), filters=filters)
    retrieve_ms = (time.perf_counter() - t) * 1000
    chunk_ents = chunk_entities_of(index)
    mask = filters.row_mask(index.columns) if filters is not None else None
    if mask is None:
        pool = index.chunks
    else:
        pool = {cid: index.chunks[cid] for cid in (index.accented.ids[int(i)] for i in np.flatnonzero(mask))}
    runs = {
        "hybrid": [h.chunk.chunk_id for h in result.hits],
        # Same row order and mask as retrieve's entity run, so both share one cached entity index.
        "entities": entity_ranking(
            wanted, index.chunks, chunk_ents, limit=max(2 * k, 20), ids=index.accented.ids, mask=mask
        ),
        "contacts": _contacts_run({c: chunk_ents[c] for c in pool if c in chunk_ents}, pool, gz)[: max(2 * k, 20)],
    }
    fused = weighted_rrf(runs, k=getattr(pipeline.settings, "rrf_k", 60), weights=RUN_WEIGHTS)[:k]
    hits = [Hit(chunk=index.chunks[cid], score=score, ranks=ranks_of(runs, cid)) for cid, score in fused
            if cid in index.chunks]

    # ---- province mentioned anywhere in the index?
    note = ""
    if province_new or province_asked:
        mentioned = province_new and any(province_new in e.provinces() for e in chunk_ents.values())
        if not mentioned:
            note = _province_note(province_new, province_asked, lang)

    sector_note = ""
    if sector_asked:
        sector_note = _sector_note(sector_asked, pipeline, lang)
    elif sector_id and not any(sector_id in e.sectors for e in chunk_ents.values()):
        sector_note = SECTOR_ABSENT_NOTE[lang].format(sector=_sector_terms(sector_id, lang).lower())

    # ---- sentence-level extraction
    terms = key_terms(query, pipeline.lexicon, index)
    sentences = _sentences(hits)
    n_chunks = max(len(chunk_ents), 1)
    df = Counter(s for e in chunk_ents.values() for s in set(e.sectors))
    cands: list[_Candidate] = []
    wanted_keys = wanted.match_keys()
    places_asked = {_fold(p) for p in q_ents.places_jp}
    for sent in sentences:
        feats = _features(sent, terms, province_new, sector_id, wanted_keys, gz)
        base = feats["base"]
        # An item nobody asked for is listed only from a sentence about Vietnam and Japan together: at
        # scale most sentences naming Tokyo or the EU are about something else (an earthquake, Cambodia).
        bilateral = feats["japan"] and feats["vietnam"]
        # ... or a sentence naming the asked province in an article about Japan (its own contacts).
        bilateral = bilateral or (feats["province"] and feats["japan_ctx"])
        for m in sent.mentions:
            asked = (m.kind, _fold_key(m)) in wanted_keys
            bonus = 2.0 if asked else 0.0
            if m.kind == "organizations":
                okind, country = _org_kind(gz, m.canonical), _org_country(gz, m.canonical)
                if okind in _NOT_CONTACTS:
                    continue
                if country not in ("VN", "JP") and not asked:
                    continue  # French, British or international bodies (APEC, the EU) are not contact points here
                if not asked and not (bilateral or (country == "JP" and feats["vietnam_ctx"])
                                      or (country == "VN" and (feats["japan"] or feats["province"]))):
                    continue
                section = "what" if okind in _EVENT_ORG_KINDS else "who"
                if section == "what" and not (asked or feats["connect"] or feats["business"]):
                    continue  # a forum named where a gift is handed over is not a way in for a business
                weight = _CONTACT_KINDS.get(okind, 0.3) if section == "who" else 0.8
                cands.append(_Candidate(section, m.kind, m.canonical, gz.display(m.kind, m.canonical, lang), sent, m,
                                        base + weight + bonus))
            elif m.kind == "people" and _DIPLOMAT_TITLES.match(m.surface):
                if feats["japan"]:
                    cands.append(_Candidate("who", m.kind, m.canonical, m.surface, sent, m, base + 0.2))
            elif m.kind == "programmes":
                if asked or ((bilateral or (feats["japan"] and feats["sector"])) and (feats["connect"] or feats["business"])):
                    cands.append(_Candidate("what", m.kind, m.canonical, m.canonical, sent, m, base + bonus))
            elif m.kind == "places_jp":
                # The asked locality only, when one is asked; otherwise localities where the documents
                # tie Vietnam to Japan with a cooperation word.
                if places_asked and _fold_key(m) not in places_asked:
                    continue
                if not asked and not (bilateral and feats["connect"]):
                    continue
                cands.append(_Candidate("where", m.kind, m.canonical, gz.display(m.kind, m.canonical, lang), sent, m,
                                        base + bonus))
            elif m.kind == "sectors":
                if not (asked or m.canonical == sector_id):
                    continue  # the asked sector only (or a note that it is absent); no sector asked, no list
                if _weak_sector_mention(m):
                    continue  # a generic word ('dữ liệu', 'chất lượng') does not show that the sentence is about the sector
                idf = math.log(1 + n_chunks / max(df.get(m.canonical, 1), 1))
                bonus = 5.0 if m.canonical == sector_id else bonus
                cands.append(_Candidate("sectors", m.kind, m.canonical, gz.display(m.kind, m.canonical, lang), sent, m,
                                        base * 0.3 + idf * 0.5 + bonus))
        if feats["advice"] and feats["japan"] and (feats["business"] or feats["connect"]) and len(sent.text.split()) >= 8:
            score = base + (1.0 if feats["business"] else 0.0) + (1.0 if feats["sector"] else 0.0)
            cands.append(_Candidate("next_steps", "next_step", "", "", sent, None, score))

    if places_asked:
        # A Japanese locality is asked: contact points, programmes and next steps from sentences naming it
        # come first and alone (the Osaka offices for a partner in Osaka, not every office in Japan).
        def names_asked_place(c: _Candidate) -> bool:
            return any(m.kind == "places_jp" and _fold_key(m) in places_asked for m in c.sentence.mentions)

        def own_place(c: _Candidate) -> bool | None:
            """Whether the item's own name places it in the asked locality (None: its name names no locality)."""
            named = {_fold_key(m) for m in mentions_of(gz.display(c.kind, c.entity, "vi")) if m.kind == "places_jp"}
            return bool(named & places_asked) if named else None

        def of_asked_place(c: _Candidate) -> bool:
            # 'Văn phòng đại diện KH&CN tại Tokyo' is not an Osaka contact even where a sentence names
            # 'Tokyo/Osaka'; a body without a place in its name belongs to the asked locality only through a
            # sentence about that locality alone.
            own = own_place(c)
            if own is not None:
                return own
            places = {_fold_key(m) for m in c.sentence.mentions if m.kind == "places_jp"}
            return bool(places) and places <= places_asked

        who = [c for c in cands if c.section == "who"]
        if any(own_place(c) for c in who):
            cands = [c for c in cands if c.section != "who" or of_asked_place(c)]
        for section in ("who", "what", "next_steps"):
            local = [c for c in cands if c.section == section and names_asked_place(c)]
            if local:
                cands = [c for c in cands if c.section != section or names_asked_place(c)]
    sections = _select(cands)
    if province_new and not note:
        # Items whose sentence names the asked province are listed under it; the rest are general.
        for section in ("who", "what", "where", "next_steps"):
            for c in list(sections[section]):
                if any(_province_of(m) == province_new for m in c.sentence.mentions):
                    sections[section].remove(c)
                    sections.setdefault("local", []).append(c)
        sections["local"] = sorted(sections.get("local", []), key=lambda c: -c.score)[: _LIMITS["local"]]
    answer = _number(question, lang, sections, hits, province_new, province_asked, note, sector_id)
    answer.update(sector_asked=sector_asked, sector_note=sector_note)
    timings = {"retrieve": round(retrieve_ms, 1), "total": round((time.perf_counter() - t0) * 1000, 1)}
    return ConnectionAnswer(**{**answer, "timings_ms": timings})


def _province_of(m: Mention) -> str:
    """The post-merger province a mention names ('' for other kinds)."""
    return m.canonical.split(OLD_NEW_SEP)[-1] if m.kind == "places_vn" else ""


def _weak_sector_mention(m: Mention) -> bool:
    return _fold(m.surface) in _WEAK_SECTOR_SURFACES.get(m.canonical, ())


def _in_window(first: _Candidate, other: _Candidate) -> bool:
    """Whether `other`'s mention falls inside the quote shown for `first` (same sentence)."""
    if other.mention is None:
        return False
    quote, _a, _b = _window(first.sentence, first.mention)
    start = first.sentence.hit.chunk.text.find(quote, first.sentence.start)
    return start >= 0 and start <= other.mention.start and other.mention.end <= start + len(quote)


def _phrase_in_index(phrase: str, index: Any) -> bool:
    """Whether the words of `phrase` occur together (tone- and case-insensitive) in some indexed chunk."""
    form = [w for w in re.findall(r"\w+", strip_diacritics(nfc(phrase)).lower()) if w]
    if not form:
        return False
    for chunk_id, _score in index.plain.search([*form, "_".join(form)], k=50):
        chunk = index.chunks.get(chunk_id)
        if chunk is None:
            continue
        hay = re.findall(r"\w+", strip_diacritics(chunk.text).lower())
        if any(hay[i : i + len(form)] == form for i in range(len(hay) - len(form) + 1)):
            return True
    return False


def _sector_note(asked: str, pipeline: Any, lang: str) -> str:
    """The note for a sector the gazetteer does not know: the documents say nothing about it, or (when its
    words do occur) that it is matched on words only. An English name is shown with its Vietnamese
    rendering from the lexicon ('seafood / thủy sản'), which is also what is looked for."""
    forms = [asked]
    lexicon = getattr(pipeline, "lexicon", None)
    if lexicon is not None and len(lexicon):
        exp = lexicon.expand(asked)
        if exp.matched and not exp.leftover:
            forms += [f for f in exp.vietnamese if f.lower() != asked.lower()]
    if len(forms) > 1 and _fold(forms[1]) == _fold(asked):
        shown = forms[1]  # typed without tones: show the word with them ('thuy san' -> 'thủy sản')
    else:
        shown = " / ".join(dict.fromkeys([asked, *forms[1:2]]))
    present = any(_phrase_in_index(f, pipeline.index) for f in forms)
    return (SECTOR_UNTRACKED_NOTE if present else SECTOR_ABSENT_NOTE)[lang].format(sector=shown)


def _fold_key(m: Mention) -> str:
    name = m.canonical.split(OLD_NEW_SEP)[-1] if m.kind == "places_vn" else m.canonical
    return _fold(name)


def _vietnamese_side(text: str, mentions: tuple[Mention, ...], gz: Gazetteer) -> bool:
    """Whether a text names Vietnam, a Vietnamese place or a Vietnamese body."""
    return bool(_VIETNAM.search(text)) or any(
        m.kind == "places_vn" or (m.kind == "organizations" and _org_country(gz, m.canonical) == "VN") for m in mentions)


def _features(sent: _Sentence, terms: list, province: str, sector_id: str, wanted_keys: set,
              gz: Gazetteer) -> dict[str, Any]:
    text = sent.text
    kinds = {m.kind for m in sent.mentions}
    japan = bool(_JAPAN.search(text)) or "places_jp" in kinds
    japan_ctx = bool(_JAPAN.search(sent.hit.chunk.title) or _JAPAN.search(sent.hit.chunk.text))
    vietnam = _vietnamese_side(text, sent.mentions, gz)
    vietnam_ctx = vietnam or bool(_VIETNAM.search(sent.hit.chunk.title) or _VIETNAM.search(sent.hit.chunk.text))
    sector = bool(sector_id) and any(m.kind == "sectors" and m.canonical == sector_id for m in sent.mentions)
    prov = bool(province) and any(m.kind == "places_vn" and m.canonical.split(OLD_NEW_SEP)[-1] == province
                                  for m in sent.mentions)
    connect = bool(_CONNECT_CUES.search(text))
    asked = sum(1 for m in sent.mentions if (m.kind, _fold_key(m)) in wanted_keys)
    cov = coverage(terms, text) if terms else 0.0
    base = (1.0 * japan + 1.5 * sector + 1.5 * prov + 0.8 * connect + 0.5 * min(asked, 3) + 1.5 * cov
            - 0.03 * sent.rank)
    return {
        "japan": japan, "japan_ctx": japan_ctx, "vietnam": vietnam, "vietnam_ctx": vietnam_ctx, "sector": sector, "province": prov, "connect": connect, "base": base,
        "advice": bool(_ADVICE_CUES.search(text)), "business": bool(_BUSINESS.search(text)),
    }


def _select(cands: list[_Candidate]) -> dict[str, list[_Candidate]]:
    """Best sentence per entity, best entities per section (next steps: best distinct sentences)."""
    out: dict[str, list[_Candidate]] = {}
    for section, limit in _LIMITS.items():
        if section == "local":
            continue
        best: dict[str, _Candidate] = {}
        for c in cands:
            if c.section != section:
                continue
            key = c.entity if section != "next_steps" else c.sentence.text
            if key not in best or c.score > best[key].score:
                best[key] = c
        ranked = sorted(best.values(), key=lambda c: (-c.score, c.sentence.rank, c.text))[:limit]
        if section == "sectors":  # sectors listed by one sentence share one line
            grouped: dict[tuple[str, int], _Candidate] = {}
            for c in ranked:
                key2 = (c.sentence.hit.chunk.chunk_id, c.sentence.start)
                if key2 in grouped and not _in_window(grouped[key2], c):
                    key2 = (*key2, c.entity)  # outside the quoted window: its own line, with its own quote
                if key2 in grouped:
                    g = grouped[key2]
                    grouped[key2] = _Candidate(g.section, g.kind, f"{g.entity}|{c.entity}", f"{g.text}; {c.text}",
                                               g.sentence, g.mention, g.score)
                else:
                    grouped[key2] = c
            ranked = list(grouped.values())
        out[section] = ranked
    return out


def _number(question, lang, sections, hits, province_new, province_asked, note, sector_id) -> dict[str, Any]:
    numbers: dict[str, int] = {}
    quotes: dict[int, list[str]] = {}
    chunk_of: dict[int, Chunk] = {}
    built: dict[str, tuple[ConnectionItem, ...]] = {}
    moved: dict[str, list[_Candidate]] = {}
    for section in _LIMITS:
        items = []
        for c in sections.get(section, []) + moved.get(section, []):
            quote, cut_start, cut_end = _window(c.sentence, c.mention)
            quoted = find_mentions(quote)
            if section == "local" and not any(_province_of(m) == province_new for m in quoted):
                moved.setdefault(c.section, []).append(c)  # the window left the province out: back to its section
                continue
            if section == "sectors":
                # A sector tag only with a quote that names the sector (not just a generic word for it).
                shown = [e for e in c.entity.split("|")
                         if any(m.kind == "sectors" and m.canonical == e and not _weak_sector_mention(m) for m in quoted)]
                if not shown:
                    continue
                if shown != c.entity.split("|"):
                    gz = default_gazetteer()
                    c = _Candidate(c.section, c.kind, "|".join(shown),
                                   "; ".join(gz.display("sectors", e, lang) for e in shown), c.sentence, c.mention,
                                   c.score)
            chunk = c.sentence.hit.chunk
            n = numbers.setdefault(chunk.chunk_id, len(numbers) + 1)
            chunk_of[n] = chunk
            if quote not in quotes.setdefault(n, []):
                quotes[n].append(quote)
            text = c.text or quote
            items.append(ConnectionItem(text=text, citations=(n,), quote=quote, kind=c.kind, entity=c.entity,
                                        cut_start=cut_start, cut_end=cut_end))
        built[section] = tuple(items)
    sources = tuple(Citation(n=n, chunk=chunk_of[n], quote=" … ".join(quotes[n])) for n in sorted(chunk_of))
    return {
        "question": question, "language": lang, **built,
        "province": province_new, "province_asked": province_asked, "province_note": note,
        "sector": sector_id, "sources": sources, "hits": tuple(hits),
    }


def _province_note(new: str, asked: str, lang: str) -> str:
    unit_vi = "thành phố" if new in _CITIES else "tỉnh"
    unit_en = "city" if new in _CITIES else "province"
    if not new:  # a name the gazetteer does not know
        return PROVINCE_NOTE[lang].format(unit="", name=asked).replace("  ", " ")
    if lang == "en":
        name = strip_diacritics(new)
        prefix = MERGED_NOTE["en"].format(old=strip_diacritics(asked), new=name, unit=unit_en) if asked != new else ""
        return prefix + PROVINCE_NOTE["en"].format(name=name, unit=unit_en)
    prefix = MERGED_NOTE["vi"].format(old=asked, new=new, unit=unit_vi) if asked and asked != new else ""
    return prefix + PROVINCE_NOTE["vi"].format(name=new, unit=unit_vi)


# ------------------------------------------------------------------------------------- output


def _md(text: str) -> str:
    """Escape characters Markdown would interpret inside quoted document text."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", text)


def _marker(item: ConnectionItem) -> str:
    return "".join(f"[{n}]" for n in item.citations)


def render_markdown(answer: ConnectionAnswer, lang: str | None = None, sources: bool = True) -> str:
    """Markdown: the province and sector notes, one section per non-empty group (each line ends with its
    [n]), then the sources (left out with `sources=False`, for views that list citations themselves)."""
    lang = lang or answer.language
    h = {**HEADERS[lang], "local": HEADERS[lang]["local"].format(
        province=strip_diacritics(answer.province) if lang == "en" else answer.province)}
    parts: list[str] = []
    for note in (answer.province_note, answer.sector_note):
        if note:
            parts.append(f"> {_md(note)}\n")
    if answer.empty:
        parts.append(REFUSAL[lang])
        return "\n".join(parts)
    if QUOTE_NOTE[lang]:
        parts.append(f"_{QUOTE_NOTE[lang]}_\n")
    for section, items in answer.sections.items():
        if not items:
            continue
        parts.append(f"**{h[section]}**")
        for it in items:
            pre = "…" if it.cut_start else ""
            post = "…" if it.cut_end and not it.quote.endswith(("…", "...")) else ""
            quoted = f"“{pre}{_md(it.quote)}{post}”"
            if section == "next_steps":
                parts.append(f"- {quoted} {_marker(it)}")
            else:
                parts.append(f"- **{_md(it.text)}** — {quoted} {_marker(it)}")
        parts.append("")
    if not sources:
        return "\n".join(parts).strip()
    parts.append(f"**{h['sources']}**")
    unknown = "không rõ" if lang == "vi" else "unknown"
    for c in answer.sources:
        meta = " · ".join((c.chunk.source or unknown, c.chunk.date or unknown))
        parts.append(f"[{c.n}] {_md(c.chunk.title)} — {_md(meta)} ({c.chunk.chunk_id})")
    return "\n".join(parts).strip()


def render_text(answer: ConnectionAnswer, lang: str | None = None) -> str:
    """Plain text, for the chat's Answer.text (like the extractive answer's "Theo các tài liệu:" lines;
    every interface escapes or prints it as it is): the notes, then a "Header:" line per non-empty
    section with "- name — “quote” [n]" items. Sources are the Answer's citations, not repeated here."""
    lang = lang or answer.language
    province = strip_diacritics(answer.province) if lang == "en" else answer.province
    h = {**HEADERS[lang], "local": HEADERS[lang]["local"].format(province=province)}
    parts = [note for note in (answer.province_note, answer.sector_note) if note]
    if answer.empty:
        return "\n".join([*parts, REFUSAL[lang]])
    if QUOTE_NOTE[lang]:
        parts.append(QUOTE_NOTE[lang])
    for section, items in answer.sections.items():
        if not items:
            continue
        parts += ["", f"{h[section]}:"]
        for it in items:
            pre = "…" if it.cut_start else ""
            post = "…" if it.cut_end and not it.quote.endswith(("…", "...")) else ""
            quoted = f"“{pre}{it.quote}{post}” {_marker(it)}"
            parts.append(f"- {quoted}" if section == "next_steps" else f"- {it.text} — {quoted}")
    return "\n".join(parts).strip()


def to_json(answer: ConnectionAnswer) -> dict[str, Any]:
    """The `rag connect --json` object."""
    def items(xs: tuple[ConnectionItem, ...]) -> list[dict[str, Any]]:
        return [{"text": i.text, "entity": i.entity, "kind": i.kind, "citations": list(i.citations),
                 "quote": i.quote} for i in xs]

    return {
        "question": answer.question,
        "language": answer.language,
        "province": answer.province,
        "province_asked": answer.province_asked,
        "province_note": answer.province_note,
        "sector": answer.sector,
        "sector_asked": answer.sector_asked,
        "sector_note": answer.sector_note,
        "backend": answer.backend,
        **{name: items(xs) for name, xs in answer.sections.items()},
        "sources": [
            {"n": c.n, "chunk_id": c.chunk.chunk_id, "doc_id": c.chunk.doc_id, "title": c.chunk.title,
             "source": c.chunk.source, "date": c.chunk.date, "quote": c.quote}
            for c in answer.sources
        ],
        "timings_ms": answer.timings_ms,
    }


__all__ = [
    "HEADERS",
    "KINDS",
    "ConnectionAnswer",
    "ConnectionItem",
    "build_connection_answer",
    "chunk_entities_of",
    "is_chat_connection_query",
    "is_connection_query",
    "province_phrase",
    "render_markdown",
    "render_text",
    "sector_phrase",
    "to_json",
]
