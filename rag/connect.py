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
from functools import lru_cache
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
    sources: tuple[Citation, ...] = ()
    hits: tuple[Hit, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    backend: str = "extractive"

    @property
    def sections(self) -> dict[str, tuple[ConnectionItem, ...]]:
        return {"who": self.who, "what": self.what, "where": self.where, "sectors": self.sectors,
                "next_steps": self.next_steps}

    @property
    def empty(self) -> bool:
        return not any(self.sections.values())


HEADERS = {
    "vi": {
        "who": "Cơ quan / đầu mối",
        "what": "Chương trình / sự kiện",
        "where": "Địa phương Nhật Bản",
        "sectors": "Lĩnh vực",
        "next_steps": "Bước tiếp theo theo tài liệu",
        "sources": "Nguồn",
    },
    "en": {
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
_LIMITS = {"who": 7, "what": 6, "where": 5, "sectors": 6, "next_steps": 4}
RUN_WEIGHTS = {"hybrid": 1.0, "entities": 0.6, "contacts": 0.35}


# ------------------------------------------------------------------------------------- entity cache

@lru_cache(maxsize=8192)
def _mentions_of(text: str) -> tuple[Mention, ...]:
    return tuple(find_mentions(text))


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
        mentions = _mentions_of(text)
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
    if not province_new and q_ents.places_vn:
        first = q_ents.places_vn[0]
        province_new = first.split(OLD_NEW_SEP)[-1]
        province_asked = first.split(OLD_NEW_SEP)[0]
    sector_id = _resolve_sector(sector) or (q_ents.sectors[0] if q_ents.sectors else "")
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

    # ---- sentence-level extraction
    terms = key_terms(query, pipeline.lexicon, index)
    sentences = _sentences(hits)
    n_chunks = max(len(chunk_ents), 1)
    df = Counter(s for e in chunk_ents.values() for s in set(e.sectors))
    cands: list[_Candidate] = []
    wanted_keys = wanted.match_keys()
    for sent in sentences:
        feats = _features(sent, terms, province_new, sector_id, wanted_keys)
        base = feats["base"]
        # Japan in the sentence, or at least in its chunk's headline or text (weaker evidence).
        japan = feats["japan"] or feats["japan_ctx"]
        for m in sent.mentions:
            asked = (m.kind, _fold_key(m)) in wanted_keys
            bonus = 2.0 if asked else 0.0
            if m.kind == "organizations":
                okind, country = _org_kind(gz, m.canonical), _org_country(gz, m.canonical)
                if okind in _NOT_CONTACTS:
                    continue
                if country not in ("VN", "JP") and not asked and not (country == "INT" and feats["japan"]):
                    continue  # French/British bodies, or international ones unrelated to Japan
                if not (japan or asked or country == "JP" or feats["sector"]):
                    continue
                section = "what" if okind in _EVENT_ORG_KINDS else "who"
                weight = _CONTACT_KINDS.get(okind, 0.3) if section == "who" else 0.8
                cands.append(_Candidate(section, m.kind, m.canonical, gz.display(m.kind, m.canonical, lang), sent, m,
                                        base + weight + bonus))
            elif m.kind == "people" and _DIPLOMAT_TITLES.match(m.surface):
                if feats["japan"]:
                    cands.append(_Candidate("who", m.kind, m.canonical, m.surface, sent, m, base + 0.2))
            elif m.kind == "programmes":
                if japan or feats["sector"] or asked:
                    cands.append(_Candidate("what", m.kind, m.canonical, m.canonical, sent, m, base + bonus))
            elif m.kind == "places_jp":
                cands.append(_Candidate("where", m.kind, m.canonical, gz.display(m.kind, m.canonical, lang), sent, m,
                                        base + bonus))
            elif m.kind == "sectors":
                if m.canonical != sector_id and not asked and not feats["japan"]:
                    continue
                idf = math.log(1 + n_chunks / max(df.get(m.canonical, 1), 1))
                bonus = 5.0 if m.canonical == sector_id else bonus
                cands.append(_Candidate("sectors", m.kind, m.canonical, gz.display(m.kind, m.canonical, lang), sent, m,
                                        base * 0.3 + idf * 0.5 + bonus))
        if feats["advice"] and feats["japan"] and (feats["business"] or feats["connect"]) and len(sent.text.split()) >= 8:
            score = base + (1.0 if feats["business"] else 0.0) + (1.0 if feats["sector"] else 0.0)
            cands.append(_Candidate("next_steps", "next_step", "", "", sent, None, score))

    sections = _select(cands)
    answer = _number(question, lang, sections, hits, province_new, province_asked, note, sector_id)
    timings = {"retrieve": round(retrieve_ms, 1), "total": round((time.perf_counter() - t0) * 1000, 1)}
    return ConnectionAnswer(**{**answer, "timings_ms": timings})


def _fold_key(m: Mention) -> str:
    name = m.canonical.split(OLD_NEW_SEP)[-1] if m.kind == "places_vn" else m.canonical
    return _fold(name)


def _features(sent: _Sentence, terms: list, province: str, sector_id: str, wanted_keys: set) -> dict[str, Any]:
    text = sent.text
    kinds = {m.kind for m in sent.mentions}
    japan = bool(_JAPAN.search(text)) or "places_jp" in kinds
    japan_ctx = bool(_JAPAN.search(sent.hit.chunk.title) or _JAPAN.search(sent.hit.chunk.text))
    sector = bool(sector_id) and any(m.kind == "sectors" and m.canonical == sector_id for m in sent.mentions)
    prov = bool(province) and any(m.kind == "places_vn" and m.canonical.split(OLD_NEW_SEP)[-1] == province
                                  for m in sent.mentions)
    connect = bool(_CONNECT_CUES.search(text))
    asked = sum(1 for m in sent.mentions if (m.kind, _fold_key(m)) in wanted_keys)
    cov = coverage(terms, text) if terms else 0.0
    base = (1.0 * japan + 1.5 * sector + 1.5 * prov + 0.8 * connect + 0.5 * min(asked, 3) + 1.5 * cov
            - 0.03 * sent.rank)
    return {
        "japan": japan, "japan_ctx": japan_ctx, "sector": sector, "province": prov, "connect": connect, "base": base,
        "advice": bool(_ADVICE_CUES.search(text)), "business": bool(_BUSINESS.search(text)),
    }


def _select(cands: list[_Candidate]) -> dict[str, list[_Candidate]]:
    """Best sentence per entity, best entities per section (next steps: best distinct sentences)."""
    out: dict[str, list[_Candidate]] = {}
    for section, limit in _LIMITS.items():
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
    for section in _LIMITS:
        items = []
        for c in sections.get(section, []):
            chunk = c.sentence.hit.chunk
            n = numbers.setdefault(chunk.chunk_id, len(numbers) + 1)
            chunk_of[n] = chunk
            quote, cut_start, cut_end = _window(c.sentence, c.mention)
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


def render_markdown(answer: ConnectionAnswer, lang: str | None = None) -> str:
    """Markdown: the province note, one section per non-empty group (each line ends with its [n]), sources."""
    lang = lang or answer.language
    h = HEADERS[lang]
    parts: list[str] = []
    if answer.province_note:
        parts.append(f"> {_md(answer.province_note)}\n")
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
    parts.append(f"**{h['sources']}**")
    unknown = "không rõ" if lang == "vi" else "unknown"
    for c in answer.sources:
        meta = " · ".join((c.chunk.source or unknown, c.chunk.date or unknown))
        parts.append(f"[{c.n}] {_md(c.chunk.title)} — {_md(meta)} ({c.chunk.chunk_id})")
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
    "is_connection_query",
    "render_markdown",
    "to_json",
]
