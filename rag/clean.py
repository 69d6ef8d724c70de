"""Boilerplate removal: raw page text -> article body, plus metadata inferred from the page.

Rules, in order (each is a pattern seen on Vietnamese news/government pages, not a per-file hack):
1. whitespace and bullets normalised line by line;
2. navigation before the headline dropped (only when everything before it is short, nav-like lines);
3. everything from the first related-news / footer marker on dropped ("Tin bài liên quan", "BÀI VIẾT KHÁC",
   "Cùng chuyên mục", "Đọc nhiều", "Lượt xem: N", "Tag:" ...);
4. nav lines, date stamps, view counters, video/infographic lists and slug-like link lines dropped anywhere;
5. related-article links embedded in the body (a headline printed twice on one line) dropped, with their
   teaser paragraph when they sit in a run of such links;
6. repeated photo captions kept once, photo credits removed;
7. the "Theo <outlet>" attribution dropped from the text and kept as `source` when none is given.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from rag.text import nfc, strip_diacritics, words
from rag.types import Document

_END_MARKERS = {
    "tin bài liên quan", "bài viết khác", "cùng chuyên mục", "đọc nhiều", "các tin bài khác", "tin liên quan",
    "tin cùng chuyên mục", "bài viết liên quan", "tin khác", "xem thêm", "có thể bạn quan tâm", "tin mới",
    "tin mới nhất", "tin nổi bật", "related news", "related articles", "read more", "more news", "most read",
    "tag", "tags", "từ khóa", "từ khoá", "file đính kèm", "phiên bản di động", "liên kết trang", "nguồn",
    "bình luận", "ý kiến bạn đọc", "chia sẻ bài viết",
}
_NAV_LINES = {
    "sign in", "sign up", "đăng nhập", "đăng ký", "aa", "chú thích ảnh", "từ viết tắt", "xem với cỡ chữ",
    "đọc bài viết", "tương phản", "xin chờ trong giây lát...", "chia sẻ", "in bài", "facebook", "twitter",
    "zalo", "email", "print", "share", "menu", "trang chủ", "home", "tìm kiếm", "search", "nghe bài viết",
}
_DATE_STAMP = re.compile(
    r"^(?:(?:thứ\s+\w+|chủ\s+nhật|ngày|cập nhật)\s*,?\s*)?(?:\d{1,2}:\d{2}\s*\|?\s*)?"
    r"(?:ngày\s+)?\d{1,2}/\d{1,2}/\d{4}(?:\s*\|?\s*\d{1,2}:\d{2})?(?:\s*GMT\s*[+-]\s*\d+)?$",
    re.IGNORECASE,
)
_VIEW_COUNTER = re.compile(r"^(?:lượt xem|số lượt xem|views?|lượt đọc)\s*:?\s*[\d.,]+$", re.IGNORECASE)
_MEDIA_LIST = re.compile(r"^\[?(?:video|infographics?|ảnh|photo|podcast|emagazine|longform)\]?\b", re.IGNORECASE)
_PHOTO_CREDIT = re.compile(r"\s*[-–(]?\s*\(?(?:Ảnh|Photo|Nguồn ảnh)\s*:\s*[^.()]{1,60}\)?\.?\s*$")
_ATTRIBUTION = re.compile(r"^(?:Theo|Nguồn\s*:)\s+(.{2,60})$")
_LEAD_SOURCE = re.compile(r"^\(([^()]{2,30})\)\s*[-–]\s*")
_BREADCRUMB = re.compile(r"^(?:trang chủ|home)\b", re.IGNORECASE)
_DATE_ANY = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")


def _key(line: str) -> str:
    return line.casefold().strip(" :.…")


def _is_end_marker(line: str) -> bool:
    return _key(line) in _END_MARKERS or bool(_VIEW_COUNTER.match(line))


def _is_nav(line: str) -> bool:
    key = _key(line)
    return (
        key in _NAV_LINES
        or bool(_DATE_STAMP.match(line))
        or bool(_VIEW_COUNTER.match(line))
        or (bool(_BREADCRUMB.match(line)) and len(words(line)) <= 8)
    )


def _is_slug_link(line: str) -> bool:
    """'infographic dau hieu nhan biet lu quet': a link text made from a URL slug (no tones, no punctuation)."""
    tokens = line.split()
    return len(tokens) >= 4 and line == line.lower() and line.isascii() and re.fullmatch(r"[a-z0-9 ]+", line) is not None


def _is_doubled_headline(line: str) -> bool:
    """A related-article link rendered as 'Headline Headline' (image alt text + link text)."""
    n = len(line)
    if n < 20:
        return False
    half = (n - 1) // 2
    return n % 2 == 1 and line[half] == " " and line[:half] == line[half + 1 :]


def _normalise_lines(text: str) -> list[str]:
    out = []
    for raw in text.split("\n"):
        line = re.sub(r"\s+", " ", raw).strip()
        line = re.sub(r"^[•·▪►»\-–*]\s+", "", line)
        out.append(line)
    return [line for line in out if line]


def _guess_headline(lines: list[str]) -> str:
    """The headline of a page without metadata: the line just above the first long paragraph
    (skipping date stamps and nav between them), as news pages print headline, date, lead."""
    for p, line in enumerate(lines[:40]):
        if len(words(line)) < 25 or not line.rstrip('"”)').endswith((".", "!", "?", "…")):
            continue  # not a body paragraph (headlines do not end with a full stop)
        h = p - 1
        while h >= 0 and _is_nav(lines[h]):
            h -= 1
        if h >= 0 and 4 <= len(words(lines[h])) <= 40 and not lines[h].endswith("."):
            return lines[h]
        return ""
    return ""


def _drop_leading_nav(lines: list[str], title: str) -> list[str]:
    """Drop the page header above the headline, but only if it consists of short nav-like lines."""
    if title:
        key = _key(title)
        for i, line in enumerate(lines[:40]):
            if _key(line) == key:
                if all(len(words(x)) <= 12 for x in lines[:i]):
                    return lines[i + 1 :]
                break
    start = 0
    while start < len(lines) and start < 25 and (_is_nav(lines[start]) or len(words(lines[start])) <= 3):
        start += 1
    return lines[start:]


def _drop_tail(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if i >= 2 and _is_end_marker(line):
            return lines[:i]
    return lines


def _drop_related_links(lines: list[str]) -> list[str]:
    doubled = [_is_doubled_headline(x) for x in lines]
    drop = set()
    for i, is_link in enumerate(doubled):
        if not is_link:
            continue
        drop.add(i)
        j = i + 1
        if j < len(lines) and not doubled[j]:
            after = lines[j + 1] if j + 1 < len(lines) else None
            # A teaser is followed by another link or by the end of the article; body text is not.
            if after is None or doubled[j + 1] or _ATTRIBUTION.match(after) or _is_end_marker(after):
                drop.add(j)
    return [x for i, x in enumerate(lines) if i not in drop]


def _dedupe(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for line in lines:
        key = _key(line)
        if key in seen and (len(words(line)) >= 6 or (out and _key(out[-1]) == key)):
            continue
        seen.add(key)
        out.append(line)
    return out


def infer_date(text: str) -> str:
    """First dd/mm/yyyy in the page as ISO yyyy-mm-dd, or ''."""
    for m in _DATE_ANY.finditer(text[:3000]):
        d, mo, y = (int(g) for g in m.groups())
        if 1 <= d <= 31 and 1 <= mo <= 12 and 1990 <= y <= 2100:
            return f"{y:04d}-{mo:02d}-{d:02d}"
    return ""


def infer_language(text: str) -> str:
    """'vi' when a noticeable share of words carries Vietnamese marks, else 'en'."""
    tokens = words(text[:20000])
    if not tokens:
        return "vi"
    marked = sum(1 for w in tokens if strip_diacritics(w) != w)
    return "vi" if marked / len(tokens) > 0.1 else "en"


def clean_text(text: str, title: str = "") -> tuple[str, str, str]:
    """Return (article body, inferred title, source found in the attribution line)."""
    lines = _normalise_lines(nfc(text))
    title = nfc(title).strip() or _guess_headline(lines)
    lines = _drop_leading_nav(lines, title)
    lines = _drop_tail(lines)
    source = ""
    kept = []
    for line in lines:
        attribution = _ATTRIBUTION.match(line)
        if attribution and len(words(line)) <= 8:
            source = source or attribution.group(1).strip()
            continue
        if _is_nav(line) or _MEDIA_LIST.match(line) or _is_slug_link(line):
            continue
        lead = _LEAD_SOURCE.match(line)
        if lead:
            source = source or lead.group(1).strip()
            line = line[lead.end() :]
        line = _PHOTO_CREDIT.sub("", line).strip()
        if line:
            kept.append(line)
    kept = _dedupe(_drop_related_links(kept))
    inferred_title = title
    if not inferred_title and kept and _looks_like_headline(kept[0]):
        inferred_title = kept[0]
        if len(kept) > 1:
            kept = kept[1:]  # a headline line, not a body sentence
    return "\n".join(kept), inferred_title, source


def _looks_like_headline(line: str) -> bool:
    """Whether a page's first line can be its title: short, one sentence at most, mostly letters. An
    encyclopaedia page starts with coordinates ('36°B 138°Đ'), a hatnote ('Bài này nói về … Về thành phố
    … xem bài …') or its first body sentence; none of them names the document."""
    text = line.strip()
    letters = sum(ch.isalpha() for ch in text)
    return (0 < len(text) <= 200 and not text.endswith((".", "…", ":", ";"))
            and not re.search(r"[.!?]\s+\S", text) and letters >= 0.7 * len(text.replace(" ", "")))


def clean_document(doc: Document) -> Document:
    """The Document with boilerplate removed and missing title/date/source/language inferred."""
    body, title, source = clean_text(doc.text, doc.title)
    return replace(
        doc,
        text=body,
        # No headline: the file's own name ('quan hệ nhật bản – việt nam.txt'), which names it better than a slug.
        title=title or (Path(doc.path).stem.strip() if doc.path else "") or doc.doc_id,
        source=doc.source or source,
        date=doc.date or infer_date(doc.text),
        language=doc.language or infer_language(body),
    )
