"""Display rendering: Answers, sources, connection answers and eval rows -> Markdown safe for a browser.

Everything shown in the UI passes through here, because Gradio renders Markdown *and* the HTML inside
it (its sanitiser keeps `<img src=…>`, so a quoted document could make every reader's browser fetch a
URL — the classic exfiltration hole). Two kinds of text, two rules:

- Document text (quotes, titles, outlets, ids) and anything a user typed is shown as text:
  `escape_text` backslash-escapes every character Markdown or HTML would interpret, so
  `<img src=x onerror=…>` appears literally and nothing is fetched or run.
- LLM text may keep emphasis, lists and code spans, and links to http(s) URLs that occur in the cited
  sources (`llm_markdown`); raw HTML, images, autolinks and every other URL are removed.

Shortcut: no Markdown parser; we escape the whole text and re-emit only the link shape we allow, which
is simpler to prove safe than sanitising a parse tree. The cost is visible backslashes for API clients
reading the rendered chat (the JSON API returns the plain text and structured fields instead).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rag.types import Answer, Chunk

# Every character that starts Markdown or HTML syntax. "&" too, so `&lt;` in a document stays `&lt;`.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&$])")
# Line starts that make lists, headings or rules ("- x", "1. x", "===").
_LINE_START = re.compile(r"^(\s*(?:\d+)?)([-+=.)])")
# LLM text keeps emphasis (* _), code spans (`) and list/heading markers; link/image/HTML syntax is escaped.
_LLM_SPECIAL = re.compile(r"([\\\[\]<>!&$|~])")
_AUTOLINK_START = re.compile(r"(?i)(\b(?:https?|ftp)|\bwww)([:.])")
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'`\[\]()]+", re.IGNORECASE)
_SCHEME_URL = re.compile(r"\b(?:javascript|data|vbscript|file|blob|mailto):[^\s<>\"'`\[\]]*", re.IGNORECASE)
_MD_LINK = re.compile(
    r"(!?)\[([^\[\]\n]{0,300})\]\(\s*<?((?:[^()\s<>]|\([^()\s<>]*\))*)>?(?:\s+\"[^\"\n]*\")?\s*\)"
)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!--.*?-->", re.DOTALL)
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*\S+.*$", re.MULTILINE)
_TRAILING = ".,;:!?)]}'\""
REMOVED_LINK = "[link removed]"


def escape_text(text: str) -> str:
    """`text` as Markdown that displays exactly `text` (one line per line; no HTML, links or images).

    >>> escape_text("<img src=x>")
    '\\\\<img src=x\\\\>'
    """
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # Leading spaces would make an indented code block; Markdown collapses them anyway.
    return "  \n".join(_no_autolink(_LINE_START.sub(r"\1\\\2", _MD_SPECIAL.sub(r"\\\1", line.lstrip()))) for line in lines)


def _no_autolink(line: str) -> str:
    """Break GFM's bare-URL autolinks (Gradio's renderer links `http://…` and `www.…` in plain text):
    an escaped colon or dot still displays, but no longer starts a link."""
    return _AUTOLINK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), line)


def escape_inline(text: str) -> str:
    """`escape_text` on one line (newlines become spaces), for titles, quotes and table cells."""
    return escape_text(" ".join((text or "").split()))


def source_urls(chunks: Iterable[Chunk]) -> set[str]:
    """The http(s) URLs a set of cited chunks carries (their `url` field and URLs in their text)."""
    urls: set[str] = set()
    for c in chunks:
        for candidate in [c.url, *_URL.findall(c.text)]:
            url = (candidate or "").strip().rstrip(_TRAILING)
            if url.lower().startswith(("http://", "https://")):
                urls.add(url)
    return urls


def _safe_url(url: str) -> str:
    # Only characters that cannot end the Markdown link or start HTML; allowed URLs come from sources.
    return re.sub(r"[^A-Za-z0-9\-._~:/?#@!$&'*+,;=%]", lambda m: f"%{ord(m.group(0)):02X}", url)


def llm_markdown(text: str, allowed_urls: Iterable[str] = ()) -> str:
    """LLM output as Markdown that keeps emphasis and lists, links only to `allowed_urls` (http/https),
    and drops raw HTML, images, reference definitions and every other URL.

    >>> llm_markdown('Xem ![x](http://evil/p.png) <b>đây</b> [1].')
    'Xem x đây \\\\[1\\\\].'
    """
    allowed = {u.rstrip(_TRAILING) for u in allowed_urls if u.lower().startswith(("http://", "https://"))}
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _REF_DEF.sub("", text)
    text = _HTML_TAG.sub("", text)
    out: list[str] = []
    pos = 0
    for m in _MD_LINK.finditer(text):
        out.append(_llm_plain(text[pos : m.start()], allowed))
        is_image, label, url = m.group(1), m.group(2), m.group(3).rstrip(_TRAILING)
        label_md = _llm_plain(_URL.sub("", label), set())
        if not is_image and url in allowed:
            out.append(f"[{label_md or escape_inline(url)}]({_safe_url(url)})")
        else:
            out.append(label_md)
        pos = m.end()
    out.append(_llm_plain(text[pos:], allowed))
    return "\n".join(line.rstrip() + ("  " if line.strip() else "") for line in "".join(out).split("\n")).rstrip()


def _llm_plain(text: str, allowed: set[str]) -> str:
    """Text between allowed links: URLs kept only when allowed (as explicit links), syntax escaped."""
    text = _SCHEME_URL.sub(REMOVED_LINK, text)
    parts: list[str] = []
    pos = 0
    for m in _URL.finditer(text):
        parts.append(_LLM_SPECIAL.sub(r"\\\1", text[pos : m.start()]))
        url = m.group(0).rstrip(_TRAILING)
        tail = m.group(0)[len(url) :]
        parts.append(f"[{escape_inline(url)}]({_safe_url(url)})" if url in allowed else REMOVED_LINK.replace("[", "\\[").replace("]", "\\]"))
        parts.append(_LLM_SPECIAL.sub(r"\\\1", tail))
        pos = m.end()
    parts.append(_LLM_SPECIAL.sub(r"\\\1", text[pos:]))
    return "".join(parts)


def partial_markdown(text: str) -> str:
    """A streamed, not yet validated LLM answer: no links at all, and secret-looking strings masked."""
    from rag.guard import mask_suspicious

    return llm_markdown(mask_suspicious(text), ())


def answer_markdown(answer: Answer, model: str = "") -> str:
    """Markdown for the chat: notice, answer, numbered sources (outlet, date, quoted passage), backend."""
    lang = answer.language
    parts = []
    if answer.notice:
        parts.append(f"> ⚠️ {escape_inline(answer.notice)}\n")
    if answer.backend == "llm":
        parts.append(llm_markdown(answer.text, source_urls(c.chunk for c in answer.citations)))
    else:
        parts.append(escape_text(answer.text))
    if answer.citations:
        parts.append(f"\n**{'Nguồn' if lang == 'vi' else 'Sources'}**")
        unknown = "không rõ" if lang == "vi" else "unknown"
        for c in answer.citations:
            meta = " · ".join((c.chunk.source or unknown, c.chunk.date or unknown))
            parts.append(f"\n\\[{c.n}\\] **{escape_inline(c.chunk.title)}** — {escape_inline(meta)}  \n"
                         f"> {escape_inline(c.quote)}")
    backend = "trích dẫn (offline)" if lang == "vi" else "extractive (offline)"
    if answer.backend == "llm":
        backend = f"LLM {model}".strip()
    # <sub> is our own markup around escaped text, not content from a document or a model.
    parts.append(f"\n<sub>{escape_inline(backend)} · {answer.timings_ms.get('total', 0):.0f} ms</sub>")
    return "\n".join(parts)


def connection_markdown(answer: Any, lang: str | None = None) -> str:
    """The Connections answer (rag.connect.ConnectionAnswer) as Markdown; document text escaped there."""
    from rag.connect import render_markdown

    return render_markdown(answer, lang)


def eval_row_markdown(row: Mapping[str, Any], variant_labels: Mapping[str, str] | None = None) -> str:
    """Markdown for one evaluated question of results.jsonl: gold, answer, citations, passages, scores."""
    gold = row.get("gold", {}) or {}
    e = escape_inline
    variant = (variant_labels or {}).get(gold.get("variant"), str(gold.get("variant")))
    expected = gold.get("answer") or ("(not answerable)" if not gold.get("answerable") else "—")
    parts = [
        f"### {e(str(row.get('id', '')))} — {e(variant)}, {e(str(gold.get('category')))}",
        f"**Question / Câu hỏi:** {e(str(row.get('question', '')))}",
        f"**Expected / Đáp án chuẩn:** {e(str(expected))}",
        "**Answer / Trả lời" + (" (refused / từ chối)" if row.get("refused") else "") + ":**  \n"
        + escape_text(str(row.get("answer", ""))),
    ]
    if row.get("error"):
        parts.append(f"⚠ {e(str(row['error']))}")  # text symbols: no emoji font needed
    if row.get("citations"):
        parts.append("**Sources / Nguồn**")
        for c in row["citations"]:
            parts.append(f"\\[{e(str(c.get('n')))}\\] **{e(str(c.get('title', '')))}** — "
                         f"{e(str(c.get('source') or '?'))}, {e(str(c.get('date') or '?'))} "
                         f"({e(str(c.get('chunk_id', '')))})  \n> {e(str(c.get('quote', '')))}")
    if gold.get("evidence"):
        parts.append("**Evidence phrases / Bằng chứng:** " + " · ".join(f"“{e(str(x))}”" for x in gold["evidence"]))
    top = row.get("retrieved_at_10", [])
    if top:
        parts.append("**Top 10 passages / 10 đoạn đầu:** " + ", ".join(
            f"{i}. {e(str(h.get('chunk_id', '')))}{' ✓' if h.get('relevant') else ''}" for i, h in enumerate(top, 1)))
    metrics = row.get("metrics", {}) or {}
    shown = [f"{e(str(k))}: {v:.2f}" if isinstance(v, float) else f"{e(str(k))}: {e(str(v))}"
             for k, v in metrics.items() if v is not None]
    parts.append("**Scores:** " + ", ".join(shown))
    latency = row.get("latency_ms", {}) or {}
    parts.append("**Latency (ms):** " + ", ".join(
        f"{e(str(k))} {v:.0f}" for k, v in latency.items() if isinstance(v, int | float)))
    return "\n\n".join(parts)
