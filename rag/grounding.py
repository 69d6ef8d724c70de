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
from pathlib import Path

from rag.errors import RagError
from rag.guard import defang_control_tokens
from rag.text import strip_diacritics


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
